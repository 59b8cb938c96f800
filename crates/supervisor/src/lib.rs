//! `palisade run`: the supervisor.
//!
//! It is root only long enough to prepare the data directory, create the service users, bind
//! the listening sockets and start the children; it then only watches them. Each child
//! (`palisade engine`, `palisade console`, later `palisade ha`) runs as its own user with
//! its sockets handed over as descriptors. A crashed child is restarted with backoff, forever:
//! queued mail is safe on disk and is delivered as soon as the engine stays up, and the console
//! an operator needs to find out why must not go away with it. One that keeps crashing is in
//! the crash-loop state (see [`restart`]), reported loudly — in the status snapshot, the
//! sd-notify STATUS line, the log and the audit log — while the other services keep running.
//! On SIGTERM the children drain and the supervisor exits 0.
//!
//! The same code runs under systemd (READY/STATUS/WATCHDOG over sd-notify) and on a laptop.

mod child;
pub mod control;
pub mod restart;
mod setup;

use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use palisade_control::ListenerRole;
use palisade_store::{AuditLog, DataDir, Problem};
use restart::{Change, RestartTracker};
use sd_notify::NotifyState;
use tokio::io::AsyncReadExt;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

/// capability(7) numbers of the two capabilities `palisade ha` keeps.
const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("the configuration has {} problem(s)", .0.len())]
    Config(Vec<Problem>),
    #[error(transparent)]
    Store(#[from] palisade_store::StoreError),
    #[error("{0}")]
    Setup(String),
    #[error("cannot listen on {addr}: {error}")]
    Bind { addr: SocketAddr, error: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl SupervisorError {
    /// 64 (EX_USAGE) for configuration problems, as the configuration contract says; 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            SupervisorError::Config(_) => 64,
            _ => 1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub data: PathBuf,
    /// Imported as the first configuration revision when the data dir has none.
    pub initial_config: Option<PathBuf>,
    /// How long children get to drain on shutdown before they are killed.
    pub drain_grace: Duration,
}

pub fn run(opts: RunOptions) -> Result<(), SupervisorError> {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o007));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(supervise(opts))
}

/// Binds, retrying for a while: a previous instance may still be draining.
async fn bind(addr: SocketAddr) -> Result<TcpListener, SupervisorError> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match TcpListener::bind(addr) {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => {
                return Err(SupervisorError::Bind {
                    addr,
                    error: e.to_string(),
                });
            }
        }
    }
}

enum Event {
    Ready(usize),
    Exited(usize, std::io::Result<ExitStatus>),
    Control(
        control::Request,
        tokio::sync::oneshot::Sender<control::Response>,
    ),
}

struct Slot {
    spec: child::ChildSpec,
    pid: Option<Pid>,
    ready: bool,
    started: Instant,
    ready_at: Option<Instant>,
    tracker: RestartTracker,
    restart_at: Option<Instant>,
    /// Restarts so far (crashes and requested ones).
    restarts: u64,
    last_exit: Option<String>,
    last_exit_code: Option<i32>,
    last_exit_signal: Option<String>,
    /// The next exit was asked for (a restart from the console), not a crash.
    restart_requested: bool,
}

impl Slot {
    /// Stop the child and start it again at once (not counted as a crash); a child that is
    /// not running is started at once (if its `only_if` allows).
    fn request_restart(&mut self) {
        match self.pid {
            Some(pid) => {
                self.restart_requested = true;
                let _ = kill(pid, Signal::SIGTERM);
            }
            None => self.restart_at = Some(Instant::now()),
        }
    }

    fn new(spec: child::ChildSpec, tracker: RestartTracker) -> Slot {
        Slot {
            spec,
            pid: None,
            ready: false,
            started: Instant::now(),
            ready_at: None,
            tracker,
            restart_at: Some(Instant::now()),
            restarts: 0,
            last_exit: None,
            last_exit_code: None,
            last_exit_signal: None,
            restart_requested: false,
        }
    }

    /// Since when the child has been ready, if it is.
    fn up_since(&self) -> Option<Instant> {
        self.ready_at.filter(|_| self.ready)
    }

