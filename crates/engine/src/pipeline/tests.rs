//! The orchestration with checks written for the test: budgets, failure modes, panics,
//! concurrency, and the built-in checks through `from_config`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_inspect::{Limits, MessageView};
use palisade_policy::{
    Action, CheckStatus, Decision, Direction, Disposition, Explanation, FailureMode, Scope,
    SmtpOutcome,
};
use palisade_store::Config;

use super::*;

fn envelope(rcpts: &[&str]) -> Arc<Envelope> {
    Arc::new(Envelope {
        queue_id: "TEST".into(),
        listener: "smtp".into(),
        direction: Direction::Inbound,
        client_ip: "192.0.2.1".parse().unwrap(),
        client_name: None,
        rdns_checked: false,
        helo: Some("client.example".into()),
        tls: None,
        auth_user: None,
        trusted: false,
        sender: "a@example.org".into(),
        crypto: None,
        recipients: rcpts
            .iter()
            .map(|a| EnvelopeRecipient {
                address: a.to_string(),
                route: "maildir".into(),
                notify: None,
                orcpt: None,
            })
            .collect(),
    })
}

fn view(raw: &[u8]) -> Arc<MessageView> {
    Arc::new(MessageView::from_bytes(raw, &Limits::default()))
}

const PLAIN: &[u8] = b"From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n";

enum Behaviour {
    Sleep(Duration),
    Panic,
    Fail,
    Quarantine(usize),
}

