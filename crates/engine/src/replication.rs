//! Spool replication between the two units of an HA pair (ARCHITECTURE.md, "Spool
//! replication"): the committer's hook ([`Replication`] implements `spool::Replicate`), the
//! client connection to the peer's engine with its inventory resync, the listener that keeps
//! the peer's queue as replicas, and adoption when the HA process says the peer is gone.
//!
//! Blocking I/O on threads of its own: the committer is a thread, and a group must not be
//! answered before the peer acknowledged it, so the client side is plain blocking rustls over
//! a `TcpStream` with time limits; the listener serves at most [`MAX_PEER_CONNECTIONS`]
//! connections, each on its own thread.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use palisade_ha::pair::ReplicationStatus;
use palisade_spool::replica::{GroupChanges, ReplicaStore, Replicate, read_chunks};
use palisade_spool::{Batch, Event, Spool};
use palisade_store::AuditLog;
use palisade_store::DataDir;
use palisade_store::audit::{AUDIT_BATCH, ChainEntry};
use palisade_store::mail::{
    QUARANTINE_BATCH, ReplicaChanges, ReplicaRecord, TRACK_BATCH, TrackCursor, TrackEventRow,
    TrackRow, is_quarantine_id,
};
use ring::hmac;
use serde::{Deserialize, Serialize};

/// Largest JSON header of a frame.
const MAX_HEADER: usize = 16 << 20;
/// Largest content file.
const MAX_BLOB: u64 = 1 << 30;
/// Messages per group of a resync.
const RESYNC_CHUNK: usize = 32;
/// Connections the listener serves at once (the peer needs one; a reconnect may overlap).
const MAX_PEER_CONNECTIONS: usize = 4;
const EXPORTER_LABEL: &[u8] = b"EXPORTER-palisade-replication";
/// The client checks a connection this often when no group used it.
const PING_EVERY: Duration = Duration::from_secs(2);
/// How long the listener waits for the next frame (the client pings every 2 s).
const IDLE_LIMIT: Duration = Duration::from_secs(30);
/// The unit holding the address sends its configuration again this often (and at once after
/// every change), so that the passive converges on it.
const CONFIG_RESEND: Duration = Duration::from_secs(30);
/// A paired unit starting up holds back its queue until its first resync with the peer (or
/// this long): a unit coming back must first hear which of its messages the peer took over
/// while it was gone, or it would deliver them a second time.
const START_HOLD: Duration = Duration::from_secs(20);
/// Frames of tracking and audit entries sent per second at most (each of up to
/// `AUDIT_BATCH` entries and `TRACK_BATCH` events), between which groups go first.
const RECORD_ROUNDS: usize = 20;
/// JSON of tracking and audit entries in one frame (well under `MAX_HEADER`).
const RECORDS_BUDGET: usize = 4 << 20;
/// Held originals in one frame (a group waits while they travel; the first goes whatever
/// its size).
const FILES_BUDGET: u64 = 16 << 20;
/// After a failure or a refusal, tracking, audit and quarantine replication waits this long.
const RECORDS_PAUSE: Duration = Duration::from_secs(60);

/// Keeps the longest prefix of `items` whose JSON fits in `budget` (at least one item while
/// nothing was kept before), and takes it from the budget.
fn within<T: Serialize>(items: &mut Vec<T>, budget: &mut usize) {
    let mut keep = 0;
    for it in items.iter() {
        let n = serde_json::to_vec(it).map_or(usize::MAX, |v| v.len() + 1);
        if n > *budget && !(keep == 0 && *budget == RECORDS_BUDGET) {
            break;
        }
        *budget = budget.saturating_sub(n);
        keep += 1;
    }
    items.truncate(keep);
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Frame {
    Group {
        seq: u64,
        messages: Vec<ReplicaRecord>,
        #[serde(default)]
        done: Vec<(String, i64)>,
        #[serde(default)]
        remove: Vec<String>,
    },
    Ack {
        seq: u64,
    },
    Inventory {
        ids: Vec<String>,
    },
    Missing {
        ids: Vec<String>,
        adopted: Vec<String>,
    },
    /// The active unit's configuration (its current revision, as TOML).
    Config {
        revision: i64,
        toml: String,
    },
    /// Whether the listener made it its own configuration (only a passive unit does).
    ConfigAck {
        applied: bool,
    },
    /// Where the peer's copies of our tracking (by our database's identity) and our audit
    /// log stand.
    Cursors {
        origin: String,
    },
    CursorsAre {
        audit_seq: i64,
        audit_hash: Option<String>,
        track: TrackCursor,
        #[serde(default)]
        quarantine: i64,
    },
    /// Our audit entries and tracking events after the cursors; `restart`: our log does not
    /// continue the copy the peer has (it keeps that one and starts another).
    Records {
        origin: String,
        #[serde(default)]
        restart: bool,
        #[serde(default)]
        audit: Vec<ChainEntry>,
        #[serde(default)]
        messages: Vec<TrackRow>,
        #[serde(default)]
        events: Vec<TrackEventRow>,
    },
    RecordsAck {
        audit_seq: i64,
        track: TrackCursor,
    },
    /// Our quarantine rows changed after the cursor (by column name), followed by the held
    /// original of each entry in `files` (id, size), in that order.
    Quarantine {
        origin: String,
        rows: Vec<serde_json::Map<String, serde_json::Value>>,
        #[serde(default)]
        files: Vec<(String, u64)>,
    },
    QuarantineAck {
        changed: i64,
    },
    /// A frame the listener took in full but did not apply (it says why); the connection
    /// stays.
    Refused {
        message: String,
    },
    Ping,
    Pong,
    Error {
        message: String,
    },
    /// A frame of a newer version (no blobs follow: every frame with blobs is known).
    #[serde(other)]
    Unknown,
}

fn write_frame(w: &mut impl Write, f: &Frame) -> io::Result<()> {
    let json = serde_json::to_vec(f).map_err(io::Error::other)?;
    if json.len() > MAX_HEADER {
        return Err(io::Error::other("frame header too large"));
    }
    w.write_all(&(json.len() as u32).to_be_bytes())?;
    w.write_all(&json)
}

fn read_frame(r: &mut impl Read) -> io::Result<Frame> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_HEADER {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame header of {len} bytes"),
        ));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    serde_json::from_slice(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn read_blob_len(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

/// Where the peer is, as the HA process reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    own: IpAddr,
    peer: Option<IpAddr>,
    port: u16,
    dead_time: Duration,
}

type Tls<C> = rustls::StreamOwned<C, TcpStream>;

/// Where the peer's copies of our audit log and tracking stand, as it last said.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    audit_seq: i64,
    restart: bool,
    track: TrackCursor,
    quarantine: i64,
}

