//! One's own account: password (see `auth`), the TOTP second factor, API tokens.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use palisade_store::accounts::{ApiToken, DEFAULT_TOKEN_LIFETIME_DAYS, TOKEN_LIFETIMES_DAYS};
use palisade_store::now_unix;
use serde::Deserialize;

use super::users::OneTimePage;
use crate::auth::Principal;
use crate::error::{AppError, render};
use crate::forms::flash;
use crate::state::AppState;
use crate::view::{Page, fmt_opt_time, fmt_time};

pub struct TokenView {
    pub id: i64,
    pub name: String,
    pub created: String,
    pub expires: String,
    pub expired: bool,
    pub last_used: String,
}

fn token_view(t: &ApiToken, now: i64) -> TokenView {
    TokenView {
        id: t.id,
        name: t.name.clone(),
        created: fmt_time(t.created_at),
        expires: fmt_time(t.expires_at),
        expired: t.expired(now),
        last_used: fmt_opt_time(t.last_used_at),
    }
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    page: Page,
    name: String,
    role: String,
    totp: bool,
    password_changed: String,
    tokens: Vec<TokenView>,
    /// (days, label, selected) for the new-token form.
    lifetimes: Vec<(u32, String, bool)>,
}

pub async fn page(State(state): State<AppState>, p: Principal) -> Result<Response, AppError> {
    let page = Page::load(&state, &p, "account", "Your account").await?;
    let id = p.user.id;
    let (user, tokens) = state
        .db(move |s| Ok((s.accounts.user(id)?, s.accounts.tokens(id)?)))
        .await?;
    render(&AccountPage {
        page,
        name: user.name,
        role: user.role.to_string(),
        totp: user.totp_enabled,
        password_changed: fmt_time(user.password_changed_at),
        tokens: tokens.iter().map(|t| token_view(t, now_unix())).collect(),
        lifetimes: TOKEN_LIFETIMES_DAYS
            .iter()
            .map(|d| (*d, format!("{d} days"), *d == DEFAULT_TOKEN_LIFETIME_DAYS))
            .collect(),
    })
}

#[derive(Template)]
#[template(path = "totp.html")]
struct TotpPage {
    page: Page,
    secret: String,
    uri: String,
    error: Option<String>,
}

/// Starts enrolment: a new pending secret (it replaces nothing until confirmed).
pub async fn totp_begin(State(state): State<AppState>, p: Principal) -> Result<Response, AppError> {
    let (id, issuer) = (p.user.id, "Palisade".to_string());
    let (secret, uri) = state
        .db(move |s| {
            let host = s
                .config
                .current()?
                .map(|r| r.config.system.hostname)
                .unwrap_or_default();
            Ok(s.accounts.totp_begin(id, &format!("{issuer} {host}"))?)
        })
        .await?;
    let page = Page::load(&state, &p, "account", "Set up an authenticator").await?;
    render(&TotpPage {
        page,
        secret,
        uri,
        error: None,
    })
}

#[derive(Deserialize)]
pub struct ConfirmForm {
    code: String,
    #[serde(default)]
    secret: String,
    #[serde(default)]
    uri: String,
}

pub async fn totp_confirm(
    State(state): State<AppState>,
    p: Principal,
    Form(f): Form<ConfirmForm>,
) -> Result<Response, AppError> {
    let (id, source, code) = (p.user.id, p.source.clone(), f.code.clone());
    let r = state
        .db(move |s| Ok(s.accounts.totp_confirm(&mut s.audit, id, &code, &source)))
        .await?;
    match r {
        Ok(()) => {
            flash(
                &state,
                &p,
                "The authenticator is set up: you will be asked for a code at every login.".into(),
            )
            .await?;
            Ok(Redirect::to("/account").into_response())
        }
        Err(e) => {
            let page = Page::load(&state, &p, "account", "Set up an authenticator").await?;
            let mut resp = render(&TotpPage {
                page,
                secret: f.secret,
                uri: f.uri,
                error: Some(e.to_string()),
            })?;
            *resp.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
            Ok(resp)
        }
    }
}

#[derive(Deserialize)]
pub struct DisableForm {
    password: String,
}

/// Turning the second factor off needs the password again.
pub async fn totp_disable(
    State(state): State<AppState>,
    p: Principal,
    Form(f): Form<DisableForm>,
) -> Result<Response, AppError> {
    let (id, name, source) = (p.user.id, p.user.name.clone(), p.source.clone());
    // A signed-in user: counts as trusted for the login-check budget.
    let ok = state
        .login_db(true, move |s| {
            Ok(s.accounts.password_matches(id, &f.password)?)
        })
        .await
        .unwrap_or_else(|| {
            Err(AppError::Unavailable(
                "The console is checking too many passwords right now. Try again in a few seconds."
                    .into(),
            ))
        })?;
    if !ok {
        let (actor, src) = (p.actor(), source.clone());
        state
            .db(move |s| {
                s.audit.append(
                    &actor,
                    &src,
                    "user.totp_disable_failed",
                    &name,
                    &serde_json::json!({ "reason": "password wrong" }),
                )?;
                Ok(())
            })
            .await?;
        flash(
            &state,
            &p,
            "The password was wrong; the authenticator stays on.".into(),
        )
        .await?;
        return Ok(Redirect::to("/account").into_response());
    }
    let actor = p.actor();
    state
        .db(move |s| Ok(s.accounts.totp_disable(&mut s.audit, id, &actor, &source)?))
        .await?;
    flash(&state, &p, "The authenticator was removed.".into()).await?;
    Ok(Redirect::to("/account").into_response())
}

#[derive(Deserialize)]
pub struct TokenForm {
    name: String,
    /// 30, 90 or 365; 90 when absent.
    #[serde(default)]
    lifetime_days: Option<String>,
}

pub async fn token_create(
    State(state): State<AppState>,
    p: Principal,
    Form(f): Form<TokenForm>,
) -> Result<Response, AppError> {
    let (id, source) = (p.user.id, p.source.clone());
    let name = if f.name.trim().is_empty() {
        "token".to_string()
    } else {
        f.name
    };
    let days = match f.lifetime_days.as_deref().map(str::trim) {
        None | Some("") => DEFAULT_TOKEN_LIFETIME_DAYS,
        Some(d) => d
            .parse()
            .ok()
            .filter(|d| TOKEN_LIFETIMES_DAYS.contains(d))
            .ok_or_else(|| AppError::BadRequest("A token lives 30, 90 or 365 days.".to_string()))?,
    };
    let (t, secret) = state
        .db(move |s| {
            Ok(s.accounts
                .create_token(&mut s.audit, id, &name, days, &source)?)
        })
        .await?;
    let page = Page::load(&state, &p, "account", "API token created").await?;
    render(&OneTimePage {
        page,
        heading: t.name,
        what: format!(
            "API token with your role ({}), valid until {}. Send it in the header \"Authorization: Bearer <token>\". Store it now: it is not shown again.",
            p.user.role,
            fmt_time(t.expires_at)
        ),
        secret,
        back: "/account".into(),
    })
}

pub async fn token_revoke(
    State(state): State<AppState>,
    p: Principal,
    Path(token): Path<i64>,
) -> Result<Response, AppError> {
    let (id, source) = (p.user.id, p.source.clone());
    state
        .db(move |s| Ok(s.accounts.revoke_token(&mut s.audit, id, token, &source)?))
        .await?;
    flash(&state, &p, "The token was revoked.".into()).await?;
    Ok(Redirect::to("/account").into_response())
}
