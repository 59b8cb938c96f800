//! The SMTP server: accept loops with connection caps, one task per session, and the drain.

mod accept;
mod auth;
mod data;
mod io;
mod rcpt;
mod session;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palisade_smtp_proto::Reply;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::listeners::ListenerRole;
use crate::state::{Counters, Shared};

/// One open session as the connection limits see it: how recently it received anything, and
/// the signal that tells it to give its slot to someone else.
#[derive(Debug)]
pub(crate) struct SessionSlot {
    evicted: AtomicBool,
    evict: Notify,
    /// Milliseconds since the limits' epoch of the last byte received.
    last_active: AtomicU64,
    epoch: Instant,
}

impl SessionSlot {
    fn new(epoch: Instant) -> SessionSlot {
        SessionSlot {
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
            last_active: AtomicU64::new(epoch.elapsed().as_millis() as u64),
            epoch,
        }
    }

    /// Something arrived from the client.
    pub fn touch(&self) {
        self.last_active
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Completes when the session has been told to give up its slot.
    pub async fn evicted(&self) {
        if self.is_evicted() {
            return;
        }
        self.evict.notified().await;
    }

    fn evict(&self) {
        self.evicted.store(true, Ordering::Relaxed);
        self.evict.notify_one();
    }
}

/// Open sessions per client address and in total, with fair-share eviction: when every
/// connection is taken, a newcomer whose address holds fewer sessions than the busiest address
/// (by at least two) gets the slot of that address's longest-idle session. A few addresses
/// holding every slot with slow or idle sessions can then never keep everyone else out.
pub(crate) struct ConnLimits {
    state: Mutex<LimitsState>,
    epoch: Instant,
}

#[derive(Default)]
struct LimitsState {
    per_ip: HashMap<IpAddr, Vec<Arc<SessionSlot>>>,
    /// Sessions open, including those told to leave that have not closed yet.
    total: u32,
    /// Sessions told to leave that have not closed yet.
    leaving: u32,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            state: Mutex::new(LimitsState::default()),
            epoch: Instant::now(),
        }
    }
}

pub(crate) struct ConnGuard {
    limits: Arc<ConnLimits>,
    ip: IpAddr,
    pub slot: Arc<SessionSlot>,
}

/// Why a connection was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    Full,
    PerAddress,
}

impl ConnLimits {
    fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        max_total: u32,
        max_per_ip: u32,
    ) -> Result<ConnGuard, Refused> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mine = st.per_ip.get(&ip).map_or(0, |v| v.len());
        if mine >= max_per_ip as usize {
            return Err(Refused::PerAddress);
        }
        if st.total - st.leaving >= max_total {
            // Full: take a slot from the address holding the most, if that is fairer.
            let busiest = st
                .per_ip
                .iter()
                .map(|(a, v)| (*a, v.iter().filter(|s| !s.is_evicted()).count()))
                .max_by_key(|&(_, n)| n);
            let Some((victim_ip, n)) = busiest else {
                return Err(Refused::Full);
            };
            if n < mine + 2 {
                return Err(Refused::Full);
            }
            let victim = st.per_ip[&victim_ip]
                .iter()
                .filter(|s| !s.is_evicted())
                .min_by_key(|s| s.last_active.load(Ordering::Relaxed))
                .cloned()
                .expect("n > 0");
            victim.evict();
            st.leaving += 1;
            tracing::warn!(event = "smtp.evicted", victim = %victim_ip, held = n, newcomer = %ip,
                "all connections in use: the busiest address gives up its longest-idle session");
        }
        let slot = Arc::new(SessionSlot::new(self.epoch));
        st.per_ip.entry(ip).or_default().push(slot.clone());
        st.total += 1;
        Ok(ConnGuard {
            limits: self.clone(),
            ip,
            slot,
        })
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut st = self.limits.state.lock().unwrap_or_else(|p| p.into_inner());
        st.total -= 1;
        if self.slot.is_evicted() {
            st.leaving -= 1;
        }
        if let Some(v) = st.per_ip.get_mut(&self.ip) {
            v.retain(|s| !Arc::ptr_eq(s, &self.slot));
            if v.is_empty() {
                st.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Running accept loops and their sessions.
pub(crate) struct Serving {
    accept: JoinSet<()>,
    sessions: Arc<tokio::sync::Mutex<JoinSet<()>>>,
}

pub(crate) fn serve(shared: Arc<Shared>, listeners: Vec<(ListenerRole, StdListener)>) -> Serving {
    let limits = Arc::new(ConnLimits::default());
    let sessions = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
    let mut accept = JoinSet::new();
    for (role, l) in listeners {
        let listener = match TcpListener::from_std(l) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(event = "smtp.listener_failed", error = %e);
                continue;
            }
        };
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(event = "smtp.listening", role = role.name(), addr = %addr);
        }
        accept.spawn(accept_loop(
            shared.clone(),
            role,
            listener,
            limits.clone(),
            sessions.clone(),
        ));
    }
    Serving { accept, sessions }
}

