//! Gateway encryption, pure: S/MIME (RFC 8551, CMS RFC 5652) for whole messages.
//!
//! - [`protect`]: a message as it will leave (RFC 5322, CRLF) → the same message whose content
//!   (the `Content-*` fields and the body) is signed with the gateway's key when there is one
//!   (`multipart/signed`, SHA-256, detached) and then encrypted (`application/pkcs7-mime;
//!   smime-type=enveloped-data`, AES-256-CBC, the content key transported to every recipient
//!   certificate with RSA PKCS#1 v1.5, as `openssl cms -encrypt` does). The other header
//!   fields (From, To, Subject, Date, Message-ID, trace fields) stay outside, readable by every
//!   hop, as in any S/MIME gateway.
//! - [`decrypt_entity`] and [`verify_entity`]: the reverse, for mail from partners;
//!   [`open`] applies them to a whole inbound message (decrypted message, signature result).
//! - [`certificate_info`], [`pem_certificates`]: what the partner directory shows and checks.
//! - [`GatewayKey`]: the organisation's own certificate and RSA key; [`GatewayKey::generate`]
//!   makes a self-signed one for a first installation.
//!
//! Only RSA recipients and signers are supported: RustCrypto cms 0.3.0-rc.0's EC
//! key-agreement builder is broken (it wraps the content key under an all-zero key), so EC
//! certificates are refused with a clear error rather than producing mail anyone can read.

#![forbid(unsafe_code)]

mod mime;
mod open;
mod pgp;
mod smime;

pub use pgp::{
    MAX_PLAINTEXT, PgpInfo, PgpKey, PgpOpened, is_pgp, pgp_certificate_info, pgp_open, pgp_protect,
};

pub use open::{Decryption, MAX_SIGNERS, Opened, Signature, is_smime, open};

pub use mime::{content_split, to_crlf};
pub use smime::{
    CertInfo, GatewayKey, Verified, certificate_info, decrypt_entity, encrypt_entity, fingerprint,
    pem_certificates, protect, sign_entity, verify_entity,
};

fn b64(body: &[u8]) -> Option<Vec<u8>> {
    mime::b64_decode_loose(body)
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("key: {0}")]
    Key(String),
    #[error("encryption: {0}")]
    Encrypt(String),
    #[error("decryption: {0}")]
    Decrypt(String),
    #[error("signature: {0}")]
    Signature(String),
    /// Encrypted, but not to this gateway's certificate.
    #[error("decryption: {0}")]
    NotAddressed(String),
    #[error("OpenPGP: {0}")]
    Pgp(String),
    #[error("not S/MIME: {0}")]
    NotSmime(String),
}

#[cfg(test)]
mod tests;
