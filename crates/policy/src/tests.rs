//! Table tests for decide(): precedence, scopes, monitor mode, failure modes, encryption, the
//! DATA reply, DSN/backscatter, edits and copies, scores, and the JSON forms.

use serde_json::json;

use crate::*;

fn rcpts(n: usize) -> Vec<RecipientInfo> {
    (0..n)
        .map(|i| RecipientInfo::new(format!("r{i}@example.org")))
        .collect()
}

fn why(rule: &str) -> Explanation {
    Explanation::new("test", rule, format!("rule {rule} matched"))
}

fn dec(scope: Scope, action: Action, rule: &str) -> Decision {
    Decision::new(scope, action, why(rule))
}

fn check(name: &str, decisions: Vec<Decision>) -> CheckOutcome {
    decisions
        .into_iter()
        .fold(CheckOutcome::completed(name), CheckOutcome::with_decision)
}

fn some(ix: &[usize]) -> Scope {
    Scope::recipients(ix.iter().copied())
}

fn reject(code: u16, enhanced: &str, text: &str) -> Action {
    Action::reject(Reply::new(code, enhanced, text))
}

const INBOUND: DecideContext = DecideContext {
    direction: Direction::Inbound,
    sender_trusted_or_authenticated: false,
    encryption_available: false,
};
const OUTBOUND_AUTH: DecideContext = DecideContext {
    direction: Direction::Outbound,
    sender_trusted_or_authenticated: true,
    encryption_available: false,
};
const WITH_ENCRYPTION: DecideContext = DecideContext {
    direction: Direction::Outbound,
    sender_trusted_or_authenticated: true,
    encryption_available: true,
};

fn names(v: &Verdict) -> Vec<&'static str> {
    v.per_recipient
        .iter()
        .map(|r| r.disposition.name())
        .collect()
}

fn smtp_code(v: &Verdict) -> u16 {
    match &v.smtp_reply {
        SmtpOutcome::Accept => 250,
        SmtpOutcome::Reject(r) | SmtpOutcome::Tempfail(r) => r.code,
    }
}

/// Every pair of dispositions, one recipient, in both check orders (and both as two decisions
/// of one check and as two checks): the higher one wins, whatever the order.
#[test]
fn precedence_table() {
    let r550 = || reject(550, "5.7.1", "no");
    let t451 = || Action::tempfail(Reply::new(451, "4.7.1", "later"));
    // (higher, lower, winner's name, ctx)
    let table: Vec<(Action, Action, &str, DecideContext)> = vec![
        (t451(), r550(), "tempfail", INBOUND),
        (r550(), Action::quarantine("virus"), "reject", INBOUND),
        (
            Action::quarantine("spam"),
            Action::hold_for_confirmation(),
            "quarantine",
            INBOUND,
        ),
        (
            Action::hold_for_confirmation(),
            Action::discard(),
            "hold_for_confirmation",
            INBOUND,
        ),
        (
            Action::discard(),
            Action::encrypt(None),
            "discard",
            WITH_ENCRYPTION,
        ),
        (
            Action::encrypt(Some("smime".into())),
            Action::redirect("legal"),
            "encrypt",
            WITH_ENCRYPTION,
        ),
        (
            Action::redirect("legal"),
            Action::deliver(),
            "redirect",
            INBOUND,
        ),
        // Encryption unavailable: encrypt is a quarantine, so it beats hold and discard.
        (
            Action::encrypt(None),
            Action::hold_for_confirmation(),
            "quarantine",
            INBOUND,
        ),
        (
            Action::encrypt(None),
            Action::discard(),
            "quarantine",
            INBOUND,
        ),
    ];
    for (high, low, want, ctx) in table {
        let orders = [
            vec![check(
                "a",
                vec![
                    dec(Scope::Message, high.clone(), "high"),
                    dec(Scope::Message, low.clone(), "low"),
                ],
            )],
            vec![check(
                "a",
                vec![
                    dec(Scope::Message, low.clone(), "low"),
                    dec(Scope::Message, high.clone(), "high"),
                ],
            )],
            vec![
                check("a", vec![dec(Scope::Message, high.clone(), "high")]),
                check("b", vec![dec(Scope::Message, low.clone(), "low")]),
            ],
            vec![
                check("a", vec![dec(Scope::Message, low.clone(), "low")]),
                check("b", vec![dec(Scope::Message, high.clone(), "high")]),
            ],
        ];
        for outcomes in orders {
            let v = decide(&rcpts(1), &outcomes, &ctx);
            assert_eq!(names(&v), [want], "{high:?} vs {low:?}");
            let decided_by = v.per_recipient[0].decided_by.as_ref().unwrap();
            assert_eq!(decided_by.rule, "high", "{high:?} vs {low:?}");
            // Both decisions are explained, winner or not.
            let rules: Vec<&str> = v.per_recipient[0]
                .explanations
                .iter()
                .map(|e| e.rule.as_str())
                .collect();
            assert!(
                rules.contains(&"high") && rules.contains(&"low"),
                "{rules:?}"
            );
        }
    }
}

