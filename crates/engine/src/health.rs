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
    /// The last freshclam run failed: when, and why.
    update_failed: Mutex<Option<(i64, String)>>,
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
        if let Some((at, why)) = self.update_failed.lock().expect("lock").as_ref() {
            out.push(format!(
                "Antivirus: fetching signatures from the mirror failed {} ago: {why}",
                age(now_unix() - at)
            ));
        }
        out
    }
}

/// Delay before the first freshclam run after the engine starts.
const FIRST_UPDATE_AFTER: Duration = Duration::from_secs(20);

/// Runs freshclam every `antivirus.update_interval_minutes` while a mirror or custom URL is
/// configured (read again each time, so a configuration change applies at the next run).
pub(crate) fn spawn_updater(shared: Arc<Shared>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::time::sleep(FIRST_UPDATE_AFTER).await;
        loop {
            let cfg = shared.config();
            let minutes = cfg.antivirus.update_interval_minutes;
            if cfg.antivirus.fetches() && minutes > 0 {
                update(&shared, "engine", "schedule").await;
            }
            let wait = if minutes > 0 {
                minutes as u64 * 60
            } else {
                300
            };
            tokio::time::sleep(Duration::from_secs(wait)).await;
        }
    })
}

/// One freshclam run now (at most one at a time): recorded, audited
/// (`antivirus.update`), and on success clamd is asked to reload.
pub(crate) async fn update(
    shared: &Shared,
    actor: &str,
    source: &str,
) -> palisade_store::clamav::UpdateOutcome {
    static RUNNING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one = RUNNING.lock().await;
    let cfg = shared.config();
    let (data, av) = (shared.data.clone(), cfg.antivirus.clone());
    let owner = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "root".into());
    let mut outcome =
        tokio::task::spawn_blocking(move || clamav::freshclam_update(&data, &owner, &av))
            .await
            .unwrap_or_else(|e| clamav::UpdateOutcome {
                at: now_unix(),
                ok: false,
                message: e.to_string(),
            });
    if outcome.ok {
        tracing::info!(event = "antivirus.updated", result = %outcome.message);
        *shared.health.update_failed.lock().expect("lock") = None;
        if let Ok(address) = cfg.antivirus.address() {
            let reload = tokio::task::spawn_blocking(move || {
                clamav::clamd_command(&address, "RELOAD", Duration::from_secs(10))
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
            match reload {
                Ok(_) => outcome.message.push_str("; clamd is reloading"),
                Err(e) => outcome
                    .message
                    .push_str(&format!("; clamd could not be asked to reload: {e}")),
            }
        }
    } else {
        tracing::error!(event = "antivirus.update_failed", error = %outcome.message);
        *shared.health.update_failed.lock().expect("lock") =
            Some((outcome.at, outcome.message.clone()));
    }
    let (data, o, actor, source) = (
        shared.data.clone(),
        outcome.clone(),
        actor.to_string(),
        source.to_string(),
    );
    let _ = tokio::task::spawn_blocking(move || {
        palisade_store::AuditLog::open(&data.audit_db()).and_then(|mut a| {
            a.append(
                &actor,
                &source,
                "antivirus.update",
                if o.ok { "ok" } else { "failed" },
                &serde_json::json!({ "message": o.message }),
            )
        })
    })
    .await;
    outcome
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
