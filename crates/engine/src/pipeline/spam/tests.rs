//! The spam check on messages written for each rule, with its thresholds, lists, Bayes and
//! the authentication check's outcome (from a stand-in check, through `Subject::others`).

use std::sync::Arc;
use std::time::Duration;

use palisade_inspect::{Limits, MessageView};
use palisade_policy::{Direction, Disposition, Edit, FailureMode, SmtpOutcome, Verdict};
use palisade_store::bayes::{Bayes, Class};
use palisade_store::{Config, DataDir};
use serde_json::{Value, json};

use super::*;
use crate::pipeline::{Configured, EnvelopeRecipient, Evaluation, Pipeline};

fn envelope(sender: &str) -> Envelope {
    Envelope {
        queue_id: "TEST".into(),
        listener: "smtp".into(),
        direction: Direction::Inbound,
        client_ip: "192.0.2.1".parse().unwrap(),
        client_name: Some("mail.example.org".into()),
        rdns_checked: true,
        helo: Some("mail.example.org".into()),
        tls: None,
        auth_user: None,
        trusted: false,
        sender: sender.into(),
        crypto: None,
        recipients: vec![EnvelopeRecipient {
            address: "staff@hospital.example".into(),
            route: "maildir".into(),
            notify: None,
            orcpt: None,
        }],
    }
}

/// A plain, well-formed message with `extra` headers and `body`.
fn message(extra: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.org>\r\nTo: staff@hospital.example\r\nSubject: Clinic rota\r\n\
         Date: {}\r\nMessage-ID: <1@example.org>\r\n{extra}\r\n{body}\r\n",
        time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc2822)
            .unwrap()
    )
    .into_bytes()
}

/// A stand-in for the authentication check: completes with these facts after `delay`.
struct FakeAuth(Value, Duration);

impl Check for FakeAuth {
    fn name(&self) -> &str {
        "authentication"
    }
    fn run(&self, _s: Subject) -> CheckFuture {
        let (facts, delay) = (self.0.clone(), self.1);
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            Ok(Findings {
                facts,
                ..Default::default()
            })
        })
    }
}

fn configured(check: Arc<dyn Check>) -> Configured {
    Configured {
        check,
        timeout: Duration::from_secs(10),
        failure_mode: FailureMode::Tempfail,
    }
}

async fn run_with(
    cfg: &Config,
    data: Option<&DataDir>,
    env: Envelope,
    raw: &[u8],
    auth: Option<Value>,
) -> Evaluation {
    let mut checks = vec![configured(Arc::new(SpamCheck::from_config(cfg, data)))];
    if let Some(facts) = auth {
        checks.push(configured(Arc::new(FakeAuth(
            facts,
            Duration::from_millis(50),
        ))));
    }
    let p = Pipeline::with_checks(checks, Duration::from_secs(20), Limits::default());
    let view = Arc::new(MessageView::from_bytes(raw, &Limits::default()));
    p.evaluate(Arc::new(env), view, None).await
}

async fn run(cfg: &Config, env: Envelope, raw: &[u8]) -> Evaluation {
    run_with(cfg, None, env, raw, None).await
}

fn spam_facts(e: &Evaluation) -> &Value {
    &e.outcomes[0].facts
}

