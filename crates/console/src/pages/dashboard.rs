//! The dashboard: mail flow over 24 hours and 7 days, the protection panel (what the filters
//! refused, quarantined and found, over either window), the queue, each service's health (and
//! this unit's high-availability state: standalone, or its state in the pair).

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
        sup::Response::Error { message }
        | sup::Response::Ok { message }
        | sup::Response::Paired { message, .. } => Err(message),
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
    ha: HaTile,
}

/// The high-availability tile: standalone, or this unit's state in its pair.
pub struct HaTile {
    pub big: String,
    pub detail: String,
    pub warn: bool,
}

/// Reads `DIR/ha/` (the pair settings exist while paired; `palisade ha` refreshes
/// `state.json` every interval).
/// Why this unit's configuration cannot be changed here: it is the passive unit of a pair,
/// whose configuration follows the active one (ARCHITECTURE.md, "Configuration
/// replication"; a change made here would be undone). `None` standalone, active, or when the
/// HA process is not running (then nothing would undo it).
pub fn passive_refusal(data: &palisade_store::DataDir) -> Option<String> {
    let dir = data.ha();
    if !dir.join("pair.toml").exists() {
        return None;
    }
    let st: palisade_ha::pair::HaStatus =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).ok()?).ok()?;
    if !st.is_fresh(palisade_store::now_unix_ms()) || st.state != palisade_ha::State::Passive {
        return None;
    }
    let active = st
        .peer
        .as_ref()
        .and_then(|p| p.address)
        .map(|a| format!(" ({a} on the HA link, or the floating address {})", st.vip))
        .unwrap_or_default();
    Some(format!(
        "This unit is the passive unit of a high-availability pair: its configuration follows the active unit's. Make the change on the active unit{active}."
    ))
}

pub fn ha_tile(data: &palisade_store::DataDir) -> HaTile {
    let dir = data.ha();
    if !dir.join("pair.toml").exists() {
        return HaTile {
            big: "Standalone".into(),
            detail:
                "Not in a pair. Pair a second unit with palisade ha create and palisade ha join."
                    .into(),
            warn: false,
        };
    }
    let now_ms = palisade_store::now_unix_ms();
    let st: Option<palisade_ha::pair::HaStatus> = std::fs::read_to_string(dir.join("state.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let Some(st) = st.filter(|s| s.is_fresh(now_ms)) else {
        return HaTile {
            big: "HA down".into(),
            detail: "This unit is paired, but its HA process is not running: it cannot take over or hand over the floating address.".into(),
            warn: true,
        };
    };
    use palisade_ha::State;
    let peer = match &st.peer {
        Some(p) if p.alive => format!(
            "peer {} {}, last heartbeat {} s ago",
            p.address.map(|a| a.to_string()).unwrap_or_default(),
            p.state,
            now_ms.saturating_sub(p.last_heartbeat_ms) / 1000
        ),
        Some(p) => format!(
            "peer {} GONE (last heartbeat {} ago)",
            p.address.map(|a| a.to_string()).unwrap_or_default(),
            fmt_duration(now_ms.saturating_sub(p.last_heartbeat_ms) / 1000)
        ),
        None => "no heartbeat from the peer yet".into(),
    };
    let holds = if st.holds_address {
        format!("holds {}", st.vip)
    } else {
        format!("{} is on the peer", st.vip)
    };
    let mut name = st.state.to_string();
    name[..1].make_ascii_uppercase();
    let peer_alive = st.peer.as_ref().is_some_and(|p| p.alive);
    let (replication, replication_warn) = match &st.replication {
        Some(r) if r.connected => (
            format!(
                "spool replicated ({} of the peer's messages kept here)",
                r.replicas
            ),
            false,
        ),
        Some(r) => (
            format!(
                "spool NOT replicated: {} of this unit's messages are not on the peer{}",
                r.unreplicated,
                r.error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ),
            peer_alive,
        ),
        None => ("replication not reported by the engine".into(), false),
    };
    HaTile {
        big: name,
        detail: format!("{holds} · {peer} · epoch {} · {replication}", st.epoch),
        warn: matches!(st.state, State::Degraded | State::Fault | State::Init)
            || !peer_alive
            || st.address_error.is_some()
            || replication_warn,
    }
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
        ha: ha_tile(state.data()),
    })
}