#[test]
fn rank_is_a_total_order_matching_the_documentation() {
    let order = [
        Disposition::Tempfail(Reply::default_tempfail()),
        Disposition::Reject(Reply::default_reject()),
        Disposition::Quarantine { reason: "x".into() },
        Disposition::HoldForConfirmation,
        Disposition::Discard,
        Disposition::Encrypt { scheme: None },
        Disposition::Redirect { route: "r".into() },
        Disposition::Deliver,
    ];
    for pair in order.windows(2) {
        assert!(pair[0].rank() > pair[1].rank(), "{pair:?}");
    }
}

#[test]
fn ties_go_to_the_first_in_check_order() {
    let outcomes = [
        check(
            "a",
            vec![dec(Scope::Message, Action::redirect("first"), "one")],
        ),
        check(
            "b",
            vec![dec(Scope::Message, Action::redirect("second"), "two")],
        ),
    ];
    let v = decide(&rcpts(1), &outcomes, &INBOUND);
    assert_eq!(
        v.per_recipient[0].disposition,
        Disposition::Redirect {
            route: "first".into()
        }
    );
}

#[test]
fn nothing_decided_delivers_with_250() {
    let v = decide(&rcpts(2), &[CheckOutcome::completed("spf")], &INBOUND);
    assert_eq!(names(&v), ["deliver", "deliver"]);
    assert_eq!(v.smtp_reply, SmtpOutcome::Accept);
    assert!(v.per_recipient.iter().all(|r| r.decided_by.is_none()));
    assert!(!v.dsn_for_refused);
}

