//! The check against records preloaded into its TXT cache (mail-auth reads the cache before
//! DNS), with a resolver that has no server to ask: a record not preloaded is a temperror.

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::dkim::DkimSigner;
use mail_auth::dmarc::Dmarc;
use mail_auth::spf::Spf;
use palisade_policy::{Action, Direction, Disposition, Edit};
use palisade_store::config::{Authentication, DmarcRejectAction};

use super::*;

const HOST: &str = "mx.palisade.test";

fn far() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

fn cache(dkim_key: Option<&[u8]>) -> TxtCache {
    let c = TxtCache {
        only_these: true,
        ..Default::default()
    };
    let spf = Spf::parse(b"v=spf1 ip4:192.0.2.1 -all").unwrap();
    c.insert("example.org.".into(), spf.into(), far());
    let dmarc = Dmarc::parse(b"v=DMARC1; p=reject").unwrap();
    c.insert("_dmarc.example.org.".into(), dmarc.into(), far());
    let q = Dmarc::parse(b"v=DMARC1; p=quarantine").unwrap();
    c.insert("_dmarc.quarantine.example.".into(), q.into(), far());
    let spf = Spf::parse(b"v=spf1 -all").unwrap();
    c.insert("quarantine.example.".into(), spf.into(), far());
    let helo = Spf::parse(b"v=spf1 ip4:192.0.2.1 -all").unwrap();
    c.insert("mail.example.org.".into(), helo.into(), far());
    if let Some(key) = dkim_key {
        let record = format!(
            "v=DKIM1; k=ed25519; p={}",
            base64::engine::general_purpose::STANDARD.encode(key)
        );
        let dk = DomainKey::parse(record.as_bytes()).unwrap();
        c.insert("sel._domainkey.example.org.".into(), dk.into(), far());
    }
    c
}

fn authenticator() -> MessageAuthenticator {
    // Nothing listens on port 9 of loopback: every lookup not in the cache fails.
    let mut cfg = Config::default();
    cfg.dns.nameservers = vec!["127.0.0.1:9".parse().unwrap()];
    MessageAuthenticator(crate::outbound::route::resolver(&cfg).expect("resolver"))
}

fn envelope(ip: &str, sender: &str) -> Envelope {
    Envelope {
        queue_id: "test".into(),
        listener: "smtp".into(),
        direction: Direction::Inbound,
        client_ip: ip.parse::<IpAddr>().unwrap(),
        client_name: None,
        rdns_checked: false,
        helo: Some("mail.example.org".into()),
        tls: None,
        auth_user: None,
        trusted: false,
        sender: sender.into(),
        crypto: None,
        recipients: vec![],
    }
}

const MESSAGE: &str = "Authentication-Results: mx.palisade.test; dmarc=pass\r\nFrom: Ada <ada@example.org>\r\nTo: b@example.test\r\nSubject: hello\r\n\r\nHello.\r\n";

async fn run(settings: &Authentication, c: &TxtCache, env: &Envelope, raw: &[u8]) -> Findings {
    let a = authenticator();
    let ctx = Context {
        authenticator: &a,
        cache: c,
        hostname: HOST,
        settings,
        deadline: tokio::time::Instant::now() + Duration::from_secs(5),
    };
    authenticate(&ctx, env, raw).await
}

fn disposition(f: &Findings) -> Option<(&Action, bool)> {
    f.decisions
        .iter()
        .find(|d| matches!(d.action, Action::Dispose(_)))
        .map(|d| (&d.action, d.monitor))
}

