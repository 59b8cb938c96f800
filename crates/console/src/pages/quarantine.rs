//! The quarantine: what the filters held, searchable; one held message shown safely (headers,
//! text, sanitised HTML in a sandboxed frame, attachments with their real types, the raw
//! source as text, a download); release and delete, one or many at once. Every change is
//! asked of the engine over its control socket (it performs and audits it), as the queue's.

use std::io::Read;

use askama::Template;
use axum::Form;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use palisade_control::engine::{ControlRequest, ControlResponse};
use palisade_inspect::MessageView;
use palisade_store::bayes::{Bayes, Class, Learned};
use palisade_store::mail::{QuarantineEntry, QuarantineQuery, QuarantineState};
use serde::Deserialize;

use crate::auth::{Perm, Principal, allows};
use crate::error::{AppError, render};
use crate::forms::flash;
use crate::pages::queue::valid_id;
use crate::safe_view::{self, RAW_LIMIT, Rendering};
use crate::state::AppState;
use crate::view::{Page, fmt_size, fmt_time, parse_datetime_local};

/// Entries per page of the list.
const PAGE_SIZE: u32 = 50;
/// At most this many messages in one bulk action (each is one request to the engine).
const BULK_LIMIT: usize = 200;

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub sender: String,
    #[serde(default)]
    pub rcpt: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    /// A spam score at least this.
    #[serde(default)]
    pub min_score: String,
    /// `held` (default), `released`, `deleted`, `all`.
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub page: Option<u32>,
}

pub struct Row {
    pub id: String,
    pub received: String,
    pub sender: String,
    pub from_header: String,
    pub recipients: String,
    pub subject: String,
    pub reason: String,
    pub score: String,
    pub size: String,
    pub state: String,
    pub expires: String,
    pub held: bool,
}

fn row(e: &QuarantineEntry) -> Row {
    Row {
        id: e.id.clone(),
        received: fmt_time(e.received_at),
        sender: if e.sender.is_empty() {
            "<>".into()
        } else {
            e.sender.clone()
        },
        from_header: e.from_header.clone().unwrap_or_default(),
        recipients: e
            .recipients
            .iter()
            .map(|r| r.address.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        subject: e.subject.clone().unwrap_or_default(),
        reason: e.reason.clone(),
        score: e.score.map(|s| format!("{s:.1}")).unwrap_or_default(),
        size: fmt_size(e.size),
        state: e.state.as_str().to_string(),
        expires: if e.state == QuarantineState::Held {
            fmt_time(e.expires_at)
        } else {
            "—".into()
        },
        held: e.state == QuarantineState::Held,
    }
}

#[derive(Template)]
#[template(path = "quarantine.html")]
struct ListPage {
    page: Page,
    query: ListQuery,
    state: String,
    rows: Vec<Row>,
    total: u64,
    first: u64,
    last: u64,
    prev: Option<String>,
    next: Option<String>,
    problems: Vec<String>,
    retention_days: u32,
    manage: bool,
}

fn state_of(s: &str) -> Result<Option<QuarantineState>, String> {
    match s {
        "" | "held" => Ok(Some(QuarantineState::Held)),
        "released" => Ok(Some(QuarantineState::Released)),
        "deleted" => Ok(Some(QuarantineState::Deleted)),
        "all" => Ok(None),
        other => Err(format!(
            "'{other}' is not a state (held, released, deleted, all)"
        )),
    }
}

/// The list's URL for another page of the same search.
fn page_url(q: &ListQuery, page: u32) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("q", &q.q),
        ("reason", &q.reason),
        ("sender", &q.sender),
        ("rcpt", &q.rcpt),
        ("from", &q.from),
        ("to", &q.to),
        ("min_score", &q.min_score),
        ("state", &q.state),
    ] {
        if !v.is_empty() {
            s.append_pair(k, v);
        }
    }
    s.append_pair("page", &page.to_string());
    format!("/quarantine?{}", s.finish())
}

