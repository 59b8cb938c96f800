//! The dashboard: mail flow over 24 hours and 7 days, the protection panel (what the filters
//! refused, quarantined and found, over either window), the queue, each service's health (and
//! a plain note that high availability is not built yet).

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use palisade_control::engine::ControlRequest;
use palisade_control::supervisor as sup;
use palisade_store::mail::{FlowBucket, ProtectionSummary, ReasonCount, TopEntry};
use palisade_store::now_unix;
use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::chart;
use crate::error::{AppError, render};
use crate::state::AppState;
use crate::view::{Page, fmt_duration, fmt_time};

pub const DAY_BUCKET: i64 = 3600;
pub const WEEK_BUCKET: i64 = 6 * 3600;

#[derive(Debug, Clone, Serialize)]
pub struct ServiceView {
    pub name: String,
    pub state: &'static str,
    pub pid: String,
    pub up: String,
    pub restarts: u64,
    pub last_exit: String,
    /// Crashes within the last `crash_window_secs`.
    pub crashes: u64,
    pub crash_window_secs: u64,
    /// When a service that is down is started again ("—" if it is not waiting).
    pub next_restart: String,
}

pub struct Overview {
    pub day: Vec<FlowBucket>,
    pub week: Vec<FlowBucket>,
    pub queue: (u64, u64),
    pub revision: Option<(i64, i64, String, String)>,
}

/// Flow buckets aligned to their size, ending with the current one.
pub fn flow_since(bucket: i64, count: i64) -> i64 {
    (now_unix() / bucket - (count - 1)) * bucket
}

/// The dashboard's two time windows: the ones its flow charts cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Day,
    Week,
}

