//! The summary on fixture rows written the way the engine writes them: the verdict JSON is
//! serialized from the policy crate's own types, so the queries follow their shape.

use palisade_policy::{
    CheckOutcome, CheckStatus, Disposition, Edit, Explanation, FailureMode, RecipientVerdict,
    Reply, SmtpOutcome, StrippedPart, Verdict,
};
use serde_json::{Value, json};

use super::*;
use crate::mail::{Batch, HeldRecipient, MessageKind, NewMessage, NewQuarantine, NewRecipient};
use crate::mail::{Origin, Rejection};
use crate::now_unix;

fn check(name: &str, facts: Value) -> CheckOutcome {
    let mut c = CheckOutcome::completed(name);
    c.facts = facts;
    c
}

fn clean_av() -> CheckOutcome {
    check(
        "antivirus",
        json!({"status": "clean", "signatures": [], "unscannable": [], "scanned": []}),
    )
}

fn infected(signatures: &[&str]) -> CheckOutcome {
    check(
        "antivirus",
        json!({"status": "infected", "signatures": signatures, "unscannable": [], "scanned": []}),
    )
}

/// The spam check's facts, in the shape it writes them.
fn spam(score: f64, action: &str) -> CheckOutcome {
    check(
        "spam",
        json!({
            "status": if action == "none" { "ham" } else { "spam" },
            "score": score,
            "thresholds": {"add_header": 5.0, "tag_subject": 6.0, "quarantine": 8.0, "reject": 15.0},
            "action": action,
            "rules": [{"name": "R", "weight": score, "sentence": "Rule said \"action\":\"reject\" infected"}],
        }),
    )
}

fn rcpt(i: usize, d: Disposition, by: Option<(&str, &str)>, edits: Vec<Edit>) -> RecipientVerdict {
    RecipientVerdict {
        index: i,
        address: format!("r{i}@example.test"),
        disposition: d,
        decided_by: by.map(|(stage, rule)| Explanation::new(stage, rule, "because")),
        edits,
        copies: vec![],
        explanations: vec![],
        monitored: vec![],
    }
}

fn deliver(i: usize) -> RecipientVerdict {
    rcpt(i, Disposition::Deliver, None, vec![])
}

fn reject(i: usize, stage: &str, rule: &str) -> RecipientVerdict {
    rcpt(
        i,
        Disposition::Reject(Reply::new(554, "5.7.1", "no")),
        Some((stage, rule)),
        vec![],
    )
}

fn quarantine(i: usize, stage: &str) -> RecipientVerdict {
    rcpt(
        i,
        Disposition::Quarantine {
            reason: format!("{stage} says so"),
        },
        Some((stage, "r")),
        vec![],
    )
}

fn verdict_json(
    direction: &str,
    checks: Vec<CheckOutcome>,
    rcpts: Vec<RecipientVerdict>,
) -> String {
    let smtp_reply = if rcpts
        .iter()
        .all(|r| matches!(r.disposition, Disposition::Reject(_)))
    {
        SmtpOutcome::Reject(Reply::new(554, "5.7.1", "no"))
    } else {
        SmtpOutcome::Accept
    };
    let v = Verdict {
        smtp_reply,
        per_recipient: rcpts,
        dsn_for_refused: false,
        score: 0.0,
        stage_scores: Default::default(),
    };
    json!({
        "envelope": {"queue_id": "x", "listener": "smtp", "direction": direction,
                     "client_ip": "192.0.2.1", "trusted": false, "sender": "", "recipients": []},
        "checks": checks,
        "verdict": v,
    })
    .to_string()
}

fn origin(ip: &str) -> Origin {
    Origin {
        listener: "smtp".into(),
        client_ip: ip.into(),
        client_helo: "h".into(),
        tls: None,
        auth_user: None,
    }
}

