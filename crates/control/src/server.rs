//! The one unix-socket server behind both control sockets (`engine.sock`, `supervisor.sock`):
//! one JSON request per line, one JSON response per line, any number of requests per
//! connection.
//!
//! A client cannot hang it or make it hold much: a request line longer than
//! [`Limits::max_request_bytes`] is answered with an error and the connection closed without
//! reading further; a line must arrive whole within [`Limits::request_timeout`] of the server
//! starting to wait for it (so an idle or trickling client is cut off); a response that cannot
//! be written within the same time ends the connection; at most
//! [`Limits::max_connections`] connections are served at once (more are told so and closed).
//! The socket is created with the mode given to [`bind`] (0660: the `palisade` group and root).

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

/// A response type that can say "your request could not be served" by itself.
pub trait Reply: Serialize + Send + 'static {
    fn refused(message: String) -> Self;
}

/// How much one client may make the server spend.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_request_bytes: usize,
    pub request_timeout: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(10),
            max_connections: 32,
        }
    }
}

/// Binds `path` (removing a socket left by a previous run, creating its directory) and gives
/// it `mode`. Must be called within a tokio runtime.
pub fn bind(path: &Path, mode: u32) -> std::io::Result<UnixListener> {
    let ctx = |what: &str, e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ctx("create", e))?;
    }
    // A socket left by a previous run (crash) would make bind fail.
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).map_err(|e| ctx("bind", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| ctx("chmod", e))?;
    Ok(listener)
}

/// Serves `listener` until the returned task is aborted: each request line is parsed as `Req`
/// and answered with what `handler` returns (a line that is not a `Req` gets
/// `Resp::refused`).
pub fn serve<Req, Resp, H, Fut>(
    listener: UnixListener,
    limits: Limits,
    handler: H,
) -> tokio::task::JoinHandle<()>
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Reply,
    H: Fn(Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Resp> + Send + 'static,
{
    let handler = Arc::new(handler);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of descriptors, most likely: give the others a moment to finish.
                    tracing::warn!(event = "control.accept_failed", error = %e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                tokio::spawn(refuse::<Resp>(stream, limits));
                continue;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                connection(stream, limits, handler).await;
                drop(permit);
            });
        }
    })
}

async fn refuse<Resp: Reply>(mut stream: UnixStream, limits: Limits) {
    let resp = Resp::refused("too many control connections; try again".into());
    let _ = write(&mut stream, resp, limits).await;
}

/// Writes one response line within the time limit; `false` if it could not.
async fn write<W: AsyncWriteExt + Unpin>(w: &mut W, resp: impl Serialize, limits: Limits) -> bool {
    // Encoded before the first await, so that the future does not hold the response.
    let mut out = serde_json::to_vec(&resp).unwrap_or_default();
    out.push(b'\n');
    matches!(
        tokio::time::timeout(limits.request_timeout, w.write_all(&out)).await,
        Ok(Ok(()))
    )
}

async fn connection<Req, Resp, H, Fut>(stream: UnixStream, limits: Limits, handler: Arc<H>)
where
    Req: DeserializeOwned,
    Resp: Reply,
    H: Fn(Req) -> Fut,
    Fut: Future<Output = Resp>,
{
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut line = Vec::new();
    loop {
        line.clear();
        let limit = limits.max_request_bytes as u64 + 1;
        let read = tokio::time::timeout(
            limits.request_timeout,
            (&mut r).take(limit).read_until(b'\n', &mut line),
        )
        .await;
        match read {
            Ok(Ok(0)) => return,
            Ok(Ok(_)) => {}
            // An error, or the line did not arrive in time.
            Ok(Err(_)) | Err(_) => return,
        }
        if !line.ends_with(b"\n") && line.len() > limits.max_request_bytes {
            let resp = Resp::refused(format!(
                "request longer than {} bytes",
                limits.max_request_bytes
            ));
            let _ = write(&mut w, resp, limits).await;
            return;
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let resp = match serde_json::from_slice::<Req>(text) {
            Ok(req) => handler(req).await,
            Err(e) => Resp::refused(format!("bad request: {e}")),
        };
        if !write(&mut w, resp, limits).await {
            return;
        }
    }
}
