//! The queue runner: from a committed message to the next hop's 250.
//!
//! Freshly accepted messages are handed over directly ([`Runner::submit`]); a periodic scan of
//! `mail.db` picks up deferred recipients whose retry time has come and everything queued at
//! start. Each message is split into jobs, one per destination; each destination has its own
//! queue of jobs and up to `max_per_destination` workers, each holding one connection that it
//! reuses for every job waiting for that destination. A message leaves the queue only when all
//! its recipients are final (delivered or failed); failures produce one bounce.

mod attempt;
mod client;
mod finish;
mod inflight;
mod jobs;
mod maildir;
pub(crate) mod route;
mod scan;

use attempt::*;
use finish::*;
use inflight::RunState;
use jobs::*;
use scan::*;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_smtp_proto::Reply;
use palisade_spool::dsn::{self, DsnInput, FailedRecipient};
use palisade_spool::{
    Artifact, Batch, Body, Event, MessageKind, NewMessage, Outcome, OutcomeKind, QueuedMessage,
    QueuedRecipient, RcptState, Ret, schedule,
};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use crate::state::{Counters, Shared};
use route::Destination;

/// How often the queue is scanned for recipients whose retry time has come.
const SCAN_INTERVAL: Duration = Duration::from_secs(1);
/// Messages loaded per scan.
const SCAN_BATCH: u32 = 1000;

/// The in-memory form of a message just committed, so delivery starts without reading it back.
pub(crate) fn queued_from_new(m: &NewMessage) -> QueuedMessage {
    QueuedMessage {
        id: m.id.clone(),
        received_at: m.received_at,
        expires_at: m.expires_at,
        sender: m.sender.clone(),
        size: m.size,
        sha256: m.sha256.clone(),
        kind: m.kind,
        smtputf8: m.smtputf8,
        body: m.body,
        envid: m.envid.clone(),
        ret: m.ret,
        artifacts: m
            .artifact_list()
            .into_iter()
            .map(|a| Artifact {
                n: a.n,
                size: a.size,
                sha256: a.sha256,
            })
            .collect(),
        recipients: m
            .recipients
            .iter()
            .enumerate()
            .map(|(i, r)| QueuedRecipient {
                idx: i as i64,
                address: r.address.clone(),
                route: r.route.clone(),
                state: RcptState::Queued,
                attempts: 0,
                next_attempt: m.received_at,
                last_error: None,
                notify: r.notify,
                orcpt: r.orcpt.clone(),
                artifact: r.artifact,
            })
            .collect(),
    }
}

struct Inner {
    shared: Arc<Shared>,
    state: Mutex<RunState>,
    permits: Arc<Semaphore>,
    wake: Notify,
    workers: Mutex<JoinSet<()>>,
    resolver: arc_swap::ArcSwapOption<hickory_resolver::TokioResolver>,
    connectors: crate::tls::ClientConnectors,
}

#[derive(Clone)]
pub(crate) struct Runner {
    inner: Arc<Inner>,
    scan: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Runner {
    pub fn start(shared: Arc<Shared>) -> Runner {
        let cfg = shared.config();
        let inner = Arc::new(Inner {
            permits: Arc::new(Semaphore::new(cfg.delivery.max_concurrent as usize)),
            resolver: arc_swap::ArcSwapOption::from(route::resolver(&cfg).map(Arc::new)),
            connectors: crate::tls::ClientConnectors::new(),
            shared,
            state: Mutex::new(RunState::default()),
            wake: Notify::new(),
            workers: Mutex::new(JoinSet::new()),
        });
        let scan = tokio::spawn(scan_loop(inner.clone()));
        Runner {
            inner,
            scan: Arc::new(Mutex::new(Some(scan))),
        }
    }

    /// Starts delivering a message that was just committed.
    pub fn submit(&self, msg: QueuedMessage) {
        tokio::spawn(dispatch_task(self.inner.clone(), msg));
    }

    /// The DNS resolver in force (`None` when none could be built).
    pub fn resolver(&self) -> Option<Arc<hickory_resolver::TokioResolver>> {
        self.inner.resolver.load_full()
    }

    /// Picks up configuration that the runner caches (the DNS resolvers).
    pub fn reconfigure(&self) {
        let cfg = self.inner.shared.config();
        self.inner
            .resolver
            .store(route::resolver(&cfg).map(Arc::new));
    }

    /// Scans the queue now (after `queue retry`, a reload, a flush).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Runs `op` on message `id` while no delivery of it can start (an operator's change to
    /// the queue); `Err` when one is running right now.
    pub async fn exclusive<T, F, Fut>(&self, id: &str, op: F) -> Result<T, String>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        {
            if !self.inner.state.lock().expect("lock").reserve(id) {
                return Err(
                    "the message is being delivered right now; try again in a moment".into(),
                );
            }
        }
        let r = op().await;
        self.inner.state.lock().expect("lock").release(id);
        Ok(r)
    }

    /// Finishes a message whose recipients are all final (after an operator bounced it): its
    /// bounce goes out and it leaves the queue.
    pub async fn finalize(&self, id: &str) {
        finalize(&self.inner, id).await
    }

    pub fn inflight(&self) -> usize {
        self.inner.state.lock().expect("lock").count()
    }

    /// Stops scanning and waits for running deliveries (each finishes its current job) up to
    /// `grace`; whatever is still running then is cut off and stays queued.
    pub async fn drain(&self, grace: Duration) {
        if let Some(h) = self.scan.lock().expect("lock").take() {
            h.abort();
        }
        let mut set = std::mem::take(&mut *self.inner.workers.lock().expect("lock"));
        let all = async { while set.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!(
                event = "delivery.drain_timeout",
                "deliveries cut off; they stay queued"
            );
            set.abort_all();
        }
    }
}

#[cfg(test)]
mod tests;

/// The destination key of mail for `domain` (`mx:DOMAIN`, `route:DOMAIN`, `smarthost`, …).
pub(crate) fn route_key(cfg: &palisade_store::Config, domain: &str) -> String {
    route::key(cfg, domain)
}
