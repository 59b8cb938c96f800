//! The pure step: check outcomes in, one verdict per recipient and one SMTP reply out.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    Action, CheckOutcome, CheckStatus, Decision, Disposition, Edit, Explanation, FailureMode,
    Reply, ReplyClass,
};

/// One envelope recipient, in RCPT order (its index is its position).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientInfo {
    pub address: String,
}

impl RecipientInfo {
    pub fn new(address: impl Into<String>) -> RecipientInfo {
        RecipientInfo {
            address: address.into(),
        }
    }
}

/// Which way the message goes. Decides whether refused recipients may get a DSN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// To one of our domains, from anywhere.
    #[default]
    Inbound,
    /// From our users (authenticated or from a trusted network) to elsewhere.
    Outbound,
}

/// What decide() needs to know about the session and the appliance. The default is the safe
/// one: inbound, sender not trusted, no encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DecideContext {
    pub direction: Direction,
    /// The client authenticated (AUTH on submission) or connected from a trusted network.
    pub sender_trusted_or_authenticated: bool,
    /// Gateway encryption exists and is configured. While false, `Encrypt` quarantines.
    pub encryption_available: bool,
}

/// The one reply to DATA. `Accept` means the engine commits the message and answers 250 (with
/// its queue id): the per-recipient results say what happens next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum SmtpOutcome {
    Accept,
    /// 5xx: every recipient was refused. Nothing is kept.
    Reject(Reply),
    /// 4xx: some check could not finish (failure mode tempfail) or asked to defer. Nothing is
    /// kept; the sender retries and every check runs again.
    Tempfail(Reply),
}

/// What happens for one recipient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecipientVerdict {
    /// Position in the `recipients` given to decide().
    pub index: usize,
    pub address: String,
    pub disposition: Disposition,
    /// The explanation of the decision that won (`None`: delivered because nothing objected).
    pub decided_by: Option<Explanation>,
    /// Edits to apply, in order. Empty unless something is kept for this recipient
    /// ([`Disposition::keeps`]): a quarantined or held copy carries its edits.
    pub edits: Vec<Edit>,
    /// BCC addresses (deduplicated, in order). Empty unless the message goes on
    /// ([`Disposition::sends_on`]): a quarantined, held, refused or discarded message is never
    /// copied out.
    pub copies: Vec<String>,
    /// Everything that applied to this recipient, in check order: score contributions,
    /// enforced decisions (winning or not), failed, timed-out and skipped checks.
    pub explanations: Vec<Explanation>,
    /// Decisions in monitor mode: what would have been done, not enforced.
    pub monitored: Vec<Decision>,
}

/// The result of [`decide`]: stored as JSON with tracking, printed by `palisade check --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub smtp_reply: SmtpOutcome,
    /// One entry per recipient, in RCPT order.
    pub per_recipient: Vec<RecipientVerdict>,
    /// Send one DSN to the sender listing the refused recipients (see [`decide`]).
    pub dsn_for_refused: bool,
    /// Sum of every completed check's score contributions ([`score`]).
    pub score: f64,
    /// The same, per stage.
    pub stage_scores: BTreeMap<String, f64>,
}

impl Verdict {
    /// Recipients refused after DATA (only non-empty when the message was accepted or
    /// refused whole).
    pub fn refused(&self) -> impl Iterator<Item = &RecipientVerdict> {
        self.per_recipient
            .iter()
            .filter(|r| matches!(r.disposition, Disposition::Reject(_)))
    }

    pub fn is_accepted(&self) -> bool {
        self.smtp_reply == SmtpOutcome::Accept
    }
}

/// Adds `x` to `total` if it is finite, keeping the total finite (saturates at ±f64::MAX), so a
/// score always survives a JSON round trip.
fn add_score(total: f64, x: Option<f64>) -> f64 {
    match x {
        Some(x) if x.is_finite() => (total + x).clamp(-f64::MAX, f64::MAX),
        _ => total,
    }
}

/// The total score: the sum of every score contribution of every completed check. NaN and
/// infinite contributions are ignored; the sum saturates at ±f64::MAX.
pub fn score(outcomes: &[CheckOutcome]) -> f64 {
    stage_scores(outcomes)
        .values()
        .fold(0.0, |total, s| add_score(total, Some(*s)))
}

/// Score contributions of completed checks, summed per stage (the explanation's `stage`, which
/// is normally the check's name).
pub fn stage_scores(outcomes: &[CheckOutcome]) -> BTreeMap<String, f64> {
    let mut by_stage = BTreeMap::new();
    for outcome in outcomes.iter().filter(|o| o.is_completed()) {
        for c in &outcome.contributions {
            if c.score.is_some_and(f64::is_finite) {
                let entry = by_stage.entry(c.stage.clone()).or_insert(0.0);
                *entry = add_score(*entry, c.score);
            }
        }
    }
    by_stage
}

/// The sentence recorded when an `Encrypt` decision meets an appliance without encryption.
pub const ENCRYPTION_UNAVAILABLE: &str =
    "encryption is not available yet; held rather than sent in clear";

