//! OpenPGP with sequoia (nettle backend): PGP/MIME (RFC 3156) for whole messages.
//!
//! - [`pgp_protect`]: a message → the same message whose content is signed with the gateway's
//!   key (when there is one) and encrypted to the partner's certificates, as one OpenPGP
//!   message (RFC 3156 §6.2, combined), in `multipart/encrypted;
//!   protocol="application/pgp-encrypted"`. Routing fields stay outside, as with S/MIME.
//! - [`pgp_open`]: the reverse for mail from outside: PGP/MIME, or an inline armored message
//!   as the body of a `text/plain` message (`gpg --encrypt --sign --armor` pasted or piped);
//!   the signature is checked against the pinned partner certificates.
//! - [`PgpKey`]: the organisation's own key (RFC 4880 profile: v4 keys every deployed GnuPG
//!   reads), generated or imported.

use std::io::{Read, Write};

use sequoia_openpgp as openpgp;

use openpgp::cert::prelude::*;
use openpgp::crypto::SessionKey;
use openpgp::packet::{PKESK, SKESK};
use openpgp::parse::Parse;
use openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, MessageLayer, MessageStructure, VerificationHelper,
};
use openpgp::policy::StandardPolicy;
use openpgp::serialize::SerializeInto;
use openpgp::serialize::stream::{Armorer, Encryptor, LiteralWriter, Message, Signer};
use openpgp::types::SymmetricAlgorithm;

use crate::Error;
use crate::mime::{content_split, find, header, param, split_entity, to_crlf};
use crate::open::{Decryption, Signature};

static POLICY: StandardPolicy<'static> = StandardPolicy::new();

/// At most this much plaintext comes out of one message (a compressed packet can expand).
pub const MAX_PLAINTEXT: u64 = 256 * 1024 * 1024;

fn pgp_err(e: impl std::fmt::Display) -> Error {
    Error::Pgp(e.to_string())
}

/// What the partner directory shows of an OpenPGP certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgpInfo {
    /// Upper-case hex.
    pub fingerprint: String,
    pub user_ids: Vec<String>,
    /// The addresses of the user IDs, lower case.
    pub emails: Vec<String>,
    /// Whether it has a valid, unexpired, unrevoked key for transport encryption now.
    pub can_encrypt: bool,
    /// Unix seconds; `None` when the primary key does not expire.
    pub expires: Option<i64>,
    pub algorithm: String,
}

fn certs(armored: &str) -> Result<Vec<Cert>, Error> {
    let parser = CertParser::from_bytes(armored.as_bytes()).map_err(pgp_err)?;
    let certs = parser
        .collect::<Result<Vec<Cert>, _>>()
        .map_err(|e| pgp_err(format!("not an OpenPGP certificate: {e}")))?;
    if certs.is_empty() {
        return Err(pgp_err("no OpenPGP certificate"));
    }
    Ok(certs)
}

/// Details of every certificate in `armored` (a public key block, possibly several).
pub fn pgp_certificate_info(armored: &str) -> Result<Vec<PgpInfo>, Error> {
    certs(armored)?
        .iter()
        .map(|c| {
            if c.is_tsk() {
                return Err(pgp_err(
                    "this is a secret key: give the partner's public key",
                ));
            }
            let valid = c.with_policy(&POLICY, None).ok();
            let can_encrypt = valid.as_ref().is_some_and(|v| {
                v.keys()
                    .supported()
                    .alive()
                    .revoked(false)
                    .for_transport_encryption()
                    .next()
                    .is_some()
            });
            let expires = valid
                .as_ref()
                .and_then(|v| v.primary_key().key_expiration_time())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as i64);
            let user_ids: Vec<String> = c
                .userids()
                .map(|u| String::from_utf8_lossy(u.userid().value()).into_owned())
                .collect();
            let emails = c
                .userids()
                .filter_map(|u| u.userid().email().ok().flatten())
                .map(|e| e.to_ascii_lowercase())
                .collect();
            Ok(PgpInfo {
                fingerprint: c.fingerprint().to_hex(),
                user_ids,
                emails,
                can_encrypt,
                expires,
                algorithm: c.primary_key().key().pk_algo().to_string(),
            })
        })
        .collect()
}

/// The organisation's own OpenPGP key (with its secret parts): signs outbound mail, decrypts
/// inbound.
pub struct PgpKey {
    cert: Cert,
}

impl std::fmt::Debug for PgpKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("PgpKey")
            .field("fingerprint", &self.cert.fingerprint().to_hex())
            .finish_non_exhaustive()
    }
}