fn accepted(id: &str, age: i64, sender: &str, ip: &str, verdict: Option<String>) -> NewMessage {
    NewMessage {
        id: id.into(),
        received_at: now_unix() - age,
        expires_at: now_unix() + 3600,
        sender: sender.into(),
        size: 10,
        sha256: vec![1; 32],
        kind: MessageKind::Mail,
        recipients: vec![NewRecipient {
            address: "r0@example.test".into(),
            route: "maildir".into(),
            ..Default::default()
        }],
        origin: origin(ip),
        verdict,
        ..Default::default()
    }
}

/// Every recipient held: tracked only, with its quarantine row.
fn held(id: &str, sender: &str, ip: &str, verdict: String) -> (NewMessage, NewQuarantine) {
    let mut m = accepted(id, 60, sender, ip, Some(verdict));
    m.recipients.clear();
    m.status = Some("quarantined".into());
    (m, held_row(id))
}

fn held_row(id: &str) -> NewQuarantine {
    NewQuarantine {
        id: format!("H{id}"),
        queue_id: id.into(),
        received_at: now_unix() - 60,
        expires_at: now_unix() + 86400,
        sender: "s@example.org".into(),
        recipients: vec![HeldRecipient {
            address: "r0@example.test".into(),
            route: "maildir".into(),
            notify: None,
            orcpt: None,
        }],
        reason: "held".into(),
        size: 10,
        sha256: vec![3; 32],
        ..Default::default()
    }
}

fn rejected(id: &str, sender: &str, ip: &str, rcpts: usize, verdict: Option<String>) -> Rejection {
    Rejection {
        id: id.into(),
        ts: now_unix() - 30,
        origin: origin(ip),
        sender: sender.into(),
        rcpts: (0..rcpts).map(|i| format!("r{i}@example.test")).collect(),
        reply: "554 5.7.1 no".into(),
        verdict,
    }
}

fn stripped() -> Edit {
    Edit::StripParts {
        parts: vec![StrippedPart {
            section: "2".into(),
            name: "a.exe".into(),
            reason: "executable".into(),
            start: 0,
            end: 1,
            note: "removed".into(),
        }],
    }
}