/// Per recipient, while decide() walks the outcomes.
struct Acc {
    /// The winning disposition so far, its explanation, and its position in check order.
    best: Option<(Disposition, Explanation, usize)>,
    edits: Vec<Edit>,
    copies: Vec<String>,
    explanations: Vec<Explanation>,
    monitored: Vec<Decision>,
}

impl Acc {
    /// Strictly higher rank wins, so on a tie the first in check order stays.
    fn consider(&mut self, disposition: Disposition, why: Explanation, seq: usize) {
        let better = match &self.best {
            None => true,
            Some((current, _, _)) => disposition.rank() > current.rank(),
        };
        if better {
            self.best = Some((disposition, why, seq));
        }
    }
}

/// Turns the checks' outcomes into one verdict per recipient and one SMTP reply. Pure and total:
/// any input (out-of-range scopes, bad reply codes, NaN scores, no recipients) gives a verdict.
///
/// **Per check, in order.** A completed check's score contributions are recorded for every
/// recipient, and each of its decisions applies to the recipients in its scope. A decision in
/// monitor mode is only recorded (`monitored`). Otherwise its explanation is recorded and:
/// a disposition competes (below), an edit is appended, a BCC address is added. A failed or
/// timed-out check applies its [`FailureMode`] to the whole message: `tempfail` (default) a
/// deferral, `reject` a refusal, `quarantine` a quarantine, `accept` nothing — but in every
/// mode an explanation says the check failed and the message was not checked by it. A skipped
/// check is recorded ("not checked: reason") and decides nothing.
///
/// **Precedence per recipient** ([`Disposition::rank`]; on a tie the first in check order):
/// tempfail > reject > quarantine > hold for confirmation > discard > encrypt > redirect >
/// deliver. `Encrypt` while [`DecideContext::encryption_available`] is false is a quarantine
/// (reason `encryption unavailable`, explanation [`ENCRYPTION_UNAVAILABLE`]). Reject and tempfail
/// replies are [normalized](Reply::normalized) to their class.
///
/// **One DATA reply.** Any tempfail (for any recipient) defers the whole message: every
/// recipient's disposition becomes that tempfail (the first in check order) and nothing is
/// kept — SMTP has one reply to DATA, and the retry is checked again in full. Otherwise, if
/// every recipient is rejected, the reply is the first rejecting decision's 5xx. Otherwise the
/// message is accepted (250) and each recipient has its own result.
///
/// **Refused recipients of an accepted message** are dropped and tracked. `dsn_for_refused` is
/// true only for outbound mail from a trusted or authenticated sender: on inbound the envelope
/// sender is unverified (even when a trusted relay passed it on), and a DSN to it would be
/// backscatter.
#[must_use]
pub fn decide(
    recipients: &[RecipientInfo],
    outcomes: &[CheckOutcome],
    ctx: &DecideContext,
) -> Verdict {
    let mut accs: Vec<Acc> = recipients
        .iter()
        .map(|_| Acc {
            best: None,
            edits: Vec::new(),
            copies: Vec::new(),
            explanations: Vec::new(),
            monitored: Vec::new(),
        })
        .collect();

    // Position in check order of each decision and failure, to find "the first" later.
    let mut seq = 0;
    for outcome in outcomes {
        match &outcome.status {
            CheckStatus::Completed => {
                for c in &outcome.contributions {
                    for acc in accs.iter_mut() {
                        acc.explanations.push(c.clone());
                    }
                }
                for decision in &outcome.decisions {
                    apply(&mut accs, decision, ctx, seq);
                    seq += 1;
                }
            }
            CheckStatus::Failed { error, mode } => {
                let what = format!("{} failed ({error})", outcome.name);
                apply_failure(&mut accs, &outcome.name, "check_failed", &what, *mode, seq);
                seq += 1;
            }
            CheckStatus::TimedOut { mode } => {
                let what = format!("{} did not finish in time", outcome.name);
                apply_failure(
                    &mut accs,
                    &outcome.name,
                    "check_timed_out",
                    &what,
                    *mode,
                    seq,
                );
                seq += 1;
            }
            CheckStatus::Skipped { reason } => {
                let why = Explanation::new(
                    &outcome.name,
                    "skipped",
                    format!(
                        "{} was skipped ({reason}): the message was not checked by it.",
                        outcome.name
                    ),
                );
                for acc in accs.iter_mut() {
                    acc.explanations.push(why.clone());
                }
            }
        }
    }

    // The first tempfail in check order defers the whole message; the first reject in check
    // order is the 5xx if every recipient is rejected.
    let first = |want: fn(&Disposition) -> Option<&Reply>| {
        accs.iter()
            .filter_map(|a| a.best.as_ref())
            .filter_map(|(d, why, seq)| want(d).map(|reply| (*seq, reply.clone(), why.clone())))
            .min_by_key(|(seq, _, _)| *seq)
            .map(|(_, reply, why)| (reply, why))
    };
    let tempfail = first(|d| match d {
        Disposition::Tempfail(reply) => Some(reply),
        _ => None,
    });
    let reject = first(|d| match d {
        Disposition::Reject(reply) => Some(reply),
        _ => None,
    });

    let per_recipient: Vec<RecipientVerdict> = accs
        .into_iter()
        .zip(recipients)
        .enumerate()
        .map(|(index, (acc, info))| {
            let (mut disposition, mut decided_by) = match acc.best {
                Some((d, why, _)) => (d, Some(why)),
                None => (Disposition::Deliver, None),
            };
            if let Some((reply, why)) = &tempfail {
                disposition = Disposition::Tempfail(reply.clone());
                decided_by = Some(why.clone());
            }
            let edits = if disposition.keeps() {
                acc.edits
            } else {
                Vec::new()
            };
            let copies = if disposition.sends_on() {
                acc.copies
            } else {
                Vec::new()
            };
            RecipientVerdict {
                index,
                address: info.address.clone(),
                disposition,
                decided_by,
                edits,
                copies,
                explanations: acc.explanations,
                monitored: acc.monitored,
            }
        })
        .collect();

    let smtp_reply = if let Some((reply, _)) = tempfail {
        SmtpOutcome::Tempfail(reply)
    } else if per_recipient.is_empty() {
        SmtpOutcome::Reject(Reply::no_recipients())
    } else if per_recipient
        .iter()
        .all(|r| matches!(r.disposition, Disposition::Reject(_)))
    {
        SmtpOutcome::Reject(reject.map_or_else(Reply::default_reject, |(reply, _)| reply))
    } else {
        SmtpOutcome::Accept
    };

    let dsn_for_refused = smtp_reply == SmtpOutcome::Accept
        && ctx.direction == Direction::Outbound
        && ctx.sender_trusted_or_authenticated
        && per_recipient
            .iter()
            .any(|r| matches!(r.disposition, Disposition::Reject(_)));

    Verdict {
        smtp_reply,
        per_recipient,
        dsn_for_refused,
        score: score(outcomes),
        stage_scores: stage_scores(outcomes),
    }
}