impl PgpKey {
    /// A new key for `user_id` (`Name <address>`): Curve25519 signing primary and encryption
    /// subkey, RFC 4880 profile, valid `days`. (armored secret key, armored public key).
    pub fn generate(user_id: &str, days: u32) -> Result<(String, String), Error> {
        let (cert, _revocation) = CertBuilder::general_purpose(Some(user_id))
            .set_cipher_suite(CipherSuite::Cv25519)
            .set_profile(openpgp::Profile::RFC4880)
            .map_err(pgp_err)?
            .set_validity_period(std::time::Duration::from_secs(u64::from(days) * 86400))
            .generate()
            .map_err(pgp_err)?;
        let secret = String::from_utf8(cert.as_tsk().armored().to_vec().map_err(pgp_err)?)
            .map_err(pgp_err)?;
        let public =
            String::from_utf8(cert.armored().to_vec().map_err(pgp_err)?).map_err(pgp_err)?;
        Ok((secret, public))
    }

    /// From an armored secret key (unencrypted: the appliance has nobody to type a passphrase).
    pub fn from_armored(secret: &str) -> Result<PgpKey, Error> {
        let cert = Cert::from_bytes(secret.as_bytes()).map_err(pgp_err)?;
        if !cert.is_tsk() {
            return Err(Error::Key("not a secret key".into()));
        }
        let usable = cert
            .keys()
            .unencrypted_secret()
            .with_policy(&POLICY, None)
            .supported()
            .alive()
            .revoked(false)
            .for_signing()
            .next()
            .is_some();
        if !usable {
            return Err(Error::Key(
                "no usable unencrypted signing key (a passphrase-protected key cannot be used)"
                    .into(),
            ));
        }
        Ok(PgpKey { cert })
    }

    pub fn fingerprint(&self) -> String {
        self.cert.fingerprint().to_hex()
    }

    /// The public certificate, armored.
    pub fn public_armored(&self) -> Result<String, Error> {
        String::from_utf8(self.cert.armored().to_vec().map_err(pgp_err)?).map_err(pgp_err)
    }
}

/// An entity (fields + blank line + body) → an armored OpenPGP message: signed by `signer`
/// when given, encrypted to every valid encryption key of `recipients`.
fn sign_encrypt(
    entity: &[u8],
    recipients: &[Cert],
    signer: Option<&PgpKey>,
) -> Result<Vec<u8>, Error> {
    let mut keys = Vec::new();
    for c in recipients {
        let v = c.with_policy(&POLICY, None).map_err(pgp_err)?;
        let before = keys.len();
        keys.extend(
            v.keys()
                .supported()
                .alive()
                .revoked(false)
                .for_transport_encryption(),
        );
        if keys.len() == before {
            return Err(Error::Encrypt(format!(
                "{}: no valid encryption key (expired or revoked?)",
                c.fingerprint()
            )));
        }
    }
    if keys.is_empty() {
        return Err(Error::Encrypt("no recipient key".into()));
    }
    let mut out = Vec::with_capacity(entity.len() * 4 / 3 + 2048);
    {
        let m = Message::new(&mut out);
        let m = Armorer::new(m).build().map_err(pgp_err)?;
        let m = Encryptor::for_recipients(m, keys)
            .symmetric_algo(SymmetricAlgorithm::AES256)
            .build()
            .map_err(pgp_err)?;
        let m = match signer {
            Some(k) => {
                let pair = k
                    .cert
                    .keys()
                    .unencrypted_secret()
                    .with_policy(&POLICY, None)
                    .supported()
                    .alive()
                    .revoked(false)
                    .for_signing()
                    .next()
                    .ok_or_else(|| Error::Key("no signing key".into()))?
                    .key()
                    .clone()
                    .into_keypair()
                    .map_err(pgp_err)?;
                Signer::new(m, pair)
                    .map_err(pgp_err)?
                    .build()
                    .map_err(pgp_err)?
            }
            None => m,
        };
        let mut w = LiteralWriter::new(m).build().map_err(pgp_err)?;
        w.write_all(entity).map_err(pgp_err)?;
        w.finalize().map_err(pgp_err)?;
    }
    Ok(to_crlf(&out))
}

