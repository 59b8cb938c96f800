//! One job's delivery: the SMTP client or the Maildir, and what each recipient's reply means.

use std::sync::Arc;

use super::*;

/// The reply text and whether it is final, for every recipient of the job.
pub(super) type Results = Vec<(usize, Result<Reply, Reply>, Option<String>)>;

pub(super) async fn deliver(
    inner: &Arc<Inner>,
    conn: &mut Option<client::ClientConn>,
    job: &Job,
) -> Vec<Outcome> {
    let cfg = inner.shared.config();
    let msg = &job.msg;
    let addrs: Vec<&str> = job
        .rcpts
        .iter()
        .map(|&i| msg.recipients[i].address.as_str())
        .collect();
    let results: Results = match &job.dest {
        Destination::Maildir => {
            let root = inner.shared.data.mailbox();
            let content = inner.shared.spool.artifact_path(&msg.id, job.artifact);
            let sender = msg.sender.clone();
            let rcpts: Vec<String> = addrs.iter().map(|s| s.to_string()).collect();
            let id = msg.id.clone();
            let host = cfg.system.hostname.clone();
            let res = tokio::task::spawn_blocking(move || {
                let r: Vec<&str> = rcpts.iter().map(String::as_str).collect();
                maildir::deliver(&root, &content, &sender, &r, &id, &host)
            })
            .await
            .expect("maildir task");
            let reply = match res {
                Ok(name) => Ok(Reply::new(
                    250,
                    "2.0.0",
                    format!("delivered to maildir as {name}"),
                )),
                Err(e) => Err(Reply::new(
                    451,
                    "4.3.0",
                    format!("maildir delivery failed: {e}"),
                )),
            };
            job.rcpts
                .iter()
                .map(|&i| (i, reply.clone(), Some("maildir".to_string())))
                .collect()
        }
        dest => smtp_delivery(inner, conn, job, dest, &cfg).await,
    };

    let now = palisade_store::now_unix();
    results
        .into_iter()
        .map(|(i, res, remote)| {
            let r = &msg.recipients[i];
            let (kind, reply) = match res {
                Ok(reply) if reply.is_positive() => (OutcomeKind::Delivered, reply),
                Ok(reply) | Err(reply) => {
                    if reply.code >= 500 {
                        (OutcomeKind::Failed, reply)
                    } else if now >= msg.expires_at {
                        let expired = Reply::new(
                            451,
                            "4.4.7",
                            format!("message expired in the queue; last error: {reply}"),
                        );
                        (OutcomeKind::Failed, expired)
                    } else {
                        let next = schedule::next_attempt(
                            now,
                            r.attempts as u32 + 1,
                            cfg.delivery.retry_initial_secs,
                            cfg.delivery.retry_max_secs,
                            msg.expires_at,
                        );
                        (OutcomeKind::Deferred { next_attempt: next }, reply)
                    }
                }
            };
            Outcome {
                message_id: msg.id.clone(),
                idx: r.idx,
                rcpt: r.address.clone(),
                kind,
                tls: conn
                    .as_ref()
                    .and_then(|c| c.tls.clone())
                    .filter(|_| remote.as_deref() != Some("maildir")),
                remote,
                reply: reply.to_string(),
            }
        })
        .collect()
}