impl Window {
    /// `24h`, `7d` (empty: the day), as the page's `?window=` and the API's `?range=`.
    pub fn parse(s: &str) -> Result<Window, AppError> {
        match s {
            "" | "24h" => Ok(Window::Day),
            "7d" => Ok(Window::Week),
            other => Err(AppError::BadRequest(format!(
                "window '{other}': use 24h or 7d"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Window::Day => "24h",
            Window::Week => "7d",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Window::Day => "last 24 hours",
            Window::Week => "last 7 days",
        }
    }

    /// The start of the flow chart of the same window.
    pub fn since(self) -> i64 {
        match self {
            Window::Day => flow_since(DAY_BUCKET, 24),
            Window::Week => flow_since(WEEK_BUCKET, 28),
        }
    }
}

pub async fn protection(state: &AppState, window: Window) -> Result<ProtectionSummary, AppError> {
    let since = window.since();
    state
        .db(move |s| Ok(s.mail.protection_summary(since)?))
        .await
}

pub async fn overview(state: &AppState) -> Result<Overview, AppError> {
    state
        .db(|s| {
            let day = s.mail.flow(flow_since(DAY_BUCKET, 24), DAY_BUCKET)?;
            let week = s.mail.flow(flow_since(WEEK_BUCKET, 28), WEEK_BUCKET)?;
            let queue = s.mail.queue_len()?;
            let revision = s.config.history(1)?.into_iter().next();
            Ok(Overview {
                day,
                week,
                queue,
                revision,
            })
        })
        .await
}

pub async fn services(state: &AppState) -> Result<Vec<ServiceView>, String> {
    match state.supervisor(sup::Request::Status).await? {
        sup::Response::Status(st) => Ok(st
            .children
            .into_iter()
            .map(|c| ServiceView {
                state: c.state.as_str(),
                pid: c.pid.map(|p| p.to_string()).unwrap_or_else(|| "—".into()),
                up: c.up_secs.map(fmt_duration).unwrap_or_else(|| "—".into()),
                restarts: c.restarts,
                last_exit: c.last_exit.unwrap_or_default(),
                crashes: c.crashes,
                crash_window_secs: c.crash_window_secs,
                next_restart: c
                    .next_restart_at
                    .map(fmt_time)
                    .unwrap_or_else(|| "—".into()),
                name: c.name,
            })
            .collect()),
        sup::Response::Error { message } => Err(message),
        sup::Response::Ok { message } => Err(message),
    }
}

pub struct EngineView {
    pub revision: u64,
    pub uptime: String,
    pub sessions: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub delivered: u64,
    pub deferred: u64,
    pub bounced: u64,
    pub delivering: u64,
}

/// One chart of the protection panel with the same numbers as a table.
struct BarChart {
    id: &'static str,
    heading: String,
    /// The table's first column.
    what: &'static str,
    svg: String,
    rows: Vec<chart::Bar>,
}

impl BarChart {
    fn new(
        id: &'static str,
        heading: String,
        what: &'static str,
        class: &str,
        rows: Vec<chart::Bar>,
    ) -> BarChart {
        BarChart {
            svg: chart::bars_svg(id, &heading, class, &rows),
            id,
            heading,
            what,
            rows,
        }
    }
}

fn reason_bars(v: &[ReasonCount]) -> Vec<chart::Bar> {
    v.iter()
        .map(|r| chart::Bar {
            label: r.reason.label().to_string(),
            value: r.count,
        })
        .collect()
}

fn top_bars(v: &[TopEntry], empty: &str) -> Vec<chart::Bar> {
    v.iter()
        .map(|t| chart::Bar {
            label: if t.name.is_empty() {
                empty.to_string()
            } else {
                t.name.clone()
            },
            value: t.count,
        })
        .collect()
}

/// The protection panel as the template shows it.
struct ProtectionView {
    window: &'static str,
    window_label: &'static str,
    /// Set when the window held more messages than are counted: from when they are.
    counted_since: String,
    summary: ProtectionSummary,
    charts: Vec<BarChart>,
}

fn protection_view(window: Window, summary: ProtectionSummary) -> ProtectionView {
    let w = window.label();
    let bar = |label: &str, value: u64| chart::Bar {
        label: label.to_string(),
        value,
    };
    let charts = vec![
        BarChart::new(
            "in-out",
            format!("Messages in and out, {w}"),
            "Mail",
            "flow",
            vec![
                bar("In (accepted)", summary.inbound),
                bar("Out (accepted)", summary.outbound),
                bar("Refused", summary.rejected),
                bar("Quarantined", summary.quarantined),
            ],
        ),
        BarChart::new(
            "refused-by-reason",
            format!("Refused by reason, {w}"),
            "Reason",
            "refused",
            reason_bars(&summary.refused_by),
        ),
        BarChart::new(
            "quarantined-by-reason",
            format!("Quarantined by reason, {w}"),
            "Reason",
            "quarantined",
            reason_bars(&summary.quarantined_by),
        ),
        BarChart::new(
            "virus-signatures",
            format!("Top virus signatures, {w}"),
            "Signature",
            "virus",
            top_bars(&summary.signatures, "(unnamed)"),
        ),
        BarChart::new(
            "spam-clients",
            format!("Top spam sources by client address, {w}"),
            "Client address",
            "spam",
            top_bars(&summary.spam_clients, "(unknown)"),
        ),
        BarChart::new(
            "spam-domains",
            format!("Top spam sources by sender domain, {w}"),
            "Sender domain",
            "spam",
            top_bars(&summary.spam_domains, "<> (null sender)"),
        ),
    ];
    ProtectionView {
        window: window.as_str(),
        window_label: w,
        counted_since: if summary.truncated {
            fmt_time(summary.counted_since)
        } else {
            String::new()
        },
        summary,
        charts,
    }
}

#[derive(Deserialize)]
pub struct DashboardParams {
    #[serde(default)]
    window: String,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    page: Page,
    protection: ProtectionView,
    chart_day: String,
    chart_week: String,
    totals_day: Vec<(&'static str, &'static str, u64)>,
    totals_week: Vec<(&'static str, &'static str, u64)>,
    queue_messages: u64,
    queue_recipients: u64,
    engine: Option<EngineView>,
    engine_error: String,
    services: Vec<ServiceView>,
    services_error: String,
    revision: String,
}

fn hour_label(ts: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(ts).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    if t.hour().is_multiple_of(3) {
        format!("{:02}:00", t.hour())
    } else {
        String::new()
    }
}

fn day_label(ts: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(ts).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    if t.hour() == 0 {
        format!("{} {}", &t.weekday().to_string()[..3], t.day())
    } else {
        String::new()
    }
}

pub async fn page(
    State(state): State<AppState>,
    p: Principal,
    Query(params): Query<DashboardParams>,
) -> Result<Response, AppError> {
    let window = Window::parse(&params.window)?;
    let page = Page::load(&state, &p, "dashboard", "Dashboard").await?;
    let o = overview(&state).await?;
    let summary = protection(&state, window).await?;
    let (engine, engine_error) = match state.engine(ControlRequest::Stats).await {
        Ok(r) => match r.stats {
            Some(s) => (
                Some(EngineView {
                    revision: s.revision,
                    uptime: fmt_duration(s.uptime_secs),
                    sessions: s.sessions,
                    accepted: s.accepted,
                    rejected: s.rejected,
                    delivered: s.delivered,
                    deferred: s.deferred,
                    bounced: s.bounced,
                    delivering: s.delivering,
                }),
                String::new(),
            ),
            None => (None, r.message),
        },
        Err(e) => (None, e),
    };
    let (services, services_error) = match services(&state).await {
        Ok(s) => (s, String::new()),
        Err(e) => (vec![], e),
    };
    render(&DashboardPage {
        page,
        protection: protection_view(window, summary),
        chart_day: chart::flow_svg("Mail flow, last 24 hours (UTC)", &o.day, hour_label, 1),
        chart_week: chart::flow_svg("Mail flow, last 7 days (UTC)", &o.week, day_label, 1),
        totals_day: chart::totals(&o.day),
        totals_week: chart::totals(&o.week),
        queue_messages: o.queue.0,
        queue_recipients: o.queue.1,
        engine,
        engine_error,
        services,
        services_error,
        revision: o
            .revision
            .map(|(id, ts, author, comment)| {
                format!("revision {id}, {} by {author}: {comment}", fmt_time(ts))
            })
            .unwrap_or_default(),
    })
}
