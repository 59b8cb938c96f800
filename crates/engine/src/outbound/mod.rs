//! The queue runner: from a committed message to the next hop's 250.
//!
//! Freshly accepted messages are handed over directly ([`Runner::submit`]); a periodic scan of
//! `mail.db` picks up deferred recipients whose retry time has come and everything queued at
//! start. Each message is split into jobs, one per destination; each destination has its own
//! queue of jobs and up to `max_per_destination` workers, each holding one connection that it
//! reuses for every job waiting for that destination. A message leaves the queue only when all
//! its recipients are final (delivered or failed); failures produce one bounce.

mod client;
mod maildir;
pub(crate) mod route;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_smtp_proto::Reply;
use palisade_spool::dsn::{self, DsnInput, FailedRecipient};
use palisade_spool::{
    Batch, Event, MessageKind, NewMessage, NewRecipient, Origin, Outcome, OutcomeKind,
    QueuedMessage, QueuedRecipient, schedule,
};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
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
        body: m.body.clone(),
        envid: m.envid.clone(),
        ret: m.ret.clone(),
        recipients: m
            .recipients
            .iter()
            .enumerate()
            .map(|(i, r)| QueuedRecipient {
                idx: i as i64,
                address: r.address.clone(),
                route: r.route.clone(),
                state: "queued".into(),
                attempts: 0,
                next_attempt: m.received_at,
                last_error: None,
                notify: r.notify.clone(),
                orcpt: r.orcpt.clone(),
            })
            .collect(),
    }
}

struct Job {
    msg: Arc<QueuedMessage>,
    rcpts: Vec<usize>,
    dest: Destination,
}

#[derive(Default)]
struct Dest {
    jobs: VecDeque<Job>,
    workers: usize,
}

#[derive(Default)]
struct RunState {
    /// Messages with jobs queued or running: id → jobs not yet finished.
    inflight: HashMap<String, usize>,
    dests: HashMap<String, Dest>,
}