fn rules(e: &Evaluation) -> Vec<String> {
    spam_facts(e)["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

fn verdict(e: &Evaluation) -> &Verdict {
    &e.verdict
}

#[tokio::test]
async fn a_clean_message_scores_nothing_and_is_not_edited() {
    let e = run(
        &Config::default(),
        envelope("alice@example.org"),
        &message("", "See you at the ward round."),
    )
    .await;
    let f = spam_facts(&e);
    assert_eq!(f["status"], "ham", "{f}");
    assert_eq!(f["score"], 0.0, "{f}");
    assert_eq!(f["action"], "none");
    assert_eq!(f["bayes"]["state"], "off");
    let r = &verdict(&e).per_recipient[0];
    assert_eq!(r.disposition, Disposition::Deliver);
    assert!(r.edits.is_empty(), "{:?}", r.edits);
}

#[tokio::test]
async fn gtube_is_refused_at_data_with_its_reason() {
    let e = run(
        &Config::default(),
        envelope("alice@example.org"),
        &message("", &format!("test {GTUBE} test")),
    )
    .await;
    assert_eq!(rules(&e), ["GTUBE"]);
    let f = spam_facts(&e);
    assert_eq!(f["action"], "reject");
    assert_eq!(f["score"], 1000.0);
    match &verdict(&e).smtp_reply {
        SmtpOutcome::Reject(r) => {
            assert_eq!(r.code, 550);
            assert!(r.text.contains("spam"), "{r:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.outcomes[0].contributions[0].score, Some(1000.0));
}

#[tokio::test]
async fn thresholds_tag_quarantine_and_weights_are_configurable() {
    // A phishing-shaped message: display name with another domain's address, a link whose text
    // names a bank and whose target is a bare address, HTML only.
    let raw = format!(
        "From: \"security@bank.example\" <x@mailer.example>\r\nTo: staff@hospital.example\r\n\
         Subject: Verify your account\r\nDate: {}\r\nMessage-ID: <2@mailer.example>\r\n\
         Content-Type: text/html\r\n\r\n<p>Please verify at \
         <a href=\"http://198.51.100.7/login\">https://www.bank.example/login</a></p>\r\n",
        time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc2822)
            .unwrap()
    );
    let e = run(
        &Config::default(),
        envelope("x@mailer.example"),
        raw.as_bytes(),
    )
    .await;
    let names = rules(&e);
    for want in [
        "FROM_NAME_SPOOF",
        "URL_TEXT_MISMATCH",
        "URL_IP_HOST",
        "HTML_ONLY",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    let f = spam_facts(&e);
    assert_eq!(f["score"], 6.5, "{f}");
    assert_eq!(f["action"], "tag_subject");
    let r = &verdict(&e).per_recipient[0];
    assert_eq!(r.disposition, Disposition::Deliver);
    assert!(r.edits.contains(&Edit::TagSubject {
        tag: "[SPAM]".into()
    }));
    assert!(r.edits.iter().any(|x| matches!(x,
        Edit::AddHeader { name, value } if name == SPAM_STATUS
            && value.starts_with("Yes, score=6.5") && value.contains("URL_TEXT_MISMATCH"))));
    // The same message with a heavier rule is quarantined; with a lighter one only marked.
    let mut cfg = Config::default();
    cfg.spam.weights.insert("URL_TEXT_MISMATCH".into(), 5.0);
    let e = run(&cfg, envelope("x@mailer.example"), raw.as_bytes()).await;
    assert_eq!(
        verdict(&e).per_recipient[0].disposition,
        Disposition::Quarantine {
            reason: "spam: score 9".into()
        }
    );
    cfg.spam.weights.insert("URL_TEXT_MISMATCH".into(), 0.0);
    let e = run(&cfg, envelope("x@mailer.example"), raw.as_bytes()).await;
    assert!(!rules(&e).iter().any(|n| n == "URL_TEXT_MISMATCH"));
    assert_eq!(spam_facts(&e)["action"], "add_header");
}

#[tokio::test]
async fn allow_and_block_lists_decide_for_the_sender() {
    let mut cfg = Config::default();
    cfg.spam.allow_senders = vec!["@partner.example".into()];
    cfg.spam.block_senders = vec!["*.bulk.example".into()];
    let gtube = message("", GTUBE);
    let e = run(&cfg, envelope("news@partner.example"), &gtube).await;
    assert_eq!(spam_facts(&e)["status"], "allowed");
    assert_eq!(
        verdict(&e).per_recipient[0].disposition,
        Disposition::Deliver
    );
    let e = run(
        &cfg,
        envelope("offers@mail.bulk.example"),
        &message("", "hello"),
    )
    .await;
    assert_eq!(rules(&e), ["BLOCKED_SENDER"]);
    assert!(matches!(verdict(&e).smtp_reply, SmtpOutcome::Reject(_)));
}

#[tokio::test]
async fn the_authentication_checks_results_count() {
    let facts = json!({
        "spf": {"result": "fail", "domain": "example.org"},
        "dkim": [{"result": "fail", "domain": "example.org"}],
        "dmarc": {"result": "fail", "domain": "example.org", "policy": "none"},
    });
    let e = run_with(
        &Config::default(),
        None,
        envelope("alice@example.org"),
        &message("", "hello"),
        Some(facts),
    )
    .await;
    assert_eq!(rules(&e), ["SPF_FAIL", "DKIM_INVALID", "DMARC_FAIL"]);
    assert_eq!(spam_facts(&e)["authentication"], "used");
    assert_eq!(spam_facts(&e)["score"], 4.0);
    let good = json!({
        "spf": {"result": "pass", "domain": "example.org"},
        "dkim": [{"result": "pass", "domain": "example.org"}],
        "dmarc": {"result": "pass", "domain": "example.org"},
    });
    let e = run_with(
        &Config::default(),
        None,
        envelope("alice@example.org"),
        &message("", "hello"),
        Some(good),
    )
    .await;
    assert_eq!(rules(&e), ["DKIM_VALID_AU", "DMARC_PASS"]);
    assert_eq!(spam_facts(&e)["score"], -1.0);
    // A failure the operator excused (dmarc_overrides) or a trusted ARC sealer vouched for
    // is no spam evidence.
    for excused in ["override", "arc_override"] {
        let facts = json!({
            "spf": {"result": "none", "domain": "lists.example"},
            "dkim": [],
            "dmarc": {"result": "fail", "domain": "example.org", "action": excused},
        });
        let e = run_with(
            &Config::default(),
            None,
            envelope("alice@example.org"),
            &message("", "hello"),
            Some(facts),
        )
        .await;
        assert!(rules(&e).is_empty(), "{excused}: {:?}", rules(&e));
    }
    // Without an authentication check, the spam check says so and goes on.
    let e = run(
        &Config::default(),
        envelope("alice@example.org"),
        &message("", "hello"),
    )
    .await;
    assert!(
        spam_facts(&e)["authentication"]
            .as_str()
            .unwrap()
            .starts_with("not used")
    );
}

#[tokio::test]
async fn the_client_and_headers_are_judged() {
    let mut env = envelope("alice@example.org");
    env.client_name = None;
    env.helo = Some("hospital.example".into());
    let cfg = Config {
        domains: vec![palisade_store::config::InboundDomain {
            name: "hospital.example".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let raw = b"From: a@example.org\r\nSubject: BUY NOW CHEAP WATCHES\r\n\r\nhello\r\n";
    let e = run(&cfg, env.clone(), raw).await;
    let names = rules(&e);
    for want in [
        "RDNS_NONE",
        "HELO_FORGED_OURS",
        "MISSING_DATE",
        "MISSING_MESSAGE_ID",
        "SUBJECT_ALL_CAPS",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    // A private client address is never "without reverse DNS"; an unknown lookup neither.
    env.client_ip = "10.1.2.3".parse().unwrap();
    let e = run(&cfg, env.clone(), raw).await;
    assert!(!rules(&e).iter().any(|n| n == "RDNS_NONE"));
    env.client_ip = "192.0.2.1".parse().unwrap();
    env.rdns_checked = false;
    let e = run(&cfg, env, raw).await;
    assert!(!rules(&e).iter().any(|n| n == "RDNS_NONE"));

    let ours: Vec<String> = vec!["mx.hospital.example".into()];
    let mut env = envelope("a@example.org");
    env.helo = Some("[198.51.100.9]".into());
    let got: Vec<&str> = client_rules(&env, &ours).iter().map(|r| r.0).collect();
    assert_eq!(got, ["HELO_IP_LITERAL", "HELO_IP_MISMATCH"]);
    env.helo = Some("[192.0.2.1]".into());
    let got: Vec<&str> = client_rules(&env, &ours).iter().map(|r| r.0).collect();
    assert_eq!(got, ["HELO_IP_LITERAL"]);
    env.helo = Some("localhost".into());
    env.client_name = Some("dsl-192-0-2-1.pool.isp.example".into());
    let got: Vec<&str> = client_rules(&env, &ours).iter().map(|r| r.0).collect();
    assert_eq!(got, ["RDNS_DYNAMIC", "HELO_NOT_FQDN"]);
    assert!(!looks_dynamic(
        "mail.example.org",
        "192.0.2.1".parse().unwrap()
    ));
    assert!(looks_dynamic(
        "1.2.0.192.example.net",
        "192.0.2.1".parse().unwrap()
    ));
    assert!(looks_dynamic(
        "host81-2-3-4.broadband.example",
        "81.2.3.4".parse().unwrap()
    ));
}

#[tokio::test]
async fn spam_headers_from_outside_are_replaced_by_ours() {
    let raw = message(
        "X-Spam-Flag: NO\r\nX-Spam-Status: No, score=-100\r\n",
        GTUBE,
    );
    let mut cfg = Config::default();
    cfg.spam.reject = 2000.0;
    cfg.spam.quarantine = 2000.0;
    let e = run(&cfg, envelope("alice@example.org"), &raw).await;
    let edits = &verdict(&e).per_recipient[0].edits;
    let removed = edits
        .iter()
        .position(|x| matches!(x, Edit::RemoveHeader { name } if name == SPAM_FLAG))
        .expect("removed");
    let added = edits
        .iter()
        .position(
            |x| matches!(x, Edit::AddHeader { name, value } if name == SPAM_FLAG && value == "YES"),
        )
        .expect("added");
    assert!(removed < added, "{edits:?}");
    let header = crate::pipeline::edit::edit_header(&raw, edits);
    let text = String::from_utf8_lossy(&header);
    assert!(!text.contains("X-Spam-Flag: NO"), "{text}");
    assert!(text.contains("X-Spam-Flag: YES"), "{text}");
}

#[tokio::test]
async fn bayes_scores_once_enough_is_learned() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    let mut b = Bayes::open(&data.bayes_db()).unwrap();
    for i in 0..12 {
        let spam = format!(
            "From: deals{i}@promo.example\r\nMessage-ID: <s{i}@promo.example>\r\nSubject: cheap meds offer\r\n\r\ndiscount pharmacy pills order now limited offer\r\n"
        );
        let ham = format!(
            "From: nurse{i}@hospital.example\r\nMessage-ID: <h{i}@hospital.example>\r\nSubject: rota for ward 7\r\n\r\nhandover notes for the night shift and the clinic list\r\n"
        );
        b.learn(
            &MessageView::from_bytes(spam.as_bytes(), &Limits::default()),
            Class::Spam,
        )
        .unwrap();
        b.learn(
            &MessageView::from_bytes(ham.as_bytes(), &Limits::default()),
            Class::Ham,
        )
        .unwrap();
    }
    drop(b);
    let mut cfg = Config::default();
    let probe = message(
        "",
        "limited offer: discount pills from our pharmacy, order now",
    );
    // Not enough learned for the default minimum.
    let e = run_with(
        &cfg,
        Some(&data),
        envelope("alice@example.org"),
        &probe,
        None,
    )
    .await;
    assert_eq!(spam_facts(&e)["bayes"]["state"], "learning");
    assert_eq!(spam_facts(&e)["bayes"]["learned_spam"], 12);
    cfg.spam.bayes_min_spam = 10;
    cfg.spam.bayes_min_ham = 10;
    let e = run_with(
        &cfg,
        Some(&data),
        envelope("alice@example.org"),
        &probe,
        None,
    )
    .await;
    let f = spam_facts(&e);
    assert_eq!(f["bayes"]["state"], "scored", "{f}");
    assert!(
        rules(&e).iter().any(|n| n == "BAYES_99" || n == "BAYES_95"),
        "{f}"
    );
    let ham = message("", "handover notes for the night shift on ward 7");
    let e = run_with(&cfg, Some(&data), envelope("alice@example.org"), &ham, None).await;
    assert!(
        rules(&e).iter().any(|n| n == "BAYES_00"),
        "{}",
        spam_facts(&e)
    );
}

#[tokio::test]
async fn outbound_is_skipped_unless_asked() {
    let mut env = envelope("alice@hospital.example");
    env.direction = Direction::Outbound;
    env.trusted = true;
    let e = run(&Config::default(), env.clone(), &message("", GTUBE)).await;
    assert!(matches!(
        e.outcomes[0].status,
        palisade_policy::CheckStatus::Skipped { .. }
    ));
    let mut cfg = Config::default();
    cfg.spam.outbound = true;
    let e = run(&cfg, env, &message("", GTUBE)).await;
    assert_eq!(spam_facts(&e)["action"], "reject");
}

#[test]
fn reversed_names_and_zone_rules() {
    assert_eq!(reversed("192.0.2.7".parse().unwrap()), "7.2.0.192");
    assert_eq!(
        reversed("2001:db8::1".parse().unwrap()),
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"
    );
    assert_eq!(
        zone_rule("DNSBL", "zen.spamhaus.org"),
        "DNSBL_ZEN_SPAMHAUS_ORG"
    );
    assert_eq!(registered("www.bank.co.uk"), "bank.co.uk");
    assert_eq!(registered("a.b.nhs.uk"), "b.nhs.uk");
}