/// A whole message → the same message with its content signed by `signer` (when given) and
/// encrypted to `recipients` (armored certificates), as PGP/MIME.
pub fn pgp_protect(
    message: &[u8],
    recipients: &[String],
    signer: Option<&PgpKey>,
) -> Result<Vec<u8>, Error> {
    let mut all = Vec::new();
    for r in recipients {
        all.extend(certs(r)?);
    }
    let (outer, inner) = content_split(message);
    let armored = sign_encrypt(&inner, &all, signer)?;
    let boundary = format!("----=_Palisade_pgp_{:016x}", rand::random::<u64>());
    let mut out = outer;
    out.extend_from_slice(
        format!(
            "MIME-Version: 1.0\r\n\
             Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n boundary=\"{boundary}\"\r\n\
             \r\n\
             This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n\
             --{boundary}\r\n\
             Content-Type: application/pgp-encrypted\r\n\
             Content-Description: PGP/MIME version identification\r\n\
             \r\n\
             Version: 1\r\n\
             \r\n\
             --{boundary}\r\n\
             Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\
             Content-Description: OpenPGP encrypted message\r\n\
             Content-Disposition: inline; filename=\"encrypted.asc\"\r\n\
             \r\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(&armored);
    if !armored.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Ok(out)
}

/// How the message carries OpenPGP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `multipart/encrypted; protocol="application/pgp-encrypted"`.
    Mime,
    /// A `text/plain` body that is an armored message.
    Inline,
}

const BEGIN: &[u8] = b"-----BEGIN PGP MESSAGE-----";
const END: &[u8] = b"-----END PGP MESSAGE-----";

fn form(entity: &[u8]) -> Option<Form> {
    let (h, body) = split_entity(entity);
    let ct = header(h, "Content-Type").unwrap_or_else(|| "text/plain".into());
    let lc = ct.to_ascii_lowercase();
    if lc.starts_with("multipart/encrypted") {
        let proto = param(&ct, "protocol")?.to_ascii_lowercase();
        return (proto == "application/pgp-encrypted").then_some(Form::Mime);
    }
    if lc.starts_with("text/plain") {
        let start = body
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(body.len());
        if body[start..].starts_with(BEGIN) {
            return Some(Form::Inline);
        }
    }
    None
}

/// Whether `message`'s content is OpenPGP (PGP/MIME or an inline armored message).
pub fn is_pgp(message: &[u8]) -> bool {
    let (_, inner) = content_split(message);
    form(&inner).is_some()
}

/// The armored block of a body.
fn armored_block(body: &[u8]) -> Option<&[u8]> {
    let s = find(body, BEGIN)?;
    let e = find(&body[s..], END)? + s + END.len();
    Some(&body[s..e])
}

/// What [`pgp_open`] found.
pub struct PgpOpened {
    pub message: Option<Vec<u8>>,
    pub decryption: Decryption,
    pub signature: Signature,
}

/// Opens an OpenPGP message: decrypts it with `key`, checks its signatures against `pinned`
/// (armored partner certificates).
pub fn pgp_open(message: &[u8], key: Option<&PgpKey>, pinned: &[String]) -> PgpOpened {
    let (outer, inner) = content_split(message);
    let mut r = PgpOpened {
        message: None,
        decryption: Decryption::NotEncrypted,
        signature: Signature::Unsigned,
    };
    let Some(form) = form(&inner) else {
        return r;
    };
    let (_, body) = split_entity(&inner);
    let Some(block) = armored_block(body) else {
        r.decryption = Decryption::Failed("no armored OpenPGP message in the body".into());
        return r;
    };
    let Some(key) = key else {
        r.decryption = Decryption::NotAddressed("this gateway has no OpenPGP key".into());
        return r;
    };
    let senders: Vec<Cert> = pinned
        .iter()
        .filter_map(|p| certs(p).ok())
        .flatten()
        .collect();
    let helper = Helper {
        me: &key.cert,
        senders: &senders,
        addressed: false,
        good: Vec::new(),
        bad: Vec::new(),
        cipher: None,
    };
    let mut plain = Vec::new();
    let result = DecryptorBuilder::from_bytes(block)
        .and_then(|b| b.with_policy(&POLICY, None, helper))
        .and_then(|mut d| {
            (&mut d)
                .take(MAX_PLAINTEXT + 1)
                .read_to_end(&mut plain)
                .map_err(openpgp::anyhow::Error::from)?;
            Ok(d)
        });
    let helper = match result {
        Ok(d) => d.into_helper(),
        Err(e) => {
            let text = e.to_string();
            r.decryption = if text.contains(NOT_ADDRESSED) {
                Decryption::NotAddressed("not encrypted to this gateway's key".into())
            } else {
                Decryption::Failed(format!("{e:#}"))
            };
            return r;
        }
    };
    if plain.len() as u64 > MAX_PLAINTEXT {
        r.decryption = Decryption::Failed("the plaintext is larger than 256 MiB".into());
        return r;
    }
    r.decryption = Decryption::Decrypted {
        cipher: helper.cipher.clone().unwrap_or_else(|| "openpgp".into()),
    };
    r.signature = if let Some(e) = helper.bad.first() {
        Signature::Invalid(e.clone())
    } else if let Some((fp, emails)) = helper.good.first() {
        Signature::Valid {
            signer: crate::CertInfo {
                subject: fp.clone(),
                issuer: String::new(),
                emails: emails.clone(),
                not_before: 0,
                not_after: 0,
                key: "OpenPGP".into(),
                can_encrypt: false,
                fingerprint: fp.clone(),
            },
            chain_valid: None,
            pinned: true,
        }
    } else {
        Signature::Unsigned
    };
    let plain = to_crlf(&plain);
    let mut m = outer;
    m.extend_from_slice(b"MIME-Version: 1.0\r\n");
    match form {
        // The literal data is the MIME entity that was encrypted.
        Form::Mime => m.extend_from_slice(&plain),
        // The literal data is the text: it keeps the part's own fields, minus its encoding.
        Form::Inline => {
            let (h, _) = split_entity(&inner);
            let ct = header(h, "Content-Type").unwrap_or_else(|| "text/plain".into());
            let charset = param(&ct, "charset").unwrap_or_else(|| "utf-8".into());
            m.extend_from_slice(
                format!(
                    "Content-Type: text/plain; charset={}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
                    charset.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "")
                )
                .as_bytes(),
            );
            m.extend_from_slice(&plain);
        }
    }
    r.message = Some(m);
    r
}

