//! Who is asking, and may they: the login form, sessions in a `__Host-` cookie, the CSRF and
//! same-origin check on every state change, forced password change, and roles per route.

use askama::Template;
use axum::Form;
use axum::body::{Body, to_bytes};
use axum::extract::{FromRequest, FromRequestParts, Multipart, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use cookie::time::Duration;
use cookie::{Cookie, CookieBuilder, SameSite};
use palisade_store::accounts::{AccountError, LoginResult, Role, Throttle, User};
use serde::Deserialize;
use serde_json::json;

use crate::error::{AppError, render_status};
use crate::security::{same_origin, same_token};
use crate::server::ClientAddr;
use crate::state::AppState;

/// The session cookie. `__Host-` makes the browser insist on Secure, Path=/ and no Domain,
/// so no other host (or plain-HTTP page) can set or read it.
pub const SESSION_COOKIE: &str = "__Host-palisade";
/// Carries the login form's CSRF token (double submit) before there is a session.
pub const LOGIN_COOKIE: &str = "__Host-palisade-login";
/// The form field every POST must carry.
pub const CSRF_FIELD: &str = "csrf";
/// Largest request body the console reads (a configuration file, a certificate).
pub const BODY_LIMIT: usize = 1024 * 1024;
/// The one route that takes more: ClamAV signature files (main.cvd is some 170 MiB).
pub const SIGNATURE_UPLOAD_PATH: &str = "/protection/antivirus/signatures";
pub const SIGNATURE_UPLOAD_LIMIT: usize = 320 * 1024 * 1024;
/// The rule editor's form: it carries the message file of a dry run.
pub const DRY_RUN_PATH: &str = "/dlp/rules/save";
pub const DRY_RUN_LIMIT: usize = 64 * 1024 * 1024;
/// One signature upload is read at a time: each is held in memory while it is checked.
static UPLOADING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// What a route needs. See [`allows`] for who has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    Dashboard,
    ViewConfig,
    EditConfig,
    ViewQueue,
    ManageQueue,
    /// The quarantine list and the safe view of a held message (its content included).
    ViewQuarantine,
    /// Release and delete held messages.
    ManageQuarantine,
    ViewTracking,
    ViewAudit,
    ViewUsers,
    ManageUsers,
    ViewSystem,
    ManageSystem,
    /// One's own password, second factor and API tokens.
    OwnAccount,
}

/// Administrators do everything; operators work the queue and the quarantine and read
/// what they need for that; auditors read everything and change nothing; submission
/// accounts only send mail.
pub fn allows(role: Role, perm: Perm) -> bool {
    use Perm::*;
    match role {
        Role::Administrator => true,
        Role::Operator => matches!(
            perm,
            Dashboard
                | ViewQueue
                | ManageQueue
                | ViewQuarantine
                | ManageQuarantine
                | ViewTracking
                | OwnAccount
        ),
        Role::Auditor => !matches!(
            perm,
            EditConfig | ManageQueue | ManageQuarantine | ManageUsers | ManageSystem
        ),
        // SMTP submission accounts cannot log in here at all (see `accounts::Purpose`).
        Role::Submission => false,
    }
}

/// The authenticated user of a request, put there by the session or token layer.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: User,
    /// The client address, for the audit log and throttling.
    pub source: String,
    /// Set for browser sessions (not for API tokens).
    pub session: Option<SessionRef>,
}

#[derive(Debug, Clone)]
pub struct SessionRef {
    pub cookie: String,
    pub csrf: String,
}

impl Principal {
    /// The actor recorded in the audit log.
    pub fn actor(&self) -> String {
        match self.session {
            Some(_) => self.user.name.clone(),
            None => format!("{} (api)", self.user.name),
        }
    }

    pub fn csrf(&self) -> String {
        self.session
            .as_ref()
            .map(|s| s.csrf.clone())
            .unwrap_or_default()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or(AppError::Forbidden("You are not logged in."))
    }
}

pub fn source_of(ext: &axum::http::Extensions) -> String {
    ext.get::<ClientAddr>()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The value of cookie `name` in the request's `Cookie:` headers (None if absent or empty).
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
        .filter(|v| !v.is_empty())
}

/// What the `__Host-` prefix demands (Secure, Path=/, no Domain), HttpOnly and
/// SameSite=Strict.
fn host_cookie(name: &str, value: &str) -> CookieBuilder<'static> {
    Cookie::build((name.to_string(), value.to_string()))
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
}

fn set_cookie(name: &str, value: &str) -> HeaderValue {
    HeaderValue::from_str(&host_cookie(name, value).to_string()).expect("cookie values are hex")
}