fn fixture() -> (tempfile::TempDir, MailDb) {
    let d = tempfile::tempdir().unwrap();
    let mut db = MailDb::open(&d.path().join("mail.db")).unwrap();
    let mut b = Batch::default();
    let ham = || vec![clean_av(), spam(1.0, "none")];

    // Accepted: two inbound (one with a recipient refused by DMARC), one outbound, one bounce
    // we generated, and an inbound one of last month (outside every window).
    b.accepted.push(accepted(
        "IN1",
        100,
        "a@example.org",
        "192.0.2.1",
        Some(verdict_json("inbound", ham(), vec![deliver(0)])),
    ));
    b.accepted.push(accepted(
        "IN2",
        100,
        "a@example.org",
        "192.0.2.1",
        Some(verdict_json(
            "inbound",
            ham(),
            vec![deliver(0), reject(1, "authentication", "dmarc")],
        )),
    ));
    b.accepted.push(accepted(
        "OUT1",
        100,
        "me@example.test",
        "10.0.0.5",
        Some(verdict_json("outbound", ham(), vec![deliver(0)])),
    ));
    let mut bounce = accepted("DSN1", 100, "", "127.0.0.1", None);
    bounce.origin.listener = "local".into();
    b.accepted.push(bounce);
    b.accepted.push(accepted(
        "OLD",
        30 * 86400,
        "a@example.org",
        "192.0.2.1",
        Some(verdict_json(
            "inbound",
            vec![infected(&["Old.Virus"])],
            vec![reject(0, "antivirus", "Old.Virus")],
        )),
    ));
    // A delivered copy with an attachment stripped: the original is held.
    b.accepted.push(accepted(
        "STRIP",
        100,
        "a@example.org",
        "192.0.2.1",
        Some(verdict_json(
            "inbound",
            ham(),
            vec![rcpt(
                0,
                Disposition::Deliver,
                Some(("attachments", "executable")),
                vec![stripped()],
            )],
        )),
    ));
    b.quarantined.push(held_row("STRIP"));

    // Quarantined: a virus with a hostile name, spam above the quarantine threshold.
    for (m, q) in [
        held(
            "QAV",
            "v@virus.example",
            "198.51.100.1",
            verdict_json(
                "inbound",
                vec![infected(&["Win.Trojan.<script>"]), spam(2.0, "none")],
                vec![quarantine(0, "antivirus")],
            ),
        ),
        held(
            "QSPAM",
            "x@Spam.Example",
            "203.0.113.9",
            verdict_json(
                "inbound",
                vec![clean_av(), spam(12.0, "quarantine")],
                vec![quarantine(0, "spam")],
            ),
        ),
    ] {
        b.accepted.push(m);
        b.quarantined.push(q);
    }
    // Spam by score alone (the action says only add_header, e.g. its thresholds changed), and
    // a quoted local part holding an '@': the domain is after the last one.
    b.accepted.push(accepted(
        "SPAM3",
        100,
        "\"evil@fake.example\"@other.example",
        "198.51.100.7",
        Some(verdict_json(
            "inbound",
            vec![clean_av(), spam(9.5, "add_header")],
            vec![deliver(0)],
        )),
    ));
    db.apply(&b).unwrap();

    // Refused: a virus, a rule (two recipients, one message), before the checks (relay),
    // a failed check deferring the message, spam refused.
    db.apply(&Batch {
        rejected: vec![
            rejected(
                "RAV",
                "b@bad.example",
                "198.51.100.1",
                1,
                Some(verdict_json(
                    "inbound",
                    vec![infected(&["Eicar-Test-Signature", "Win.Trojan.<script>"])],
                    vec![reject(0, "antivirus", "Eicar-Test-Signature")],
                )),
            ),
            rejected(
                "RRULE",
                "c@example.org",
                "192.0.2.2",
                2,
                Some(verdict_json(
                    "inbound",
                    ham(),
                    vec![reject(0, "rules", "no-exe"), reject(1, "rules", "no-exe")],
                )),
            ),
            rejected("RRELAY", "d@example.org", "192.0.2.3", 1, None),
            rejected(
                "RFAIL",
                "e@example.org",
                "192.0.2.4",
                1,
                Some(verdict_json(
                    "inbound",
                    vec![CheckOutcome {
                        status: CheckStatus::Failed {
                            error: "clamd down".into(),
                            mode: FailureMode::Tempfail,
                        },
                        ..check("antivirus", Value::Null)
                    }],
                    vec![rcpt(
                        0,
                        Disposition::Tempfail(Reply::check_failed_tempfail()),
                        Some(("antivirus", "check_failed")),
                        vec![],
                    )],
                )),
            ),
            rejected(
                "RSPAM",
                "y@spam.example",
                "203.0.113.9",
                1,
                Some(verdict_json(
                    "inbound",
                    vec![clean_av(), spam(20.0, "reject")],
                    vec![reject(0, "spam", "reject")],
                )),
            ),
        ],
        ..Default::default()
    })
    .unwrap();
    (d, db)
}

fn counts(v: &[ReasonCount]) -> Vec<(&'static str, u64)> {
    v.iter()
        .filter(|r| r.count > 0)
        .map(|r| (r.reason.as_str(), r.count))
        .collect()
}

fn top(v: &[TopEntry]) -> Vec<(&str, u64)> {
    v.iter().map(|t| (t.name.as_str(), t.count)).collect()
}

