//! The replica's audit signing key in the data directory: `audit-key` (the secret seed,
//! mode 0600) and `audit-key.pub` (the public key, to copy somewhere an attacker of this
//! machine cannot reach and pass to `remit audit verify --public-key`).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use rand::RngCore as _;
use remit_audit::{AuditKey, PublicKey};

use crate::StoreError;

/// The secret key's file name in the data directory.
pub const KEY_FILE: &str = "audit-key";
/// The public key's file name in the data directory.
pub const PUBLIC_KEY_FILE: &str = "audit-key.pub";

fn err(path: &Path, message: impl std::fmt::Display) -> StoreError {
    StoreError::DataDir {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// Loads the signing key, creating it (and its public half) on first use.
pub fn load_or_create(data_dir: &Path) -> Result<AuditKey, StoreError> {
    let path = data_dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let key = AuditKey::from_file_text(&text).map_err(|e| err(&path, e))?;
            write_public(data_dir, &key)?;
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            rand::rng().fill_bytes(&mut seed);
            let key = AuditKey::from_seed(seed);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&path).map_err(|e| err(&path, e))?;
            file.write_all(key.to_file_text().as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| err(&path, e))?;
            write_public(data_dir, &key)?;
            Ok(key)
        }
        Err(e) => Err(err(&path, e)),
    }
}

fn write_public(data_dir: &Path, key: &AuditKey) -> Result<(), StoreError> {
    let path = data_dir.join(PUBLIC_KEY_FILE);
    let text = key.public().to_file_text();
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        std::fs::write(&path, text).map_err(|e| err(&path, e))?;
    }
    Ok(())
}

/// Reads public key files.
pub fn read_public_keys(paths: &[PathBuf]) -> Result<Vec<PublicKey>, StoreError> {
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).map_err(|e| err(p, e))?;
            PublicKey::from_file_text(&text).map_err(|e| err(p, e))
        })
        .collect()
}
