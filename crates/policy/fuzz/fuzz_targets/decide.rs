//! `decide()` on arbitrary recipients, contexts and check outcomes (built from the fuzzer's
//! bytes with `arbitrary::Unstructured`: out-of-range scopes, replies of any code, NaN and
//! infinite scores, failures in every mode, monitored decisions). Invariants: no panic; one
//! verdict per recipient in order; the DATA reply follows the rules (4xx iff some recipient
//! tempfails and then all do; 5xx only when every recipient is rejected; reject and tempfail
//! replies are of their class); DSN only for accepted outbound mail from a trusted sender with
//! a refused recipient; copies only when the message goes on; monitored decisions change
//! nothing; the verdict survives a JSON round trip.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use palisade_policy::{
    Action, CheckOutcome, CheckStatus, DecideContext, Decision, Direction, Disposition,
    Explanation, FailureMode, RecipientInfo, Reply, Scope, SmtpOutcome, Verdict, decide,
};

fn pick<'a>(u: &mut Unstructured, from: &[&'a str]) -> Result<&'a str> {
    Ok(from[u.choose_index(from.len())?])
}

fn text(u: &mut Unstructured) -> Result<String> {
    Ok(if u.ratio(1, 4)? {
        u.arbitrary::<String>()?
    } else {
        pick(u, &["a", "b", "spam", "", "x\r\ny"])?.to_string()
    })
}

fn reply(u: &mut Unstructured) -> Result<Reply> {
    let code = if u.ratio(1, 4)? {
        u.arbitrary::<u16>()?
    } else {
        *u.choose(&[250, 421, 450, 451, 550, 554])?
    };
    let enhanced = if u.ratio(1, 4)? {
        u.arbitrary::<String>()?
    } else {
        pick(u, &["", "4.7.1", "5.7.1", "5.1.10", "5.7", "9.9.9"])?.to_string()
    };
    Ok(Reply::new(code, &enhanced, text(u)?))
}

fn score(u: &mut Unstructured) -> Result<Option<f64>> {
    Ok(match u.int_in_range(0..=4)? {
        0 => None,
        1 => Some(f64::NAN),
        2 => Some(*u.choose(&[f64::INFINITY, f64::NEG_INFINITY, f64::MAX, -f64::MAX])?),
        _ => Some(u.arbitrary::<f64>()?),
    })
}

fn explanation(u: &mut Unstructured, stage: &str) -> Result<Explanation> {
    Ok(Explanation {
        stage: stage.to_string(),
        rule: pick(u, &["r1", "r2", "r3"])?.to_string(),
        score: score(u)?,
        sentence: text(u)?,
    })
}

fn action(u: &mut Unstructured) -> Result<Action> {
    Ok(match u.int_in_range(0..=11)? {
        0 => Action::deliver(),
        1 => Action::reject(reply(u)?),
        2 => Action::tempfail(reply(u)?),
        3 => Action::quarantine(text(u)?),
        4 => Action::discard(),
        5 => Action::redirect(text(u)?),
        6 => Action::encrypt(if u.arbitrary()? { Some(text(u)?) } else { None }),
        7 => Action::hold_for_confirmation(),
        8 => Action::add_header(text(u)?, text(u)?),
        9 => Action::remove_header(text(u)?),
        10 => Action::tag_subject(text(u)?),
        _ => Action::bcc(pick(u, &["a@x", "b@x", "c@x"])?),
    })
}

fn mode(u: &mut Unstructured) -> Result<FailureMode> {
    Ok(*u.choose(&FailureMode::ALL)?)
}

fn outcome(u: &mut Unstructured, n: usize) -> Result<CheckOutcome> {
    let name = pick(u, &["spf", "antivirus", "antispam", "dlp", "policy"])?;
    let status = match u.int_in_range(0..=5)? {
        0 => CheckStatus::Failed {
            error: text(u)?,
            mode: mode(u)?,
        },
        1 => CheckStatus::TimedOut { mode: mode(u)? },
        2 => CheckStatus::Skipped { reason: text(u)? },
        _ => CheckStatus::Completed,
    };
    let mut o = CheckOutcome::new(name, status);
    for _ in 0..u.int_in_range(0..=3)? {
        o.contributions.push(explanation(u, name)?);
    }
    for _ in 0..u.int_in_range(0..=4)? {
        let scope = if u.arbitrary()? {
            Scope::Message
        } else {
            let mut set = Vec::new();
            for _ in 0..u.int_in_range(0..=3)? {
                set.push(if u.ratio(1, 8)? {
                    u.arbitrary::<usize>()?
                } else {
                    u.int_in_range(0..=n)?
                });
            }
            Scope::recipients(set)
        };
        let mut d = Decision::new(scope, action(u)?, explanation(u, name)?);
        d.monitor = u.ratio(1, 4)?;
        o.decisions.push(d);
    }
    Ok(o)
}