/// Clears a cookie: empty value, Max-Age=0 (no Expires, as before).
fn clear_cookie(name: &str) -> HeaderValue {
    HeaderValue::from_str(&host_cookie(name, "").max_age(Duration::ZERO).to_string())
        .expect("cookie names are static")
}

fn to_login(clear: bool) -> Response {
    let mut r = Redirect::to("/login").into_response();
    if clear {
        r.headers_mut()
            .append(header::SET_COOKIE, clear_cookie(SESSION_COOKIE));
    }
    r
}

fn forbidden(msg: &'static str) -> Response {
    AppError::Forbidden(msg).into_response()
}

/// Every page behind the login: finds the session, sends users who must change their password
/// to that page, and checks the CSRF token and origin of every request that is not a GET.
pub async fn session_layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(cookie_value) = cookie(req.headers(), SESSION_COOKIE) else {
        return to_login(false);
    };
    let policy = state.settings().sessions;
    let c = cookie_value.clone();
    let session = match state
        .db(move |s| Ok(s.accounts.session(&c, &policy)?))
        .await
    {
        Ok(Some(s)) => s,
        Ok(None) => return to_login(true),
        Err(e) => return e.into_response(),
    };
    let path = req.uri().path().to_string();
    if session.user.must_change_password && path != "/password" && path != "/logout" {
        return Redirect::to("/password").into_response();
    }
    let mut req = req;
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let hosts = match state.host_policy().await {
            Ok(h) => h,
            Err(e) => return e.into_response(),
        };
        if !same_origin(req.headers(), &hosts) {
            tracing::warn!(event = "console.csrf_refused", reason = "origin", path = %path, user = %session.user.name);
            return forbidden("This request did not come from a page of this console.");
        }
        let big = path == SIGNATURE_UPLOAD_PATH || path == DRY_RUN_PATH;
        let _uploading = if big {
            match UPLOADING.try_acquire() {
                Ok(p) => Some(p),
                Err(_) => {
                    return (
                        StatusCode::TOO_MANY_REQUESTS,
                        "Another upload is in progress; try again when it is done.",
                    )
                        .into_response();
                }
            }
        } else {
            None
        };
        let limit = match path.as_str() {
            SIGNATURE_UPLOAD_PATH => SIGNATURE_UPLOAD_LIMIT,
            DRY_RUN_PATH => DRY_RUN_LIMIT,
            _ => BODY_LIMIT,
        };
        let (r, token) = match csrf_from_body(req, limit).await {
            Ok(x) => x,
            Err(resp) => return resp,
        };
        req = r;
        if !token.is_some_and(|t| same_token(&t, &session.csrf)) {
            tracing::warn!(event = "console.csrf_refused", reason = "token", user = %session.user.name);
            return forbidden(
                "The form was missing its security token or it has expired. Reload the page and try again.",
            );
        }
    }
    let source = source_of(req.extensions());
    req.extensions_mut().insert(Principal {
        user: session.user,
        source,
        session: Some(SessionRef {
            cookie: cookie_value,
            csrf: session.csrf,
        }),
    });
    next.run(req).await
}

/// Reads the body (bounded) to find the CSRF field, and puts it back for the handler.
async fn csrf_from_body(req: Request, limit: usize) -> Result<(Request, Option<String>), Response> {
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, limit).await.map_err(|_| {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "The request is too large for the console.",
        )
            .into_response()
    })?;
    let ct = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let token = if ct.starts_with("application/x-www-form-urlencoded") {
        form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == CSRF_FIELD)
            .map(|(_, v)| v.into_owned())
    } else if ct.starts_with("multipart/form-data") {
        // The token is the form's first field: the beginning of the body holds it (and a
        // signature upload of hundreds of MiB is not parsed twice).
        let probe = Request::builder()
            .header(header::CONTENT_TYPE, &ct)
            .body(Body::from(bytes.slice(..bytes.len().min(BODY_LIMIT))))
            .map_err(|_| forbidden("malformed request"))?;
        let mut token = None;
        if let Ok(mut mp) = Multipart::from_request(probe, &()).await {
            while let Ok(Some(f)) = mp.next_field().await {
                if f.name() == Some(CSRF_FIELD) {
                    token = f.text().await.ok();
                    break;
                }
            }
        }
        token
    } else {
        None
    };
    Ok((Request::from_parts(parts, Body::from(bytes)), token))
}