/// Scopes, the DATA reply and the DSN rule, as one table:
/// (case, recipients, decisions as (scope, action), ctx, dispositions, SMTP code, dsn).
#[test]
fn scopes_replies_and_dsn_table() {
    type Row = (
        &'static str,
        usize,
        Vec<(Scope, Action)>,
        DecideContext,
        Vec<&'static str>,
        u16,
        bool,
    );
    let r = || reject(550, "5.7.1", "refused");
    let table: Vec<Row> = vec![
        (
            "one of three rejected, inbound: silent drop",
            3,
            vec![(some(&[1]), r())],
            INBOUND,
            vec!["deliver", "reject", "deliver"],
            250,
            false,
        ),
        (
            "one of three rejected, outbound authenticated: DSN",
            3,
            vec![(some(&[1]), r())],
            OUTBOUND_AUTH,
            vec!["deliver", "reject", "deliver"],
            250,
            true,
        ),
        (
            "outbound but not trusted: no DSN",
            2,
            vec![(some(&[0]), r())],
            DecideContext {
                direction: Direction::Outbound,
                ..INBOUND
            },
            vec!["reject", "deliver"],
            250,
            false,
        ),
        (
            "inbound from a trusted relay: still no DSN",
            2,
            vec![(some(&[0]), r())],
            DecideContext {
                sender_trusted_or_authenticated: true,
                ..INBOUND
            },
            vec!["reject", "deliver"],
            250,
            false,
        ),
        (
            "every recipient rejected one by one: 5xx, no DSN",
            2,
            vec![(some(&[0]), r()), (some(&[1]), r())],
            OUTBOUND_AUTH,
            vec!["reject", "reject"],
            550,
            false,
        ),
        (
            "whole message rejected: 5xx",
            3,
            vec![(Scope::Message, r())],
            INBOUND,
            vec!["reject", "reject", "reject"],
            550,
            false,
        ),
        (
            "rejected and discarded: accepted (discard is silent)",
            2,
            vec![(some(&[0]), r()), (some(&[1]), Action::discard())],
            OUTBOUND_AUTH,
            vec!["reject", "discard"],
            250,
            true,
        ),
        (
            "rejected and quarantined: accepted",
            2,
            vec![(some(&[0]), r()), (some(&[1]), Action::quarantine("spam"))],
            INBOUND,
            vec!["reject", "quarantine"],
            250,
            false,
        ),
        (
            "mixed: quarantined, discarded, delivered",
            3,
            vec![
                (some(&[0]), Action::quarantine("dlp")),
                (some(&[1]), Action::discard()),
            ],
            INBOUND,
            vec!["quarantine", "discard", "deliver"],
            250,
            false,
        ),
        (
            "a tempfail for one recipient defers all",
            3,
            vec![
                (
                    some(&[2]),
                    Action::tempfail(Reply::new(451, "4.7.1", "greylisted")),
                ),
                (some(&[0]), r()),
            ],
            OUTBOUND_AUTH,
            vec!["tempfail", "tempfail", "tempfail"],
            451,
            false,
        ),
        (
            "scope beyond the recipients is ignored",
            2,
            vec![(some(&[5, 9]), r())],
            INBOUND,
            vec!["deliver", "deliver"],
            250,
            false,
        ),
        (
            "an empty recipient set applies to no one",
            2,
            vec![(some(&[]), r())],
            INBOUND,
            vec!["deliver", "deliver"],
            250,
            false,
        ),
        (
            "no recipients at all: 554, no panic",
            0,
            vec![(Scope::Message, r())],
            INBOUND,
            vec![],
            554,
            false,
        ),
    ];
    for (case, n, decisions, ctx, want, code, dsn) in table {
        let outcomes = [check(
            "policy",
            decisions
                .into_iter()
                .enumerate()
                .map(|(i, (scope, action))| dec(scope, action, &format!("d{i}")))
                .collect(),
        )];
        let v = decide(&rcpts(n), &outcomes, &ctx);
        assert_eq!(names(&v), want, "{case}");
        assert_eq!(smtp_code(&v), code, "{case}");
        assert_eq!(v.dsn_for_refused, dsn, "{case}");
        assert_eq!(
            v.refused().count(),
            want.iter().filter(|w| **w == "reject").count(),
            "{case}"
        );
        for (i, r) in v.per_recipient.iter().enumerate() {
            assert_eq!(r.index, i);
            assert_eq!(r.address, format!("r{i}@example.org"));
        }
    }
}

#[test]
fn all_rejected_uses_the_first_rejecting_decision_in_check_order() {
    // Recipient 0 is rejected by the second check, recipient 1 by the first: the first
    // check's reply is the 5xx.
    let outcomes = [
        check(
            "dmarc",
            vec![dec(
                some(&[1]),
                reject(550, "5.7.26", "DMARC policy"),
                "p=reject",
            )],
        ),
        check(
            "policy",
            vec![dec(some(&[0]), reject(554, "5.7.1", "policy"), "block")],
        ),
    ];
    let v = decide(&rcpts(2), &outcomes, &INBOUND);
    assert_eq!(
        v.smtp_reply,
        SmtpOutcome::Reject(Reply::new(550, "5.7.26", "DMARC policy"))
    );
    // Each refused recipient keeps its own reply (for tracking and a DSN).
    assert_eq!(
        v.per_recipient[0].disposition,
        Disposition::Reject(Reply::new(554, "5.7.1", "policy"))
    );
}

