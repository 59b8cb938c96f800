//! System → High availability: the pair from the console (ARCHITECTURE.md, "Pairing from the
//! console"). The console cannot write `DIR/ha/`: creating, joining and leaving a pair are
//! supervisor requests (`HaPair`), which run the command line's sequence as root and audit
//! with the administrator as actor; "fail over now" goes to the HA process's socket, which
//! audits it. The pairing code is shown once, on the page that answers the form.

use std::net::IpAddr;

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use palisade_control::supervisor as sup;

use super::dashboard::{HaTile, ha_tile};
use super::users::OneTimePage;
use crate::auth::{Perm, Principal, allows};
use crate::error::{AppError, render};
use crate::forms::{Raw, flash, get};
use crate::state::AppState;
use crate::view::{Field, FormView, Page};

#[derive(Template)]
#[template(path = "ha.html")]
pub struct HaPage {
    page: Page,
    tile: HaTile,
    paired: bool,
    manage: bool,
    create: FormView,
    join: FormView,
}

pub async fn page(State(state): State<AppState>, p: Principal) -> Result<Response, AppError> {
    let data = state.data().clone();
    let (tile, paired) = (ha_tile(&data), data.ha().join("pair.toml").exists());
    let page = Page::load(&state, &p, "system", "High availability").await?;
    let create = FormView::new(
        "ha-create",
        "/system/ha/create",
        "Create a pair",
        "Create pair",
    )
    .intro(
        "On the first unit. Shows a pairing code once: type it into the second unit's join form.",
    )
    .field(
        Field::new("vip", "Floating address (ADDR/PREFIX)", "text", "")
            .help("e.g. 192.0.2.25/24: the address mail is sent to; the active unit holds it"),
    )
    .field(
        Field::new("interface", "LAN interface", "text", "")
            .help("where the floating address goes, e.g. eth0"),
    )
    .field(Field::new(
        "ha_address",
        "This unit's HA-link address",
        "text",
        "",
    ))
    .field(
        Field::new("witness", "Witness address (optional)", "text", "").help(
            "the gateway: a unit that lost its peer takes over only while the witness answers",
        ),
    )
    .editable(!paired);
    let join = FormView::new("ha-join", "/system/ha/join", "Join a pair", "Join pair")
        .intro("On the second unit, with the code the first unit showed.")
        .field(Field::new("code", "Pairing code", "password", ""))
        .field(Field::new(
            "peer",
            "The first unit's HA-link address",
            "text",
            "",
        ))
        .field(Field::new(
            "ha_address",
            "This unit's HA-link address",
            "text",
            "",
        ))
        .field(Field::new(
            "interface",
            "LAN interface (if named differently here)",
            "text",
            "",
        ))
        .field(Field::new(
            "witness",
            "Witness address (optional)",
            "text",
            "",
        ))
        .editable(!paired);
    render(&HaPage {
        page,
        tile,
        paired,
        manage: allows(p.user.role, Perm::ManageSystem),
        create,
        join,
    })
}

fn addr(raw: &Raw, name: &str, label: &str) -> Result<IpAddr, AppError> {
    get(raw, name)
        .trim()
        .parse()
        .map_err(|_| AppError::BadRequest(format!("{label}: not an IP address.")))
}

fn opt_addr(raw: &Raw, name: &str, label: &str) -> Result<Option<IpAddr>, AppError> {
    if get(raw, name).trim().is_empty() {
        Ok(None)
    } else {
        addr(raw, name, label).map(Some)
    }
}

async fn pair(
    state: &AppState,
    p: &Principal,
    action: sup::HaPairAction,
) -> Result<(String, Option<String>), AppError> {
    let req = sup::Request::HaPair {
        action,
        actor: p.actor(),
        source: p.source.clone(),
    };
    match state.supervisor(req).await.map_err(AppError::Unavailable)? {
        sup::Response::Paired { message, code } => Ok((message, code)),
        sup::Response::Error { message } => Err(AppError::BadRequest(message)),
        _ => Err(AppError::internal("unexpected reply")),
    }
}

/// This unit's pair, for the API: whether it is paired, and the HA process's status (`None`
/// when it is not running or its status is stale).
pub(crate) fn status(data: &palisade_store::DataDir) -> serde_json::Value {
    let paired = data.ha().join("pair.toml").exists();
    let st: Option<palisade_ha::pair::HaStatus> =
        std::fs::read_to_string(data.ha().join("state.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .filter(|s: &palisade_ha::pair::HaStatus| {
                paired && s.is_fresh(palisade_store::now_unix_ms())
            });
    serde_json::json!({ "paired": paired, "status": st })
}

