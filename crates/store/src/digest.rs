//! Release links of the quarantine digest: the key they are signed with and the tokens.
//!
//! A token names one held entry, one recipient it was held for and an expiry, signed with
//! HMAC-SHA256 under a random 32-byte key, `DIR/keys/digest.key` (0640, group `palisade`:
//! the engine signs, the console checks; the supervisor creates it). The token is the only
//! credential of a link (no login): it cannot be forged without the key, changed without
//! breaking the signature, or used after its expiry; the engine makes it single-use (a
//! `digest_release` row in `mail.db`, written in the release's own transaction).
//!
//! Token form (URL-safe, at most [`MAX_TOKEN_LEN`]): `<expiry>.<quarantine id>.<hex of the
//! recipient>.<hex of the MAC>`. The confirmation page carries a nonce bound to the token
//! ([`DigestKey::nonce`]), so the release is a POST made from that page, not a GET a link
//! scanner could make. Neither the key nor a token is ever logged.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::StoreError;

const KEY_LEN: usize = 32;
/// Longer tokens are refused before any work is done on them.
pub const MAX_TOKEN_LEN: usize = 1024;
/// How long a confirmation page's nonce stays valid.
pub const NONCE_VALID_SECS: i64 = 3600;

const TOKEN_CONTEXT: &[u8] = b"palisade digest release v1\0";
const CONFIRM_CONTEXT: &[u8] = b"palisade sender confirmation v1\0";

/// What a token is for: a link of one kind never works as the other (each is signed under
/// its own context).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A digest's release link: `recipient` is the recipient it releases to.
    Release,
    /// A sender's confirmation link (a message held by a `confirm` rule): `recipient` is the
    /// sender who may send or cancel it.
    Confirm,
}

impl Purpose {
    fn context(self) -> &'static [u8] {
        match self {
            Purpose::Release => TOKEN_CONTEXT,
            Purpose::Confirm => CONFIRM_CONTEXT,
        }
    }
}
const NONCE_CONTEXT: &[u8] = b"palisade digest nonce v1\0";

/// The signing key. Its bytes never leave this type (`Debug` does not show them).
#[derive(Clone)]
pub struct DigestKey(hmac::Key);

impl std::fmt::Debug for DigestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DigestKey(..)")
    }
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub quarantine_id: String,
    pub recipient: String,
    /// Unix seconds; the token is refused from then on.
    pub expires_at: i64,
}

/// Why a token (or a nonce) was refused. The page says which, in plain words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("this link is not a release link (it is damaged or incomplete)")]
    Malformed,
    #[error("this link's signature does not match: it was changed or not made by this gateway")]
    BadSignature,
    #[error("this link expired")]
    Expired { at: i64 },
}

fn io_err(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Io(std::io::Error::new(
        e.kind(),
        format!("{}: {e}", path.display()),
    ))
}

