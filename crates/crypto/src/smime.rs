//! S/MIME with RustCrypto `cms`: enveloped-data (AES-256-CBC, RSA key transport) and
//! detached signed-data (SHA-256); signatures checked with ring, chains with rustls-webpki.

use cipher::{BlockModeDecrypt, KeyIvInit, block_padding::Pkcs7};
use cms::builder::{
    ContentEncryptionAlgorithm, EnvelopedDataBuilder, KeyEncryptionInfo,
    KeyTransRecipientInfoBuilder, SignedDataBuilder, SignerInfoBuilder,
    create_signing_time_attribute,
};
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::ContentInfo;
use cms::enveloped_data::{EnvelopedData, RecipientIdentifier, RecipientInfo};
use cms::signed_data::{EncapsulatedContentInfo, SignedData, SignerIdentifier};
use const_oid::db::{rfc5911, rfc5912};
use der::asn1::OctetString;
use der::{Any, AnyRef, Decode, Encode};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey};
use sha2::Digest;
use spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;

use crate::Error;
use crate::mime::{
    b64_decode_loose, b64_lines, content_split, find, header, param, split_entity, to_crlf,
};

type Rng = rand::rngs::ThreadRng;

/// id-kp-emailProtection (1.3.6.1.5.5.7.3.4), the DER value bytes.
const EKU_EMAIL_PROTECTION: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x04];

/// What the partner directory shows of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// rfc822Name entries of the subject alternative names, lower case.
    pub emails: Vec<String>,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// `RSA 3072`, `EC`, …
    pub key: String,
    /// Whether this gateway can encrypt to it (RSA keys, for now).
    pub can_encrypt: bool,
    /// SHA-256 of the DER, hex, lower case.
    pub fingerprint: String,
}

fn cert_err(e: impl std::fmt::Display) -> Error {
    Error::Certificate(e.to_string())
}

/// Every `CERTIFICATE` block of a PEM text, DER; an error when there is none or one is broken.
pub fn pem_certificates(pem: &str) -> Result<Vec<Vec<u8>>, Error> {
    use rustls_pki_types::pem::PemObject;
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(cert_err("no PEM certificate (-----BEGIN CERTIFICATE-----)"));
    }
    Ok(certs.into_iter().map(|c| c.to_vec()).collect())
}

fn parse(der: &[u8]) -> Result<Certificate, Error> {
    Certificate::from_der(der).map_err(|e| cert_err(format!("not an X.509 certificate: {e}")))
}

fn unix(t: &x509_cert::time::Time) -> i64 {
    t.to_unix_duration().as_secs() as i64
}