#[test]
fn replies_are_normalized_to_their_class() {
    let outcomes = [check(
        "p",
        vec![dec(
            Scope::Message,
            reject(451, "4.7.1", "wrong class\r\nInjected: yes"),
            "r",
        )],
    )];
    let v = decide(&rcpts(1), &outcomes, &INBOUND);
    assert_eq!(
        v.smtp_reply,
        SmtpOutcome::Reject(Reply::new(550, "5.7.1", "wrong class  Injected: yes"))
    );
    let outcomes = [check(
        "p",
        vec![dec(
            Scope::Message,
            Action::tempfail(Reply::new(450, "5.1.1", "")),
            "t",
        )],
    )];
    let v = decide(&rcpts(1), &outcomes, &INBOUND);
    // Right class, enhanced code of the wrong class: dropped.
    assert_eq!(v.smtp_reply, SmtpOutcome::Tempfail(Reply::new(450, "", "")));
    let outcomes = [check(
        "p",
        vec![dec(
            Scope::Message,
            Action::tempfail(Reply::new(250, "", "")),
            "t",
        )],
    )];
    let v = decide(&rcpts(1), &outcomes, &INBOUND);
    assert_eq!(
        v.smtp_reply,
        SmtpOutcome::Tempfail(Reply::default_tempfail())
    );

    for (enhanced, code, ok) in [
        ("", 550, true),
        ("5.7.1", 550, true),
        ("5.7.26", 550, true),
        ("4.7.1", 550, false),
        ("5.7", 550, false),
        ("5.7.1.2", 550, false),
        ("5.x.1", 550, false),
        ("5.7.1000", 550, false),
    ] {
        assert_eq!(
            Reply::new(code, enhanced, "").enhanced_is_valid(),
            ok,
            "{enhanced}"
        );
    }
}

#[test]
fn monitor_mode_records_but_never_enforces() {
    let outcomes = [
        check(
            "antispam",
            vec![
                dec(Scope::Message, reject(550, "5.7.1", "spam"), "high").monitored(),
                dec(some(&[1]), Action::quarantine("spam"), "medium").monitored(),
                dec(Scope::Message, Action::tag_subject("[SPAM]"), "tag").monitored(),
                dec(
                    Scope::Message,
                    Action::bcc("spam-review@example.org"),
                    "copy",
                )
                .monitored(),
                dec(
                    Scope::Message,
                    Action::tempfail(Reply::default_tempfail()),
                    "defer",
                )
                .monitored(),
            ],
        ),
        check(
            "policy",
            vec![dec(
                some(&[0]),
                Action::add_header("X-Checked", "yes"),
                "hdr",
            )],
        ),
    ];
    let v = decide(&rcpts(2), &outcomes, &INBOUND);
    assert_eq!(names(&v), ["deliver", "deliver"]);
    assert_eq!(v.smtp_reply, SmtpOutcome::Accept);
    assert_eq!(v.per_recipient[0].monitored.len(), 4);
    assert_eq!(v.per_recipient[1].monitored.len(), 5);
    assert!(v.per_recipient.iter().all(|r| r.copies.is_empty()));
    assert_eq!(
        v.per_recipient[0].edits,
        [Edit::AddHeader {
            name: "X-Checked".into(),
            value: "yes".into()
        }]
    );
    assert!(v.per_recipient[1].edits.is_empty());
    // Monitored decisions carry their explanations but are not among the enforced ones.
    assert_eq!(v.per_recipient[1].monitored[1].explanation.rule, "medium");
    assert!(v.per_recipient[1].explanations.is_empty());

    // Removing the monitored decisions changes nothing else.
    let mut plain = outcomes.clone();
    plain[0].decisions.clear();
    let w = decide(&rcpts(2), &plain, &INBOUND);
    for (a, b) in v.per_recipient.iter().zip(&w.per_recipient) {
        assert_eq!(
            (&a.disposition, &a.edits, &a.copies, &a.explanations),
            (&b.disposition, &b.edits, &b.copies, &b.explanations)
        );
    }
}

