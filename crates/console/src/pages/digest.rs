//! Release links of the quarantine digest (`/digest/release/<token>`): no login, the token is
//! the credential (see `palisade_store::digest`).
//!
//! GET shows what would be released and a button; only the POST from that page (carrying a
//! nonce bound to the token, from this console's origin) asks the engine to release — a link
//! scanner that follows every link in a mailbox releases nothing. The engine checks the token
//! again, releases the entry to that one recipient only and uses the token up in the same
//! transaction; it writes the audit entry (`quarantine.release`, actor `digest:<recipient>`).
//!
//! Strangers cannot spend much here: a token is checked (one HMAC) before anything else is
//! read; every refused link counts against the client's address in the sign-in throttle
//! (`accounts::throttle`, account "(release link)"), and a throttled address gets 429
//! without any token being looked at.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use palisade_control::engine::ControlRequest;
use palisade_store::digest::{DigestKey, MAX_TOKEN_LEN, token_id};
use palisade_store::mail::QuarantineState;
use serde::Deserialize;

use crate::auth::source_of;
use crate::error::AppError;
use crate::security::same_origin;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "digest.html")]
pub struct DigestPage {
    pub title: String,
    pub message: String,
    /// Set on the confirmation page.
    pub confirm: Option<Confirm>,
}

pub struct Confirm {
    pub recipient: String,
    pub sender: String,
    pub subject: String,
    pub received: String,
    pub reason: String,
    pub nonce: String,
}

#[derive(Deserialize)]
pub struct ReleaseForm {
    #[serde(default)]
    nonce: String,
}

/// What a link turned out to be.
enum Checked {
    Ok {
        quarantine_id: String,
        recipient: String,
        confirm: Confirm,
    },
    Refused(StatusCode, &'static str, String),
    Throttled(i64),
}

/// One printable line for the page (askama escapes it).
pub(crate) fn line(s: &str, max: usize) -> String {
    let s: String = s
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}') {
                ' '
            } else {
                c
            }
        })
        .collect();
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > max {
        let mut cut: String = s.chars().take(max - 1).collect();
        cut.push('…');
        cut
    } else {
        s
    }
}

fn page(status: StatusCode, title: &str, message: String, confirm: Option<Confirm>) -> Response {
    let p = DigestPage {
        title: title.to_string(),
        message,
        confirm,
    };
    match p.render() {
        Ok(body) => (status, Html(body)).into_response(),
        Err(e) => AppError::from(e).into_response(),
    }
}

/// Checks the link (throttle, signature, expiry, used, still held for that recipient) and
/// records a failure against the client's address when it is refused.
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
                tracing::info!(event = "digest.link_refused", source = %source, reason = %msg);
                Ok::<_, AppError>(Checked::Refused(status, title, msg))
            };
            // No key yet: no digest was ever sent, so no link can be genuine.
            if token.len() > MAX_TOKEN_LEN || !key_path.exists() {
                return refuse(
                    s,
                    StatusCode::FORBIDDEN,
                    "This link does not work",
                    "This is not a release link of this mail gateway.".into(),
                );
            }
            let key = DigestKey::load(&key_path).map_err(AppError::internal)?;
            let claims = match key.verify(&token, now) {
                Ok(c) => c,
                Err(palisade_store::digest::TokenError::Expired { .. }) => {
                    return refuse(
                        s,
                        StatusCode::GONE,
                        "This link has expired",
                        "Release links work for a limited time. The message may still be held: \
                         your next quarantine digest lists it again, or ask your IT service desk."
                            .into(),
                    );
                }
                Err(e) => {
                    return refuse(
                        s,
                        StatusCode::FORBIDDEN,
                        "This link does not work",
                        format!("{e}. Use the link exactly as it is in your digest."),
                    );
                }
            };
            if let Some((queue_id, at)) = s.mail.digest_release_of(&token_id(&token))? {
                return refuse(
                    s,
                    StatusCode::GONE,
                    "This link was already used",
                    format!(
                        "The message was released with this link at {} (queued as {queue_id}). \
                         Each link works once; it should be in your mailbox.",
                        palisade_store::format_unix(at)
                    ),
                );
            }
            let entry = s.mail.quarantine_get(&claims.quarantine_id)?;
            let held_for_you = entry.as_ref().is_some_and(|e| {
                e.state == QuarantineState::Held
                    && e.recipients
                        .iter()
                        .any(|r| r.address.eq_ignore_ascii_case(&claims.recipient))
            });
            let Some(entry) = entry.filter(|_| held_for_you) else {
                return refuse(
                    s,
                    StatusCode::GONE,
                    "This message is no longer held",
                    "It was released, deleted by an administrator, or it expired.".into(),
                );
            };
            let confirm = Confirm {
                recipient: line(&claims.recipient, 320),
                sender: line(entry.from_header.as_deref().unwrap_or(&entry.sender), 200),
                subject: line(entry.subject.as_deref().unwrap_or("(no subject)"), 200),
                received: palisade_store::format_unix(entry.received_at),
                reason: line(&entry.reason, 200),
                nonce: key.nonce(&token, now),
            };
            Ok(Checked::Ok {
                quarantine_id: claims.quarantine_id,
                recipient: claims.recipient,
                confirm,
            })
        })
        .await
}