#[tokio::test]
async fn spf_pass_aligns_dmarc_and_the_header_replaces_forged_ones() {
    let s = Authentication::default();
    let f = run(
        &s,
        &cache(None),
        &envelope("192.0.2.1", "bounce@example.org"),
        MESSAGE.as_bytes(),
    )
    .await;
    assert_eq!(f.facts["spf"]["result"], "pass", "{}", f.facts);
    assert_eq!(f.facts["spf"]["domain"], "example.org");
    assert_eq!(f.facts["dmarc"]["result"], "pass");
    assert_eq!(f.facts["dmarc"]["policy"], "reject");
    assert_eq!(f.facts["dmarc"]["aligned_by"], json!(["spf"]));
    assert_eq!(f.facts["forged_removed"], 1);
    assert!(disposition(&f).is_none());
    // Removal first, then ours.
    assert_eq!(
        f.decisions[0].action,
        Action::Edit(Edit::RemoveAuthenticationResults {
            authserv_id: HOST.into()
        })
    );
    let Action::Edit(Edit::AddHeader { name, value }) = &f.decisions[1].action else {
        panic!("{:?}", f.decisions[1]);
    };
    assert_eq!(name, "Authentication-Results");
    assert!(value.starts_with("mx.palisade.test;"), "{value}");
    assert!(value.contains("spf=pass"), "{value}");
    assert!(value.contains("dmarc=pass"), "{value}");
    assert!(value.contains("dkim=none"), "{value}");
    assert!(!f.decisions[1].explanation.sentence.is_empty());
}

#[tokio::test]
async fn dmarc_reject_refuses_unless_configured_otherwise() {
    let spoofed = envelope("198.51.100.7", "someone@elsewhere.invalid");
    let f = run(
        &Authentication::default(),
        &cache(None),
        &spoofed,
        MESSAGE.as_bytes(),
    )
    .await;
    assert_eq!(f.facts["dmarc"]["result"], "fail", "{}", f.facts);
    let (action, monitored) = disposition(&f).expect("a decision");
    let Action::Dispose(Disposition::Reject(reply)) = action else {
        panic!("{action:?}");
    };
    assert!(!monitored);
    assert_eq!((reply.code, reply.enhanced.as_str()), (550, "5.7.1"));
    assert!(reply.text.contains("DMARC"), "{}", reply.text);

    let quarantine = Authentication {
        dmarc_reject: DmarcRejectAction::Quarantine,
        ..Default::default()
    };
    let f = run(&quarantine, &cache(None), &spoofed, MESSAGE.as_bytes()).await;
    assert!(matches!(
        disposition(&f),
        Some((Action::Dispose(Disposition::Quarantine { .. }), false))
    ));

    let overridden = Authentication {
        dmarc_overrides: vec!["example.org".into()],
        ..Default::default()
    };
    let f = run(&overridden, &cache(None), &spoofed, MESSAGE.as_bytes()).await;
    assert_eq!(f.facts["dmarc"]["action"], "override");
    assert!(matches!(disposition(&f), Some((_, true))), "only monitored");
}

#[tokio::test]
async fn spf_fail_and_dmarc_quarantine() {
    let raw = MESSAGE.replace("ada@example.org", "ada@quarantine.example");
    let f = run(
        &Authentication::default(),
        &cache(None),
        &envelope("192.0.2.1", "x@quarantine.example"),
        raw.as_bytes(),
    )
    .await;
    assert_eq!(f.facts["spf"]["result"], "fail", "{}", f.facts);
    assert_eq!(f.facts["dmarc"]["policy"], "quarantine");
    assert!(matches!(
        disposition(&f),
        Some((Action::Dispose(Disposition::Quarantine { .. }), false))
    ));
}

