//! Message tracking: find a message by sender, recipient, subject, Message-ID, time and
//! outcome; follow one message from reception to its last delivery attempt.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use palisade_store::mail::{TrackQuery, TrackedEvent, TrackedMessage};
use palisade_store::now_unix;
use serde::Deserialize;

use crate::auth::{Perm, Principal, allows};
use crate::error::{AppError, render};
use crate::state::AppState;
use crate::view::{Page, datetime_local, fmt_size, fmt_time, parse_datetime_local};

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct SearchParams {
    pub sender: String,
    pub rcpt: String,
    pub subject: String,
    pub message_id: String,
    pub queue_id: String,
    pub status: String,
    /// `1h`, `24h`, `7d`, `30d`, `all`, or empty when `since`/`until` are given.
    pub range: String,
    pub since: String,
    pub until: String,
    pub limit: Option<u32>,
}

pub const STATUSES: &[&str] = &[
    "queued",
    "deferred",
    "delivered",
    "partial",
    "bounced",
    "quarantined",
    "discarded",
    "rejected",
    "deleted",
    "corrupt",
];

fn opt(s: &str) -> Option<String> {
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

impl SearchParams {
    pub fn query(&self) -> Result<TrackQuery, AppError> {
        let since = match (opt(&self.since), self.range.as_str()) {
            (Some(s), _) => Some(parse_datetime_local(&s).ok_or_else(|| {
                AppError::BadRequest(format!("'{s}' is not a date and time (YYYY-MM-DDTHH:MM)"))
            })?),
            (None, "1h") => Some(now_unix() - 3600),
            (None, "24h") => Some(now_unix() - 86400),
            (None, "30d") => Some(now_unix() - 30 * 86400),
            (None, "all") => None,
            (None, _) => Some(now_unix() - 7 * 86400),
        };
        let until = match opt(&self.until) {
            Some(u) => Some(parse_datetime_local(&u).ok_or_else(|| {
                AppError::BadRequest(format!("'{u}' is not a date and time (YYYY-MM-DDTHH:MM)"))
            })?),
            None => None,
        };
        Ok(TrackQuery {
            sender: opt(&self.sender),
            rcpt: opt(&self.rcpt),
            subject: opt(&self.subject),
            message_id: opt(&self.message_id),
            queue_id: opt(&self.queue_id),
            status: opt(&self.status),
            since,
            until,
            limit: Some(self.limit.unwrap_or(200).min(2000)),
        })
    }
}

pub struct Row {
    pub queue_id: String,
    pub received: String,
    pub sender: String,
    pub rcpts: String,
    pub subject: String,
    pub status: String,
    pub size: String,
}

#[derive(Template)]
#[template(path = "tracking.html")]
struct TrackingPage {
    page: Page,
    p: SearchParams,
    statuses: &'static [&'static str],
    rows: Vec<Row>,
    since_value: String,
}

pub async fn search(
    State(state): State<AppState>,
    p: Principal,
    Query(params): Query<SearchParams>,
) -> Result<Response, AppError> {
    let page = Page::load(&state, &p, "tracking", "Message tracking").await?;
    let q = params.query()?;
    let since_value = if params.since.is_empty() {
        String::new()
    } else {
        q.since.map(datetime_local).unwrap_or_default()
    };
    let found = state.db(move |s| Ok(s.mail.track_search(&q)?)).await?;
    render(&TrackingPage {
        page,
        p: params,
        statuses: STATUSES,
        rows: found
            .iter()
            .map(|m| Row {
                queue_id: m.queue_id.clone(),
                received: fmt_time(m.received_at),
                sender: if m.sender.is_empty() {
                    "<>".into()
                } else {
                    m.sender.clone()
                },
                rcpts: m.rcpts.join(", "),
                subject: m.subject.clone().unwrap_or_default(),
                status: m.status.clone(),
                size: fmt_size(m.size),
            })
            .collect(),
        since_value,
    })
}

pub struct EventView {
    pub time: String,
    pub event: String,
    pub rcpt: String,
    pub remote: String,
    pub tls: String,
    pub text: String,
}

/// One check of the filter pipeline, as the trace page shows it.
pub struct CheckView {
    pub name: String,
    pub state: String,
    pub detail: String,
}

/// What the filters decided for one recipient, and why.
pub struct DecisionView {
    pub recipient: String,
    pub action: String,
    pub reasons: Vec<String>,
}

