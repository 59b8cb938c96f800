//! What one check hands back: did it finish, what it found (facts), what it scored, what it
//! decided.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Decision, Explanation};

/// What happens to the message when a check fails or times out, from configuration (per
/// check). A failed check is never "clean": every mode is recorded in the verdict's
/// explanations, `accept` included.
///
/// Config/JSON names: `"tempfail"` (the default), `"accept"`, `"quarantine"`, `"reject"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// `451 4.3.0` for the whole message; the sender retries and the check runs again.
    #[default]
    Tempfail,
    /// Fail open, explicitly: the message goes on unchecked by this check, and every
    /// recipient's explanations say so.
    Accept,
    /// Keep the message in quarantine for every recipient.
    Quarantine,
    /// `554 5.7.0` for the whole message.
    Reject,
}

impl FailureMode {
    pub const ALL: [FailureMode; 4] = [
        FailureMode::Tempfail,
        FailureMode::Accept,
        FailureMode::Quarantine,
        FailureMode::Reject,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureMode::Tempfail => "tempfail",
            FailureMode::Accept => "accept",
            FailureMode::Quarantine => "quarantine",
            FailureMode::Reject => "reject",
        }
    }
}

impl fmt::Display for FailureMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FailureMode {
    type Err = String;
    fn from_str(s: &str) -> Result<FailureMode, String> {
        FailureMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown failure mode {s:?} (expected tempfail, accept, quarantine or reject)"
                )
            })
    }
}

/// Whether a check finished. JSON: `{"state":"failed","error":"…","mode":"tempfail"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CheckStatus {
    /// Ran to the end: its contributions and decisions count.
    Completed,
    /// Could not run or finish (daemon down, parse error, …). `mode` is the check's configured
    /// failure mode, copied in by the orchestrator so the outcome is self-contained.
    Failed {
        error: String,
        #[serde(default)]
        mode: FailureMode,
    },
    /// Did not finish within its deadline; handled like `Failed`.
    TimedOut {
        #[serde(default)]
        mode: FailureMode,
    },
    /// Not run on purpose (disabled, not applicable, message too large for it). Neutral for
    /// the disposition, but recorded: the message was not checked by it.
    Skipped { reason: String },
}

/// The result of one check on one message, in the order the checks ran.
///
/// Only a `Completed` check's `contributions` and `decisions` count; a check that failed or
/// timed out may have produced partial results, which are kept here (and so in tracking) but
/// ignored by [`crate::decide`]: its failure mode decides instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckOutcome {
    /// The check's name; the `stage` of the explanations decide() writes for it.
    pub name: String,
    pub status: CheckStatus,
    /// What the check found, in its own shape (e.g. SPF result and domain): stored with
    /// tracking and read by later checks (DMARC reads SPF and DKIM). decide() does not look.
    #[serde(default)]
    pub facts: serde_json::Value,
    /// Score contributions (each with `score`); summed into the message's total score.
    #[serde(default)]
    pub contributions: Vec<Explanation>,
    #[serde(default)]
    pub decisions: Vec<Decision>,
}

impl CheckOutcome {
    pub fn new(name: impl Into<String>, status: CheckStatus) -> CheckOutcome {
        CheckOutcome {
            name: name.into(),
            status,
            facts: serde_json::Value::Null,
            contributions: Vec::new(),
            decisions: Vec::new(),
        }
    }

    pub fn completed(name: impl Into<String>) -> CheckOutcome {
        CheckOutcome::new(name, CheckStatus::Completed)
    }

    pub fn failed(
        name: impl Into<String>,
        error: impl Into<String>,
        mode: FailureMode,
    ) -> CheckOutcome {
        CheckOutcome::new(
            name,
            CheckStatus::Failed {
                error: error.into(),
                mode,
            },
        )
    }

    pub fn timed_out(name: impl Into<String>, mode: FailureMode) -> CheckOutcome {
        CheckOutcome::new(name, CheckStatus::TimedOut { mode })
    }

    pub fn skipped(name: impl Into<String>, reason: impl Into<String>) -> CheckOutcome {
        CheckOutcome::new(
            name,
            CheckStatus::Skipped {
                reason: reason.into(),
            },
        )
    }

    pub fn with_facts(mut self, facts: serde_json::Value) -> CheckOutcome {
        self.facts = facts;
        self
    }

    pub fn with_contribution(mut self, contribution: Explanation) -> CheckOutcome {
        self.contributions.push(contribution);
        self
    }

    pub fn with_decision(mut self, decision: Decision) -> CheckOutcome {
        self.decisions.push(decision);
        self
    }

    /// The failure mode if this check failed or timed out.
    pub fn failure_mode(&self) -> Option<FailureMode> {
        match &self.status {
            CheckStatus::Failed { mode, .. } | CheckStatus::TimedOut { mode } => Some(*mode),
            CheckStatus::Completed | CheckStatus::Skipped { .. } => None,
        }
    }

    pub fn is_completed(&self) -> bool {
        self.status == CheckStatus::Completed
    }
}