/// Details of a DER certificate.
pub fn certificate_info(der: &[u8]) -> Result<CertInfo, Error> {
    let c = parse(der)?;
    let tbs = c.tbs_certificate();
    let spki = tbs.subject_public_key_info();
    let (key, can_encrypt) = if spki.algorithm.oid == rfc5912::RSA_ENCRYPTION {
        let bits = spki
            .to_der()
            .ok()
            .and_then(|d| rsa::PublicKey::from_public_key_der(&d).ok())
            .map(|k| {
                use rsa::traits::PublicKeyParts;
                k.size() * 8
            })
            .unwrap_or(0);
        (format!("RSA {bits}"), bits >= 2048)
    } else if spki.algorithm.oid == rfc5912::ID_EC_PUBLIC_KEY {
        ("EC".to_string(), false)
    } else {
        (spki.algorithm.oid.to_string(), false)
    };
    let mut emails = Vec::new();
    if let Ok(Some((_, san))) = tbs.get_extension::<x509_cert::ext::pkix::SubjectAltName>() {
        for n in san.0 {
            if let x509_cert::ext::pkix::name::GeneralName::Rfc822Name(e) = n {
                emails.push(e.to_string().to_ascii_lowercase());
            }
        }
    }
    let validity = tbs.validity();
    Ok(CertInfo {
        subject: tbs.subject().to_string(),
        issuer: tbs.issuer().to_string(),
        emails,
        not_before: unix(&validity.not_before),
        not_after: unix(&validity.not_after),
        key,
        can_encrypt,
        fingerprint: hex(&sha2::Sha256::digest(der)),
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn issuer_serial(c: &Certificate) -> IssuerAndSerialNumber {
    IssuerAndSerialNumber {
        issuer: c.tbs_certificate().issuer().clone(),
        serial_number: c.tbs_certificate().serial_number().clone(),
    }
}

/// The organisation's own certificate and RSA key: signs outbound mail, decrypts inbound.
pub struct GatewayKey {
    cert: Certificate,
    cert_der: Vec<u8>,
    key: rsa::PrivateKey,
}

impl std::fmt::Debug for GatewayKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("GatewayKey")
            .field(
                "subject",
                &self.cert.tbs_certificate().subject().to_string(),
            )
            .finish_non_exhaustive()
    }
}

impl GatewayKey {
    /// From a PEM certificate and its PKCS#8 PEM RSA key; they must belong together.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<GatewayKey, Error> {
        let cert_der = pem_certificates(cert_pem)?
            .into_iter()
            .next()
            .expect("pem_certificates returns at least one");
        let cert = parse(&cert_der)?;
        let key = rsa::PrivateKey::from_pkcs8_pem(key_pem)
            .map_err(|e| Error::Key(format!("not a PKCS#8 RSA private key: {e}")))?;
        let spki = cert
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .map_err(cert_err)?;
        let public = rsa::PublicKey::from_public_key_der(&spki)
            .map_err(|_| Error::Key("the certificate's key is not RSA".into()))?;
        if public != *key.as_ref() {
            return Err(Error::Key(
                "the key does not belong to the certificate".into(),
            ));
        }
        Ok(GatewayKey {
            cert,
            cert_der,
            key,
        })
    }

    /// A new RSA-3072 key and a self-signed certificate for `email` (subject CN `name`),
    /// valid `days`, for signing and encryption (emailProtection). PEM (certificate, PKCS#8 key).
    pub fn generate(name: &str, email: &str, days: u32) -> Result<(String, String), Error> {
        let key_err = |e: String| Error::Key(e);
        let mut rng: Rng = rand::rng();
        let key = rsa::PrivateKey::new(&mut rng, 3072).map_err(|e| key_err(e.to_string()))?;
        let pkcs8 = key.to_pkcs8_der().map_err(|e| key_err(e.to_string()))?;
        let key_pem = pkcs8
            .to_pem("PRIVATE KEY", der::pem::LineEnding::LF)
            .map_err(|e| key_err(e.to_string()))?
            .to_string();
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec());
        let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_RSA_SHA256)
            .map_err(|e| key_err(e.to_string()))?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.subject_alt_names = vec![rcgen::SanType::Rfc822Name(
            email
                .to_string()
                .try_into()
                .map_err(|e: rcgen::Error| cert_err(e))?,
        )];
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::EmailProtection];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + time::Duration::days(days.into());
        let cert = params.self_signed(&pair).map_err(cert_err)?;
        Ok((cert.pem(), key_pem))
    }

    pub fn certificate_der(&self) -> &[u8] {
        &self.cert_der
    }
}

fn recipient_info(der: &[u8]) -> Result<KeyTransRecipientInfoBuilder<Rng>, Error> {
    let cert = parse(der)?;
    let spki = cert.tbs_certificate().subject_public_key_info();
    if spki.algorithm.oid != rfc5912::RSA_ENCRYPTION {
        return Err(Error::Encrypt(format!(
            "{}: only RSA recipient certificates are supported",
            cert.tbs_certificate().subject()
        )));
    }
    let spki_der = spki.to_der().map_err(cert_err)?;
    let pk = rsa::PublicKey::from_public_key_der(&spki_der).map_err(cert_err)?;
    KeyTransRecipientInfoBuilder::<Rng>::new(
        RecipientIdentifier::IssuerAndSerialNumber(issuer_serial(&cert)),
        KeyEncryptionInfo::Rsa(pk),
    )
    .map_err(|e| Error::Encrypt(e.to_string()))
}

