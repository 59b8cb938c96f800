//! What every part of the engine shares: the configuration in force (swapped atomically on
//! reload), the spool, TLS, counters, and the shutdown signal.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use arc_swap::ArcSwap;
use palisade_spool::Spool;
use palisade_store::{Config, DataDir, Revision};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::outbound::Runner;
use crate::pipeline::Pipeline;

#[derive(Default)]
pub(crate) struct Counters {
    pub sessions: AtomicU64,
    pub sessions_total: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub delivered: AtomicU64,
    pub deferred: AtomicU64,
    pub bounced: AtomicU64,
}

impl Counters {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

pub(crate) struct Shared {
    pub data: DataDir,
    config: ArcSwap<Config>,
    /// The filter pipeline of that configuration, swapped with it.
    pipeline: ArcSwap<Pipeline>,
    revision: AtomicU64,
    pub spool: Spool,
    tls: ArcSwap<Option<TlsAcceptor>>,
    pub counters: Counters,
    pub started: Instant,
    shutdown: watch::Sender<bool>,
    runner: OnceLock<Runner>,
    replication: OnceLock<Arc<crate::replication::Replication>>,
    /// SMTP AUTH attempts being checked at once (database work and the hash): beyond this a
    /// client gets `454 4.7.0` at once, before any thread or memory is spent on it. The hash
    /// itself has its own, smaller budget (`store::password`).
    pub auth_checks: tokio::sync::Semaphore,
    /// Message bytes (in MiB) whose MIME view may be held at once: building and keeping a view
    /// costs two to three times the message in memory, so without this bound 500 sessions
    /// sending 50 MiB each could make the engine hold tens of GiB. A message waits for its
    /// share within `filter.timeout_secs`, then gets `451 4.3.2`.
    pub inspecting: Arc<tokio::sync::Semaphore>,
    /// What works in a degraded state (see `health`).
    pub health: crate::health::Health,
}

/// See [`Shared::inspecting`]: about 2–3 GiB of views at most.
pub(crate) const INSPECT_BUDGET_MIB: u32 = 1024;

/// See [`Shared::auth_checks`].
pub(crate) const MAX_AUTH_CHECKS: usize = 64;

impl Shared {
    pub fn new(data: DataDir, rev: Revision, spool: Spool, tls: Option<TlsAcceptor>) -> Self {
        Shared {
            pipeline: ArcSwap::from_pointee(Pipeline::from_config(&rev.config, Some(&data))),
            data,
            config: ArcSwap::from_pointee(rev.config),
            revision: AtomicU64::new(rev.id as u64),
            spool,
            tls: ArcSwap::from_pointee(tls),
            counters: Counters::default(),
            started: Instant::now(),
            shutdown: watch::channel(false).0,
            runner: OnceLock::new(),
            replication: OnceLock::new(),
            auth_checks: tokio::sync::Semaphore::new(MAX_AUTH_CHECKS),
            inspecting: Arc::new(tokio::sync::Semaphore::new(INSPECT_BUDGET_MIB as usize)),
            health: Default::default(),
        }
    }

    /// The configuration in force now. Sessions take one snapshot at connect and keep it.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// The filter pipeline in force now. A message takes one snapshot at DATA and keeps it.
    pub fn pipeline(&self) -> Arc<Pipeline> {
        self.pipeline.load_full()
    }

    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::Relaxed)
    }

    pub fn tls(&self) -> Option<TlsAcceptor> {
        self.tls.load().as_ref().clone()
    }

    /// Applies a new configuration: new sessions and the next deliveries use it; sessions in
    /// progress finish with the one they started with. Listener addresses cannot change
    /// without a restart (the supervisor owns the sockets).
    pub fn apply(&self, rev: Revision, tls: Option<TlsAcceptor>) {
        self.revision.store(rev.id as u64, Ordering::Relaxed);
        self.pipeline.store(Arc::new(Pipeline::from_config(
            &rev.config,
            Some(&self.data),
        )));
        self.config.store(Arc::new(rev.config));
        self.tls.store(Arc::new(tls));
    }

    pub fn set_runner(&self, r: Runner) {
        let _ = self.runner.set(r);
    }

    pub fn set_replication(&self, r: Arc<crate::replication::Replication>) {
        let _ = self.replication.set(r);
    }

    /// Spool replication; `None` only in tests that build a `Shared` without `run`.
    pub fn replication(&self) -> Option<&Arc<crate::replication::Replication>> {
        self.replication.get()
    }

    pub fn runner(&self) -> &Runner {
        self.runner.get().expect("runner started before sessions")
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub fn begin_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}
