//! The JSON API (`/api/v1`, documented in `API.md`): what the pages do, for scripts. Bearer
//! tokens instead of cookies (so no CSRF exposure), the same roles, the same audited code
//! paths as the pages.

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use palisade_control::engine::ControlRequest;
use palisade_store::accounts::Role;
use palisade_store::{Config, Problem, now_unix};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{Principal, source_of};
use crate::error::AppError;
use crate::forms::{EditOutcome, edit_config};
use crate::pages::{audit, dashboard, ha, quarantine, queue, system, tracking};
use crate::state::AppState;

/// An `AppError` answered as JSON: `{"error": "..."}`.
pub struct ApiError(pub AppError);

impl<E: Into<AppError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        (status, Json(json!({ "error": self.0.public_message() }))).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

fn ok(v: impl serde::Serialize) -> ApiResult {
    Ok(Json(v).into_response())
}

/// The token of an `Authorization: Bearer <token>` value. The scheme name is
/// case-insensitive (RFC 7235 §2.1: `bearer`, `BEARER` too), followed by one or more spaces.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}

/// `Authorization: Bearer pal_...` → the token's user. Cookies are ignored here.
pub async fn token_layer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .map(str::to_string);
    let unauthorized = |msg: &str| {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({ "error": msg })),
        )
            .into_response()
    };
    let Some(token) = token else {
        return unauthorized("an API token is required (Authorization: Bearer <token>)");
    };
    let user = match state.db(move |s| Ok(s.accounts.token_user(&token)?)).await {
        Ok(Some(u)) => u,
        Ok(None) => return unauthorized("the API token is not valid"),
        Err(e) => return ApiError(e).into_response(),
    };
    let source = source_of(req.extensions());
    req.extensions_mut().insert(Principal {
        user,
        source,
        session: None,
    });
    next.run(req).await
}

pub async fn status(State(state): State<AppState>) -> ApiResult {
    let o = dashboard::overview(&state).await?;
    let (engine, engine_error) = match state.engine(ControlRequest::Stats).await {
        Ok(r) => (r.stats, (!r.ok).then_some(r.message)),
        Err(e) => (None, Some(e)),
    };
    let (services, services_error) = match dashboard::services(&state).await {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(e)),
    };
    ok(json!({
        "revision": o.revision.map(|r| r.0),
        "queue": { "messages": o.queue.0, "recipients": o.queue.1 },
        "engine": engine, "engine_error": engine_error,
        "services": services, "services_error": services_error,
        "time": now_unix(),
    }))
}

#[derive(Deserialize)]
pub struct FlowParams {
    #[serde(default)]
    range: String,
}

pub async fn flow(State(state): State<AppState>, Query(q): Query<FlowParams>) -> ApiResult {
    let (bucket, count) = match q.range.as_str() {
        "7d" => (dashboard::WEEK_BUCKET, 28),
        "" | "24h" => (dashboard::DAY_BUCKET, 24),
        other => {
            return Err(AppError::BadRequest(format!("range '{other}': use 24h or 7d")).into());
        }
    };
    let buckets = state
        .db(move |s| Ok(s.mail.flow(dashboard::flow_since(bucket, count), bucket)?))
        .await?;
    ok(json!({ "bucket_secs": bucket, "buckets": buckets }))
}

/// What the filters did over the window (`?range=24h|7d`, as `/flow`): the dashboard's
/// protection panel.
pub async fn protection(State(state): State<AppState>, Query(q): Query<FlowParams>) -> ApiResult {
    let window = dashboard::Window::parse(&q.range)?;
    ok(dashboard::protection(&state, window).await?)
}

pub async fn config_get(State(state): State<AppState>) -> ApiResult {
    let rev = state.current_revision().await?;
    ok(json!({
        "revision": rev.id, "created_at": rev.created_at, "author": rev.author,
        "comment": rev.comment, "config": rev.config,
    }))
}

pub async fn config_toml(State(state): State<AppState>) -> ApiResult {
    let rev = state.current_revision().await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/toml; charset=utf-8"),
            (
                header::HeaderName::from_static("x-palisade-revision"),
                &rev.id.to_string(),
            ),
        ],
        rev.config.to_toml(),
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct ConfigPut {
    toml: String,
    /// The revision this edit is based on; a newer revision in force is a conflict (409).
    revision: Option<i64>,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    dry_run: bool,
}

fn problems_response(problems: Vec<Problem>) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({ "error": "the configuration is not valid", "problems": problems })),
    )
        .into_response()
}

