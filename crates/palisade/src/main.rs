//! `palisade`: one binary, many roles (like busybox). This file parses arguments and hands
//! over to the crate that owns the role; the operational subcommands print what the store
//! crates return.

#![forbid(unsafe_code)]

mod av;
mod check;
mod dkim;
mod dlp;
mod ha;
mod keys;
mod learn;
mod print;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use palisade_control::engine::{ControlRequest, ControlResponse};
use palisade_spool::admin::{self, Requester};
use palisade_spool::quarantine;
use palisade_store::mail::{QuarantineState, TrackQuery};
use palisade_store::{AuditLog, AuditVerdict, Config, ConfigStore, DataDir, MailDb, StoreError};

#[derive(Parser)]
#[command(
    name = "palisade",
    version,
    about = "Palisade email-security appliance"
)]
struct Cli {
    /// Data directory (the appliance uses /data).
    #[arg(
        long,
        global = true,
        env = "PALISADE_DATA",
        default_value = "./palisade-data"
    )]
    data: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the appliance: the supervisor and all its services.
    Run {
        /// Configuration to start from when the data directory is new (TOML).
        #[arg(long)]
        initial_config: Option<PathBuf>,
        /// Seconds services get to finish in-flight work on shutdown.
        #[arg(long, default_value_t = 30)]
        drain_grace: u64,
    },
    /// The mail engine (started by `run`; runs alone for development).
    #[command(hide = true)]
    Engine {
        #[arg(long, default_value_t = 30)]
        drain_grace: u64,
    },
    /// The web console (started by `run`; runs alone for development).
    #[command(hide = true)]
    Console {
        #[arg(long, default_value_t = 5)]
        drain_grace: u64,
    },
    /// The high-availability process (started by `run` while the unit is in a pair).
    #[command(hide = true, name = "ha-node")]
    HaNode,
    /// High availability: pair two units (create, join), status, failover, unpair.
    #[command(subcommand)]
    Ha(ha::HaCmd),
    /// Console accounts.
    #[command(subcommand)]
    Admin(AdminCmd),
    /// Configuration: export, import, history, rollback.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// The mail queue.
    #[command(subcommand)]
    Queue(QueueCmd),
    /// Quarantined messages: list, show, release, delete.
    #[command(subcommand)]
    Quarantine(QuarantineCmd),
    /// Search message tracking.
    Track(TrackArgs),
    /// Antivirus signatures: install uploaded databases, show their age.
    #[command(subcommand)]
    Av(av::AvCmd),
    /// Teach the spam check's Bayes classifier: message files, Maildir folders or mbox files
    /// that are spam (--spam) or wanted mail (--ham).
    Learn(learn::LearnArgs),
    /// DKIM signing keys of the organisation's domains: generate one (and the TXT record to
    /// publish), list them with whether DNS publishes them.
    #[command(subcommand)]
    Dkim(dkim::DkimCmd),
    /// The gateway's own S/MIME certificate and key: generate, show, export.
    #[command(subcommand)]
    Keys(keys::KeysCmd),
    /// The partner directory: organisations whose S/MIME certificates outbound mail is
    /// encrypted to (add, list, show, remove).
    #[command(subcommand)]
    Partner(keys::PartnerCmd),
    /// Data-loss prevention: the incidents the DLP rules recorded, and the audit report of a
    /// period (text, JSON, CSV, printable HTML).
    #[command(subcommand)]
    Dlp(dlp::DlpCmd),
    /// Run one message file through the filter pipeline and show why it would be delivered,
    /// held or refused (nothing is queued or sent). Exit 65 if the file cannot be read.
    Check(check::CheckArgs),
    /// Firmware: the A/B slots and signed updates (on the appliance).
    #[command(subcommand)]
    System(SystemCmd),
}