/// The store's query for the list's parameters (`limit` per page), and the problems with
/// them (each leaves its condition out).
pub fn search_of(query: &ListQuery, limit: u32) -> (QuarantineQuery, Vec<String>) {
    let mut problems = Vec::new();
    let st = state_of(query.state.trim()).unwrap_or_else(|e| {
        problems.push(e);
        Some(QuarantineState::Held)
    });
    let mut date = |s: &str, what: &str| -> Option<i64> {
        let s = s.trim();
        if s.is_empty() {
            return None;
        }
        let t = parse_datetime_local(s);
        if t.is_none() {
            problems.push(format!("'{s}' is not a date for '{what}' (YYYY-MM-DD)"));
        }
        t
    };
    let since = date(&query.from, "from");
    // A date alone means the whole of that day.
    let until = date(&query.to, "to").map(|t| {
        if query.to.trim().len() == 10 {
            t + 86400
        } else {
            t
        }
    });
    let min_score = match query.min_score.trim() {
        "" => None,
        s => match s.replace(',', ".").parse::<f64>() {
            Ok(v) if v.is_finite() => Some(v),
            _ => {
                problems.push(format!("'{s}' is not a score (a number, e.g. 8)"));
                None
            }
        },
    };
    // Bounded so that the offset below cannot overflow.
    let n = query.page.unwrap_or(1).clamp(1, 1_000_000);
    let opt = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    let q = QuarantineQuery {
        state: st,
        text: opt(&query.q),
        reason: opt(&query.reason),
        sender: opt(&query.sender),
        recipient: opt(&query.rcpt),
        since,
        until,
        min_score,
        limit,
        offset: (n - 1) * limit,
    };
    (q, problems)
}

pub async fn list(
    State(state): State<AppState>,
    p: Principal,
    Query(query): Query<ListQuery>,
) -> Result<Response, AppError> {
    let page = Page::load(&state, &p, "quarantine", "Quarantine").await?;
    let (q, problems) = search_of(&query, PAGE_SIZE);
    let (n, st) = (q.offset / PAGE_SIZE + 1, q.state);
    let ((entries, total), retention_days) = state
        .db(move |s| {
            let retention = s
                .config
                .current()?
                .map(|r| r.config.filter.quarantine_retention_days)
                .unwrap_or_else(|| {
                    palisade_store::Config::default()
                        .filter
                        .quarantine_retention_days
                });
            Ok((s.mail.quarantine_search(&q)?, retention))
        })
        .await?;
    let first = u64::from(n - 1) * u64::from(PAGE_SIZE) + 1;
    let last = first + entries.len() as u64 - 1;
    let prev = (n > 1).then(|| page_url(&query, n - 1));
    let next = (last < total).then(|| page_url(&query, n + 1));
    render(&ListPage {
        page,
        state: st.map(|s| s.as_str()).unwrap_or("all").to_string(),
        query,
        rows: entries.iter().map(row).collect(),
        total,
        first,
        last,
        prev,
        next,
        problems,
        retention_days,
        manage: allows(p.user.role, Perm::ManageQuarantine),
    })
}

/// The held entry `id` (any state).
pub(crate) async fn entry(state: &AppState, id: &str) -> Result<QuarantineEntry, AppError> {
    if !valid_id(id) {
        return Err(AppError::NotFound("No such quarantined message.".into()));
    }
    let id2 = id.to_string();
    state
        .db(move |s| Ok(s.mail.quarantine_get(&id2)?))
        .await?
        .ok_or_else(|| AppError::NotFound(format!("There is no quarantined message {id}.")))
}

#[derive(Template)]
#[template(path = "quarantine_message.html")]
struct MessagePage {
    page: Page,
    row: Row,
    queue_id: String,
    client: String,
    released_as: String,
    explanations: String,
    /// Why the content cannot be shown (released, deleted, unreadable).
    content_error: String,
    headers: Vec<(String, String)>,
    rendering: Rendering,
    /// The sandboxed frame's document (escaped by the template into `srcdoc`).
    frame: String,
    raw: String,
    raw_cut: bool,
    manage: bool,
}

/// The held file, read in full up to `max` bytes.
fn read_held(state: &AppState, id: &str, max: u64) -> Result<Vec<u8>, String> {
    let path = state.data().quarantine().join(id);
    let f =
        std::fs::File::open(&path).map_err(|e| format!("the held copy is not readable: {e}"))?;
    let mut buf = Vec::new();
    f.take(max)
        .read_to_end(&mut buf)
        .map_err(|e| format!("the held copy is not readable: {e}"))?;
    Ok(buf)
}

