//! `palisade dkim generate|list`: the DKIM signing keys of the organisation's domains
//! (`palisade_store::dkim`), the TXT records to publish for them, and whether DNS does.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use palisade_control::engine::ControlRequest;
use palisade_engine::pipeline::dkim::{Published, published};
use palisade_store::config::DkimSign;
use palisade_store::config_store::ConfigStore;
use palisade_store::dkim::{Algorithm, PrivateKey};
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
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if !palisade_store::config::is_valid_domain(&domain) {
        bail!("'{domain}' is not a valid domain name");
    }
    let selector = match selector {
        Some(s) => s.to_ascii_lowercase(),
        None => {
            let now = time::OffsetDateTime::now_utc();
            let suffix = if alg == Algorithm::Rsa { "r" } else { "e" };
            format!("pal{}{:02}{suffix}", now.year(), u8::from(now.month()))
        }
    };
    if !palisade_store::dkim::valid_selector(&selector) {
        bail!("'{selector}' is not a valid selector (letters, digits, hyphens, dots)");
    }
    if !data.keys().exists() {
        bail!(
            "{} does not exist: start Palisade once with this data directory first",
            data.keys().display()
        );
    }
    let key = PrivateKey::generate(alg).map_err(anyhow::Error::msg)?;
    let path = palisade_store::dkim::write_new(data, &domain, &selector, &key)
        .map_err(anyhow::Error::msg)?;
    let record = key.dns_record().map_err(anyhow::Error::msg)?;
    let mut audit = AuditLog::open(&data.audit_db())?;
    audit.append(
        actor,
        "local",
        "dkim.key_generated",
        &format!("{selector}._domainkey.{domain}"),
        &json!({ "algorithm": alg.signing_name() }),
    )?;
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
    let mut rows = Vec::new();
    for (domain, selector) in palisade_store::dkim::list(data) {
        let signing = cfg.dkim.sign.iter().any(|s| {
            s.domain.trim_end_matches('.').eq_ignore_ascii_case(&domain)
                && s.selector.eq_ignore_ascii_case(&selector)
        });
        let key = palisade_store::dkim::load(data, &domain, &selector);
        let (alg, record, error) = match &key {
            Ok(k) => match k.dns_record() {
                Ok(r) => (Some(k.algorithm.signing_name()), Some(r), None),
                Err(e) => (Some(k.algorithm.signing_name()), None, Some(e)),
            },
            Err(e) => (None, None, Some(e.clone())),
        };
        let dns = match (&record, no_dns) {
            (Some(r), false) => Some(rt.block_on(published(&cfg, &domain, &selector, r))),
            _ => None,
        };
        rows.push((domain, selector, signing, alg, record, error, dns));
    }
    // Configured keys with no file.
    let missing: Vec<&DkimSign> = cfg
        .dkim
        .sign
        .iter()
        .filter(|s| {
            !rows.iter().any(|r| {
                r.0.eq_ignore_ascii_case(s.domain.trim_end_matches('.'))
                    && r.1.eq_ignore_ascii_case(&s.selector)
            })
        })
        .collect();
    if json_out {
        let mut out: Vec<serde_json::Value> = rows
            .iter()
            .map(|(domain, selector, signing, alg, record, error, dns)| {
                json!({
                    "domain": domain, "selector": selector, "signing": signing,
                    "algorithm": alg, "name": format!("{selector}._domainkey.{domain}"),
                    "record": record, "error": error,
                    "dns": dns.as_ref().map(Published::name),
                    "dns_found": match dns { Some(Published::Differs(t)) => Some(t.clone()), _ => None },
                    "dns_error": match dns { Some(Published::Unknown(e)) => Some(e.clone()), _ => None },
                })
            })
            .collect();
        for s in &missing {
            out.push(json!({
                "domain": s.domain, "selector": s.selector, "signing": true,
                "error": "configured in [[dkim.sign]] but there is no key file: it does not sign",
            }));
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        if rows.is_empty() && missing.is_empty() {
            println!("no DKIM keys (palisade dkim generate DOMAIN)");
        }
        for (domain, selector, signing, alg, record, error, dns) in &rows {
            println!(
                "{selector}._domainkey.{domain}  {}  {}  {}",
                alg.unwrap_or("?"),
                if *signing { "signing" } else { "not signing" },
                match dns {
                    None => "DNS not asked".to_string(),
                    Some(Published::Yes) => "published".to_string(),
                    Some(Published::Missing) => "NOT PUBLISHED".to_string(),
                    Some(Published::Differs(t)) => format!("DNS HAS ANOTHER KEY: {t}"),
                    Some(Published::Unknown(e)) => format!("DNS did not answer: {e}"),
                }
            );
            if let Some(r) = record {
                println!("  {}", zone_text(r));
            }
            if let Some(e) = error {
                println!("  error: {e}");
            }
        }
        for s in &missing {
            println!(
                "{}._domainkey.{}  configured but there is no key file: it does not sign",
                s.selector, s.domain
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