async fn accept_loop(
    shared: Arc<Shared>,
    role: ListenerRole,
    listener: TcpListener,
    limits: Arc<ConnLimits>,
    sessions: Arc<tokio::sync::Mutex<JoinSet<()>>>,
) {
    let mut stop = shared.shutdown_signal();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(event = "smtp.accept_failed", error = %e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
        };
        let cfg = shared.config();
        let guard = match limits.admit(
            peer.ip(),
            cfg.smtp.max_connections,
            cfg.smtp.max_connections_per_ip,
        ) {
            Ok(g) => g,
            Err(why) => {
                tracing::warn!(event = "smtp.too_many_connections", peer = %peer, limit = ?why);
                tokio::spawn(refuse(stream));
                continue;
            }
        };
        let shared = shared.clone();
        let mut set = sessions.lock().await;
        // Reap finished sessions so the set does not grow without bound.
        while set.try_join_next().is_some() {}
        set.spawn(run_session(shared, role, stream, peer, guard));
    }
}

async fn refuse(mut stream: TcpStream) {
    let r = Reply::new(421, "4.7.0", "Too many connections, try again later");
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(&r.to_bytes())).await;
}

async fn run_session(
    shared: Arc<Shared>,
    role: ListenerRole,
    stream: TcpStream,
    peer: SocketAddr,
    guard: ConnGuard,
) {
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().ok();
    Counters::inc(&shared.counters.sessions_total);
    shared
        .counters
        .sessions
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut s = session::Session::new(
        shared.clone(),
        role,
        stream,
        peer,
        local,
        guard.slot.clone(),
    );
    s.run().await;
    shared
        .counters
        .sessions
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    drop(guard);
}

/// Stops accepting, lets sessions finish what they are doing (idle ones get 421 at once), and
/// cuts off whatever is still running after `grace`.
pub(crate) async fn drain(mut serving: Serving, grace: Duration) {
    // Accept loops exit on the shutdown signal; wait so no new session starts after this.
    while serving.accept.join_next().await.is_some() {}
    let mut set = serving.sessions.lock().await;
    while set.try_join_next().is_some() {} // count only sessions still running
    let n = set.len();
    tracing::info!(event = "smtp.draining", sessions = n);
    let all = async { while set.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, all).await.is_err() {
        tracing::warn!(
            event = "smtp.drain_timeout",
            "sessions still open after the grace period; closing them"
        );
        set.abort_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_address_and_total_caps() {
        let l = Arc::new(ConnLimits::default());
        let a: Vec<_> = (0..2)
            .map(|_| l.admit(ip("10.0.0.1"), 3, 2).unwrap())
            .collect();
        assert_eq!(
            l.admit(ip("10.0.0.1"), 3, 2).err(),
            Some(Refused::PerAddress)
        );
        drop(a);
        let spread: Vec<_> = (1..=3)
            .map(|i| l.admit(ip(&format!("10.0.1.{i}")), 3, 2).unwrap())
            .collect();
        // Full, and every address holds one: taking a slot from anyone would not be fairer.
        assert_eq!(l.admit(ip("10.0.0.9"), 3, 2).err(), Some(Refused::Full));
        assert!(spread.iter().all(|g| !g.slot.is_evicted()));
        drop(spread);
        assert!(l.admit(ip("10.0.0.9"), 3, 2).is_ok());
    }

    #[test]
    fn a_newcomer_takes_the_longest_idle_slot_of_the_busiest_address() {
        let l = Arc::new(ConnLimits::default());
        let hog: Vec<_> = (0..4)
            .map(|_| l.admit(ip("10.0.0.1"), 5, 10).unwrap())
            .collect();
        let other = l.admit(ip("10.0.0.2"), 5, 10).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        for (i, g) in hog.iter().enumerate() {
            if i != 2 {
                g.slot.touch();
            }
        }
        let newcomer = l.admit(ip("10.0.0.3"), 5, 10).unwrap();
        let evicted: Vec<usize> = (0..4).filter(|&i| hog[i].slot.is_evicted()).collect();
        assert_eq!(
            evicted,
            [2],
            "the longest-idle session of the busiest address"
        );
        assert!(!other.slot.is_evicted() && !newcomer.slot.is_evicted());
        // The evicted session still holds its slot until it closes, but is not counted
        // against newcomers; the hog reconnecting does not get to evict anyone (3 vs 1+2).
        assert_eq!(l.admit(ip("10.0.0.1"), 5, 10).err(), Some(Refused::Full));
        drop(hog);
        drop((other, newcomer));
        let st = l.state.lock().unwrap();
        assert_eq!((st.total, st.leaving, st.per_ip.len()), (0, 0, 0));
    }
}
