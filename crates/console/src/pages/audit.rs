//! The audit log: filter, check the hash chain, export as CSV.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use palisade_store::audit::{AuditEntry, AuditFilter};
use palisade_store::{AuditVerdict, now_unix};
use serde::Deserialize;

use crate::auth::Principal;
use crate::error::{AppError, render};
use crate::state::AppState;
use crate::view::{Page, fmt_time, parse_datetime_local};

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct AuditParams {
    pub actor: String,
    pub action: String,
    pub text: String,
    pub since: String,
    pub until: String,
    pub limit: Option<u32>,
}

fn opt(s: &str) -> Option<String> {
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

impl AuditParams {
    pub fn filter(&self, default_limit: u32) -> Result<AuditFilter, AppError> {
        let time = |s: &str| -> Result<Option<i64>, AppError> {
            match opt(s) {
                None => Ok(None),
                Some(s) => parse_datetime_local(&s).map(Some).ok_or_else(|| {
                    AppError::BadRequest(format!("'{s}' is not a date and time (YYYY-MM-DDTHH:MM)"))
                }),
            }
        };
        Ok(AuditFilter {
            since: time(&self.since)?,
            until: time(&self.until)?,
            actor: opt(&self.actor),
            action_prefix: opt(&self.action),
            text: opt(&self.text),
            limit: Some(self.limit.unwrap_or(default_limit).min(100_000)),
            oldest_first: false,
        })
    }

    fn query_string(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("actor", &self.actor)
            .append_pair("action", &self.action)
            .append_pair("text", &self.text)
            .append_pair("since", &self.since)
            .append_pair("until", &self.until)
            .finish()
    }
}

pub struct EntryView {
    pub seq: i64,
    pub time: String,
    pub actor: String,
    pub source: String,
    pub action: String,
    pub target: String,
    pub summary: String,
    pub diff: String,
}

/// A readable line for the common details, and the configuration diff on its own.
fn view(e: &AuditEntry) -> EntryView {
    let v: serde_json::Value = serde_json::from_str(&e.detail).unwrap_or_default();
    let diff = v
        .get("diff")
        .and_then(|d| d.as_str())
        .unwrap_or_default()
        .to_string();
    let summary = match v.as_object() {
        Some(o) => o
            .iter()
            .filter(|(k, _)| k.as_str() != "diff")
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}: {s}"),
                v => format!("{k}: {v}"),
            })
            .collect::<Vec<_>>()
            .join("; "),
        None => e.detail.clone(),
    };
    EntryView {
        seq: e.seq,
        time: fmt_time(e.ts),
        actor: e.actor.clone(),
        source: e.source.clone(),
        action: e.action.clone(),
        target: e.target.clone(),
        summary,
        diff,
    }
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    page: Page,
    p: AuditParams,
    entries: Vec<EntryView>,
    verdict: Option<(bool, String)>,
    csv_query: String,
}

async fn show(
    state: AppState,
    p: Principal,
    params: AuditParams,
    verify: bool,
) -> Result<Response, AppError> {
    let page = Page::load(&state, &p, "audit", "Audit log").await?;
    let filter = params.filter(200)?;
    let (entries, verdict) = state
        .db(move |s| {
            let verdict = if verify {
                Some(s.audit.verify()?)
            } else {
                None
            };
            Ok((s.audit.list(&filter)?, verdict))
        })
        .await?;
    let verdict = verdict.map(|v| match v {
        AuditVerdict::Intact { entries, head } => (
            true,
            format!("The chain is intact: {entries} entries, newest hash {head}."),
        ),
        AuditVerdict::Tampered { seq, reason } => (
            false,
            format!("The chain is broken at entry {seq}: {reason}. Entries from there on cannot be trusted."),
        ),
    });
    render(&AuditPage {
        page,
        csv_query: params.query_string(),
        p: params,
        entries: entries.iter().map(view).collect(),
        verdict,
    })
}

pub async fn list(
    State(state): State<AppState>,
    p: Principal,
    Query(params): Query<AuditParams>,
) -> Result<Response, AppError> {
    show(state, p, params, false).await
}

/// Checking the chain only reads: a GET.
pub async fn verify(
    State(state): State<AppState>,
    p: Principal,
    Query(params): Query<AuditParams>,
) -> Result<Response, AppError> {
    show(state, p, params, true).await
}

/// A cell that a spreadsheet would run as a formula is prefixed with `'`.
fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

pub async fn csv(
    State(state): State<AppState>,
    _p: Principal,
    Query(params): Query<AuditParams>,
) -> Result<Response, AppError> {
    let filter = AuditFilter {
        oldest_first: true,
        ..params.filter(100_000)?
    };
    let entries = state.db(move |s| Ok(s.audit.list(&filter)?)).await?;
    let mut out = String::from("seq,time_utc,actor,source,action,target,detail,hash\r\n");
    for e in &entries {
        let row = [
            e.seq.to_string(),
            fmt_time(e.ts),
            e.actor.clone(),
            e.source.clone(),
            e.action.clone(),
            e.target.clone(),
            e.detail.clone(),
            e.hash.clone(),
        ];
        out.push_str(
            &row.iter()
                .map(|c| csv_cell(c))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push_str("\r\n");
    }
    let name = format!(
        "attachment; filename=\"palisade-audit-{}.csv\"",
        crate::view::datetime_local(now_unix()).replace(':', "")
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, name),
        ],
        out,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::csv_cell;

    #[test]
    fn csv_cells_are_quoted_and_defused() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=cmd()"), "'=cmd()");
        assert_eq!(csv_cell("-1,2"), "\"'-1,2\"");
    }
}
