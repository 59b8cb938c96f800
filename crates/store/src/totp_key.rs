//! The key that seals TOTP secrets in `config.db`.
//!
//! `config.db` is shared by every role through the group, so a secret stored there in clear
//! is readable by the engine's user too. The secrets are sealed with ChaCha20-Poly1305 under a
//! random 32-byte key that only the console's user can read (`DIR/console/totp.key`, 0600 in
//! a 0700 directory owned by `palisade-web`). Each seal has a fresh random nonce, and the
//! user id is the associated data, so a sealed value copied onto another user's row does not
//! open.
//!
//! Stored form: `0x01 || nonce (12) || ciphertext || tag (16)`. A value of exactly 20 bytes
//! is a legacy clear secret from before sealing; it is still accepted, and sealed again the
//! next time it is used successfully (and when the console starts).
//!
//! Losing the key file makes every enrolled authenticator unusable (nothing else breaks);
//! `palisade admin reset-password USER` clears the user's authenticator and needs no key.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::StoreError;

const VERSION: u8 = 1;
/// Length of a TOTP secret (what `totp_begin` creates, and what legacy rows hold in clear).
pub const LEGACY_LEN: usize = 20;
const KEY_LEN: usize = 32;

/// The sealing key. Its bytes never leave this type (`Debug` does not show them).
#[derive(Clone)]
pub struct TotpKey([u8; KEY_LEN]);

impl std::fmt::Debug for TotpKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpKey(..)")
    }
}

/// What a stored value turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    Sealed(Vec<u8>),
    /// A clear secret from before sealing: to be sealed again.
    Legacy(Vec<u8>),
}

fn io_err(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Io(std::io::Error::new(
        e.kind(),
        format!("{}: {e}", path.display()),
    ))
}

fn aad(user_id: i64) -> Vec<u8> {
    let mut a = b"palisade totp secret, user ".to_vec();
    a.extend_from_slice(&user_id.to_be_bytes());
    a
}

impl TotpKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> TotpKey {
        TotpKey(bytes)
    }

    /// A fresh random key (for tests; the console uses [`TotpKey::load_or_create`]).
    pub fn generate() -> TotpKey {
        let mut k = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut k)
            .expect("system random source");
        TotpKey(k)
    }

    /// Reads the key at `path`, or creates it (0600; its directory 0700 if missing). Two
    /// processes racing to create it end up with the same key: the file is linked into place
    /// only if nothing is there yet.
    pub fn load_or_create(path: &Path) -> Result<TotpKey, StoreError> {
        if let Some(dir) = path.parent()
            && !dir.exists()
        {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io_err(dir, e))?;
        }
        if !path.exists() {
            let key = TotpKey::generate();
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            let _ = fs::remove_file(&tmp);
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| io_err(&tmp, e))?;
            f.write_all(&key.0).map_err(|e| io_err(&tmp, e))?;
            f.sync_all().map_err(|e| io_err(&tmp, e))?;
            drop(f);
            let linked = fs::hard_link(&tmp, path);
            let _ = fs::remove_file(&tmp);
            match linked {
                Ok(()) => {
                    if let Some(dir) = path.parent()
                        && let Ok(d) = fs::File::open(dir)
                    {
                        let _ = d.sync_all();
                    }
                    tracing::info!(event = "store.totp_key_created", path = %path.display());
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err(path, e)),
            }
        }
        let meta = fs::metadata(path).map_err(|e| io_err(path, e))?;
        if meta.permissions().mode() & 0o077 != 0 {
            // Nobody else should read it; we own it, so tighten it rather than refuse.
            fs::set_permissions(path, fs::Permissions::from_mode(0o600))
                .map_err(|e| io_err(path, e))?;
        }
        let bytes = fs::read(path).map_err(|e| io_err(path, e))?;
        let key: [u8; KEY_LEN] = bytes.try_into().map_err(|b: Vec<u8>| {
            io_err(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("a TOTP key is {KEY_LEN} bytes, this file has {}", b.len()),
                ),
            )
        })?;
        Ok(TotpKey(key))
    }

    fn aead(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &self.0).expect("32-byte key"))
    }

    /// Seals `secret` for `user_id`.
    pub fn seal(&self, user_id: i64, secret: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("system random source");
        let mut buf = secret.to_vec();
        self.aead()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(user_id)),
                &mut buf,
            )
            .expect("sealing cannot fail for short inputs");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buf.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        out
    }

    /// Opens a stored value of `user_id`'s row. `None` if it was sealed for someone else,
    /// with another key, or altered.
    pub fn open(&self, user_id: i64, stored: &[u8]) -> Option<Opened> {
        if stored.len() == LEGACY_LEN {
            return Some(Opened::Legacy(stored.to_vec()));
        }
        open_sealed(Some(self), user_id, stored).map(Opened::Sealed)
    }
}

/// Opens a stored value with `key` if there is one; legacy clear values need no key.
pub fn open_stored(key: Option<&TotpKey>, user_id: i64, stored: &[u8]) -> Option<Opened> {
    if stored.len() == LEGACY_LEN {
        return Some(Opened::Legacy(stored.to_vec()));
    }
    open_sealed(key, user_id, stored).map(Opened::Sealed)
}

fn open_sealed(key: Option<&TotpKey>, user_id: i64, stored: &[u8]) -> Option<Vec<u8>> {
    let key = key?;
    let (&version, rest) = stored.split_first()?;
    if version != VERSION || rest.len() < NONCE_LEN + CHACHA20_POLY1305.tag_len() {
        return None;
    }
    let (nonce, ct) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buf = ct.to_vec();
    let plain = key
        .aead()
        .open_in_place(nonce, Aad::from(aad(user_id)), &mut buf)
        .ok()?;
    Some(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_refuse() {
        let k = TotpKey::generate();
        let secret = [7u8; 20];
        let s1 = k.seal(5, &secret);
        let s2 = k.seal(5, &secret);
        assert_ne!(s1, s2, "a fresh nonce per seal");
        assert_eq!(s1.len(), 1 + 12 + 20 + 16);
        assert!(!s1.windows(20).any(|w| w == secret));
        assert_eq!(k.open(5, &s1), Some(Opened::Sealed(secret.to_vec())));
        assert_eq!(k.open(6, &s1), None, "bound to the user id");
        assert_eq!(TotpKey::generate().open(5, &s1), None);
        let mut bad = s1.clone();
        bad[20] ^= 1;
        assert_eq!(k.open(5, &bad), None);
        assert_eq!(open_stored(None, 5, &s1), None);
        assert_eq!(
            open_stored(None, 5, &secret),
            Some(Opened::Legacy(secret.to_vec()))
        );
    }

    #[test]
    fn key_file_is_created_once_0600() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("console").join("totp.key");
        let k1 = TotpKey::load_or_create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        let k2 = TotpKey::load_or_create(&path).unwrap();
        assert_eq!(k1.0, k2.0);
        fs::write(&path, b"short").unwrap();
        assert!(TotpKey::load_or_create(&path).is_err());
    }
}
