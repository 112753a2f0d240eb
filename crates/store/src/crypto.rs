//! Secrets at rest: AES-256-GCM, a fresh random 96-bit nonce per secret.
//!
//! The master key comes from `LLM_LINK_MASTER_KEY` (32 bytes as base64 or as
//! 64 hex digits) or from `master.key` in the data dir, created with mode
//! 0600 on first start. A ciphertext reads `v1:<key id>:<base64(nonce ‖
//! ciphertext ‖ tag)>`; the key id (a hash prefix of the key, never the key)
//! tells which master key wrote it, so a wrong key is reported as such
//! rather than as corrupt data.

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Nonce};
use base64::Engine;
use llm_link_gateway::config::Secret;
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The environment variable holding the master key.
pub const MASTER_KEY_ENV: &str = "LLM_LINK_MASTER_KEY";
/// The key file's name inside the data dir.
pub const KEY_FILE: &str = "master.key";
/// Bound into every ciphertext as associated data.
const AAD: &[u8] = b"llm-link secret v1";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("not an llm-link ciphertext")]
    Malformed,
    #[error("encrypted with master key {found}, but the current master key is {current}")]
    WrongKey { found: String, current: String },
    #[error("decryption failed: the ciphertext was altered or the master key is wrong")]
    Tampered,
    #[error("encryption failed")]
    Encrypt,
}

/// The 256-bit master key. `Debug` shows only its id.
#[derive(Clone)]
pub struct MasterKey {
    cipher: Aes256Gcm,
    bytes: [u8; 32],
    id: String,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        let mut h = Sha256::new();
        h.update(b"llm-link master key id\0");
        h.update(bytes);
        let digest = h.finalize();
        let id = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        MasterKey {
            cipher: Aes256Gcm::new(&bytes.into()),
            bytes,
            id,
        }
    }

    pub fn generate() -> MasterKey {
        let key = Aes256Gcm::generate_key(&mut OsRng);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&key);
        MasterKey::from_bytes(bytes)
    }

    /// Parses 32 bytes given as base64 (standard or URL-safe, padded or not)
    /// or as 64 hex digits. The error never repeats the input.
    pub fn parse(text: &str) -> Result<MasterKey, String> {
        let t = text.trim();
        let bytes: Option<Vec<u8>> = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16).ok())
                .collect()
        } else {
            use base64::engine::general_purpose::{
                STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
            };
            [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|e| e.decode(t).ok())
        };
        match bytes {
            Some(b) if b.len() == 32 => {
                let mut k = [0u8; 32];
                k.copy_from_slice(&b);
                Ok(MasterKey::from_bytes(k))
            }
            Some(b) => Err(format!(
                "must be 32 bytes (base64 or 64 hex digits); this decodes to {} bytes",
                b.len()
            )),
            None => Err("must be 32 bytes as base64 or as 64 hex digits".into()),
        }
    }

    /// Standard base64, as written to the key file.
    pub fn encode(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.bytes)
    }

    /// A short public fingerprint: safe to log and to store.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn encrypt(&self, plain: &str) -> Result<String, CryptoError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ct = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain.as_bytes(),
                    aad: AAD,
                },
            )
            .map_err(|_| CryptoError::Encrypt)?;
        let mut raw = Vec::with_capacity(nonce.len() + ct.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&ct);
        Ok(format!(
            "v1:{}:{}",
            self.id,
            base64::engine::general_purpose::STANDARD.encode(raw)
        ))
    }

    /// The key id a ciphertext was written with.
    pub fn key_id_of(text: &str) -> Option<&str> {
        let mut parts = text.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("v1"), Some(id), Some(_)) => Some(id),
            _ => None,
        }
    }

    pub fn decrypt(&self, text: &str) -> Result<Secret, CryptoError> {
        let mut parts = text.splitn(3, ':');
        let (Some("v1"), Some(id), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CryptoError::Malformed);
        };
        if id != self.id {
            return Err(CryptoError::WrongKey {
                found: id.to_string(),
                current: self.id.clone(),
            });
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| CryptoError::Malformed)?;
        if raw.len() < 12 + 16 {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ct) = raw.split_at(12);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: AAD })
            .map_err(|_| CryptoError::Tampered)?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| CryptoError::Tampered)
    }
}

/// Where the master key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Env,
    /// Read from an existing key file.
    File(PathBuf),
    /// Created now (first start).
    Created(PathBuf),
}

impl KeySource {
    pub fn describe(&self) -> String {
        match self {
            KeySource::Env => MASTER_KEY_ENV.to_string(),
            KeySource::File(p) => p.display().to_string(),
            KeySource::Created(p) => format!("{} (created)", p.display()),
        }
    }
}