#[test]
fn summary_of_a_day() {
    let (_d, db) = fixture();
    let since = now_unix() - 86400;
    let s = db.protection_summary(since).unwrap();
    assert_eq!(
        (s.since, s.counted_since, s.truncated),
        (since, since, false)
    );
    // IN1, IN2, STRIP, QAV, QSPAM, SPAM3 in; OUT1 and the bounce out; OLD is last month's.
    assert_eq!((s.inbound, s.outbound), (6, 2));
    assert_eq!(s.rejected, 5);
    assert_eq!(
        counts(&s.refused_by),
        [
            ("antivirus", 1),
            ("authentication", 1),
            ("spam", 1),
            ("rules", 1),
            ("check_failure", 1),
            ("smtp", 1)
        ]
    );
    assert_eq!(s.refused_by.len(), ProtectionReason::ALL.len(), "zeros too");
    assert_eq!(s.quarantined, 3);
    assert_eq!(
        counts(&s.quarantined_by),
        [("antivirus", 1), ("attachments", 1), ("spam", 1)]
    );
    assert!(
        s.quarantined_by
            .iter()
            .all(|r| r.reason != ProtectionReason::Smtp)
    );
    assert_eq!(s.infected, 2);
    assert_eq!(
        top(&s.signatures),
        [("Win.Trojan.<script>", 2), ("Eicar-Test-Signature", 1)]
    );
    // QSPAM (quarantine), RSPAM (reject), SPAM3 (score over the quarantine threshold); the
    // ham, whose rule sentence says "reject" and "infected", is not counted anywhere.
    assert_eq!(s.spam, 3);
    assert_eq!(
        top(&s.spam_clients),
        [("203.0.113.9", 2), ("198.51.100.7", 1)]
    );
    assert_eq!(
        top(&s.spam_domains),
        [("spam.example", 2), ("other.example", 1)]
    );
}

#[test]
fn window_and_bound() {
    let (_d, db) = fixture();
    // The month: OLD's virus counts too.
    let s = db.protection_summary(now_unix() - 40 * 86400).unwrap();
    assert_eq!(s.infected, 3);
    assert_eq!(s.signatures.len(), 3);
    assert_eq!(s.inbound, 7);
    // Nothing in the future.
    let s = db.protection_summary(now_unix() + 10).unwrap();
    assert_eq!(
        s.inbound + s.outbound + s.rejected + s.quarantined + s.spam,
        0
    );
    assert!(s.signatures.is_empty() && s.spam_clients.is_empty());

    // Bounded: the five refusals (30 s old) are the newest; counting starts after the first
    // message beyond the bound.
    let since = now_unix() - 86400;
    let s = db.protection_summary_bounded(since, 5).unwrap();
    assert!(s.truncated);
    assert!(s.counted_since > since);
    assert_eq!((s.inbound, s.outbound, s.rejected), (0, 0, 5));
    assert_eq!(s.infected, 1);
}

#[test]
fn top_lists_are_limited() {
    let d = tempfile::tempdir().unwrap();
    let mut db = MailDb::open(&d.path().join("mail.db")).unwrap();
    let mut b = Batch::default();
    for i in 0..(PROTECTION_TOP + 5) {
        let names: Vec<String> = (0..=i).map(|k| format!("Sig.{k:02}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        b.rejected.push(rejected(
            &format!("R{i}"),
            &format!("s@d{i}.example"),
            &format!("192.0.2.{i}"),
            1,
            Some(verdict_json(
                "inbound",
                vec![infected(&names), spam(30.0, "reject")],
                vec![reject(0, "antivirus", "x")],
            )),
        ));
    }
    db.apply(&b).unwrap();
    let s = db.protection_summary(now_unix() - 3600).unwrap();
    assert_eq!(s.infected, PROTECTION_TOP as u64 + 5);
    assert_eq!(s.signatures.len(), PROTECTION_TOP as usize);
    assert_eq!(s.signatures[0].name, "Sig.00");
    assert_eq!(s.signatures[0].count, PROTECTION_TOP as u64 + 5);
    assert_eq!(s.spam, PROTECTION_TOP as u64 + 5);
    assert_eq!(s.spam_clients.len(), PROTECTION_TOP as usize);
    assert_eq!(s.spam_domains.len(), PROTECTION_TOP as usize);
}

