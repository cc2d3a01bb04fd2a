//! The validator key file: created with mode 0600 on the validator's own host, refused when
//! readable by anyone else, never printed.

use anyhow::{Context, Result, anyhow, bail};
use consensus::PrivateKey;
use serde::{Deserialize, Serialize};
use std::path::Path;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The validator key file: the ed25519 secret seed (and its public key, for humans).
///
/// `Debug` prints `secret_seed: <redacted>`; both strings are overwritten with zeros when the
/// value is dropped.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// Public key, 64 hex characters (checked against the seed when loading).
    pub public_key: String,
    /// Secret seed, 64 hex characters.
    pub secret_seed: String,
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("public_key", &self.public_key)
            .field("secret_seed", &format_args!("<redacted>"))
            .finish()
    }
}

/// Load a key file: JSON `{public_key, secret_seed}` or a bare 64-hex-character seed.
/// Refuses files readable by group or others (Unix). The file's text and the decoded seed are
/// zeroed before this returns.
pub fn load_key(path: &Path) -> Result<PrivateKey> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read key file {}", path.display()))?,
    );
    check_key_permissions(path)?;
    let trimmed = text.trim();
    let key_file: Option<KeyFile> = if trimmed.starts_with('{') {
        Some(
            serde_json::from_str(trimmed)
                .with_context(|| format!("invalid key file {}", path.display()))?,
        )
    } else {
        None
    };
    let seed_hex = key_file
        .as_ref()
        .map_or(trimmed, |kf| kf.secret_seed.as_str());
    let bytes = Zeroizing::new(hex::decode(seed_hex.trim()).map_err(|e| {
        anyhow!(
            "invalid key file {}: field `secret_seed`: not hex: {e}",
            path.display()
        )
    })?);
    let seed = Zeroizing::new(<[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        anyhow!(
            "invalid key file {}: field `secret_seed`: must be 32 bytes (64 hex characters)",
            path.display()
        )
    })?);
    let key = PrivateKey::from_seed(*seed);
    if let Some(kf) = &key_file
        && !kf
            .public_key
            .eq_ignore_ascii_case(&hex::encode(key.public().0))
    {
        bail!(
            "invalid key file {}: field `public_key` does not match the secret seed",
            path.display()
        );
    }
    Ok(key)
}

#[cfg(unix)]
fn check_key_permissions(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("cannot stat key file {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "key file {} has mode {:o}; it must not be readable by group or others (chmod 600)",
            path.display(),
            mode & 0o777
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_key_permissions(_path: &Path) -> Result<()> {
    Ok(())
}

/// Write a fresh random key to `path` with mode 0600 (fails if the file exists).
pub fn generate_key(path: &Path) -> Result<PrivateKey> {
    let seed: Zeroizing<[u8; 32]> = Zeroizing::new(rand::random());
    let key = PrivateKey::from_seed(*seed);
    write_key(path, &key)?;
    Ok(key)
}

/// Write `key` to `path` with mode 0600 (fails if the file exists).
pub fn write_key(path: &Path, key: &PrivateKey) -> Result<()> {
    let seed = Zeroizing::new(key.seed());
    let kf = KeyFile {
        public_key: hex::encode(key.public().0),
        secret_seed: hex::encode(seed.as_slice()),
    };
    // Room for the whole file up front, so no reallocation leaves a copy of the seed behind.
    let mut text = Zeroizing::new(Vec::with_capacity(512));
    serde_json::to_writer_pretty(&mut *text, &kf)?;
    text.push(b'\n');
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write as _;
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create key file {}", path.display()))?;
    f.write_all(&text)
        .with_context(|| format!("cannot write key file {}", path.display()))?;
    f.sync_all()?;
    Ok(())
}