#[cfg(test)]
mod ha_tests {
    use super::*;

    #[test]
    fn ha_tile_standalone_down_and_in_a_pair() {
        let root = std::env::temp_dir().join(format!("console-ha-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let data = palisade_store::DataDir::new(&root);
        std::fs::create_dir_all(data.ha()).unwrap();
        let t = ha_tile(&data);
        assert_eq!((t.big.as_str(), t.warn), ("Standalone", false));
        std::fs::write(data.ha().join("pair.toml"), "").unwrap();
        let t = ha_tile(&data);
        assert_eq!((t.big.as_str(), t.warn), ("HA down", true));
        let now_ms = palisade_store::now_unix_ms();
        let st = palisade_ha::pair::HaStatus {
            state: palisade_ha::State::Active,
            holds_address: true,
            epoch: 3,
            node_id: 1,
            priority: 200,
            vip: "192.0.2.10/24".into(),
            interface: "lan0".into(),
            ha_address: "10.0.0.1".parse().unwrap(),
            engine_healthy: true,
            witness: None,
            witness_reachable: true,
            peer: Some(palisade_ha::pair::PeerStatus {
                address: Some("10.0.0.2".parse().unwrap()),
                node_id: 2,
                state: palisade_ha::State::Passive,
                priority: 100,
                epoch: 2,
                engine_healthy: true,
                witness_reachable: true,
                config_revision: 1,
                spool_position: 0,
                last_heartbeat_ms: now_ms,
                alive: true,
            }),
            last_change: None,
            refused: Default::default(),
            address_error: None,
            updated_ms: now_ms,
            pid: 1,
            interval_ms: 1000,
            replication: Some(palisade_ha::pair::ReplicationStatus {
                connected: true,
                replicas: 4,
                ..Default::default()
            }),
        };
        std::fs::write(
            data.ha().join("state.json"),
            serde_json::to_string(&st).unwrap(),
        )
        .unwrap();
        let t = ha_tile(&data);
        assert_eq!((t.big.as_str(), t.warn), ("Active", false), "{}", t.detail);
        assert!(
            t.detail.contains("holds 192.0.2.10/24")
                && t.detail.contains("passive")
                && t.detail.contains("spool replicated (4 of the peer"),
            "{}",
            t.detail
        );
        // The peer is there but replication is not: a warning that says how much is exposed.
        let lagging = palisade_ha::pair::HaStatus {
            replication: Some(palisade_ha::pair::ReplicationStatus {
                connected: false,
                unreplicated: 7,
                ..Default::default()
            }),
            ..st.clone()
        };
        std::fs::write(
            data.ha().join("state.json"),
            serde_json::to_string(&lagging).unwrap(),
        )
        .unwrap();
        let t = ha_tile(&data);
        assert!(
            t.warn
                && t.detail
                    .contains("7 of this unit's messages are not on the peer"),
            "{}",
            t.detail
        );
        let degraded = palisade_ha::pair::HaStatus {
            state: palisade_ha::State::Degraded,
            peer: None,
            ..st.clone()
        };
        std::fs::write(
            data.ha().join("state.json"),
            serde_json::to_string(&degraded).unwrap(),
        )
        .unwrap();
        let t = ha_tile(&data);
        assert_eq!((t.big.as_str(), t.warn), ("Degraded", true));
        assert_eq!(
            passive_refusal(&data),
            None,
            "a unit holding the address changes its configuration"
        );
        let passive = palisade_ha::pair::HaStatus {
            state: palisade_ha::State::Passive,
            ..st.clone()
        };
        std::fs::write(
            data.ha().join("state.json"),
            serde_json::to_string(&passive).unwrap(),
        )
        .unwrap();
        let why = passive_refusal(&data).expect("a passive unit refuses configuration changes");
        assert!(why.contains("10.0.0.2"), "{why}");
        let _ = std::fs::remove_dir_all(&root);
    }
}
