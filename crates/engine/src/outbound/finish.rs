//! After a job: outcomes recorded; when a message is done, its bounce and its removal.

use std::sync::Arc;

use super::*;

/// Records a job's outcomes and, when it was the message's last job, finalizes the message.
pub(super) async fn finish_job(inner: &Arc<Inner>, job: &Job, outcomes: Vec<Outcome>) {
    for o in &outcomes {
        let c = &inner.shared.counters;
        match o.kind {
            OutcomeKind::Delivered => {
                Counters::inc(&c.delivered);
                tracing::info!(event = "delivery.delivered", queue_id = %o.message_id, rcpt = %o.rcpt,
                    remote = o.remote.as_deref().unwrap_or(""), tls = o.tls.as_deref().unwrap_or(""), reply = %o.reply);
            }
            OutcomeKind::Deferred { next_attempt } => {
                Counters::inc(&c.deferred);
                tracing::info!(event = "delivery.deferred", queue_id = %o.message_id, rcpt = %o.rcpt,
                    remote = o.remote.as_deref().unwrap_or(""), reply = %o.reply, next_attempt);
            }
            OutcomeKind::Failed => {
                Counters::inc(&c.bounced);
                tracing::info!(event = "delivery.failed", queue_id = %o.message_id, rcpt = %o.rcpt,
                    remote = o.remote.as_deref().unwrap_or(""), reply = %o.reply);
            }
        }
    }
    if let Err(e) = inner
        .shared
        .spool
        .commit(Batch {
            outcomes,
            ..Default::default()
        })
        .await
    {
        // The next hop has the message but we could not record it: it stays queued and will
        // be delivered again (a duplicate, never a loss).
        tracing::error!(event = "delivery.record_failed", queue_id = %job.msg.id, error = %e);
    }
    let last = inner.state.lock().expect("lock").job_done(&job.msg.id);
    if last {
        finalize(inner, &job.msg.id).await;
        inner.state.lock().expect("lock").release(&job.msg.id);
    }
}

/// When no recipient is left queued: bounce the failed ones (once) and remove the message.
pub(super) async fn finalize(inner: &Arc<Inner>, id: &str) {
    let shared = inner.shared.clone();
    let qid = id.to_string();
    let loaded =
        tokio::task::spawn_blocking(move || shared.spool.db().lock().expect("lock").message(&qid))
            .await;
    let msg = match loaded {
        Ok(Ok(Some(m))) => m,
        // Deleted by an admin meanwhile (who removed its files; this is for a crash between).
        Ok(Ok(None)) => {
            inner.shared.spool.remove_content(id);
            return;
        }
        Ok(Err(e)) => {
            tracing::error!(event = "queue.read_failed", queue_id = id, error = %e);
            return;
        }
        Err(e) => {
            tracing::error!(event = "queue.read_failed", queue_id = id, error = %e);
            return;
        }
    };
    if msg.recipients.iter().any(|r| r.state == RcptState::Queued) {
        return;
    }
    let mut batch = Batch {
        remove: vec![msg.id.clone()],
        ..Default::default()
    };
    let mut bounce = None;
    let failed: Vec<&QueuedRecipient> = msg
        .recipients
        .iter()
        .filter(|r| r.state == RcptState::Failed && dsn::wants_failure_report(r.notify))
        .collect();
    if !failed.is_empty() {
        if msg.kind == MessageKind::Dsn || msg.sender.is_empty() {
            tracing::info!(event = "delivery.bounce_suppressed", queue_id = %msg.id,
                "no bounce for a message with the null sender");
        } else {
            match make_bounce(inner, &msg, &failed).await {
                Ok(m) => {
                    bounce = Some(queued_from_new(&m));
                    batch.accepted.push(m);
                }
                Err(e) => {
                    // Keep the message queued rather than lose the bounce; retried next scan.
                    tracing::error!(event = "delivery.bounce_failed", queue_id = %msg.id, error = %e);
                    return;
                }
            }
        }
    }
    match inner.shared.spool.commit(batch).await {
        Ok(()) => {
            inner.shared.spool.remove_message(&msg);
            if let Some(b) = bounce {
                tracing::info!(event = "delivery.bounce_queued", queue_id = %msg.id, bounce_id = %b.id);
                tokio::spawn(dispatch_task(inner.clone(), b));
            }
        }
        Err(e) => {
            tracing::error!(event = "queue.remove_failed", queue_id = %msg.id, error = %e);
            if let Some(b) = bounce {
                inner.shared.spool.remove_content(&b.id);
            }
        }
    }
}

pub(super) async fn make_bounce(
    inner: &Arc<Inner>,
    msg: &QueuedMessage,
    failed: &[&QueuedRecipient],
) -> Result<NewMessage, String> {
    let cfg = inner.shared.config();
    // The copy the failed recipients were sent (the first one's, if they differ).
    let artifact = failed.first().map_or(0, |r| r.artifact);
    let original = tokio::fs::read(inner.shared.spool.artifact_path(&msg.id, artifact))
        .await
        .map_err(|e| e.to_string())?;
    let failed: Vec<FailedRecipient> = failed
        .iter()
        .map(|r| {
            let diag = r
                .last_error
                .clone()
                .unwrap_or_else(|| "delivery failed".into());
            FailedRecipient {
                address: r.address.clone(),
                orcpt: r.orcpt.clone(),
                status: dsn::status_of(&diag, "5.0.0"),
                diagnostic: diag,
                remote: None,
            }
        })
        .collect();
    let content = dsn::build(&DsnInput {
        reporting_host: &cfg.system.hostname,
        queue_id: &msg.id,
        arrival: msg.received_at,
        sender: &msg.sender,
        envid: msg.envid.as_deref(),
        ret_full: msg.ret == Some(Ret::Full),
        original: &original,
        failed: &failed,
    });
    let domain = route::domain_of(&msg.sender).unwrap_or("");
    crate::generated::spool(
        &inner.shared,
        palisade_spool::Spool::new_id(),
        &content,
        crate::generated::Generated {
            kind: MessageKind::Dsn,
            smtputf8: msg.smtputf8,
            recipient: msg.sender.clone(),
            route: route::key(&cfg, domain),
            message_id: format!("<{}.dsn@{}>", msg.id, cfg.system.hostname),
            subject: "Undelivered Mail Returned to Sender".into(),
            from_header: format!("MAILER-DAEMON@{}", cfg.system.hostname),
        },
    )
    .await
}

/// Content that fails its integrity check is moved out of the spool and reported; it is never
/// delivered.
pub(super) async fn set_aside(inner: &Arc<Inner>, msg: &QueuedMessage, reason: &str) {
    let id = msg.id.as_str();
    let path = inner.shared.spool.set_aside(msg);
    tracing::error!(event = "spool.corrupt", queue_id = id, reason, moved_to = %path.display(),
        "queued message set aside: its content is damaged; it will not be delivered");
    let batch = Batch {
        events: vec![Event {
            queue_id: id.into(),
            event: "corrupt".into(),
            rcpt: None,
            detail: reason.into(),
            status: Some("corrupt".into()),
        }],
        remove: vec![id.into()],
        ..Default::default()
    };
    if let Err(e) = inner.shared.spool.commit(batch).await {
        tracing::error!(event = "queue.remove_failed", queue_id = id, error = %e);
    }
}
