//! The periodic scan: due retries, and messages a crash left finished but still queued.

use std::sync::Arc;

use super::*;

/// How often the queue is checked for messages left unfinished by a crash (also at start),
/// and expired quarantine entries are purged.
pub(super) const FINISH_INTERVAL: Duration = Duration::from_secs(60);

pub(super) async fn scan_loop(inner: Arc<Inner>) {
    let mut last_finish: Option<tokio::time::Instant> = None;
    loop {
        if last_finish.is_none_or(|t| t.elapsed() >= FINISH_INTERVAL) {
            last_finish = Some(tokio::time::Instant::now());
            finish_orphans(&inner).await;
            purge_quarantine(&inner).await;
        }
        tokio::select! {
            _ = inner.wake.notified() => {}
            _ = tokio::time::sleep(SCAN_INTERVAL) => {}
        }
        if inner.shared.is_shutting_down() {
            return;
        }
        if inner
            .shared
            .replication()
            .is_some_and(|r| !r.may_deliver_queue())
        {
            continue;
        }
        let shared = inner.shared.clone();
        let skip: Vec<String> = inner
            .state
            .lock()
            .expect("lock")
            .reserved()
            .cloned()
            .collect();
        let due = tokio::task::spawn_blocking(move || {
            let db = shared.spool.db().lock().expect("lock");
            let ids = db.due_ids(palisade_store::now_unix(), SCAN_BATCH + skip.len() as u32)?;
            let mut out = Vec::new();
            for id in ids.into_iter().filter(|id| !skip.contains(id)) {
                if let Some(m) = db.message(&id)? {
                    out.push(m);
                }
            }
            Ok::<_, palisade_store::StoreError>(out)
        })
        .await;
        match due {
            Ok(Ok(msgs)) => {
                for m in msgs {
                    dispatch(&inner, m).await;
                }
            }
            Ok(Err(e)) => tracing::error!(event = "queue.scan_failed", error = %e),
            Err(e) => tracing::error!(event = "queue.scan_failed", error = %e),
        }
    }
}

/// Deletes held quarantine entries past their `expires_at`.
async fn purge_quarantine(inner: &Arc<Inner>) {
    let data = inner.shared.data.clone();
    let r = tokio::task::spawn_blocking(move || {
        palisade_spool::quarantine::purge(&data, palisade_store::now_unix())
    })
    .await;
    match r {
        Ok(Ok(purged)) => {
            // Held for a confirmation nobody gave: the sender is told it was not sent.
            let unconfirmed = purged
                .iter()
                .filter_map(crate::confirm::Held::of_entry)
                .collect();
            crate::confirm::spawn_notices(inner.shared.clone(), unconfirmed, true);
        }
        Ok(Err(e)) => tracing::error!(event = "quarantine.purge_failed", error = %e),
        Err(e) => tracing::error!(event = "quarantine.purge_failed", error = %e),
    }
}

/// `dispatch` as a task. Boxed: dispatch → workers → finalize → dispatch (of the bounce) is a
/// cycle the compiler can only check for `Send` with the type erased at one point.
pub(super) fn dispatch_task(
    inner: Arc<Inner>,
    msg: QueuedMessage,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(async move { dispatch(&inner, msg).await })
}

/// Finalizes messages whose recipients are all done but which are still queued (the engine
/// died between the last outcome and the removal): their bounce goes out, they leave the queue.
pub(super) async fn finish_orphans(inner: &Arc<Inner>) {
    let shared = inner.shared.clone();
    let ids =
        tokio::task::spawn_blocking(move || shared.spool.db().lock().expect("lock").finished_ids())
            .await;
    let ids = match ids {
        Ok(Ok(ids)) => ids,
        Ok(Err(e)) => return tracing::error!(event = "queue.scan_failed", error = %e),
        Err(e) => return tracing::error!(event = "queue.scan_failed", error = %e),
    };
    for id in ids {
        if !inner.state.lock().expect("lock").reserve(&id) {
            continue;
        }
        tracing::info!(event = "queue.finish_unfinished", queue_id = %id);
        finalize(inner, &id).await;
        inner.state.lock().expect("lock").release(&id);
    }
}