/// Every query walks the `received_at` index: none scans the whole table.
#[test]
fn queries_use_the_received_index() {
    let (_d, db) = fixture();
    for sql in [
        TOTALS_SQL,
        REFUSED_SQL,
        QUARANTINED_SQL,
        HELD_SQL,
        VIRUS_SQL,
        SPAM_SQL,
    ] {
        let mut stmt = db
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        let args: Vec<i64> = vec![0; stmt.parameter_count()];
        let plan: Vec<String> = stmt
            .query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let text = plan.join("\n");
        eprintln!("{text}\n");
        assert!(
            [
                "track_message_received_status",
                "track_message_filtered",
                "track_message_unchecked_or_outbound",
                "quarantine_received"
            ]
            .iter()
            .any(|i| text.contains(i)),
            "{sql}\n{text}"
        );
        for line in &plan {
            // A scan of a table (not of a json_each, a CTE or an index).
            let table = line
                .strip_prefix("SCAN ")
                .is_some_and(|rest| ["t", "track_message", "quarantine"].contains(&rest.trim()));
            assert!(!table, "full scan: {line}\n{sql}");
        }
    }
}

/// Not a test of time (none is asserted): prints how long the summary takes over a day of a
/// busy site, 200,000 messages with verdicts the size the engine writes (run with
/// `cargo test --release -p palisade-store protection_summary_figures -- --ignored --nocapture`).
#[test]
#[ignore]
fn protection_summary_figures() {
    let d = tempfile::tempdir().unwrap();
    let mut db = MailDb::open(&d.path().join("mail.db")).unwrap();
    let explained = |i: usize| {
        let mut r = deliver(0);
        r.explanations = (0..6)
            .map(|k| {
                Explanation::new(
                    "spam",
                    format!("RULE_{k}"),
                    format!("Rule {k} of message {i} matched a phrase."),
                )
            })
            .collect();
        r
    };
    let n = 200_000usize;
    let started = std::time::Instant::now();
    for chunk in 0..(n / 10_000) {
        let mut b = Batch::default();
        for j in 0..10_000 {
            let i = chunk * 10_000 + j;
            let id = format!("M{i:08}");
            let (checks, rcpts) = match i % 100 {
                0 => (
                    vec![infected(&["Eicar-Test-Signature"]), spam(1.0, "none")],
                    vec![reject(0, "antivirus", "x")],
                ),
                1..=5 => (
                    vec![clean_av(), spam(12.0, "quarantine")],
                    vec![quarantine(0, "spam")],
                ),
                _ => (
                    vec![
                        check("mime", json!({"parts": 3})),
                        check("rules", json!({})),
                        clean_av(),
                        spam(1.0, "none"),
                    ],
                    vec![explained(i)],
                ),
            };
            let v = verdict_json("inbound", checks, rcpts);
            let mut m = accepted(
                &id,
                ((n - i) * 80_000 / n) as i64, // arrival order, the newest last
                &format!("s@d{}.example", i % 5000),
                &format!("192.0.2.{}", i % 250),
                Some(v),
            );
            m.recipients.clear();
            m.status = Some("delivered".into());
            b.accepted.push(m);
        }
        db.apply(&b).unwrap();
    }
    let bytes: i64 = db
        .conn
        .query_row("SELECT sum(length(verdict)) FROM track_message", [], |r| {
            r.get(0)
        })
        .unwrap();
    eprintln!(
        "{n} messages, {} bytes of verdicts on average, written in {:?}",
        bytes / n as i64,
        started.elapsed()
    );
    let since = now_unix() - 86400;
    for (name, sql) in [
        ("totals", TOTALS_SQL),
        ("refused", REFUSED_SQL),
        ("quarantined", QUARANTINED_SQL),
        ("held", HELD_SQL),
        ("virus", VIRUS_SQL),
        ("spam", SPAM_SQL),
    ] {
        let t = std::time::Instant::now();
        let mut stmt = db.conn.prepare(sql).unwrap();
        let args: Vec<i64> = [since, PROTECTION_TOP as i64][..stmt.parameter_count()].to_vec();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), |_| Ok(()))
            .unwrap()
            .count();
        eprintln!("{name}: {:?} ({rows} rows)", t.elapsed());
    }
    for _ in 0..2 {
        let t = std::time::Instant::now();
        let s = db.protection_summary(now_unix() - 86400).unwrap();
        eprintln!(
            "summary of the day: {:?} (in {}, refused {:?}, spam {}, infected {})",
            t.elapsed(),
            s.inbound,
            counts(&s.refused_by),
            s.spam,
            s.infected
        );
    }
}
