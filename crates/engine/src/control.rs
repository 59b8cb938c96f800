//! The engine's control socket (`DIR/run/engine.sock`): how the console and the CLI reach the
//! running engine. One JSON request per line, one JSON response per line.
//!
//! The socket is mode 0660 in a directory of the `palisade` group: the console and root can
//! use it, nobody else. Requests change nothing that is not also recorded elsewhere (a reload
//! applies a configuration revision that was already committed and audited).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use palisade_store::ConfigStore;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

use crate::EngineError;
use crate::state::{Counters, Shared};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum ControlRequest {
    Ping,
    /// Apply the newest configuration revision.
    Reload,
    /// Make every queued recipient due now and scan the queue.
    Flush,
    /// Scan the queue now (after the queue was changed from outside).
    Wake,
    Stats,
    /// Return a queued message to its sender with a bounce.
    Bounce {
        id: String,
    },
    /// Delete a queued message (row and content) on behalf of `actor`, audited. Done here
    /// because the content file belongs to the engine's user.
    Delete {
        id: String,
        actor: String,
        source: String,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stats {
    pub revision: u64,
    pub uptime_secs: u64,
    pub sessions: u64,
    pub sessions_total: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub delivered: u64,
    pub deferred: u64,
    pub bounced: u64,
    pub queue_messages: u64,
    pub queue_recipients: u64,
    pub delivering: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlResponse {
    pub ok: bool,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Stats>,
}

impl ControlResponse {
    fn ok(message: impl Into<String>) -> Self {
        ControlResponse {
            ok: true,
            message: message.into(),
            stats: None,
        }
    }
    fn err(message: impl Into<String>) -> Self {
        ControlResponse {
            ok: false,
            message: message.into(),
            stats: None,
        }
    }
}

/// Sends one request to a running engine (blocking; for the CLI and, via a blocking task, the
/// console).
pub fn request(socket: &Path, req: &ControlRequest) -> std::io::Result<ControlResponse> {
    let mut s = std::os::unix::net::UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut line = serde_json::to_string(req).map_err(std::io::Error::other)?;
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply)?;
    serde_json::from_str(&reply).map_err(std::io::Error::other)
}

pub(crate) async fn serve(shared: Arc<Shared>) -> Result<tokio::task::JoinHandle<()>, EngineError> {
    let path = shared.data.control_socket();
    let io = |context: &str, source| EngineError::Io {
        context: format!("{context} {}", path.display()),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("create", e))?;
    }
    // A socket left by a previous run (crash) would make bind fail.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|e| io("bind", e))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| io("chmod", e))?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut lines = tokio::io::BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let resp = match serde_json::from_str::<ControlRequest>(&line) {
                        Ok(req) => handle(&shared, req).await,
                        Err(e) => ControlResponse::err(format!("bad request: {e}")),
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

async fn handle(shared: &Arc<Shared>, req: ControlRequest) -> ControlResponse {
    match req {
        ControlRequest::Ping => ControlResponse::ok("pong"),
        ControlRequest::Wake => {
            shared.runner().wake();
            ControlResponse::ok("queue scan started")
        }
        ControlRequest::Flush => {
            let s = shared.clone();
            let n = tokio::task::spawn_blocking(move || {
                s.spool.db().lock().expect("lock").retry_now(None)
            })
            .await;
            shared.runner().wake();
            match n {
                Ok(Ok(n)) => ControlResponse::ok(format!("{n} recipient(s) due now")),
                Ok(Err(e)) => ControlResponse::err(e.to_string()),
                Err(e) => ControlResponse::err(e.to_string()),
            }
        }
        ControlRequest::Reload => reload(shared).await,
        ControlRequest::Delete { id, actor, source } => {
            if shared.runner().is_inflight(&id) {
                return ControlResponse::err(
                    "the message is being delivered right now; try again in a moment",
                );
            }
            let data = shared.data.clone();
            let ids = vec![id.clone()];
            let r = tokio::task::spawn_blocking(move || {
                palisade_spool::admin::delete(&data, &ids, &actor, &source)
            })
            .await;
            match r {
                Ok(Ok(deleted)) if deleted.is_empty() => {
                    ControlResponse::err(format!("{id} is no longer queued"))
                }
                Ok(Ok(_)) => ControlResponse::ok(format!("{id} deleted")),
                Ok(Err(e)) => ControlResponse::err(e.to_string()),
                Err(e) => ControlResponse::err(e.to_string()),
            }
        }
        ControlRequest::Bounce { id } => {
            match shared
                .runner()
                .bounce(&id, "returned to the sender by the administrator")
                .await
            {
                Ok(n) => {
                    ControlResponse::ok(format!("{id}: {n} recipient(s) returned to the sender"))
                }
                Err(e) => ControlResponse::err(e),
            }
        }
        ControlRequest::Stats => {
            let s = shared.clone();
            let q =
                tokio::task::spawn_blocking(move || s.spool.db().lock().expect("lock").queue_len())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or((0, 0));
            let c = &shared.counters;
            let stats = Stats {
                revision: shared.revision(),
                uptime_secs: shared.started.elapsed().as_secs(),
                sessions: c.sessions.load(Ordering::Relaxed),
                sessions_total: Counters::get(&c.sessions_total),
                accepted: Counters::get(&c.accepted),
                rejected: Counters::get(&c.rejected),
                delivered: Counters::get(&c.delivered),
                deferred: Counters::get(&c.deferred),
                bounced: Counters::get(&c.bounced),
                queue_messages: q.0,
                queue_recipients: q.1,
                delivering: shared.runner().inflight() as u64,
            };
            ControlResponse {
                ok: true,
                message: String::new(),
                stats: Some(stats),
            }
        }
    }
}

async fn reload(shared: &Arc<Shared>) -> ControlResponse {
    let data = shared.data.clone();
    let rev = tokio::task::spawn_blocking(move || {
        ConfigStore::open(&data.config_db()).and_then(|s| s.current())
    })
    .await;
    let rev = match rev {
        Ok(Ok(Some(rev))) => rev,
        Ok(Ok(None)) => return ControlResponse::err("no configuration"),
        Ok(Err(e)) => return ControlResponse::err(e.to_string()),
        Err(e) => return ControlResponse::err(e.to_string()),
    };
    let tls = match crate::tls::load_server(&shared.data, &rev.config) {
        Ok(t) => t,
        Err(e) => return ControlResponse::err(format!("not applied: {e}")),
    };
    let old = shared.config();
    let mut note = String::new();
    if old.smtp.listen != rev.config.smtp.listen
        || old.smtp.submission_listen != rev.config.smtp.submission_listen
    {
        note = "; listener addresses change at the next restart".into();
    }
    let id = rev.id;
    shared.apply(rev, tls);
    shared.runner().reconfigure();
    shared.runner().wake();
    tracing::info!(event = "engine.reloaded", revision = id);
    ControlResponse::ok(format!("revision {id} applied{note}"))
}