/// Whether `nonce` is the page's nonce for `token` (made by this gateway, recent); a wrong one
/// counts against `source` in the throttle of refused links.
pub(crate) async fn nonce_checked(
    state: &AppState,
    token: &str,
    nonce: String,
    source: &str,
) -> Result<bool, AppError> {
    let key_path = state.data().digest_key();
    let (t, src) = (token.to_string(), source.to_string());
    state
        .db(move |s| {
            let now = palisade_store::now_unix();
            let ok = DigestKey::load(&key_path)
                .map_err(AppError::internal)?
                .nonce_ok(&t, &nonce, now);
            if !ok {
                s.accounts.release_link_failure(&src, now)?;
            }
            Ok(ok)
        })
        .await
}

pub(crate) fn throttled(wait: i64) -> Response {
    let mut r = page(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many attempts",
        format!(
            "Too many links that do not work came from your address. Try again in {wait} second(s)."
        ),
        None,
    );
    if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// GET: what the link releases, and the button.
pub async fn confirm(
    State(state): State<AppState>,
    Path(token): Path<String>,
    req: axum::extract::Request,
) -> Response {
    let source = source_of(req.extensions());
    match check(&state, token, source).await {
        Ok(Checked::Ok { confirm, .. }) => page(
            StatusCode::OK,
            "Release a held message",
            String::new(),
            Some(confirm),
        ),
        Ok(Checked::Refused(status, title, msg)) => page(status, title, msg, None),
        Ok(Checked::Throttled(wait)) => throttled(wait),
        Err(e) => e.into_response(),
    }
}

/// POST from the confirmation page: the engine releases the message to this recipient.
pub async fn release(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    Form(form): Form<ReleaseForm>,
) -> Response {
    let source = source_of(&ext);
    let hosts = match state.host_policy().await {
        Ok(h) => h,
        Err(e) => return e.into_response(),
    };
    if !same_origin(&headers, &hosts) {
        return page(
            StatusCode::FORBIDDEN,
            "This request was refused",
            "Release a message with the button on its confirmation page.".into(),
            None,
        );
    }
    let (quarantine_id, recipient) = match check(&state, token.clone(), source.clone()).await {
        Ok(Checked::Ok {
            quarantine_id,
            recipient,
            ..
        }) => (quarantine_id, recipient),
        Ok(Checked::Refused(status, title, msg)) => return page(status, title, msg, None),
        Ok(Checked::Throttled(wait)) => return throttled(wait),
        Err(e) => return e.into_response(),
    };
    match nonce_checked(&state, &token, form.nonce, &source).await {
        Ok(true) => {}
        Ok(false) => {
            return page(
                StatusCode::FORBIDDEN,
                "This request was refused",
                "The confirmation page was too old or not made by this gateway. Open the link \
                 from your digest again and press the button."
                    .into(),
                None,
            );
        }
        Err(e) => return e.into_response(),
    }
    let req = ControlRequest::QuarantineRelease {
        id: quarantine_id,
        recipients: Some(vec![recipient.clone()]),
        actor: format!("digest:{recipient}"),
        source,
        digest_token: Some(token),
    };
    match state.engine(req).await {
        Ok(r) if r.ok => page(
            StatusCode::OK,
            "Message released",
            format!(
                "The message is being delivered to {}. It should be in your mailbox in a minute.",
                line(&recipient, 320)
            ),
            None,
        ),
        Ok(r) => {
            tracing::info!(event = "digest.release_refused", reason = %r.message);
            page(
                StatusCode::CONFLICT,
                "The message was not released",
                format!("The mail gateway said: {}.", line(&r.message, 300)),
                None,
            )
        }
        Err(e) => {
            tracing::warn!(event = "digest.release_unavailable", error = %e);
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again later",
                "The mail gateway cannot release messages just now. Your link still works: try \
                 again in a few minutes."
                    .into(),
                None,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::line;

    #[test]
    fn lines_are_printable_and_short() {
        assert_eq!(line("a\r\nb\u{202E}c", 10), "a b c");
        assert_eq!(line(&"x".repeat(20), 5), "xxxx…");
    }
}
