//! Inbound: a whole message from outside → what its S/MIME layers say, and the message with
//! its encryption removed when it was encrypted to this gateway.
//!
//! One encryption layer and one signature layer are opened (a signature inside the encryption,
//! as every client and [`crate::protect`] make it, or a signature on the message itself).
//! Signatures stay in the message the staff receive (their client can check them again); only
//! the encryption is removed.

use crate::mime::{content_split, header, param, split_entity, to_crlf};
use crate::smime::{self, CertInfo, GatewayKey};
use crate::{Error, b64};

/// What happened to the message's encryption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decryption {
    /// The message was not encrypted.
    NotEncrypted,
    /// Decrypted with the gateway key; `cipher` names the content cipher.
    Decrypted { cipher: String },
    /// Encrypted, but not to this gateway (end-to-end mail between people, or no gateway key):
    /// passed on encrypted, listed as such.
    NotAddressed(String),
    /// Encrypted to this gateway and it could not be opened (damaged, wrong key, unsupported).
    Failed(String),
}

/// What the message's signature says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    Unsigned,
    /// Every signer's signature verifies over the content.
    Valid {
        signer: CertInfo,
        /// `Some(true)`: the signer's chain reaches one of the trust anchors for
        /// emailProtection; `Some(false)`: it does not; `None`: no anchors were given.
        chain_valid: Option<bool>,
        /// The signer's certificate is one of the pinned ones (a partner's).
        pinned: bool,
    },
    /// The signature does not verify (the content was altered, or the signature is broken).
    Invalid(String),
}

/// The result of [`open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The message with its encryption removed (its routing fields as they were,
    /// `MIME-Version: 1.0`, then the decrypted entity), when it was decrypted.
    pub message: Option<Vec<u8>>,
    pub decryption: Decryption,
    pub signature: Signature,
}

/// At most this many signers are checked (each costs a public-key operation).
pub const MAX_SIGNERS: usize = 8;

fn kind(entity: &[u8]) -> Kind {
    let (h, body) = split_entity(entity);
    let Some(ct) = header(h, "Content-Type") else {
        return Kind::Plain;
    };
    let lc = ct.to_ascii_lowercase();
    if lc.starts_with("multipart/signed") {
        let proto = param(&ct, "protocol")
            .unwrap_or_default()
            .to_ascii_lowercase();
        if proto.contains("pkcs7-signature") {
            return Kind::Signed;
        }
        return Kind::Plain;
    }
    if lc.starts_with("application/pkcs7-mime") || lc.starts_with("application/x-pkcs7-mime") {
        let st = param(&ct, "smime-type")
            .unwrap_or_default()
            .to_ascii_lowercase();
        return match st.as_str() {
            "enveloped-data" | "authenveloped-data" => Kind::Enveloped,
            "signed-data" => Kind::Signed,
            // Older clients leave smime-type out: the CMS content type decides.
            _ => match b64(body).and_then(|d| smime::content_type(&d)) {
                Some(t) if t == "signed-data" => Kind::Signed,
                Some(t) if t == "enveloped-data" => Kind::Enveloped,
                _ => Kind::Plain,
            },
        };
    }
    Kind::Plain
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Signed,
    Enveloped,
}

/// Whether `message`'s content is S/MIME (encrypted or signed): worth calling [`open`] on.
pub fn is_smime(message: &[u8]) -> bool {
    let (_, inner) = content_split(message);
    kind(&inner) != Kind::Plain
}

/// Opens `message`: decrypts it with `key` when it is encrypted to it, and checks the
/// signature it carries (inside the encryption, or on the message) against `anchors` (DER
/// CA certificates for emailProtection) and `pinned` (DER certificates trusted as they are).
pub fn open(
    message: &[u8],
    key: Option<&GatewayKey>,
    anchors: &[Vec<u8>],
    pinned: &[Vec<u8>],
) -> Opened {
    let (outer, inner) = content_split(message);
    let mut opened = Opened {
        message: None,
        decryption: Decryption::NotEncrypted,
        signature: Signature::Unsigned,
    };
    let entity = match kind(&inner) {
        Kind::Plain => return opened,
        Kind::Signed => inner,
        Kind::Enveloped => {
            let Some(key) = key else {
                opened.decryption =
                    Decryption::NotAddressed("this gateway has no S/MIME key".into());
                return opened;
            };
            match smime::decrypt_entity_with(&inner, key) {
                Ok((plain, cipher)) => {
                    let plain = to_crlf(&plain);
                    let mut m = outer;
                    m.extend_from_slice(b"MIME-Version: 1.0\r\n");
                    m.extend_from_slice(&plain);
                    opened.message = Some(m);
                    opened.decryption = Decryption::Decrypted { cipher };
                    plain
                }
                Err(Error::NotAddressed(e)) => {
                    opened.decryption = Decryption::NotAddressed(e);
                    return opened;
                }
                Err(e) => {
                    opened.decryption = Decryption::Failed(e.to_string());
                    return opened;
                }
            }
        }
    };
    if kind(&entity) != Kind::Signed {
        return opened;
    }
    opened.signature = match smime::verify_entity(&entity, anchors) {
        Ok(v) => {
            let fp = &v.signer.fingerprint;
            let pinned = pinned.iter().any(|p| smime::fingerprint(p) == *fp);
            Signature::Valid {
                signer: v.signer,
                chain_valid: v.chain_valid,
                pinned,
            }
        }
        Err(e) => Signature::Invalid(e.to_string()),
    };
    opened
}