pub async fn message(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let page = Page::load(
        &state,
        &p,
        "quarantine",
        &format!("Quarantined message {id}"),
    )
    .await?;
    let e = entry(&state, &id).await?;
    let limits = state
        .db(|s| {
            Ok(s.config
                .current()?
                .map(|r| r.config.inspect)
                .unwrap_or_default())
        })
        .await?;
    let held = e.state == QuarantineState::Held;
    let st = state.clone();
    let id2 = id.clone();
    if held {
        audit_read(&state, &p, "quarantine.view", &id).await?;
    }
    let content = if held {
        tokio::task::spawn_blocking(move || {
            // One byte over the limit, so that the view reports the limit instead of
            // parsing a cut-off message as if it were whole.
            let raw = read_held(&st, &id2, limits.max_message_bytes.saturating_add(1))?;
            let view = MessageView::from_bytes(&raw, &limits);
            Ok::<_, String>((raw, view))
        })
        .await?
    } else {
        Err(format!(
            "This message was {}; its content is no longer kept.",
            e.state.as_str()
        ))
    };
    let (mut headers, mut rendering, mut frame, mut raw, mut raw_cut, mut content_error) = (
        vec![],
        Rendering::default(),
        String::new(),
        String::new(),
        false,
        String::new(),
    );
    match content {
        Ok((bytes, view)) => {
            headers = view
                .headers()
                .all
                .iter()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect();
            rendering = safe_view::render(&view);
            if let Some(h) = &rendering.html {
                frame = safe_view::frame_document(h);
            }
            raw_cut = bytes.len() > RAW_LIMIT;
            raw = String::from_utf8_lossy(&bytes[..bytes.len().min(RAW_LIMIT)]).into_owned();
        }
        Err(e) => content_error = e,
    }
    render(&MessagePage {
        page,
        row: row(&e),
        queue_id: e.queue_id.clone(),
        client: format!("{} via {}", e.client_ip, e.listener),
        released_as: e.released_as.clone().unwrap_or_default(),
        explanations: e
            .explanations
            .as_ref()
            .and_then(|x| serde_json::to_string_pretty(x).ok())
            .unwrap_or_default(),
        content_error,
        headers,
        rendering,
        frame,
        raw,
        raw_cut,
        manage: allows(p.user.role, Perm::ManageQuarantine) && held,
    })
}

/// Held mail is patient and staff mail: who read it, and when, is in the audit log
/// (`quarantine.view` for the safe view, `quarantine.download` for the file).
async fn audit_read(
    state: &AppState,
    p: &Principal,
    action: &'static str,
    id: &str,
) -> Result<(), AppError> {
    let (actor, source, id) = (p.actor(), p.source.clone(), id.to_string());
    state
        .db(move |s| {
            s.audit
                .append(&actor, &source, action, &id, &serde_json::json!({}))?;
            Ok(())
        })
        .await
}