/// (status, ctx) → (dispositions, SMTP reply, a phrase every explanation list contains).
#[test]
fn failure_modes_table() {
    let table: Vec<(CheckStatus, &str, SmtpOutcome, &str)> = vec![
        (
            CheckStatus::Failed {
                error: "clamd: connection refused".into(),
                mode: FailureMode::Tempfail,
            },
            "tempfail",
            SmtpOutcome::Tempfail(Reply::check_failed_tempfail()),
            "antivirus failed (clamd: connection refused); failure mode tempfail",
        ),
        (
            CheckStatus::TimedOut {
                mode: FailureMode::Tempfail,
            },
            "tempfail",
            SmtpOutcome::Tempfail(Reply::check_failed_tempfail()),
            "antivirus did not finish in time; failure mode tempfail",
        ),
        (
            CheckStatus::Failed {
                error: "boom".into(),
                mode: FailureMode::Accept,
            },
            "deliver",
            SmtpOutcome::Accept,
            "fail open): the message goes on NOT checked by it",
        ),
        (
            CheckStatus::TimedOut {
                mode: FailureMode::Quarantine,
            },
            "quarantine",
            SmtpOutcome::Accept,
            "failure mode quarantine",
        ),
        (
            CheckStatus::Failed {
                error: "boom".into(),
                mode: FailureMode::Reject,
            },
            "reject",
            SmtpOutcome::Reject(Reply::check_failed_reject()),
            "failure mode reject",
        ),
        (
            CheckStatus::Skipped {
                reason: "larger than max_scan_size".into(),
            },
            "deliver",
            SmtpOutcome::Accept,
            "antivirus was skipped (larger than max_scan_size): the message was not checked by it.",
        ),
    ];
    for (status, want, reply, phrase) in table {
        // The failed check's own (partial) results are ignored: a quarantine decision and a
        // score it may have produced before failing count for nothing.
        let mut av = CheckOutcome::new("antivirus", status.clone())
            .with_decision(dec(
                Scope::Message,
                Action::quarantine("partial"),
                "partial",
            ))
            .with_contribution(Explanation::new("antivirus", "partial", "x").with_score(50.0));
        if status == CheckStatus::Completed {
            av.decisions.clear();
        }
        let spam = check(
            "antispam",
            vec![dec(Scope::Message, Action::tag_subject("[SPAM]"), "tag")],
        );
        let v = decide(&rcpts(2), &[av, spam], &INBOUND);
        assert_eq!(names(&v), [want, want], "{status:?}");
        assert_eq!(v.smtp_reply, reply, "{status:?}");
        assert_eq!(v.score, 0.0, "{status:?}");
        for r in &v.per_recipient {
            assert!(
                r.explanations.iter().any(|e| e.sentence.contains(phrase)),
                "{status:?}: {:?}",
                r.explanations
            );
            assert!(
                r.explanations.iter().all(|e| e.rule != "partial"),
                "{status:?}"
            );
            assert!(r.explanations.iter().all(|e| !e.sentence.contains("clean")));
            if want == "tempfail" || want == "reject" {
                assert!(r.edits.is_empty(), "nothing kept: {status:?}");
            } else {
                assert_eq!(
                    r.edits,
                    [Edit::TagSubject {
                        tag: "[SPAM]".into()
                    }]
                );
            }
        }
    }
}

