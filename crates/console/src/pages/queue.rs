//! The queue: what is waiting, why, and the operator's levers (retry now, delete, bounce).
//! A message's envelope and headers are shown as text; its body never is.

use std::io::Read;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use palisade_control::engine::{ControlRequest, ControlResponse};
use palisade_store::mail::{QueuedMessage, RcptState};
use serde::{Deserialize, Serialize};

use crate::auth::{Perm, Principal, allows};
use crate::error::{AppError, render};
use crate::forms::flash;
use crate::state::AppState;
use crate::view::{Page, fmt_size, fmt_time};

/// Headers beyond this are not shown (a message can carry megabytes of them).
const HEADER_LIMIT: usize = 64 * 1024;

#[derive(Debug, Default, Deserialize)]
pub struct QueueQuery {
    #[serde(default)]
    pub q: String,
}

pub struct Row {
    pub id: String,
    pub received: String,
    pub sender: String,
    pub recipients: Vec<(String, String)>,
    pub size: String,
    pub attempts: i64,
    pub next: String,
    pub last_error: String,
}

fn row(m: &QueuedMessage) -> Row {
    let queued: Vec<_> = m
        .recipients
        .iter()
        .filter(|r| r.state == RcptState::Queued)
        .collect();
    Row {
        id: m.id.clone(),
        received: fmt_time(m.received_at),
        sender: if m.sender.is_empty() {
            "<>".into()
        } else {
            m.sender.clone()
        },
        recipients: m
            .recipients
            .iter()
            .map(|r| (r.address.clone(), r.state.to_string()))
            .collect(),
        size: fmt_size(m.size),
        attempts: m.recipients.iter().map(|r| r.attempts).max().unwrap_or(0),
        next: queued
            .iter()
            .map(|r| r.next_attempt)
            .min()
            .map(fmt_time)
            .unwrap_or_else(|| "—".into()),
        last_error: m
            .recipients
            .iter()
            .filter_map(|r| r.last_error.clone())
            .next_back()
            .unwrap_or_default(),
    }
}

#[derive(Template)]
#[template(path = "queue.html")]
struct QueuePage {
    page: Page,
    q: String,
    rows: Vec<Row>,
    total: (u64, u64),
    manage: bool,
}

pub async fn list(
    State(state): State<AppState>,
    p: Principal,
    Query(query): Query<QueueQuery>,
) -> Result<Response, AppError> {
    let page = Page::load(&state, &p, "queue", "Queue").await?;
    let q = query.q.trim().to_string();
    let q2 = q.clone();
    let (msgs, total) = state
        .db(move |s| {
            let search = Some(q2.as_str()).filter(|s| !s.is_empty());
            Ok((s.mail.list_queue(search, 500)?, s.mail.queue_len()?))
        })
        .await?;
    render(&QueuePage {
        page,
        q,
        rows: msgs.iter().map(row).collect(),
        total,
        manage: allows(p.user.role, Perm::ManageQueue),
    })
}

/// Queue ids are 20 hex digits; anything else never reaches the file system.
pub fn valid_id(id: &str) -> bool {
    id.len() == 20 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The header block of a spooled message, as text.
pub fn read_headers(state: &AppState, id: &str) -> Result<String, String> {
    if !valid_id(id) {
        return Err("not a queue id".into());
    }
    let path = state.data().spool().join(id);
    let f = std::fs::File::open(&path).map_err(|e| format!("content not readable: {e}"))?;
    let mut buf = Vec::with_capacity(8192);
    f.take(HEADER_LIMIT as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("content not readable: {e}"))?;
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| buf.windows(2).position(|w| w == b"\n\n"));
    let truncated = end.is_none() && buf.len() > HEADER_LIMIT;
    let head = &buf[..end.unwrap_or(buf.len().min(HEADER_LIMIT))];
    let mut text = String::from_utf8_lossy(head).replace("\r\n", "\n");
    if truncated {
        text.push_str("\n[… headers longer than 64 KiB are not shown]");
    }
    Ok(text)
}

#[derive(Debug, Serialize)]
pub struct Detail {
    pub message: QueuedMessage,
    pub headers: Option<String>,
    pub headers_error: Option<String>,
}

pub async fn detail_of(state: &AppState, id: String) -> Result<Detail, AppError> {
    if !valid_id(&id) {
        return Err(AppError::NotFound("No such queue id.".into()));
    }
    let id2 = id.clone();
    let msg = state
        .db(move |s| Ok(s.mail.message(&id2)?))
        .await?
        .ok_or_else(|| {
            AppError::NotFound(format!(
                "{id} is not in the queue (it may have been delivered: see message tracking)."
            ))
        })?;
    let st = state.clone();
    let headers = tokio::task::spawn_blocking(move || read_headers(&st, &id)).await?;
    let (headers, headers_error) = match headers {
        Ok(h) => (Some(h), None),
        Err(e) => (None, Some(e)),
    };
    Ok(Detail {
        message: msg,
        headers,
        headers_error,
    })
}

