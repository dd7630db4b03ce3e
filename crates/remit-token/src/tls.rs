//! What a TLS listener's files say, read from their bytes: the server's certificate chain
//! and a private key that matches it, and the trust anchors client certificates must chain
//! to (a SPIFFE trust bundle, say). Pure: the caller reads the files (at `load`, and again
//! whenever the listener reloads them); nothing here touches the disk or the network.
//!
//! Everything is refused that could be read two ways or not at all: a file with no
//! certificate, several private keys, a key rustls cannot sign with, a key that is not the
//! certificate's, a bundle with no usable anchor.

use std::sync::Arc;

use remit_core::config::{NamedFile, TlsSettings};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// Largest PEM file read (a certificate chain, a key or a trust bundle).
pub const MAX_TLS_FILE_BYTES: usize = 1024 * 1024;
/// Most certificates in the server's chain.
pub const MAX_CHAIN_CERTS: usize = 16;
/// Most trust anchors in a client CA bundle.
pub const MAX_TRUST_ANCHORS: usize = 1024;

/// The crypto provider remit's TLS uses: rustls on aws-lc-rs.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Which of a listener's files an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    /// The server's certificate chain.
    Cert,
    /// The server's private key.
    Key,
    /// The client certificates' trust anchors.
    ClientCa,
}

impl TlsFile {
    /// The file of `settings` this is (the certificate chain's, for a client CA the
    /// settings do not name).
    pub fn of(self, settings: &TlsSettings) -> &NamedFile {
        match (self, &settings.client_ca) {
            (Self::Key, _) => &settings.key_file,
            (Self::ClientCa, Some(ca)) => &ca.file,
            (Self::Cert | Self::ClientCa, _) => &settings.cert_file,
        }
    }
}

/// Why a TLS file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsFileError {
    /// Larger than [`MAX_TLS_FILE_BYTES`].
    #[error("the file is larger than {MAX_TLS_FILE_BYTES} bytes")]
    TooLarge,
    /// Not PEM, or a PEM section that cannot be decoded.
    #[error("the file is not valid PEM: {0}")]
    Pem(String),
    /// No `CERTIFICATE` section.
    #[error("the file holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)")]
    NoCertificate,
    /// More certificates than [`MAX_CHAIN_CERTS`] or [`MAX_TRUST_ANCHORS`].
    #[error("the file holds more than {0} certificates")]
    TooManyCertificates(usize),
    /// No private key section.
    #[error(
        "the file holds no PEM private key (`PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`)"
    )]
    NoKey,
    /// More than one private key.
    #[error("the file holds {0} private keys; give exactly one")]
    SeveralKeys(usize),
    /// A key of a kind or shape rustls cannot sign with.
    #[error("the private key cannot be used: {0}")]
    BadKey(String),
    /// The server's certificate cannot be read.
    #[error("the certificate cannot be read: {0}")]
    BadCertificate(String),
    /// The key is not the certificate's.
    #[error("the private key does not match the certificate (the first one in `tls_cert_file`)")]
    KeyMismatch,
    /// A certificate of the bundle cannot be a trust anchor.
    #[error("certificate {index} of the bundle cannot be a trust anchor: {why}")]
    BadAnchor {
        /// Its place in the file, from 1.
        index: usize,
        /// Why.
        why: String,
    },
}

fn pem_error(e: pem::Error) -> TlsFileError {
    TlsFileError::Pem(match e {
        pem::Error::MissingSectionEnd { .. } => "a section has no `-----END` line".to_owned(),
        pem::Error::IllegalSectionStart { .. } => "a `-----BEGIN` line is malformed".to_owned(),
        pem::Error::Base64Decode(e) => format!("a section is not base64: {e}"),
        other => other.to_string(),
    })
}

/// Every PEM section of `bytes`, in order.
fn sections(bytes: &[u8]) -> Result<Vec<(SectionKind, Vec<u8>)>, TlsFileError> {
    if bytes.len() > MAX_TLS_FILE_BYTES {
        return Err(TlsFileError::TooLarge);
    }
    <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes)
        .map(|s| s.map_err(pem_error))
        .collect()
}

/// The certificates of a PEM file, in order (other sections are skipped), at most `limit`.
fn certificates(bytes: &[u8], limit: usize) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let certs: Vec<CertificateDer<'static>> = sections(bytes)?
        .into_iter()
        .filter(|(kind, _)| *kind == SectionKind::Certificate)
        .map(|(_, der)| CertificateDer::from(der))
        .collect();
    if certs.is_empty() {
        return Err(TlsFileError::NoCertificate);
    }
    if certs.len() > limit {
        return Err(TlsFileError::TooManyCertificates(limit));
    }
    Ok(certs)
}

/// The one private key of a PEM file (other sections, such as certificates, are skipped).
fn private_key(bytes: &[u8]) -> Result<PrivateKeyDer<'static>, TlsFileError> {
    let mut keys: Vec<PrivateKeyDer<'static>> = sections(bytes)?
        .into_iter()
        .filter_map(|(kind, der)| PrivateKeyDer::from_pem(kind, der))
        .collect();
    match keys.len() {
        0 => Err(TlsFileError::NoKey),
        1 => Ok(keys.remove(0)),
        n => Err(TlsFileError::SeveralKeys(n)),
    }
}

