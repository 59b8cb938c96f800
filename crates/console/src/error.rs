//! `AppError`: what a handler returns when it cannot do what was asked. The user gets a
//! plain sentence; the detail of an internal failure is logged here, once, with a reference
//! the user can quote.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use palisade_store::StoreError;
use palisade_store::accounts::AccountError;

#[derive(Debug)]
pub enum AppError {
    NotFound(String),
    Forbidden(&'static str),
    BadRequest(String),
    Conflict(String),
    /// The engine or supervisor could not be asked.
    Unavailable(String),
    /// Something that should not happen; the detail is logged, never shown.
    Internal(String),
}

impl AppError {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        AppError::Internal(e.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The sentence the user sees. Internal details are logged (once) and replaced by a
    /// reference.
    pub fn public_message(&self) -> String {
        match self {
            AppError::NotFound(m)
            | AppError::BadRequest(m)
            | AppError::Conflict(m)
            | AppError::Unavailable(m) => m.clone(),
            AppError::Forbidden(m) => m.to_string(),
            AppError::Internal(detail) => {
                let reference = reference();
                tracing::error!(event = "console.internal_error", reference = %reference, detail = %detail);
                format!(
                    "Something went wrong on the appliance (reference {reference}; the details are in its log)."
                )
            }
        }
    }
}

fn reference() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    hex::encode(b)
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppError::NotFound(m)
            | AppError::BadRequest(m)
            | AppError::Conflict(m)
            | AppError::Unavailable(m)
            | AppError::Internal(m) => f.write_str(m),
            AppError::Forbidden(m) => f.write_str(m),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = self.public_message();
        let page = crate::view::ErrorPage {
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            message,
        };
        let body = askama::Template::render(&page).unwrap_or_else(|_| page.message.clone());
        (status, Html(body)).into_response()
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } => AppError::Conflict(format!(
                "{e}. Someone else changed the configuration while you were editing; the page now shows their version."
            )),
            StoreError::NotFound { .. } => AppError::NotFound(e.to_string()),
            StoreError::Invalid(p) => AppError::BadRequest(
                p.iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            e => AppError::internal(e),
        }
    }
}

impl From<AccountError> for AppError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Store(e) => e.into(),
            AccountError::Hash(_) => AppError::internal(e),
            AccountError::NoSuchUser(_) | AccountError::NoSuchToken => {
                AppError::NotFound(e.to_string())
            }
            e => AppError::BadRequest(e.to_string()),
        }
    }
}

impl From<askama::Error> for AppError {
    fn from(e: askama::Error) -> Self {
        AppError::internal(format!("template: {e}"))
    }
}

impl From<tokio::task::JoinError> for AppError {
    fn from(e: tokio::task::JoinError) -> Self {
        AppError::internal(format!("blocking task: {e}"))
    }
}

/// Renders a template into a response.
pub fn render<T: askama::Template>(t: &T) -> Result<Response, AppError> {
    Ok(Html(t.render()?).into_response())
}

/// Renders with a status other than 200 (a form with errors is 422).
pub fn render_status<T: askama::Template>(status: StatusCode, t: &T) -> Result<Response, AppError> {
    Ok((status, Html(t.render()?)).into_response())
}