/// Applies a permission to every route of `router`.
pub fn with_perm(perm: Perm, router: axum::Router<AppState>) -> axum::Router<AppState> {
    router.route_layer(axum::middleware::from_fn(
        move |req: Request, next: Next| async move {
            match req.extensions().get::<Principal>() {
                Some(p) if allows(p.user.role, perm) => next.run(req).await,
                Some(p) => {
                    tracing::warn!(event = "console.forbidden", user = %p.user.name,
                        role = %p.user.role, path = %req.uri().path());
                    if p.session.is_none() {
                        crate::api::ApiError(AppError::Forbidden("your role does not allow this"))
                            .into_response()
                    } else {
                        forbidden("Your role does not allow this page or action.")
                    }
                }
                None => forbidden("You are not logged in."),
            }
        },
    ))
}

// ---- login ----

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    token: String,
    user: String,
    error: Option<String>,
}

fn random_hex() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("system random source");
    hex::encode(b)
}

fn login_form(status: StatusCode, user: String, error: Option<String>) -> Response {
    let token = random_hex();
    let page = LoginPage {
        token: token.clone(),
        user,
        error,
    };
    match render_status(status, &page) {
        Ok(mut r) => {
            r.headers_mut()
                .append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, &token));
            r
        }
        Err(e) => e.into_response(),
    }
}

pub async fn login_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(c) = cookie(&headers, SESSION_COOKIE) {
        let policy = state.settings().sessions;
        if let Ok(Some(_)) = state
            .db(move |s| Ok(s.accounts.session(&c, &policy)?))
            .await
        {
            return Redirect::to("/").into_response();
        }
    }
    login_form(StatusCode::OK, String::new(), None)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    csrf: String,
}

pub async fn login_submit(State(state): State<AppState>, req: Request) -> Response {
    let source = source_of(req.extensions());
    let headers = req.headers().clone();
    let hosts = match state.host_policy().await {
        Ok(h) => h,
        Err(e) => return e.into_response(),
    };
    if !same_origin(&headers, &hosts) {
        return forbidden("This request did not come from a page of this console.");
    }
    let Ok(Form(form)) = Form::<LoginForm>::from_request(req, &state).await else {
        return login_form(
            StatusCode::BAD_REQUEST,
            String::new(),
            Some("The form was incomplete.".into()),
        );
    };
    if !cookie(&headers, LOGIN_COOKIE).is_some_and(|c| same_token(&c, &form.csrf)) {
        return forbidden(
            "The login form has expired or was not sent by this console. Reload it and try again.",
        );
    }
    // The management network comes from the configuration in force (cached per revision
    // with the host names, so a flood of logins does not parse the configuration each time).
    let throttle = Throttle {
        trusted_networks: hosts.trusted_networks.clone(),
        ..state.settings().throttle.clone()
    };
    let trusted = throttle.is_trusted(&source);
    let (name, password, code, src) = (form.user.clone(), form.password, form.code, source);
    let result = state
        .login_db(trusted, move |s| {
            let code = Some(code.as_str()).filter(|c| !c.trim().is_empty());
            Ok(s.accounts
                .login(&mut s.audit, &name, &password, code, &src, &throttle)?)
        })
        .await
        .unwrap_or(Ok(LoginResult::Busy));
    match result {
        Ok(LoginResult::Success { user, session }) => {
            // Whatever session this browser had before is ended: the new one has a new id.
            if let Some(old) = cookie(&headers, SESSION_COOKIE) {
                let _ = state
                    .db(move |s| Ok(s.accounts.close_session(&old)?))
                    .await;
            }
            let to = if user.must_change_password {
                "/password"
            } else {
                "/"
            };
            let mut r = Redirect::to(to).into_response();
            let h = r.headers_mut();
            h.append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, &session.id));
            h.append(header::SET_COOKIE, clear_cookie(LOGIN_COOKIE));
            r
        }
        Ok(LoginResult::Refused) => login_form(
            StatusCode::UNAUTHORIZED,
            form.user,
            Some("Wrong user name, password or authentication code.".into()),
        ),
        Ok(LoginResult::Throttled { retry_after_secs }) => retry_after(
            login_form(
                StatusCode::TOO_MANY_REQUESTS,
                form.user,
                Some(format!(
                    "Too many failed attempts from this address. Wait {}, then try again.",
                    wait_words(retry_after_secs)
                )),
            ),
            retry_after_secs,
        ),
        Ok(LoginResult::Busy) => retry_after(
            login_form(
                StatusCode::SERVICE_UNAVAILABLE,
                form.user,
                Some(
                    "The console is checking too many sign-ins right now. Try again in a few seconds."
                        .into(),
                ),
            ),
            2,
        ),
        Err(e) => e.into_response(),
    }
}

