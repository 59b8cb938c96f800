//! The `palisade ha` process's control socket, `DIR/run/ha.sock` (0660): an operator's
//! failover request from the console or the command line. Its state is read from
//! `DIR/ha/state.json` (see `palisade_ha::pair::HaStatus`), not asked for.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::ClientError;

pub fn socket_in(run: &Path) -> PathBuf {
    run.join("ha.sock")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    Ping,
    /// On the active unit: step down (the peer takes over). On the passive: take over.
    Failover {
        actor: String,
        source: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Ok { message: String },
    Error { message: String },
}

impl crate::server::Reply for Response {
    fn refused(message: String) -> Self {
        Response::Error { message }
    }
}

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Sends one request to the running `palisade ha` (blocking).
pub fn request(run: &Path, req: &Request) -> Result<Response, ClientError> {
    crate::client::request(&socket_in(run), req, TIMEOUT)
}