    fn state(&self) -> control::ChildState {
        use control::ChildState as S;
        if self.tracker.in_crash_loop() {
            S::CrashLoop
        } else if self.pid.is_some() {
            if self.ready { S::Running } else { S::Starting }
        } else if self.restart_at.is_some() {
            if self.last_exit.is_some() {
                S::Backoff
            } else {
                S::Starting
            }
        } else {
            S::Stopped
        }
    }

    fn status(&self, now: Instant, now_unix: i64) -> control::ChildStatus {
        control::ChildStatus {
            name: self.spec.name.to_string(),
            state: self.state(),
            pid: self.pid.map(|p| p.as_raw()),
            ready: self.ready,
            up_secs: self.pid.map(|_| self.started.elapsed().as_secs()),
            restarts: self.restarts,
            last_exit: self.last_exit.clone(),
            last_exit_code: self.last_exit_code,
            last_exit_signal: self.last_exit_signal.clone(),
            crashes: self.tracker.crashes_in_window(now) as u64,
            crash_window_secs: self.tracker.window().as_secs(),
            crash_loop_since: self
                .tracker
                .crash_loop_since()
                .map(|t| unix_at(t, now, now_unix)),
            next_restart_at: self.restart_at.map(|t| unix_at(t, now, now_unix)),
        }
    }