struct TestCheck(&'static str, Behaviour);

impl Check for TestCheck {
    fn name(&self) -> &str {
        self.0
    }
    fn run(&self, _s: Subject) -> CheckFuture {
        match self.1 {
            Behaviour::Sleep(d) => Box::pin(async move {
                tokio::time::sleep(d).await;
                Ok(Findings::default())
            }),
            Behaviour::Panic => Box::pin(async { panic!("test check panics") }),
            Behaviour::Fail => Box::pin(async { Err("daemon down".to_string()) }),
            Behaviour::Quarantine(i) => Box::pin(async move {
                Ok(Findings {
                    decisions: vec![Decision::new(
                        Scope::recipients([i]),
                        Action::quarantine("test"),
                        Explanation::new("t", "q", "held for the test"),
                    )],
                    ..Default::default()
                })
            }),
        }
    }
}

fn configured(c: TestCheck, secs: u64, mode: FailureMode) -> Configured {
    Configured {
        check: Arc::new(c),
        timeout: Duration::from_secs(secs),
        failure_mode: mode,
    }
}

#[tokio::test(start_paused = true)]
async fn timeouts_failures_and_panics_get_their_failure_mode() {
    let p = Pipeline::with_checks(
        vec![
            configured(
                TestCheck("slow", Behaviour::Sleep(Duration::from_secs(100))),
                5,
                FailureMode::Accept,
            ),
            configured(
                TestCheck("panics", Behaviour::Panic),
                5,
                FailureMode::Accept,
            ),
            configured(
                TestCheck("fails", Behaviour::Fail),
                5,
                FailureMode::Tempfail,
            ),
        ],
        Duration::from_secs(60),
        Limits::default(),
    );
    let e = p
        .evaluate(envelope(&["x@example.test"]), view(PLAIN), None)
        .await;
    assert!(matches!(
        e.outcomes[0].status,
        CheckStatus::TimedOut {
            mode: FailureMode::Accept
        }
    ));
    assert!(
        matches!(&e.outcomes[1].status, CheckStatus::Failed { error, .. } if error.contains("panicked"))
    );
    assert!(
        matches!(&e.outcomes[2].status, CheckStatus::Failed { error, mode: FailureMode::Tempfail } if error == "daemon down")
    );
    assert!(matches!(e.verdict.smtp_reply, SmtpOutcome::Tempfail(_)));
}

#[tokio::test(start_paused = true)]
async fn checks_run_concurrently_inside_the_overall_budget() {
    let p = Pipeline::with_checks(
        vec![
            configured(
                TestCheck("a", Behaviour::Sleep(Duration::from_secs(3))),
                10,
                FailureMode::Tempfail,
            ),
            configured(
                TestCheck("b", Behaviour::Sleep(Duration::from_secs(3))),
                10,
                FailureMode::Tempfail,
            ),
            configured(
                TestCheck("c", Behaviour::Sleep(Duration::from_secs(30))),
                60,
                FailureMode::Accept,
            ),
        ],
        Duration::from_secs(8),
        Limits::default(),
    );
    let start = tokio::time::Instant::now();
    let e = p
        .evaluate(envelope(&["x@example.test"]), view(PLAIN), None)
        .await;
    // Concurrent: 3 s, not 6; c is cut by the overall budget (8 s) although its own is 60.
    assert_eq!(start.elapsed().as_secs(), 8);
    assert_eq!(e.outcomes[0].status, CheckStatus::Completed);
    assert_eq!(e.outcomes[1].status, CheckStatus::Completed);
    assert!(matches!(e.outcomes[2].status, CheckStatus::TimedOut { .. }));
    assert_eq!(e.verdict.smtp_reply, SmtpOutcome::Accept);
    let _ = Instant::now();
}

#[tokio::test]
async fn per_recipient_decisions() {
    let p = Pipeline::with_checks(
        vec![configured(
            TestCheck("q", Behaviour::Quarantine(1)),
            5,
            FailureMode::Tempfail,
        )],
        Duration::from_secs(60),
        Limits::default(),
    );
    let e = p
        .evaluate(
            envelope(&["a@example.test", "b@example.test"]),
            view(PLAIN),
            None,
        )
        .await;
    assert_eq!(e.verdict.smtp_reply, SmtpOutcome::Accept);
    assert_eq!(e.verdict.per_recipient[0].disposition, Disposition::Deliver);
    assert!(matches!(
        e.verdict.per_recipient[1].disposition,
        Disposition::Quarantine { .. }
    ));
}

fn config(toml: &str) -> Config {
    let cfg: Config = toml::from_str(toml).unwrap();
    cfg.validate().unwrap();
    cfg
}

#[tokio::test]
async fn rules_from_the_configuration() {
    let cfg = config(
        r#"
[[filter.rule]]
name = "ceo held"
recipients = ["ceo@example.test"]
action = "quarantine"
reason = "Mail to the CEO is reviewed"

[[filter.rule]]
name = "tag invoices"
header = "Subject"
contains = "INVOICE"
action = "tag_subject"
value = "[EXTERNAL]"

[[filter.rule]]
name = "would drop"
senders = ["@example.org"]
action = "discard"
monitor = true

[[filter.rule]]
name = "switched off"
action = "reject"
enabled = false
"#,
    );
    let p = Pipeline::from_config(&cfg, None);
    assert_eq!(
        p.check_names(),
        vec![
            "mime",
            "rules",
            "authentication",
            "encryption",
            "attachments",
            "spam",
            "dlp"
        ]
    );
    let raw = b"From: a@example.org\r\nSubject: Your invoice\r\n\r\nhello\r\n";
    let e = p
        .evaluate(
            envelope(&["ceo@example.test", "staff@example.test"]),
            view(raw),
            None,
        )
        .await;
    let ceo = &e.verdict.per_recipient[0];
    let staff = &e.verdict.per_recipient[1];
    assert_eq!(
        ceo.disposition,
        Disposition::Quarantine {
            reason: "Mail to the CEO is reviewed".into()
        }
    );
    assert_eq!(staff.disposition, Disposition::Deliver);
    assert_eq!(
        staff.edits,
        vec![palisade_policy::Edit::TagSubject {
            tag: "[EXTERNAL]".into()
        }]
    );
    assert_eq!(staff.monitored.len(), 1);
    assert!(
        staff
            .explanations
            .iter()
            .any(|x| x.rule == "tag invoices" && x.sentence.contains("invoice"))
    );
    // A disabled rule is kept in the configuration and never evaluated.
    assert!(
        e.verdict
            .per_recipient
            .iter()
            .flat_map(|r| r
                .explanations
                .iter()
                .chain(r.monitored.iter().map(|m| &m.explanation)))
            .all(|x| x.rule != "switched off")
    );
}

#[tokio::test]
async fn uninspectable_is_never_clean() {
    let mut cfg = Config::default();
    cfg.authentication.enabled = false; // no DNS in unit tests
    cfg.inspect.max_parts = 2;
    let raw = b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n--b\r\n\r\ntwo\r\n--b\r\n\r\nthree\r\n--b--\r\n";
    for (action, want) in [
        ("quarantine", "quarantine"),
        ("reject", "reject"),
        ("tempfail", "tempfail"),
        ("deliver", "deliver"),
    ] {
        cfg.filter.uninspectable = toml::from_str::<toml::Value>(&format!("a = \"{action}\""))
            .unwrap()["a"]
            .clone()
            .try_into()
            .unwrap();
        let p = Pipeline::from_config(&cfg, None);
        let v = Arc::new(MessageView::from_bytes(raw, p.limits()));
        assert!(v.uninspectable().is_some());
        let e = p.evaluate(envelope(&["x@example.test"]), v, None).await;
        let r = &e.verdict.per_recipient[0];
        assert_eq!(r.disposition.name(), want, "{action}");
        if action == "deliver" {
            assert!(
                matches!(&r.edits[0], palisade_policy::Edit::AddHeader { name, .. } if name == checks::UNINSPECTABLE_HEADER)
            );
        }
    }
}

#[tokio::test]
async fn attachments_from_the_configuration() {
    let raw = b"From: a@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: text/plain; name=\"run.vbs\"\r\n\r\nMsgBox 1\r\n--b--\r\n";
    // Default (authentication off: no DNS in unit tests): a script is refused at DATA.
    let p = Pipeline::from_config(&config("[authentication]\nenabled = false\n"), None);
    let e = p
        .evaluate(envelope(&["x@example.test"]), view(raw), None)
        .await;
    match &e.verdict.smtp_reply {
        SmtpOutcome::Reject(r) => {
            assert_eq!(r.code, 554);
            assert!(
                r.text.contains("run.vbs") && r.text.contains("(script)"),
                "{r:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Strip: delivered with a StripParts edit; off: not run.
    let p = Pipeline::from_config(
        &config("[authentication]\nenabled = false\n[attachments]\nscript = \"strip\"\n"),
        None,
    );
    let e = p
        .evaluate(envelope(&["x@example.test"]), view(raw), None)
        .await;
    let r = &e.verdict.per_recipient[0];
    assert_eq!(r.disposition, Disposition::Deliver);
    assert!(
        matches!(&r.edits[..], [palisade_policy::Edit::StripParts { parts }] if parts[0].name == "run.vbs")
    );
    let p = Pipeline::from_config(
        &config(
            "[authentication]\nenabled = false\n[attachments]\nenabled = false\n[dlp]\nenabled = false\n",
        ),
        None,
    );
    assert_eq!(p.check_names(), vec!["mime", "rules", "encryption", "spam"]);
}

/// The DLP conditions of the rules, table-tested through the real checks: per detector
/// counts, confidence, external recipients only, unscannable parts, encrypt (held, never
/// delivered in clear), monitor mode, and the incidents they leave.
#[tokio::test]
async fn dlp_rules_from_the_configuration() {
    let cfg = config(
        r#"
[[domain]]
name = "hospital.example"
route = "maildir"

[[filter.rule]]
name = "identifiers out"
direction = "outbound"
dlp = { nhs_number = 3 }
dlp_min_confidence = 0.9
external = true
action = "encrypt"
reason = "patient identifiers"

[[filter.rule]]
name = "cards (audit)"
dlp = { payment_card = 1 }
action = "quarantine"
monitor = true

[[filter.rule]]
name = "cannot read it"
direction = "outbound"
unscannable = true
action = "quarantine"
reason = "could not be scanned"
"#,
    );
    let p = Pipeline::from_config(&cfg, None);
    let outbound = |rcpts: &[&str]| {
        let mut e = (*envelope(rcpts)).clone();
        e.direction = Direction::Outbound;
        e.trusted = true;
        Arc::new(e)
    };
    let rcpts = ["partner@clinic.example", "ward@hospital.example"];
    // (body, NHS numbers with "patient" near them, what the external recipient gets, the
    // internal one, the incidents' (rule, monitor))
    type Case<'a> = (&'a str, Disposition, Disposition, Vec<(&'a str, bool)>);
    let held = |r: &str| Disposition::Quarantine { reason: r.into() };
    let cases: Vec<Case> = vec![
        (
            "Patient list: 943 476 5919, 401 023 2137 and 943 476 5919.",
            held("encryption pending: patient identifiers"),
            Disposition::Deliver,
            vec![("identifiers out", false)],
        ),
        // Two are fewer than three.
        (
            "Patient list: 943 476 5919, 401 023 2137.",
            Disposition::Deliver,
            Disposition::Deliver,
            vec![],
        ),
        // Without a context word the confidence is below 0.9.
        (
            "List: 943 476 5919, 401 023 2137 and 943 476 5919.",
            Disposition::Deliver,
            Disposition::Deliver,
            vec![],
        ),
        // Monitor mode: recorded, delivered.
        (
            "Card 4111 1111 1111 1111",
            Disposition::Deliver,
            Disposition::Deliver,
            vec![("cards (audit)", true)],
        ),
    ];
    for (body, ext, int, incidents) in cases {
        let raw = format!("From: a@hospital.example\r\nSubject: x\r\n\r\n{body}\r\n");
        let e = p
            .evaluate(outbound(&rcpts), view(raw.as_bytes()), None)
            .await;
        assert_eq!(e.verdict.per_recipient[0].disposition, ext, "{body}");
        assert_eq!(e.verdict.per_recipient[1].disposition, int, "{body}");
        let got: Vec<(String, bool)> = dlp::incidents(&e, Some("x"))
            .into_iter()
            .map(|i| {
                if !i.monitor {
                    assert_eq!(i.recipients, ["partner@clinic.example"], "{body}");
                }
                (i.rule, i.monitor)
            })
            .collect();
        let want: Vec<(String, bool)> =
            incidents.iter().map(|(r, m)| (r.to_string(), *m)).collect();
        assert_eq!(got, want, "{body}");
    }
    // An encrypted archive member cannot be scanned: held for everyone.
    let zip = {
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        z.start_file("a.txt", zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut z, b"secret").unwrap();
        let mut bytes = z.finish().unwrap().into_inner();
        for sig in [&b"PK\x03\x04"[..], &b"PK\x01\x02"[..]] {
            let at = bytes.windows(4).position(|w| w == sig).unwrap();
            bytes[at + if sig[2] == 3 { 6 } else { 8 }] |= 1;
        }
        bytes
    };
    use base64::Engine as _;
    let raw = format!(
        "From: a@hospital.example\r\nSubject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee\r\n--b\r\nContent-Type: application/zip; name=a.zip\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--b--\r\n",
        base64::engine::general_purpose::STANDARD.encode(&zip)
    );
    let e = p
        .evaluate(outbound(&rcpts), view(raw.as_bytes()), None)
        .await;
    for r in &e.verdict.per_recipient {
        assert!(
            matches!(&r.disposition, Disposition::Quarantine { reason } if reason == "could not be scanned"
                || reason.starts_with("uninspectable")),
            "{r:?}"
        );
    }
    assert_eq!(
        dlp::incidents(&e, None)
            .iter()
            .map(|i| i.rule.as_str())
            .collect::<Vec<_>>(),
        ["cannot read it"]
    );
    // Inbound mail is not scanned by default: the dlp conditions match nothing.
    let raw = "From: a@example.org\r\nSubject: x\r\n\r\nCard 4111 1111 1111 1111\r\n";
    let e = p
        .evaluate(envelope(&rcpts), view(raw.as_bytes()), None)
        .await;
    assert!(
        e.verdict
            .per_recipient
            .iter()
            .all(|r| r.monitored.is_empty())
    );
    assert!(dlp::incidents(&e, None).is_empty());
}

#[tokio::test]
async fn rules_name_address_groups() {
    let cfg = config(
        r#"
[[filter.group]]
name = "board"
members = ["ceo@example.test", "cfo@example.test"]

[[filter.group]]
name = "partners"
members = ["@example.org"]

[[filter.rule]]
name = "board mail from partners reviewed"
sender_groups = ["partners"]
recipient_groups = ["board"]
action = "quarantine"
"#,
    );
    let p = Pipeline::from_config(&cfg, None);
    let raw = b"From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n";
    let e = p
        .evaluate(
            envelope(&["cfo@example.test", "staff@example.test"]),
            view(raw),
            None,
        )
        .await;
    assert!(matches!(
        e.verdict.per_recipient[0].disposition,
        Disposition::Quarantine { .. }
    ));
    assert_eq!(e.verdict.per_recipient[1].disposition, Disposition::Deliver);
    // A sender outside the group: the rule does not apply.
    let mut env = (*envelope(&["cfo@example.test"])).clone();
    env.sender = "x@elsewhere.test".into();
    let e = p.evaluate(Arc::new(env), view(raw), None).await;
    assert_eq!(e.verdict.per_recipient[0].disposition, Disposition::Deliver);

    // A group nobody defined, and a bad member, are configuration problems.
    let bad: Config = toml::from_str(
        r#"
[[filter.group]]
name = "g"
members = ["not an address pattern"]

[[filter.rule]]
name = "r"
recipient_groups = ["nobody"]
action = "quarantine"
"#,
    )
    .unwrap();
    let problems: Vec<String> = bad
        .validate()
        .unwrap_err()
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("filter.rule[0].recipient_groups[0]")
                && p.contains("no group 'nobody'")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("filter.group[0].members[0]")),
        "{problems:?}"
    );
}