#[tokio::test]
async fn dkim_pass_aligns_and_a_changed_body_fails() {
    let pkcs8 = Ed25519Key::generate_pkcs8().unwrap();
    let key = Ed25519Key::from_pkcs8_der(&pkcs8).unwrap();
    let public = key.public_key();
    let sig = DkimSigner::from_key(key)
        .domain("example.org")
        .selector("sel")
        .headers(["From", "To", "Subject"])
        .sign(MESSAGE.as_bytes())
        .unwrap()
        .to_header();
    let signed = format!("{sig}{MESSAGE}");
    // Not SPF-authorised, so only DKIM can align.
    let env = envelope("198.51.100.7", "list@elsewhere.invalid");
    let c = cache(Some(&public));
    let f = run(&Authentication::default(), &c, &env, signed.as_bytes()).await;
    assert_eq!(f.facts["dkim"][0]["result"], "pass", "{}", f.facts);
    assert_eq!(f.facts["dkim"][0]["domain"], "example.org");
    assert_eq!(f.facts["dkim"][0]["selector"], "sel");
    assert_eq!(f.facts["dmarc"]["result"], "pass");
    assert_eq!(f.facts["dmarc"]["aligned_by"], json!(["dkim"]));
    assert!(disposition(&f).is_none());

    let tampered = signed.replace("Hello.", "Pay me.");
    let f = run(&Authentication::default(), &c, &env, tampered.as_bytes()).await;
    assert_ne!(f.facts["dkim"][0]["result"], "pass", "{}", f.facts);
    assert_eq!(f.facts["dmarc"]["result"], "fail");
    assert!(matches!(
        disposition(&f),
        Some((Action::Dispose(Disposition::Reject(_)), false))
    ));
}

#[tokio::test]
async fn an_arc_chain_is_verified() {
    let pkcs8 = Ed25519Key::generate_pkcs8().unwrap();
    let public = Ed25519Key::from_pkcs8_der(&pkcs8).unwrap().public_key();
    let c = cache(Some(&public));
    let a = authenticator();
    // A forwarder (example.org) seals the message it received.
    let raw = MESSAGE.as_bytes();
    let m = AuthenticatedMessage::parse(raw).unwrap();
    let none = a.verify_arc(Parameters::new(&m).with_txt_cache(&c)).await;
    let results = AuthenticationResults::new("forwarder.example.org");
    let set = mail_auth::arc::ArcSealer::from_key(Ed25519Key::from_pkcs8_der(&pkcs8).unwrap())
        .domain("example.org")
        .selector("sel")
        .headers(["From", "To", "Subject"])
        .seal(&m, &results, &none)
        .unwrap();
    let sealed = format!("{}{MESSAGE}", set.to_header());
    let f = run(
        &Authentication::default(),
        &c,
        &envelope("192.0.2.1", "bounce@example.org"),
        sealed.as_bytes(),
    )
    .await;
    assert_eq!(f.facts["arc"]["result"], "pass", "{}", f.facts);
    assert_eq!(f.facts["arc"]["sets"], 1);
    assert!(f.facts["header"].as_str().unwrap().contains("arc=pass"));
}