#[test]
fn a_failed_check_in_tempfail_mode_beats_a_reject_of_every_recipient() {
    let outcomes = [
        check(
            "policy",
            vec![dec(Scope::Message, reject(550, "5.7.1", "no"), "no")],
        ),
        CheckOutcome::failed("antivirus", "down", FailureMode::default()),
    ];
    let v = decide(&rcpts(2), &outcomes, &OUTBOUND_AUTH);
    assert_eq!(
        v.smtp_reply,
        SmtpOutcome::Tempfail(Reply::check_failed_tempfail())
    );
    assert_eq!(names(&v), ["tempfail", "tempfail"]);
    assert_eq!(
        v.per_recipient[0].decided_by.as_ref().unwrap().stage,
        "antivirus"
    );
    assert!(!v.dsn_for_refused);
}

#[test]
fn the_first_tempfail_in_check_order_is_the_reply() {
    let outcomes = [
        check(
            "greylist",
            vec![dec(
                some(&[1]),
                Action::tempfail(Reply::new(451, "4.7.1", "greylisted")),
                "grey",
            )],
        ),
        CheckOutcome::timed_out("antivirus", FailureMode::Tempfail),
    ];
    let v = decide(&rcpts(2), &outcomes, &INBOUND);
    assert_eq!(
        v.smtp_reply,
        SmtpOutcome::Tempfail(Reply::new(451, "4.7.1", "greylisted"))
    );
    // Recipient 0 was only deferred by the antivirus, but the whole message carries one reply.
    assert_eq!(
        v.per_recipient[0].disposition,
        Disposition::Tempfail(Reply::new(451, "4.7.1", "greylisted"))
    );
}

#[test]
fn encrypt_without_encryption_quarantines_never_sends_clear() {
    let outcomes = [check(
        "dlp",
        vec![
            dec(some(&[0]), Action::encrypt(Some("smime".into())), "phi"),
            dec(
                Scope::Message,
                Action::bcc("journal@example.org"),
                "journal",
            ),
        ],
    )];
    let v = decide(&rcpts(2), &outcomes, &OUTBOUND_AUTH);
    let r0 = &v.per_recipient[0];
    assert_eq!(
        r0.disposition,
        Disposition::Quarantine {
            reason: "encryption unavailable".into()
        }
    );
    let by = r0.decided_by.as_ref().unwrap();
    assert_eq!(
        (by.stage.as_str(), by.rule.as_str(), by.sentence.as_str()),
        ("test", "phi", ENCRYPTION_UNAVAILABLE)
    );
    assert!(
        r0.explanations
            .iter()
            .any(|e| e.sentence == ENCRYPTION_UNAVAILABLE)
    );
    assert!(
        r0.copies.is_empty(),
        "a held message is not copied out in clear"
    );
    assert_eq!(v.per_recipient[1].disposition, Disposition::Deliver);
    assert_eq!(v.per_recipient[1].copies, ["journal@example.org"]);
    assert_eq!(v.smtp_reply, SmtpOutcome::Accept);

    let v = decide(&rcpts(2), &outcomes, &WITH_ENCRYPTION);
    assert_eq!(
        v.per_recipient[0].disposition,
        Disposition::Encrypt {
            scheme: Some("smime".into())
        }
    );
    assert_eq!(v.per_recipient[0].copies, ["journal@example.org"]);
}