fn wrap_content_info(oid: const_oid::ObjectIdentifier, inner_der: &[u8]) -> Result<Vec<u8>, Error> {
    let any = AnyRef::try_from(inner_der).map_err(|e| Error::Encrypt(e.to_string()))?;
    let ci = ContentInfo {
        content_type: oid,
        content: Any::from(any),
    };
    ci.to_der().map_err(|e| Error::Encrypt(e.to_string()))
}

/// An entity (fields + blank line + body, CRLF) → the `application/pkcs7-mime` entity that
/// carries it encrypted to every certificate of `recipients` (DER).
pub fn encrypt_entity(entity: &[u8], recipients: &[Vec<u8>]) -> Result<Vec<u8>, Error> {
    if recipients.is_empty() {
        return Err(Error::Encrypt("no recipient certificate".into()));
    }
    let enc = |e: cms::builder::Error| Error::Encrypt(e.to_string());
    let mut b =
        EnvelopedDataBuilder::<Rng>::new(None, entity, ContentEncryptionAlgorithm::Aes256Cbc, None)
            .map_err(enc)?;
    for r in recipients {
        b.add_recipient_info(recipient_info(r)?).map_err(enc)?;
    }
    let mut rng: Rng = rand::rng();
    let env = b.build_with_rng(&mut rng).map_err(enc)?;
    let env_der = env.to_der().map_err(|e| Error::Encrypt(e.to_string()))?;
    let ci = wrap_content_info(rfc5911::ID_ENVELOPED_DATA, &env_der)?;
    let mut out = String::new();
    out.push_str(
        "Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=\"smime.p7m\"\r\n",
    );
    out.push_str("Content-Transfer-Encoding: base64\r\n");
    out.push_str("Content-Disposition: attachment; filename=\"smime.p7m\"\r\n\r\n");
    out.push_str(&b64_lines(&ci));
    Ok(out.into_bytes())
}

