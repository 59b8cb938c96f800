//! `palisade run`: the supervisor.
//!
//! It is root only long enough to prepare the data directory, create the service users, bind
//! the listening sockets and start the children; it then only watches them. Each child
//! (`palisade engine`, `palisade console`, later `palisade ha`) runs as its own user with
//! its sockets handed over as descriptors. A crashed child is restarted with backoff; one that
//! keeps crashing makes the supervisor stop everything and exit with failure, loudly, so that
//! systemd (or the operator) sees it. On SIGTERM the children drain and the supervisor exits 0.
//!
//! The same code runs under systemd (READY/STATUS/WATCHDOG over sd-notify) and on a laptop.

mod child;
pub mod control;
mod setup;

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use palisade_engine::ListenerRole;
use palisade_store::{DataDir, Problem};
use sd_notify::NotifyState;
use tokio::io::AsyncReadExt;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

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
    #[error("{0} keeps crashing; stopped everything")]
    GaveUp(String),
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
    crashes: VecDeque<Instant>,
    consecutive: u32,
    restart_at: Option<Instant>,
    /// Restarts so far (crashes and requested ones).
    restarts: u64,
    last_exit: Option<String>,
    /// The next exit was asked for (a restart from the console), not a crash.
    restart_requested: bool,
}

impl Slot {
    fn new(spec: child::ChildSpec) -> Slot {
        Slot {
            spec,
            pid: None,
            ready: false,
            started: Instant::now(),
            ready_at: None,
            crashes: VecDeque::new(),
            consecutive: 0,
            restart_at: Some(Instant::now()),
            restarts: 0,
            last_exit: None,
            restart_requested: false,
        }
    }

    fn status(&self) -> control::ChildStatus {
        control::ChildStatus {
            name: self.spec.name.to_string(),
            pid: self.pid.map(|p| p.as_raw()),
            ready: self.ready,
            up_secs: self.pid.map(|_| self.started.elapsed().as_secs()),
            restarts: self.restarts,
            last_exit: self.last_exit.clone(),
        }
    }
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
    setup::fix_db_modes(&data, accounts.as_ref())?;
    let cfg = &rev.config;
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

    let mut slots = vec![Slot::new(child::ChildSpec {
        name: "engine",
        command: "engine",
        account: accounts.as_ref().map(|a| a.mail),
        group: accounts.as_ref().map(|a| a.group),
        sockets: engine_sockets,
    })];
    // A unit without a console listener (a headless node, a benchmark) runs no console.
    if !console_sockets.is_empty() {
        slots.push(Slot::new(child::ChildSpec {
            name: "console",
            command: "console",
            account: accounts.as_ref().map(|a| a.web),
            group: accounts.as_ref().map(|a| a.group),
            sockets: console_sockets,
        }));
    }

    let exe = child::Program::open(&std::env::current_exe()?)?;
    let burst = cfg.supervisor.restart_limit_burst as usize;
    let window = Duration::from_secs(cfg.supervisor.restart_limit_interval_secs);
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let watchdog = sd_notify::watchdog_enabled().map(|d| d / 2);
    let mut watchdog_tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    let mut announced = false;
    status("starting");
    let started_at = palisade_store::now_unix();
    let status_file = data.run().join("status.json");
    let snapshot = |slots: &[Slot]| control::Status {
        pid: std::process::id(),
        started_at,
        children: slots.iter().map(Slot::status).collect(),
    };
    let control_task = control::serve(&data, tx.clone())?;

    let result = loop {
        let next_restart = slots.iter().filter_map(|s| s.restart_at).min();
        let sleep = async {
            match next_restart {
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
                    palisade_engine::control_request(&sock, &palisade_engine::ControlRequest::Reload)
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
                }
            }
            Some(ev) = rx.recv() => match ev {
                Event::Control(req, reply) => {
                    let resp = match req {
                        control::Request::Status => control::Response::Status(snapshot(&slots)),
                        control::Request::Restart { child } => match slots.iter_mut().find(|s| s.spec.name == child) {
                            Some(slot) => {
                                tracing::info!(event = "supervisor.restart_requested", child = %child);
                                match slot.pid {
                                    Some(pid) => {
                                        slot.restart_requested = true;
                                        let _ = kill(pid, Signal::SIGTERM);
                                    }
                                    None => slot.restart_at = Some(Instant::now()),
                                }
                                control::Response::Ok { message: format!("{child} is restarting") }
                            }
                            None => control::Response::Error { message: format!("no service named {child}") },
                        },
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
                    if slots.iter().all(|s| s.ready) {
                        if !announced {
                            announced = true;
                            notify(&[NotifyState::Ready, NotifyState::Status("serving")]);
                            println!("Palisade: ready (data in {})", data_path.display());
                        } else {
                            status("serving");
                        }
                    }
                }
                Event::Exited(i, st) => {
                    let slot = &mut slots[i];
                    slot.pid = None;
                    slot.ready = false;
                    slot.restarts += 1;
                    let desc = match &st {
                        Ok(s) => s.to_string(),
                        Err(e) => e.to_string(),
                    };
                    slot.last_exit = Some(format!("{} at {}", desc, palisade_store::format_unix(palisade_store::now_unix())));
                    let now = Instant::now();
                    if std::mem::take(&mut slot.restart_requested) {
                        tracing::info!(event = "supervisor.child_restarting", child = slot.spec.name);
                        slot.restart_at = Some(now);
                        write_status(&status_file, &snapshot(&slots));
                        continue;
                    }
                    tracing::error!(event = "supervisor.child_exited", child = slot.spec.name, status = %desc);
                    slot.crashes.push_back(now);
                    while slot.crashes.front().is_some_and(|t| now.duration_since(*t) > window) {
                        slot.crashes.pop_front();
                    }
                    if slot.crashes.len() >= burst {
                        let name = slot.spec.name;
                        tracing::error!(event = "supervisor.gave_up", child = name, crashes = slot.crashes.len(),
                            window_secs = window.as_secs(), "child keeps crashing: stopping Palisade");
                        eprintln!("Palisade: {name} crashed {} times within {}s; giving up", slot.crashes.len(), window.as_secs());
                        status(&format!("{name} keeps crashing; stopped"));
                        break Err(SupervisorError::GaveUp(name.to_string()));
                    }
                    // A child that served for a while before dying starts the backoff over; one
                    // that dies before (or right after) becoming ready backs off further.
                    let healthy = slot.ready_at.take().is_some_and(|t| t.elapsed() >= Duration::from_secs(1));
                    slot.consecutive = if healthy { 1 } else { slot.consecutive + 1 };
                    let delay = Duration::from_millis(250 * (1u64 << (slot.consecutive - 1).min(7))).min(Duration::from_secs(30));
                    tracing::warn!(event = "supervisor.restart_scheduled", child = slot.spec.name, delay_ms = delay.as_millis() as u64);
                    status(&format!("{} restarting", slot.spec.name));
                    slot.restart_at = Some(now + delay);
                }
            }
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