impl DigestKey {
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> DigestKey {
        DigestKey(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    /// A fresh random key (tests).
    pub fn generate() -> DigestKey {
        DigestKey::from_bytes(&random_key())
    }

    /// Reads the key at `path`.
    pub fn load(path: &Path) -> Result<DigestKey, StoreError> {
        let bytes = fs::read(path).map_err(|e| io_err(path, e))?;
        let key: [u8; KEY_LEN] = bytes.try_into().map_err(|b: Vec<u8>| {
            io_err(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("a digest key is {KEY_LEN} bytes, this file has {}", b.len()),
                ),
            )
        })?;
        Ok(DigestKey::from_bytes(&key))
    }

    /// Reads the key at `path`, or creates it (mode 0640, so the group — engine and console —
    /// can read it) when there is none. Two processes racing to create it end up with the
    /// same key: the file is linked into place only if nothing is there yet. Returns whether
    /// it was created.
    pub fn load_or_create(path: &Path) -> Result<(DigestKey, bool), StoreError> {
        let mut created = false;
        if !path.exists() {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
            }
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            let _ = fs::remove_file(&tmp);
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o640)
                .open(&tmp)
                .map_err(|e| io_err(&tmp, e))?;
            // The umask may have taken bits away; 0640 is what the group needs.
            f.set_permissions(fs::Permissions::from_mode(0o640))
                .map_err(|e| io_err(&tmp, e))?;
            f.write_all(&random_key()).map_err(|e| io_err(&tmp, e))?;
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
                    created = true;
                    tracing::info!(event = "store.digest_key_created", path = %path.display());
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err(path, e)),
            }
        }
        Ok((DigestKey::load(path)?, created))
    }

    fn mac(&self, parts: &[&[u8]]) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.0);
        for p in parts {
            ctx.update(p);
            ctx.update(b"\0");
        }
        ctx.sign()
    }

    fn token_input(c: &Claims) -> [Vec<u8>; 3] {
        [
            c.expires_at.to_string().into_bytes(),
            c.quarantine_id.as_bytes().to_vec(),
            c.recipient.as_bytes().to_vec(),
        ]
    }

    /// The release token for `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        self.sign_for(Purpose::Release, claims)
    }

    /// The token for `claims`, for `purpose`.
    pub fn sign_for(&self, purpose: Purpose, claims: &Claims) -> String {
        let [exp, qid, rcpt] = Self::token_input(claims);
        let tag = self.mac(&[purpose.context(), &exp, &qid, &rcpt]);
        format!(
            "{}.{}.{}.{}",
            claims.expires_at,
            claims.quarantine_id,
            hex::encode(claims.recipient.as_bytes()),
            hex::encode(tag.as_ref())
        )
    }

    /// What `token` says, if it was signed with this key and has not expired at `now`. The
    /// signature is checked (in constant time) before the expiry is looked at.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        self.verify_for(Purpose::Release, token, now)
    }

    /// [`DigestKey::verify`] for a token of `purpose`.
    pub fn verify_for(
        &self,
        purpose: Purpose,
        token: &str,
        now: i64,
    ) -> Result<Claims, TokenError> {
        let claims = parse(token)?;
        let mac = token
            .rsplit('.')
            .next()
            .and_then(|m| hex::decode(m).ok())
            .ok_or(TokenError::Malformed)?;
        let [exp, qid, rcpt] = Self::token_input(&claims);
        let mut input = Vec::new();
        for p in [purpose.context(), &exp, &qid, &rcpt] {
            input.extend_from_slice(p);
            input.push(0);
        }
        hmac::verify(&self.0, &input, &mac).map_err(|_| TokenError::BadSignature)?;
        if now >= claims.expires_at {
            return Err(TokenError::Expired {
                at: claims.expires_at,
            });
        }
        Ok(claims)
    }

    /// A fresh nonce for the confirmation page of `token`, made at `now`: only a POST that
    /// carries it (from that page, within [`NONCE_VALID_SECS`]) releases.
    pub fn nonce(&self, token: &str, now: i64) -> String {
        let mut r = [0u8; 16];
        SystemRandom::new()
            .fill(&mut r)
            .expect("system random source");
        let ts = now.to_string();
        let tag = self.mac(&[NONCE_CONTEXT, token.as_bytes(), ts.as_bytes(), &r]);
        format!(
            "{ts}.{}.{}",
            hex::encode(r),
            hex::encode(&tag.as_ref()[..16])
        )
    }

    /// Whether `nonce` was made by [`DigestKey::nonce`] for `token` less than
    /// [`NONCE_VALID_SECS`] before `now`.
    pub fn nonce_ok(&self, token: &str, nonce: &str, now: i64) -> bool {
        let mut it = nonce.split('.');
        let (Some(ts), Some(r), Some(tag), None) = (it.next(), it.next(), it.next(), it.next())
        else {
            return false;
        };
        let (Ok(at), Ok(r), Ok(tag)) = (ts.parse::<i64>(), hex::decode(r), hex::decode(tag)) else {
            return false;
        };
        if r.len() != 16 || tag.len() != 16 || !(0..NONCE_VALID_SECS).contains(&(now - at)) {
            return false;
        }
        let want = self.mac(&[NONCE_CONTEXT, token.as_bytes(), ts.as_bytes(), &r]);
        subtle::ConstantTimeEq::ct_eq(&want.as_ref()[..16], tag.as_slice()).into()
    }
}

/// The claims of a well-formed token, unverified (only for [`DigestKey::verify`]).
fn parse(token: &str) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let mut it = token.split('.');
    let (Some(exp), Some(qid), Some(rcpt), Some(_mac), None) =
        (it.next(), it.next(), it.next(), it.next(), it.next())
    else {
        return Err(TokenError::Malformed);
    };
    let expires_at = exp.parse::<i64>().map_err(|_| TokenError::Malformed)?;
    if qid.is_empty() || qid.len() > 64 || !qid.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(TokenError::Malformed);
    }
    let recipient = hex::decode(rcpt)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|r| !r.is_empty() && !r.chars().any(char::is_control))
        .ok_or(TokenError::Malformed)?;
    Ok(Claims {
        quarantine_id: qid.to_string(),
        recipient,
        expires_at,
    })
}

/// The name a used token is recorded under (`digest_release.token`): its SHA-256, so the
/// table holds no credential.
pub fn token_id(token: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref())
}

