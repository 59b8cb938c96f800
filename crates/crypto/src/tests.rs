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

/// gpg in its own home directory.
fn gpg(home: &Path, args: &[&str], input: Option<&[u8]>) -> std::process::Output {
    use std::io::Write as _;
    let mut child = Command::new("gpg")
        .arg("--homedir")
        .arg(home)
        .args([
            "--batch",
            "--yes",
            "--trust-model",
            "always",
            "--status-fd",
            "2",
        ])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("gpg is installed (scripts/test.sh)");
    if let Some(i) = input {
        child.stdin.take().unwrap().write_all(i).unwrap();
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().unwrap()
}

#[test]
fn gpg_reads_what_we_encrypt_and_we_read_what_gpg_encrypts() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("gnupg");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let out = gpg(
        &home,
        &[
            "--passphrase",
            "",
            "--quick-gen-key",
            "Partner <registry@partner.test>",
            "default",
            "default",
            "2d",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let partner_pub = String::from_utf8(
        gpg(
            &home,
            &["--armor", "--export", "registry@partner.test"],
            None,
        )
        .stdout,
    )
    .unwrap();
    let info = pgp_certificate_info(&partner_pub).unwrap();
    assert_eq!(info[0].emails, ["registry@partner.test"]);
    assert!(info[0].can_encrypt);

    let (secret, public) = PgpKey::generate("Gateway <gateway@hospital.test>", 30).unwrap();
    let gw = PgpKey::from_armored(&secret).unwrap();
    assert!(
        PgpKey::from_armored(&public).is_err(),
        "a public key is not a secret key"
    );
    assert!(
        pgp_certificate_info(&secret).is_err(),
        "a secret key is not a partner key"
    );
    let imported = gpg(&home, &["--import"], Some(public.as_bytes()));
    assert!(imported.status.success());

    // Ours → gpg: decrypted, the signature good and by the gateway.
    let enc = pgp_protect(MESSAGE, std::slice::from_ref(&partner_pub), Some(&gw)).unwrap();
    let text = String::from_utf8_lossy(&enc).into_owned();
    assert!(text.contains("Subject: Referral\r\n"));
    assert!(text.contains("multipart/encrypted; protocol=\"application/pgp-encrypted\""));
    assert!(!text.contains("943 476 5919"));
    let out = gpg(&home, &["--decrypt"], Some(&enc));
    let status = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{status}");
    assert!(status.contains("[GNUPG:] DECRYPTION_OKAY"), "{status}");
    // VALIDSIG <signing subkey> … <primary key>: the gateway's key signed it.
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("[GNUPG:] VALIDSIG ") && l.ends_with(&gw.fingerprint())),
        "{status}"
    );
    let (_, inner) = content_split(MESSAGE);
    assert_eq!(
        out.stdout, inner,
        "gpg gets the content entity back byte for byte"
    );

    // gpg → ours: `gpg --encrypt --sign --armor` as the body of a message, and in PGP/MIME.
    let out = gpg(
        &home,
        &[
            "--encrypt",
            "--sign",
            "--armor",
            "-r",
            "gateway@hospital.test",
            "-u",
            "registry@partner.test",
        ],
        Some(b"Discharge summary for patient 943 476 5919.\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let armored = out.stdout;
    let mut inline =
        b"From: registry@partner.test\r\nTo: ward7@hospital.test\r\nSubject: Discharge\r\n\r\n"
            .to_vec();
    inline.extend_from_slice(&to_crlf(&armored));
    assert!(is_pgp(&inline) && !is_pgp(MESSAGE));
    let o = pgp_open(&inline, Some(&gw), std::slice::from_ref(&partner_pub));
    assert!(
        matches!(&o.decryption, Decryption::Decrypted { cipher } if cipher.contains("aes")),
        "{:?}",
        o.decryption
    );
    match &o.signature {
        Signature::Valid { signer, pinned, .. } => {
            assert!(*pinned);
            assert_eq!(signer.emails, ["registry@partner.test"]);
            assert_eq!(signer.fingerprint, info[0].fingerprint);
        }
        other => panic!("{other:?}"),
    }
    let plain = String::from_utf8(o.message.unwrap()).unwrap();
    assert!(
        plain.contains("Subject: Discharge\r\nMIME-Version: 1.0\r\nContent-Type: text/plain"),
        "{plain}"
    );
    assert!(plain.ends_with("patient 943 476 5919.\r\n"), "{plain}");
    // Without the partner's certificate the signature is not claimed good.
    let o = pgp_open(&inline, Some(&gw), &[]);
    assert!(
        matches!(o.signature, Signature::Unsigned),
        "{:?}",
        o.signature
    );

    // The ciphertext altered: a failure (integrity), never the damaged text as clean.
    let text = String::from_utf8(inline.clone()).unwrap();
    let mid = text.find("-----BEGIN PGP MESSAGE-----").unwrap() + 200;
    let mut broken = text.into_bytes();
    broken[mid] = if broken[mid] == b'A' { b'B' } else { b'A' };
    let o = pgp_open(&broken, Some(&gw), std::slice::from_ref(&partner_pub));
    assert!(
        matches!(o.decryption, Decryption::Failed(_)),
        "{:?}",
        o.decryption
    );
    assert!(o.message.is_none());
    // Encrypted to someone else: not ours, said so.
    let out = gpg(
        &home,
        &["--encrypt", "--armor", "-r", "registry@partner.test"],
        Some(b"x\n"),
    );
    let mut other = b"Subject: x\r\n\r\n".to_vec();
    other.extend_from_slice(&out.stdout);
    let o = pgp_open(&other, Some(&gw), &[]);
    assert!(
        matches!(o.decryption, Decryption::NotAddressed(_)),
        "{:?}",
        o.decryption
    );
}