struct Inner {
    shared: Arc<Shared>,
    state: Mutex<RunState>,
    permits: Arc<Semaphore>,
    wake: Notify,
    workers: Mutex<JoinSet<()>>,
    resolver: arc_swap::ArcSwapOption<hickory_resolver::TokioResolver>,
    connector: tokio_rustls::TlsConnector,
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
            connector: crate::tls::opportunistic_connector(),
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
            let mut st = self.inner.state.lock().expect("lock");
            if st.inflight.contains_key(id) {
                return Err(
                    "the message is being delivered right now; try again in a moment".into(),
                );
            }
            st.inflight.insert(id.to_string(), 1);
        }
        let r = op().await;
        self.inner.state.lock().expect("lock").inflight.remove(id);
        Ok(r)
    }

    /// Finishes a message whose recipients are all final (after an operator bounced it): its
    /// bounce goes out and it leaves the queue.
    pub async fn finalize(&self, id: &str) {
        finalize(&self.inner, id).await
    }

    pub fn inflight(&self) -> usize {
        self.inner.state.lock().expect("lock").inflight.len()
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

/// How often the queue is checked for messages left unfinished by a crash (also at start).
const FINISH_INTERVAL: Duration = Duration::from_secs(60);

async fn scan_loop(inner: Arc<Inner>) {
    let mut last_finish: Option<tokio::time::Instant> = None;
    loop {
        if last_finish.is_none_or(|t| t.elapsed() >= FINISH_INTERVAL) {
            last_finish = Some(tokio::time::Instant::now());
            finish_orphans(&inner).await;
        }
        tokio::select! {
            _ = inner.wake.notified() => {}
            _ = tokio::time::sleep(SCAN_INTERVAL) => {}
        }
        if inner.shared.is_shutting_down() {
            return;
        }
        let shared = inner.shared.clone();
        let skip: Vec<String> = inner
            .state
            .lock()
            .expect("lock")
            .inflight
            .keys()
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

/// `dispatch` as a task. Boxed: dispatch → workers → finalize → dispatch (of the bounce) is a
/// cycle the compiler can only check for `Send` with the type erased at one point.
fn dispatch_task(
    inner: Arc<Inner>,
    msg: QueuedMessage,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(async move { dispatch(&inner, msg).await })
}

/// Finalizes messages whose recipients are all done but which are still queued (the engine
/// died between the last outcome and the removal): their bounce goes out, they leave the queue.
async fn finish_orphans(inner: &Arc<Inner>) {
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
        {
            let mut st = inner.state.lock().expect("lock");
            if st.inflight.contains_key(&id) {
                continue;
            }
            st.inflight.insert(id.clone(), 1);
        }
        tracing::info!(event = "queue.finish_unfinished", queue_id = %id);
        finalize(inner, &id).await;
        inner.state.lock().expect("lock").inflight.remove(&id);
    }
}

/// Checks the content, splits the due recipients into jobs per destination and queues them.
async fn dispatch(inner: &Arc<Inner>, msg: QueuedMessage) {
    {
        let mut st = inner.state.lock().expect("lock");
        if st.inflight.contains_key(&msg.id) {
            return;
        }
        // Reserve the id while the content is checked.
        st.inflight.insert(msg.id.clone(), 1);
    }
    let spool = inner.shared.spool.clone();
    let (msg, verdict) = tokio::task::spawn_blocking(move || {
        let v = spool.verify(&msg);
        (msg, v)
    })
    .await
    .expect("verify task");
    if let Err(reason) = verdict {
        set_aside(inner, &msg.id, &reason).await;
        inner.state.lock().expect("lock").inflight.remove(&msg.id);
        return;
    }

    let cfg = inner.shared.config();
    let now = palisade_store::now_unix();
    let msg = Arc::new(msg);
    let mut groups: Vec<(String, Destination, Vec<usize>)> = Vec::new();
    for (i, r) in msg.recipients.iter().enumerate() {
        if r.state != "queued" || r.next_attempt > now {
            continue;
        }
        let (key, dest) = route::destination(&cfg, &r.address);
        match groups.iter_mut().find(|g| g.0 == key) {
            Some(g) => g.2.push(i),
            None => groups.push((key, dest, vec![i])),
        }
    }
    {
        let mut st = inner.state.lock().expect("lock");
        if groups.is_empty() {
            st.inflight.remove(&msg.id);
            return;
        }
        st.inflight.insert(msg.id.clone(), groups.len());
        for (key, dest, rcpts) in groups {
            st.dests.entry(key).or_default().jobs.push_back(Job {
                msg: msg.clone(),
                rcpts,
                dest,
            });
        }
    }
    start_workers(inner);
}

/// Starts a worker for every destination that has waiting jobs and room for one more.
fn start_workers(inner: &Arc<Inner>) {
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

async fn worker(inner: Arc<Inner>, key: String, permit: OwnedSemaphorePermit) {
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

/// The reply text and whether it is final, for every recipient of the job.
type Results = Vec<(usize, Result<Reply, Reply>, Option<String>)>;

async fn deliver(
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
            let content = inner.shared.spool.content_path(&msg.id);
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

async fn smtp_delivery(
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
        size: msg.size,
        eight_bit: msg.body.as_deref() == Some("8BITMIME"),
        smtputf8: msg.smtputf8,
        envid: msg.envid.as_deref(),
        ret: msg.ret.as_deref(),
    };
    let rcpts: Vec<client::RcptSpec<'_>> = job
        .rcpts
        .iter()
        .map(|&i| {
            let r = &msg.recipients[i];
            client::RcptSpec {
                address: &r.address,
                notify: r.notify.as_deref(),
                orcpt: r.orcpt.as_deref(),
            }
        })
        .collect();
    let content = inner.shared.spool.content_path(&msg.id);

    // A reused connection may have been closed by the server while idle: one fresh try.
    for attempt in 0..2 {
        if conn.as_ref().is_none_or(|c| !c.is_usable()) {
            *conn = None;
            match connect(inner, dest, cfg).await {
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
async fn connect(
    inner: &Arc<Inner>,
    dest: &Destination,
    cfg: &palisade_store::Config,
) -> Result<client::ClientConn, Reply> {
    let resolver = inner.resolver.load_full();
    let targets = route::targets(resolver.as_deref(), dest, cfg.delivery.remote_port)
        .await
        .map_err(|e| e.0)?;
    let mut errors = Vec::new();
    for t in &targets {
        let res = client::ClientConn::connect(
            t,
            &cfg.system.hostname,
            cfg.delivery.tls,
            &inner.connector,
            Duration::from_secs(cfg.delivery.connect_timeout_secs),
            Duration::from_secs(cfg.delivery.command_timeout_secs),
        )
        .await;
        match res {
            Ok(c) => return Ok(c),
            Err(e) => {
                tracing::info!(event = "delivery.connect_failed", target = %t, error = %e);
                errors.push(e);
            }
        }
    }
    Err(Reply::new(
        451,
        "4.4.1",
        format!("no host accepted the connection: {}", errors.join("; ")),
    ))
}

/// Records a job's outcomes and, when it was the message's last job, finalizes the message.
async fn finish_job(inner: &Arc<Inner>, job: &Job, outcomes: Vec<Outcome>) {
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
    let last = {
        let mut st = inner.state.lock().expect("lock");
        match st.inflight.get_mut(&job.msg.id) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            _ => true,
        }
    };
    if last {
        finalize(inner, &job.msg.id).await;
        inner
            .state
            .lock()
            .expect("lock")
            .inflight
            .remove(&job.msg.id);
    }
}

/// When no recipient is left queued: bounce the failed ones (once) and remove the message.
async fn finalize(inner: &Arc<Inner>, id: &str) {
    let shared = inner.shared.clone();
    let qid = id.to_string();
    let loaded =
        tokio::task::spawn_blocking(move || shared.spool.db().lock().expect("lock").message(&qid))
            .await;
    let msg = match loaded {
        Ok(Ok(Some(m))) => m,
        // Deleted by an admin meanwhile.
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
    if msg.recipients.iter().any(|r| r.state == "queued") {
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
        .filter(|r| r.state == "failed" && dsn::wants_failure_report(r.notify.as_deref()))
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
            inner.shared.spool.remove_content(&msg.id);
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

async fn make_bounce(
    inner: &Arc<Inner>,
    msg: &QueuedMessage,
    failed: &[&QueuedRecipient],
) -> Result<NewMessage, String> {
    let cfg = inner.shared.config();
    let original = tokio::fs::read(inner.shared.spool.content_path(&msg.id))
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
        ret_full: msg.ret.as_deref() == Some("FULL"),
        original: &original,
        failed: &failed,
    });
    let id = palisade_spool::Spool::new_id();
    let mut file = inner.shared.spool.create(&id).map_err(|e| e.to_string())?;
    file.write(&content).await.map_err(|e| e.to_string())?;
    let spooled = file.finish().await.map_err(|e| e.to_string())?;
    let now = palisade_store::now_unix();
    let domain = route::domain_of(&msg.sender).unwrap_or("");
    Ok(NewMessage {
        id,
        received_at: now,
        expires_at: now + cfg.delivery.max_lifetime_secs as i64,
        sender: String::new(),
        size: spooled.size,
        sha256: spooled.sha256,
        kind: MessageKind::Dsn,
        smtputf8: msg.smtputf8,
        body: Some("8BITMIME".into()),
        envid: None,
        ret: None,
        recipients: vec![NewRecipient {
            address: msg.sender.clone(),
            route: route::key(&cfg, domain),
            notify: Some("NEVER".into()),
            orcpt: None,
        }],
        origin: Origin {
            listener: "local".into(),
            client_ip: "127.0.0.1".into(),
            client_helo: cfg.system.hostname.clone(),
            tls: None,
            auth_user: None,
        },
        message_id: Some(format!("<{}.dsn@{}>", msg.id, cfg.system.hostname)),
        subject: Some("Undelivered Mail Returned to Sender".into()),
        from_header: Some(format!("MAILER-DAEMON@{}", cfg.system.hostname)),
    })
}

/// Content that fails its integrity check is moved out of the spool and reported; it is never
/// delivered.
async fn set_aside(inner: &Arc<Inner>, id: &str, reason: &str) {
    let path = inner.shared.spool.set_aside(id);
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