/// The disposition a decision's action stands for on this appliance, and the explanation to
/// record for it.
fn effective(
    disposition: &Disposition,
    why: &Explanation,
    ctx: &DecideContext,
) -> (Disposition, Explanation) {
    match disposition {
        Disposition::Reject(reply) => (
            Disposition::Reject(reply.normalized(ReplyClass::Permanent)),
            why.clone(),
        ),
        Disposition::Tempfail(reply) => (
            Disposition::Tempfail(reply.normalized(ReplyClass::Transient)),
            why.clone(),
        ),
        Disposition::Encrypt { .. } if !ctx.encryption_available => (
            Disposition::Quarantine {
                reason: "encryption unavailable".to_string(),
            },
            Explanation::new(&why.stage, &why.rule, ENCRYPTION_UNAVAILABLE),
        ),
        other => (other.clone(), why.clone()),
    }
}

fn apply(accs: &mut [Acc], decision: &Decision, ctx: &DecideContext, seq: usize) {
    for (index, acc) in accs.iter_mut().enumerate() {
        if !decision.scope.includes(index) {
            continue;
        }
        if decision.monitor {
            acc.monitored.push(decision.clone());
            continue;
        }
        acc.explanations.push(decision.explanation.clone());
        match &decision.action {
            Action::Dispose(d) => {
                let (d, why) = effective(d, &decision.explanation, ctx);
                if why != decision.explanation {
                    acc.explanations.push(why.clone());
                }
                acc.consider(d, why, seq);
            }
            Action::Edit(e) => acc.edits.push(e.clone()),
            Action::Bcc { address } => {
                if !acc.copies.contains(address) {
                    acc.copies.push(address.clone());
                }
            }
        }
    }
}

fn apply_failure(
    accs: &mut [Acc],
    stage: &str,
    rule: &str,
    what: &str,
    mode: FailureMode,
    seq: usize,
) {
    let (disposition, consequence) = match mode {
        FailureMode::Tempfail => (
            Some(Disposition::Tempfail(Reply::check_failed_tempfail())),
            "failure mode tempfail: the message is deferred and will be checked again",
        ),
        FailureMode::Reject => (
            Some(Disposition::Reject(Reply::check_failed_reject())),
            "failure mode reject: the message is refused",
        ),
        FailureMode::Quarantine => (
            Some(Disposition::Quarantine {
                reason: format!("{stage} could not check the message"),
            }),
            "failure mode quarantine: the message is held in quarantine",
        ),
        FailureMode::Accept => (
            None,
            "failure mode accept (fail open): the message goes on NOT checked by it",
        ),
    };
    let why = Explanation::new(stage, rule, format!("{what}; {consequence}."));
    for acc in accs.iter_mut() {
        acc.explanations.push(why.clone());
        if let Some(d) = &disposition {
            acc.consider(d.clone(), why.clone(), seq);
        }
    }
}
