//! The supervisor's control socket (`DIR/run/supervisor.sock`, mode 0660, group `palisade`):
//! service status and restarts, for the console's dashboard and System page, and installing
//! certificates that belong to another service's user.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::client::ClientError;

/// The socket's name in the data directory's `run/`.
pub const SOCKET_NAME: &str = "supervisor.sock";

/// The socket in `run` (the data directory's `run/`).
pub fn socket_in(run: &Path) -> PathBuf {
    run.join(SOCKET_NAME)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    /// Stop a service and start it again at once (not counted as a crash).
    Restart {
        child: String,
    },
    /// Check a TLS certificate chain and key (PEM) and install them, owned by the service's
    /// user, where the configuration says that service's certificate lives (`smtp`: the
    /// engine's STARTTLS certificate; `console`). Only root can write there; the caller
    /// then has the service reload it.
    InstallCertificate {
        service: String,
        cert_pem: String,
        key_pem: String,
    },
    /// Make or leave a high-availability pair (the console's "create pair", "join pair",
    /// "unpair"): the supervisor writes `DIR/ha/` as root with the command line's sequence,
    /// audited with `actor`/`source`, then restarts its `ha` child. On create the answer is
    /// `Paired` with the pairing code (shown once by the caller, never stored).
    HaPair {
        action: HaPairAction,
        actor: String,
        source: String,
    },
}

/// See [`Request::HaPair`]. `vip` is `ADDR/PREFIX`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum HaPairAction {
    Create {
        vip: String,
        interface: String,
        ha_address: std::net::IpAddr,
        #[serde(default)]
        witness: Option<std::net::IpAddr>,
    },
    Join {
        code: String,
        peer: std::net::IpAddr,
        ha_address: std::net::IpAddr,
        #[serde(default)]
        interface: Option<String>,
        #[serde(default)]
        witness: Option<std::net::IpAddr>,
    },
    Unpair,
}

/// Where a service is in its life. `crash_loop` wins over the others: it says the service
/// crashed `restart_limit_burst` times within `restart_limit_interval_secs` and has not yet
/// stayed up long enough since (it may be up, starting or waiting for its next start; `pid`,
/// `ready` and `next_restart_at` tell which).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChildState {
    /// Started, not ready yet.
    Starting,
    /// Ready and serving.
    Running,
    /// Exited; waits for its next start.
    Backoff,
    CrashLoop,
    /// Not running and not about to be (the supervisor is stopping or stopped).
    #[default]
    Stopped,
}

impl ChildState {
    pub fn as_str(self) -> &'static str {
        match self {
            ChildState::Starting => "starting",
            ChildState::Running => "running",
            ChildState::Backoff => "backoff",
            ChildState::CrashLoop => "crash_loop",
            ChildState::Stopped => "stopped",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChildStatus {
    pub name: String,
    #[serde(default)]
    pub state: ChildState,
    pub pid: Option<i32>,
    pub ready: bool,
    pub up_secs: Option<u64>,
    pub restarts: u64,
    /// The last exit, in words, with its time.
    pub last_exit: Option<String>,
    /// Exit code of the last exit, if it exited by itself.
    #[serde(default)]
    pub last_exit_code: Option<i32>,
    /// Signal that ended it the last time (`SIGSEGV`), if one did.
    #[serde(default)]
    pub last_exit_signal: Option<String>,
    /// Crashes within the last `crash_window_secs` (requested restarts are not crashes).
    #[serde(default)]
    pub crashes: u64,
    #[serde(default)]
    pub crash_window_secs: u64,
    /// Since when (Unix time) it has been in the crash-loop state.
    #[serde(default)]
    pub crash_loop_since: Option<i64>,
    /// When (Unix time) it is started again, while it waits after an exit.
    #[serde(default)]
    pub next_restart_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    pub started_at: i64,
    /// The services in the crash-loop state; empty when all is well.
    #[serde(default)]
    pub degraded: Vec<String>,
    pub children: Vec<ChildStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Status(Status),
    Ok {
        message: String,
    },
    Error {
        message: String,
    },
    /// `HaPair` done; `code` is the pairing code on create.
    Paired {
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
    },
}

impl crate::server::Reply for Response {
    fn refused(message: String) -> Self {
        Response::Error { message }
    }
}

/// Requests carry certificates and keys: more room than the default.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// How long a client waits for the supervisor's answer.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Sends one request to the running supervisor listening in `run` (blocking).
pub fn request(run: &Path, req: &Request) -> Result<Response, ClientError> {
    crate::client::request(&socket_in(run), req, TIMEOUT)
}