/// This hop's ARC set, applied as the engine writes the copy: over a verified chain it
/// says cv=pass and the whole chain verifies (mail-auth, against the published keys); over
/// a chain broken on the way it says cv=fail.
#[tokio::test]
async fn our_arc_seal_extends_the_chain_the_message_arrived_with() {
    use palisade_store::dkim::{Algorithm, PrivateKey};
    // The forwarder's key (example.org, sel) and ours (example.org, ours).
    let forwarder = Ed25519Key::generate_pkcs8().unwrap();
    let c = cache(Some(
        &Ed25519Key::from_pkcs8_der(&forwarder).unwrap().public_key(),
    ));
    let dir = tempfile::tempdir().unwrap();
    let data = palisade_store::DataDir::new(dir.path());
    std::fs::create_dir_all(data.keys()).unwrap();
    let ours = PrivateKey::generate(Algorithm::Ed25519).unwrap();
    palisade_store::dkim::write_new(&data, "example.org", "ours", &ours).unwrap();
    let record = DomainKey::parse(ours.dns_record().unwrap().as_bytes()).unwrap();
    c.insert("ours._domainkey.example.org.".into(), record.into(), far());
    let mut cfg = Config::default();
    cfg.authentication.arc_seal = Some(palisade_store::config::ArcSeal {
        domain: "example.org".into(),
        selector: "ours".into(),
    });
    let keys = super::super::dkim::DkimKeys::load(&cfg, Some(&data));

    // The forwarder's seal (i=1).
    let a = authenticator();
    let m = AuthenticatedMessage::parse(MESSAGE.as_bytes()).unwrap();
    let none = a.verify_arc(Parameters::new(&m).with_txt_cache(&c)).await;
    let results = AuthenticationResults::new("forwarder.example.org");
    let set = mail_auth::arc::ArcSealer::from_key(Ed25519Key::from_pkcs8_der(&forwarder).unwrap())
        .domain("example.org")
        .selector("sel")
        .headers(["From", "To", "Subject"])
        .seal(&m, &results, &none)
        .unwrap();
    let arrived = format!("{}{MESSAGE}", set.to_header());

    let seal_as_the_engine_does = |raw: &[u8], f: &Findings| -> Vec<u8> {
        let edits: Vec<Edit> = f
            .decisions
            .iter()
            .filter_map(|d| match &d.action {
                Action::Edit(e) => Some(e.clone()),
                _ => None,
            })
            .collect();
        assert!(
            edits.iter().any(|e| matches!(e, Edit::ArcSeal { .. })),
            "{edits:?}"
        );
        let message = super::super::edit::edited(raw, &edits);
        let mut out = super::super::edit::signatures(&message, &edits, Some(&keys));
        out.extend_from_slice(&message);
        out
    };
    let env = envelope("192.0.2.1", "bounce@example.org");
    let f = run(&cfg.authentication, &c, &env, arrived.as_bytes()).await;
    assert_eq!(f.facts["arc_seal"]["chain"], "pass", "{}", f.facts);
    let sealed = seal_as_the_engine_does(arrived.as_bytes(), &f);
    let text = String::from_utf8_lossy(&sealed);
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with("ARC-Seal: i=2;") && first.contains("cv=pass"),
        "{text}"
    );
    assert!(
        first.contains("d=example.org") && first.contains("s=ours"),
        "{text}"
    );
    assert!(
        text.contains("ARC-Authentication-Results: i=2; mx.palisade.test; spf=pass"),
        "{text}"
    );
    let m = AuthenticatedMessage::parse(&sealed).unwrap();
    let out = a.verify_arc(Parameters::new(&m).with_txt_cache(&c)).await;
    assert_eq!(out.result(), &DkimResult::Pass, "{text}");
    assert_eq!(out.sets().len(), 2);
    // The body changed after our seal: our own message signature no longer verifies.
    let tampered = String::from_utf8_lossy(&sealed).replace("Hello.", "Pay me.");
    let m = AuthenticatedMessage::parse(tampered.as_bytes()).unwrap();
    let out = a.verify_arc(Parameters::new(&m).with_txt_cache(&c)).await;
    assert_ne!(out.result(), &DkimResult::Pass);

    // Changed between the forwarder and us: the chain fails here, and our seal says so.
    let broken = arrived.replace("Hello.", "Pay me.");
    let f = run(&cfg.authentication, &c, &env, broken.as_bytes()).await;
    assert_eq!(f.facts["arc_seal"]["chain"], "fail", "{}", f.facts);
    let sealed = seal_as_the_engine_does(broken.as_bytes(), &f);
    let text = String::from_utf8_lossy(&sealed);
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with("ARC-Seal: i=2;") && first.contains("cv=fail"),
        "{text}"
    );

    // A first hop: i=1, cv=none, and it verifies.
    let f = run(&cfg.authentication, &c, &env, MESSAGE.as_bytes()).await;
    assert_eq!(f.facts["arc_seal"]["chain"], "none", "{}", f.facts);
    let sealed = seal_as_the_engine_does(MESSAGE.as_bytes(), &f);
    let text = String::from_utf8_lossy(&sealed);
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with("ARC-Seal: i=1;") && first.contains("cv=none"),
        "{text}"
    );
    let m = AuthenticatedMessage::parse(&sealed).unwrap();
    assert_eq!(
        a.verify_arc(Parameters::new(&m).with_txt_cache(&c))
            .await
            .result(),
        &DkimResult::Pass
    );
}