fn random_key() -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    SystemRandom::new()
        .fill(&mut k)
        .expect("system random source");
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            quarantine_id: "0190ABCDEF0123456789".into(),
            recipient: "alice@hospital.test".into(),
            expires_at: 2_000_000_000,
        }
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let key = DigestKey::generate();
        let t = key.sign(&claims());
        assert!(t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'));
        assert_eq!(key.verify(&t, 1_999_999_999), Ok(claims()));
        assert_eq!(
            key.verify(&t, 2_000_000_000),
            Err(TokenError::Expired { at: 2_000_000_000 })
        );
    }

    #[test]
    fn a_release_link_is_no_confirmation_link_and_back() {
        let key = DigestKey::generate();
        let release = key.sign(&claims());
        let confirm = key.sign_for(Purpose::Confirm, &claims());
        assert_ne!(release, confirm);
        assert_eq!(key.verify_for(Purpose::Confirm, &confirm, 1), Ok(claims()));
        assert_eq!(
            key.verify_for(Purpose::Confirm, &release, 1),
            Err(TokenError::BadSignature)
        );
        assert_eq!(key.verify(&confirm, 1), Err(TokenError::BadSignature));
    }

    #[test]
    fn tampered_tokens_are_refused() {
        let key = DigestKey::generate();
        let t = key.sign(&claims());
        let parts: Vec<&str> = t.split('.').collect();
        // Another recipient, another entry, a later expiry: each breaks the signature.
        let other_rcpt = format!(
            "{}.{}.{}.{}",
            parts[0],
            parts[1],
            hex::encode("mallory@hospital.test"),
            parts[3]
        );
        let other_entry = format!(
            "{}.0190ABCDEF0123456788.{}.{}",
            parts[0], parts[2], parts[3]
        );
        let later = format!("2100000000.{}.{}.{}", parts[1], parts[2], parts[3]);
        for bad in [other_rcpt, other_entry, later] {
            assert_eq!(key.verify(&bad, 0), Err(TokenError::BadSignature), "{bad}");
        }
        // One flipped MAC digit.
        let mut flipped = t.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            key.verify(std::str::from_utf8(&flipped).unwrap(), 0),
            Err(TokenError::BadSignature)
        );
        // Another key's token.
        assert_eq!(
            DigestKey::generate().verify(&t, 0),
            Err(TokenError::BadSignature)
        );
        // An expired token that was also tampered with says "signature", not "expired".
        assert_eq!(
            key.verify(
                &format!("1.{}.{}.{}", parts[1], parts[2], parts[3]),
                2_100_000_000
            ),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn malformed_tokens_are_refused_before_any_work() {
        let key = DigestKey::generate();
        for bad in [
            "",
            "x",
            "1.2.3",
            "1.2.3.4.5",
            "soon.0190ABCDEF0123456789.61.00",
            "1.../..61.00",
            "1.0190ABCDEF0123456789.zz.00",
            "1.0190ABCDEF0123456789..00",
            "1.0190ABCDEF0123456789.0a.00",
        ] {
            assert_eq!(key.verify(bad, 0), Err(TokenError::Malformed), "{bad:?}");
        }
        let long = format!("1.Q.{}.00", "61".repeat(MAX_TOKEN_LEN));
        assert_eq!(key.verify(&long, 0), Err(TokenError::Malformed));
    }

    #[test]
    fn nonces_are_bound_to_their_token_and_expire() {
        let key = DigestKey::generate();
        let t = key.sign(&claims());
        let other = key.sign(&Claims {
            recipient: "bob@hospital.test".into(),
            ..claims()
        });
        let n = key.nonce(&t, 1000);
        assert!(key.nonce_ok(&t, &n, 1000));
        assert!(key.nonce_ok(&t, &n, 1000 + NONCE_VALID_SECS - 1));
        assert!(!key.nonce_ok(&t, &n, 1000 + NONCE_VALID_SECS));
        assert!(!key.nonce_ok(&other, &n, 1000));
        assert!(!DigestKey::generate().nonce_ok(&t, &n, 1000));
        assert!(!key.nonce_ok(&t, "", 1000));
        assert!(!key.nonce_ok(&t, &n.replacen("1000", "1001", 1), 1001));
    }

    #[test]
    fn the_key_file_is_created_once_readable_by_the_group() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("keys/digest.key");
        let (k1, created) = DigestKey::load_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let (k2, created) = DigestKey::load_or_create(&path).unwrap();
        assert!(!created);
        let t = k1.sign(&claims());
        assert!(k2.verify(&t, 0).is_ok());
        assert!(format!("{k1:?}").contains(".."));
        fs::write(&path, b"short").unwrap();
        assert!(DigestKey::load(&path).is_err());
    }

    #[test]
    fn token_ids_hide_the_token() {
        let id = token_id("a.b.c.d");
        assert_eq!(id.len(), 64);
        assert!(!id.contains("a.b"));
    }
}
