//! The engine's side of its control socket (`DIR/run/engine.sock`): how the console, the CLI
//! and the supervisor reach the running engine. The protocol and the server are
//! `palisade_control::{engine, server}`; this is what each request does.
//!
//! The socket is mode 0660 in a directory of the `palisade` group: the console and root can
//! use it, nobody else. Every change to the queue is made by the `palisade_spool::admin` call
//! for it, which writes the audit entry with the requester's actor and source; the engine then
//! acts on what it holds in memory (wakes the runner, finalizes a bounced message). A reload
//! applies a configuration revision that was already committed and audited.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use palisade_control::engine::{ControlRequest, ControlResponse, Stats};
use palisade_control::server;
use palisade_spool::admin::{self, Requester};
use palisade_spool::quarantine;
use palisade_store::ConfigStore;

use crate::EngineError;
use crate::state::{Counters, Shared};

pub(crate) async fn serve(shared: Arc<Shared>) -> Result<tokio::task::JoinHandle<()>, EngineError> {
    let path = shared.data.control_socket();
    let listener = server::bind(&path, 0o660).map_err(|e| EngineError::Io {
        context: "control socket".into(),
        source: e,
    })?;
    Ok(server::serve(
        listener,
        server::Limits::default(),
        move |req: ControlRequest| {
            let shared = shared.clone();
            async move { handle(&shared, req).await }
        },
    ))
}

/// Runs a blocking queue change; a failure in words.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, palisade_spool::SpoolError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

