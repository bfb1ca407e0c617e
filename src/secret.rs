//! Secrets typed into the console — an FTP password — kept sealed in the database with
//! ChaCha20-Poly1305 under a key from `CRM_SECRET_KEY` (32 random bytes in base64:
//! `openssl rand -base64 32`), and a wrapper that never prints a secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, Generate, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};

/// The environment variable that holds the key.
pub const KEY_ENV: &str = "CRM_SECRET_KEY";

const NONCE_LEN: usize = 12;

/// A secret in memory: its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it (the FTP login).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error(
        "{KEY_ENV} is not set: passwords are stored only encrypted; set it to 32 random bytes in base64 (openssl rand -base64 32) where the console and the daemons run"
    )]
    NoKey,
    #[error("{KEY_ENV} is not 32 bytes in base64 (make one with openssl rand -base64 32)")]
    BadKey,
    #[error(
        "the stored password cannot be opened with this {KEY_ENV} (was the key changed?): type the password again"
    )]
    Open,
}

/// The key that seals and opens stored secrets.
#[derive(Clone)]
pub struct SecretKey(ChaCha20Poly1305);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

impl SecretKey {
    /// The key in `CRM_SECRET_KEY`; `Ok(None)` when it is not set.
    pub fn from_env() -> Result<Option<SecretKey>, SecretError> {
        match std::env::var(KEY_ENV) {
            Err(_) => Ok(None),
            Ok(text) => SecretKey::from_base64(&text).map(Some),
        }
    }

    /// A key from its base64 text.
    pub fn from_base64(text: &str) -> Result<SecretKey, SecretError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| SecretError::BadKey)?;
        if bytes.len() != 32 {
            return Err(SecretError::BadKey);
        }
        ChaCha20Poly1305::new_from_slice(&bytes)
            .map(SecretKey)
            .map_err(|_| SecretError::BadKey)
    }

    /// Seals a secret: base64 of a fresh nonce and the ciphertext with its tag.
    pub fn seal(&self, secret: &str) -> Result<String, SecretError> {
        let nonce = Nonce::generate();
        let sealed = self
            .0
            .encrypt(&nonce, secret.as_bytes())
            .map_err(|_| SecretError::Open)?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(STANDARD.encode(bytes))
    }

    /// Opens what [`SecretKey::seal`] sealed.
    pub fn open(&self, sealed: &str) -> Result<Secret, SecretError> {
        let bytes = STANDARD.decode(sealed).map_err(|_| SecretError::Open)?;
        if bytes.len() < NONCE_LEN {
            return Err(SecretError::Open);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).map_err(|_| SecretError::Open)?;
        let plain = self
            .0
            .decrypt(&nonce, ciphertext)
            .map_err(|_| SecretError::Open)?;
        String::from_utf8(plain)
            .map(Secret)
            .map_err(|_| SecretError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    #[test]
    fn a_sealed_secret_opens_with_its_key_only() {
        let key = SecretKey::from_base64(KEY).unwrap();
        let sealed = key.seal("пароль ftp").unwrap();
        assert!(!sealed.contains("пароль"));
        assert_ne!(
            sealed,
            key.seal("пароль ftp").unwrap(),
            "a fresh nonce each time"
        );
        assert_eq!(key.open(&sealed).unwrap().expose(), "пароль ftp");
        let other = SecretKey::from_base64(&STANDARD.encode([7u8; 32])).unwrap();
        assert_eq!(other.open(&sealed), Err(SecretError::Open));
        assert_eq!(key.open("garbage"), Err(SecretError::Open));
    }

    #[test]
    fn a_key_must_be_32_bytes_of_base64() {
        assert_eq!(
            SecretKey::from_base64("short").unwrap_err(),
            SecretError::BadKey
        );
        assert_eq!(
            SecretKey::from_base64(&STANDARD.encode([1u8; 16])).unwrap_err(),
            SecretError::BadKey
        );
    }

    #[test]
    fn a_secret_never_prints() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
    }
}
