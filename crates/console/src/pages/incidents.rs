//! DLP incidents and the audit report: what the rules that read the `dlp` check matched (or
//! would have, in monitor mode), with masked snippets only (`mail.db`'s `dlp_incident`), and
//! the report of a period per rule, sender, destination and identifier type, as a page, a CSV
//! file and a printable HTML document for a governance board.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use palisade_store::mail::{IncidentQuery, IncidentReport};
use palisade_store::now_unix;
use serde::Deserialize;
use serde_json::Value;

use crate::auth::{Perm, Principal, allows};
use crate::error::{AppError, render};
use crate::state::AppState;
use crate::view::{Page, datetime_local, fmt_time, parse_datetime_local};

/// The filters of the incidents view.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct Filters {
    /// `24h`, `7d`, `30d`, `90d`, `all`; `since`/`until` override.
    pub range: String,
    pub since: String,
    pub until: String,
    pub rule: String,
    pub sender: String,
    pub detector: String,
    /// `monitor`, `enforce` or empty.
    pub mode: String,
}

fn opt(s: &str) -> Option<String> {
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

fn time(s: &str) -> Result<Option<i64>, AppError> {
    match opt(s) {
        None => Ok(None),
        Some(s) => parse_datetime_local(&s).map(Some).ok_or_else(|| {
            AppError::BadRequest(format!("'{s}' is not a date and time (YYYY-MM-DDTHH:MM)"))
        }),
    }
}

/// The window of `range` (30 days when none is given), unless `since` is.
fn window(range: &str, since: &str, until: &str) -> Result<(Option<i64>, Option<i64>), AppError> {
    let since = match (time(since)?, range) {
        (Some(s), _) => Some(s),
        (None, "24h") => Some(now_unix() - 86400),
        (None, "7d") => Some(now_unix() - 7 * 86400),
        (None, "90d") => Some(now_unix() - 90 * 86400),
        (None, "all") => None,
        (None, _) => Some(now_unix() - 30 * 86400),
    };
    Ok((since, time(until)?))
}

/// How many incidents the view lists at most (the newest).
const LIMIT: u32 = 500;

struct Row {
    at: String,
    queue_id: String,
    sender: String,
    recipients: String,
    subject: String,
    rule: String,
    action: String,
    monitor: bool,
    detections: Vec<String>,
    unscannable: Vec<String>,
}

#[derive(Template)]
#[template(path = "incidents.html")]
struct IncidentsPage {
    page: Page,
    f: Filters,
    rules: Vec<String>,
    detectors: Vec<String>,
    rows: Vec<Row>,
    limit: u32,
    /// The user may follow a queue id to message tracking.
    tracking: bool,
}

/// Where a detector found its matches: `q3.xlsx (4), body (1)`.
pub(crate) fn locations(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|l| match (l["location"].as_str(), l["count"].as_u64()) {
                    (Some(at), Some(n)) => format!("{at} ({n})"),
                    _ => l
                        .as_str()
                        .map(String::from)
                        .unwrap_or_else(|| l.to_string()),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `nhs_number ×5 (…919, …428) in q3.xlsx`.
fn detection_line(d: &Value) -> String {
    let snippets: Vec<&str> = d["snippets"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
        .unwrap_or_default();
    let locations = locations(&d["locations"]);
    let mut s = format!(
        "{} ×{}",
        d["detector"].as_str().unwrap_or("?"),
        d["count"].as_u64().unwrap_or(0)
    );
    if !snippets.is_empty() {
        s.push_str(&format!(" ({})", snippets.join(", ")));
    }
    if !locations.is_empty() {
        s.push_str(&format!(" in {}", locations.join(", ")));
    }
    s
}

pub async fn list(
    State(state): State<AppState>,
    p: Principal,
    Query(f): Query<Filters>,
) -> Result<Response, AppError> {
    let page = Page::load(&state, &p, "dlp", "DLP incidents").await?;
    let (since, until) = window(&f.range, &f.since, &f.until)?;
    let q = IncidentQuery {
        since,
        until,
        rule: opt(&f.rule),
        sender: opt(&f.sender),
        detector: opt(&f.detector),
        monitor: match f.mode.as_str() {
            "monitor" => Some(true),
            "enforce" => Some(false),
            _ => None,
        },
        limit: LIMIT,
    };
    let (found, mut rules) = state
        .db(move |s| {
            let rules: Vec<String> = s
                .config
                .current()?
                .map(|r| {
                    r.config
                        .filter
                        .rules
                        .iter()
                        .map(|r| r.name.clone())
                        .collect()
                })
                .unwrap_or_default();
            Ok((s.mail.incidents(&q)?, rules))
        })
        .await?;
    let mut detectors: Vec<String> = palisade_store::config::BUILT_IN_DETECTORS
        .iter()
        .map(|s| s.to_string())
        .collect();
    let rows = found
        .into_iter()
        .map(|i| {
            let n = i.incident;
            for d in n.detections.as_array().into_iter().flatten() {
                if let Some(name) = d["detector"].as_str()
                    && !detectors.iter().any(|x| x == name)
                {
                    detectors.push(name.to_string());
                }
            }
            if !rules.contains(&n.rule) {
                rules.push(n.rule.clone());
            }
            Row {
                at: fmt_time(i.at),
                queue_id: n.queue_id,
                sender: if n.sender.is_empty() {
                    "<>".into()
                } else {
                    n.sender
                },
                recipients: n.recipients.join(", "),
                subject: n.subject.unwrap_or_default(),
                rule: n.rule,
                action: n.action,
                monitor: n.monitor,
                detections: n
                    .detections
                    .as_array()
                    .map(|a| a.iter().map(detection_line).collect())
                    .unwrap_or_default(),
                unscannable: n
                    .unscannable
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|u| {
                                format!(
                                    "{}: {}",
                                    u["location"].as_str().unwrap_or("?"),
                                    u["reason"].as_str().unwrap_or("?")
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect();
    render(&IncidentsPage {
        page,
        f,
        rules,
        detectors,
        rows,
        limit: LIMIT,
        tracking: allows(p.user.role, Perm::ViewTracking),
    })
}

/// The period of a report: `since`/`until` as dates or date-times (UTC); the last 30 days
/// when none is given.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct Period {
    pub since: String,
    pub until: String,
}

impl Period {
    fn bounds(&self) -> Result<(i64, i64), AppError> {
        let day = |s: &str| -> Result<Option<i64>, AppError> {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            // A date alone is its midnight (UTC).
            let full = if s.len() == 10 {
                format!("{s}T00:00")
            } else {
                s.to_string()
            };
            time(&full)
        };
        let until = day(&self.until)?.unwrap_or_else(|| now_unix() + 1);
        let since = day(&self.since)?.unwrap_or(until - 30 * 86400);
        if since >= until {
            return Err(AppError::BadRequest(
                "The period ends before it begins.".into(),
            ));
        }
        Ok((since, until))
    }

    fn query(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("since", &self.since)
            .append_pair("until", &self.until)
            .finish()
    }
}

#[derive(Template)]
#[template(path = "dlp_report.html")]
struct ReportPage {
    page: Page,
    since_value: String,
    until_value: String,
    r: IncidentReport,
    query: String,
}

async fn report_of(state: &AppState, period: &Period) -> Result<IncidentReport, AppError> {
    let (since, until) = period.bounds()?;
    state
        .db(move |s| Ok(s.mail.incident_report(since, until)?))
        .await
}

pub async fn report(
    State(state): State<AppState>,
    p: Principal,
    Query(period): Query<Period>,
) -> Result<Response, AppError> {
    let page = Page::load(&state, &p, "dlp", "DLP audit report").await?;
    let r = report_of(&state, &period).await?;
    render(&ReportPage {
        page,
        since_value: datetime_local(r.since),
        until_value: datetime_local(r.until),
        query: period.query(),
        r,
    })
}

fn download(content_type: &str, name: &str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

fn file_name(r: &IncidentReport, ext: &str) -> String {
    let day = |t: i64| {
        palisade_store::format_unix(t)
            .chars()
            .take(10)
            .collect::<String>()
    };
    format!("dlp-report-{}-to-{}.{ext}", day(r.since), day(r.until))
}

pub async fn report_csv(
    State(state): State<AppState>,
    Query(period): Query<Period>,
) -> Result<Response, AppError> {
    let r = report_of(&state, &period).await?;
    Ok(download(
        "text/csv; charset=utf-8",
        &file_name(&r, "csv"),
        r.to_csv(),
    ))
}

pub async fn report_html(
    State(state): State<AppState>,
    Query(period): Query<Period>,
) -> Result<Response, AppError> {
    let r = report_of(&state, &period).await?;
    let org = state
        .db(|s| Ok(s.config.current()?.map(|c| c.config.system.hostname)))
        .await?
        .unwrap_or_else(|| "Palisade".into());
    Ok(download(
        "text/html; charset=utf-8",
        &file_name(&r, "html"),
        r.to_html(&org),
    ))
}