    /// `engine crash-looping (7 crashes in 120s), restarting in 30s`
    fn crash_loop_summary(&self, now: Instant) -> String {
        let next = match (self.pid, self.restart_at) {
            (Some(_), _) if self.ready => "up again".to_string(),
            (Some(_), _) => "starting".to_string(),
            (None, Some(t)) => format!(
                "restarting in {}s",
                ceil_secs(t.saturating_duration_since(now))
            ),
            (None, None) => "stopped".to_string(),
        };
        format!(
            "{} crash-looping ({} crashes in {}s), {next}",
            self.spec.name,
            self.tracker.crashes_in_window(now),
            self.tracker.window().as_secs()
        )
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The Unix time of `t`, given that `now` is `now_unix`.
fn unix_at(t: Instant, now: Instant, now_unix: i64) -> i64 {
    if t >= now {
        now_unix + ceil_secs(t - now) as i64
    } else {
        now_unix - (now - t).as_secs() as i64
    }
}

/// The sd-notify STATUS line: what an operator sees in `systemctl status`.
fn status_line(slots: &[Slot], now: Instant) -> String {
    let looping: Vec<String> = slots
        .iter()
        .filter(|s| s.tracker.in_crash_loop())
        .map(|s| s.crash_loop_summary(now))
        .collect();
    if !looping.is_empty() {
        return format!("degraded: {}", looping.join("; "));
    }
    if slots.iter().all(|s| s.ready || !s.spec.wanted()) {
        return "serving".into();
    }
    let restarting: Vec<&str> = slots
        .iter()
        .filter(|s| !s.ready && s.last_exit.is_some())
        .map(|s| s.spec.name)
        .collect();
    if restarting.is_empty() {
        "starting".into()
    } else {
        format!("{} restarting", restarting.join(", "))
    }
}

/// An audit entry for a change of a service's state (the hook for alerting), written off the
/// event loop; a failure is logged, not fatal.
fn audit_service(
    data: &DataDir,
    action: &'static str,
    child: &'static str,
    detail: serde_json::Value,
) {
    let path = data.audit_db();
    tokio::task::spawn_blocking(move || {
        let r = AuditLog::open(&path)
            .and_then(|mut a| a.append("system", "local", action, child, &detail));
        if let Err(e) = r {
            tracing::warn!(event = "supervisor.audit_failed", action, child, error = %e);
        }
    });
}

fn crash_loop_ended(data: &DataDir, slot: &Slot) {
    let up = slot.tracker.recovery().as_secs();
    tracing::info!(
        event = "supervisor.crash_loop_ended",
        child = slot.spec.name,
        up_secs = up,
        "{} has stayed up for {up}s: no longer crash-looping",
        slot.spec.name
    );
    audit_service(
        data,
        "service.recovered",
        slot.spec.name,
        serde_json::json!({ "up_secs": up }),
    );
}

fn notify(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(e) = sd_notify::notify(states)
    {
        tracing::warn!(event = "supervisor.sd_notify_failed", error = %e);
    }
}

fn status(s: &str) {
    notify(&[NotifyState::Status(s)]);
}

/// Only one supervisor per data directory.
fn lock(data: &DataDir) -> Result<nix::fcntl::Flock<std::fs::File>, SupervisorError> {
    let path = data.run().join("supervisor.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| SupervisorError::Setup(format!("{}: {e}", path.display())))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|_| {
        SupervisorError::Setup(format!(
            "another `palisade run` is already using {}",
            data.root().display()
        ))
    })
}

async fn supervise(opts: RunOptions) -> Result<(), SupervisorError> {
    let data_path = std::path::absolute(&opts.data)?;
    let data = DataDir::new(&data_path);
    let accounts = if setup::is_root() {
        Some(setup::accounts()?)
    } else {
        None
    };
    let fresh = !data.config_db().exists();
    setup::prepare_dirs(&data, accounts.as_ref())?;
    let _lock = lock(&data)?;
    let (rev, created) = setup::configuration(&data, opts.initial_config.as_deref())?;
    let admin_password = setup::initial_admin(&data)?;
    setup::create_databases(&data)?;
    setup::digest_key(&data, accounts.as_ref())?;
    setup::fix_db_modes(&data, accounts.as_ref())?;
    let cfg = &rev.config;
    if cfg.domains.is_empty() {
        tracing::warn!(
            event = "supervisor.no_inbound_domain",
            "the configuration has no [[domain]]: mail is accepted only from trusted networks and relayed; nothing is delivered locally"
        );
        eprintln!(
            "Palisade: warning: the configuration has no [[domain]]; no inbound mail will be accepted"
        );
    }
    if created || fresh {
        println!(
            "Palisade: created {} with configuration revision {}",
            data_path.display(),
            rev.id
        );
    }
    let mail_owner = accounts.as_ref().map(|a| (a.mail.uid, a.group));
    let web_owner = accounts.as_ref().map(|a| (a.web.uid, a.group));
    setup::ensure_certificate(
        &data.resolve(&cfg.tls.cert),
        &data.resolve(&cfg.tls.key),
        &cfg.system.hostname,
        mail_owner,
    )?;
    setup::ensure_certificate(
        &data.resolve(&cfg.console.cert),
        &data.resolve(&cfg.console.key),
        &cfg.system.hostname,
        web_owner,
    )?;

    let mut engine_sockets: Vec<(ListenerRole, OwnedFd)> = Vec::new();
    for (role, addrs) in [
        (ListenerRole::Smtp, &cfg.smtp.listen),
        (ListenerRole::Submission, &cfg.smtp.submission_listen),
    ] {
        for addr in addrs {
            engine_sockets.push((role, OwnedFd::from(bind(*addr).await?)));
            println!("Palisade: {} listening on {addr}", role.name());
        }
    }

    let mut console_sockets: Vec<(ListenerRole, OwnedFd)> = Vec::new();
    for addr in &cfg.console.listen {
        console_sockets.push((ListenerRole::Console, OwnedFd::from(bind(*addr).await?)));
        println!("Palisade: console listening on https://{addr}/");
    }
    if let Some(pw) = &admin_password {
        // The first-boot unit relays this line to the serial console; it is shown once.
        println!(
            "Palisade: console user {}",
            palisade_store::accounts::INITIAL_ADMIN
        );
        println!("Palisade: console admin password (one-time, change it at first login): {pw}");
    }

    let tracker = RestartTracker::new(
        cfg.supervisor.restart_limit_burst,
        Duration::from_secs(cfg.supervisor.restart_limit_interval_secs),
    );
    let mut slots = vec![Slot::new(
        child::ChildSpec {
            name: "engine",
            command: "engine",
            account: accounts.as_ref().map(|a| a.mail),
            group: accounts.as_ref().map(|a| a.group),
            sockets: engine_sockets,
            ambient_caps: &[],
            only_if: None,
        },
        tracker.clone(),
    )];
    // A unit without a console listener (a headless node, a benchmark) runs no console.
    if !console_sockets.is_empty() {
        slots.push(Slot::new(
            child::ChildSpec {
                name: "console",
                command: "console",
                account: accounts.as_ref().map(|a| a.web),
                group: accounts.as_ref().map(|a| a.group),
                sockets: console_sockets,
                ambient_caps: &[],
                only_if: None,
            },
            tracker.clone(),
        ));
    }
    // The HA process runs while this unit is in a pair (`DIR/ha/pair.toml`); pairing and
    // unpairing ask for a restart of `ha`, which starts or ends it.
    slots.push(Slot::new(
        child::ChildSpec {
            name: "ha",
            command: "ha-node",
            account: accounts.as_ref().map(|a| a.ha),
            group: accounts.as_ref().map(|a| a.group),
            sockets: Vec::new(),
            ambient_caps: &[CAP_NET_ADMIN, CAP_NET_RAW],
            only_if: Some(data.ha().join("pair.toml")),
        },
        tracker,
    ));

    let exe = child::Program::open(&std::env::current_exe()?)?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let watchdog = sd_notify::watchdog_enabled().map(|d| d / 2);
    let mut watchdog_tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    let mut announced = false;
    let mut last_status = String::from("starting");
    status(&last_status);
    let started_at = palisade_store::now_unix();
    let status_file = data.run().join("status.json");
    let snapshot = |slots: &[Slot]| {
        let (now, now_unix) = (Instant::now(), palisade_store::now_unix());
        control::Status {
            pid: std::process::id(),
            started_at,
            degraded: slots
                .iter()
                .filter(|s| s.tracker.in_crash_loop())
                .map(|s| s.spec.name.to_string())
                .collect(),
            children: slots.iter().map(|s| s.status(now, now_unix)).collect(),
        }
    };
    let control_task = control::serve(&data, tx.clone())?;

    let result = loop {
        // The next restart, or the moment a crash-looping child has stayed up long enough.
        let next_wake = slots
            .iter()
            .flat_map(|s| [s.restart_at, s.tracker.recovery_due(s.up_since())])
            .flatten()
            .min();
        let sleep = async {
            match next_wake {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = term.recv() => break Ok(()),
            _ = int.recv() => break Ok(()),
            _ = hup.recv() => {
                let sock = data.control_socket();
                let r = tokio::task::spawn_blocking(move || {
                    palisade_control::engine::control_request(&sock, &palisade_control::engine::ControlRequest::Reload)
                }).await;
                match r {
                    Ok(Ok(resp)) => tracing::info!(event = "supervisor.reload", ok = resp.ok, message = %resp.message),
                    Ok(Err(e)) => tracing::warn!(event = "supervisor.reload_failed", error = %e),
                    Err(e) => tracing::warn!(event = "supervisor.reload_failed", error = %e),
                }
            }
            _ = watchdog_tick.tick(), if watchdog.is_some() => notify(&[NotifyState::Watchdog]),
            _ = sleep => {
                let now = Instant::now();
                for (i, slot) in slots.iter_mut().enumerate() {
                    if slot.restart_at.is_some_and(|t| t <= now) {
                        slot.restart_at = None;
                        start(&exe, &data_path, i, slot, &tx);
                    }
                    if slot.tracker.check_recovered(now, slot.up_since()) == Change::CrashLoopEnded {
                        crash_loop_ended(&data, slot);
                    }
                }
            }
            Some(ev) = rx.recv() => match ev {
                Event::Control(req, reply) => {
                    let resp = match req {
                        control::Request::Status => control::Response::Status(snapshot(&slots)),
                        control::Request::Restart { child } => match slots.iter_mut().find(|s| s.spec.name == child) {
                            Some(slot) => {
                                tracing::info!(event = "supervisor.restart_requested", child = %child);
                                slot.request_restart();
                                control::Response::Ok { message: format!("{child} is restarting") }
                            }
                            None => control::Response::Error { message: format!("no service named {child}") },
                        },
                        control::Request::HaPair { action, actor, source } => {
                            let action = match action {
                                control::HaPairAction::Create { vip, interface, ha_address, witness } =>
                                    palisade_ha_node::pairing::PairAction::Create { vip, interface, ha_address, witness },
                                control::HaPairAction::Join { code, peer, ha_address, interface, witness } =>
                                    palisade_ha_node::pairing::PairAction::Join { code, peer, ha_address, interface, witness },
                                control::HaPairAction::Unpair => palisade_ha_node::pairing::PairAction::Unpair,
                            };
                            match palisade_ha_node::pairing::apply(&data, action, &actor, &source) {
                                Ok(done) => {
                                    tracing::info!(event = "supervisor.ha_pair", actor = %actor);
                                    // Started (now paired) or stopped (unpaired) by its `only_if`.
                                    if let Some(slot) = slots.iter_mut().find(|s| s.spec.name == "ha") {
                                        slot.request_restart();
                                    }
                                    let message = match &done.settings {
                                        Some(s) => format!("paired: floating address {}/{} on {}", s.vip, s.prefix_len, s.interface),
                                        None => "unpaired: this unit runs standalone".into(),
                                    };
                                    control::Response::Paired { message, code: done.code }
                                }
                                Err(e) => control::Response::Error { message: e.to_string() },
                            }
                        }
                        control::Request::InstallCertificate { service, cert_pem, key_pem } => {
                            match setup::install_certificate(&data, &service, &cert_pem, &key_pem, accounts.as_ref()) {
                                Ok(message) => {
                                    tracing::info!(event = "supervisor.certificate_installed", service = %service);
                                    control::Response::Ok { message }
                                }
                                Err(message) => {
                                    tracing::warn!(event = "supervisor.certificate_refused", service = %service, reason = %message);
                                    control::Response::Error { message }
                                }
                            }
                        }
                    };
                    let _ = reply.send(resp);
                }
                Event::Ready(i) => {
                    slots[i].ready = true;
                    slots[i].ready_at = Some(Instant::now());
                    tracing::info!(event = "supervisor.child_ready", child = slots[i].spec.name);
                    if !announced && slots.iter().all(|s| s.ready || !s.spec.wanted()) {
                        announced = true;
                        last_status = status_line(&slots, Instant::now());
                        notify(&[NotifyState::Ready, NotifyState::Status(&last_status)]);
                        println!("Palisade: ready (data in {})", data_path.display());
                    }
                }
                Event::Exited(i, st) => {
                    let slot = &mut slots[i];
                    slot.pid = None;
                    slot.ready = false;
                    let ready_at = slot.ready_at.take();
                    slot.restarts += 1;
                    let desc = match &st {
                        Ok(s) => s.to_string(),
                        Err(e) => e.to_string(),
                    };
                    slot.last_exit = Some(format!("{} at {}", desc, palisade_store::format_unix(palisade_store::now_unix())));
                    slot.last_exit_code = st.as_ref().ok().and_then(|s| s.code());
                    slot.last_exit_signal = st.as_ref().ok().and_then(|s| {
                        use std::os::unix::process::ExitStatusExt;
                        s.signal().map(|n| Signal::try_from(n).map(|s| s.as_str().to_string()).unwrap_or_else(|_| n.to_string()))
                    });
                    let now = Instant::now();
                    if std::mem::take(&mut slot.restart_requested) {
                        tracing::info!(event = "supervisor.child_restarting", child = slot.spec.name);
                        slot.restart_at = Some(now);
                    } else {
                        tracing::error!(event = "supervisor.child_exited", child = slot.spec.name, status = %desc);
                        // A child that served for a while before dying starts the backoff over;
                        // one that dies before (or right after) becoming ready backs off further.
                        let (delay, change) = slot.tracker.crashed(now, ready_at.map(|t| now.duration_since(t)));
                        if change == Change::CrashLoopBegan {
                            let (name, crashes, window) = (slot.spec.name, slot.tracker.crashes_in_window(now), slot.tracker.window().as_secs());
                            tracing::error!(event = "supervisor.crash_loop", child = name, crashes, window_secs = window,
                                last_exit = %desc,
                                "{name} is crash-looping: {crashes} crashes within {window}s; it keeps being restarted (at most every {}s), the other services keep running",
                                restart::BACKOFF_MAX.as_secs());
                            audit_service(&data, "service.crash_loop", name, serde_json::json!({
                                "crashes": crashes, "window_secs": window, "last_exit": desc,
                            }));
                        }
                        tracing::warn!(event = "supervisor.restart_scheduled", child = slot.spec.name, delay_ms = delay.as_millis() as u64);
                        slot.restart_at = Some(now + delay);
                    }
                }
            }
        }
        let line = status_line(&slots, Instant::now());
        if line != last_status {
            status(&line);
            last_status = line;
        }
        write_status(&status_file, &snapshot(&slots));
    };
    control_task.abort();

    notify(&[NotifyState::Stopping, NotifyState::Status("draining")]);
    tracing::info!(event = "supervisor.stopping");
    // Close our copies of the listening sockets: once the children stop accepting, new
    // clients get a refused connection at once instead of waiting in a backlog nobody reads.
    for s in &mut slots {
        s.spec.sockets.clear();
    }
    for s in &slots {
        if let Some(pid) = s.pid {
            let _ = kill(pid, Signal::SIGTERM);
        }
    }
    let deadline = tokio::time::Instant::now() + opts.drain_grace + Duration::from_secs(5);
    while slots.iter().any(|s| s.pid.is_some()) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(Event::Exited(i, _))) => slots[i].pid = None,
            Ok(Some(Event::Ready(_))) => {}
            Ok(Some(Event::Control(_, reply))) => {
                let _ = reply.send(control::Response::Error {
                    message: "shutting down".into(),
                });
            }
            Ok(None) => break,
            Err(_) => {
                for s in &slots {
                    if let Some(pid) = s.pid {
                        tracing::warn!(event = "supervisor.kill", child = s.spec.name);
                        let _ = kill(pid, Signal::SIGKILL);
                    }
                }
                break;
            }
        }
    }
    for s in &mut slots {
        s.pid = None;
        s.ready = false;
    }
    write_status(&status_file, &snapshot(&slots));
    tracing::info!(event = "supervisor.stopped");
    result
}