/// The filter verdict stored with the tracking row (`{"checks": [...], "verdict": {...}}`).
#[derive(serde::Deserialize)]
struct StoredVerdict {
    checks: Vec<palisade_policy::CheckOutcome>,
    verdict: palisade_policy::Verdict,
}

fn verdict_views(json: Option<&str>) -> (Vec<CheckView>, Vec<DecisionView>, Option<String>) {
    use palisade_policy::{CheckStatus, Disposition};
    let Some(json) = json else {
        return (Vec::new(), Vec::new(), None);
    };
    let stored: StoredVerdict = match serde_json::from_str(json) {
        Ok(v) => v,
        Err(e) => {
            return (
                Vec::new(),
                Vec::new(),
                Some(format!("unreadable verdict: {e}")),
            );
        }
    };
    let checks = stored
        .checks
        .iter()
        .map(|c| {
            let (state, detail) = match &c.status {
                CheckStatus::Completed => ("completed", String::new()),
                CheckStatus::Failed { error, mode } => {
                    ("failed", format!("{error} (failure mode {mode})"))
                }
                CheckStatus::TimedOut { mode } => ("timed out", format!("failure mode {mode}")),
                CheckStatus::Skipped { reason } => ("skipped", reason.clone()),
            };
            CheckView {
                name: c.name.clone(),
                state: state.into(),
                detail,
            }
        })
        .collect();
    let decisions = stored
        .verdict
        .per_recipient
        .iter()
        .map(|r| {
            let action = match &r.disposition {
                Disposition::Quarantine { reason } => format!("quarantine: {reason}"),
                Disposition::Reject(reply) | Disposition::Tempfail(reply) => {
                    format!(
                        "{} ({} {} {})",
                        r.disposition.name(),
                        reply.code,
                        reply.enhanced,
                        reply.text
                    )
                }
                d => d.name().to_string(),
            };
            let mut reasons: Vec<String> = r
                .explanations
                .iter()
                .map(|e| {
                    let score = e.score.map(|x| format!(" ({x:+})")).unwrap_or_default();
                    format!("{}/{}{}: {}", e.stage, e.rule, score, e.sentence)
                })
                .collect();
            reasons.extend(r.monitored.iter().map(|m| {
                format!(
                    "monitor only — {}/{}: {}",
                    m.explanation.stage, m.explanation.rule, m.explanation.sentence
                )
            }));
            DecisionView {
                recipient: r.address.clone(),
                action,
                reasons,
            }
        })
        .collect();
    (checks, decisions, None)
}

#[derive(Template)]
#[template(path = "trace.html")]
struct TracePage {
    page: Page,
    m: TrackedMessage,
    received: String,
    size: String,
    events: Vec<EventView>,
    checks: Vec<CheckView>,
    decisions: Vec<DecisionView>,
    verdict_error: Option<String>,
    queued: bool,
    can_queue: bool,
}

pub async fn trace_of(
    state: &AppState,
    id: String,
) -> Result<(TrackedMessage, Vec<TrackedEvent>, bool), AppError> {
    state
        .db(move |s| {
            let m = s
                .mail
                .track_search(&TrackQuery {
                    queue_id: Some(id.clone()),
                    limit: Some(50),
                    ..Default::default()
                })?
                .into_iter()
                .find(|m| m.queue_id == id)
                .ok_or_else(|| {
                    AppError::NotFound(format!("No tracked message has the id {id}."))
                })?;
            let events = s.mail.track_events(&id)?;
            let queued = s.mail.message(&id)?.is_some();
            Ok((m, events, queued))
        })
        .await
}

pub async fn trace(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let page = Page::load(&state, &p, "tracking", &format!("Message {id}")).await?;
    let (m, events, queued) = trace_of(&state, id).await?;
    let (checks, decisions, verdict_error) = verdict_views(m.verdict.as_deref());
    render(&TracePage {
        page,
        checks,
        decisions,
        verdict_error,
        received: fmt_time(m.received_at),
        size: fmt_size(m.size),
        events: events
            .into_iter()
            .map(|e| EventView {
                time: fmt_time(e.ts),
                event: e.event,
                rcpt: e.rcpt.unwrap_or_default(),
                remote: e.remote.unwrap_or_default(),
                tls: e.tls.unwrap_or_default(),
                text: [e.reply, e.detail]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" — "),
            })
            .collect(),
        m,
        queued,
        can_queue: allows(p.user.role, Perm::ViewQueue),
    })
}