pub(super) async fn smtp_delivery(
    inner: &Arc<Inner>,
    conn: &mut Option<client::ClientConn>,
    job: &Job,
    dest: &Destination,
    cfg: &palisade_store::Config,
) -> Results {
    let msg = &job.msg;
    let all = |reply: Reply, remote: Option<String>| -> Results {
        job.rcpts
            .iter()
            .map(|&i| (i, Err(reply.clone()), remote.clone()))
            .collect()
    };
    let env = client::Envelope {
        sender: &msg.sender,
        size: msg.artifact(job.artifact).map_or(msg.size, |a| a.size),
        eight_bit: msg.body == Some(Body::EightBitMime),
        smtputf8: msg.smtputf8,
        envid: msg.envid.as_deref(),
        ret: msg.ret,
    };
    let rcpts: Vec<client::RcptSpec<'_>> = job
        .rcpts
        .iter()
        .map(|&i| {
            let r = &msg.recipients[i];
            client::RcptSpec {
                address: &r.address,
                notify: r.notify,
                orcpt: r.orcpt.as_deref(),
            }
        })
        .collect();
    let content = inner.shared.spool.artifact_path(&msg.id, job.artifact);

    // A reused connection may have been closed by the server while idle: one fresh try.
    for attempt in 0..2 {
        if conn.as_ref().is_none_or(|c| !c.is_usable()) {
            *conn = None;
            match connect(inner, job, dest, cfg).await {
                Ok(c) => *conn = Some(c),
                Err(reply) => return all(reply, None),
            }
        }
        let c = conn.as_mut().expect("connected");
        let remote = c.remote.clone();
        match c.transaction(&env, &rcpts, &content).await {
            Ok(replies) => {
                return job
                    .rcpts
                    .iter()
                    .zip(replies)
                    .map(|(&i, r)| (i, Ok(r), Some(remote.clone())))
                    .collect();
            }
            Err(e) => {
                *conn = None;
                if attempt == 1 {
                    return all(Reply::new(451, "4.4.2", e), Some(remote));
                }
                tracing::debug!(event = "delivery.reconnect", queue_id = %msg.id, error = %e);
            }
        }
    }
    unreachable!("the loop returns")
}

/// Tries the destination's hosts in order until one accepts a connection.
pub(super) async fn connect(
    inner: &Arc<Inner>,
    job: &Job,
    dest: &Destination,
    cfg: &palisade_store::Config,
) -> Result<client::ClientConn, Reply> {
    let resolver = inner.resolver.load_full();
    let targets = route::targets(resolver.as_deref(), dest, cfg.delivery.remote_port)
        .await
        .map_err(|e| e.0)?;
    let mut errors = Vec::new();
    let mut tls_failed: Option<String> = None;
    let key = job
        .rcpts
        .first()
        .map(|&i| route::for_address(cfg, &job.msg.recipients[i].address))
        .unwrap_or_default();
    for t in &targets {
        let destination = tls_destination(&key, t);
        let tls = match inner.connectors.for_destination(cfg, &destination) {
            Ok(tls) => tls,
            Err(e) => {
                tracing::warn!(event = "delivery.tls_policy", target = %t, error = %e);
                tls_failed.get_or_insert_with(|| e.clone());
                errors.push(format!("{t}: {e}"));
                continue;
            }
        };
        let res = client::ClientConn::connect(
            t,
            &cfg.system.hostname,
            &tls,
            Duration::from_secs(cfg.delivery.connect_timeout_secs),
            Duration::from_secs(cfg.delivery.command_timeout_secs),
        )
        .await;
        match res {
            Ok(c) => return Ok(c),
            Err(e) => {
                tracing::info!(event = "delivery.connect_failed", target = %t, error = %e.message, tls_policy = e.tls);
                if e.tls {
                    tls_failed.get_or_insert_with(|| tls.source.clone());
                }
                errors.push(e.message);
            }
        }
    }
    if let Some(source) = tls_failed {
        // Never plaintext when the policy demands TLS: the recipients wait for a host that
        // meets it (and expire into a bounce if none does).
        return Err(Reply::new(
            451,
            "4.7.5",
            format!("TLS policy ({source}) not met: {}", errors.join("; ")),
        ));
    }
    Err(Reply::new(
        451,
        "4.4.1",
        format!("no host accepted the connection: {}", errors.join("; ")),
    ))
}

/// The name a connection's TLS policy is looked up under: the recipient domain for MX
/// delivery, the route's domain for a static route, the host name otherwise.
fn tls_destination(key: &str, target: &route::Target) -> String {
    key.strip_prefix("mx:")
        .or_else(|| key.strip_prefix("route:"))
        .unwrap_or(&target.name)
        .to_string()
}
