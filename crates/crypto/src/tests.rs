//! S/MIME against the real tool both ways: `openssl cms` reads what we make, we read what it
//! makes; tampering is caught.

use std::path::Path;
use std::process::Command;

use super::*;

const MESSAGE: &[u8] = b"Received: from ward7 by gw\r\n\
From: Dr Ada <ada@hospital.test>\r\n\
To: Registry <registry@partner.test>\r\n\
Subject: Referral\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
Patient 943 476 5919 referred.\r\n\
Caf\xc3\xa9.\r\n";

fn openssl(dir: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed (scripts/test.sh)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// An RSA key and self-signed certificate for `email`, made by openssl.
fn openssl_identity(dir: &Path, name: &str, email: &str) -> (String, String) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            &format!("subjectAltName=email:{email}"),
            "-addext",
            "extendedKeyUsage=emailProtection",
        ],
    );
    (
        std::fs::read_to_string(dir.join(format!("{name}.pem"))).unwrap(),
        std::fs::read_to_string(dir.join(format!("{name}.key"))).unwrap(),
    )
}

#[test]
fn the_content_moves_inside_and_the_routing_fields_stay_outside() {
    let (outer, inner) = content_split(MESSAGE);
    let outer = String::from_utf8(outer).unwrap();
    assert!(outer.starts_with("Received: from ward7 by gw\r\nFrom: Dr Ada"));
    assert!(outer.contains("Subject: Referral\r\n"));
    assert!(!outer.contains("Content-") && !outer.contains("MIME-Version"));
    assert!(inner.starts_with(b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nPatient"));
    // A message without MIME fields gets the default type; LF becomes CRLF.
    let (_, inner) = content_split(b"Subject: x\n\nhello\n");
    assert_eq!(
        inner,
        b"Content-Type: text/plain; charset=us-ascii\r\n\r\nhello\r\n"
    );
}

#[test]
fn openssl_decrypts_and_verifies_what_we_protect() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (partner_cert, _) = openssl_identity(d, "partner", "registry@partner.test");
    let (cert_pem, key_pem) =
        GatewayKey::generate("Hospital Test gateway", "gateway@hospital.test", 30).unwrap();
    std::fs::write(d.join("gw.pem"), &cert_pem).unwrap();
    let gw = GatewayKey::from_pem(&cert_pem, &key_pem).unwrap();
    let info = certificate_info(gw.certificate_der()).unwrap();
    assert_eq!(info.emails, ["gateway@hospital.test"]);
    assert_eq!(info.key, "RSA 3072");
    assert!(info.can_encrypt);

    let recipients = pem_certificates(&partner_cert).unwrap();
    let protected = protect(MESSAGE, &recipients, Some(&gw)).unwrap();
    let text = String::from_utf8_lossy(&protected);
    assert!(text.contains("Subject: Referral\r\n"), "{text}");
    assert!(text.contains("application/pkcs7-mime; smime-type=enveloped-data"));
    assert!(!text.contains("943 476 5919"), "the content is encrypted");
    std::fs::write(d.join("out.eml"), &protected).unwrap();

    openssl(
        d,
        &[
            "cms",
            "-decrypt",
            "-in",
            "out.eml",
            "-recip",
            "partner.pem",
            "-inkey",
            "partner.key",
            "-out",
            "signed.eml",
        ],
    );
    let signed = std::fs::read(d.join("signed.eml")).unwrap();
    assert!(String::from_utf8_lossy(&signed).contains("multipart/signed"));
    // Verified against our gateway certificate as the trust anchor (it is self-signed).
    openssl(
        d,
        &[
            "cms",
            "-verify",
            "-in",
            "signed.eml",
            "-CAfile",
            "gw.pem",
            "-purpose",
            "smimesign",
            "-out",
            "content.eml",
        ],
    );
    let (_, inner) = content_split(MESSAGE);
    assert_eq!(
        to_crlf(&std::fs::read(d.join("content.eml")).unwrap()),
        inner
    );

    // Without a signer: encrypted only.
    let plain = protect(MESSAGE, &recipients, None).unwrap();
    std::fs::write(d.join("plain.eml"), &plain).unwrap();
    openssl(
        d,
        &[
            "cms",
            "-decrypt",
            "-in",
            "plain.eml",
            "-recip",
            "partner.pem",
            "-inkey",
            "partner.key",
            "-out",
            "plain.out",
        ],
    );
    assert_eq!(to_crlf(&std::fs::read(d.join("plain.out")).unwrap()), inner);
}

#[test]
fn we_decrypt_and_verify_what_openssl_signs_and_encrypts_and_catch_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, _) = openssl_identity(d, "sender", "ada@partner.test");
    let (gw_cert, _) = openssl_identity(d, "gw", "gateway@hospital.test");
    let gw_key = std::fs::read_to_string(d.join("gw.key")).unwrap();
    let gw = GatewayKey::from_pem(&gw_cert, &gw_key).unwrap();
    let (_, inner) = content_split(MESSAGE);
    std::fs::write(d.join("entity.mime"), &inner).unwrap();
    openssl(
        d,
        &[
            "cms",
            "-sign",
            "-in",
            "entity.mime",
            "-signer",
            "sender.pem",
            "-inkey",
            "sender.key",
            "-out",
            "signed.eml",
        ],
    );
    openssl(
        d,
        &[
            "cms",
            "-encrypt",
            "-aes256",
            "-in",
            "signed.eml",
            "-out",
            "enc.eml",
            "gw.pem",
        ],
    );
    let enc = std::fs::read(d.join("enc.eml")).unwrap();
    let signed = decrypt_entity(&enc, &gw).unwrap();
    let sender_anchor =
        pem_certificates(&std::fs::read_to_string(d.join("sender.pem")).unwrap()).unwrap();
    let v = verify_entity(&signed, &sender_anchor).unwrap();
    assert_eq!(v.signer.emails, ["ada@partner.test"]);
    assert_eq!(to_crlf(&v.content), inner);
    // openssl's self-signed certificate is a CA certificate: not valid as a signer's chain.
    assert_eq!(v.chain_valid, Some(false));

    // One changed byte in the signed content: the signature no longer holds.
    let text = String::from_utf8_lossy(&signed).replace("943 476 5919", "943 476 5918");
    let err = verify_entity(text.as_bytes(), &[]).unwrap_err();
    assert!(err.to_string().contains("altered"), "{err}");

    // Encrypted to someone else: a clear error, not garbage.
    let (other_cert, other_key) = openssl_identity(d, "other", "x@other.test");
    let other = GatewayKey::from_pem(&other_cert, &other_key).unwrap();
    assert!(matches!(
        decrypt_entity(&enc, &other),
        Err(Error::NotAddressed(_))
    ));

    // The whole message, as it arrives from the partner: opened, decrypted, signature checked.
    let (outer, _) = content_split(MESSAGE);
    let mut message = outer.clone();
    message.extend_from_slice(&to_crlf(&enc));
    assert!(is_smime(&message));
    assert!(!is_smime(MESSAGE));
    let sender_der = sender_anchor.clone();
    let o = open(&message, Some(&gw), &[], &sender_der);
    assert_eq!(
        o.decryption,
        Decryption::Decrypted {
            cipher: "aes256-cbc".into()
        }
    );
    match &o.signature {
        Signature::Valid {
            signer,
            chain_valid,
            pinned,
        } => {
            assert_eq!(signer.emails, ["ada@partner.test"]);
            assert_eq!((*chain_valid, *pinned), (None, true));
        }
        other => panic!("{other:?}"),
    }
    let plain = String::from_utf8(o.message.clone().unwrap()).unwrap();
    assert!(
        plain.starts_with("Received: from ward7 by gw\r\n"),
        "{plain}"
    );
    assert!(plain.contains("Subject: Referral\r\nMIME-Version: 1.0\r\n"));
    assert!(plain.contains("multipart/signed") && plain.contains("943 476 5919"));
    // Not for us: passed on encrypted, said so; no key at all: the same.
    let o = open(&message, Some(&other), &[], &[]);
    assert!(matches!(o.decryption, Decryption::NotAddressed(_)) && o.message.is_none());
    assert!(matches!(
        open(&message, None, &[], &[]).decryption,
        Decryption::NotAddressed(_)
    ));
    // Damaged ciphertext for us: a failure, never the ciphertext as if it were clean.
    // (the last 40 base64 characters cut: the CMS structure ends early)
    let text = String::from_utf8_lossy(&message).trim_end().to_string();
    let broken = format!("{}\r\n", &text[..text.len() - 40]).into_bytes();
    let o = open(&broken, Some(&gw), &[], &[]);
    assert!(
        matches!(o.decryption, Decryption::Failed(_)),
        "{:?}",
        o.decryption
    );
    // Signed in the clear, then altered on the way: reported invalid; the message is left.
    let mut clear = outer;
    clear.extend_from_slice(&to_crlf(&signed));
    let o = open(&clear, Some(&gw), &[], &[]);
    assert_eq!(o.decryption, Decryption::NotEncrypted);
    assert!(matches!(
        o.signature,
        Signature::Valid { pinned: false, .. }
    ));
    let altered = String::from_utf8_lossy(&clear).replace("referred", "discharged");
    let o = open(altered.as_bytes(), Some(&gw), &[], &[]);
    match o.signature {
        Signature::Invalid(e) => assert!(e.contains("altered"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(o.message.is_none());
}

#[test]
fn ec_certificates_and_broken_input_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ec.key",
            "-out",
            "ec.pem",
            "-days",
            "2",
            "-subj",
            "/CN=ec",
        ],
    );
    let ec = pem_certificates(&std::fs::read_to_string(d.join("ec.pem")).unwrap()).unwrap();
    let info = certificate_info(&ec[0]).unwrap();
    assert_eq!((info.key.as_str(), info.can_encrypt), ("EC", false));
    let err = protect(MESSAGE, &ec, None).unwrap_err();
    assert!(err.to_string().contains("only RSA"), "{err}");
    assert!(pem_certificates("hello").is_err());
    assert!(certificate_info(b"\x30\x03\x02\x01\x00").is_err());
    let (cert, _) = openssl_identity(d, "a", "a@a.test");
    let (_, key_b) = openssl_identity(d, "b", "b@b.test");
    assert!(matches!(
        GatewayKey::from_pem(&cert, &key_b),
        Err(Error::Key(_))
    ));
    assert!(matches!(
        verify_entity(b"Content-Type: text/plain\r\n\r\nhi", &[]),
        Err(Error::NotSmime(_))
    ));
}
