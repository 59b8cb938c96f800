//! The supervisor's control socket (`DIR/run/supervisor.sock`, mode 0660, group `palisade`):
//! service status and restarts, for the console's dashboard and System page, and installing
//! certificates that belong to another service's user. One JSON request
//! per line, one JSON response per line.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use palisade_store::DataDir;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};

use crate::{Event, SupervisorError};

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
    Ok { message: String },
    Error { message: String },
}

/// Sends one request to the running supervisor (blocking).
pub fn request(data: &DataDir, req: &Request) -> std::io::Result<Response> {
    let mut s = std::os::unix::net::UnixStream::connect(socket(data))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = serde_json::to_string(req).map_err(std::io::Error::other)?;
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply)?;
    serde_json::from_str(&reply).map_err(std::io::Error::other)
}

fn socket(data: &DataDir) -> std::path::PathBuf {
    data.run().join("supervisor.sock")
}

pub(crate) fn serve(
    data: &DataDir,
    events: mpsc::UnboundedSender<Event>,
) -> Result<tokio::task::JoinHandle<()>, SupervisorError> {
    let path = socket(data);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)
        .map_err(|e| SupervisorError::Setup(format!("control socket {}: {e}", path.display())))?;
    set_mode(&path)?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let events = events.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut lines = tokio::io::BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let resp = match serde_json::from_str::<Request>(&line) {
                        Ok(req) => {
                            let (tx, rx) = oneshot::channel();
                            if events.send(Event::Control(req, tx)).is_err() {
                                break;
                            }
                            rx.await.unwrap_or(Response::Error {
                                message: "supervisor stopping".into(),
                            })
                        }
                        Err(e) => Response::Error {
                            message: format!("bad request: {e}"),
                        },
                    };
                    let mut out = serde_json::to_string(&resp).unwrap_or_default();
                    out.push('\n');
                    if w.write_all(out.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    }))
}

fn set_mode(path: &Path) -> Result<(), SupervisorError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(())
}
