//! `palisade dlp incidents|report`: what the DLP rules matched (`mail.db`'s `dlp_incident`),
//! and the audit report of a period as text, JSON, CSV or a printable HTML page.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use palisade_store::mail::IncidentQuery;
use palisade_store::{DataDir, MailDb};

#[derive(Subcommand)]
pub enum DlpCmd {
    /// The newest incidents: rule, action, monitor or enforced, sender, recipients, and the
    /// detections with masked snippets.
    Incidents {
        /// RFC 3339, Unix seconds, or an age (7d).
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        rule: Option<String>,
        #[arg(long)]
        sender: Option<String>,
        /// A detector name (nhs_number, payment_card, dictionary:NAME, …).
        #[arg(long)]
        detector: Option<String>,
        /// Only monitor-mode matches.
        #[arg(long, conflicts_with = "enforced")]
        monitor: bool,
        /// Only enforced matches.
        #[arg(long)]
        enforced: bool,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// The audit report of a period (default: the last 30 days): per rule the messages,
    /// senders and recipient domains; top senders and destinations; identifiers by type.
    Report {
        #[arg(long, default_value = "30d")]
        since: String,
        #[arg(long)]
        until: Option<String>,
        /// text, json, csv or html (a printable page).
        #[arg(long, default_value = "text")]
        format: String,
    },
    /// Run the detectors of this data directory's [dlp] over files: plain text as it is, a
    /// message (.eml) through the same extraction as the dlp check. Prints the detections
    /// (masked); --stats adds bytes, seconds and MB/s (one thread) on standard error.
    Scan {
        files: Vec<std::path::PathBuf>,
        #[arg(long)]
        json: bool,
        #[arg(long)]
        stats: bool,
    },
}

pub fn run(data: &DataDir, cmd: DlpCmd, parse_time: fn(&str) -> Result<i64>) -> Result<ExitCode> {
    if let DlpCmd::Scan { files, json, stats } = cmd {
        return scan(data, &files, json, stats);
    }
    let db = MailDb::open(&data.mail_db())?;
    match cmd {
        DlpCmd::Scan { .. } => unreachable!("handled above"),
        DlpCmd::Incidents {
            since,
            until,
            rule,
            sender,
            detector,
            monitor,
            enforced,
            limit,
            json,
        } => {
            let q = IncidentQuery {
                since: since.as_deref().map(parse_time).transpose()?,
                until: until.as_deref().map(parse_time).transpose()?,
                rule,
                sender,
                detector,
                monitor: if monitor {
                    Some(true)
                } else if enforced {
                    Some(false)
                } else {
                    None
                },
                limit,
            };
            let list = db.incidents(&q)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(ExitCode::SUCCESS);
            }
            for i in &list {
                let n = &i.incident;
                let found: Vec<String> = n
                    .detections
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|d| {
                                format!(
                                    "{} ×{} {}",
                                    d["detector"].as_str().unwrap_or(""),
                                    d["count"],
                                    snippets(d)
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                println!(
                    "{}  {}  {}{}  {}  {} → {}  {}",
                    palisade_store::format_unix(i.at),
                    n.queue_id,
                    n.action,
                    if n.monitor { " (monitor)" } else { "" },
                    n.rule,
                    if n.sender.is_empty() { "<>" } else { &n.sender },
                    n.recipients.join(", "),
                    found.join("; ")
                );
            }
            if list.is_empty() {
                println!("no incidents");
            }
            Ok(ExitCode::SUCCESS)
        }
        DlpCmd::Report {
            since,
            until,
            format,
        } => {
            let since = parse_time(&since)?;
            let until = match until {
                Some(u) => parse_time(&u)?,
                None => palisade_store::now_unix() + 1,
            };
            let r = db.incident_report(since, until)?;
            match format.as_str() {
                "json" => println!("{}", serde_json::to_string_pretty(&r)?),
                "csv" => print!("{}", r.to_csv()),
                "html" => {
                    let org = palisade_store::config_store::ConfigStore::open(&data.config_db())
                        .ok()
                        .and_then(|s| s.current().ok().flatten())
                        .map(|c| c.config.system.hostname)
                        .unwrap_or_else(|| "Palisade".into());
                    print!("{}", r.to_html(&org));
                }
                "text" => {
                    println!(
                        "{} messages with an incident, {} to {}",
                        r.messages,
                        palisade_store::format_unix(r.since),
                        palisade_store::format_unix(r.until)
                    );
                    for x in &r.rules {
                        let domains: Vec<String> = x
                            .recipient_domains
                            .iter()
                            .map(|(d, n)| format!("{d} ({n})"))
                            .collect();
                        println!(
                            "  {} [{}{}]: {} messages, {} senders; {}",
                            x.rule,
                            x.action,
                            if x.monitor { ", monitor" } else { "" },
                            x.messages,
                            x.senders,
                            domains.join(", ")
                        );
                    }
                    for (title, list) in [
                        ("identifiers", &r.identifiers),
                        ("top senders", &r.top_senders),
                        ("top destinations", &r.top_domains),
                    ] {
                        let l: Vec<String> = list.iter().map(|(k, n)| format!("{k} {n}")).collect();
                        println!("{title}: {}", l.join(", "));
                    }
                }
                other => anyhow::bail!("--format {other}: text, json, csv or html"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn scan(data: &DataDir, files: &[std::path::PathBuf], json: bool, stats: bool) -> Result<ExitCode> {
    use anyhow::Context;
    let cfg = palisade_store::config_store::ConfigStore::open(&data.config_db())
        .ok()
        .and_then(|s| s.current().ok().flatten())
        .map(|r| r.config)
        .unwrap_or_default();
    let scanner = palisade_dlp::Scanner::new(cfg.dlp.settings()).map_err(anyhow::Error::msg)?;
    let fingerprints = palisade_engine::pipeline::dlp::Fingerprints::from_config(&cfg);
    let max_text = cfg.dlp.max_text_mib as usize * 1024 * 1024;
    let (mut bytes, mut seconds) = (0usize, 0f64);
    for f in files {
        let raw = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        let message = raw.starts_with(b"From:")
            || raw.starts_with(b"Received:")
            || raw.starts_with(b"Return-Path:")
            || f.extension().is_some_and(|e| e == "eml");
        let started = std::time::Instant::now();
        let facts = if message {
            let view = palisade_inspect::MessageView::from_bytes(&raw, &cfg.inspect);
            palisade_engine::pipeline::dlp::scan(&scanner, &fingerprints, &view, max_text).facts
        } else {
            let text = String::from_utf8_lossy(&raw);
            serde_json::json!({ "detections": scanner.scan(&text) })
        };
        seconds += started.elapsed().as_secs_f64();
        bytes += raw.len();
        if json {
            println!("{}", serde_json::json!({ "file": f, "dlp": facts }));
        } else {
            for d in facts["detections"].as_array().into_iter().flatten() {
                println!(
                    "{}: {} ×{} (confidence {:.2}) {}",
                    f.display(),
                    d["detector"].as_str().unwrap_or(""),
                    d["count"],
                    d["confidence"].as_f64().unwrap_or(0.0),
                    snippets(d)
                );
            }
            for u in facts["unscannable"].as_array().into_iter().flatten() {
                println!(
                    "{}: unscannable {}: {}",
                    f.display(),
                    u["location"].as_str().unwrap_or(""),
                    u["reason"].as_str().unwrap_or("")
                );
            }
        }
    }
    if stats {
        eprintln!(
            "bytes {bytes} seconds {seconds:.3} MB/s {:.1}",
            bytes as f64 / 1e6 / seconds.max(1e-9)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A detection's masked snippets on one line.
fn snippets(d: &serde_json::Value) -> String {
    d["snippets"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}
