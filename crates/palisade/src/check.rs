//! `palisade check FILE.eml`: one message through the filter pipeline of the data
//! directory's configuration (or the embedded default when there is none), without queueing
//! or sending it. What an operator uses to answer "why was this held?", and what tests use.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use palisade_engine::pipeline::{self, Envelope, EnvelopeRecipient, Report};
use palisade_store::{Config, ConfigStore, DataDir};

/// Exit status for a file that cannot be read (EX_DATAERR).
const EX_DATAERR: u8 = 65;
/// Exit status for a usage error (EX_USAGE).
const EX_USAGE: u8 = 64;

#[derive(Clone, Copy, ValueEnum)]
pub enum Dir {
    In,
    Out,
}

#[derive(Args)]
pub struct CheckArgs {
    /// The message (RFC 5322, as it would arrive after DATA); several files are checked one
    /// after the other with the same pipeline (with --json: one JSON object per line).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// in: from anywhere to our domains; out: from our users (as if authenticated).
    #[arg(long, value_enum, default_value = "in")]
    direction: Dir,
    /// Envelope sender (default: the first From address, else the null sender).
    #[arg(long)]
    from: Option<String>,
    /// Envelope recipients (default: the To and Cc addresses).
    #[arg(long = "to")]
    to: Vec<String>,
    /// The client's address.
    #[arg(long, default_value = "192.0.2.1")]
    client: IpAddr,
    #[arg(long, default_value = "client.invalid")]
    helo: String,
    /// Print the whole report as JSON.
    #[arg(long)]
    json: bool,
    /// Leave out what asks DNS (the authentication check: SPF, DKIM, DMARC, ARC; the spam
    /// check's DNS lists): on a machine without DNS, or for output that does not depend on
    /// the network.
    #[arg(long)]
    no_dns: bool,
    /// Check with this configuration (TOML, as `palisade config export` writes it) instead of
    /// the data directory's: a draft rule tried before it is saved (the console's dry run).
    #[arg(long)]
    config: Option<PathBuf>,
}

fn load_config(data: &DataDir) -> Result<(Config, String)> {
    if data.config_db().exists() {
        let store = ConfigStore::open(&data.config_db())?;
        if let Some(rev) = store.current()? {
            return Ok((
                rev.config,
                format!("revision {} of {}", rev.id, data.root().display()),
            ));
        }
    }
    Ok((
        Config::default(),
        "the embedded default configuration".into(),
    ))
}

pub fn run(data: &DataDir, args: CheckArgs) -> Result<ExitCode> {
    let (mut cfg, source) = match &args.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
            match Config::from_toml(&text) {
                Ok(cfg) => (cfg, path.display().to_string()),
                Err(problems) => {
                    for p in problems {
                        eprintln!("palisade check: {}: {p}", path.display());
                    }
                    return Ok(ExitCode::from(EX_USAGE));
                }
            }
        }
        None => load_config(data)?,
    };
    if args.no_dns {
        cfg.authentication.enabled = false;
        cfg.spam.dnsbl.clear();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    // One pipeline for every file (as the engine keeps one per configuration revision).
    let pipeline = pipeline::Pipeline::from_config(&cfg, Some(data));
    let many = args.files.len() > 1;
    let mut status = ExitCode::SUCCESS;
    for file in &args.files {
        let raw = match std::fs::read(file) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("palisade check: {}: {e}", file.display());
                status = ExitCode::from(EX_DATAERR);
                continue;
            }
        };
        let Some(mut envelope) = envelope_for(&cfg, &args, &raw) else {
            eprintln!(
                "palisade check: {}: no recipients: give --to ADDR (the message has no To or Cc address)",
                file.display()
            );
            return Ok(ExitCode::from(EX_USAGE));
        };
        // Inbound S/MIME is opened first, as the engine does: the checks see the decrypted
        // message (kept in a temporary file for the checks that read the file).
        let mut raw = raw;
        let mut decrypted_file = None;
        if envelope.direction == palisade_policy::Direction::Inbound
            && let Some((plain, found)) = pipeline.open_inbound(&raw, || Ok(raw.clone()))?
        {
            if let Some(plain) = plain {
                let mut t = tempfile::NamedTempFile::new()?;
                std::io::Write::write_all(&mut t, &plain)?;
                raw = plain;
                decrypted_file = Some(t);
            }
            envelope.crypto = Some(found);
        }
        let view = std::sync::Arc::new(palisade_inspect::MessageView::from_bytes(
            &raw,
            pipeline.limits(),
        ));
        let path: &std::path::Path = decrypted_file.as_ref().map_or(file.as_path(), |t| t.path());
        let eval = rt.block_on(pipeline.evaluate(
            std::sync::Arc::new(envelope.clone()),
            view.clone(),
            Some(path),
        ));
        let report = Report::new(envelope, &view, eval);
        match (args.json, many) {
            (true, false) => println!("{}", serde_json::to_string_pretty(&report)?),
            // Several files: one JSON object per line.
            (true, true) => println!("{}", serde_json::to_string(&report)?),
            (false, _) => {
                if many {
                    println!("== {}", file.display());
                }
                print_human(&report, &source);
            }
        }
    }
    Ok(status)
}

