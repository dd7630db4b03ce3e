//! TLS on the proxy listener, from `[gateway]`: the server's certificate chain and key
//! (`tls_cert_file`, `tls_key_file`), and for mutual TLS the trust anchors of client
//! certificates (`client_ca_file`, such as a SPIFFE trust bundle) with `client_auth`.
//!
//! Only the shape is parsed here: which files, named where. Reading and checking them (PEM,
//! a key that matches the certificate) is the `load` step's, as for a `jwk_file`.

use std::path::PathBuf;

use serde_spanned::Spanned;

use super::{Ctx, MAX_PATH_LEN};
use crate::{ConfigError, TrustDomain};

/// TLS on the proxy listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The server's certificate chain, PEM, leaf first.
    pub cert_file: NamedFile,
    /// The server's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: NamedFile,
    /// Client certificates, when the listener asks for them (mutual TLS).
    pub client_ca: Option<ClientCa>,
}

/// Client certificates: whom they must chain to, and whether one is required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCa {
    /// The trust anchors, PEM (a SPIFFE trust bundle, for instance).
    pub file: NamedFile,
    /// The one SPIFFE trust domain these anchors vouch for: an X.509-SVID of any other
    /// trust domain is refused even when it chains to them, so that one trust domain's
    /// authority cannot mint another's identities.
    pub trust_domain: TrustDomain,
    /// Whether a client may connect without a certificate.
    pub auth: ClientAuth,
}

/// `client_auth`: whether a client certificate is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// A client without a certificate connects and authenticates as it would over plain
    /// HTTP (a bearer credential); a certificate it does present must verify.
    Optional,
    /// A client without a verified certificate cannot connect.
    Required,
}

/// A file the configuration names, and where it names it, so that an error reading the
/// file points at the line and field that named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedFile {
    /// The path as written, relative to the configuration file's directory unless
    /// absolute; `load` makes it the path to open.
    pub path: PathBuf,
    /// The configuration's file, line, column and field naming it (its message is empty).
    pub at: Box<ConfigError>,
}

impl NamedFile {
    /// An error about this file, placed where the configuration names it.
    pub fn error(&self, message: impl std::fmt::Display) -> ConfigError {
        let mut e = (*self.at).clone();
        e.message = format!("`{}`: {message}", self.path.display());
        e
    }
}

/// The TLS keys of `[gateway]`, as written.
pub(super) struct RawTls {
    pub(super) cert_file: Option<Spanned<String>>,
    pub(super) key_file: Option<Spanned<String>>,
    pub(super) client_ca_file: Option<Spanned<String>>,
    pub(super) client_trust_domain: Option<Spanned<String>>,
    pub(super) client_auth: Option<Spanned<String>>,
}

fn named(cx: &Ctx<'_>, v: Spanned<String>, field: &str) -> Result<NamedFile, ConfigError> {
    let path = v.get_ref();
    if path.is_empty() || path.len() > MAX_PATH_LEN || path.chars().any(char::is_control) {
        return Err(cx.err(
            v.span(),
            field,
            format!("is not a file path of at most {MAX_PATH_LEN} bytes"),
        ));
    }
    Ok(NamedFile {
        path: PathBuf::from(path),
        at: Box::new(cx.err(v.span(), field, "")),
    })
}

/// Parses the TLS keys of `[gateway]`: both of `tls_cert_file` and `tls_key_file` or
/// neither; `client_ca_file` only with them, and with `client_trust_domain`;
/// `client_auth` and `client_trust_domain` only with `client_ca_file`.
pub(super) fn parse_tls(cx: &Ctx<'_>, raw: RawTls) -> Result<Option<TlsSettings>, ConfigError> {
    let (cert, key) = match (raw.cert_file, raw.key_file) {
        (None, None) => {
            if let Some(ca) = raw.client_ca_file {
                return Err(cx.err(
                    ca.span(),
                    "gateway.client_ca_file",
                    "client certificates need TLS: set `tls_cert_file` and `tls_key_file` too",
                ));
            }
            if let Some(a) = raw.client_auth {
                return Err(cx.err(
                    a.span(),
                    "gateway.client_auth",
                    "is set without `client_ca_file` (and TLS)",
                ));
            }
            if let Some(d) = raw.client_trust_domain {
                return Err(cx.err(
                    d.span(),
                    "gateway.client_trust_domain",
                    "is set without `client_ca_file` (and TLS)",
                ));
            }
            return Ok(None);
        }
        (Some(c), None) => {
            return Err(cx.err(
                c.span(),
                "gateway.tls_cert_file",
                "is set without `tls_key_file`: give both or neither",
            ));
        }
        (None, Some(k)) => {
            return Err(cx.err(
                k.span(),
                "gateway.tls_key_file",
                "is set without `tls_cert_file`: give both or neither",
            ));
        }
        (Some(c), Some(k)) => (c, k),
    };
    let cert_file = named(cx, cert, "gateway.tls_cert_file")?;
    let key_file = named(cx, key, "gateway.tls_key_file")?;
    let auth = match raw.client_auth {
        None => None,
        Some(a) => Some(match a.get_ref().as_str() {
            "optional" => (ClientAuth::Optional, a.span()),
            "required" => (ClientAuth::Required, a.span()),
            other => {
                return Err(cx.err(
                    a.span(),
                    "gateway.client_auth",
                    format!(
                        "`{}` is not `optional` or `required`",
                        other.escape_default()
                    ),
                ));
            }
        }),
    };
    let client_ca = match (raw.client_ca_file, auth, raw.client_trust_domain) {
        (None, None, None) => None,
        (None, Some((_, span)), _) => {
            return Err(cx.err(
                span,
                "gateway.client_auth",
                "is set without `client_ca_file`, the trust anchors client certificates must chain to",
            ));
        }
        (None, None, Some(d)) => {
            return Err(cx.err(
                d.span(),
                "gateway.client_trust_domain",
                "is set without `client_ca_file`, the trust anchors of that trust domain",
            ));
        }
        (Some(f), auth, d) => {
            let span = f.span();
            let file = named(cx, f, "gateway.client_ca_file")?;
            let Some(d) = d else {
                return Err(cx.err(
                    span,
                    "gateway.client_ca_file",
                    "needs `client_trust_domain`: the SPIFFE trust domain whose SVIDs these anchors vouch for",
                ));
            };
            Some(ClientCa {
                file,
                trust_domain: TrustDomain::parse(d.get_ref())
                    .map_err(|e| cx.err(d.span(), "gateway.client_trust_domain", e.to_string()))?,
                auth: auth.map_or(ClientAuth::Optional, |(a, _)| a),
            })
        }
    };
    Ok(Some(TlsSettings {
        cert_file,
        key_file,
        client_ca,
    }))
}