/// Creates the pair; returns the sentence and the pairing code (shown once).
pub(crate) async fn create_pair(
    state: &AppState,
    p: &Principal,
    action: sup::HaPairAction,
) -> Result<(String, String), AppError> {
    let (message, code) = pair(state, p, action).await?;
    Ok((message, code.unwrap_or_default()))
}

/// Leaves the pair, then has the engine queue the peer's replicas (there is no peer to
/// deliver them any more); returns the sentence for the operator.
pub(crate) async fn unpair_and_adopt(state: &AppState, p: &Principal) -> Result<String, AppError> {
    let (message, _) = pair(state, p, sup::HaPairAction::Unpair).await?;
    let adopted = match state
        .engine(palisade_control::engine::ControlRequest::HaAdopt)
        .await
    {
        Ok(r) if r.ok => format!(" {}.", r.message),
        Ok(r) => format!(
            " The peer's replicated messages were not queued: {}.",
            r.message
        ),
        Err(e) => format!(" The peer's replicated messages were not queued: {e}."),
    };
    Ok(format!("{message}.{adopted}"))
}

/// Asks the HA process to hand the address to the peer (it audits).
pub(crate) async fn fail_over(state: &AppState, p: &Principal) -> Result<String, AppError> {
    let run = state.data().run();
    let req = palisade_control::ha::Request::Failover {
        actor: p.actor(),
        source: p.source.clone(),
    };
    let answer = tokio::task::spawn_blocking(move || palisade_control::ha::request(&run, &req))
        .await
        .map_err(AppError::internal)?;
    match answer {
        Ok(palisade_control::ha::Response::Ok { message }) => Ok(format!("{message}.")),
        Ok(palisade_control::ha::Response::Error { message }) => Err(AppError::BadRequest(message)),
        Err(e) => Err(AppError::Unavailable(format!(
            "The HA process did not answer: {e}"
        ))),
    }
}

/// Joins the pair; returns the sentence.
pub(crate) async fn join_pair(
    state: &AppState,
    p: &Principal,
    action: sup::HaPairAction,
) -> Result<String, AppError> {
    pair(state, p, action).await.map(|(m, _)| format!("{m}."))
}

pub async fn create(
    State(state): State<AppState>,
    p: Principal,
    Form(raw): Form<Raw>,
) -> Result<Response, AppError> {
    let action = sup::HaPairAction::Create {
        vip: get(&raw, "vip").trim().to_string(),
        interface: get(&raw, "interface").trim().to_string(),
        ha_address: addr(&raw, "ha_address", "This unit's HA-link address")?,
        witness: opt_addr(&raw, "witness", "Witness address")?,
    };
    let (message, code) = create_pair(&state, &p, action).await?;
    let page = Page::load(&state, &p, "system", "Pair created").await?;
    render(&OneTimePage {
        page,
        heading: message,
        what: "Pairing code. Type it into the second unit's \"Join a pair\" form (System → High availability) or give it to `palisade ha join`. It holds the pair's key: it is not shown again and not stored by the console.".into(),
        secret: code,
        back: "/system/ha".into(),
    })
}

pub async fn join(
    State(state): State<AppState>,
    p: Principal,
    Form(raw): Form<Raw>,
) -> Result<Response, AppError> {
    let interface = get(&raw, "interface").trim();
    let action = sup::HaPairAction::Join {
        code: get(&raw, "code").trim().to_string(),
        peer: addr(&raw, "peer", "The first unit's HA-link address")?,
        ha_address: addr(&raw, "ha_address", "This unit's HA-link address")?,
        interface: (!interface.is_empty()).then(|| interface.to_string()),
        witness: opt_addr(&raw, "witness", "Witness address")?,
    };
    let message = join_pair(&state, &p, action).await?;
    flash(&state, &p, message).await?;
    Ok(Redirect::to("/system/ha").into_response())
}

pub async fn unpair(State(state): State<AppState>, p: Principal) -> Result<Response, AppError> {
    let message = unpair_and_adopt(&state, &p).await?;
    flash(&state, &p, message).await?;
    Ok(Redirect::to("/system/ha").into_response())
}

pub async fn failover(State(state): State<AppState>, p: Principal) -> Result<Response, AppError> {
    let message = fail_over(&state, &p).await?;
    flash(&state, &p, message).await?;
    Ok(Redirect::to("/system/ha").into_response())
}