/// The envelope the message is checked with: the options, else the addresses of its headers;
/// `None` when it has no recipient at all.
fn envelope_for(cfg: &Config, args: &CheckArgs, raw: &[u8]) -> Option<Envelope> {
    let headers = palisade_inspect::MessageView::from_bytes(raw, &cfg.inspect)
        .headers()
        .clone();
    let sender = args.from.clone().unwrap_or_else(|| {
        headers
            .from
            .iter()
            .find_map(|m| m.address.clone())
            .unwrap_or_default()
    });
    let mut to = args.to.clone();
    if to.is_empty() {
        to = headers
            .to
            .iter()
            .chain(&headers.cc)
            .filter_map(|m| m.address.clone())
            .collect();
    }
    if to.is_empty() {
        return None;
    }
    let out = matches!(args.direction, Dir::Out);
    Some(Envelope {
        queue_id: "check".into(),
        listener: "check".into(),
        direction: if out {
            palisade_policy::Direction::Outbound
        } else {
            palisade_policy::Direction::Inbound
        },
        client_ip: args.client,
        client_name: None,
        rdns_checked: false,
        helo: Some(args.helo.clone()),
        tls: None,
        auth_user: out.then(|| "check".to_string()),
        trusted: out,
        sender,
        recipients: to
            .iter()
            .map(|a| EnvelopeRecipient {
                address: a.clone(),
                route: palisade_engine::route_for(cfg, a),
                notify: None,
                orcpt: None,
            })
            .collect(),
        crypto: None,
    })
}

fn print_human(r: &Report, source: &str) {
    println!("checked with {source}");
    println!("parts:");
    if let Some(parts) = r.parts.as_array() {
        for p in parts {
            let real = p
                .get("real_type")
                .and_then(|t| t.get("mime"))
                .and_then(|m| m.as_str())
                .unwrap_or("-");
            println!(
                "  {:<10} {:<40} {:<28} {:>9} bytes",
                p.get("section").and_then(|s| s.as_str()).unwrap_or(""),
                p.get("path").and_then(|s| s.as_str()).unwrap_or(""),
                real,
                p.get("size").and_then(|s| s.as_u64()).unwrap_or(0)
            );
        }
    }
    if let Some(reason) = &r.uninspectable {
        println!("UNINSPECTABLE: {reason}");
    }
    println!("checks:");
    for (name, o) in &r.checks {
        let state = o
            .get("status")
            .and_then(|s| s.get("state"))
            .and_then(|s| s.as_str())
            .unwrap_or("?");
        println!("  {name}: {state}");
    }
    println!("decisions:");
    for d in &r.decisions {
        println!("  {} → {}", d.recipient, d.action);
        for e in &d.explanations {
            let score = e.score.map(|s| format!(" ({s:+})")).unwrap_or_default();
            println!("      {}/{}{}: {}", e.stage, e.rule, score, e.sentence);
        }
        for m in &d.monitored {
            println!(
                "      (monitor) {}/{}: {}",
                m.explanation.stage, m.explanation.rule, m.explanation.sentence
            );
        }
    }
    println!("reply to DATA: {}", r.smtp_reply);
}