/// `DIR/run/status.json`: the same snapshot the control socket gives, for readers that only
/// have the file system.
fn write_status(path: &std::path::Path, st: &control::Status) {
    let tmp = path.with_extension("tmp");
    let body = serde_json::to_vec_pretty(st).unwrap_or_default();
    if std::fs::write(&tmp, body)
        .and_then(|_| std::fs::rename(&tmp, path))
        .is_err()
    {
        tracing::warn!(event = "supervisor.status_write_failed", path = %path.display());
    }
}

fn start(
    exe: &child::Program,
    data: &PathBuf,
    idx: usize,
    slot: &mut Slot,
    tx: &mpsc::UnboundedSender<Event>,
) {
    slot.started = Instant::now();
    if !slot.spec.wanted() {
        tracing::info!(
            event = "supervisor.child_not_wanted",
            child = slot.spec.name
        );
        return;
    }
    let started = match child::spawn(exe, data, &slot.spec) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(event = "supervisor.spawn_failed", child = slot.spec.name, error = %e);
            let _ = tx.send(Event::Exited(idx, Err(e)));
            return;
        }
    };
    slot.pid = started.child.id().map(|p| Pid::from_raw(p as i32));
    tracing::info!(
        event = "supervisor.child_started",
        child = slot.spec.name,
        pid = slot.pid.map(|p| p.as_raw()).unwrap_or(0)
    );
    let tx = tx.clone();
    tokio::spawn(async move {
        let child::Started {
            mut child,
            mut ready,
        } = started;
        let mut buf = [0u8; 64];
        let mut seen = Vec::new();
        let ready_line = async {
            loop {
                match ready.read(&mut buf).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => {
                        seen.extend_from_slice(&buf[..n]);
                        if seen.windows(7).any(|w| w == b"READY=1") {
                            return true;
                        }
                    }
                }
            }
        };
        let status = tokio::select! {
            ok = ready_line => {
                if ok {
                    let _ = tx.send(Event::Ready(idx));
                }
                child.wait().await
            }
            st = child.wait() => st,
        };
        let _ = tx.send(Event::Exited(idx, status));
    });
}