struct Conn {
    tls: Tls<rustls::ClientConnection>,
    peer: SocketAddr,
    seq: u64,
    last_used: Instant,
}

pub(crate) struct Replication {
    data: DataDir,
    spool_dir: PathBuf,
    store: ReplicaStore,
    spool: OnceLock<Spool>,
    runner: OnceLock<crate::outbound::Runner>,
    runtime: tokio::runtime::Handle,
    target: Mutex<Option<Target>>,
    conn: Mutex<Option<Conn>>,
    status: Mutex<ReplicationStatus>,
    listening: Mutex<Option<SocketAddr>>,
    serving: AtomicUsize,
    adopting: AtomicBool,
    adopted: AtomicU64,
    unreplicated: AtomicU64,
    /// Whether `conn` holds a connection (read without its lock).
    connected: AtomicBool,
    /// Our state in the pair, as the HA process last reported it.
    ha_state: Mutex<String>,
    /// The configuration revision last sent on the current connection, and when.
    config_sent: Mutex<Option<(i64, Instant)>>,
    /// Applies a configuration revision the peer made current here (the engine's reload).
    on_config: OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// Paired when the engine started (the replication key was there).
    paired_at_start: bool,
    started: Instant,
    resynced: AtomicBool,
    /// The peer's cursors on the current connection (asked after connecting).
    records: Mutex<Option<Cursor>>,
    /// The audit log: ours read to send, the copy of the peer's written when received.
    audit: Mutex<Option<AuditLog>>,
    /// Tracking, audit and quarantine replication waits until then (after a failure).
    records_pause: Mutex<Option<Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn proof(key: &hmac::Key, side: &[u8], exporter: &[u8]) -> hmac::Tag {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(side);
    ctx.update(exporter);
    ctx.sign()
}

/// Checks the other side's proof of the pair key over this session.
fn verify_proof(key: &hmac::Key, side: &[u8], exporter: &[u8], theirs: &[u8]) -> bool {
    let mut msg = side.to_vec();
    msg.extend_from_slice(exporter);
    hmac::verify(key, &msg, theirs).is_ok()
}

fn exporter<D>(conn: &rustls::ConnectionCommon<D>) -> io::Result<[u8; 32]> {
    conn.export_keying_material([0u8; 32], EXPORTER_LABEL, None)
        .map_err(io::Error::other)
}

impl Replication {
    /// Opens the replica store (its recovery runs here) and starts the client thread. The
    /// listener starts when the HA process first says where we are.
    pub(crate) fn open(data: &DataDir) -> Result<Arc<Replication>, crate::EngineError> {
        let store = ReplicaStore::open(data)?;
        let r = Arc::new(Replication {
            data: data.clone(),
            spool_dir: data.spool(),
            store,
            spool: OnceLock::new(),
            runner: OnceLock::new(),
            runtime: tokio::runtime::Handle::current(),
            target: Mutex::new(None),
            conn: Mutex::new(None),
            status: Mutex::new(ReplicationStatus::default()),
            listening: Mutex::new(None),
            serving: AtomicUsize::new(0),
            adopting: AtomicBool::new(false),
            adopted: AtomicU64::new(0),
            unreplicated: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            ha_state: Mutex::new(String::new()),
            config_sent: Mutex::new(None),
            on_config: OnceLock::new(),
            paired_at_start: data.replication_key().exists(),
            started: Instant::now(),
            resynced: AtomicBool::new(false),
            records: Mutex::new(None),
            audit: Mutex::new(None),
            records_pause: Mutex::new(None),
        });
        let weak = Arc::downgrade(&r);
        std::thread::Builder::new()
            .name("replica-client".into())
            .spawn(move || client_loop(weak))
            .map_err(|e| crate::EngineError::Io {
                context: "replication thread".into(),
                source: e,
            })?;
        Ok(r)
    }

    pub(crate) fn set_spool(&self, spool: Spool) {
        let _ = self.spool.set(spool);
    }

    /// Whether the queue runner may deliver what was queued before the engine started (see
    /// [`START_HOLD`]). Mail accepted since is never held.
    pub(crate) fn may_deliver_queue(&self) -> bool {
        !self.paired_at_start
            || self.resynced.load(Ordering::Relaxed)
            || self.started.elapsed() >= START_HOLD
    }

    pub(crate) fn set_on_config(&self, f: Box<dyn Fn() + Send + Sync>) {
        let _ = self.on_config.set(f);
    }

    pub(crate) fn set_runner(&self, runner: crate::outbound::Runner) {
        let _ = self.runner.set(runner);
    }

    fn key(&self) -> io::Result<hmac::Key> {
        let b = std::fs::read(self.data.replication_key())?;
        if b.len() != 32 {
            return Err(io::Error::other(format!(
                "{}: {} bytes, the replication key is 32",
                self.data.replication_key().display(),
                b.len()
            )));
        }
        Ok(hmac::Key::new(hmac::HMAC_SHA256, &b))
    }

