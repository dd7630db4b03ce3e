//! Loading a configuration and its policy directory from disk (start-up only): also the
//! key sets of issuers and the SPIFFE bundles of trust domains that are files.

use std::path::{Path, PathBuf};

use remit_core::config::MAX_CONFIG_BYTES;
use remit_core::{Config, ConfigError};
use remit_policy::{MAX_POLICY_FILE_BYTES, PolicyError, PolicySource};

use crate::Engine;

/// Most `.cedar` files in a policy directory.
pub const MAX_POLICY_FILES: usize = 1000;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read.
    #[error("{path}: {message}")]
    Io {
        /// The file or directory.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The policies are invalid.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The secret-scanning rule file is invalid.
    #[error(transparent)]
    Rules(#[from] remit_scan::RulesError),
}

fn read_limited(path: &Path, limit: usize) -> Result<String, LoadError> {
    let io = |message: String| LoadError::Io {
        path: path.display().to_string(),
        message,
    };
    let bytes = read_bytes_limited(path, limit).map_err(io)?;
    String::from_utf8(bytes)
        .map_err(|e| io(format!("not UTF-8 (byte {})", e.utf8_error().valid_up_to())))
}

/// Reads and parses a configuration file.
pub fn read_config(path: &Path) -> Result<Config, LoadError> {
    let text = read_limited(path, MAX_CONFIG_BYTES)?;
    Ok(Config::parse(&text, &path.display().to_string())?)
}

/// The policy directory of a configuration read from `config_path`.
pub fn policy_dir(config_path: &Path, config: &Config) -> PathBuf {
    let base = config_path.parent().unwrap_or(Path::new("."));
    base.join(&config.gateway.policy_dir)
}

/// Reads every `*.cedar` file in `dir`, in name order.
pub fn read_policies(dir: &Path) -> Result<Vec<PolicySource>, LoadError> {
    let io = |message: String| LoadError::Io {
        path: dir.display().to_string(),
        message,
    };
    let mut files = Vec::new();
    for entry in
        std::fs::read_dir(dir).map_err(|e| io(format!("cannot read the policy directory: {e}")))?
    {
        let entry = entry.map_err(|e| io(e.to_string()))?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "cedar") {
            files.push(path);
            if files.len() > MAX_POLICY_FILES {
                return Err(io(format!("more than {MAX_POLICY_FILES} policy files")));
            }
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|p| {
            Ok(PolicySource {
                file: p.display().to_string(),
                text: read_limited(&p, MAX_POLICY_FILE_BYTES)?,
            })
        })
        .collect()
}

/// The secret-scanning rules of a configuration read from `config_path`: its
/// `scan.rules` file (gitleaks format), or the built-in rules.
pub fn read_rules(config_path: &Path, config: &Config) -> Result<remit_scan::RuleSet, LoadError> {
    let Some(file) = &config.scan.rules else {
        return Ok(remit_scan::RuleSet::builtin());
    };
    let path = config_path.parent().unwrap_or(Path::new(".")).join(file);
    let text = read_limited(&path, remit_scan::MAX_RULE_FILE_BYTES)?;
    Ok(remit_scan::RuleSet::from_toml(
        &text,
        &path.display().to_string(),
    )?)
}

/// Loads the whole pipeline from a configuration file, its policy directory and its
/// secret-scanning rules.
pub fn load_engine(config_path: &Path) -> Result<Engine, LoadError> {
    let mut config = read_config(config_path)?;
    check_tls_files(config_path, &mut config)?;
    let policies = read_policies(&policy_dir(config_path, &config))?;
    let key_files = key_files(config_path, &config);
    let bundle_files = bundle_files(config_path, &config);
    for issuer in &config.tokens.issuers {
        if let remit_core::tokens::KeySource::Inline(text) = &issuer.keys {
            remit_token::jwt::KeySet::from_jwks(text.as_bytes(), &issuer.algorithms).map_err(
                |e| LoadError::Io {
                    path: config_path.display().to_string(),
                    message: format!("issuer `{}`: field `jwks`: {e}", issuer.id),
                },
            )?;
        }
    }
    for identity in config.registry.iter() {
        for c in &identity.client_keys {
            if let remit_core::identity::ClientKeySource::Jwk(jwk) = &c.key {
                remit_token::assertion::ClientKeys::default()
                    .install(&identity.id, &c.id, jwk)
                    .map_err(|e| LoadError::Io {
                        path: config_path.display().to_string(),
                        message: format!(
                            "identity `{}`, credential `{}`: field `jwk`: {e}",
                            identity.id, c.id
                        ),
                    })?;
            }
        }
    }
    let client_key_files = read_client_key_files(config_path, &config)?;
    let rules = read_rules(config_path, &config)?;
    let engine = Engine::with_rules(config, &policies, rules)?;
    for (identity, credential, jwk, at) in client_key_files {
        engine
            .client_keys()
            .install(&identity, &credential, &jwk)
            .map_err(|e| {
                let mut at = at;
                at.message = format!("the key in `{}`: {e}", at.message);
                LoadError::Config(at)
            })?;
    }
    for (trust_domain, path, algs) in bundle_files {
        let text = read_limited(&path, remit_token::jwt::MAX_BUNDLE_BYTES)?;
        let bundle =
            remit_token::jwt::KeySet::from_spiffe_bundle(text.as_bytes(), &algs).map_err(|e| {
                LoadError::Io {
                    path: path.display().to_string(),
                    message: format!("trust domain `{trust_domain}`: {e}"),
                }
            })?;
        engine.tokens().set_bundle(&trust_domain, bundle.keys);
    }
    for (issuer, path, algs) in key_files {
        let text = read_limited(&path, remit_token::jwt::MAX_JWKS_BYTES)?;
        let keys = remit_token::jwt::KeySet::from_jwks(text.as_bytes(), &algs).map_err(|e| {
            LoadError::Io {
                path: path.display().to_string(),
                message: format!("issuer `{issuer}`: {e}"),
            }
        })?;
        engine.tokens().set_keys(&issuer, keys);
    }
    Ok(engine)
}

/// A client key read from its `jwk_file`: the identity, the credential, the key, and where
/// the configuration names the file (its message is the file's path).
type ClientKeyFile = (
    remit_core::IdentityId,
    remit_core::CredentialId,
    remit_core::identity::ClientJwk,
    ConfigError,
);

/// Reads and checks every `client_key` credential's `jwk_file` (relative to the
/// configuration's directory). An error names the configuration file, the line and field
/// that name the key file, and the key file.
fn read_client_key_files(
    config_path: &Path,
    config: &Config,
) -> Result<Vec<ClientKeyFile>, LoadError> {
    let base = config_path.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for identity in config.registry.iter() {
        for c in &identity.client_keys {
            if let remit_core::identity::ClientKeySource::Jwk(jwk) = &c.key {
                seen.insert(jwk.material().to_owned());
            }
        }
    }
    for identity in config.registry.iter() {
        for c in &identity.client_keys {
            let remit_core::identity::ClientKeySource::File { path, at } = &c.key else {
                continue;
            };
            let file = base.join(path);
            let fail = |why: String| {
                let mut e = (**at).clone();
                e.message = format!("`{}`: {why}", file.display());
                LoadError::Config(e)
            };
            let text = match read_limited(&file, remit_core::identity::MAX_CLIENT_JWK_BYTES) {
                Ok(t) => t,
                Err(LoadError::Io { message, .. }) => return Err(fail(message)),
                Err(e) => return Err(e),
            };
            let jwk = remit_core::identity::ClientJwk::parse(&text)
                .map_err(|m| fail(format!("the key {m}")))?;
            if !seen.insert(jwk.material().to_owned()) {
                return Err(fail(
                    "this public key is already registered to an identity".into(),
                ));
            }
            if identity.client_keys.iter().any(|o| {
                matches!(&o.key, remit_core::identity::ClientKeySource::Jwk(k) if k.kid() == jwk.kid())
            }) || out.iter().any(|(i, _, k, _): &ClientKeyFile| {
                *i == identity.id && k.kid() == jwk.kid()
            }) {
                return Err(fail(format!(
                    "key id `{}` is used twice by this identity",
                    jwk.kid()
                )));
            }
            let mut at = (**at).clone();
            at.message = file.display().to_string();
            out.push((identity.id.clone(), c.id.clone(), jwk, at));
        }
    }
    Ok(out)
}

/// The issuers whose key sets are files, with each file's path (relative to the
/// configuration's directory) and the issuer's algorithms.
fn key_files(
    config_path: &Path,
    config: &Config,
) -> Vec<(String, PathBuf, Vec<remit_core::tokens::JwtAlg>)> {
    let base = config_path.parent().unwrap_or(Path::new("."));
    config
        .tokens
        .issuers
        .iter()
        .filter_map(|i| match &i.keys {
            remit_core::tokens::KeySource::File(f) => {
                Some((i.id.clone(), base.join(f), i.algorithms.clone()))
            }
            _ => None,
        })
        .collect()
}

/// Makes the proxy listener's TLS files (`tls_cert_file`, `tls_key_file`,
/// `client_ca_file`) paths to open, relative to the configuration's directory, and checks
/// that they are what they claim: PEM, a chain with exactly one private key that matches
/// it, trust anchors that parse. An error names the configuration file, the line and field
/// that name the file, and the file. The gateway reads them again when it serves and
/// whenever they change.
pub fn check_tls_files(config_path: &Path, config: &mut Config) -> Result<(), LoadError> {
    let Some(tls) = config.gateway.tls.as_mut() else {
        return Ok(());
    };
    let base = config_path.parent().unwrap_or(Path::new("."));
    for f in std::iter::once(&mut tls.cert_file)
        .chain(std::iter::once(&mut tls.key_file))
        .chain(tls.client_ca.as_mut().map(|c| &mut c.file))
    {
        f.path = base.join(&f.path);
    }
    let read = |f: &remit_core::config::NamedFile| -> Result<Vec<u8>, LoadError> {
        read_bytes_limited(&f.path, remit_token::tls::MAX_TLS_FILE_BYTES)
            .map_err(|m| LoadError::Config(f.error(m)))
    };
    let (cert, key) = (read(&tls.cert_file)?, read(&tls.key_file)?);
    remit_token::tls::ServerCertificate::from_pem(&cert, &key)
        .map_err(|(which, e)| LoadError::Config(which.of(tls).error(e)))?;
    if let Some(ca) = &tls.client_ca {
        remit_token::tls::trust_anchors(&read(&ca.file)?)
            .map_err(|e| LoadError::Config(ca.file.error(e)))?;
    }
    Ok(())
}

/// Reads a regular file of at most `limit` bytes (checked before reading and of what was
/// read, in case the file grew between).
pub fn read_bytes_limited(path: &Path, limit: usize) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > limit as u64 {
        return Err(format!("larger than {limit} bytes"));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    if bytes.len() > limit {
        return Err(format!("larger than {limit} bytes"));
    }
    Ok(bytes)
}

/// The trust domains whose SPIFFE bundles are files, with each file's path (relative to the
/// configuration's directory) and the trust domain's algorithms.
fn bundle_files(
    config_path: &Path,
    config: &Config,
) -> Vec<(String, PathBuf, Vec<remit_core::tokens::JwtAlg>)> {
    let base = config_path.parent().unwrap_or(Path::new("."));
    config
        .tokens
        .trust_domains
        .iter()
        .filter_map(|t| match &t.bundle {
            remit_core::tokens::BundleSource::File(f) => Some((
                t.name.as_str().to_owned(),
                base.join(f),
                t.algorithms.clone(),
            )),
            remit_core::tokens::BundleSource::Url(_) => None,
        })
        .collect()
}