pub struct RcptView {
    pub address: String,
    pub route: String,
    pub state: String,
    pub attempts: i64,
    pub next: String,
    pub last_error: String,
    pub notify: String,
}

#[derive(Template)]
#[template(path = "queue_message.html")]
struct MessagePage {
    page: Page,
    row: Row,
    expires: String,
    kind: String,
    envid: String,
    rcpts: Vec<RcptView>,
    headers: String,
    headers_error: String,
    manage: bool,
}

pub async fn message(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let page = Page::load(&state, &p, "queue", &format!("Queued message {id}")).await?;
    let d = detail_of(&state, id).await?;
    let m = &d.message;
    render(&MessagePage {
        page,
        row: row(m),
        expires: fmt_time(m.expires_at),
        kind: format!("{:?}", m.kind).to_lowercase(),
        envid: m.envid.clone().unwrap_or_default(),
        rcpts: m
            .recipients
            .iter()
            .map(|r| RcptView {
                address: r.address.clone(),
                route: r.route.clone(),
                state: r.state.to_string(),
                attempts: r.attempts,
                next: if r.state == RcptState::Queued {
                    fmt_time(r.next_attempt)
                } else {
                    "—".into()
                },
                last_error: r.last_error.clone().unwrap_or_default(),
                notify: r.notify.map(|n| n.to_param()).unwrap_or_default(),
            })
            .collect(),
        headers: d.headers.clone().unwrap_or_default(),
        headers_error: d.headers_error.clone().unwrap_or_default(),
        manage: allows(p.user.role, Perm::ManageQueue),
    })
}

/// Asks the engine to change the queue: it makes the change and writes the audit entry in
/// the requester's name. The console never writes the queue itself; when the engine is not
/// running, the operator is told so (`palisade queue` works without it).
async fn ask_engine(state: &AppState, req: ControlRequest) -> Result<ControlResponse, AppError> {
    let r = state.engine(req).await.map_err(|e| {
        AppError::Unavailable(format!(
            "{e}. The queue can be changed here only while the engine runs \
             (`palisade queue` works without it)."
        ))
    })?;
    if r.ok {
        Ok(r)
    } else if r.message.contains("no longer queued") || r.message.contains("is not queued") {
        Err(AppError::NotFound(format!("{}.", r.message)))
    } else {
        Err(AppError::Conflict(r.message))
    }
}

/// The three actions on one message, shared by the page and the API. Returns a sentence.
pub async fn act(
    state: &AppState,
    p: &Principal,
    id: &str,
    action: &str,
) -> Result<String, AppError> {
    if !valid_id(id) {
        return Err(AppError::NotFound("No such queue id.".into()));
    }
    let (actor, source, id) = (p.actor(), p.source.clone(), id.to_string());
    let msg = match action {
        "retry" => {
            let r = ask_engine(
                state,
                ControlRequest::Retry {
                    id: id.clone(),
                    actor,
                    source,
                },
            )
            .await?;
            match r.count.unwrap_or(0) {
                0 => format!("{id}: nothing is waiting to be retried."),
                n => format!("{id}: {n} recipient(s) will be tried again now."),
            }
        }
        "delete" => {
            ask_engine(state, ControlRequest::Delete { id, actor, source })
                .await?
                .message
        }
        "bounce" => {
            ask_engine(state, ControlRequest::Bounce { id, actor, source })
                .await?
                .message
        }
        other => return Err(AppError::BadRequest(format!("unknown action '{other}'"))),
    };
    Ok(if msg.ends_with('.') {
        msg
    } else {
        format!("{msg}.")
    })
}

#[derive(Deserialize)]
pub struct ActionForm {
    action: String,
}

pub async fn action(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    Form(f): Form<ActionForm>,
) -> Result<Response, AppError> {
    let msg = act(&state, &p, &id, &f.action).await?;
    flash(&state, &p, msg).await?;
    let to = if f.action == "retry" {
        format!("/queue/{id}")
    } else {
        "/queue".to_string()
    };
    Ok(Redirect::to(&to).into_response())
}

/// Retry everything now.
pub async fn flush_all(state: &AppState, p: &Principal) -> Result<String, AppError> {
    let r = ask_engine(
        state,
        ControlRequest::Flush {
            actor: p.actor(),
            source: p.source.clone(),
        },
    )
    .await?;
    Ok(format!(
        "{} recipient(s) will be tried again now.",
        r.count.unwrap_or(0)
    ))
}

pub async fn flush(State(state): State<AppState>, p: Principal) -> Result<Response, AppError> {
    let msg = flush_all(&state, &p).await?;
    flash(&state, &p, msg).await?;
    Ok(Redirect::to("/queue").into_response())
}