    /// What the HA process reported. Starts the listener on our HA address; with `degraded`
    /// queues the peer's replicas (once at a time).
    pub(crate) fn report(
        self: &Arc<Self>,
        state: &str,
        own: IpAddr,
        peer: Option<IpAddr>,
        port: u16,
        dead_time: Duration,
    ) -> ReplicationStatus {
        let target = Target {
            own,
            peer,
            port,
            dead_time,
        };
        {
            let mut t = lock(&self.target);
            if t.as_ref() != Some(&target) {
                tracing::info!(event = "replication.target", own = %own, peer = ?peer, port);
                *t = Some(target.clone());
            }
        }
        *lock(&self.ha_state) = state.to_string();
        self.listen(SocketAddr::new(own, port));
        if state == "degraded" {
            self.adopt_in_background("the peer is gone");
        }
        self.status()
    }

    pub(crate) fn status(&self) -> ReplicationStatus {
        let mut s = lock(&self.status).clone();
        s.peer = lock(&self.target)
            .as_ref()
            .and_then(|t| t.peer.map(|p| SocketAddr::new(p, t.port).to_string()));
        // Never the connection's lock: a group may hold it for seconds, and this answers the
        // HA process's health report, which must not wait on the peer.
        s.connected = self.connected.load(Ordering::Relaxed);
        s.unreplicated = self.unreplicated.load(Ordering::Relaxed);
        s.replicas = self.store.count() as u64;
        s.adopted = self.adopted.load(Ordering::Relaxed);
        s
    }

    /// Forgets the connection (the caller holds its lock) and says so to `status()`.
    fn drop_conn(&self, guard: &mut MutexGuard<'_, Option<Conn>>) {
        **guard = None;
        self.connected.store(false, Ordering::Relaxed);
    }

    fn set_error(&self, e: impl std::fmt::Display) {
        lock(&self.status).error = Some(e.to_string());
    }

    /// The pair is dissolved (`palisade ha unpair`): no peer to send to until the HA process
    /// reports one again. (The listener stays; without the key it serves nobody.)
    pub(crate) fn dissolve(&self) {
        *lock(&self.target) = None;
        self.drop_conn(&mut lock(&self.conn));
        lock(&self.ha_state).clear();
    }

    /// Queues every replica now; with `quarantine` (`palisade ha unpair`: the peer is gone for
    /// good) the peer's held messages become ours too. Not at a failover: a unit that comes
    /// back still holds them, and a release on both would deliver twice. Returns how many
    /// messages were queued.
    pub(crate) async fn adopt(
        self: &Arc<Self>,
        why: &str,
        quarantine: bool,
    ) -> Result<usize, String> {
        let Some(spool) = self.spool.get() else {
            return Err("the spool is not open yet".into());
        };
        let n = spool
            .adopt_replicas(&self.store)
            .await
            .map_err(|e| e.to_string())?;
        let held = if quarantine {
            self.adopt_quarantine(spool)?
        } else {
            0
        };
        if held > 0 {
            tracing::warn!(
                event = "replication.quarantine_adopted",
                entries = held,
                reason = why,
                "the peer's held messages are in this unit's quarantine"
            );
        }
        if n > 0 {
            self.adopted.fetch_add(n as u64, Ordering::Relaxed);
            if let Some(r) = self.runner.get() {
                r.wake();
            }
            tracing::warn!(
                event = "replication.adopted",
                messages = n,
                reason = why,
                "the peer's replicated messages are queued for delivery here"
            );
        }
        Ok(n)
    }

    fn adopt_in_background(self: &Arc<Self>, why: &'static str) -> bool {
        if self.adopting.swap(true, Ordering::AcqRel) {
            return false;
        }
        let me = self.clone();
        self.runtime.spawn(async move {
            if let Err(e) = me.adopt(why, false).await {
                tracing::error!(event = "replication.adopt_failed", error = %e);
            }
            me.adopting.store(false, Ordering::Release);
        });
        true
    }

    // ---- client side ----

