//! What works in a degraded state, for the console's banners and `palisade av status`:
//! a probe asks clamd every [`PROBE_EVERY`] while antivirus is on (mail waits with 451 while
//! it does not answer: the check's failure mode) and looks at the signatures' age. A change
//! is logged once (`antivirus.clamd_down` as an error, `antivirus.clamd_back`), not on every
//! probe.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_store::{clamav, now_unix};

use crate::pipeline::antivirus::Clamd;
use crate::state::Shared;

pub const PROBE_EVERY: Duration = Duration::from_secs(10);

#[derive(Default)]
pub(crate) struct Health {
    /// clamd did not answer: since when, and what it said.
    clamd_down: Mutex<Option<(i64, String)>>,
    /// The newest signatures are older than `clamav::STALE_AFTER_SECS`: their time.
    stale_since: Mutex<Option<i64>>,
}

impl Health {
    /// One sentence per degraded feature.
    pub fn degraded(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some((since, why)) = self.clamd_down.lock().expect("lock").as_ref() {
            out.push(format!(
                "Antivirus: {why} (for {}); messages are answered by antivirus's failure mode \
                 (451, try again later, by default) until it does.",
                age(now_unix() - since)
            ));
        }
        if let Some(newest) = *self.stale_since.lock().expect("lock") {
            out.push(format!(
                "Antivirus: the newest signatures are {} old; upload current ones \
                 (palisade av update, or the console).",
                age(now_unix() - newest)
            ));
        }
        out
    }
}

fn age(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86400),
    }
}

/// Runs until the engine stops.
pub(crate) fn spawn_probe(shared: Arc<Shared>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PROBE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            probe(&shared).await;
        }
    })
}

async fn probe(shared: &Shared) {
    let cfg = shared.config();
    let av = &cfg.antivirus;
    let address = av.address().ok().filter(|_| av.enabled);
    let Some(address) = address else {
        *shared.health.clamd_down.lock().expect("lock") = None;
        *shared.health.stale_since.lock().expect("lock") = None;
        return;
    };
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        Clamd::new(address.clone()).version(),
    )
    .await
    .unwrap_or_else(|_| Err(format!("clamd at {address} did not answer within 5 s")));
    {
        let mut down = shared.health.clamd_down.lock().expect("lock");
        match (&answer, down.is_some()) {
            (Err(e), false) => {
                tracing::error!(event = "antivirus.clamd_down", clamd = %address, error = %e,
                    "clamd does not answer; mail is answered by antivirus's failure mode");
                *down = Some((now_unix(), e.clone()));
            }
            (Err(e), true) => {
                if let Some(d) = down.as_mut() {
                    d.1 = e.clone();
                }
            }
            (Ok(v), true) => {
                tracing::info!(event = "antivirus.clamd_back", clamd = %address, version = %v);
                *down = None;
            }
            (Ok(_), false) => {}
        }
    }
    let dir = clamav::directory(&shared.data);
    let newest = tokio::task::spawn_blocking(move || clamav::newest_in(&dir))
        .await
        .ok()
        .flatten();
    // Signatures somewhere else (an external clamd with its own freshclam) have no age here.
    let stale = newest.filter(|t| now_unix() - t > clamav::STALE_AFTER_SECS);
    let mut s = shared.health.stale_since.lock().expect("lock");
    if stale.is_some() && s.is_none() {
        tracing::warn!(event = "antivirus.signatures_stale", newest = ?stale);
    }
    *s = stale;
}
