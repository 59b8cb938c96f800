//! The per-unit pair settings (`DIR/ha/pair.toml`) and the status the `palisade ha` process
//! publishes (`DIR/ha/state.json`). Types only; files are read and written by their users.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::State;

pub const DEFAULT_PORT: u16 = 7246;
pub const DEFAULT_INTERVAL_MS: u64 = 1000;
pub const DEFAULT_DEAD_TIME_MS: u64 = 3000;
/// The creator of a pair; the unit that joins gets [`JOIN_PRIORITY`].
pub const CREATE_PRIORITY: u8 = 200;
pub const JOIN_PRIORITY: u8 = 100;

/// What differs between the two units, kept out of the replicated configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairSettings {
    /// This unit's random id (drawn at create or join).
    pub node_id: u64,
    pub priority: u8,
    /// The floating address and its prefix length.
    pub vip: IpAddr,
    pub prefix_len: u8,
    /// The interface the floating address goes on (the LAN side).
    pub interface: String,
    /// This unit's address on the HA link (heartbeats are sent from and received on it).
    pub ha_address: IpAddr,
    /// The peer's HA address: given at join; learnt from its first authentic heartbeat on the
    /// unit that created the pair.
    #[serde(default)]
    pub peer_address: Option<IpAddr>,
    #[serde(default)]
    pub witness: Option<IpAddr>,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    #[serde(default = "default_dead_time")]
    pub dead_time_ms: u64,
    #[serde(default)]
    pub preempt: bool,
}

fn default_port() -> u16 {
    DEFAULT_PORT
}
fn default_interval() -> u64 {
    DEFAULT_INTERVAL_MS
}
fn default_dead_time() -> u64 {
    DEFAULT_DEAD_TIME_MS
}

impl PairSettings {
    /// Every problem, each naming its field.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let max = if self.vip.is_ipv4() { 32 } else { 128 };
        if self.prefix_len == 0 || self.prefix_len > max {
            p.push(format!(
                "vip: prefix length {} (1 to {max})",
                self.prefix_len
            ));
        }
        if self.vip.is_unspecified() || self.vip.is_multicast() || self.vip.is_loopback() {
            p.push(format!("vip: {} cannot float", self.vip));
        }
        if self.interface.is_empty()
            || self.interface.len() > 15
            || !self
                .interface
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
        {
            p.push(format!(
                "interface: {:?} is not an interface name",
                self.interface
            ));
        }
        if self.ha_address.is_unspecified() || self.ha_address.is_multicast() {
            p.push(format!(
                "ha_address: {} is not a unit's address",
                self.ha_address
            ));
        }
        if self.peer_address == Some(self.ha_address) {
            p.push("peer_address: the same as this unit's ha_address".into());
        }
        if self.port == 0 {
            p.push("port: 0".into());
        }
        if !(100..=10_000).contains(&self.interval_ms) {
            p.push(format!("interval_ms: {} (100 to 10000)", self.interval_ms));
        }
        if self.dead_time_ms < 3 * self.interval_ms || self.dead_time_ms > 60_000 {
            p.push(format!(
                "dead_time_ms: {} (at least three intervals, at most 60000)",
                self.dead_time_ms
            ));
        }
        p
    }

    pub fn machine_settings(&self) -> crate::Settings {
        crate::Settings {
            node_id: self.node_id,
            priority: self.priority,
            preempt: self.preempt,
            witness_configured: self.witness.is_some(),
            dead_time_ms: self.dead_time_ms,
            interval_ms: self.interval_ms,
        }
    }
}

/// What the peer last said, as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub address: Option<IpAddr>,
    pub node_id: u64,
    pub state: State,
    pub priority: u8,
    pub epoch: u64,
    pub engine_healthy: bool,
    pub witness_reachable: bool,
    pub config_revision: i64,
    pub spool_position: u64,
    /// When its last authentic heartbeat arrived (Unix ms, our clock).
    pub last_heartbeat_ms: u64,
    pub alive: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub from: State,
    pub to: State,
    pub why: String,
    pub at_ms: u64,
}

/// Heartbeats refused since start, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusals {
    pub forged: u64,
    pub malformed: u64,
    pub stale: u64,
    pub own: u64,
}

/// The files of `DIR/ha/`: settings, key, persisted epoch, published state (handed to
/// palisade-ha by root; nothing else in that directory is touched).
pub const FILES: [&str; 4] = ["pair.toml", "pair.key", "epoch", "state.json"];

/// `DIR/ha/state.json`, written by `palisade ha` at every change and every interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaStatus {
    pub state: State,
    pub holds_address: bool,
    pub epoch: u64,
    pub node_id: u64,
    pub priority: u8,
    pub vip: String,
    pub interface: String,
    pub ha_address: IpAddr,
    pub engine_healthy: bool,
    pub witness: Option<IpAddr>,
    pub witness_reachable: bool,
    pub peer: Option<PeerStatus>,
    pub last_change: Option<Change>,
    pub refused: Refusals,
    /// The last error from adding or removing the address or announcing it, if any.
    pub address_error: Option<String>,
    pub updated_ms: u64,
    pub pid: u32,
    /// The heartbeat interval, so readers can tell a stale file (see [`HaStatus::is_fresh`]).
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    /// Spool replication as the engine reports it (`None`: the engine did not answer).
    #[serde(default)]
    pub replication: Option<ReplicationStatus>,
}

/// Spool replication, as the engine reports it to the HA process every interval.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationStatus {
    /// Where our groups go (`ADDR:PORT`), once the HA process named the peer.
    pub peer: Option<String>,
    /// An authenticated connection to the peer's engine is up.
    pub connected: bool,
    /// Messages queued here that the peer lacks (accepted while not connected); the next
    /// connection's resync sends them.
    pub unreplicated: u64,
    /// The peer's messages kept here as replicas.
    pub replicas: u64,
    /// When the peer last acknowledged a group (Unix ms).
    pub last_ack_ms: Option<u64>,
    /// Replicas queued for delivery here since the engine started (the peer was gone).
    pub adopted: u64,
    /// Why the last connection attempt or group failed.
    pub error: Option<String>,
}

impl HaStatus {
    /// Refreshed within three intervals (at least three seconds): `palisade ha` is running.
    pub fn is_fresh(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.updated_ms) <= 3 * self.interval_ms.max(1000)
    }
}
