//! The blocking client side of both control sockets.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nobody listens on the socket (no socket file, or one left by a process that is gone):
    /// the request was not delivered, so the caller may do the work itself.
    #[error("not running ({0})")]
    NotRunning(std::io::Error),
    /// The request may or may not have been carried out (no permission to connect, a
    /// timeout, a broken or unreadable answer).
    #[error("{0}")]
    Failed(std::io::Error),
}

impl ClientError {
    pub fn is_not_running(&self) -> bool {
        matches!(self, ClientError::NotRunning(_))
    }
}

/// Longest response read (a supervisor status snapshot is a few KiB).
const MAX_RESPONSE: u64 = 4 * 1024 * 1024;

/// Sends one request line and reads one response line.
pub(crate) fn request<Req: Serialize, Resp: DeserializeOwned>(
    socket: &Path,
    req: &Req,
    timeout: Duration,
) -> Result<Resp, ClientError> {
    let mut s = std::os::unix::net::UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            ClientError::NotRunning(e)
        }
        _ => ClientError::Failed(e),
    })?;
    let failed = ClientError::Failed;
    s.set_read_timeout(Some(timeout)).map_err(failed)?;
    s.set_write_timeout(Some(timeout)).map_err(failed)?;
    let mut line = serde_json::to_vec(req).map_err(|e| failed(std::io::Error::other(e)))?;
    line.push(b'\n');
    // A server that refuses the connection (too many at once) answers and closes before
    // reading: the write may fail, its answer is still there to read.
    let written = s.write_all(&line);
    let mut reply = Vec::new();
    let read = BufReader::new(s.take(MAX_RESPONSE)).read_until(b'\n', &mut reply);
    if reply.is_empty() {
        written.map_err(failed)?;
        read.map_err(failed)?;
        return Err(failed(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed without an answer",
        )));
    }
    serde_json::from_slice(&reply).map_err(|e| failed(std::io::Error::other(e)))
}