pub async fn config_put(
    State(state): State<AppState>,
    p: Principal,
    Json(body): Json<ConfigPut>,
) -> ApiResult {
    let new = match Config::from_toml(&body.toml) {
        Ok(c) => c,
        Err(problems) => return Ok(problems_response(problems)),
    };
    let current = state.current_revision().await?;
    let diff = palisade_store::config_store::diff(&current.config, &new);
    if body.dry_run {
        return ok(json!({ "dry_run": true, "revision": current.id, "diff": diff }));
    }
    let comment = if body.comment.trim().is_empty() {
        "changed through the API".to_string()
    } else {
        body.comment.trim().to_string()
    };
    let base = body.revision.unwrap_or(current.id);
    match edit_config(&state, &p, base, move |cfg| {
        *cfg = new;
        (comment, vec![])
    })
    .await?
    {
        EditOutcome::Committed { revision, engine } => {
            ok(json!({ "revision": revision, "diff": diff, "engine": engine }))
        }
        EditOutcome::Unchanged => {
            ok(json!({ "revision": current.id, "diff": "", "unchanged": true }))
        }
        EditOutcome::Invalid(problems) => Ok(problems_response(problems)),
    }
}

#[derive(Deserialize)]
pub struct HistoryParams {
    limit: Option<u32>,
}

pub async fn config_history(
    State(state): State<AppState>,
    Query(q): Query<HistoryParams>,
) -> ApiResult {
    let limit = q.limit.unwrap_or(50).min(1000);
    let h = state.db(move |s| Ok(s.config.history(limit)?)).await?;
    ok(h.into_iter()
        .map(|(id, ts, author, comment)| {
            json!({ "revision": id, "created_at": ts, "author": author, "comment": comment })
        })
        .collect::<Vec<_>>())
}

#[derive(Deserialize)]
pub struct RollbackBody {
    revision: i64,
}

pub async fn config_rollback(
    State(state): State<AppState>,
    p: Principal,
    Json(b): Json<RollbackBody>,
) -> ApiResult {
    crate::forms::refuse_if_passive(&state)?;
    let (actor, source) = (p.actor(), p.source.clone());
    let rev = state
        .db(move |s| {
            Ok(s.config
                .rollback(&mut s.audit, b.revision, &actor, &source)?)
        })
        .await?;
    let engine = state.reload_engine().await;
    ok(json!({ "revision": rev.id, "engine": engine }))
}

pub async fn queue_list(
    State(state): State<AppState>,
    Query(q): Query<queue::QueueQuery>,
) -> ApiResult {
    let search = q.q.trim().to_string();
    let msgs = state
        .db(move |s| {
            Ok(s.mail
                .list_queue(Some(search.as_str()).filter(|s| !s.is_empty()), 10_000)?)
        })
        .await?;
    ok(msgs)
}

pub async fn queue_get(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    ok(queue::detail_of(&state, id).await?)
}

pub async fn queue_action(
    State(state): State<AppState>,
    p: Principal,
    Path((id, action)): Path<(String, String)>,
) -> ApiResult {
    let message = queue::act(&state, &p, &id, &action).await?;
    ok(json!({ "ok": true, "message": message }))
}

pub async fn queue_flush(State(state): State<AppState>, p: Principal) -> ApiResult {
    let message = queue::flush_all(&state, &p).await?;
    ok(json!({ "ok": true, "message": message }))
}

/// Quarantine entries per page of the API's list.
const QUARANTINE_PAGE: u32 = 200;

/// `GET /api/v1/quarantine`: the list page's filters (`q`, `reason`, `sender`, `rcpt`,
/// `from`, `to`, `min_score`, `state`, `page`), 200 entries a page, newest first.
pub async fn quarantine_list(
    State(state): State<AppState>,
    Query(params): Query<quarantine::ListQuery>,
) -> ApiResult {
    let (q, problems) = quarantine::search_of(&params, QUARANTINE_PAGE);
    if !problems.is_empty() {
        return Err(AppError::BadRequest(problems.join("; ")).into());
    }
    let page = q.offset / QUARANTINE_PAGE + 1;
    let (entries, total) = state.db(move |s| Ok(s.mail.quarantine_search(&q)?)).await?;
    ok(json!({ "total": total, "page": page, "per_page": QUARANTINE_PAGE, "entries": entries }))
}

pub async fn quarantine_get(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    ok(quarantine::entry(&state, &id).await?)
}

/// `POST /api/v1/quarantine/{id}/{action}`: release, release_ham, learn_spam or delete,
/// performed and audited as from the console's page.
pub async fn quarantine_action(
    State(state): State<AppState>,
    p: Principal,
    Path((id, action)): Path<(String, String)>,
) -> ApiResult {
    let message = quarantine::act(&state, &p, &id, &action).await?;
    ok(json!({ "ok": true, "message": message }))
}

pub async fn tracking_search(
    State(state): State<AppState>,
    Query(params): Query<tracking::SearchParams>,
) -> ApiResult {
    let q = params.query()?;
    ok(state.db(move |s| Ok(s.mail.track_search(&q)?)).await?)
}

pub async fn tracking_get(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let (m, events, queued) = tracking::trace_of(&state, id).await?;
    ok(json!({ "message": m, "events": events, "queued": queued }))
}