/// The master key: `LLM_LINK_MASTER_KEY` if set, else the key file in the
/// data dir, created on first use. Errors name the variable or the file.
pub fn load_master_key(
    data_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(MasterKey, KeySource), (String, String)> {
    if let Some(v) = env(MASTER_KEY_ENV).filter(|v| !v.trim().is_empty()) {
        let key = MasterKey::parse(&v).map_err(|m| (MASTER_KEY_ENV.to_string(), m))?;
        return Ok((key, KeySource::Env));
    }
    let path = data_dir.join(KEY_FILE);
    let field = path.display().to_string();
    match read_key_file(&path) {
        Ok(Some(k)) => return Ok((k, KeySource::File(path))),
        Ok(None) => {}
        Err(m) => return Err((field, m)),
    }
    let key = MasterKey::generate();
    match create_key_file(&path, &key) {
        Ok(true) => Ok((key, KeySource::Created(path))),
        // Another process created it first: use theirs.
        Ok(false) => match read_key_file(&path) {
            Ok(Some(k)) => Ok((k, KeySource::File(path))),
            Ok(None) => Err((field, "disappeared while being created".into())),
            Err(m) => Err((field, m)),
        },
        Err(e) => Err((field, format!("cannot create the master key file: {e}"))),
    }
}

/// Reads a key file; `Ok(None)` when it does not exist.
pub fn read_key_file(path: &Path) -> Result<Option<MasterKey>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            warn_if_open(path);
            MasterKey::parse(&text).map(Some)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read the master key file: {e}")),
    }
}

#[cfg(unix)]
fn warn_if_open(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path) {
        if m.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                file = %path.display(),
                "the master key file is readable by other users; run chmod 600 on it"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_open(_path: &Path) {}

/// Creates `path` holding `key`, mode 0600, only if it does not exist yet
/// (atomically: written to a temporary file, then hard-linked into place).
/// `Ok(false)` when the file already exists.
pub fn create_key_file(path: &Path, key: &MasterKey) -> std::io::Result<bool> {
    let tmp = write_private_temp(path, key)?;
    let res = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match res {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Replaces `path` with `key` atomically (rename), mode 0600.
pub fn replace_key_file(path: &Path, key: &MasterKey) -> std::io::Result<()> {
    let tmp = write_private_temp(path, key)?;
    std::fs::rename(&tmp, path)
}

fn write_private_temp(path: &Path, key: &MasterKey) -> std::io::Result<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("key"),
        std::process::id(),
        fastrand::u64(..)
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    let written = f
        .write_all(format!("{}\n", key.encode()).as_bytes())
        .and_then(|_| f.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

/// Random bytes from the OS.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    use aes_gcm::aead::rand_core::RngCore;
    let mut b = [0u8; N];
    OsRng.fill_bytes(&mut b);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_fresh_nonces() {
        let k = MasterKey::generate();
        let a = k.encrypt("sk-secret-value-1234").unwrap();
        let b = k.encrypt("sk-secret-value-1234").unwrap();
        assert_ne!(a, b, "a fresh nonce per secret");
        assert!(!a.contains("secret"));
        assert!(a.starts_with(&format!("v1:{}:", k.id())));
        assert_eq!(k.decrypt(&a).unwrap().expose(), "sk-secret-value-1234");
    }

    #[test]
    fn wrong_key_and_tampering_are_told_apart() {
        let k = MasterKey::generate();
        let other = MasterKey::generate();
        let ct = k.encrypt("x").unwrap();
        assert!(matches!(
            other.decrypt(&ct),
            Err(CryptoError::WrongKey { .. })
        ));
        let mut bad = ct.clone();
        let last = bad.pop().unwrap();
        bad.push(if last == 'A' { 'B' } else { 'A' });
        assert!(matches!(
            k.decrypt(&bad),
            Err(CryptoError::Tampered | CryptoError::Malformed)
        ));
        assert_eq!(k.decrypt("plain"), Err(CryptoError::Malformed));
    }

    #[test]
    fn parses_base64_and_hex() {
        let k = MasterKey::generate();
        let b64 = k.encode();
        assert_eq!(MasterKey::parse(&b64).unwrap().id(), k.id());
        let hex: String = k.bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(MasterKey::parse(&hex).unwrap().id(), k.id());
        let e = MasterKey::parse("c2hvcnQ=").unwrap_err();
        assert!(e.contains("5 bytes"), "{e}");
        assert!(MasterKey::parse("not a key!").is_err());
    }

    #[test]
    fn key_file_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let env = |_: &str| None;
        let (k1, src) = load_master_key(dir.path(), &env).unwrap();
        assert!(matches!(src, KeySource::Created(_)));
        let (k2, src) = load_master_key(dir.path(), &env).unwrap();
        assert!(matches!(src, KeySource::File(_)));
        assert_eq!(k1.id(), k2.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let env_key = MasterKey::generate().encode();
        let env = move |k: &str| (k == MASTER_KEY_ENV).then(|| env_key.clone());
        let (k3, src) = load_master_key(dir.path(), &env).unwrap();
        assert_eq!(src, KeySource::Env);
        assert_ne!(k3.id(), k1.id());
        let bad = |k: &str| (k == MASTER_KEY_ENV).then(|| "nope".to_string());
        let (field, _) = load_master_key(dir.path(), &bad).unwrap_err();
        assert_eq!(field, MASTER_KEY_ENV);
    }
}
