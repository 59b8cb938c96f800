//! `palisade av update FILE…` and `palisade av status`: ClamAV signature databases for an
//! appliance that cannot download them (see `palisade_store::clamav`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Subcommand;
use palisade_store::{AuditLog, ConfigStore, DataDir, clamav};
use serde_json::json;

#[derive(Subcommand)]
pub enum AvCmd {
    /// Install signature databases (main.cvd, daily.cvd, a local .ndb/.hdb/.ldb/.yar …) into
    /// the data directory's clamav/ and ask clamd to reload them.
    Update {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Install only; clamd loads them when it next starts or reloads.
        #[arg(long)]
        no_reload: bool,
    },
    /// Fetch signatures now from `[antivirus] mirror` and `custom_urls` with freshclam (the
    /// running engine does it, and then asks clamd to reload; without an engine, this command
    /// runs freshclam itself).
    Fetch,
    /// The installed databases, their age, and what clamd says it runs.
    Status {
        #[arg(long)]
        json: bool,
    },
}

fn clamd_address(data: &DataDir) -> Result<palisade_store::config::ClamdAddress> {
    let store = ConfigStore::open(&data.config_db())?;
    let cfg = store.current()?.map(|r| r.config).unwrap_or_default();
    cfg.antivirus
        .address()
        .map_err(|e| anyhow::anyhow!("antivirus.clamd: {e}"))
}

pub fn run(data: &DataDir, cmd: AvCmd, actor: &str) -> Result<ExitCode> {
    let dir = clamav::directory(data);
    match cmd {
        AvCmd::Update { files, no_reload } => {
            // All files are checked before any is installed.
            let mut loaded = Vec::new();
            for f in &files {
                let name = f
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_string();
                let content =
                    std::fs::read(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
                clamav::inspect(&name, &content).map_err(|e| anyhow::anyhow!(e))?;
                loaded.push((name, content));
            }
            let mut audit = AuditLog::open(&data.audit_db())?;
            for (name, content) in &loaded {
                let db = clamav::install(&dir, name, content).map_err(|e| anyhow::anyhow!(e))?;
                audit.append(
                    actor,
                    "local",
                    "antivirus.signatures",
                    name,
                    &json!({ "bytes": db.bytes, "kind": db.kind, "version": db.version,
                             "signatures": db.signatures }),
                )?;
                println!(
                    "installed {name}: {} signature(s){}",
                    db.signatures,
                    db.version
                        .map(|v| format!(", version {v}"))
                        .unwrap_or_default()
                );
            }
            if no_reload {
                return Ok(ExitCode::SUCCESS);
            }
            let address = clamd_address(data)?;
            match clamav::clamd_command(&address, "RELOAD", Duration::from_secs(10)) {
                Ok(a) if a.starts_with("RELOADING") => {
                    println!("clamd at {address} is reloading its databases");
                    Ok(ExitCode::SUCCESS)
                }
                Ok(a) => bail!("clamd at {address} answered RELOAD with {a:?}"),
                Err(e) => {
                    println!("{e}; it loads the databases when it starts");
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        AvCmd::Fetch => {
            let req = palisade_control::engine::ControlRequest::AvUpdate {
                actor: actor.to_string(),
                source: "local".into(),
            };
            match palisade_control::engine::control_request(&data.control_socket(), &req) {
                Ok(r) if r.ok => {
                    println!("{}", r.message);
                    Ok(ExitCode::SUCCESS)
                }
                Ok(r) => bail!("{}", r.message),
                Err(e) if e.is_not_running() => {
                    let cfg = ConfigStore::open(&data.config_db())?
                        .current()?
                        .map(|r| r.config)
                        .unwrap_or_default();
                    let owner = nix::unistd::User::from_uid(nix::unistd::geteuid())
                        .ok()
                        .flatten()
                        .map(|u| u.name)
                        .unwrap_or_else(|| "root".into());
                    let o = clamav::freshclam_update(data, &owner, &cfg.antivirus);
                    let mut audit = AuditLog::open(&data.audit_db())?;
                    audit.append(
                        actor,
                        "local",
                        "antivirus.update",
                        if o.ok { "ok" } else { "failed" },
                        &json!({ "message": o.message }),
                    )?;
                    if !o.ok {
                        bail!("{}", o.message);
                    }
                    println!("{}", o.message);
                    if let Ok(address) = cfg.antivirus.address() {
                        match clamav::clamd_command(&address, "RELOAD", Duration::from_secs(10)) {
                            Ok(_) => println!("clamd at {address} is reloading its databases"),
                            Err(e) => println!("{e}; it loads the databases when it starts"),
                        }
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => bail!("the engine did not answer: {e}"),
            }
        }
        AvCmd::Status { json } => {
            let dbs = clamav::installed(&dir);
            let last_update = clamav::last_update(data);
            let newest = clamav::newest(&dbs);
            let age = newest.map(|t| palisade_store::now_unix() - t);
            let stale = age.is_none_or(|a| a > clamav::STALE_AFTER_SECS);
            let address = clamd_address(data)?;
            let clamd = clamav::clamd_command(&address, "VERSION", Duration::from_secs(5));
            // What the running engine sees (it probes clamd every few seconds).
            let degraded = palisade_control::engine::control_request(
                &data.control_socket(),
                &palisade_control::engine::ControlRequest::Stats,
            )
            .ok()
            .and_then(|r| r.stats)
            .map(|s| s.degraded);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "directory": dir,
                        "databases": dbs,
                        "newest": newest,
                        "age_secs": age,
                        "stale": stale,
                        "clamd": { "address": address.to_string(),
                                   "version": clamd.as_ref().ok(),
                                   "error": clamd.as_ref().err() },
                        "engine_degraded": degraded,
                        "last_update": last_update,
                    }))?
                );
            } else {
                for d in &dbs {
                    println!(
                        "{:<24} {:<10} {:>9} signatures {:>12} bytes",
                        d.name, d.kind, d.signatures, d.bytes
                    );
                }
                match age {
                    None => println!("no signature databases in {}", dir.display()),
                    Some(a) => println!(
                        "newest signatures are {}h old{}",
                        a / 3600,
                        if stale { " (STALE)" } else { "" }
                    ),
                }
                match &clamd {
                    Ok(v) => println!("clamd at {address}: {v}"),
                    Err(e) => println!("{e}"),
                }
                if let Some(u) = &last_update {
                    println!(
                        "last fetch from the mirror: {} at {}: {}",
                        if u.ok { "ok" } else { "FAILED" },
                        palisade_store::format_unix(u.at),
                        u.message
                    );
                }
                match &degraded {
                    None => println!("the engine is not running"),
                    Some(d) => d.iter().for_each(|d| println!("degraded: {d}")),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
