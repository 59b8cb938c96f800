//! `palisade dkim generate|list`: the DKIM signing keys of the organisation's domains
//! (`palisade_store::dkim`), the TXT records to publish for them, and whether DNS does.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use palisade_control::engine::ControlRequest;
use palisade_engine::pipeline::dkim::report;
use palisade_store::config::DkimSign;
use palisade_store::config_store::ConfigStore;
use palisade_store::dkim::Algorithm;
use palisade_store::{AuditLog, DataDir};
use serde_json::json;

#[derive(Subcommand)]
pub enum DkimCmd {
    /// Make a new signing key for DOMAIN and print the TXT record to publish. The key signs
    /// once it is in `[[dkim.sign]]` (--sign puts it there).
    Generate {
        domain: String,
        /// Default: pal<year><month> and r (RSA) or e (Ed25519), e.g. pal202612r.
        #[arg(long)]
        selector: Option<String>,
        /// rsa (RSA-2048, verified everywhere) or ed25519 (RFC 8463; sign with both).
        #[arg(long, default_value = "rsa")]
        algorithm: String,
        /// Also sign DOMAIN's outbound mail with it (a new configuration revision).
        #[arg(long)]
        sign: bool,
        #[arg(long)]
        json: bool,
    },
    /// Every key: its record, whether it signs, and whether DNS publishes it.
    List {
        /// Do not ask DNS.
        #[arg(long)]
        no_dns: bool,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(data: &DataDir, cmd: DkimCmd, actor: &str) -> Result<ExitCode> {
    match cmd {
        DkimCmd::Generate {
            domain,
            selector,
            algorithm,
            sign,
            json,
        } => generate(data, &domain, selector, &algorithm, sign, json, actor),
        DkimCmd::List { no_dns, json } => list(data, no_dns, json),
    }
}

fn generate(
    data: &DataDir,
    domain: &str,
    selector: Option<String>,
    algorithm: &str,
    sign: bool,
    json_out: bool,
    actor: &str,
) -> Result<ExitCode> {
    let alg: Algorithm = algorithm.parse().map_err(anyhow::Error::msg)?;
    let created =
        palisade_store::dkim::create(data, domain, selector.as_deref(), alg, actor, "local")
            .map_err(anyhow::Error::msg)?;
    let (domain, selector, path, record) = (
        created.domain,
        created.selector,
        created.path,
        created.record,
    );
    let mut audit = AuditLog::open(&data.audit_db())?;
    let mut revision = None;
    let mut engine = None;
    if sign {
        let mut store = ConfigStore::open(&data.config_db())?;
        let current = store.current()?.context("no configuration yet")?;
        let mut cfg = current.config.clone();
        cfg.dkim.sign.push(DkimSign {
            domain: domain.clone(),
            selector: selector.clone(),
        });
        let rev = store.commit_audited(
            &mut audit,
            &cfg,
            actor,
            "local",
            &format!("DKIM: sign {domain} with {selector}"),
            Some(current.id),
        )?;
        revision = Some(rev.id);
        engine = Some(
            match palisade_control::engine::control_request(
                &data.control_socket(),
                &ControlRequest::Reload,
            ) {
                Ok(r) => r.message,
                Err(_) => "not running: it signs from its next start".to_string(),
            },
        );
    }
    let name = format!("{selector}._domainkey.{domain}");
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "domain": domain, "selector": selector, "algorithm": alg.signing_name(),
                "name": name, "record": record, "key_file": path, "revision": revision,
                "engine": engine,
            }))?
        );
    } else {
        println!("key {} ({})", path.display(), alg.signing_name());
        println!(
            "publish this TXT record:\n\n{name}. IN TXT {}\n",
            zone_text(&record)
        );
        match revision {
            Some(r) => {
                println!("signing {domain}'s outbound mail with it (revision {r})");
                if let Some(e) = &engine {
                    println!("engine: {e}");
                }
                println!(
                    "until the record is published, receivers cannot verify the signature \
                     (`palisade dkim list` tells when DNS has it)"
                );
            }
            None => println!(
                "it signs once [[dkim.sign]] has domain = \"{domain}\", selector = \"{selector}\""
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The record as zone-file text: quoted strings of at most 255 bytes.
fn zone_text(record: &str) -> String {
    let parts: Vec<String> = record
        .as_bytes()
        .chunks(250)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("( {} )", parts.join(" "))
    }
}

fn list(data: &DataDir, no_dns: bool, json_out: bool) -> Result<ExitCode> {
    let cfg = match ConfigStore::open(&data.config_db())?.current()? {
        Some(r) => r.config,
        None => palisade_store::Config::default(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let rows = rt.block_on(report(data, &cfg, !no_dns));
    if json_out {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no DKIM keys (palisade dkim generate DOMAIN)");
    }
    for r in &rows {
        let dns = match (r.dns.as_deref(), r.dns_detail.as_deref()) {
            (None, _) => "DNS not asked".to_string(),
            (Some("published"), _) => "published".to_string(),
            (Some("missing"), _) => "NOT PUBLISHED".to_string(),
            (Some("differs"), t) => format!("DNS HAS ANOTHER KEY: {}", t.unwrap_or_default()),
            (Some(_), e) => format!("DNS did not answer: {}", e.unwrap_or_default()),
        };
        println!(
            "{}  {}  {}  {dns}",
            r.name,
            r.algorithm.as_deref().unwrap_or("?"),
            if r.signing { "signing" } else { "not signing" },
        );
        if let Some(rec) = &r.record {
            println!("  {}", zone_text(rec));
        }
        if let Some(e) = &r.error {
            println!("  error: {e}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
