//! The engine's control socket (`DIR/run/engine.sock`): how the console, the CLI and the
//! supervisor reach the running engine.
//!
//! Requests that change the queue carry who asked (`actor`, e.g. `alice` or `cli:root`) and
//! from where (`source`: an address, or `local`): the engine writes the audit entry for them.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::client::ClientError;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum ControlRequest {
    Ping,
    /// The HA process, every interval: the unit's state in its pair and where the peer's
    /// engine listens for spool replication. Answered like `Ping`, with the replication
    /// status. `degraded` (we hold the address, the peer is gone) makes the engine queue the
    /// peer's replicated messages.
    HaReport {
        state: String,
        peer_alive: bool,
        own_address: std::net::IpAddr,
        #[serde(default)]
        peer_address: Option<std::net::IpAddr>,
        /// The replication port (heartbeat port + 1).
        port: u16,
        dead_time_ms: u64,
    },
    /// Queue every replica of the peer's queue now (`palisade ha unpair`: there is no peer
    /// any more). The answer's `count` is how many were queued.
    HaAdopt,
    /// Apply the newest configuration revision.
    Reload,
    /// Scan the queue now.
    Wake,
    Stats,
    /// Make every queued recipient of every message due now (audited `queue.flush`).
    Flush {
        actor: String,
        source: String,
    },
    /// Make the queued recipients of one message due now (audited `queue.retry`).
    Retry {
        id: String,
        actor: String,
        source: String,
    },
    /// Return a queued message to its sender with a bounce (audited `queue.bounce`).
    Bounce {
        id: String,
        actor: String,
        source: String,
    },
    /// Delete a queued message, row and content (audited `queue.delete`).
    Delete {
        id: String,
        actor: String,
        source: String,
    },
    /// Enqueue a held message again, byte-identical, to `recipients` (`None`: the ones it was
    /// held for) and deliver it at once (audited `quarantine.release`). The answer's
    /// `queue_id` is the new queue id.
    ///
    /// With `digest_token` (a release link of the quarantine digest, which the engine checks
    /// itself): `recipients` must be the one recipient the token names, the entry stays held
    /// for its other recipients, and the token is used up in the release's transaction.
    QuarantineRelease {
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recipients: Option<Vec<String>>,
        actor: String,
        source: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        digest_token: Option<String>,
    },
    /// Send the quarantine digests due now (`to`: only that recipient's), whatever the hour
    /// (audited `digest.send`). The answer's `count` is the number of digests queued.
    Digest {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        actor: String,
        source: String,
    },
    /// The sender's answer from a confirmation link (a message held by a `confirm` rule; the
    /// engine checks the token itself): `send` releases it to every recipient it is held for,
    /// otherwise it is deleted; the link is used up (audited `quarantine.release` /
    /// `quarantine.delete` by `sender:<address>`, `"via": "confirmation"`).
    QuarantineConfirm {
        token: String,
        send: bool,
        source: String,
    },
    /// Delete a held message (audited `quarantine.delete`).
    QuarantineDelete {
        id: String,
        actor: String,
        source: String,
    },
    /// The DKIM signing keys in `DIR/keys/dkim` (which only the engine's user reads): their
    /// records, whether they sign, and (with `dns`) whether DNS publishes them. The answer's
    /// `dkim` lists them.
    DkimKeys {
        #[serde(default)]
        dns: bool,
    },
    /// Run freshclam now (the private mirror and custom URLs of `[antivirus]`), then ask
    /// clamd to reload (audited `antivirus.update`); `ok` says whether freshclam succeeded.
    AvUpdate {
        actor: String,
        source: String,
    },
    /// Make a new DKIM signing key (audited `dkim.key_generated`); `selector` defaults to
    /// `pal<year><month>r|e`, `algorithm` is `rsa` or `ed25519`. The answer's `dkim` holds
    /// the new key and its record. It does not sign until `[[dkim.sign]]` names it.
    DkimGenerate {
        domain: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        selector: Option<String>,
        algorithm: String,
        actor: String,
        source: String,
    },
}

/// One DKIM signing key as the engine reports it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DkimKey {
    pub domain: String,
    pub selector: String,
    /// `rsa-sha256` or `ed25519-sha256`; `None` when the file cannot be read.
    pub algorithm: Option<String>,
    /// `<selector>._domainkey.<domain>`
    pub name: String,
    /// The TXT record to publish.
    pub record: Option<String>,
    /// Whether `[[dkim.sign]]` names it.
    pub signing: bool,
    /// Why it cannot sign (no key file, an unreadable key).
    pub error: Option<String>,
    /// `published`, `missing`, `differs` or `unknown`; `None` when DNS was not asked.
    pub dns: Option<String>,
    /// The record DNS has instead (`differs`) or why DNS did not answer (`unknown`).
    pub dns_detail: Option<String>,
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
    /// Features working in a degraded state, one sentence each (clamd unreachable, stale
    /// antivirus signatures): shown as banners in the console, in `palisade av status`.
    #[serde(default)]
    pub degraded: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlResponse {
    pub ok: bool,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Stats>,
    /// How many recipients a queue operation affected (retry, flush, bounce).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// The queue id a released quarantined message was enqueued as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_id: Option<String>,
    /// DKIM keys (`DkimKeys`, `DkimGenerate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dkim: Option<Vec<DkimKey>>,
    /// Spool replication (`HaReport`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<palisade_ha::pair::ReplicationStatus>,
}

impl ControlResponse {
    pub fn ok(message: impl Into<String>) -> Self {
        ControlResponse {
            ok: true,
            message: message.into(),
            stats: None,
            count: None,
            queue_id: None,
            dkim: None,
            replication: None,
        }
    }

    /// `ok`, with the number of recipients a queue operation affected.
    pub fn counted(message: impl Into<String>, count: usize) -> Self {
        ControlResponse {
            count: Some(count as u64),
            ..ControlResponse::ok(message)
        }
    }

    pub fn err(message: impl Into<String>) -> Self {
        ControlResponse {
            ok: false,
            message: message.into(),
            stats: None,
            count: None,
            queue_id: None,
            dkim: None,
            replication: None,
        }
    }
}

impl crate::server::Reply for ControlResponse {
    fn refused(message: String) -> Self {
        ControlResponse::err(message)
    }
}

/// How long a client waits for the engine's answer (a bounce reads and writes the spool).
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Sends one request to a running engine (blocking; for the CLI, the supervisor and, via a
/// blocking task, the console). [`ClientError::NotRunning`] means the request was not
/// delivered.
pub fn control_request(
    socket: &Path,
    req: &ControlRequest,
) -> Result<ControlResponse, ClientError> {
    crate::client::request(socket, req, TIMEOUT)
}

/// Whether the engine answers a ping within `timeout` (the HA process's health check).
pub fn ping(socket: &Path, timeout: Duration) -> bool {
    matches!(
        crate::client::request::<_, ControlResponse>(socket, &ControlRequest::Ping, timeout),
        Ok(r) if r.ok
    )
}

/// The HA process's report (a [`ControlRequest::HaReport`]), answered within `timeout`:
/// `None` when the engine did not answer (unhealthy).
pub fn report(socket: &Path, req: &ControlRequest, timeout: Duration) -> Option<ControlResponse> {
    crate::client::request::<_, ControlResponse>(socket, req, timeout).ok()
}