async fn handle(shared: &Arc<Shared>, req: ControlRequest) -> ControlResponse {
    match req {
        ControlRequest::Ping => ControlResponse::ok("pong"),
        ControlRequest::HaReport {
            state,
            peer_alive: _,
            own_address,
            peer_address,
            port,
            dead_time_ms,
        } => match shared.replication() {
            Some(r) => ControlResponse {
                replication: Some(r.report(
                    &state,
                    own_address,
                    peer_address,
                    port,
                    std::time::Duration::from_millis(dead_time_ms.clamp(300, 60_000)),
                )),
                ..ControlResponse::ok("pong")
            },
            None => ControlResponse::ok("pong"),
        },
        ControlRequest::HaAdopt => match shared.replication() {
            Some(r) => {
                r.dissolve();
                match r.adopt("the pair was dissolved", true).await {
                    Ok(n) => {
                        ControlResponse::counted(format!("{n} replicated message(s) queued"), n)
                    }
                    Err(e) => ControlResponse::err(e),
                }
            }
            None => ControlResponse::err("replication is not running"),
        },
        ControlRequest::Wake => {
            shared.runner().wake();
            ControlResponse::ok("queue scan started")
        }
        ControlRequest::Reload => reload(shared).await,
        ControlRequest::Stats => stats(shared).await,
        ControlRequest::Flush { actor, source } => {
            let data = shared.data.clone();
            let n = blocking(move || {
                admin::flush(
                    &data,
                    Requester {
                        actor: &actor,
                        source: &source,
                    },
                )
            })
            .await;
            shared.runner().wake();
            match n {
                Ok(n) => ControlResponse::counted(format!("{n} recipient(s) due now"), n),
                Err(e) => ControlResponse::err(e),
            }
        }
        ControlRequest::Retry { id, actor, source } => {
            let data = shared.data.clone();
            let qid = id.clone();
            let n = blocking(move || {
                admin::retry(
                    &data,
                    &qid,
                    Requester {
                        actor: &actor,
                        source: &source,
                    },
                )
            })
            .await;
            shared.runner().wake();
            match n {
                Ok(n) => ControlResponse::counted(format!("{n} recipient(s) due now"), n),
                Err(e) => ControlResponse::err(e),
            }
        }
        ControlRequest::Delete { id, actor, source } => {
            let data = shared.data.clone();
            let qid = id.clone();
            let r = shared
                .runner()
                .exclusive(&id, || {
                    blocking(move || {
                        admin::delete(
                            &data,
                            &qid,
                            Requester {
                                actor: &actor,
                                source: &source,
                            },
                        )
                    })
                })
                .await;
            match r {
                Ok(Ok(true)) => ControlResponse::ok(format!("{id} deleted")),
                Ok(Ok(false)) => ControlResponse::err(format!("{id} is no longer queued")),
                Ok(Err(e)) | Err(e) => ControlResponse::err(e),
            }
        }
        ControlRequest::Bounce { id, actor, source } => {
            let data = shared.data.clone();
            let qid = id.clone();
            let runner = shared.runner();
            let r = runner
                .exclusive(&id, || async {
                    let n = blocking(move || {
                        admin::bounce(
                            &data,
                            &qid,
                            Requester {
                                actor: &actor,
                                source: &source,
                            },
                        )
                    })
                    .await?;
                    // The recipients are final now: the bounce goes out, the message leaves.
                    if n.is_some() {
                        runner.finalize(&id).await;
                    }
                    Ok::<_, String>(n)
                })
                .await;
            match r {
                Ok(Ok(Some(n))) => ControlResponse::counted(
                    format!("{id}: {n} recipient(s) returned to the sender"),
                    n,
                ),
                Ok(Ok(None)) => ControlResponse::err(format!("{id} is not queued")),
                Ok(Err(e)) | Err(e) => ControlResponse::err(e),
            }
        }
        ControlRequest::QuarantineRelease {
            id,
            recipients,
            actor,
            source,
            digest_token: None,
        } => quarantine_release(shared, id, recipients, actor, source).await,
        ControlRequest::QuarantineRelease {
            id,
            recipients,
            actor,
            source,
            digest_token: Some(token),
        } => digest_release(shared, id, recipients, token, actor, source).await,
        ControlRequest::QuarantineConfirm {
            token,
            send,
            source,
        } => {
            let s = shared.clone();
            let r = tokio::task::spawn_blocking(move || {
                crate::confirm::answer(&s, &token, send, &source)
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
            match r {
                Ok(Some(released)) => {
                    let id = released.queue_id.clone();
                    deliver_released(shared, id, released).await
                }
                Ok(None) => ControlResponse::ok("cancelled: the message was deleted"),
                Err(e) => ControlResponse::err(e),
            }
        }
        ControlRequest::Digest { to, actor, source } => {
            digest_send(shared, to, actor, source).await
        }
        ControlRequest::QuarantineDelete { id, actor, source } => {
            let data = shared.data.clone();
            let qid = id.clone();
            let r = blocking(move || {
                quarantine::delete(
                    &data,
                    &qid,
                    Requester {
                        actor: &actor,
                        source: &source,
                    },
                )
            })
            .await;
            match r {
                Ok(()) => ControlResponse::ok(format!("{id} deleted")),
                Err(e) => ControlResponse::err(e),
            }
        }
        ControlRequest::AvUpdate { actor, source } => {
            let o = crate::health::update(shared, &actor, &source).await;
            if o.ok {
                ControlResponse::ok(o.message)
            } else {
                ControlResponse::err(o.message)
            }
        }
        ControlRequest::DkimKeys { dns } => {
            let keys = crate::pipeline::dkim::report(&shared.data, &shared.config(), dns).await;
            ControlResponse {
                dkim: Some(keys),
                ..ControlResponse::ok("")
            }
        }
        ControlRequest::DkimGenerate {
            domain,
            selector,
            algorithm,
            actor,
            source,
        } => dkim_generate(shared, domain, selector, algorithm, actor, source).await,
    }
}

/// At most one key is generated at a time (an RSA key costs a second or two of one core).
static DKIM_GENERATING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

async fn dkim_generate(
    shared: &Arc<Shared>,
    domain: String,
    selector: Option<String>,
    algorithm: String,
    actor: String,
    source: String,
) -> ControlResponse {
    let alg: palisade_store::dkim::Algorithm = match algorithm.parse() {
        Ok(a) => a,
        Err(e) => return ControlResponse::err(e),
    };
    let Ok(_permit) = DKIM_GENERATING.try_acquire() else {
        return ControlResponse::err("another DKIM key is being generated; try again in a moment");
    };
    let data = shared.data.clone();
    let made = tokio::task::spawn_blocking(move || {
        palisade_store::dkim::create(&data, &domain, selector.as_deref(), alg, &actor, &source)
    })
    .await;
    let created = match made {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return ControlResponse::err(e),
        Err(e) => return ControlResponse::err(e.to_string()),
    };
    tracing::info!(event = "dkim.key_generated", domain = %created.domain,
        selector = %created.selector, algorithm = created.algorithm.signing_name());
    let cfg = shared.config();
    let signing = cfg.dkim.sign.iter().any(|s| {
        s.domain
            .trim_end_matches('.')
            .eq_ignore_ascii_case(&created.domain)
            && s.selector.eq_ignore_ascii_case(&created.selector)
    });
    let key = palisade_control::engine::DkimKey {
        name: format!("{}._domainkey.{}", created.selector, created.domain),
        algorithm: Some(created.algorithm.signing_name().to_string()),
        record: Some(created.record),
        signing,
        domain: created.domain,
        selector: created.selector,
        ..Default::default()
    };
    ControlResponse {
        dkim: Some(vec![key]),
        ..ControlResponse::ok(format!("key {} made", created.path.display()))
    }
}

/// Releases a held message and hands it to the queue runner like a newly accepted one.
async fn quarantine_release(
    shared: &Arc<Shared>,
    id: String,
    recipients: Option<Vec<String>>,
    actor: String,
    source: String,
) -> ControlResponse {
    let chosen = match recipients
        .map(|r| crate::release_recipients(&shared.config(), &r))
        .transpose()
    {
        Ok(r) => r,
        Err(e) => return ControlResponse::err(e),
    };
    let data = shared.data.clone();
    let qid = id.clone();
    let released = blocking(move || {
        quarantine::release(
            &data,
            &qid,
            chosen,
            Requester {
                actor: &actor,
                source: &source,
            },
        )
    })
    .await;
    let released = match released {
        Ok(r) => r,
        Err(e) => return ControlResponse::err(e),
    };
    deliver_released(shared, id, released).await
}

/// A release asked for with a digest link: the engine checks the token itself (signature,
/// expiry, that it names this entry and this one recipient) and uses it up in the release.
async fn digest_release(
    shared: &Arc<Shared>,
    id: String,
    recipients: Option<Vec<String>>,
    token: String,
    actor: String,
    source: String,
) -> ControlResponse {
    let data = shared.data.clone();
    let qid = id.clone();
    let released = blocking(move || {
        let key = palisade_store::digest::DigestKey::load(&data.digest_key())?;
        let claims = key
            .verify(&token, palisade_store::now_unix())
            .map_err(|e| palisade_store::StoreError::Inconsistent(e.to_string()))?;
        let asked = recipients.unwrap_or_default();
        if claims.quarantine_id != qid
            || asked.len() != 1
            || !asked[0].eq_ignore_ascii_case(&claims.recipient)
        {
            return Err(palisade_store::StoreError::Inconsistent(
                "the release link does not name this message and recipient".into(),
            )
            .into());
        }
        quarantine::release_from_digest(
            &data,
            &qid,
            quarantine::DigestLink {
                recipient: &claims.recipient,
                token: &token,
            },
            Requester {
                actor: &actor,
                source: &source,
            },
        )
    })
    .await;
    match released {
        Ok(r) => deliver_released(shared, id, r).await,
        Err(e) => ControlResponse::err(e),
    }
}

/// Sends the digests due now, audited as `digest.send`.
async fn digest_send(
    shared: &Arc<Shared>,
    to: Option<String>,
    actor: String,
    source: String,
) -> ControlResponse {
    let sum = match crate::digest::send(shared, to.clone()).await {
        Ok(s) => s,
        Err(e) => return ControlResponse::err(e),
    };
    let data = shared.data.clone();
    let detail = serde_json::json!({
        "to": to,
        "digests": sum.digests,
        "entries": sum.entries,
        "queued": sum.queued,
    });
    let target = to.clone().unwrap_or_else(|| "*".into());
    let audited = tokio::task::spawn_blocking(move || {
        palisade_store::AuditLog::open(&data.audit_db())?.append(
            &actor,
            &source,
            "digest.send",
            &target,
            &detail,
        )
    })
    .await;
    if let Ok(Err(e)) = audited {
        tracing::error!(event = "audit.failed", action = "digest.send", error = %e);
    }
    let list: Vec<String> = sum
        .queued
        .iter()
        .map(|(to, id)| format!("{to} ({id})"))
        .collect();
    ControlResponse::counted(
        if sum.digests == 0 {
            "no digest due: nothing newly held for a covered recipient".to_string()
        } else {
            format!(
                "{} digest(s) listing {} held message(s) queued: {}",
                sum.digests,
                sum.entries,
                list.join(", ")
            )
        },
        sum.digests,
    )
}

/// Hands a released copy to the queue runner and says what was released.
async fn deliver_released(
    shared: &Arc<Shared>,
    id: String,
    released: quarantine::Released,
) -> ControlResponse {
    let s = shared.clone();
    let new_id = released.queue_id.clone();
    let queued =
        tokio::task::spawn_blocking(move || s.spool.db().lock().expect("lock").message(&new_id))
            .await;
    match queued {
        Ok(Ok(Some(m))) => shared.runner().submit(m),
        // Committed all the same: the next scan delivers it.
        _ => shared.runner().wake(),
    }
    let to: Vec<&str> = released
        .recipients
        .iter()
        .map(|r| r.address.as_str())
        .collect();
    ControlResponse {
        queue_id: Some(released.queue_id.clone()),
        ..ControlResponse::counted(
            format!(
                "{id} released as {} to {}",
                released.queue_id,
                to.join(", ")
            ),
            to.len(),
        )
    }
}

async fn stats(shared: &Arc<Shared>) -> ControlResponse {
    let s = shared.clone();
    let q = tokio::task::spawn_blocking(move || s.spool.db().lock().expect("lock").queue_len())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or((0, 0));
    let c = &shared.counters;
    let stats = Stats {
        revision: shared.revision(),
        uptime_secs: shared.started.elapsed().as_secs(),
        sessions: c.sessions.load(Ordering::Relaxed),
        sessions_total: Counters::get(&c.sessions_total),
        accepted: Counters::get(&c.accepted),
        rejected: Counters::get(&c.rejected),
        delivered: Counters::get(&c.delivered),
        deferred: Counters::get(&c.deferred),
        bounced: Counters::get(&c.bounced),
        queue_messages: q.0,
        queue_recipients: q.1,
        delivering: shared.runner().inflight() as u64,
        degraded: shared.health.degraded(),
    };
    ControlResponse {
        stats: Some(stats),
        ..ControlResponse::ok("")
    }
}

pub(crate) async fn reload(shared: &Arc<Shared>) -> ControlResponse {
    let data = shared.data.clone();
    let rev = tokio::task::spawn_blocking(move || {
        ConfigStore::open(&data.config_db()).and_then(|s| s.current())
    })
    .await;
    let rev = match rev {
        Ok(Ok(Some(rev))) => rev,
        Ok(Ok(None)) => return ControlResponse::err("no configuration"),
        Ok(Err(e)) => return ControlResponse::err(e.to_string()),
        Err(e) => return ControlResponse::err(e.to_string()),
    };
    let tls = match crate::tls::load_server(&shared.data, &rev.config) {
        Ok(t) => t,
        Err(e) => return ControlResponse::err(format!("not applied: {e}")),
    };
    let old = shared.config();
    let mut note = String::new();
    if old.smtp.listen != rev.config.smtp.listen
        || old.smtp.submission_listen != rev.config.smtp.submission_listen
    {
        note = "; listener addresses change at the next restart".into();
    }
    let id = rev.id;
    shared.apply(rev, tls);
    shared.runner().reconfigure();
    shared.runner().wake();
    tracing::info!(event = "engine.reloaded", revision = id);
    ControlResponse::ok(format!("revision {id} applied{note}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_spool::{Batch, MessageKind, NewMessage, NewRecipient, Spool};
    use palisade_store::{AuditLog, Config, DataDir, Revision};

    /// Queued with its first attempt far away, so the runner leaves it alone until retried.
    async fn queue(spool: &Spool, sender: &str) -> String {
        let id = Spool::new_id();
        let mut f = spool.create(&id).unwrap();
        f.write(b"Subject: t\r\n\r\nbody\r\n").await.unwrap();
        let c = f.finish().await.unwrap();
        let later = palisade_store::now_unix() + 86_400;
        spool
            .commit(Batch {
                accepted: vec![NewMessage {
                    id: id.clone(),
                    received_at: later,
                    expires_at: later + 86_400,
                    sender: sender.into(),
                    size: c.size,
                    sha256: c.sha256,
                    kind: MessageKind::Mail,
                    smtputf8: false,
                    recipients: vec![NewRecipient {
                        address: "rcpt@far.test".into(),
                        route: "smarthost".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            })
            .await
            .unwrap();
        id
    }

    /// Each queue operation through the control socket's handler is audited exactly once,
    /// with the requester's actor and source.
    #[tokio::test(flavor = "multi_thread")]
    async fn queue_operations_are_audited_once_by_the_engine() {
        let d = tempfile::tempdir().unwrap();
        let data = DataDir::new(d.path());
        // Nothing can be delivered: every route leads to a closed port.
        let config = Config::from_toml("[outbound]\nsmarthosts = [\"127.0.0.1:1\"]\n").unwrap();
        let rev = Revision {
            id: 1,
            created_at: 0,
            author: "test".into(),
            comment: String::new(),
            config,
        };
        let (spool, _) = Spool::open(&data).unwrap();
        let shared = Arc::new(Shared::new(data.clone(), rev, spool.clone(), None));
        shared.set_runner(crate::outbound::Runner::start(shared.clone()));
        let (a, b, c) = (
            queue(&spool, "a@origin.test").await,
            queue(&spool, "b@origin.test").await,
            queue(&spool, "c@origin.test").await,
        );
        let by = |_: ()| ("alice".to_string(), "10.0.0.9".to_string());

        let (actor, source) = by(());
        let r = handle(
            &shared,
            ControlRequest::Bounce {
                id: c.clone(),
                actor,
                source,
            },
        )
        .await;
        assert!(r.ok, "{r:?}");
        assert!(r.message.contains("1 recipient(s) returned to the sender"));
        let (actor, source) = by(());
        let r = handle(
            &shared,
            ControlRequest::Delete {
                id: b.clone(),
                actor,
                source,
            },
        )
        .await;
        assert!(r.ok, "{r:?}");
        let (actor, source) = by(());
        let r = handle(
            &shared,
            ControlRequest::Delete {
                id: b.clone(),
                actor,
                source,
            },
        )
        .await;
        assert!(!r.ok && r.message.contains("no longer queued"), "{r:?}");
        let (actor, source) = by(());
        let r = handle(
            &shared,
            ControlRequest::Retry {
                id: a.clone(),
                actor,
                source,
            },
        )
        .await;
        assert!(r.ok && r.count == Some(1), "{r:?}");
        let (actor, source) = by(());
        let r = handle(&shared, ControlRequest::Flush { actor, source }).await;
        assert!(r.ok, "{r:?}");

        // The bounced message left the queue and its bounce (to its sender) took its place.
        let queued = spool.db().lock().unwrap().list_queue(None, 100).unwrap();
        assert!(queued.iter().all(|m| m.id != b && m.id != c));
        assert!(
            queued
                .iter()
                .any(|m| m.kind == MessageKind::Dsn && m.recipients[0].address == "c@origin.test")
        );

        let entries = AuditLog::open(&data.audit_db())
            .unwrap()
            .list(&Default::default())
            .unwrap();
        for (action, target) in [
            ("queue.retry", a.as_str()),
            ("queue.flush", "*"),
            ("queue.delete", b.as_str()),
            ("queue.bounce", c.as_str()),
        ] {
            let found: Vec<_> = entries.iter().filter(|e| e.action == action).collect();
            assert_eq!(found.len(), 1, "{action}: {entries:?}");
            assert_eq!(found[0].target, target);
            assert_eq!(
                (found[0].actor.as_str(), found[0].source.as_str()),
                ("alice", "10.0.0.9")
            );
        }
        assert_eq!(entries.len(), 4, "{entries:?}");
        shared.begin_shutdown();
    }

    /// Held for one recipient: the original in DIR/quarantine/, tracking only in the queue.
    async fn hold(spool: &Spool, rcpt: &str) -> String {
        hold_for(spool, &[rcpt], None).await
    }

    /// Held for `rcpts`, with the filter's explanations if given.
    async fn hold_for(
        spool: &Spool,
        rcpts: &[&str],
        explanations: Option<serde_json::Value>,
    ) -> String {
        let qid = Spool::new_id();
        let mut f = spool.create_quarantine(&qid).unwrap();
        f.write(b"Subject: held\r\n\r\nheld body\r\n")
            .await
            .unwrap();
        let c = f.finish().await.unwrap();
        let queue_id = Spool::new_id();
        spool
            .commit(Batch {
                accepted: vec![NewMessage {
                    id: queue_id.clone(),
                    sender: "s@origin.test".into(),
                    size: c.size,
                    sha256: c.sha256.clone(),
                    status: Some("quarantined".into()),
                    ..Default::default()
                }],
                quarantined: vec![palisade_spool::NewQuarantine {
                    id: qid.clone(),
                    queue_id,
                    expires_at: palisade_store::now_unix() + 3600,
                    sender: "s@origin.test".into(),
                    recipients: rcpts
                        .iter()
                        .map(|r| palisade_spool::HeldRecipient {
                            address: r.to_string(),
                            route: "maildir".into(),
                            notify: None,
                            orcpt: None,
                        })
                        .collect(),
                    reason: "test".into(),
                    explanations,
                    subject: Some("held".into()),
                    size: c.size,
                    sha256: c.sha256,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .await
            .unwrap();
        qid
    }

    /// A release through the control socket is delivered at once (here: to the Maildir),
    /// audited once; a second release and a delete of a released entry are refused.
    #[tokio::test(flavor = "multi_thread")]
    async fn quarantine_release_is_delivered_at_once() {
        let d = tempfile::tempdir().unwrap();
        let data = DataDir::new(d.path());
        let config =
            Config::from_toml("[[domain]]\nname = \"local.test\"\nroute = \"maildir\"\n").unwrap();
        let rev = Revision {
            id: 1,
            created_at: 0,
            author: "test".into(),
            comment: String::new(),
            config,
        };
        let (spool, _) = Spool::open(&data).unwrap();
        let shared = Arc::new(Shared::new(data.clone(), rev, spool.clone(), None));
        shared.set_runner(crate::outbound::Runner::start(shared.clone()));
        let a = hold(&spool, "a@local.test").await;
        let b = hold(&spool, "b@local.test").await;
        let req = |id: &str, to: Option<Vec<String>>| ControlRequest::QuarantineRelease {
            id: id.into(),
            recipients: to,
            actor: "alice".into(),
            source: "10.0.0.9".into(),
            digest_token: None,
        };

        let r = handle(&shared, req(&a, None)).await;
        assert!(r.ok, "{r:?}");
        let queue_id = r.queue_id.clone().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while spool.db().lock().unwrap().queue_len().unwrap() != (0, 0) {
            assert!(std::time::Instant::now() < deadline, "not delivered");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let status = spool.db().lock().unwrap().track_status(&queue_id).unwrap();
        assert_eq!(status.as_deref(), Some("delivered"));
        let r = handle(&shared, req(&a, None)).await;
        assert!(!r.ok && r.message.contains("not held"), "{r:?}");
        let r = handle(&shared, req(&b, Some(vec!["not an address".into()]))).await;
        assert!(!r.ok, "{r:?}");
        let r = handle(
            &shared,
            ControlRequest::QuarantineDelete {
                id: b.clone(),
                actor: "alice".into(),
                source: "10.0.0.9".into(),
            },
        )
        .await;
        assert!(r.ok, "{r:?}");
        assert!(!spool.quarantine_path(&b).exists());

        let entries = AuditLog::open(&data.audit_db())
            .unwrap()
            .list(&Default::default())
            .unwrap();
        let actions: Vec<_> = entries.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions.len(), 2, "{actions:?}");
        assert!(actions.contains(&"quarantine.release") && actions.contains(&"quarantine.delete"));
        shared.begin_shutdown();
    }

    /// The digest through the control socket: one per covered recipient, never twice, never
    /// for an excluded check's entry or an outside address; a release link releases to its
    /// recipient only, once; a forged or misdirected link releases nothing.
    #[tokio::test(flavor = "multi_thread")]
    async fn digest_links_release_once_to_their_recipient_only() {
        let d = tempfile::tempdir().unwrap();
        let data = DataDir::new(d.path());
        let config = Config::from_toml(
            "[[domain]]\nname = \"local.test\"\nroute = \"maildir\"\n\
             [digest]\nlink_base_url = \"https://gw.local.test\"\n",
        )
        .unwrap();
        let rev = Revision {
            id: 1,
            created_at: 0,
            author: "test".into(),
            comment: String::new(),
            config,
        };
        let (spool, _) = Spool::open(&data).unwrap();
        let shared = Arc::new(Shared::new(data.clone(), rev, spool.clone(), None));
        shared.set_runner(crate::outbound::Runner::start(shared.clone()));
        let both = hold_for(
            &spool,
            &["a@local.test", "b@local.test", "x@far.test"],
            None,
        )
        .await;
        let virus = hold_for(
            &spool,
            &["a@local.test"],
            Some(serde_json::json!([{"recipient": "a@local.test",
                "explanations": [{"stage": "antivirus", "rule": "eicar", "sentence": "virus"}]}])),
        )
        .await;
        let digest = |to: Option<&str>| ControlRequest::Digest {
            to: to.map(str::to_string),
            actor: "alice".into(),
            source: "local".into(),
        };

        let r = handle(&shared, digest(None)).await;
        assert!(r.ok && r.count == Some(2), "{r:?}");
        let r = handle(&shared, digest(None)).await;
        assert!(r.ok && r.count == Some(0), "nothing listed twice: {r:?}");

        // Both digests reach the Maildir; a's lists `both` only (not the virus).
        let new = d.path().join("mailbox/new");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let read = || -> Vec<String> {
            std::fs::read_dir(&new)
                .map(|it| {
                    it.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
                        .collect()
                })
                .unwrap_or_default()
        };
        while read().len() < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "digests not delivered"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let mails = read();
        let a_digest = mails
            .iter()
            .find(|m| m.contains("X-Original-To: a@local.test"))
            .unwrap();
        let parsed = mail_parser::MessageParser::new()
            .parse(a_digest.as_bytes())
            .unwrap();
        let a_text = parsed.body_text(0).unwrap().to_string();
        assert!(!a_text.contains(&virus));
        let links: Vec<&str> = a_text
            .split_whitespace()
            .filter_map(|w| w.strip_prefix("https://gw.local.test/digest/release/"))
            .filter(|t| !t.contains('"') && !t.contains('<'))
            .collect();
        assert_eq!(links.len(), 1, "{a_text}");
        let token = links[0].to_string();
        let key = palisade_store::digest::DigestKey::load(&data.digest_key()).unwrap();
        let claims = key.verify(&token, palisade_store::now_unix()).unwrap();
        assert_eq!(
            (claims.quarantine_id.as_str(), claims.recipient.as_str()),
            (both.as_str(), "a@local.test")
        );

        let release = |to: &str, token: &str| ControlRequest::QuarantineRelease {
            id: both.clone(),
            recipients: Some(vec![to.to_string()]),
            actor: format!("digest:{to}"),
            source: "192.0.2.7".into(),
            digest_token: Some(token.to_string()),
        };
        // a's link asking for b, a link signed with another key: refused.
        let r = handle(&shared, release("b@local.test", &token)).await;
        assert!(!r.ok, "{r:?}");
        let b_token = key.sign(&palisade_store::digest::Claims {
            recipient: "b@local.test".into(),
            ..claims.clone()
        });
        let other_key = palisade_store::digest::DigestKey::generate().sign(&claims);
        let r = handle(&shared, release("a@local.test", &other_key)).await;
        assert!(!r.ok && r.message.contains("signature"), "{r:?}");

        let r = handle(&shared, release("a@local.test", &token)).await;
        assert!(r.ok, "{r:?}");
        let r = handle(&shared, release("a@local.test", &token)).await;
        assert!(!r.ok && r.message.contains("already used"), "{r:?}");

        // Still held for b and x; b's (here: a freshly signed) link works once more.
        let entry = spool
            .db()
            .lock()
            .unwrap()
            .quarantine_get(&both)
            .unwrap()
            .unwrap();
        assert_eq!(entry.state, palisade_spool::QuarantineState::Held);
        let left: Vec<&str> = entry
            .recipients
            .iter()
            .map(|r| r.address.as_str())
            .collect();
        assert_eq!(left, ["b@local.test", "x@far.test"]);
        let r = handle(&shared, release("b@local.test", &b_token)).await;
        assert!(r.ok, "{r:?}");
        assert!(spool.quarantine_path(&both).exists(), "still held for x");

        let entries = AuditLog::open(&data.audit_db())
            .unwrap()
            .list(&Default::default())
            .unwrap();
        let releases: Vec<_> = entries
            .iter()
            .filter(|e| e.action == "quarantine.release")
            .collect();
        assert_eq!(releases.len(), 2, "{entries:?}");
        assert!(releases.iter().any(|e| e.actor == "digest:a@local.test"
            && e.source == "192.0.2.7"
            && e.target == both));
        assert_eq!(
            entries.iter().filter(|e| e.action == "digest.send").count(),
            2
        );
        shared.begin_shutdown();
    }
}