/// The held copy as a file: never shown inline, never sniffed (`nosniff` is on every answer).
pub async fn download(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let e = entry(&state, &id).await?;
    if e.state != QuarantineState::Held {
        return Err(AppError::NotFound(format!(
            "{id} was {}; its content is no longer kept.",
            e.state.as_str()
        )));
    }
    audit_read(&state, &p, "quarantine.download", &id).await?;
    let st = state.clone();
    let bytes = tokio::task::spawn_blocking(move || read_held(&st, &e.id, e.size + 1))
        .await?
        .map_err(AppError::NotFound)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"quarantine-{id}.eml\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// Asks the engine to release or delete one held message; returns a sentence. The engine
/// performs and audits it; when it is not running, the answer is 503 with what to do instead.
pub async fn act(
    state: &AppState,
    p: &Principal,
    id: &str,
    action: &str,
) -> Result<String, AppError> {
    if !valid_id(id) {
        return Err(AppError::NotFound("No such quarantined message.".into()));
    }
    match action {
        "learn_spam" => return learn(state, p, id, Class::Spam).await,
        "release_ham" => {
            learn(state, p, id, Class::Ham).await?;
        }
        _ => {}
    }
    let (actor, source, id) = (p.actor(), p.source.clone(), id.to_string());
    let req = match action {
        "release" | "release_ham" => ControlRequest::QuarantineRelease {
            id: id.clone(),
            recipients: None,
            actor,
            source,
            digest_token: None,
        },
        "delete" => ControlRequest::QuarantineDelete {
            id: id.clone(),
            actor,
            source,
        },
        other => return Err(AppError::BadRequest(format!("unknown action '{other}'"))),
    };
    let r = ask_engine(state, req).await?;
    Ok(match (action, r.queue_id) {
        ("release", Some(q)) => {
            format!("{id} released to its recipients (queued as {q}).")
        }
        ("release_ham", Some(q)) => {
            format!("{id} learned as wanted mail and released to its recipients (queued as {q}).")
        }
        _ if r.message.ends_with('.') => r.message,
        _ => format!("{}.", r.message),
    })
}

/// Teaches the Bayes classifier (`bayes.db`) the held copy of `id` as `class`, audited as
/// `spam.learn`; returns a sentence.
async fn learn(
    state: &AppState,
    p: &Principal,
    id: &str,
    class: Class,
) -> Result<String, AppError> {
    let e = entry(state, id).await?;
    if e.state != QuarantineState::Held {
        return Err(AppError::Conflict(format!(
            "{id} was {}; its content is no longer kept to learn from.",
            e.state.as_str()
        )));
    }
    let st = state.clone();
    let (id2, size) = (e.id.clone(), e.size);
    let learned = tokio::task::spawn_blocking(move || {
        let raw = read_held(&st, &id2, size.saturating_add(1))?;
        let view = MessageView::from_bytes(&raw, &palisade_inspect::Limits::default());
        let mut bayes = Bayes::open(&st.data().bayes_db()).map_err(|e| e.to_string())?;
        bayes.learn(&view, class).map_err(|e| e.to_string())
    })
    .await?
    .map_err(|e| AppError::Conflict(format!("{id} could not be learned: {e}")))?;
    let (actor, source, target) = (p.actor(), p.source.clone(), id.to_string());
    state
        .db(move |s| {
            s.audit.append(
                &actor,
                &source,
                "spam.learn",
                &target,
                &serde_json::json!({ "class": class.as_str(), "result": learned }),
            )?;
            Ok(())
        })
        .await?;
    Ok(match learned {
        Learned::AlreadyKnown => format!("{id} was already learned as {}.", class.as_str()),
        _ => format!("{id} learned as {}.", class.as_str()),
    })
}

async fn ask_engine(state: &AppState, req: ControlRequest) -> Result<ControlResponse, AppError> {
    let r = state.engine(req).await.map_err(|e| {
        AppError::Unavailable(format!(
            "{e}. Quarantined messages can be released or deleted here only while the engine \
             runs (`palisade quarantine release|delete` works without it)."
        ))
    })?;
    if r.ok {
        Ok(r)
    } else if r.message.starts_with("no quarantined message") {
        Err(AppError::NotFound(format!("{}.", r.message)))
    } else {
        Err(AppError::Conflict(r.message))
    }
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
    Ok(Redirect::to("/quarantine").into_response())
}

/// The ids and the action of the list's form (`id` repeated, `action`).
fn bulk_form(body: &[u8]) -> (Vec<String>, String) {
    let (mut ids, mut action) = (Vec::new(), String::new());
    for (k, v) in form_urlencoded::parse(body) {
        match &*k {
            "id" if !ids.contains(&v.to_string()) => ids.push(v.into_owned()),
            "action" => action = v.into_owned(),
            _ => {}
        }
    }
    (ids, action)
}

/// Release or delete every selected message, one engine request each. Stops at the first
/// message the engine could not be asked about (it is not running: 503); other refusals (no
/// longer held) are reported and the rest go on.
pub async fn bulk(
    State(state): State<AppState>,
    p: Principal,
    body: Bytes,
) -> Result<Response, AppError> {
    let (ids, action) = bulk_form(&body);
    if !matches!(
        action.as_str(),
        "release" | "delete" | "release_ham" | "learn_spam"
    ) {
        return Err(AppError::BadRequest(format!("unknown action '{action}'")));
    }
    if ids.is_empty() {
        return Err(AppError::BadRequest(
            "Select at least one message first.".into(),
        ));
    }
    if ids.len() > BULK_LIMIT {
        return Err(AppError::BadRequest(format!(
            "At most {BULK_LIMIT} messages at once."
        )));
    }
    let (mut done, mut refused) = (0usize, Vec::new());
    for id in &ids {
        match act(&state, &p, id, &action).await {
            Ok(_) => done += 1,
            Err(e @ AppError::Unavailable(_)) if done == 0 => return Err(e),
            Err(AppError::Unavailable(m)) => {
                refused.push(format!("{id}: {m}"));
                break;
            }
            Err(e) => refused.push(format!("{id}: {}", e.public_message())),
        }
    }
    let verb = match action.as_str() {
        "release" => "released",
        "release_ham" => "learned as wanted mail and released",
        "learn_spam" => "learned as spam",
        _ => "deleted",
    };
    let mut msg = format!("{done} message(s) {verb}.");
    if !refused.is_empty() {
        msg.push_str(&format!(" Not done: {}", refused.join("; ")));
    }
    flash(&state, &p, msg).await?;
    Ok(Redirect::to("/quarantine").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_form_reads_repeated_ids_once() {
        let (ids, action) = bulk_form(
            b"csrf=t&id=0123456789abcdef0123&id=aaaaaaaaaaaaaaaaaaaa&id=0123456789abcdef0123&action=release",
        );
        assert_eq!(ids, ["0123456789abcdef0123", "aaaaaaaaaaaaaaaaaaaa"]);
        assert_eq!(action, "release");
    }

    #[test]
    fn page_urls_keep_the_search() {
        let q = ListQuery {
            sender: "a b@example.org".into(),
            state: "all".into(),
            ..Default::default()
        };
        assert_eq!(
            page_url(&q, 2),
            "/quarantine?sender=a+b%40example.org&state=all&page=2"
        );
        assert!(state_of("bogus").is_err());
        assert_eq!(state_of("").unwrap(), Some(QuarantineState::Held));
        assert_eq!(state_of("all").unwrap(), None);
    }
}