fn input(u: &mut Unstructured) -> Result<(Vec<RecipientInfo>, Vec<CheckOutcome>, DecideContext)> {
    let n = u.int_in_range(0..=5)?;
    let recipients = (0..n)
        .map(|i| RecipientInfo::new(format!("r{i}@example.org")))
        .collect();
    let ctx = DecideContext {
        direction: if u.arbitrary()? {
            Direction::Outbound
        } else {
            Direction::Inbound
        },
        sender_trusted_or_authenticated: u.arbitrary()?,
        encryption_available: u.arbitrary()?,
    };
    let mut outcomes = Vec::new();
    for _ in 0..u.int_in_range(0..=5)? {
        outcomes.push(outcome(u, n)?);
    }
    Ok((recipients, outcomes, ctx))
}

fn is_reject(d: &Disposition) -> bool {
    matches!(d, Disposition::Reject(_))
}

fn check(recipients: &[RecipientInfo], outcomes: &[CheckOutcome], ctx: &DecideContext) -> Verdict {
    let v = decide(recipients, outcomes, ctx);
    assert_eq!(v.per_recipient.len(), recipients.len());
    for (i, r) in v.per_recipient.iter().enumerate() {
        assert_eq!(r.index, i);
        assert_eq!(r.address, recipients[i].address);
        if !r.disposition.sends_on() {
            assert!(r.copies.is_empty());
        }
        if !r.disposition.keeps() {
            assert!(r.edits.is_empty());
        }
        if !ctx.encryption_available {
            assert!(!matches!(r.disposition, Disposition::Encrypt { .. }));
        }
        match &r.disposition {
            Disposition::Reject(reply) => assert!((500..600).contains(&reply.code)),
            Disposition::Tempfail(reply) => assert!((400..500).contains(&reply.code)),
            _ => {}
        }
        if r.disposition != Disposition::Deliver {
            assert!(r.decided_by.is_some());
        }
    }
    let any_tempfail = v
        .per_recipient
        .iter()
        .any(|r| matches!(r.disposition, Disposition::Tempfail(_)));
    match &v.smtp_reply {
        SmtpOutcome::Tempfail(reply) => {
            assert!((400..500).contains(&reply.code) && reply.enhanced_is_valid());
            assert!(
                v.per_recipient
                    .iter()
                    .all(|r| r.disposition == Disposition::Tempfail(reply.clone()))
            );
        }
        SmtpOutcome::Reject(reply) => {
            assert!((500..600).contains(&reply.code) && reply.enhanced_is_valid());
            assert!(v.per_recipient.iter().all(|r| is_reject(&r.disposition)));
        }
        SmtpOutcome::Accept => {
            assert!(!any_tempfail);
            assert!(!v.per_recipient.is_empty());
            assert!(!v.per_recipient.iter().all(|r| is_reject(&r.disposition)));
        }
    }
    assert_eq!(
        v.dsn_for_refused,
        v.is_accepted()
            && ctx.direction == Direction::Outbound
            && ctx.sender_trusted_or_authenticated
            && v.refused().next().is_some()
    );
    assert!(v.score.is_finite());
    v
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok((recipients, outcomes, ctx)) = input(&mut u) else {
        return;
    };
    let v = check(&recipients, &outcomes, &ctx);

    // Monitored decisions change nothing but `monitored`.
    let mut plain = outcomes.clone();
    for o in &mut plain {
        o.decisions.retain(|d| !d.monitor);
    }
    let w = check(&recipients, &plain, &ctx);
    assert_eq!(v.smtp_reply, w.smtp_reply);
    assert_eq!(v.dsn_for_refused, w.dsn_for_refused);
    for (a, b) in v.per_recipient.iter().zip(&w.per_recipient) {
        assert_eq!(a.disposition, b.disposition);
        assert_eq!(a.edits, b.edits);
        assert_eq!(a.copies, b.copies);
        assert!(b.monitored.is_empty());
    }

    // Stored as JSON and read back: the same verdict (NaN scores read back as none; floats
    // may move by an ulp without serde_json's float_roundtrip feature, so compare the rest).
    let json = serde_json::to_string(&v).expect("verdict serializes");
    let back: Verdict = serde_json::from_str(&json).expect("verdict deserializes");
    assert_eq!(back.smtp_reply, v.smtp_reply);
    assert_eq!(back.dsn_for_refused, v.dsn_for_refused);
    assert!(back.score.is_finite());
    for (a, b) in v.per_recipient.iter().zip(&back.per_recipient) {
        assert_eq!(
            (&a.disposition, &a.edits, &a.copies),
            (&b.disposition, &b.edits, &b.copies)
        );
        assert_eq!(a.explanations.len(), b.explanations.len());
        assert_eq!(a.monitored.len(), b.monitored.len());
    }
    let json = serde_json::to_string(&outcomes).expect("outcomes serialize");
    let _: Vec<CheckOutcome> = serde_json::from_str(&json).expect("outcomes deserialize");
});