#[test]
fn edits_accumulate_in_check_order_and_copies_deduplicate() {
    let outcomes = [
        check(
            "spf",
            vec![dec(
                Scope::Message,
                Action::add_header("Authentication-Results", "spf=pass"),
                "a",
            )],
        ),
        check(
            "antispam",
            vec![
                dec(some(&[1, 2]), Action::tag_subject("[SPAM]"), "tag"),
                dec(Scope::Message, Action::remove_header("X-Spam-Flag"), "rm"),
                dec(Scope::Message, Action::bcc("archive@example.org"), "b1"),
            ],
        ),
        check(
            "policy",
            vec![
                dec(Scope::Message, Action::bcc("archive@example.org"), "b2"),
                dec(some(&[2]), Action::bcc("supervisor@example.org"), "b3"),
                dec(some(&[1]), Action::quarantine("spam"), "q"),
                dec(some(&[3]), Action::discard(), "d"),
            ],
        ),
    ];
    let v = decide(&rcpts(4), &outcomes, &INBOUND);
    let auth = Edit::AddHeader {
        name: "Authentication-Results".into(),
        value: "spf=pass".into(),
    };
    let rm = Edit::RemoveHeader {
        name: "X-Spam-Flag".into(),
    };
    let tag = Edit::TagSubject {
        tag: "[SPAM]".into(),
    };
    assert_eq!(v.per_recipient[0].edits, [auth.clone(), rm.clone()]);
    assert_eq!(v.per_recipient[0].copies, ["archive@example.org"]);
    // Quarantined: edits kept (a released copy carries them), no copies.
    assert_eq!(
        v.per_recipient[1].edits,
        [auth.clone(), tag.clone(), rm.clone()]
    );
    assert!(v.per_recipient[1].copies.is_empty());
    assert_eq!(v.per_recipient[2].edits, [auth, tag, rm]);
    assert_eq!(
        v.per_recipient[2].copies,
        ["archive@example.org", "supervisor@example.org"]
    );
    // Discarded: nothing kept.
    assert!(v.per_recipient[3].edits.is_empty() && v.per_recipient[3].copies.is_empty());
}

#[test]
fn scores_sum_per_stage_and_stay_finite() {
    let spam = CheckOutcome::completed("antispam")
        .with_contribution(
            Explanation::new(
                "antispam",
                "BAYES_99",
                "Looks like spam to the Bayes filter.",
            )
            .with_score(3.5),
        )
        .with_contribution(
            Explanation::new("antispam", "URIBL", "Links to a listed domain.").with_score(2.0),
        )
        .with_contribution(Explanation::new("antispam", "NAN", "broken").with_score(f64::NAN))
        .with_contribution(Explanation::new("antispam", "NOTE", "no score"));
    let auth = CheckOutcome::completed("dmarc").with_contribution(
        Explanation::new("dmarc", "fail", "DMARC failed.").with_score(-1.0 + 5.0),
    );
    let failed = CheckOutcome::failed("rbl", "dns", FailureMode::Accept)
        .with_contribution(Explanation::new("rbl", "listed", "x").with_score(100.0));
    let outcomes = [spam, auth, failed];
    assert_eq!(score(&outcomes), 9.5);
    let by = stage_scores(&outcomes);
    assert_eq!(by.get("antispam"), Some(&5.5));
    assert_eq!(by.get("dmarc"), Some(&4.0));
    assert_eq!(by.get("rbl"), None);
    let v = decide(&rcpts(1), &outcomes, &INBOUND);
    assert_eq!(v.score, 9.5);
    // Every contribution is explained, even without a score.
    assert_eq!(
        v.per_recipient[0]
            .explanations
            .iter()
            .filter(|e| e.stage == "antispam")
            .count(),
        4
    );

    let huge = CheckOutcome::completed("x")
        .with_contribution(Explanation::new("x", "a", "").with_score(f64::MAX))
        .with_contribution(Explanation::new("x", "b", "").with_score(f64::MAX))
        .with_contribution(Explanation::new("x", "c", "").with_score(f64::INFINITY));
    assert_eq!(score(&[huge]), f64::MAX);
}