#[derive(Subcommand)]
enum SystemCmd {
    /// Both firmware slots, which one runs, their versions.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Verify a signed RAUC bundle and install it into the inactive slot (active after a reboot).
    Update { bundle: PathBuf },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print the configuration in force (or a past revision) as TOML.
    Export {
        #[arg(long)]
        revision: Option<i64>,
    },
    /// Validate a TOML file and make it the configuration in force (a new revision).
    Import {
        file: PathBuf,
        /// Only validate and show the difference.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, default_value = "imported from file")]
        comment: String,
    },
    /// List configuration revisions, newest first.
    History {
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Make a past revision current again (as a new revision).
    Rollback { revision: i64 },
}

#[derive(Subcommand)]
enum AdminCmd {
    /// Create an account: a console user (administrator, operator, auditor) or a
    /// `submission` account for SMTP AUTH on the submission port. Prints its password once.
    AddUser {
        name: String,
        #[arg(long, value_parser = ["administrator", "operator", "auditor", "submission"])]
        role: String,
    },
    /// Give a console user a new one-time password (shown once; changed at the next login).
    /// Also ends the user's sessions and removes their authenticator.
    ResetPassword {
        /// The user; the first-start administrator if omitted.
        user: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check the hash chain; names the first entry that was tampered with.
    Verify {
        /// The copy of the HA peer's log kept here (each chain it sent), not this unit's.
        #[arg(long)]
        peer: bool,
        #[arg(long)]
        json: bool,
    },
    /// Show entries, newest first.
    List {
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only actions starting with this (e.g. `config.`).
        #[arg(long)]
        action: Option<String>,
        /// The copy of the HA peer's log kept here, not this unit's.
        #[arg(long)]
        peer: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum QueueCmd {
    /// List queued messages.
    List {
        /// Only messages whose id, sender or a recipient contains this.
        search: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Try queued messages again now.
    Retry {
        /// A queue id; all messages if omitted together with --all.
        id: Option<String>,
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
    /// Delete queued messages.
    Delete {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Return a queued message to its sender with a bounce (sent at once by a running engine,
    /// else when the engine starts).
    Bounce { id: String },
}

#[derive(Subcommand)]
enum QuarantineCmd {
    /// List quarantined messages, newest first.
    List {
        /// held, released, deleted or all.
        #[arg(long, default_value = "held")]
        state: String,
        /// Only entries whose id, queue id, sender, recipients, subject or reason contains this.
        #[arg(long)]
        search: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Show one entry: metadata, recipients, reason, explanations, the held file's headers.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Enqueue a held message again, byte-identical, to its recipients or those given.
    Release {
        id: String,
        /// Deliver to this address instead of the original recipients (repeatable).
        #[arg(long = "to", value_name = "ADDR")]
        to: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Delete a held message.
    Delete { id: String },
    /// The recipients' quarantine digests: without --now, what the next one would list; with
    /// --now, ask the running engine to send them at once (whatever the hour; audited).
    Digest {
        /// Send now (the engine must be running: it owns the spool).
        #[arg(long)]
        now: bool,
        /// Only this recipient's digest.
        #[arg(long = "to", value_name = "ADDR")]
        to: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct TrackArgs {
    #[arg(long)]
    sender: Option<String>,
    #[arg(long)]
    rcpt: Option<String>,
    #[arg(long)]
    subject: Option<String>,
    #[arg(long)]
    message_id: Option<String>,
    #[arg(long)]
    queue_id: Option<String>,
    /// queued, deferred, delivered, bounced, partial, rejected, deleted, corrupt
    #[arg(long)]
    status: Option<String>,
    /// RFC 3339 time, Unix seconds, or an age like 24h / 7d.
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    until: Option<String>,
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Show every event of each message.
    #[arg(long)]
    events: bool,
    #[arg(long)]
    json: bool,
}

fn init_logs(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, never into a log file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            initial_config,
            drain_grace,
        } => {
            init_logs("info");
            let opts = palisade_supervisor::RunOptions {
                data: cli.data,
                initial_config,
                drain_grace: Duration::from_secs(drain_grace),
            };
            match palisade_supervisor::run(opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(palisade_supervisor::SupervisorError::Config(problems)) => {
                    eprintln!("palisade: the configuration cannot be used:");
                    for p in &problems {
                        eprintln!("  {p}");
                    }
                    ExitCode::from(64)
                }
                Err(e) => {
                    eprintln!("palisade: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
        Command::Engine { drain_grace } => {
            init_logs("info");
            let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
            let opts = palisade_engine::EngineOptions {
                data: cli.data,
                drain_grace: Duration::from_secs(drain_grace),
            };
            match rt.block_on(palisade_engine::run(opts)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("palisade engine: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::HaNode => {
            init_logs("info");
            let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
            let opts = palisade_ha_node::HaOptions { data: cli.data };
            match rt.block_on(palisade_ha_node::run(opts)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("palisade ha: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Console { drain_grace } => {
            init_logs("info");
            let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
            let opts = palisade_console::ConsoleOptions {
                data: cli.data,
                drain_grace: Duration::from_secs(drain_grace),
            };
            match rt.block_on(palisade_console::run(opts)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("palisade console: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check(args) => {
            init_logs("warn");
            let data = DataDir::new(&cli.data);
            match check::run(&data, args) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("palisade check: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::System(cmd) => {
            init_logs("warn");
            let data = DataDir::new(&cli.data);
            match system(&data, cmd) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("palisade: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        other => {
            init_logs("warn");
            let data = DataDir::new(&cli.data);
            match operate(&data, other) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("palisade: {e:#}");
                    match e.downcast_ref::<StoreError>() {
                        Some(StoreError::Invalid(problems)) => {
                            for p in problems {
                                eprintln!("  {p}");
                            }
                            ExitCode::from(64)
                        }
                        _ => ExitCode::FAILURE,
                    }
                }
            }
        }
    }
}

/// Who is acting, for the audit log.
fn actor() -> String {
    let user = std::env::var("SUDO_USER").ok().or_else(|| {
        nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.name)
    });
    format!("cli:{}", user.unwrap_or_else(|| "unknown".into()))
}

fn require_data(data: &DataDir) -> Result<()> {
    if !data.config_db().exists() {
        bail!(
            "{} is not a Palisade data directory (start it once with `palisade run`)",
            data.root().display()
        );
    }
    Ok(())
}

/// Tells a running engine to do something; not running is fine (it reads state at start).
fn nudge(data: &DataDir, req: ControlRequest) -> Option<String> {
    palisade_control::engine::control_request(&data.control_socket(), &req)
        .ok()
        .map(|r| r.message)
}

/// A change to the queue: asked of the running engine (it makes the change, audits it and
/// acts on it at once); when the engine is not running, made here by `local`, the same
/// `palisade_spool::admin` call the engine makes (which audits it too). An engine that was
/// reached but did not answer is an error: the change may have been made, so it is not made
/// a second time here.
fn queue_change(
    data: &DataDir,
    req: ControlRequest,
    local: impl FnOnce(Requester<'_>) -> Result<ControlResponse>,
) -> Result<ControlResponse> {
    match palisade_control::engine::control_request(&data.control_socket(), &req) {
        Ok(r) => Ok(r),
        Err(e) if e.is_not_running() => {
            let actor = actor();
            local(Requester {
                actor: &actor,
                source: "local",
            })
        }
        Err(e) => bail!(
            "the engine did not answer ({e}); the change may or may not have been made: \
             see `palisade queue list`"
        ),
    }
}

fn operate(data: &DataDir, cmd: Command) -> Result<ExitCode> {
    // Scanning files needs no appliance: without one it uses the embedded default [dlp].
    if !matches!(cmd, Command::Dlp(dlp::DlpCmd::Scan { .. })) {
        require_data(data)?;
    }
    match cmd {
        Command::Config(c) => config(data, c),
        Command::Admin(AdminCmd::AddUser { name, role }) => {
            let role = palisade_store::accounts::Role::parse(&role).context("unknown role")?;
            let mut accounts = palisade_store::accounts::Accounts::open(&data.config_db())?;
            let mut audit = AuditLog::open(&data.audit_db())?;
            let (user, password) =
                accounts.create_user(&mut audit, &name, role, &actor(), "local")?;
            println!("{} {}: password {password}", user.role, user.name);
            if role != palisade_store::accounts::Role::Submission {
                println!("(it must be changed at the first login)");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin(AdminCmd::ResetPassword { user }) => {
            let user = user.unwrap_or_else(|| palisade_store::accounts::INITIAL_ADMIN.into());
            let mut accounts = palisade_store::accounts::Accounts::open(&data.config_db())?;
            let mut audit = AuditLog::open(&data.audit_db())?;
            let password = accounts.reset_password(&mut audit, &user, &actor(), "local")?;
            println!("console user {user}: one-time password {password}");
            println!("(it must be changed at the next login; the user's sessions have ended)");
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCmd::Verify { peer: true, json }) => {
            let chains = AuditLog::open(&data.audit_db())?.peer_verify()?;
            if json {
                let v: Vec<_> = chains
                    .iter()
                    .map(|(chain, v)| serde_json::json!({"chain": chain, "result": v}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if chains.is_empty() {
                println!("no copy of the peer's audit log here");
            }
            let mut intact = true;
            for (chain, v) in &chains {
                match v {
                    AuditVerdict::Intact { entries, head } if !json => {
                        println!(
                            "peer's audit log, chain {chain}: intact, {entries} entries, head {head}"
                        )
                    }
                    AuditVerdict::Tampered { seq, reason } => {
                        intact = false;
                        if !json {
                            println!(
                                "peer's audit log, chain {chain}: TAMPERED at entry {seq}: {reason}"
                            )
                        }
                    }
                    _ => {}
                }
            }
            Ok(if intact {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
        Command::Audit(AuditCmd::Verify { peer: false, json }) => {
            let v = AuditLog::open(&data.audit_db())?.verify()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                match &v {
                    AuditVerdict::Intact { entries, head } => {
                        println!("audit log intact: {entries} entries, head {head}")
                    }
                    AuditVerdict::Tampered { seq, reason } => {
                        println!("audit log TAMPERED at entry {seq}: {reason}")
                    }
                }
            }
            Ok(match v {
                AuditVerdict::Intact { .. } => ExitCode::SUCCESS,
                AuditVerdict::Tampered { .. } => ExitCode::from(2),
            })
        }
        Command::Audit(AuditCmd::List {
            limit,
            action,
            peer,
            json,
        }) => {
            let f = palisade_store::audit::AuditFilter {
                limit: Some(limit),
                action_prefix: action,
                ..Default::default()
            };
            let log = AuditLog::open(&data.audit_db())?;
            let entries = if peer {
                log.peer_list(&f)?
            } else {
                log.list(&f)?
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                print::audit(&entries);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Queue(QueueCmd::List {
            search,
            limit,
            json,
        }) => {
            let msgs = MailDb::open(&data.mail_db())?.list_queue(search.as_deref(), limit)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&msgs)?);
            } else {
                print::queue(&msgs);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Queue(QueueCmd::Retry { id, all }) => {
            let source = "local".to_string();
            let r = match (id, all) {
                (Some(id), _) => queue_change(
                    data,
                    ControlRequest::Retry {
                        id: id.clone(),
                        actor: actor(),
                        source,
                    },
                    |by| {
                        let n = admin::retry(data, &id, by)?;
                        Ok(ControlResponse::counted(
                            format!("{n} recipient(s) due now"),
                            n,
                        ))
                    },
                )?,
                (None, true) => queue_change(
                    data,
                    ControlRequest::Flush {
                        actor: actor(),
                        source,
                    },
                    |by| {
                        let n = admin::flush(data, by)?;
                        Ok(ControlResponse::counted(
                            format!("{n} recipient(s) due now"),
                            n,
                        ))
                    },
                )?,
                (None, false) => bail!("name a queue id, or --all"),
            };
            println!("{}", r.message);
            Ok(if r.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Queue(QueueCmd::Delete { ids }) => {
            let mut failed = 0;
            for id in &ids {
                let req = ControlRequest::Delete {
                    id: id.clone(),
                    actor: actor(),
                    source: "local".into(),
                };
                let r = queue_change(data, req, |by| {
                    Ok(if admin::delete(data, id, by)? {
                        ControlResponse::ok(format!("{id} deleted"))
                    } else {
                        ControlResponse::err(format!("{id} is no longer queued"))
                    })
                })?;
                println!("{}", r.message);
                if !r.ok {
                    failed += 1;
                }
            }
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Queue(QueueCmd::Bounce { id }) => {
            let req = ControlRequest::Bounce {
                id: id.clone(),
                actor: actor(),
                source: "local".into(),
            };
            let r = queue_change(data, req, |by| {
                Ok(match admin::bounce(data, &id, by)? {
                    Some(n) => ControlResponse::counted(
                        format!(
                            "{id}: {n} recipient(s) returned to the sender \
                             (the bounce is sent when the engine starts)"
                        ),
                        n,
                    ),
                    None => ControlResponse::err(format!("{id} is not queued")),
                })
            })?;
            if !r.ok {
                bail!("{}", r.message);
            }
            println!("{}", r.message);
            Ok(ExitCode::SUCCESS)
        }
        Command::Quarantine(q) => quarantine_cmd(data, q),
        Command::Av(a) => av::run(data, a, &actor()),
        Command::Learn(l) => learn::run(data, l, &actor()),
        Command::Dkim(d) => dkim::run(data, d, &actor()),
        Command::Keys(k) => keys::keys(data, k, &actor()),
        Command::Partner(p) => keys::partner(data, p, &actor()),
        Command::Ha(h) => ha::run(data, h, &actor()),
        Command::Dlp(d) => dlp::run(data, d, parse_time),
        Command::Track(t) => {
            let q = TrackQuery {
                sender: t.sender,
                rcpt: t.rcpt,
                subject: t.subject,
                message_id: t.message_id,
                queue_id: t.queue_id,
                status: t.status,
                since: t.since.as_deref().map(parse_time).transpose()?,
                until: t.until.as_deref().map(parse_time).transpose()?,
                limit: Some(t.limit),
            };
            let db = MailDb::open(&data.mail_db())?;
            let found = db.track_search(&q)?;
            if t.json {
                let out: Vec<serde_json::Value> = found
                    .iter()
                    .map(|m| {
                        let mut v = serde_json::to_value(m).expect("serialisable");
                        if t.events {
                            v["events"] = serde_json::to_value(
                                db.track_events(&m.queue_id).unwrap_or_default(),
                            )
                            .expect("serialisable");
                        }
                        v
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                for m in &found {
                    print::tracked(m);
                    if t.events {
                        print::events(&db.track_events(&m.queue_id)?);
                    }
                }
                if found.is_empty() {
                    println!("no messages found");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { .. }
        | Command::Check(_)
        | Command::Engine { .. }
        | Command::Console { .. }
        | Command::HaNode
        | Command::System(_) => {
            unreachable!("handled in main")
        }
    }
}

/// The first lines of a held file's header block (at most `max`), for `quarantine show`.
fn held_headers(path: &std::path::Path, max: usize) -> Result<String> {
    use std::io::{BufRead, BufReader, Read};
    let f = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut out = Vec::new();
    for line in BufReader::new(f.take(64 * 1024)).split(b'\n') {
        let line = line?;
        let line = String::from_utf8_lossy(&line)
            .trim_end_matches('\r')
            .to_string();
        if line.is_empty() || out.len() == max {
            break;
        }
        out.push(line);
    }
    Ok(out.join("\n"))
}

fn quarantine_cmd(data: &DataDir, cmd: QuarantineCmd) -> Result<ExitCode> {
    match cmd {
        QuarantineCmd::List {
            state,
            search,
            limit,
            json,
        } => {
            let state = match state.as_str() {
                "all" => None,
                s => Some(
                    s.parse::<QuarantineState>()
                        .map_err(|_| anyhow::anyhow!("--state: held, released, deleted or all"))?,
                ),
            };
            let entries = quarantine::list(data, state, search.as_deref(), limit)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                print::quarantine(&entries);
            }
            Ok(ExitCode::SUCCESS)
        }
        QuarantineCmd::Show { id, json } => {
            let Some(entry) = quarantine::get(data, &id)? else {
                bail!("no quarantined message {id}");
            };
            let headers = if entry.state == QuarantineState::Held {
                held_headers(&data.quarantine().join(&id), 40).map_err(|e| format!("{e:#}"))
            } else {
                Err(format!("the held file is gone (state {})", entry.state))
            };
            if json {
                let mut v = serde_json::to_value(&entry)?;
                match &headers {
                    Ok(h) => v["headers"] = h.clone().into(),
                    Err(e) => v["headers_error"] = e.clone().into(),
                }
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print::quarantine_entry(&entry, &headers);
            }
            Ok(ExitCode::SUCCESS)
        }
        QuarantineCmd::Release { id, to, json } => {
            let chosen = (!to.is_empty()).then_some(to);
            let req = ControlRequest::QuarantineRelease {
                id: id.clone(),
                recipients: chosen.clone(),
                actor: actor(),
                source: "local".into(),
                digest_token: None,
            };
            let r = queue_change(data, req, |by| {
                let recipients = match &chosen {
                    None => None,
                    Some(to) => {
                        let cfg = ConfigStore::open(&data.config_db())?
                            .current()?
                            .map(|r| r.config)
                            .unwrap_or_default();
                        Some(
                            palisade_engine::release_recipients(&cfg, to)
                                .map_err(anyhow::Error::msg)?,
                        )
                    }
                };
                Ok(match quarantine::release(data, &id, recipients, by) {
                    Ok(r) => {
                        let to: Vec<&str> =
                            r.recipients.iter().map(|r| r.address.as_str()).collect();
                        ControlResponse {
                            queue_id: Some(r.queue_id.clone()),
                            ..ControlResponse::counted(
                                format!(
                                    "{id} released as {} to {} (delivered when the engine starts)",
                                    r.queue_id,
                                    to.join(", ")
                                ),
                                to.len(),
                            )
                        }
                    }
                    Err(e) => ControlResponse::err(e.to_string()),
                })
            })?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "id": id,
                        "ok": r.ok,
                        "queue_id": r.queue_id,
                        "message": r.message,
                    }))?
                );
            } else if r.ok {
                println!("{}", r.message);
            }
            if !r.ok {
                if !json {
                    eprintln!("error: {}", r.message);
                }
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        QuarantineCmd::Digest {
            now: true,
            to,
            json,
        } => {
            let req = ControlRequest::Digest {
                to,
                actor: actor(),
                source: "local".into(),
            };
            let r = match palisade_control::engine::control_request(&data.control_socket(), &req) {
                Ok(r) => r,
                Err(e) if e.is_not_running() => {
                    bail!("the engine is not running: digests are sent by the engine")
                }
                Err(e) => bail!("the engine did not answer ({e})"),
            };
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "ok": r.ok, "digests": r.count, "message": r.message,
                    }))?
                );
            } else {
                println!("{}", r.message);
            }
            if !r.ok {
                bail!("{}", r.message);
            }
            Ok(ExitCode::SUCCESS)
        }
        QuarantineCmd::Digest {
            now: false,
            to,
            json,
        } => {
            let cfg = ConfigStore::open(&data.config_db())?
                .current()?
                .map(|r| r.config)
                .unwrap_or_default();
            let db = palisade_store::MailDb::open(&data.mail_db())?;
            let pending = palisade_engine::digest::pending(&db, &cfg, to.as_deref())?;
            if json {
                let v: Vec<serde_json::Value> = pending
                    .iter()
                    .map(|p| {
                        serde_json::json!({
                            "recipient": p.recipient,
                            "entries": p.entries.iter().map(|e| &e.id).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "enabled": cfg.digest.enabled,
                        "hour_utc": cfg.digest.hour,
                        "link_base": cfg.digest_link_base(),
                        "pending": v,
                    }))?
                );
            } else {
                println!(
                    "digest: {} (daily at {:02}:00 UTC), links to {}",
                    if cfg.digest.enabled {
                        "enabled"
                    } else {
                        "disabled"
                    },
                    cfg.digest.hour,
                    cfg.digest_link_base()
                );
                if pending.is_empty() {
                    println!("nothing newly held for a covered recipient");
                }
                for p in &pending {
                    println!("{}: {} held message(s)", p.recipient, p.entries.len());
                    for e in &p.entries {
                        println!(
                            "  {}  {}  {}",
                            e.id,
                            palisade_store::format_unix(e.received_at),
                            palisade_spool::digest::sanitise(
                                e.subject.as_deref().unwrap_or("(no subject)")
                            )
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        QuarantineCmd::Delete { id } => {
            let req = ControlRequest::QuarantineDelete {
                id: id.clone(),
                actor: actor(),
                source: "local".into(),
            };
            let r = queue_change(data, req, |by| {
                Ok(match quarantine::delete(data, &id, by) {
                    Ok(()) => ControlResponse::ok(format!("{id} deleted")),
                    Err(e) => ControlResponse::err(e.to_string()),
                })
            })?;
            if !r.ok {
                bail!("{}", r.message);
            }
            println!("{}", r.message);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn config(data: &DataDir, cmd: ConfigCmd) -> Result<ExitCode> {
    let mut store = ConfigStore::open(&data.config_db())?;
    match cmd {
        ConfigCmd::Export { revision } => {
            let rev = match revision {
                Some(id) => store.get(id)?,
                None => store.current()?.context("no configuration yet")?,
            };
            print!(
                "# Palisade configuration, revision {} ({} by {}: {})\n{}",
                rev.id,
                palisade_store::format_unix(rev.created_at),
                rev.author,
                rev.comment,
                rev.config.to_toml()
            );
            Ok(ExitCode::SUCCESS)
        }
        ConfigCmd::Import {
            file,
            dry_run,
            comment,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let cfg = match Config::from_toml(&text) {
                Ok(c) => c,
                Err(problems) => {
                    eprintln!(
                        "{}: {} problem(s), nothing imported:",
                        file.display(),
                        problems.len()
                    );
                    for p in &problems {
                        eprintln!("  {p}");
                    }
                    return Ok(ExitCode::from(64));
                }
            };
            let current = store.current()?.context("no configuration yet")?;
            let diff = palisade_store::config_store::diff(&current.config, &cfg);
            if diff.is_empty() {
                println!("no change from revision {}", current.id);
                return Ok(ExitCode::SUCCESS);
            }
            print!("{diff}");
            if dry_run {
                println!("(dry run: valid, not imported)");
                return Ok(ExitCode::SUCCESS);
            }
            let mut audit = AuditLog::open(&data.audit_db())?;
            let rev = store.commit_audited(
                &mut audit,
                &cfg,
                &actor(),
                "local",
                &comment,
                Some(current.id),
            )?;
            println!("imported as revision {}", rev.id);
            if let Some(m) = nudge(data, ControlRequest::Reload) {
                println!("engine: {m}");
            }
            Ok(ExitCode::SUCCESS)
        }
        ConfigCmd::History { limit, json } => {
            let h = store.history(limit)?;
            if json {
                let v: Vec<_> = h
                    .iter()
                    .map(|(id, ts, author, comment)| serde_json::json!({"revision": id, "created_at": ts, "author": author, "comment": comment}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for (id, ts, author, comment) in h {
                    println!(
                        "{id:>5}  {}  {author:<20} {comment}",
                        palisade_store::format_unix(ts)
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ConfigCmd::Rollback { revision } => {
            let mut audit = AuditLog::open(&data.audit_db())?;
            let rev = store.rollback(&mut audit, revision, &actor(), "local")?;
            println!(
                "revision {revision} is current again as revision {}",
                rev.id
            );
            if let Some(m) = nudge(data, ControlRequest::Reload) {
                println!("engine: {m}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn system(data: &DataDir, cmd: SystemCmd) -> Result<ExitCode> {
    match cmd {
        SystemCmd::Status { json } => {
            let st = palisade_system::status()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                println!("compatible: {}", st.compatible);
                for s in &st.slots {
                    println!(
                        "{:<10} {:<2} {:<9} {:<5} {}{}{}",
                        s.name,
                        s.bootname.as_deref().unwrap_or("-"),
                        s.state,
                        s.boot_status.as_deref().unwrap_or("-"),
                        s.version.as_deref().unwrap_or("(factory)"),
                        if s.booted { "  [running]" } else { "" },
                        if s.primary { "  [next boot]" } else { "" },
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SystemCmd::Update { bundle } => {
            let report = palisade_system::install_update(&bundle);
            // Recorded whether it worked or not, when there is an audit log to record it in.
            if data.audit_db().exists() {
                let detail = match &report {
                    Ok(r) => {
                        serde_json::json!({ "version": r.version, "slot": r.slot, "ok": true })
                    }
                    Err(e) => serde_json::json!({ "error": e.to_string(), "ok": false }),
                };
                AuditLog::open(&data.audit_db())?.append(
                    &actor(),
                    "local",
                    "system.update",
                    &bundle.display().to_string(),
                    &detail,
                )?;
            }
            let r = report?;
            println!(
                "installed {} into {} ({}); it runs after the next reboot",
                r.version,
                r.slot.as_deref().unwrap_or("the inactive slot"),
                r.bootname.as_deref().unwrap_or("-")
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// RFC 3339, Unix seconds, or an age (`90m`, `24h`, `7d`) before now.
fn parse_time(s: &str) -> Result<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    if let Some((num, unit)) = s.find(|c: char| !c.is_ascii_digit()).map(|i| s.split_at(i))
        && let (Ok(n), Some(mult)) = (
            num.parse::<i64>(),
            match unit {
                "s" => Some(1),
                "m" => Some(60),
                "h" => Some(3600),
                "d" => Some(86400),
                _ => None,
            },
        )
    {
        return Ok(palisade_store::now_unix() - n * mult);
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .with_context(|| {
            format!("'{s}' is not a time (RFC 3339, Unix seconds, or an age like 24h)")
        })?;
    Ok(t.unix_timestamp())
}