pub async fn audit_list(
    State(state): State<AppState>,
    Query(params): Query<audit::AuditParams>,
) -> ApiResult {
    let f = params.filter(200)?;
    ok(state.db(move |s| Ok(s.audit.list(&f)?)).await?)
}

pub async fn audit_verify(State(state): State<AppState>) -> ApiResult {
    ok(state.db(|s| Ok(s.audit.verify()?)).await?)
}

pub async fn users_list(State(state): State<AppState>) -> ApiResult {
    ok(state.db(|s| Ok(s.accounts.users()?)).await?)
}

#[derive(Deserialize)]
pub struct NewUser {
    name: String,
    role: Role,
}

pub async fn users_create(
    State(state): State<AppState>,
    p: Principal,
    Json(b): Json<NewUser>,
) -> ApiResult {
    let (actor, source) = (p.actor(), p.source.clone());
    let (user, password) = state
        .db(move |s| {
            Ok(s.accounts
                .create_user(&mut s.audit, &b.name, b.role, &actor, &source)?)
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "user": user, "one_time_password": password })),
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct RoleBody {
    role: Role,
}

pub async fn users_role(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<i64>,
    Json(b): Json<RoleBody>,
) -> ApiResult {
    let (actor, source) = (p.actor(), p.source.clone());
    ok(state
        .db(move |s| {
            Ok(s.accounts
                .set_role(&mut s.audit, id, b.role, &actor, &source)?)
        })
        .await?)
}

pub async fn users_reset(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<i64>,
) -> ApiResult {
    let (actor, source) = (p.actor(), p.source.clone());
    let password = state
        .db(move |s| {
            let u = s.accounts.user(id)?;
            Ok(s.accounts
                .reset_password(&mut s.audit, &u.name, &actor, &source)?)
        })
        .await?;
    ok(json!({ "one_time_password": password }))
}

pub async fn users_delete(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<i64>,
) -> ApiResult {
    if id == p.user.id {
        return Err(AppError::BadRequest("a token cannot delete its own user".into()).into());
    }
    let (actor, source) = (p.actor(), p.source.clone());
    state
        .db(move |s| Ok(s.accounts.delete_user(&mut s.audit, id, &actor, &source)?))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn services_list(State(state): State<AppState>) -> ApiResult {
    match dashboard::services(&state).await {
        Ok(s) => ok(s),
        Err(e) => Err(AppError::Unavailable(e).into()),
    }
}

pub async fn services_restart(
    State(state): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
) -> ApiResult {
    let message = system::restart_service(&state, &p, &name).await?;
    ok(json!({ "ok": true, "message": message }))
}

/// `GET /api/v1/ha`: whether this unit is paired and its HA status.
pub async fn ha_status(State(state): State<AppState>) -> ApiResult {
    ok(ha::status(state.data()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaCreate {
    vip: String,
    interface: String,
    ha_address: std::net::IpAddr,
    #[serde(default)]
    witness: Option<std::net::IpAddr>,
}

/// `POST /api/v1/ha/create`: answers the pairing code once (it is not stored here).
pub async fn ha_create(
    State(state): State<AppState>,
    p: Principal,
    Json(b): Json<HaCreate>,
) -> ApiResult {
    let action = palisade_control::supervisor::HaPairAction::Create {
        vip: b.vip.trim().to_string(),
        interface: b.interface.trim().to_string(),
        ha_address: b.ha_address,
        witness: b.witness,
    };
    let (message, code) = ha::create_pair(&state, &p, action).await?;
    ok(json!({ "ok": true, "message": message, "code": code }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaJoin {
    code: String,
    peer: std::net::IpAddr,
    ha_address: std::net::IpAddr,
    #[serde(default)]
    interface: Option<String>,
    #[serde(default)]
    witness: Option<std::net::IpAddr>,
}

/// `POST /api/v1/ha/join`.
pub async fn ha_join(
    State(state): State<AppState>,
    p: Principal,
    Json(b): Json<HaJoin>,
) -> ApiResult {
    let action = palisade_control::supervisor::HaPairAction::Join {
        code: b.code.trim().to_string(),
        peer: b.peer,
        ha_address: b.ha_address,
        interface: b
            .interface
            .map(|i| i.trim().to_string())
            .filter(|i| !i.is_empty()),
        witness: b.witness,
    };
    let message = ha::join_pair(&state, &p, action).await?;
    ok(json!({ "ok": true, "message": message }))
}

/// `POST /api/v1/ha/failover`.
pub async fn ha_failover(State(state): State<AppState>, p: Principal) -> ApiResult {
    let message = ha::fail_over(&state, &p).await?;
    ok(json!({ "ok": true, "message": message }))
}

/// `POST /api/v1/ha/unpair`.
pub async fn ha_unpair(State(state): State<AppState>, p: Principal) -> ApiResult {
    let message = ha::unpair_and_adopt(&state, &p).await?;
    ok(json!({ "ok": true, "message": message }))
}

pub async fn not_found() -> ApiError {
    ApiError(AppError::NotFound("no such API endpoint".into()))
}
