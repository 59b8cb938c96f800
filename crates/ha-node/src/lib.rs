//! `palisade ha`: one unit's side of an active/passive pair (ARCHITECTURE.md, "High
//! availability"). Started by the supervisor as `palisade-ha` with `CAP_NET_ADMIN` and
//! `CAP_NET_RAW` only, when `DIR/ha/pair.toml` exists.
//!
//! One loop owns the state machine (crate `palisade-ha`). Every interval it reports the
//! engine's health (a ping on its control socket) and the witness (an ICMP echo), ticks the
//! machine, sends our heartbeat to the peer and publishes `DIR/ha/state.json`. Heartbeats from
//! the peer go through the receiver (authentication, replay window) before the machine sees
//! them. The machine's actions are carried out here: the epoch is persisted before the
//! address is added; the address goes on and off through netlink; every change is logged and
//! audited. Every interval the interface is also made to agree with the state (the address is
//! re-added if someone removed it, and removed if we do not hold it), so a failed netlink call
//! is retried rather than believed.

pub mod address;
pub mod announce;
pub mod files;
pub mod pairing;
pub mod witness;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use palisade_control::ha::{Request, Response};
use palisade_ha::pair::{Change, HaStatus, PeerStatus, Refusals};
use palisade_ha::{Action, Event, FRAME_LEN, Machine, Receiver, Refused, Sequence};
use palisade_store::DataDir;
use tokio::net::UdpSocket;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

pub use files::{HaDir, PairError};

#[derive(Debug)]
pub struct HaOptions {
    pub data: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum HaError {
    #[error(transparent)]
    Pair(#[from] PairError),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

use palisade_store::now_unix_ms as now_ms;

/// The unit's standing as the engine hears it every interval (`HaReport`).
#[derive(Debug, Clone, Default)]
struct Reported {
    state: String,
    peer_alive: bool,
    peer_address: Option<IpAddr>,
}

enum Input {
    Health {
        engine: bool,
        witness: Option<bool>,
        revision: i64,
        replication: Option<palisade_ha::pair::ReplicationStatus>,
    },
    Control(Request, tokio::sync::oneshot::Sender<Response>),
}

pub async fn run(opts: HaOptions) -> Result<(), HaError> {
    let data = DataDir::new(&opts.data);
    let dir = HaDir::new(data.ha());
    let settings = dir.settings()?;
    let key = dir.key()?;
    let addresses = address::Addresses::new(&settings.interface, settings.vip, settings.prefix_len)
        .map_err(|e| HaError::Io("netlink".into(), e))?;
    let bind = SocketAddr::new(settings.ha_address, settings.port);
    let udp =
        udp_socket(bind, None).map_err(|e| HaError::Io(format!("heartbeat socket {bind}"), e))?;
    // The second heartbeat path: IPv4 broadcast on the LAN interface, so that a cut HA link
    // alone never makes the passive take over (the witness covers a cut LAN).
    let lan = if settings.vip.is_ipv4() {
        match udp_socket(
            SocketAddr::from(([0, 0, 0, 0], settings.port)),
            Some(&settings.interface),
        ) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(event = "ha.lan_path_unavailable", interface = %settings.interface, error = %e,
                    "heartbeats go over the HA link only");
                None
            }
        }
    } else {
        None
    };
    let interval = Duration::from_millis(settings.interval_ms);

    let (tx, mut rx) = mpsc::channel::<Input>(64);
    let run_dir = data.run();
    let control = palisade_control::server::bind(&palisade_control::ha::socket_in(&run_dir), 0o660)
        .map_err(|e| HaError::Io("ha.sock".into(), e))?;
    let ctl_tx = tx.clone();
    let _server =
        palisade_control::server::serve(control, Default::default(), move |req: Request| {
            let tx = ctl_tx.clone();
            async move {
                let (rtx, rrx) = tokio::sync::oneshot::channel();
                if tx.send(Input::Control(req, rtx)).await.is_err() {
                    return Response::Error {
                        message: "palisade ha is stopping".into(),
                    };
                }
                rrx.await.unwrap_or(Response::Error {
                    message: "palisade ha is stopping".into(),
                })
            }
        });

    // Health reports: engine ping and witness probe, once per interval, off the main loop.
    let engine_sock = data.control_socket();
    let config_db = data.config_db();
    let witness = settings.witness;
    let health_tx = tx.clone();
    // What the engine is told each interval (kept current by `publish`).
    let report = std::sync::Arc::new(std::sync::Mutex::new(Reported::default()));
    let reported = report.clone();
    let (own_address, port, dead_time_ms) = (
        settings.ha_address,
        settings.port.wrapping_add(1).max(1),
        settings.dead_time_ms,
    );
    tokio::spawn(async move {
        let mut seq: u16 = 0;
        let id = (std::process::id() & 0xffff) as u16;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            seq = seq.wrapping_add(1);
            let sock = engine_sock.clone();
            let timeout = interval.max(Duration::from_millis(500));
            let req = {
                let r = reported.lock().unwrap_or_else(|e| e.into_inner());
                palisade_control::engine::ControlRequest::HaReport {
                    state: r.state.clone(),
                    peer_alive: r.peer_alive,
                    own_address,
                    peer_address: r.peer_address,
                    port,
                    dead_time_ms,
                }
            };
            let engine = tokio::task::spawn_blocking(move || {
                palisade_control::engine::report(&sock, &req, timeout)
            });
            // The configuration revision the heartbeats carry: read here, never on the
            // heartbeat loop (opening config.db can wait on its lock).
            let db = config_db.clone();
            let revision = tokio::task::spawn_blocking(move || {
                palisade_store::ConfigStore::open(&db)
                    .ok()
                    .and_then(|s| s.current().ok().flatten())
                    .map(|r| r.id)
                    .unwrap_or(0)
            });
            // A probe fails within half an interval (the isolation margin counts on it).
            let w = match witness {
                Some(w) => Some(witness::probe(w, id, seq, interval / 2).await),
                None => None,
            };
            let answer = engine.await.ok().flatten();
            let engine = answer.as_ref().is_some_and(|a| a.ok);
            let replication = answer.and_then(|a| a.replication);
            let revision = revision.await.unwrap_or(0);
            if health_tx
                .send(Input::Health {
                    engine,
                    witness: w,
                    revision,
                    replication,
                })
                .await
                .is_err()
            {
                return;
            }
        }
    });

