//! The local admin web console (`palisade console`, user `palisade-web`): HTTPS on its own
//! listener, logins and sessions, the pages a mail engineer configures and watches the box
//! with, and a small token-authenticated JSON API (see `API.md`).
//!
//! It owns the HTTP surface and nothing else:
//! - every configuration change goes through `ConfigStore::commit_audited` (a new revision and
//!   an audit entry with the diff) and is then applied by asking the engine to reload;
//! - accounts, sessions, throttling and TOTP are `palisade_store::accounts`; every queue change
//!   (retry, flush, delete, bounce) and quarantine change (release, delete) is asked of the
//!   engine over its control socket (it makes
//!   the change and writes the audit entry; the console only reads `mail.db`); service health and restarts, and
//!   installing certificates (which belong to other users), are the supervisor's control socket.
//!
//! It must not: run as root, hold any key but its own TLS key, the key that seals TOTP
//! secrets (`DIR/console/totp.key`, see `palisade_store::totp_key`) and the key that checks
//! the quarantine digest's release links (`DIR/keys/digest.key`, read-only; the one page
//! without a login, `pages::digest`, where the signed token is the credential), render message content as HTML
//! except a held message's, sanitised and framed (`safe_view`: the quarantine; queued bodies
//! are never shown), make any request for a message's content, run script in the browser (the CSP forbids it:
//! every page works without JavaScript and charts are SVG drawn here), change state on a GET,
//! accept a POST without a valid CSRF token from the same origin, or answer a request whose
//! `Host` is not one of its names (`console.hostnames`; `security::HostPolicy`).
//!
//! Layout: `server` (TLS listener, connections), `routes` (which URL needs which permission),
//! `auth` (login, sessions, CSRF, roles), `security` (response headers), `pages/*` (one module
//! per page), `api` (JSON), `chart` (SVG), `view` (what templates see), `error` (`AppError`).

#![forbid(unsafe_code)]

mod api;
mod auth;
mod chart;
mod error;
mod forms;
mod pages;
mod routes;
mod safe_view;
mod security;
mod server;
mod state;
mod view;

use std::path::PathBuf;
use std::time::Duration;

pub use auth::{CSRF_FIELD, LOGIN_COOKIE, Perm, SESSION_COOKIE, allows};
pub use error::AppError;
pub use routes::router;
pub use server::ClientAddr;
pub use state::{AppState, Settings};

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error(transparent)]
    Store(#[from] palisade_store::StoreError),
    #[error(transparent)]
    Accounts(#[from] palisade_store::accounts::AccountError),
    #[error("no configuration in {0}: start Palisade with `palisade run` first")]
    NoConfig(PathBuf),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("listener: {0}")]
    Listener(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    pub data: PathBuf,
    /// How long open connections get to finish on shutdown.
    pub drain_grace: Duration,
}

/// Runs the console until SIGTERM/SIGINT. Uses the listeners the supervisor handed over, or
/// binds `console.listen` itself when started alone.
pub async fn run(opts: ConsoleOptions) -> Result<(), ConsoleError> {
    server::run(opts).await
}
