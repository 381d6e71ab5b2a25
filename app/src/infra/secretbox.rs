//! Encryption at rest for variable values: XChaCha20-Poly1305 (RustCrypto) with a random
//! 192-bit nonce per value and the row's identity as associated data, so a ciphertext copied
//! onto another row does not decrypt.
//!
//! The key comes from `ROUNDHOUSE_SECRET_KEY` (32 bytes, base64). In dev without it, a key is
//! generated once into `$ROUNDHOUSE_DATA_DIR/secret.key` (mode 0600); production refuses to
//! start without one.

use anyhow::{bail, Context};
use base64::{engine::general_purpose::STANDARD, Engine};
use chacha20poly1305::{
    aead::{Aead, AeadCore, KeyInit, OsRng, Payload},
    XChaCha20Poly1305, XNonce,
};
use std::path::Path;

const NONCE_LEN: usize = 24;

#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
    /// A second key, derived from the first, for values made deterministically from an id
    /// (a database service's password): stable across deploys and never stored.
    derive_key: [u8; 32],
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(••••••)")
    }
}

impl SecretBox {
    pub fn new(key: &[u8; 32]) -> Self {
        SecretBox { cipher: XChaCha20Poly1305::new(key.into()), derive_key: Self::derive_key(key) }
    }

    fn derive_key(key: &[u8]) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        Sha256::new().chain_update(b"roundhouse derive v1").chain_update(key).finalize().into()
    }

    /// A secret made from `context` with the platform key: the same context always gives the
    /// same value, and nobody without the key can compute it. 32 lowercase hex characters.
    pub fn derive(&self, context: &str) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::new().chain_update(self.derive_key).chain_update(context.as_bytes()).finalize();
        hex::encode(&digest[..16])
    }

    pub fn from_base64(encoded: &str) -> anyhow::Result<Self> {
        let bytes = STANDARD.decode(encoded.trim()).context("ROUNDHOUSE_SECRET_KEY is not valid base64")?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| anyhow::anyhow!("ROUNDHOUSE_SECRET_KEY must be 32 bytes, not {}", b.len()))?;
        Ok(Self::new(&key))
    }

    /// The key from the environment, or in dev the one kept in the data folder (created on first use).
    pub fn load(configured: Option<&str>, data_dir: &Path, dev: bool) -> anyhow::Result<Self> {
        if let Some(k) = configured {
            return Self::from_base64(k);
        }
        if !dev {
            bail!("ROUNDHOUSE_SECRET_KEY is required in production (32 random bytes, base64: `openssl rand -base64 32`)");
        }
        let path = data_dir.join("secret.key");
        if let Ok(existing) = std::fs::read_to_string(&path) {
            return Self::from_base64(&existing).with_context(|| format!("reading {}", path.display()));
        }
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            f.write_all(STANDARD.encode(key).as_bytes())?;
        }
        tracing::info!(path = %path.display(), "generated a dev encryption key");
        let key: [u8; 32] = key.as_slice().try_into().expect("a generated key is 32 bytes");
        Ok(Self::new(&key))
    }

    /// `nonce || ciphertext+tag`.
    pub fn seal(&self, plaintext: &str, aad: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let mut out = nonce.to_vec();
        let sealed = self
            .cipher
            .encrypt(&nonce, Payload { msg: plaintext.as_bytes(), aad })
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory input");
        out.extend_from_slice(&sealed);
        out
    }

    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> anyhow::Result<String> {
        if sealed.len() < NONCE_LEN + 16 {
            bail!("sealed value is too short");
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad })
            .map_err(|_| anyhow::anyhow!("sealed value does not decrypt with this key (wrong key or tampered row)"))?;
        String::from_utf8(plain).context("sealed value is not UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_opens_only_with_its_key_and_its_row() {
        let sb = SecretBox::new(&[7; 32]);
        let sealed = sb.seal("hunter2", b"var:1");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"), "the plaintext is not in the ciphertext");
        assert_eq!(sb.open(&sealed, b"var:1").unwrap(), "hunter2");
        assert!(sb.open(&sealed, b"var:2").is_err(), "bound to its row");
        assert!(SecretBox::new(&[8; 32]).open(&sealed, b"var:1").is_err(), "bound to its key");
        assert_ne!(sb.seal("hunter2", b"var:1"), sealed, "a fresh nonce every time");
    }

    #[test]
    fn derived_secrets_are_stable_per_context_and_key() {
        let sb = SecretBox::new(&[7; 32]);
        assert_eq!(sb.derive("pg:1"), sb.derive("pg:1"));
        assert_ne!(sb.derive("pg:1"), sb.derive("pg:2"));
        assert_ne!(SecretBox::new(&[8; 32]).derive("pg:1"), sb.derive("pg:1"));
        assert_eq!(sb.derive("pg:1").len(), 32);
    }

    #[test]
    fn the_dev_key_is_created_once_and_reused_and_production_needs_one() {
        let dir = std::env::temp_dir().join(format!("roundhouse-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = SecretBox::load(None, &dir, true).unwrap();
        let b = SecretBox::load(None, &dir, true).unwrap();
        assert_eq!(b.open(&a.seal("x", b""), b"").unwrap(), "x");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("secret.key")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(SecretBox::load(None, &dir, false).is_err());
        assert!(SecretBox::from_base64("c2hvcnQ=").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