    let (mut machine, first) = Machine::new(settings.machine_settings(), dir.epoch(), now_ms());
    let writer = writer(HaDir::new(data.ha()), data);
    let mut node = Node {
        dir,
        revision: 0,
        writer,
        last_refusal_log: None,
        settings,
        addresses,
        peer_address: None,
        refusals: Refusals::default(),
        last_change: None,
        address_error: None,
        link: None,
        report,
        replication: None,
    };
    node.peer_address = node.settings.peer_address;
    node.carry_out(&machine, first).await;

    let mut seq = Sequence::starting_at(now_ms() * 1000);
    let mut receiver = Receiver::new(node.settings.node_id);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The machine is also asked four times per interval whether time ran out (a dead peer is
    // noticed within a quarter interval of its dead time, not a whole one).
    let mut check = tokio::time::interval(interval / 4);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut term = signal(SignalKind::terminate()).map_err(|e| HaError::Io("signal".into(), e))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| HaError::Io("signal".into(), e))?;
    let mut buf = [0u8; 512];
    palisade_control::handoff::notify_ready();
    tracing::info!(event = "ha.started", node = node.settings.node_id, priority = node.settings.priority,
        vip = %node.settings.vip, interface = %node.settings.interface, listen = %bind, epoch = machine.epoch());