#[tokio::test]
async fn dns_failure_is_a_temperror_that_decides_nothing() {
    // No records at all: every lookup fails.
    let f = run(
        &Authentication::default(),
        &TxtCache::default(),
        &envelope("198.51.100.7", "x@example.org"),
        MESSAGE.as_bytes(),
    )
    .await;
    assert_eq!(f.facts["spf"]["result"], "temperror", "{}", f.facts);
    assert_ne!(f.facts["dmarc"]["result"], "fail");
    assert!(disposition(&f).is_none());
}

#[tokio::test]
async fn the_null_sender_is_checked_by_its_helo_name() {
    let f = run(
        &Authentication::default(),
        &cache(None),
        &envelope("192.0.2.1", ""),
        MESSAGE.as_bytes(),
    )
    .await;
    assert_eq!(f.facts["spf"]["identity"], "helo", "{}", f.facts);
    assert_eq!(f.facts["spf"]["domain"], "mail.example.org");
    assert_eq!(f.facts["spf"]["result"], "pass");
    assert!(
        f.facts["header"]
            .as_str()
            .unwrap()
            .contains("smtp.helo=mail.example.org")
    );
    // mail.example.org shares its organisational domain with From (example.org): relaxed
    // alignment, so DMARC passes by SPF.
    assert_eq!(f.facts["dmarc"]["result"], "pass");

    let f = run(
        &Authentication::default(),
        &cache(None),
        &envelope("198.51.100.7", ""),
        MESSAGE.as_bytes(),
    )
    .await;
    assert_eq!(f.facts["spf"]["result"], "fail", "{}", f.facts);
}

#[test]
fn outbound_is_skipped_with_a_reason() {
    let mut env = envelope("127.0.0.1", "a@example.org");
    assert!(skip_reason(&env).is_none());
    env.trusted = true;
    assert!(skip_reason(&env).unwrap().contains("trusted_networks"));
    env.trusted = false;
    env.auth_user = Some("ada".into());
    assert!(skip_reason(&env).unwrap().contains("authenticated"));
}

#[test]
fn header_values_keep_folding_and_lose_control_characters() {
    assert_eq!(
        header_value("Authentication-Results: mx;\r\n\tspf=pass\x07 x\r\n"),
        "mx;\r\n\tspf=pass x"
    );
}

#[test]
fn arc_authentication_results_dmarc_pass_is_read_from_its_results_only() {
    let from = "partner.example";
    assert!(aar_dmarc_pass(
        b" i=1; lists.example; dkim=pass header.d=partner.example;\r\n\tspf=pass; DMARC=pass (p=reject) header.from=Partner.Example",
        from
    ));
    assert!(!aar_dmarc_pass(
        b" i=1; lists.example; dmarc=fail header.from=partner.example",
        from
    ));
    // The authserv-id is not a result, whatever it is called.
    assert!(!aar_dmarc_pass(b" i=1; dmarc=pass.example; spf=none", from));
    assert!(!aar_dmarc_pass(b"", from));
    // A pass for another From domain does not vouch for this one.
    assert!(!aar_dmarc_pass(
        b" i=1; lists.example; dmarc=pass header.from=evil.example",
        from
    ));
    // Text a stranger controls (a quoted local part, a comment) is not a result.
    assert!(!aar_dmarc_pass(
        b" i=1; lists.example; spf=pass smtp.mailfrom=\"x; dmarc=pass header.from=partner.example\"@evil.example; dmarc=fail header.from=partner.example",
        from
    ));
    assert!(!aar_dmarc_pass(
        b" i=1; lists.example; spf=pass (x; dmarc=pass header.from=partner.example) smtp.mailfrom=evil.example; dmarc=fail header.from=partner.example",
        from
    ));
    // Two DMARC results are one too many.
    assert!(!aar_dmarc_pass(
        b" i=1; lists.example; dmarc=pass header.from=partner.example; dmarc=fail header.from=partner.example",
        from
    ));
}
