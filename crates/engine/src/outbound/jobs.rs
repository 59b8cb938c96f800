//! From a due message to running workers: content check, jobs per destination, workers that
//! reuse one connection per destination.

use std::collections::VecDeque;

use tokio::sync::OwnedSemaphorePermit;

use std::sync::Arc;

use super::*;

/// Recipients of one message going to one destination, all sent the same artifact.
pub(super) struct Job {
    pub msg: Arc<QueuedMessage>,
    pub rcpts: Vec<usize>,
    pub dest: Destination,
    /// The content file the job sends (`Spool::artifact_path`).
    pub artifact: u32,
}

#[derive(Default)]
pub(super) struct Dest {
    pub jobs: VecDeque<Job>,
    pub workers: usize,
}

/// Checks the content each due recipient is sent, splits the due recipients into jobs per
/// (destination, artifact) and queues them.
pub(super) async fn dispatch(inner: &Arc<Inner>, msg: QueuedMessage) {
    {
        // Reserve the id while the content is checked.
        if !inner.state.lock().expect("lock").reserve(&msg.id) {
            return;
        }
    }
    let now = palisade_store::now_unix();
    let due = |r: &QueuedRecipient| r.state == RcptState::Queued && r.next_attempt <= now;
    let mut artifacts: Vec<u32> = msg
        .recipients
        .iter()
        .filter(|r| due(r))
        .map(|r| r.artifact)
        .collect();
    artifacts.sort_unstable();
    artifacts.dedup();
    let spool = inner.shared.spool.clone();
    let (msg, verdict) = tokio::task::spawn_blocking(move || {
        let v = artifacts.iter().try_for_each(|&n| spool.verify(&msg, n));
        (msg, v)
    })
    .await
    .expect("verify task");
    if let Err(reason) = verdict {
        set_aside(inner, &msg, &reason).await;
        inner.state.lock().expect("lock").release(&msg.id);
        return;
    }

    let cfg = inner.shared.config();
    let msg = Arc::new(msg);
    let mut groups: Vec<(String, u32, Destination, Vec<usize>)> = Vec::new();
    for (i, r) in msg.recipients.iter().enumerate() {
        if !due(r) {
            continue;
        }
        let (key, dest) = route::destination(&cfg, &r.address);
        match groups.iter_mut().find(|g| g.0 == key && g.1 == r.artifact) {
            Some(g) => g.3.push(i),
            None => groups.push((key, r.artifact, dest, vec![i])),
        }
    }
    {
        let mut st = inner.state.lock().expect("lock");
        if groups.is_empty() {
            st.release(&msg.id);
            return;
        }
        st.set_jobs(&msg.id, groups.len());
        for (key, artifact, dest, rcpts) in groups {
            st.dests.entry(key).or_default().jobs.push_back(Job {
                msg: msg.clone(),
                rcpts,
                dest,
                artifact,
            });
        }
    }
    start_workers(inner);
}

/// Starts a worker for every destination that has waiting jobs and room for one more.
pub(super) fn start_workers(inner: &Arc<Inner>) {
    let per_dest = inner.shared.config().delivery.max_per_destination as usize;
    let mut to_start = Vec::new();
    {
        let mut st = inner.state.lock().expect("lock");
        for (key, d) in st.dests.iter_mut() {
            while d.workers < per_dest && d.workers < d.jobs.len() {
                let Ok(permit) = inner.permits.clone().try_acquire_owned() else {
                    break;
                };
                d.workers += 1;
                to_start.push((key.clone(), permit));
            }
        }
    }
    if to_start.is_empty() {
        return;
    }
    let mut set = inner.workers.lock().expect("lock");
    while set.try_join_next().is_some() {}
    for (key, permit) in to_start {
        set.spawn(worker(inner.clone(), key, permit));
    }
}

pub(super) async fn worker(inner: Arc<Inner>, key: String, permit: OwnedSemaphorePermit) {
    let mut conn: Option<client::ClientConn> = None;
    loop {
        let job = {
            let mut st = inner.state.lock().expect("lock");
            let d = st
                .dests
                .get_mut(&key)
                .expect("destination of a running worker");
            match d.jobs.pop_front() {
                Some(j) if !inner.shared.is_shutting_down() => Some(j),
                other => {
                    if let Some(j) = other {
                        d.jobs.push_front(j);
                    }
                    d.workers -= 1;
                    if d.workers == 0 && d.jobs.is_empty() {
                        st.dests.remove(&key);
                    }
                    None
                }
            }
        };
        let Some(job) = job else { break };
        let outcomes = deliver(&inner, &mut conn, &job).await;
        finish_job(&inner, &job, outcomes).await;
    }
    if let Some(c) = conn {
        c.quit().await;
    }
    drop(permit);
    // A permit came free: a destination waiting for one may start now.
    start_workers(&inner);
}
