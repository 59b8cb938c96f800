//! Policy notices (rules with `notify_sender` or `notify`): once a message is accepted, the
//! sender of a message an enforced rule acted on is told what happened and why, and the
//! addresses a rule names get the match (rule, action, sender, recipients, subject, the dlp
//! check's detections masked). Never the message's content. Monitor-mode matches notify
//! nobody: they are recorded (incidents, report) and the message flows as if they were absent.
//!
//! The notices are generated messages (`generated::spool`), sent after the message's commit,
//! like the confirmation notices; a notice that cannot be written is logged, and the message
//! it is about is unaffected.

use std::sync::Arc;

use palisade_spool::Spool;
use palisade_spool::notice::{self, Notice};
use serde_json::Value;

use crate::pipeline::Evaluation;
use crate::state::Shared;

/// One notice to send.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PolicyNotice {
    pub to: String,
    /// `Some(rule)`: the administrators' kind; `None`: the sender's.
    pub admin_of_rule: Option<String>,
    pub action: String,
    pub queue_id: String,
    pub sender: String,
    pub recipients: Vec<String>,
    pub subject: Option<String>,
    pub reasons: Vec<String>,
    /// The dlp check's detections, one line each (masked).
    pub found: Vec<String>,
}

/// The notices the rules that matched `eval` ask for (none when the message was deferred).
pub(crate) fn notices(eval: &Evaluation, subject: Option<&str>) -> Vec<PolicyNotice> {
    if matches!(
        eval.verdict.smtp_reply,
        palisade_policy::SmtpOutcome::Tempfail(_)
    ) {
        return Vec::new();
    }
    let facts_of = |name: &str| {
        eval.outcomes
            .iter()
            .find(|o| o.name == name)
            .map(|o| &o.facts)
    };
    let Some(rules) = facts_of("rules") else {
        return Vec::new();
    };
    let found: Vec<String> = facts_of("dlp")
        .and_then(|d| d.get("detections"))
        .and_then(Value::as_array)
        .map(|a| a.iter().map(detection_line).collect())
        .unwrap_or_default();
    let env = &eval.envelope;
    let mut out = Vec::new();
    for m in rules
        .get("matched")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if m.get("monitor").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        let text = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let recipients: Vec<String> = match m.get("scope").and_then(|s| s.get("recipients")) {
            Some(list) => list
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_u64)
                .filter_map(|i| env.recipients.get(i as usize))
                .map(|r| r.address.clone())
                .collect(),
            None => env.recipients.iter().map(|r| r.address.clone()).collect(),
        };
        let base = PolicyNotice {
            to: String::new(),
            admin_of_rule: None,
            action: text("action"),
            queue_id: env.queue_id.clone(),
            sender: env.sender.clone(),
            recipients,
            subject: subject.map(str::to_string),
            reasons: vec![format!("{} ({})", text("reason"), text("why"))],
            found: found.clone(),
        };
        // The null sender (a bounce) has nobody to tell.
        if m.get("notify_sender").and_then(Value::as_bool) == Some(true) && !env.sender.is_empty() {
            out.push(PolicyNotice {
                to: env.sender.clone(),
                found: Vec::new(),
                ..base.clone()
            });
        }
        for to in m
            .get("notify")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            out.push(PolicyNotice {
                to: to.to_string(),
                admin_of_rule: Some(text("rule")),
                ..base.clone()
            });
        }
    }
    out
}

/// `nhs_number ×5 (*******919, …) in ward list.xlsx`.
fn detection_line(d: &Value) -> String {
    let list = |k: &str, f: &dyn Fn(&Value) -> Option<String>| -> Vec<String> {
        d.get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(f).collect())
            .unwrap_or_default()
    };
    let snippets = list("snippets", &|v| v.as_str().map(String::from));
    let places = list("locations", &|v| {
        v.get("location").and_then(Value::as_str).map(String::from)
    });
    let mut s = format!(
        "{} x{}",
        d.get("detector").and_then(Value::as_str).unwrap_or("?"),
        d.get("count").and_then(Value::as_u64).unwrap_or(0)
    );
    if !snippets.is_empty() {
        s.push_str(&format!(" ({})", snippets.join(", ")));
    }
    if !places.is_empty() {
        s.push_str(&format!(" in {}", places.join(", ")));
    }
    s
}

/// Sends `notices` in the background, one generated message each.
pub(crate) fn spawn(shared: Arc<Shared>, notices: Vec<PolicyNotice>) {
    if notices.is_empty() {
        return;
    }
    tokio::spawn(async move {
        for n in notices {
            if let Err(e) = send(&shared, &n).await {
                tracing::error!(event = "policy.notice_failed", queue_id = %n.queue_id, rcpt = %n.to, error = %e);
            }
        }
    });
}

async fn send(shared: &Arc<Shared>, p: &PolicyNotice) -> Result<(), String> {
    let cfg = shared.config();
    let id = Spool::new_id();
    let from = cfg.digest_from();
    let now = palisade_store::now_unix();
    let n = Notice {
        hostname: &cfg.system.hostname,
        from: &from,
        to: &p.to,
        notice_id: &id,
        subject: p.subject.as_deref(),
        recipients: &p.recipients,
        reasons: &p.reasons,
        now,
        expires_at: now,
    };
    let (content, subject) = match &p.admin_of_rule {
        Some(rule) => (
            notice::policy_admin(&n, &p.sender, rule, &p.action, &p.queue_id, &p.found),
            "DLP rule matched",
        ),
        None => (notice::policy_sender(&n, &p.action), "Mail policy applied"),
    };
    crate::generated::notice(shared, &id, &content, &p.to, subject).await?;
    tracing::info!(event = "policy.notice", queue_id = %p.queue_id, notice = %id, rcpt = %p.to);
    Ok(())
}