#[test]
fn json_forms_are_flat_and_named_for_configuration() {
    let cases: Vec<(Action, serde_json::Value)> = vec![
        (Action::deliver(), json!({"action": "deliver"})),
        (
            reject(550, "5.7.1", "no"),
            json!({"action": "reject", "code": 550, "enhanced": "5.7.1", "text": "no"}),
        ),
        (
            Action::tempfail(Reply::new(451, "4.7.1", "later")),
            json!({"action": "tempfail", "code": 451, "enhanced": "4.7.1", "text": "later"}),
        ),
        (
            Action::quarantine("virus"),
            json!({"action": "quarantine", "reason": "virus"}),
        ),
        (Action::discard(), json!({"action": "discard"})),
        (
            Action::redirect("legal"),
            json!({"action": "redirect", "route": "legal"}),
        ),
        (
            Action::encrypt(None),
            json!({"action": "encrypt", "scheme": null}),
        ),
        (
            Action::hold_for_confirmation(),
            json!({"action": "hold_for_confirmation"}),
        ),
        (
            Action::add_header("X-A", "b"),
            json!({"action": "add_header", "name": "X-A", "value": "b"}),
        ),
        (
            Action::remove_header("X-A"),
            json!({"action": "remove_header", "name": "X-A"}),
        ),
        (
            Action::tag_subject("[SPAM]"),
            json!({"action": "tag_subject", "tag": "[SPAM]"}),
        ),
        (
            Action::remove_authentication_results("mx.example"),
            json!({"action": "remove_authentication_results", "authserv_id": "mx.example"}),
        ),
        (
            Action::bcc("a@b"),
            json!({"action": "bcc", "address": "a@b"}),
        ),
    ];
    for (action, want) in cases {
        assert_eq!(serde_json::to_value(&action).unwrap(), want);
        assert_eq!(serde_json::from_value::<Action>(want).unwrap(), action);
    }
    assert_eq!(
        serde_json::to_value(Scope::Message).unwrap(),
        json!("message")
    );
    assert_eq!(
        serde_json::to_value(some(&[2, 0])).unwrap(),
        json!({"recipients": [0, 2]})
    );
    assert_eq!(
        serde_json::from_value::<Action>(json!({"action": "encrypt"})).unwrap(),
        Action::encrypt(None)
    );
    let err = serde_json::from_value::<Action>(json!({"action": "explode"})).unwrap_err();
    assert!(err.to_string().contains("unknown variant"), "{err}");

    for mode in FailureMode::ALL {
        assert_eq!(serde_json::to_value(mode).unwrap(), json!(mode.as_str()));
        assert_eq!(mode.as_str().parse::<FailureMode>(), Ok(mode));
    }
    assert_eq!(FailureMode::default(), FailureMode::Tempfail);
    assert!("clean".parse::<FailureMode>().is_err());

    // A check outcome as a check (or a test) writes it: defaults fill the rest.
    let outcome: CheckOutcome = serde_json::from_value(json!({
        "name": "antivirus",
        "status": {"state": "timed_out"},
    }))
    .unwrap();
    assert_eq!(outcome.failure_mode(), Some(FailureMode::Tempfail));
    let decision: Decision = serde_json::from_value(json!({
        "action": {"action": "quarantine", "reason": "virus"},
        "explanation": {"stage": "antivirus", "rule": "eicar", "sentence": "EICAR test file."},
    }))
    .unwrap();
    assert_eq!(decision.scope, Scope::Message);
    assert!(!decision.monitor);
}

#[test]
fn a_verdict_survives_a_json_round_trip() {
    let outcomes = [
        CheckOutcome::completed("antispam")
            .with_facts(json!({"engine": "rspamd", "symbols": ["BAYES_99"]}))
            .with_contribution(Explanation::new("antispam", "BAYES_99", "s").with_score(3.5))
            .with_contribution(Explanation::new("antispam", "BAD", "s").with_score(f64::NAN))
            .with_decision(dec(some(&[1]), Action::quarantine("spam"), "q"))
            .with_decision(dec(Scope::Message, Action::tag_subject("[SPAM]"), "t").monitored()),
        CheckOutcome::skipped("antivirus", "disabled"),
    ];
    let v = decide(&rcpts(2), &outcomes, &INBOUND);
    let text = serde_json::to_string(&v).unwrap();
    let back: Verdict = serde_json::from_str(&text).unwrap();
    // NaN is written as null and read back as "no score"; everything else is identical.
    assert_eq!(serde_json::to_string(&back).unwrap(), text);
    let o = serde_json::to_string(&outcomes).unwrap();
    let _: Vec<CheckOutcome> = serde_json::from_str(&o).unwrap();
}
