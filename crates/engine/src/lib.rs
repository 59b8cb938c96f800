//! The mail engine: everything between a client's TCP connection and the next hop's 250.
//!
//! - `inbound/`: the SMTP server (sessions, relay control, DATA into the spool);
//! - `pipeline`: the filter seam: the checks a received message passes before it is
//!   committed, and `policy::decide` turning their outcomes into per-recipient verdicts;
//! - `outbound/`: the queue runner, routing, the SMTP client and local Maildir delivery,
//!   bounces;
//! - `control`: the engine's side of its control socket (the protocol and the server are in
//!   `palisade-control`; every change to the queue goes through `palisade_spool::admin`).
//!
//! The engine never runs as root and holds no listening socket it did not get from the
//! supervisor (or bind itself when started alone, for development). It reads the configuration
//! from `config.db` and owns `mail.db` through the spool.

#![forbid(unsafe_code)]

mod confirm;
mod control;
pub mod digest;
mod generated;
mod health;
mod inbound;
mod listeners;
mod notify;
mod outbound;
pub mod pipeline;
mod replication;
mod state;
pub mod tls;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use palisade_spool::{NewRecipient, Spool};
use palisade_store::{Config, ConfigStore, DataDir};

use state::Shared;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] palisade_store::StoreError),
    #[error(transparent)]
    Spool(#[from] palisade_spool::SpoolError),
    #[error("no configuration in {0}: start Palisade with `palisade run` first")]
    NoConfig(PathBuf),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("listener: {0}")]
    Listener(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub data: PathBuf,
    /// How long a drain waits for in-flight sessions and deliveries before cutting them off.
    pub drain_grace: Duration,
}

/// Runs the engine until SIGTERM/SIGINT, then drains and returns.
pub async fn run(opts: EngineOptions) -> Result<(), EngineError> {
    let data = DataDir::new(&opts.data);
    let config = {
        let store = ConfigStore::open(&data.config_db())?;
        store
            .current()?
            .ok_or_else(|| EngineError::NoConfig(opts.data.clone()))?
    };
    tracing::info!(event = "engine.start", revision = config.id, data = %opts.data.display());

    // Spool replication (an HA pair): a no-op until the HA process names a peer.
    let replication = replication::Replication::open(&data)?;
    let (spool, report) = Spool::open_replicated(
        &data,
        Some(replication.clone() as Arc<dyn palisade_spool::replica::Replicate>),
    )?;
    replication.set_spool(spool.clone());
    for id in &report.removed_partial {
        tracing::info!(event = "spool.partial_removed", queue_id = %id);
    }
    for (id, reason) in &report.corrupt {
        tracing::error!(event = "spool.corrupt", queue_id = %id, reason = %reason,
            "queued message set aside: its content is damaged; it will not be delivered");
    }
    tracing::info!(
        event = "spool.recovered",
        queued = report.queued,
        partial_removed = report.removed_partial.len(),
        corrupt = report.corrupt.len(),
        quarantine_damaged = report.quarantine_damaged.len()
    );

    let tls = tls::load_server(&data, &config.config)?;
    let listeners = listeners::take(&config.config)?;
    let shared = Arc::new(Shared::new(data.clone(), config, spool, tls));
    shared.set_replication(replication.clone());
    {
        // A configuration the active unit replicated here is applied like a reload request.
        let weak = Arc::downgrade(&shared);
        let handle = tokio::runtime::Handle::current();
        replication.set_on_config(Box::new(move || {
            if let Some(shared) = weak.upgrade() {
                handle.spawn(async move {
                    control::reload(&shared).await;
                });
            }
        }));
    }

    let runner = outbound::Runner::start(shared.clone());
    shared.set_runner(runner.clone());
    replication.set_runner(runner.clone());
    let control = control::serve(shared.clone()).await?;
    let probe = health::spawn_probe(shared.clone());
    let updater = health::spawn_updater(shared.clone());
    let digests = digest::spawn_scheduler(shared.clone());
    let sessions = inbound::serve(shared.clone(), listeners);

    palisade_control::notify_ready();
    tracing::info!(event = "engine.ready");

    wait_for_shutdown().await;
    tracing::info!(event = "engine.draining");
    shared.begin_shutdown();
    // Sessions first (no new mail), then deliveries; each gets the grace period.
    inbound::drain(sessions, opts.drain_grace).await;
    runner.drain(opts.drain_grace).await;
    control.abort();
    probe.abort();
    updater.abort();
    digests.abort();
    tracing::info!(event = "engine.stopped");
    Ok(())
}

async fn wait_for_shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// The route key RCPT gives a recipient: by its domain (inbound domain, static route,
/// smarthost, MX); `postmaster` without a domain goes to the local Maildir.
pub fn route_for(cfg: &Config, address: &str) -> String {
    outbound::route::for_address(cfg, address)
}

/// Recipients an operator chose for releasing a quarantined message, routed as RCPT routes
/// them. Each must be a mailbox (`user@domain`) or `postmaster`. No relay check: the operator
/// decides where held mail goes.
pub fn release_recipients(cfg: &Config, addresses: &[String]) -> Result<Vec<NewRecipient>, String> {
    addresses
        .iter()
        .map(|a| {
            let address = if a.eq_ignore_ascii_case("postmaster") {
                "postmaster".to_string()
            } else {
                palisade_smtp_proto::parse_mailbox(a, true)
                    .map_err(|e| format!("{a}: {e}"))?
                    .to_string()
            };
            Ok(NewRecipient {
                route: route_for(cfg, &address),
                address,
                ..Default::default()
            })
        })
        .collect()
}