    fn connect(&self, target: &Target, peer: IpAddr) -> io::Result<Conn> {
        let key = self.key()?;
        let addr = SocketAddr::new(peer, target.port);
        let tcp = TcpStream::connect_timeout(&addr, target.dead_time)?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(target.dead_time))?;
        tcp.set_write_timeout(Some(target.dead_time))?;
        let name = rustls::pki_types::ServerName::try_from("palisade-replication")
            .map_err(io::Error::other)?;
        let conn = rustls::ClientConnection::new(crate::tls::replication_client(), name)
            .map_err(io::Error::other)?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        let exp = exporter(&*tls.conn)?;
        tls.write_all(proof(&key, b"client", &exp).as_ref())?;
        tls.flush()?;
        let mut theirs = [0u8; 32];
        tls.read_exact(&mut theirs)?;
        if !verify_proof(&key, b"server", &exp, &theirs) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{addr} did not prove the pair key"),
            ));
        }
        Ok(Conn {
            tls,
            peer: addr,
            seq: 0,
            last_used: Instant::now(),
        })
    }

    /// Sends one group and waits for its ack.
    fn send_group(&self, c: &mut Conn, g: &GroupChanges) -> io::Result<()> {
        c.seq += 1;
        let seq = c.seq;
        let frame = Frame::Group {
            seq,
            messages: g.records.clone(),
            done: g.done.clone(),
            remove: g.remove.clone(),
        };
        {
            let mut w = BufWriter::with_capacity(64 * 1024, &mut c.tls);
            write_frame(&mut w, &frame)?;
            for r in &g.records {
                for a in &r.artifacts {
                    let path = palisade_spool::artifact_path(&self.spool_dir, &r.id, a.n);
                    w.write_all(&a.size.to_be_bytes())?;
                    let sent = read_chunks(&path, |chunk| w.write_all(chunk))?;
                    if sent != a.size {
                        return Err(io::Error::other(format!(
                            "{}: {sent} bytes, {} recorded",
                            path.display(),
                            a.size
                        )));
                    }
                }
            }
            w.flush()?;
        }
        c.last_used = Instant::now();
        match read_frame(&mut c.tls)? {
            Frame::Ack { seq: s } if s == seq => {
                lock(&self.status).last_ack_ms = Some(palisade_store::now_unix_ms());
                Ok(())
            }
            Frame::Error { message } => {
                Err(io::Error::other(format!("the peer refused: {message}")))
            }
            other => Err(io::Error::other(format!("unexpected answer {other:?}"))),
        }
    }

    /// After connecting: our inventory, then what the peer lacks, in groups. Messages the
    /// peer adopted while we were gone leave our queue.
    fn resync(&self) -> io::Result<()> {
        let Some(spool) = self.spool.get() else {
            return Ok(());
        };
        let (missing, adopted) = {
            let mut guard = lock(&self.conn);
            let Some(c) = guard.as_mut() else {
                return Ok(());
            };
            let ids = lock(spool.db()).queue_ids().map_err(io::Error::other)?;
            // Counted from here: anything accepted after this is sent as a group.
            self.unreplicated.store(0, Ordering::Relaxed);
            write_frame(&mut c.tls, &Frame::Inventory { ids })?;
            c.tls.flush()?;
            match read_frame(&mut c.tls)? {
                Frame::Missing { ids, adopted } => (ids, adopted),
                other => return Err(io::Error::other(format!("unexpected answer {other:?}"))),
            }
        };
        if !adopted.is_empty() {
            self.runtime.block_on(self.drop_adopted(spool, &adopted));
        }
        let mut sent = 0;
        for chunk in missing.chunks(RESYNC_CHUNK) {
            let records: Vec<ReplicaRecord> = {
                let db = lock(spool.db());
                chunk
                    .iter()
                    .filter_map(|id| db.replica_record_of(id).ok().flatten())
                    .filter(|r| !r.recipients.is_empty())
                    .collect()
            };
            if records.is_empty() {
                continue;
            }
            let n = records.len();
            let g = GroupChanges {
                records,
                ..Default::default()
            };
            let mut guard = lock(&self.conn);
            let Some(c) = guard.as_mut() else {
                return Err(io::Error::other("connection lost during the resync"));
            };
            if let Err(e) = self.send_group(c, &g) {
                self.drop_conn(&mut guard);
                return Err(e);
            }
            sent += n;
        }
        tracing::info!(
            event = "replication.resynced",
            sent,
            peer_adopted = adopted.len()
        );
        Ok(())
    }

    /// The peer took these over while we were gone: they leave our queue (it delivers them).
    async fn drop_adopted(&self, spool: &Spool, ids: &[String]) {
        let messages: Vec<_> = {
            let db = lock(spool.db());
            ids.iter()
                .filter_map(|id| db.message(id).ok().flatten())
                .collect()
        };
        if messages.is_empty() {
            return;
        }
        let batch = Batch {
            remove: messages.iter().map(|m| m.id.clone()).collect(),
            events: messages
                .iter()
                .map(|m| Event {
                    queue_id: m.id.clone(),
                    event: "adopted_by_peer".into(),
                    rcpt: None,
                    detail: "the peer unit delivers it: it took the message over while this unit was gone".into(),
                    status: Some("taken over by the peer".into()),
                })
                .collect(),
            ..Default::default()
        };
        match spool.commit(batch).await {
            Ok(()) => {
                for m in &messages {
                    spool.remove_message(m);
                }
                tracing::warn!(
                    event = "replication.peer_adopted",
                    messages = messages.len()
                );
            }
            Err(e) => tracing::error!(event = "replication.peer_adopted_failed", error = %e),
        }
    }

    /// On the unit holding the address: sends its configuration when the peer has not had
    /// this revision yet (on every new connection, and after every change).
    fn send_config(&self) -> io::Result<()> {
        if !matches!(lock(&self.ha_state).as_str(), "active" | "degraded") {
            return Ok(());
        }
        let rev = palisade_store::ConfigStore::open(&self.data.config_db())
            .and_then(|s| s.current())
            .map_err(io::Error::other)?;
        let Some(rev) = rev else { return Ok(()) };
        // Again every CONFIG_RESEND too: a change made on the passive meanwhile is undone.
        if lock(&self.config_sent)
            .is_some_and(|(id, at)| id == rev.id && at.elapsed() < CONFIG_RESEND)
        {
            return Ok(());
        }
        let mut guard = lock(&self.conn);
        let Some(c) = guard.as_mut() else {
            return Ok(());
        };
        let res = write_frame(
            &mut c.tls,
            &Frame::Config {
                revision: rev.id,
                toml: rev.config.to_toml(),
            },
        )
        .and_then(|_| c.tls.flush())
        .and_then(|_| read_frame(&mut c.tls));
        match res {
            Ok(Frame::ConfigAck { applied }) => {
                c.last_used = Instant::now();
                *lock(&self.config_sent) = Some((rev.id, Instant::now()));
                if applied {
                    tracing::info!(event = "replication.config_sent", revision = rev.id);
                }
                Ok(())
            }
            Ok(other) => {
                self.drop_conn(&mut guard);
                Err(io::Error::other(format!("unexpected answer {other:?}")))
            }
            Err(e) => {
                self.drop_conn(&mut guard);
                Err(e)
            }
        }
    }

    fn with_audit<T>(
        &self,
        f: impl FnOnce(&mut AuditLog) -> palisade_store::Result<T>,
    ) -> io::Result<T> {
        let mut g = lock(&self.audit);
        let log = match g.take() {
            Some(log) => g.insert(log),
            None => g.insert(AuditLog::open(&self.data.audit_db()).map_err(io::Error::other)?),
        };
        f(log).map_err(io::Error::other)
    }

    /// One question and its answer on the connection; a failure drops it.
    fn ask(&self, frame: &Frame) -> io::Result<Frame> {
        self.ask_with(frame, &[])
    }

    /// One question with files after it (each u64 length + bytes), and its answer.
    fn ask_with(&self, frame: &Frame, files: &[(PathBuf, u64)]) -> io::Result<Frame> {
        let mut guard = lock(&self.conn);
        let Some(c) = guard.as_mut() else {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "no connection to the peer",
            ));
        };
        let send = |c: &mut Conn| -> io::Result<()> {
            let mut w = BufWriter::with_capacity(64 * 1024, &mut c.tls);
            write_frame(&mut w, frame)?;
            for (path, size) in files {
                w.write_all(&size.to_be_bytes())?;
                let sent = read_chunks(path, |chunk| w.write_all(chunk))?;
                if sent != *size {
                    return Err(io::Error::other(format!(
                        "{}: {sent} bytes, {size} announced",
                        path.display()
                    )));
                }
            }
            w.flush()
        };
        let res = send(c).and_then(|_| read_frame(&mut c.tls));
        match res {
            Ok(Frame::Error { message }) => {
                self.drop_conn(&mut guard);
                Err(io::Error::other(format!("the peer refused: {message}")))
            }
            Ok(f) => {
                c.last_used = Instant::now();
                Ok(f)
            }
            Err(e) => {
                self.drop_conn(&mut guard);
                Err(e)
            }
        }
    }

    /// Sends the peer our audit entries and tracking events it does not have yet (both units
    /// do, whatever their state): the copies the survivor of a failover keeps of the other.
    fn send_records(&self) -> io::Result<()> {
        if lock(&self.records_pause).is_some_and(|until| Instant::now() < until) {
            return Ok(());
        }
        let res = self.send_records_now();
        if let Err(e) = &res {
            // Not again for a while: a peer that cannot take them (an older version, a
            // refusal) must not cost a reconnect and a resync every second.
            *lock(&self.records_pause) = Some(Instant::now() + RECORDS_PAUSE);
            *lock(&self.records) = None;
            tracing::warn!(event = "replication.records_paused", error = %e,
                pause_secs = RECORDS_PAUSE.as_secs(),
                "tracking, audit and quarantine replication pauses; the queue's does not");
        }
        res
    }

    fn send_records_now(&self) -> io::Result<()> {
        let Some(spool) = self.spool.get() else {
            return Ok(());
        };
        let origin = lock(spool.db()).instance_id().map_err(io::Error::other)?;
        for _ in 0..RECORD_ROUNDS {
            let known = *lock(&self.records);
            let mut cursor = match known {
                Some(c) => c,
                None => self.ask_cursors(spool, &origin)?,
            };
            let (mut messages, mut events, mut held) = {
                let db = lock(spool.db());
                let (m, e) = db
                    .own_track_after(cursor.track, TRACK_BATCH)
                    .map_err(io::Error::other)?;
                let q = db
                    .own_quarantine_after(cursor.quarantine, QUARANTINE_BATCH)
                    .map_err(io::Error::other)?;
                (m, e, q)
            };
            let mut audit = self.with_audit(|a| a.chain_after(cursor.audit_seq, AUDIT_BATCH))?;
            if audit.is_empty() && events.is_empty() && messages.is_empty() && held.is_empty() {
                *lock(&self.records) = Some(cursor);
                return Ok(());
            }
            if !held.is_empty() {
                // The originals of the entries still held go along, at most FILES_BUDGET
                // bytes a frame (the first always: a group waits while it travels). One gone
                // meanwhile goes without: its row follows with its new state.
                let mut files: Vec<(String, PathBuf, u64)> = Vec::new();
                let mut bytes = 0u64;
                let mut keep = 0;
                for r in &held {
                    let file = (r.state == "held")
                        .then(|| self.data.quarantine().join(&r.id))
                        .and_then(|p| std::fs::metadata(&p).ok().map(|m| (p, m.len())));
                    let size = file.as_ref().map_or(0, |f| f.1);
                    if keep > 0 && bytes + size > FILES_BUDGET {
                        break;
                    }
                    bytes += size;
                    keep += 1;
                    if let Some((p, n)) = file {
                        files.push((r.id.clone(), p, n));
                    }
                }
                held.truncate(keep);
                let answer = self.ask_with(
                    &Frame::Quarantine {
                        origin: origin.clone(),
                        rows: held.into_iter().map(|r| r.columns).collect(),
                        files: files.iter().map(|(id, _, n)| (id.clone(), *n)).collect(),
                    },
                    &files
                        .into_iter()
                        .map(|(_, p, n)| (p, n))
                        .collect::<Vec<_>>(),
                )?;
                match answer {
                    Frame::QuarantineAck { changed } => cursor.quarantine = changed,
                    other => return self.refused(other),
                }
                *lock(&self.records) = Some(cursor);
            }
            if audit.is_empty() && events.is_empty() && messages.is_empty() {
                continue;
            }
            // At most RECORDS_BUDGET bytes of JSON a frame (the first entry always).
            let mut budget = RECORDS_BUDGET;
            within(&mut audit, &mut budget);
            within(&mut messages, &mut budget);
            within(&mut events, &mut budget);
            let answer = self.ask(&Frame::Records {
                origin: origin.clone(),
                restart: cursor.restart,
                audit,
                messages,
                events,
            })?;
            let Frame::RecordsAck { audit_seq, track } = answer else {
                return self.refused(answer);
            };
            *lock(&self.records) = Some(Cursor {
                audit_seq,
                restart: false,
                track,
                quarantine: cursor.quarantine,
            });
        }
        Ok(())
    }

    /// Where the peer's copies stand, and from where ours continue them.
    fn ask_cursors(&self, spool: &Spool, origin: &str) -> io::Result<Cursor> {
        let answer = self.ask(&Frame::Cursors {
            origin: origin.to_string(),
        })?;
        let Frame::CursorsAre {
            audit_seq,
            audit_hash,
            track,
            quarantine,
        } = answer
        else {
            return self.refused(answer);
        };
        // The copy continues our log only if its newest entry is ours.
        let ours = self.with_audit(|a| a.hash_of(audit_seq))?;
        let continues = audit_seq == 0 || (ours.is_some() && ours == audit_hash);
        let (own_track, own_quarantine) = {
            let db = lock(spool.db());
            (
                db.own_track_head().map_err(io::Error::other)?,
                db.own_quarantine_head().map_err(io::Error::other)?,
            )
        };
        Ok(Cursor {
            audit_seq: if continues { audit_seq } else { 0 },
            restart: !continues,
            // Ahead of what we wrote: our database is new; all of it.
            track: if track.event <= own_track.event && track.changed <= own_track.changed {
                track
            } else {
                TrackCursor::default()
            },
            quarantine: if quarantine <= own_quarantine {
                quarantine
            } else {
                0
            },
        })
    }

    /// An answer that is not the ack: the peer refused (the connection stays) or spoke out of
    /// turn (the connection goes).
    fn refused<T>(&self, answer: Frame) -> io::Result<T> {
        if let Frame::Refused { message } = answer {
            return Err(io::Error::other(format!("the peer refused: {message}")));
        }
        self.drop_conn(&mut lock(&self.conn));
        Err(io::Error::other(format!("unexpected answer {answer:?}")))
    }

    /// Keeps the peer's audit entries and tracking events; returns the new cursors.
    fn receive_records(
        &self,
        origin: &str,
        restart: bool,
        audit: &[ChainEntry],
        messages: &[TrackRow],
        events: &[TrackEventRow],
    ) -> io::Result<(i64, TrackCursor)> {
        let Some(spool) = self.spool.get() else {
            return Err(io::Error::other("the spool is not open yet"));
        };
        if audit.len() > AUDIT_BATCH as usize
            || events.len() > TRACK_BATCH as usize
            || messages.len() > TRACK_BATCH as usize
        {
            return Err(io::Error::other("too many records in one frame"));
        }
        let head = self.with_audit(|a| {
            let before = a.peer_head()?;
            if audit.is_empty() {
                return Ok(before);
            }
            let head = a.peer_append(audit, restart)?;
            if head.chain != before.chain && before.chain != 0 {
                // Evidence kept: the old copy stays as it was received.
                a.append(
                    "ha-peer",
                    "",
                    "ha.peer_audit_restarted",
                    &head.chain.to_string(),
                    &serde_json::json!({
                        "previous_chain": before.chain,
                        "previous_entries": before.seq,
                        "why": "the peer's audit log no longer continues the copy kept here \
                                (a new log, or entries changed after they were sent)",
                    }),
                )?;
            }
            Ok(head)
        })?;
        let track = if events.is_empty() && messages.is_empty() {
            lock(spool.db()).peer_track_cursor(origin)
        } else {
            lock(spool.db()).peer_track_apply(origin, messages, events)
        }
        .map_err(io::Error::other)?;
        Ok((head.seq, track))
    }

    /// Reads the held originals that follow a quarantine frame into
    /// `DIR/peer-quarantine/<id>.part`, each fsync'd. An error here ends the connection (the
    /// stream is no longer in step).
    fn receive_quarantine_files(
        &self,
        r: &mut impl Read,
        rows: &[serde_json::Map<String, serde_json::Value>],
        files: &[(String, u64)],
    ) -> io::Result<Vec<String>> {
        if rows.len() > QUARANTINE_BATCH as usize || files.len() > rows.len() {
            return Err(io::Error::other("too many quarantine rows in one frame"));
        }
        let dir = self.data.peer_quarantine();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        let mut received = Vec::new();
        for (id, size) in files {
            let announced = read_blob_len(r)?;
            if !is_quarantine_id(id) || announced != *size || *size > MAX_BLOB {
                return Err(io::Error::other(format!(
                    "held original '{}': {announced} bytes announced, {size} listed",
                    id.chars().take(80).collect::<String>()
                )));
            }
            let tmp = dir.join(format!("{id}.part"));
            let mut f = std::fs::File::create(&tmp)?;
            let copied = io::copy(&mut r.take(*size), &mut f)?;
            if copied != *size {
                let _ = std::fs::remove_file(&tmp);
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "held original cut short",
                ));
            }
            f.sync_all()?;
            received.push(id.clone());
        }
        Ok(received)
    }

    /// Puts the received originals in place (fsync'd with their directory) and commits the
    /// peer's quarantine rows; the original of an entry no longer held goes. Returns the new
    /// cursor.
    fn apply_quarantine(
        &self,
        origin: &str,
        rows: &[serde_json::Map<String, serde_json::Value>],
        received: Vec<String>,
    ) -> io::Result<i64> {
        let Some(spool) = self.spool.get() else {
            return Err(io::Error::other("the spool is not open yet"));
        };
        let dir = self.data.peer_quarantine();
        for id in &received {
            std::fs::rename(dir.join(format!("{id}.part")), dir.join(id))?;
        }
        std::fs::File::open(&dir)?.sync_all()?;
        let changed = lock(spool.db())
            .peer_quarantine_apply(origin, rows)
            .map_err(io::Error::other)?;
        for row in rows {
            let (Some(id), Some(state)) = (
                row.get("id").and_then(|v| v.as_str()),
                row.get("state").and_then(|v| v.as_str()),
            ) else {
                continue;
            };
            if state != "held" && is_quarantine_id(id) {
                let _ = std::fs::remove_file(dir.join(id));
            }
        }
        Ok(changed)
    }

    /// The peer's held entries kept here become ours (adoption): each original hard-linked
    /// into `DIR/quarantine/`, the directory fsync'd, then the rows in one transaction.
    fn adopt_quarantine(&self, spool: &Spool) -> Result<usize, String> {
        let ids = lock(spool.db())
            .peer_quarantine_held()
            .map_err(|e| e.to_string())?;
        if ids.is_empty() {
            return Ok(0);
        }
        let (from, to) = (self.data.peer_quarantine(), self.data.quarantine());
        let mut linked = Vec::new();
        for id in ids {
            let target = to.join(&id);
            match std::fs::hard_link(from.join(&id), &target) {
                Ok(()) => linked.push(id),
                Err(_) if target.exists() => linked.push(id),
                Err(e) => {
                    tracing::error!(event = "replication.quarantine_adopt_missing", id = %id, error = %e,
                    "the peer's held original never arrived: the entry cannot be adopted")
                }
            }
        }
        std::fs::File::open(&to)
            .and_then(|d| d.sync_all())
            .map_err(|e| e.to_string())?;
        let taken = lock(spool.db())
            .peer_quarantine_adopt(&linked)
            .map_err(|e| e.to_string())?;
        for id in &taken {
            let _ = std::fs::remove_file(from.join(id));
        }
        Ok(taken.len())
    }

    /// On a passive unit: the active's configuration becomes ours (with our own identity and
    /// listeners), as a new revision, audited, and applied. Returns whether it changed
    /// anything.
    fn receive_config(&self, revision: i64, toml: &str, from: &str) -> Result<bool, String> {
        if lock(&self.ha_state).as_str() != "passive" {
            return Ok(false);
        }
        let theirs = palisade_store::Config::from_toml(toml).map_err(|p| {
            p.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let mut store =
            palisade_store::ConfigStore::open(&self.data.config_db()).map_err(|e| e.to_string())?;
        let Some(local) = store.current().map_err(|e| e.to_string())? else {
            return Ok(false);
        };
        let merged = theirs.replicated_onto(&local.config);
        if merged.to_toml() == local.config.to_toml() {
            return Ok(false);
        }
        let mut audit =
            palisade_store::AuditLog::open(&self.data.audit_db()).map_err(|e| e.to_string())?;
        let rev = store
            .commit_audited(
                &mut audit,
                &merged,
                "ha-peer",
                from,
                &format!("replicated from the active unit of the pair (its revision {revision})"),
                Some(local.id),
            )
            .map_err(|e| e.to_string())?;
        tracing::info!(
            event = "replication.config_applied",
            revision = rev.id,
            peer_revision = revision
        );
        if let Some(f) = self.on_config.get() {
            f();
        }
        Ok(true)
    }

    fn ping(&self) {
        let mut guard = lock(&self.conn);
        let Some(c) = guard.as_mut() else { return };
        if c.last_used.elapsed() < PING_EVERY {
            return;
        }
        let ok = write_frame(&mut c.tls, &Frame::Ping)
            .and_then(|_| c.tls.flush())
            .and_then(|_| read_frame(&mut c.tls))
            .map(|f| matches!(f, Frame::Pong));
        match ok {
            Ok(true) => c.last_used = Instant::now(),
            Ok(false) | Err(_) => {
                tracing::warn!(event = "replication.disconnected", peer = %c.peer);
                self.drop_conn(&mut guard);
            }
        }
    }

    // ---- listening side ----

    fn listen(self: &Arc<Self>, addr: SocketAddr) {
        let mut l = lock(&self.listening);
        if *l == Some(addr) {
            return;
        }
        let listener = match TcpListener::bind(addr) {
            Ok(l) => l,
            Err(e) => {
                self.set_error(format!("listen on {addr}: {e}"));
                return;
            }
        };
        tracing::info!(event = "replication.listening", addr = %addr);
        *l = Some(addr);
        let weak = Arc::downgrade(self);
        let _ = std::thread::Builder::new()
            .name("replica-listen".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    let Some(me) = weak.upgrade() else { return };
                    if *lock(&me.listening) != Some(addr) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    if me.serving.fetch_add(1, Ordering::AcqRel) >= MAX_PEER_CONNECTIONS {
                        me.serving.fetch_sub(1, Ordering::AcqRel);
                        continue;
                    }
                    let _ = std::thread::Builder::new()
                        .name("replica-serve".into())
                        .spawn(move || {
                            let from = stream.peer_addr().ok();
                            if let Err(e) = me.serve(stream)
                                && e.kind() != io::ErrorKind::UnexpectedEof
                            {
                                tracing::warn!(event = "replication.peer_connection", from = ?from, error = %e);
                            }
                            me.serving.fetch_sub(1, Ordering::AcqRel);
                        });
                }
            });
    }

    fn serve(&self, tcp: TcpStream) -> io::Result<()> {
        let key = self.key()?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        tcp.set_write_timeout(Some(Duration::from_secs(10)))?;
        tcp.set_nodelay(true)?;
        let config = crate::tls::replication_server().map_err(io::Error::other)?;
        let conn = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        let exp = exporter(&*tls.conn)?;
        let mut theirs = [0u8; 32];
        tls.read_exact(&mut theirs)?;
        if !verify_proof(&key, b"client", &exp, &theirs) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the client did not prove the pair key",
            ));
        }
        tls.write_all(proof(&key, b"server", &exp).as_ref())?;
        tls.flush()?;
        tls.sock.set_read_timeout(Some(IDLE_LIMIT))?;
        tracing::info!(event = "replication.peer_connected", from = ?tls.sock.peer_addr().ok());
        let mut r = BufReader::with_capacity(64 * 1024, tls);
        loop {
            let frame = read_frame(&mut r)?;
            let answer = match frame {
                Frame::Ping => Frame::Pong,
                Frame::Group {
                    seq,
                    messages,
                    done,
                    remove,
                } => match self.receive_group(&mut r, &messages, done, remove) {
                    Ok(()) => Frame::Ack { seq },
                    Err(e) => {
                        let message = e.to_string();
                        let _ = write_frame(
                            r.get_mut(),
                            &Frame::Error {
                                message: message.clone(),
                            },
                        );
                        let _ = r.get_mut().flush();
                        return Err(io::Error::other(message));
                    }
                },
                Frame::Cursors { origin } => {
                    let head = self.with_audit(|a| a.peer_head())?;
                    let track = match self.spool.get() {
                        Some(spool) => lock(spool.db())
                            .peer_track_cursor(&origin)
                            .map_err(io::Error::other)?,
                        None => TrackCursor::default(),
                    };
                    let quarantine = match self.spool.get() {
                        Some(spool) => lock(spool.db())
                            .peer_quarantine_cursor(&origin)
                            .map_err(io::Error::other)?,
                        None => 0,
                    };
                    Frame::CursorsAre {
                        audit_seq: head.seq,
                        audit_hash: head.hash,
                        track,
                        quarantine,
                    }
                }
                Frame::Records {
                    origin,
                    restart,
                    audit,
                    messages,
                    events,
                } => match self.receive_records(&origin, restart, &audit, &messages, &events) {
                    Ok((audit_seq, track)) => Frame::RecordsAck { audit_seq, track },
                    Err(e) => {
                        tracing::warn!(event = "replication.records_refused", error = %e);
                        Frame::Refused {
                            message: e.to_string(),
                        }
                    }
                },
                Frame::Unknown => Frame::Refused {
                    message: "unknown frame (this unit runs an older version)".into(),
                },
                Frame::Quarantine {
                    origin,
                    rows,
                    files,
                } => {
                    // The files first, whatever happens to the rows: the stream stays in step.
                    let received = self.receive_quarantine_files(&mut r, &rows, &files)?;
                    match self.apply_quarantine(&origin, &rows, received) {
                        Ok(changed) => Frame::QuarantineAck { changed },
                        Err(e) => {
                            tracing::warn!(event = "replication.quarantine_refused", error = %e);
                            Frame::Refused {
                                message: e.to_string(),
                            }
                        }
                    }
                }
                Frame::Inventory { ids } => {
                    let (ids, adopted) = self.store.inventory(&ids).map_err(io::Error::other)?;
                    Frame::Missing { ids, adopted }
                }
                Frame::Config { revision, toml } => {
                    let from = r
                        .get_ref()
                        .sock
                        .peer_addr()
                        .map(|a| a.ip().to_string())
                        .unwrap_or_default();
                    match self.receive_config(revision, &toml, &from) {
                        Ok(applied) => Frame::ConfigAck { applied },
                        Err(e) => {
                            tracing::error!(event = "replication.config_refused", peer_revision = revision, error = %e);
                            Frame::ConfigAck { applied: false }
                        }
                    }
                }
                other => {
                    return Err(io::Error::other(format!("unexpected frame {other:?}")));
                }
            };
            write_frame(r.get_mut(), &answer)?;
            r.get_mut().flush()?;
        }
    }

    fn receive_group(
        &self,
        r: &mut impl Read,
        messages: &[ReplicaRecord],
        done: Vec<(String, i64)>,
        remove: Vec<String>,
    ) -> io::Result<()> {
        let mut kept: Vec<&ReplicaRecord> = Vec::new();
        let mut files = Vec::new();
        for m in messages {
            let problems = m.problems();
            if !problems.is_empty() {
                return Err(io::Error::other(format!(
                    "record {}: {}",
                    m.id,
                    problems.join("; ")
                )));
            }
            let have = self.store.has(&m.id).map_err(io::Error::other)?;
            for a in &m.artifacts {
                let len = read_blob_len(r)?;
                if len != a.size || len > MAX_BLOB {
                    return Err(io::Error::other(format!(
                        "{} content file {}: {len} bytes announced, {} recorded",
                        m.id, a.n, a.size
                    )));
                }
                let mut limited = r.take(len);
                if have {
                    io::copy(&mut limited, &mut io::sink())?;
                    continue;
                }
                let mut f = self
                    .store
                    .create_file(&m.id, a.n)
                    .map_err(io::Error::other)?;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = limited.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    f.write(&buf[..n])?;
                }
                files.push((f, a.size, a.sha256.clone()));
            }
            if !have {
                kept.push(m);
            }
        }
        for (f, size, sha) in files {
            f.finish(size, &sha).map_err(io::Error::other)?;
        }
        self.store
            .commit(&ReplicaChanges {
                records: kept,
                done,
                remove,
            })
            .map_err(io::Error::other)
    }
}