/// An entity → the `multipart/signed` entity (detached SHA-256 signature by `key`).
pub fn sign_entity(entity: &[u8], key: &GatewayKey) -> Result<Vec<u8>, Error> {
    let sig = |e: String| Error::Signature(e);
    let entity = to_crlf(entity);
    let digest = sha2::Sha256::digest(&entity);
    let eci = EncapsulatedContentInfo {
        econtent_type: rfc5911::ID_DATA,
        econtent: None,
    };
    let sha256 = AlgorithmIdentifierOwned {
        oid: rfc5912::ID_SHA_256,
        parameters: None,
    };
    let mut sib = SignerInfoBuilder::new(
        SignerIdentifier::IssuerAndSerialNumber(issuer_serial(&key.cert)),
        sha256.clone(),
        &eci,
        Some(&digest),
    )
    .map_err(|e| sig(e.to_string()))?;
    sib.add_signed_attribute(create_signing_time_attribute().map_err(|e| sig(e.to_string()))?)
        .map_err(|e| sig(e.to_string()))?;
    let mut sdb = SignedDataBuilder::new(&eci);
    sdb.add_digest_algorithm(sha256)
        .map_err(|e| sig(e.to_string()))?
        .add_certificate(CertificateChoices::Certificate(key.cert.clone()))
        .map_err(|e| sig(e.to_string()))?;
    let signing = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.key.clone());
    sdb.add_signer_info::<_, rsa::pkcs1v15::Signature>(sib, &signing)
        .map_err(|e| sig(e.to_string()))?;
    let ci_der = sdb
        .build()
        .map_err(|e| sig(e.to_string()))?
        .to_der()
        .map_err(|e| sig(e.to_string()))?;
    let boundary = format!("----=_Palisade_signed_{:016x}", rand::random::<u64>());
    let mut out: Vec<u8> = Vec::with_capacity(entity.len() + ci_der.len() * 2 + 512);
    out.extend_from_slice(
        format!(
            "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256;\r\n boundary=\"{boundary}\"\r\n\r\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(b"This is an S/MIME signed message\r\n\r\n");
    out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
    out.extend_from_slice(&entity);
    out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
    out.extend_from_slice(b"Content-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n");
    out.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n");
    out.extend_from_slice(b"Content-Disposition: attachment; filename=\"smime.p7s\"\r\n\r\n");
    out.extend_from_slice(b64_lines(&ci_der).as_bytes());
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Ok(out)
}

/// A whole message → the same message with its content signed by `signer` (when given) and
/// encrypted to `recipients` (DER certificates). The fields outside the content stay as they
/// were; `MIME-Version: 1.0` is written once.
pub fn protect(
    message: &[u8],
    recipients: &[Vec<u8>],
    signer: Option<&GatewayKey>,
) -> Result<Vec<u8>, Error> {
    let (outer, inner) = content_split(message);
    let inner = match signer {
        Some(k) => sign_entity(&inner, k)?,
        None => inner,
    };
    let envelope = encrypt_entity(&inner, recipients)?;
    let mut out = outer;
    out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    out.extend_from_slice(&envelope);
    Ok(out)
}

fn parse_content_info(der_or_ber: &[u8]) -> Result<ContentInfo, Error> {
    ContentInfo::from_ber(der_or_ber)
        .or_else(|_| ContentInfo::from_der(der_or_ber))
        .map_err(|e| Error::NotSmime(format!("no CMS ContentInfo: {e}")))
}

/// An `application/pkcs7-mime` enveloped-data entity (its fields and base64 body) → the
/// entity it carries, decrypted with `key`.
pub fn decrypt_entity(entity: &[u8], key: &GatewayKey) -> Result<Vec<u8>, Error> {
    decrypt_entity_with(entity, key).map(|(plain, _)| plain)
}

/// The CMS content type of a DER/BER ContentInfo (`signed-data`, `enveloped-data`, …).
pub(crate) fn content_type(der: &[u8]) -> Option<String> {
    let ci = parse_content_info(der).ok()?;
    Some(
        match ci.content_type {
            o if o == rfc5911::ID_SIGNED_DATA => "signed-data",
            o if o == rfc5911::ID_ENVELOPED_DATA => "enveloped-data",
            o if o == rfc5911::ID_DATA => "data",
            _ => "other",
        }
        .to_string(),
    )
}

/// SHA-256 of a DER certificate, hex, as [`CertInfo::fingerprint`].
pub fn fingerprint(der: &[u8]) -> String {
    hex(&sha2::Sha256::digest(der))
}

/// [`decrypt_entity`], with the name of the content cipher. `Error::NotAddressed` when the
/// message has no recipient entry for this gateway's certificate.
pub(crate) fn decrypt_entity_with(
    entity: &[u8],
    key: &GatewayKey,
) -> Result<(Vec<u8>, String), Error> {
    let dec = |e: String| Error::Decrypt(e);
    let (_h, body) = split_entity(entity);
    let der = b64_decode_loose(body).ok_or_else(|| Error::NotSmime("body is not base64".into()))?;
    let ci = parse_content_info(&der)?;
    if ci.content_type != rfc5911::ID_ENVELOPED_DATA {
        return Err(Error::NotSmime(format!(
            "content type {} is not enveloped-data",
            ci.content_type
        )));
    }
    let inner = ci.content.to_der().map_err(|e| dec(e.to_string()))?;
    let env = EnvelopedData::from_ber(&inner)
        .or_else(|_| EnvelopedData::from_der(&inner))
        .map_err(|e| dec(format!("EnvelopedData: {e}")))?;
    let me = RecipientIdentifier::IssuerAndSerialNumber(issuer_serial(&key.cert));
    let ktri = env
        .recip_infos
        .0
        .iter()
        .find_map(|ri| match ri {
            RecipientInfo::Ktri(k) if k.rid == me => Some(k),
            _ => None,
        })
        .ok_or_else(|| Error::NotAddressed("not encrypted to this gateway's certificate".into()))?;
    if ktri.key_enc_alg.oid != rfc5912::RSA_ENCRYPTION {
        return Err(dec(format!(
            "key transport {} is not supported",
            ktri.key_enc_alg.oid
        )));
    }
    let cek = key
        .key
        .decrypt(rsa::Pkcs1v15Encrypt, ktri.enc_key.as_bytes())
        .map_err(|_| dec("the content key cannot be recovered".into()))?;
    let eci = &env.encrypted_content;
    let params = eci
        .content_enc_alg
        .parameters
        .as_ref()
        .ok_or_else(|| dec("no IV".into()))?
        .to_der()
        .map_err(|e| dec(e.to_string()))?;
    let iv = OctetString::from_der(&params).map_err(|e| dec(e.to_string()))?;
    let ct = eci
        .encrypted_content
        .as_ref()
        .ok_or_else(|| dec("the encrypted content is detached".into()))?;
    let bad = |_| dec("wrong key or damaged content (padding)".into());
    let pt = match eci.content_enc_alg.oid {
        o if o == rfc5911::ID_AES_256_CBC => (
            cbc::Decryptor::<aes::Aes256>::new_from_slices(&cek, iv.as_bytes())
                .map_err(|_| dec("key or IV length".into()))?
                .decrypt_padded_vec::<Pkcs7>(ct.as_bytes())
                .map_err(bad)?,
            "aes256-cbc",
        ),
        o if o == rfc5911::ID_AES_128_CBC => (
            cbc::Decryptor::<aes::Aes128>::new_from_slices(&cek, iv.as_bytes())
                .map_err(|_| dec("key or IV length".into()))?
                .decrypt_padded_vec::<Pkcs7>(ct.as_bytes())
                .map_err(bad)?,
            "aes128-cbc",
        ),
        o => return Err(dec(format!("content cipher {o} is not supported"))),
    };
    Ok((pt.0, pt.1.to_string()))
}

/// A verified signature: the signer's certificate and the signed entity.
#[derive(Debug, Clone)]
pub struct Verified {
    pub signer: CertInfo,
    /// The signed content (for an opaque signature, the entity it carried).
    pub content: Vec<u8>,
    /// `Some(true)` when the signer's chain reached one of the anchors for emailProtection,
    /// `Some(false)` when it did not, `None` when no anchors were given.
    pub chain_valid: Option<bool>,
}

/// Checks a `multipart/signed` (detached) or `application/pkcs7-mime` signed-data entity:
/// every signer's digest and signature; with `anchors` (DER), the first signer's chain for
/// emailProtection.
pub fn verify_entity(entity: &[u8], anchors: &[Vec<u8>]) -> Result<Verified, Error> {
    let bad = |e: String| Error::Signature(e);
    let (hdrs, body) = split_entity(entity);
    let ct =
        header(hdrs, "Content-Type").ok_or_else(|| Error::NotSmime("no Content-Type".into()))?;
    let lc = ct.to_ascii_lowercase();
    let (sig_der, detached): (Vec<u8>, Option<Vec<u8>>) = if lc.starts_with("multipart/signed") {
        let boundary = param(&ct, "boundary").ok_or_else(|| bad("no boundary".into()))?;
        let delim = format!("--{boundary}");
        let first = find(body, delim.as_bytes()).ok_or_else(|| bad("no first part".into()))?;
        let mut start = first + delim.len();
        start += if body[start..].starts_with(b"\r\n") {
            2
        } else {
            1
        };
        let rest = &body[start.min(body.len())..];
        let (end, nl) = match find(rest, format!("\r\n{delim}").as_bytes()) {
            Some(i) => (i, 2),
            None => (
                find(rest, format!("\n{delim}").as_bytes())
                    .ok_or_else(|| bad("no second part".into()))?,
                1,
            ),
        };
        let part1 = &rest[..end];
        let after = &rest[end + nl + delim.len()..];
        let close =
            find(after, delim.as_bytes()).ok_or_else(|| bad("no closing boundary".into()))?;
        let part2 = &after[..close];
        let part2 = part2
            .strip_prefix(b"\r\n")
            .or(part2.strip_prefix(b"\n"))
            .unwrap_or(part2);
        let (_, b2) = split_entity(part2);
        (
            b64_decode_loose(b2).ok_or_else(|| bad("signature part is not base64".into()))?,
            Some(to_crlf(part1)),
        )
    } else if lc.starts_with("application/pkcs7-mime") || lc.starts_with("application/x-pkcs7-mime")
    {
        (
            b64_decode_loose(body).ok_or_else(|| Error::NotSmime("body is not base64".into()))?,
            None,
        )
    } else {
        return Err(Error::NotSmime(format!("{ct} is not a signed entity")));
    };
    let ci = parse_content_info(&sig_der)?;
    if ci.content_type != rfc5911::ID_SIGNED_DATA {
        return Err(Error::NotSmime("not signed-data".into()));
    }
    let inner = ci.content.to_der().map_err(|e| bad(e.to_string()))?;
    let sd = SignedData::from_ber(&inner)
        .or_else(|_| SignedData::from_der(&inner))
        .map_err(|e| bad(format!("SignedData: {e}")))?;
    let content: Vec<u8> = match (&detached, &sd.encap_content_info.econtent) {
        (Some(c), _) => c.clone(),
        (None, Some(any)) => {
            // openssl -stream writes a constructed OCTET STRING whose chunks der keeps.
            let v = any.value();
            let mut flat = Vec::new();
            if matches!(v.first(), Some(0x04 | 0x24)) && flatten_ber_octets(v, &mut flat).is_ok() {
                flat
            } else {
                v.to_vec()
            }
        }
        (None, None) => return Err(bad("a detached signature without its content".into())),
    };
    let certs: Vec<Certificate> = sd
        .certificates
        .iter()
        .flat_map(|cs| cs.0.iter())
        .filter_map(|c| match c {
            CertificateChoices::Certificate(c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    if sd.signer_infos.0.len() > crate::open::MAX_SIGNERS {
        return Err(bad(format!(
            "{} signers (at most {} are checked)",
            sd.signer_infos.0.len(),
            crate::open::MAX_SIGNERS
        )));
    }
    let mut first_signer: Option<Certificate> = None;
    for si in sd.signer_infos.0.iter() {
        let signer = certs
            .iter()
            .find(|c| match &si.sid {
                SignerIdentifier::IssuerAndSerialNumber(ias) => *ias == issuer_serial(c),
                SignerIdentifier::SubjectKeyIdentifier(ski) => c
                    .tbs_certificate()
                    .get_extension::<x509_cert::ext::pkix::SubjectKeyIdentifier>()
                    .ok()
                    .flatten()
                    .is_some_and(|(_, s)| s == *ski),
            })
            .ok_or_else(|| bad("the signer's certificate is not in the message".into()))?;
        let (digest, rsa_alg, ec_alg): (Vec<u8>, _, _) = match si.digest_alg.oid {
            o if o == rfc5912::ID_SHA_256 => (
                sha2::Sha256::digest(&content).to_vec(),
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                Some(&ring::signature::ECDSA_P256_SHA256_ASN1),
            ),
            o if o == rfc5912::ID_SHA_384 => (
                sha2::Sha384::digest(&content).to_vec(),
                &ring::signature::RSA_PKCS1_2048_8192_SHA384,
                Some(&ring::signature::ECDSA_P256_SHA384_ASN1),
            ),
            o if o == rfc5912::ID_SHA_512 => (
                sha2::Sha512::digest(&content).to_vec(),
                &ring::signature::RSA_PKCS1_2048_8192_SHA512,
                None,
            ),
            o => return Err(bad(format!("digest {o} is not supported"))),
        };
        let signed = match &si.signed_attrs {
            Some(attrs) => {
                let md = attrs
                    .iter()
                    .find(|a| a.oid == rfc5911::ID_MESSAGE_DIGEST)
                    .and_then(|a| a.values.iter().next())
                    .ok_or_else(|| bad("no messageDigest attribute".into()))?;
                let md = OctetString::from_der(&md.to_der().map_err(|e| bad(e.to_string()))?)
                    .map_err(|e| bad(e.to_string()))?;
                if md.as_bytes() != digest.as_slice() {
                    return Err(bad(
                        "the content does not match its signature (altered)".into()
                    ));
                }
                attrs.to_der().map_err(|e| bad(e.to_string()))?
            }
            None => content.clone(),
        };
        let spki = signer.tbs_certificate().subject_public_key_info();
        let pk = spki.subject_public_key.raw_bytes();
        let sig = si.signature.as_bytes();
        let ok = if spki.algorithm.oid == rfc5912::RSA_ENCRYPTION {
            ring::signature::UnparsedPublicKey::new(rsa_alg, pk).verify(&signed, sig)
        } else if spki.algorithm.oid == rfc5912::ID_EC_PUBLIC_KEY {
            let alg = ec_alg.ok_or_else(|| bad("EC with SHA-512 is not supported".into()))?;
            ring::signature::UnparsedPublicKey::new(alg, pk).verify(&signed, sig)
        } else {
            return Err(bad(format!(
                "signer key {} is not supported",
                spki.algorithm.oid
            )));
        };
        ok.map_err(|_| bad("the signature does not verify".into()))?;
        first_signer.get_or_insert_with(|| signer.clone());
    }
    let signer = first_signer.ok_or_else(|| bad("no signer".into()))?;
    let signer_der = signer.to_der().map_err(|e| bad(e.to_string()))?;
    let chain_valid = (!anchors.is_empty()).then(|| {
        let others: Vec<Vec<u8>> = certs
            .iter()
            .filter(|c| **c != signer)
            .filter_map(|c| c.to_der().ok())
            .collect();
        chain_ok(&signer_der, &others, anchors)
    });
    Ok(Verified {
        signer: certificate_info(&signer_der)?,
        content,
        chain_valid,
    })
}

/// Whether `ee` chains through `intermediates` to one of `anchors` for emailProtection, now.
fn chain_ok(ee: &[u8], intermediates: &[Vec<u8>], anchors: &[Vec<u8>]) -> bool {
    use rustls_pki_types::{CertificateDer, UnixTime};
    let anchor_ders: Vec<CertificateDer<'_>> = anchors
        .iter()
        .map(|a| CertificateDer::from(a.as_slice()))
        .collect();
    let anchors: Vec<_> = anchor_ders
        .iter()
        .filter_map(|a| webpki::anchor_from_trusted_cert(a).ok())
        .collect();
    let ee_der = CertificateDer::from(ee);
    let Ok(ee) = webpki::EndEntityCert::try_from(&ee_der) else {
        return false;
    };
    let inter: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &inter,
        UnixTime::now(),
        webpki::KeyUsage::required(EKU_EMAIL_PROTECTION),
        None,
        None,
    )
    .is_ok()
}

/// The primitive chunks of a constructed (BER) OCTET STRING body, concatenated.
fn flatten_ber_octets(mut v: &[u8], out: &mut Vec<u8>) -> Result<(), ()> {
    while !v.is_empty() {
        if v.starts_with(&[0, 0]) {
            return Ok(());
        }
        let tag = v[0];
        let (len, hl) = match *v.get(1).ok_or(())? {
            0x80 => (None, 2),
            l if l < 0x80 => (Some(l as usize), 2),
            l => {
                let n = (l & 0x7f) as usize;
                if n > 4 {
                    return Err(());
                }
                let bytes = v.get(2..2 + n).ok_or(())?;
                (
                    Some(bytes.iter().fold(0usize, |a, b| (a << 8) | *b as usize)),
                    2 + n,
                )
            }
        };
        match (tag, len) {
            (0x04, Some(l)) => {
                out.extend_from_slice(v.get(hl..hl + l).ok_or(())?);
                v = &v[hl + l..];
            }
            (0x24, Some(l)) => {
                flatten_ber_octets(v.get(hl..hl + l).ok_or(())?, out)?;
                v = &v[hl + l..];
            }
            (0x24, None) => return flatten_ber_octets(&v[hl..], out),
            _ => return Err(()),
        }
    }
    Ok(())
}
