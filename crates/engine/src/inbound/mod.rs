//! The SMTP server: accept loops with connection caps, one task per session, and the drain.

mod auth;
mod data;
mod io;
mod rcpt;
mod session;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener as StdListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_smtp_proto::Reply;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::listeners::ListenerRole;
use crate::state::{Counters, Shared};

/// Counts open sessions per client address and in total.
#[derive(Default)]
pub(crate) struct ConnLimits {
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    total: Mutex<u32>,
}

pub(crate) struct ConnGuard {
    limits: Arc<ConnLimits>,
    ip: IpAddr,
}

impl ConnLimits {
    fn admit(self: &Arc<Self>, ip: IpAddr, max_total: u32, max_per_ip: u32) -> Option<ConnGuard> {
        let mut total = self.total.lock().expect("lock");
        let mut per_ip = self.per_ip.lock().expect("lock");
        let n = per_ip.entry(ip).or_insert(0);
        if *total >= max_total || *n >= max_per_ip {
            if *n == 0 {
                per_ip.remove(&ip);
            }
            return None;
        }
        *n += 1;
        *total += 1;
        Some(ConnGuard {
            limits: self.clone(),
            ip,
        })
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut total = self.limits.total.lock().expect("lock");
        let mut per_ip = self.limits.per_ip.lock().expect("lock");
        *total -= 1;
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
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
        let Some(guard) = limits.admit(
            peer.ip(),
            cfg.smtp.max_connections,
            cfg.smtp.max_connections_per_ip,
        ) else {
            tracing::warn!(event = "smtp.too_many_connections", peer = %peer);
            tokio::spawn(refuse(stream));
            continue;
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
    let _guard = guard;
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().ok();
    Counters::inc(&shared.counters.sessions_total);
    shared
        .counters
        .sessions
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut s = session::Session::new(shared.clone(), role, stream, peer, local);
    s.run().await;
    shared
        .counters
        .sessions
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
}

/// Stops accepting, lets sessions finish what they are doing (idle ones get 421 at once), and
/// cuts off whatever is still running after `grace`.
pub(crate) async fn drain(mut serving: Serving, grace: Duration) {
    // Accept loops exit on the shutdown signal; wait so no new session starts after this.
    while serving.accept.join_next().await.is_some() {}
    let mut set = serving.sessions.lock().await;
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