fn retry_after(mut r: Response, secs: i64) -> Response {
    if let Ok(v) = header::HeaderValue::from_str(&secs.max(1).to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn wait_words(secs: i64) -> String {
    match secs {
        ..=1 => "a second".into(),
        2..=90 => format!("{secs} seconds"),
        _ => format!("{} minutes", (secs + 59) / 60),
    }
}

pub async fn logout(State(state): State<AppState>, p: Principal) -> Result<Response, AppError> {
    if let Some(s) = &p.session {
        let (cookie, name, source) = (s.cookie.clone(), p.user.name.clone(), p.source.clone());
        state
            .db(move |s| {
                s.accounts.close_session(&cookie)?;
                s.audit
                    .append(&name, &source, "logout", &name, &json!({}))?;
                Ok(())
            })
            .await?;
    }
    Ok(to_login(true))
}

// ---- password change ----

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage {
    page: crate::view::Page,
    forced: bool,
    error: Option<String>,
    min_len: usize,
}

pub async fn password_page(
    State(state): State<AppState>,
    p: Principal,
) -> Result<Response, AppError> {
    let page = crate::view::Page::load(&state, &p, "account", "Change password").await?;
    render_status(
        StatusCode::OK,
        &PasswordPage {
            page,
            forced: p.user.must_change_password,
            error: None,
            min_len: palisade_store::accounts::MIN_PASSWORD_LEN,
        },
    )
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
    #[serde(default)]
    confirm: String,
}

pub async fn password_submit(
    State(state): State<AppState>,
    p: Principal,
    Form(form): Form<PasswordForm>,
) -> Result<Response, AppError> {
    let error = if form.new != form.confirm {
        Some("The two new passwords are not the same.".to_string())
    } else {
        let (id, source) = (p.user.id, p.source.clone());
        let result = state
            .db(move |s| {
                match s.accounts.change_password(
                    &mut s.audit,
                    id,
                    &form.current,
                    &form.new,
                    &source,
                ) {
                    Ok(_) => {}
                    Err(e @ (AccountError::WrongPassword | AccountError::WeakPassword(_))) => {
                        return Ok(Err(e.to_string()));
                    }
                    Err(e) => return Err(e.into()),
                }
                // Every session of the user ended; this browser gets a new one.
                let new = s.accounts.open_session(id, &source)?;
                s.accounts.set_flash(
                    &new.id,
                    "Your password was changed. Other sessions were logged out.",
                )?;
                Ok(Ok(new))
            })
            .await?;
        match result {
            Ok(new) => {
                let mut r = Redirect::to("/").into_response();
                r.headers_mut()
                    .append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, &new.id));
                return Ok(r);
            }
            Err(msg) => Some(msg),
        }
    };
    let page = crate::view::Page::load(&state, &p, "account", "Change password").await?;
    render_status(
        StatusCode::UNPROCESSABLE_ENTITY,
        &PasswordPage {
            page,
            forced: p.user.must_change_password,
            error,
            min_len: palisade_store::accounts::MIN_PASSWORD_LEN,
        },
    )
}

#[cfg(test)]
mod cookie_tests {
    use super::*;

    #[test]
    fn set_clear_and_read_cookies() {
        let attrs = |v: HeaderValue| {
            let s = v.to_str().unwrap().to_string();
            let mut parts: Vec<String> = s.split("; ").map(str::to_string).collect();
            let first = parts.remove(0);
            parts.sort();
            (first, parts)
        };
        assert_eq!(
            attrs(set_cookie(SESSION_COOKIE, "ab12")),
            (
                "__Host-palisade=ab12".into(),
                vec!["HttpOnly", "Path=/", "SameSite=Strict", "Secure"]
                    .into_iter()
                    .map(String::from)
                    .collect()
            )
        );
        assert_eq!(
            attrs(clear_cookie(LOGIN_COOKIE)),
            (
                "__Host-palisade-login=".into(),
                vec![
                    "HttpOnly",
                    "Max-Age=0",
                    "Path=/",
                    "SameSite=Strict",
                    "Secure"
                ]
                .into_iter()
                .map(String::from)
                .collect()
            )
        );
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-palisade-login=x"),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_static("junk;  __Host-palisade = ab12 "),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("ab12"));
        assert_eq!(cookie(&h, LOGIN_COOKIE).as_deref(), Some("x"));
        assert_eq!(cookie(&h, "b"), None);
        h.insert(header::COOKIE, HeaderValue::from_static("__Host-palisade="));
        assert_eq!(cookie(&h, SESSION_COOKIE), None, "empty is absent");
    }
}