impl Replicate for Replication {
    fn replicate(&self, batches: &[&Batch]) {
        let paired = lock(&self.target)
            .as_ref()
            .is_some_and(|t| t.peer.is_some());
        if !paired {
            return;
        }
        let g = GroupChanges::of(batches);
        if g.is_empty() {
            return;
        }
        let mut guard = lock(&self.conn);
        let Some(c) = guard.as_mut() else {
            self.unreplicated
                .fetch_add(g.records.len() as u64, Ordering::Relaxed);
            return;
        };
        if let Err(e) = self.send_group(c, &g) {
            tracing::warn!(event = "replication.group_failed", peer = %c.peer, error = %e,
                "answering alone: the peer did not acknowledge the group");
            self.drop_conn(&mut guard);
            self.unreplicated
                .fetch_add(g.records.len() as u64, Ordering::Relaxed);
            drop(guard);
            self.set_error(e);
        }
    }
}

/// Every second: connect when there is a peer and no connection (then resync), ping an idle
/// connection, drop it when the peer is gone from the report.
fn client_loop(me: std::sync::Weak<Replication>) {
    let mut last_error: Option<String> = None;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let Some(me) = me.upgrade() else { return };
        let target = lock(&me.target).clone();
        let Some((target, peer)) = target.and_then(|t| t.peer.map(|p| (t, p))) else {
            me.drop_conn(&mut lock(&me.conn));
            continue;
        };
        if lock(&me.conn).is_some() {
            if let Err(e) = me.send_config() {
                tracing::warn!(event = "replication.config_send_failed", error = %e);
            }
            if let Err(e) = me.send_records() {
                tracing::warn!(event = "replication.records_failed", error = %e);
            }
            me.ping();
            continue;
        }
        match me.connect(&target, peer) {
            Ok(c) => {
                tracing::info!(event = "replication.connected", peer = %c.peer);
                *lock(&me.conn) = Some(c);
                me.connected.store(true, Ordering::Relaxed);
                *lock(&me.config_sent) = None;
                *lock(&me.records) = None;
                lock(&me.status).error = None;
                last_error = None;
                if let Err(e) = me.resync() {
                    tracing::warn!(event = "replication.resync_failed", error = %e);
                    me.drop_conn(&mut lock(&me.conn));
                    me.set_error(format!("resync: {e}"));
                }
            }
            Err(e) => {
                let text = e.to_string();
                if last_error.as_deref() != Some(&text) {
                    tracing::warn!(event = "replication.connect_failed", peer = %peer, error = %text);
                }
                me.set_error(&text);
                last_error = Some(text);
            }
        }
    }
}