    loop {
        let mut announce_now = false;
        tokio::select! {
            _ = tick.tick() => {
                let actions = machine.handle(Event::Tick, now_ms());
                announce_now |= node.carry_out(&machine, actions).await;
                node.reconcile(&machine).await;
                node.send(&udp, lan.as_ref(), &machine, &mut seq, &key).await;
                node.publish(&machine);
            }
            _ = check.tick() => {
                let before = machine.state();
                let actions = machine.handle(Event::Tick, now_ms());
                announce_now |= node.carry_out(&machine, actions).await;
                if machine.state() != before {
                    node.send(&udp, lan.as_ref(), &machine, &mut seq, &key).await;
                    node.publish(&machine);
                }
            }
            got = recv_either(&udp, lan.as_ref(), &mut buf) => {
                let Ok((n, from, on_ha_link)) = got else { continue };
                match receiver.accept(&buf[..n], &key) {
                    Ok(frame) => {
                        let learn = node.peer_address.is_none()
                            || (node.settings.peer_address.is_none() && node.peer_address != Some(from.ip()));
                        if on_ha_link && learn {
                            tracing::info!(event = "ha.peer_address", peer = %from.ip());
                            node.peer_address = Some(from.ip());
                        }
                        let before = machine.state();
                        let actions = machine.handle(Event::Peer(frame), now_ms());
                        announce_now |= node.carry_out(&machine, actions).await;
                        if machine.state() != before {
                            node.send(&udp, lan.as_ref(), &machine, &mut seq, &key).await;
                            node.publish(&machine);
                        }
                    }
                    Err(r) => node.refused(r, from, n),
                }
            }
            input = rx.recv() => {
                let Some(input) = input else { break };
                match input {
                    Input::Health { engine, witness, revision, replication } => {
                        node.revision = revision;
                        node.replication = replication;
                        let before = machine.state();
                        let mut actions = machine.handle(Event::Engine { healthy: engine }, now_ms());
                        if let Some(w) = witness {
                            actions.extend(machine.handle(Event::Witness { reachable: w }, now_ms()));
                        }
                        announce_now |= node.carry_out(&machine, actions).await;
                        // A change the health caused (a fault, a hand-over) reaches the peer now.
                        if machine.state() != before {
                            node.send(&udp, lan.as_ref(), &machine, &mut seq, &key).await;
                            node.publish(&machine);
                        }
                    }
                    Input::Control(Request::Ping, reply) => {
                        let _ = reply.send(Response::Ok { message: machine.state().to_string() });
                    }
                    Input::Control(Request::Failover { actor, source }, reply) => {
                        let before = machine.state();
                        let actions = machine.handle(Event::Failover, now_ms());
                        announce_now |= node.carry_out(&machine, actions).await;
                        let after = machine.state();
                        node.audit(&actor, &source, "ha.failover", &format!("{before} -> {after}"),
                            serde_json::json!({"from": before, "to": after, "epoch": machine.epoch()}));
                        node.send(&udp, lan.as_ref(), &machine, &mut seq, &key).await;
                        node.publish(&machine);
                        let _ = reply.send(if before == after {
                            Response::Error { message: format!("nothing to fail over: this unit is {after}") }
                        } else {
                            Response::Ok { message: format!("this unit went from {before} to {after}") }
                        });
                    }
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
        if announce_now {
            node.publish(&machine);
        }
    }
    // Stopping: a unit that goes away gives the address up so the peer can take it cleanly.
    if machine.state().holds_address()
        && let Err(e) = node.addresses.remove().await
    {
        tracing::error!(event = "ha.address_error", op = "remove", error = %e);
    }
    tracing::info!(event = "ha.stopped", state = %machine.state());
    Ok(())
}

/// A UDP socket with SO_REUSEADDR (the HA-link socket and the LAN socket share the port),
/// bound to `device` when given (SO_BINDTODEVICE, with broadcast allowed).
fn udp_socket(addr: SocketAddr, device: Option<&str>) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
    s.set_reuse_address(true)?;
    if let Some(dev) = device {
        s.bind_device(Some(dev.as_bytes()))?;
        s.set_broadcast(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(std::net::UdpSocket::from(s))
}

/// The next datagram from either socket: (length, sender, came over the HA link).
async fn recv_either(
    ha: &UdpSocket,
    lan: Option<&UdpSocket>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr, bool)> {
    match lan {
        None => ha.recv_from(buf).await.map(|(n, a)| (n, a, true)),
        Some(lan) => {
            let mut other = [0u8; 512];
            tokio::select! {
                r = ha.recv_from(buf) => r.map(|(n, a)| (n, a, true)),
                r = lan.recv_from(&mut other) => r.map(|(n, a)| {
                    let n = n.min(buf.len());
                    buf[..n].copy_from_slice(&other[..n]);
                    (n, a, false)
                }),
            }
        }
    }
}

struct Node {
    dir: HaDir,
    settings: palisade_ha::pair::PairSettings,
    addresses: address::Addresses,
    peer_address: Option<IpAddr>,
    /// What the health task tells the engine (state, peer, its address).
    report: std::sync::Arc<std::sync::Mutex<Reported>>,
    /// The engine's last word on spool replication.
    replication: Option<palisade_ha::pair::ReplicationStatus>,
    refusals: Refusals,
    last_change: Option<Change>,
    address_error: Option<String>,
    link: Option<address::Link>,
    /// The configuration revision in force (read by the health task).
    revision: i64,
    /// Status and audit writes, done in order on a thread of their own: a slow disk or a
    /// locked audit.db must never hold up the heartbeats.
    writer: std::sync::mpsc::Sender<Write>,
    /// When a refused frame was last logged (at most one warning a minute).
    last_refusal_log: Option<std::time::Instant>,
}

enum Write {
    Status(Box<HaStatus>),
    Audit {
        actor: String,
        source: String,
        action: String,
        target: String,
        detail: serde_json::Value,
    },
}

/// The writer thread: statuses coalesced (only the newest queued one is written), audit
/// entries each appended.
fn writer(dir: HaDir, data: DataDir) -> std::sync::mpsc::Sender<Write> {
    let (tx, rx) = std::sync::mpsc::channel::<Write>();
    std::thread::Builder::new()
        .name("ha-writer".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut status = None;
                for w in std::iter::once(first).chain(rx.try_iter()) {
                    match w {
                        Write::Status(s) => status = Some(s),
                        Write::Audit {
                            actor,
                            source,
                            action,
                            target,
                            detail,
                        } => match palisade_store::AuditLog::open(&data.audit_db()) {
                            Ok(mut log) => {
                                if let Err(e) =
                                    log.append(&actor, &source, &action, &target, &detail)
                                {
                                    tracing::error!(event = "ha.audit_error", error = %e);
                                }
                            }
                            Err(e) => tracing::error!(event = "ha.audit_error", error = %e),
                        },
                    }
                }
                if let Some(s) = status
                    && let Err(e) = dir.write_status(&s)
                {
                    tracing::warn!(event = "ha.status_error", error = %e);
                }
            }
        })
        .expect("spawn the ha writer thread");
    tx
}

impl Node {
    /// Carries out the machine's actions in order; true if the state changed.
    async fn carry_out(&mut self, m: &Machine, actions: Vec<Action>) -> bool {
        let mut changed = false;
        for a in actions {
            match a {
                Action::PersistEpoch(e) => {
                    if let Err(err) = self.dir.persist_epoch(e) {
                        tracing::error!(event = "ha.epoch_error", epoch = e, error = %err);
                    }
                }
                Action::AddAddress => match self.addresses.add().await {
                    Ok(link) => {
                        self.link = Some(link);
                        self.address_error = None;
                        tracing::info!(event = "ha.address_added", vip = %self.settings.vip, interface = %self.settings.interface);
                    }
                    Err(e) => {
                        tracing::error!(event = "ha.address_error", op = "add", error = %e);
                        self.address_error = Some(format!("adding {}: {e}", self.settings.vip));
                    }
                },
                Action::RemoveAddress => match self.addresses.remove().await {
                    Ok(()) => {
                        tracing::info!(event = "ha.address_removed", vip = %self.settings.vip)
                    }
                    Err(e) => {
                        tracing::error!(event = "ha.address_error", op = "remove", error = %e);
                        self.address_error = Some(format!("removing {}: {e}", self.settings.vip));
                    }
                },
                Action::Announce => self.announce(),
                Action::Changed { from, to, why } => {
                    changed = true;
                    tracing::info!(event = "ha.state", from = %from, to = %to, why, epoch = m.epoch());
                    self.last_change = Some(Change {
                        from,
                        to,
                        why: why.to_string(),
                        at_ms: now_ms(),
                    });
                    self.audit(
                        "system",
                        "ha",
                        "ha.state",
                        &format!("{from} -> {to}"),
                        serde_json::json!({"from": from, "to": to, "why": why, "epoch": m.epoch(),
                            "peer": self.peer_address.map(|a| a.to_string())}),
                    );
                }
            }
        }
        changed
    }

    /// Gratuitous ARP / unsolicited NA now and twice more, a second apart.
    fn announce(&self) {
        let Some(link) = self.link.clone() else {
            return;
        };
        let vip = self.settings.vip;
        tokio::spawn(async move {
            for i in 0..3 {
                if i > 0 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                let l = link.clone();
                let r =
                    tokio::task::spawn_blocking(move || announce::announce(l.index, l.mac, vip))
                        .await;
                match r {
                    Ok(Ok(())) => tracing::debug!(event = "ha.announced", vip = %vip),
                    Ok(Err(e)) => {
                        tracing::warn!(event = "ha.announce_error", vip = %vip, error = %e)
                    }
                    Err(_) => {}
                }
            }
        });
    }

    /// Makes the interface agree with the state.
    async fn reconcile(&mut self, m: &Machine) {
        let want = m.state().holds_address();
        match self.addresses.present().await {
            Ok(have) if have == want => {}
            Ok(_) if want => {
                tracing::warn!(event = "ha.address_missing", vip = %self.settings.vip);
                if self.addresses.add().await.is_ok() {
                    self.address_error = None;
                    self.announce();
                }
            }
            Ok(_) => {
                tracing::warn!(event = "ha.address_unexpected", vip = %self.settings.vip);
                let _ = self.addresses.remove().await;
            }
            Err(e) => self.address_error = Some(e.to_string()),
        }
    }

    /// One heartbeat, over the HA link to the peer (once its address is known) and as a
    /// broadcast on the LAN: the same frame (one sequence number) on both paths.
    async fn send(
        &self,
        udp: &UdpSocket,
        lan: Option<&UdpSocket>,
        m: &Machine,
        seq: &mut Sequence,
        key: &palisade_ha::PairKey,
    ) {
        let frame = m.frame(seq.advance(), self.revision, 0, now_ms());
        let bytes = frame.encode(key);
        debug_assert_eq!(bytes.len(), FRAME_LEN);
        if let Some(peer) = self.peer_address
            && let Err(e) = udp
                .send_to(&bytes, SocketAddr::new(peer, self.settings.port))
                .await
        {
            tracing::debug!(event = "ha.send_error", peer = %peer, error = %e);
        }
        if let Some(lan) = lan
            && let Err(e) = lan
                .send_to(
                    &bytes,
                    SocketAddr::from(([255, 255, 255, 255], self.settings.port)),
                )
                .await
        {
            tracing::debug!(event = "ha.send_error", path = "lan", error = %e);
        }
    }

    fn refused(&mut self, r: Refused, from: SocketAddr, len: usize) {
        match r {
            Refused::Bad(palisade_ha::FrameError::Forged) => self.refusals.forged += 1,
            Refused::Bad(_) => self.refusals.malformed += 1,
            Refused::Stale { .. } => self.refusals.stale += 1,
            Refused::OwnFrame => self.refusals.own += 1,
            // The same heartbeat over the second path: expected, not a refusal.
            Refused::Duplicate => return,
        }
        // Our own LAN broadcast comes back to us: counted, not worth a warning. Others are
        // logged at most once a minute (the counters in state.json have them all): junk sent
        // to the port at line rate must not fill the log.
        let due = self
            .last_refusal_log
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(60));
        if r != Refused::OwnFrame && due {
            self.last_refusal_log = Some(std::time::Instant::now());
            tracing::warn!(event = "ha.frame_refused", from = %from, bytes = len, reason = ?r,
                forged = self.refusals.forged, malformed = self.refusals.malformed, stale = self.refusals.stale,
                "heartbeat refused (further refusals this minute are counted, not logged)");
        }
    }

    fn publish(&self, m: &Machine) {
        let now = now_ms();
        let peer = m.peer().map(|p| PeerStatus {
            address: self.peer_address,
            node_id: p.frame.node_id,
            state: p.frame.state,
            priority: p.frame.priority,
            epoch: p.frame.epoch,
            engine_healthy: p.frame.flags.engine,
            witness_reachable: p.frame.flags.witness,
            config_revision: p.frame.config_revision,
            spool_position: p.frame.spool_position,
            last_heartbeat_ms: p.last_seen_ms,
            alive: m.peer_alive(),
        });
        let s = HaStatus {
            state: m.state(),
            holds_address: m.state().holds_address(),
            epoch: m.epoch(),
            node_id: self.settings.node_id,
            priority: self.settings.priority,
            vip: format!("{}/{}", self.settings.vip, self.settings.prefix_len),
            interface: self.settings.interface.clone(),
            ha_address: self.settings.ha_address,
            engine_healthy: m.engine_healthy(),
            witness: self.settings.witness,
            witness_reachable: m.witness_reachable(),
            peer,
            last_change: self.last_change.clone(),
            refused: self.refusals.clone(),
            address_error: self.address_error.clone(),
            updated_ms: now,
            pid: std::process::id(),
            interval_ms: self.settings.interval_ms,
            replication: self.replication.clone(),
        };
        {
            let mut r = self.report.lock().unwrap_or_else(|e| e.into_inner());
            r.state = m.state().to_string();
            r.peer_alive = m.peer_alive();
            r.peer_address = self.peer_address;
        }
        let _ = self.writer.send(Write::Status(Box::new(s)));
    }

    fn audit(
        &self,
        actor: &str,
        source: &str,
        action: &str,
        target: &str,
        detail: serde_json::Value,
    ) {
        let _ = self.writer.send(Write::Audit {
            actor: actor.into(),
            source: source.into(),
            action: action.into(),
            target: target.into(),
            detail,
        });
    }
}
