//! The vocabulary of Palisade's filters, and the pure step that turns what they found into what
//! happens to a message.
//!
//! Every check on the mail path (SPF/DKIM/DMARC, antivirus, antispam, attachment rules, outbound
//! DLP and the policy engine, gateway encryption) hands back one [`CheckOutcome`]: whether it
//! finished ([`CheckStatus`], with the configured [`FailureMode`] when it did not), the facts it
//! found, its score contributions, and its [`Decision`]s. A decision is an [`Action`] — a
//! [`Disposition`] (deliver, reject, tempfail, quarantine, discard, redirect, encrypt, hold for
//! confirmation: they compete), an [`Edit`] (add/remove header, tag subject, strip parts: they accumulate) or
//! a BCC copy — for a [`Scope`] (the whole message or some recipients), with an [`Explanation`]
//! (stage, rule, score, one human sentence), optionally in monitor mode (recorded, not
//! enforced). [`decide`] turns the outcomes of all checks, in order, into a [`Verdict`]: one
//! [`RecipientVerdict`] per recipient (disposition, edits, copies, every explanation, monitored
//! decisions), the one reply to DATA ([`SmtpOutcome`]), whether refused recipients get a DSN,
//! and the total score. Its doc states the precedence and the SMTP rules.
//!
//! **Owns:** these types (all `serde`: stored as JSON with tracking, printed by
//! `palisade check --json`, and the failure-mode names used in configuration) and [`decide`],
//! which is table-tested in `tests.rs` and `tests/cases/*.json`, and fuzzed in `fuzz/`.
//!
//! **Must not:** do I/O, read clocks or the environment, run checks, know any particular check,
//! parse configuration beyond the serde derives of these types, or speak SMTP on the wire (the
//! engine turns a [`Reply`] into an `smtp_proto::Reply`). Everything here is a function of its
//! arguments, so a verdict can be recomputed from stored outcomes.
//!
//! **Stability:** the engine's orchestration and the checks build on this API. Enums are
//! deliberately *not* `#[non_exhaustive]`: when a disposition or edit is added, every consumer
//! in the workspace should fail to compile until it handles it. Serialized names are part of
//! the API (stored tracking rows are read back): rename nothing without a migration.

#![forbid(unsafe_code)]

mod action;
mod check;
mod decide;
mod reply;

pub use action::{Action, Decision, Disposition, Edit, Explanation, Scope, StrippedPart};
pub use check::{CheckOutcome, CheckStatus, FailureMode};
pub use decide::{
    DecideContext, Direction, ENCRYPTION_UNAVAILABLE, RecipientInfo, RecipientVerdict, SmtpOutcome,
    Verdict, decide, score, stage_scores,
};
pub use reply::{Reply, ReplyClass};

#[cfg(test)]
mod tests;
