//! Sender confirmation links (`/confirm/<token>`): no login, the token is the credential (the
//! digest key under its own purpose, `Purpose::Confirm`, naming the held entry and its sender;
//! see `palisade_store::digest` and the engine's `confirm`).
//!
//! GET shows the held message's subject, recipients and why it was held, with "send" and
//! "cancel"; only the POST from that page (a nonce bound to the token, this console's origin)
//! asks the engine, which checks the token again, releases the message to every recipient it
//! is held for or deletes it, uses the link up, and audits it (`sender:<address>`). A link
//! scanner that follows the link sends nothing. Refused links count against the client's
//! address in the sign-in throttle, as the digest's release links do.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use palisade_control::engine::ControlRequest;
use palisade_store::digest::{DigestKey, MAX_TOKEN_LEN, Purpose, TokenError, token_id};
use palisade_store::mail::QuarantineState;
use serde::Deserialize;

use super::digest::{line, nonce_checked, throttled};
use crate::auth::source_of;
use crate::error::AppError;
use crate::security::same_origin;
use crate::state::AppState;

const CONFIRMATION: &str = "confirmation:";

#[derive(Template)]
#[template(path = "confirm.html")]
pub struct ConfirmPage {
    pub title: String,
    pub message: String,
    pub held: Option<HeldView>,
}

pub struct HeldView {
    pub subject: String,
    pub received: String,
    pub recipients: Vec<String>,
    pub reasons: Vec<String>,
    pub expires: String,
    pub nonce: String,
}

#[derive(Deserialize)]
pub struct AnswerForm {
    #[serde(default)]
    nonce: String,
    #[serde(default)]
    answer: String,
}