/// A server's certificate chain and its private key, checked to belong together.
#[derive(Debug)]
pub struct ServerCertificate {
    /// The chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
}

impl ServerCertificate {
    /// Reads a certificate chain (PEM, leaf first) and its private key (PEM) and checks
    /// that the key is usable and is the leaf's.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, (TlsFile, TlsFileError)> {
        let chain = certificates(cert_pem, MAX_CHAIN_CERTS).map_err(|e| (TlsFile::Cert, e))?;
        let key = private_key(key_pem).map_err(|e| (TlsFile::Key, e))?;
        let signing = provider()
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| (TlsFile::Key, TlsFileError::BadKey(e.to_string())))?;
        let certified = CertifiedKey::new(chain.clone(), signing);
        match certified.keys_match() {
            Ok(()) => Ok(Self { chain, key }),
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                Err((TlsFile::Key, TlsFileError::KeyMismatch))
            }
            // aws-lc-rs always knows a loaded key's public half; not knowing is refused
            // rather than guessed.
            Err(rustls::Error::InconsistentKeys(_)) => Err((
                TlsFile::Key,
                TlsFileError::BadKey("its public key is unknown, so it cannot be matched".into()),
            )),
            Err(e) => Err((TlsFile::Cert, TlsFileError::BadCertificate(e.to_string()))),
        }
    }
}

/// The trust anchors of a PEM bundle (a SPIFFE trust bundle, or a CA's certificates).
pub fn trust_anchors(pem: &[u8]) -> Result<RootCertStore, TlsFileError> {
    let mut roots = RootCertStore::empty();
    for (i, der) in certificates(pem, MAX_TRUST_ANCHORS)?
        .into_iter()
        .enumerate()
    {
        roots.add(der).map_err(|e| TlsFileError::BadAnchor {
            index: i + 1,
            why: e.to_string(),
        })?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};

    fn self_signed() -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["remit.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_chain_and_its_key_are_read() {
        let (cert, key) = self_signed();
        let s = ServerCertificate::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
        assert_eq!(s.chain.len(), 1);
        // A combined file works as both.
        let both = format!("{cert}{key}");
        assert!(ServerCertificate::from_pem(both.as_bytes(), both.as_bytes()).is_ok());
        assert_eq!(trust_anchors(cert.as_bytes()).unwrap().len(), 1);
    }

    #[test]
    fn malformed_or_mismatched_files_are_refused_naming_the_file() {
        let (cert, key) = self_signed();
        let (_, other_key) = self_signed();
        let err =
            |c: &str, k: &str| ServerCertificate::from_pem(c.as_bytes(), k.as_bytes()).unwrap_err();
        assert_eq!(
            err(&cert, &other_key),
            (TlsFile::Key, TlsFileError::KeyMismatch)
        );
        assert_eq!(err("", &key), (TlsFile::Cert, TlsFileError::NoCertificate));
        assert_eq!(
            err(&key, &key),
            (TlsFile::Cert, TlsFileError::NoCertificate)
        );
        assert_eq!(err(&cert, &cert), (TlsFile::Key, TlsFileError::NoKey));
        assert_eq!(
            err(&cert, &format!("{key}{other_key}")),
            (TlsFile::Key, TlsFileError::SeveralKeys(2))
        );
        let truncated = &cert[..cert.len() - 30];
        assert!(matches!(
            err(truncated, &key),
            (TlsFile::Cert, TlsFileError::Pem(_))
        ));
        let not_base64 = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            err(not_base64, &key),
            (TlsFile::Cert, TlsFileError::Pem(_))
        ));
        // A certificate section that is not a certificate.
        let junk = "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            err(junk, &key),
            (TlsFile::Cert, TlsFileError::BadCertificate(_))
        ));
        let junk_key = "-----BEGIN PRIVATE KEY-----\naGVsbG8=\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            err(&cert, junk_key),
            (TlsFile::Key, TlsFileError::BadKey(_))
        ));
        let huge = "a".repeat(MAX_TLS_FILE_BYTES + 1);
        assert_eq!(err(&huge, &key), (TlsFile::Cert, TlsFileError::TooLarge));
        let long_chain = cert.repeat(MAX_CHAIN_CERTS + 1);
        assert_eq!(
            err(&long_chain, &key),
            (
                TlsFile::Cert,
                TlsFileError::TooManyCertificates(MAX_CHAIN_CERTS)
            )
        );
    }

    #[test]
    fn a_bundle_needs_anchors_that_parse() {
        let (cert, _) = self_signed();
        assert_eq!(trust_anchors(b"").unwrap_err(), TlsFileError::NoCertificate);
        let junk = "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            trust_anchors(format!("{cert}{junk}").as_bytes()),
            Err(TlsFileError::BadAnchor { index: 2, .. })
        ));
        assert!(matches!(
            trust_anchors(b"-----BEGIN CERTIFICATE-----\nAAAA"),
            Err(TlsFileError::Pem(_))
        ));
    }
}