const NOT_ADDRESSED: &str = "not encrypted to this gateway";

struct Helper<'a> {
    me: &'a Cert,
    senders: &'a [Cert],
    addressed: bool,
    /// (fingerprint, addresses) of each good signature.
    good: Vec<(String, Vec<String>)>,
    bad: Vec<String>,
    cipher: Option<String>,
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, _ids: &[openpgp::KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(self.senders.to_vec())
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        use openpgp::parse::stream::VerificationError;
        for layer in structure.into_iter() {
            match layer {
                MessageLayer::Encryption { sym_algo, .. } => {
                    self.cipher = Some(format!("openpgp {sym_algo}").to_ascii_lowercase());
                }
                MessageLayer::Compression { .. } => {}
                MessageLayer::SignatureGroup { results } => {
                    for r in results {
                        match r {
                            Ok(g) => {
                                let emails =
                                    g.ka.cert()
                                        .userids()
                                        .filter_map(|u| u.userid().email().ok().flatten())
                                        .map(|e| e.to_ascii_lowercase())
                                        .collect();
                                self.good.push((g.ka.cert().fingerprint().to_hex(), emails));
                            }
                            // A signer we have no certificate for: not a failure of the
                            // message, just unverified.
                            Err(VerificationError::MissingKey { .. }) => {}
                            Err(e) => self.bad.push(e.to_string()),
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl DecryptionHelper for Helper<'_> {
    fn decrypt(
        &mut self,
        pkesks: &[PKESK],
        _skesks: &[SKESK],
        sym_algo: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
    ) -> openpgp::Result<Option<Cert>> {
        let ours: Vec<_> = self
            .me
            .keys()
            .unencrypted_secret()
            .with_policy(&POLICY, None)
            .supported()
            .for_transport_encryption()
            .map(|ka| ka.key().clone())
            .collect();
        for pkesk in pkesks {
            let Some(k) = ours.iter().find(|k| {
                pkesk
                    .recipient()
                    .is_none_or(|r| r.aliases(openpgp::KeyHandle::from(k.fingerprint())))
            }) else {
                continue;
            };
            self.addressed = true;
            let mut pair = k.clone().into_keypair()?;
            if let Some((algo, sk)) = pkesk.decrypt(&mut pair, sym_algo)
                && decrypt(algo, &sk)
            {
                return Ok(Some(self.me.clone()));
            }
        }
        if self.addressed {
            Err(openpgp::anyhow::anyhow!(
                "the session key cannot be recovered"
            ))
        } else {
            Err(openpgp::anyhow::anyhow!("{NOT_ADDRESSED}'s key"))
        }
    }
}