enum Checked {
    Ok(HeldView),
    Refused(StatusCode, &'static str, String),
    Throttled(i64),
}

fn page(status: StatusCode, title: &str, message: String, held: Option<HeldView>) -> Response {
    let p = ConfirmPage {
        title: title.to_string(),
        message,
        held,
    };
    match p.render() {
        Ok(body) => (status, Html(body)).into_response(),
        Err(e) => AppError::from(e).into_response(),
    }
}

async fn check(state: &AppState, token: String, source: String) -> Result<Checked, AppError> {
    let throttle = state.settings().throttle.clone();
    let key_path = state.data().digest_key();
    state
        .db(move |s| {
            let now = palisade_store::now_unix();
            if let Some(wait) = s.accounts.release_link_wait(&source, now, &throttle)? {
                return Ok(Checked::Throttled(wait));
            }
            let refuse = |s: &mut crate::state::Stores, status, title, msg: String| {
                s.accounts.release_link_failure(&source, now)?;
                tracing::info!(event = "confirm.link_refused", source = %source, reason = %msg);
                Ok::<_, AppError>(Checked::Refused(status, title, msg))
            };
            if token.len() > MAX_TOKEN_LEN || !key_path.exists() {
                return refuse(
                    s,
                    StatusCode::FORBIDDEN,
                    "This link does not work",
                    "This is not a confirmation link of this mail gateway.".into(),
                );
            }
            let key = DigestKey::load(&key_path).map_err(AppError::internal)?;
            let claims = match key.verify_for(Purpose::Confirm, &token, now) {
                Ok(c) => c,
                Err(TokenError::Expired { .. }) => {
                    return refuse(
                        s,
                        StatusCode::GONE,
                        "This link has expired",
                        "Nobody confirmed the message in time, so it was not sent. Send it \
                         again if it should still go."
                            .into(),
                    );
                }
                Err(e) => {
                    return refuse(
                        s,
                        StatusCode::FORBIDDEN,
                        "This link does not work",
                        format!("{e}. Use the link exactly as it is in the notice."),
                    );
                }
            };
            if s.mail.digest_release_of(&token_id(&token))?.is_some() {
                return refuse(
                    s,
                    StatusCode::GONE,
                    "This link was already used",
                    "The message was sent with this link. Each link works once.".into(),
                );
            }
            let entry = s.mail.quarantine_get(&claims.quarantine_id)?.filter(|e| {
                e.state == QuarantineState::Held
                    && e.reason.starts_with(CONFIRMATION)
                    && e.sender.eq_ignore_ascii_case(&claims.recipient)
            });
            let Some(entry) = entry else {
                return refuse(
                    s,
                    StatusCode::GONE,
                    "This message is no longer waiting",
                    "It was sent, cancelled, released or deleted by an administrator, or it \
                     expired."
                        .into(),
                );
            };
            let mut reasons: Vec<String> =
                palisade_store::mail::explanation_sentences(entry.explanations.as_ref(), "rules")
                    .iter()
                    .map(|s| line(s, 400))
                    .collect();
            if reasons.is_empty() {
                reasons.push(line(&entry.reason, 300));
            }
            Ok(Checked::Ok(HeldView {
                subject: line(entry.subject.as_deref().unwrap_or("(no subject)"), 200),
                received: palisade_store::format_unix(entry.received_at),
                recipients: entry
                    .recipients
                    .iter()
                    .map(|r| line(&r.address, 320))
                    .collect(),
                reasons,
                expires: palisade_store::format_unix(entry.expires_at),
                nonce: key.nonce(&token, now),
            }))
        })
        .await
}

/// GET: the held message, with "send" and "cancel".
pub async fn show(
    State(state): State<AppState>,
    Path(token): Path<String>,
    req: axum::extract::Request,
) -> Response {
    let source = source_of(req.extensions());
    match check(&state, token, source).await {
        Ok(Checked::Ok(held)) => page(
            StatusCode::OK,
            "Confirm your message",
            String::new(),
            Some(held),
        ),
        Ok(Checked::Refused(status, title, msg)) => page(status, title, msg, None),
        Ok(Checked::Throttled(wait)) => throttled(wait),
        Err(e) => e.into_response(),
    }
}

/// POST from the page: the engine sends or cancels it.
pub async fn answer(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    Form(form): Form<AnswerForm>,
) -> Response {
    let source = source_of(&ext);
    let hosts = match state.host_policy().await {
        Ok(h) => h,
        Err(e) => return e.into_response(),
    };
    let send = match form.answer.as_str() {
        "send" => true,
        "cancel" => false,
        _ => {
            return page(
                StatusCode::BAD_REQUEST,
                "This request was refused",
                "Choose send or cancel on the confirmation page.".into(),
                None,
            );
        }
    };
    if !same_origin(&headers, &hosts) {
        return page(
            StatusCode::FORBIDDEN,
            "This request was refused",
            "Answer with the buttons of the confirmation page.".into(),
            None,
        );
    }
    match check(&state, token.clone(), source.clone()).await {
        Ok(Checked::Ok(_)) => {}
        Ok(Checked::Refused(status, title, msg)) => return page(status, title, msg, None),
        Ok(Checked::Throttled(wait)) => return throttled(wait),
        Err(e) => return e.into_response(),
    }
    match nonce_checked(&state, &token, form.nonce, &source).await {
        Ok(true) => {}
        Ok(false) => {
            return page(
                StatusCode::FORBIDDEN,
                "This request was refused",
                "The confirmation page was too old or not made by this gateway. Open the link \
                 from the notice again."
                    .into(),
                None,
            );
        }
        Err(e) => return e.into_response(),
    }
    let req = ControlRequest::QuarantineConfirm {
        token,
        send,
        source,
    };
    match state.engine(req).await {
        Ok(r) if r.ok && send => page(
            StatusCode::OK,
            "Message sent",
            "Your message is on its way to the recipients you confirmed.".into(),
            None,
        ),
        Ok(r) if r.ok => page(
            StatusCode::OK,
            "Message cancelled",
            "Your message was not sent and has been deleted.".into(),
            None,
        ),
        Ok(r) => {
            tracing::info!(event = "confirm.answer_refused", reason = %r.message);
            page(
                StatusCode::CONFLICT,
                "Nothing was done",
                format!("The mail gateway said: {}.", line(&r.message, 300)),
                None,
            )
        }
        Err(e) => {
            tracing::warn!(event = "confirm.unavailable", error = %e);
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again later",
                "The mail gateway cannot answer just now. Your link still works: try again in \
                 a few minutes."
                    .into(),
                None,
            )
        }
    }
}
