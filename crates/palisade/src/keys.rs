//! `palisade keys generate|show|export`: the organisation's own S/MIME certificate and key
//! (`DIR/keys/smime/gateway.{crt,key}`, the key 0600 and the engine's: it signs outbound
//! S/MIME mail and will decrypt inbound), and `palisade partner add|list|show|remove`: the
//! partner directory (`[[partner]]` in the configuration, one audited revision per change).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use palisade_control::engine::ControlRequest;
use palisade_engine::pipeline::encryption::{GATEWAY_CERT, GATEWAY_KEY};
use palisade_store::config::{Partner, PartnerMethod};
use palisade_store::config_store::ConfigStore;
use palisade_store::{AuditLog, DataDir};
use serde_json::json;

/// O_NOFOLLOW (Linux).
const O_NOFOLLOW: i32 = 0o400000;

#[derive(Subcommand)]
pub enum KeysCmd {
    /// Make the gateway's S/MIME key (RSA-3072) and a self-signed certificate for EMAIL.
    /// An existing key is never replaced.
    Generate {
        /// The certificate's name (CN), e.g. the organisation's.
        #[arg(long)]
        name: String,
        /// The address the certificate is for (e.g. the gateway's postmaster).
        #[arg(long)]
        email: String,
        #[arg(long, default_value_t = 1095)]
        days: u32,
    },
    /// The gateway certificate's details.
    Show {
        #[arg(long)]
        json: bool,
    },
    /// The gateway certificate (PEM), to give to partners. Never the key.
    Export,
}

#[derive(Subcommand)]
pub enum PartnerCmd {
    /// Add a partner organisation (or replace the one of that name).
    Add {
        name: String,
        /// One of its mail domains (".example.org" for every subdomain); repeat for more.
        #[arg(long = "domain", required = true)]
        domains: Vec<String>,
        /// A PEM file with its S/MIME certificate(s); repeat for more.
        #[arg(long = "smime-cert")]
        smime_certs: Vec<PathBuf>,
        /// smime (its certificates, else enforced TLS) or tls (enforced TLS only).
        #[arg(long, default_value = "smime")]
        prefer: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    Remove {
        name: String,
    },
}

fn gateway_paths(data: &DataDir) -> (PathBuf, PathBuf) {
    (
        data.keys().join(GATEWAY_CERT),
        data.keys().join(GATEWAY_KEY),
    )
}

pub fn keys(data: &DataDir, cmd: KeysCmd, actor: &str) -> Result<ExitCode> {
    let (cert_path, key_path) = gateway_paths(data);
    match cmd {
        KeysCmd::Generate { name, email, days } => {
            if key_path.exists() || cert_path.exists() {
                bail!(
                    "{} exists: the gateway key is never replaced here",
                    key_path.display()
                );
            }
            let keys = data.keys();
            let owner = fs::metadata(&keys).with_context(|| {
                format!(
                    "{}: start Palisade once with this data directory first",
                    keys.display()
                )
            })?;
            let (uid, gid) = (owner.uid(), owner.gid());
            let dir = keys.join("smime");
            match fs::symlink_metadata(&dir) {
                Ok(m) if !m.is_dir() || m.uid() != uid => {
                    bail!("{} is not a directory of the keys' owner", dir.display())
                }
                Ok(_) => {}
                Err(_) => {
                    fs::DirBuilder::new().mode(0o700).create(&dir)?;
                    std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
                }
            }
            let (cert_pem, key_pem) = palisade_crypto::GatewayKey::generate(&name, &email, days)?;
            for (path, text, mode) in [(&key_path, &key_pem, 0o600), (&cert_path, &cert_pem, 0o644)]
            {
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .custom_flags(O_NOFOLLOW)
                    .open(path)
                    .with_context(|| path.display().to_string())?;
                f.write_all(text.as_bytes())?;
                f.sync_all()?;
                std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
            }
            let der = palisade_crypto::pem_certificates(&cert_pem)?;
            let info = palisade_crypto::certificate_info(&der[0])?;
            AuditLog::open(&data.audit_db())?.append(
                actor,
                "local",
                "smime.key_generated",
                &email,
                &json!({ "fingerprint": info.fingerprint, "not_after": info.not_after }),
            )?;
            println!(
                "gateway S/MIME key {} and certificate {}",
                key_path.display(),
                cert_path.display()
            );
            println!("fingerprint (SHA-256) {}", info.fingerprint);
            if let Some(m) = crate::nudge(data, ControlRequest::Reload) {
                println!("engine: {m}");
            }
            Ok(ExitCode::SUCCESS)
        }
        KeysCmd::Show { json: as_json } => {
            let pem = fs::read_to_string(&cert_path).with_context(|| {
                format!(
                    "{}: no gateway certificate (palisade keys generate)",
                    cert_path.display()
                )
            })?;
            let der = palisade_crypto::pem_certificates(&pem)?;
            let info = palisade_crypto::certificate_info(&der[0])?;
            if as_json {
                println!("{}", serde_json::to_string_pretty(&cert_json(&info))?);
            } else {
                print_cert("", &info);
            }
            Ok(ExitCode::SUCCESS)
        }
        KeysCmd::Export => {
            let pem = fs::read_to_string(&cert_path).with_context(|| {
                format!(
                    "{}: no gateway certificate (palisade keys generate)",
                    cert_path.display()
                )
            })?;
            print!("{pem}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn cert_json(i: &palisade_crypto::CertInfo) -> serde_json::Value {
    json!({
        "subject": i.subject, "issuer": i.issuer, "emails": i.emails, "key": i.key,
        "not_before": i.not_before, "not_after": i.not_after, "fingerprint": i.fingerprint,
        "can_encrypt": i.can_encrypt,
    })
}

fn print_cert(indent: &str, i: &palisade_crypto::CertInfo) {
    let date = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t)
            .map(|d| d.date().to_string())
            .unwrap_or_default()
    };
    println!("{indent}subject      {}", i.subject);
    println!("{indent}issuer       {}", i.issuer);
    println!("{indent}addresses    {}", i.emails.join(", "));
    println!("{indent}key          {}", i.key);
    println!(
        "{indent}valid        {} to {}",
        date(i.not_before),
        date(i.not_after)
    );
    println!("{indent}fingerprint  {}", i.fingerprint);
}

fn partner_json(p: &Partner) -> serde_json::Value {
    let certs: Vec<serde_json::Value> = p
        .certificates()
        .iter()
        .filter_map(|d| palisade_crypto::certificate_info(d).ok())
        .map(|i| cert_json(&i))
        .collect();
    json!({
        "name": p.name, "domains": p.domains, "note": p.note,
        "prefer": match p.prefer { PartnerMethod::Smime => "smime", PartnerMethod::Tls => "tls" },
        "certificates": certs,
    })
}

pub fn partner(data: &DataDir, cmd: PartnerCmd, actor: &str) -> Result<ExitCode> {
    let mut store = ConfigStore::open(&data.config_db())?;
    let current = store.current()?.context("no configuration yet")?;
    let find = |name: &str| {
        current
            .config
            .partners
            .iter()
            .position(|p| p.name.eq_ignore_ascii_case(name))
    };
    let (cfg, comment) = match cmd {
        PartnerCmd::List { json: as_json } => {
            let ps = &current.config.partners;
            if as_json {
                let all: Vec<_> = ps.iter().map(partner_json).collect();
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else if ps.is_empty() {
                println!("no partner");
            } else {
                for p in ps {
                    println!(
                        "{}  {}  ({} certificate(s))",
                        p.name,
                        p.domains.join(", "),
                        p.certificates().len()
                    );
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        PartnerCmd::Show {
            name,
            json: as_json,
        } => {
            let Some(i) = find(&name) else {
                bail!("no partner called '{name}'");
            };
            let p = &current.config.partners[i];
            if as_json {
                println!("{}", serde_json::to_string_pretty(&partner_json(p))?);
            } else {
                println!("{}\n  domains  {}", p.name, p.domains.join(", "));
                for d in p.certificates() {
                    if let Ok(info) = palisade_crypto::certificate_info(&d) {
                        println!("  certificate");
                        print_cert("    ", &info);
                    }
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        PartnerCmd::Remove { name } => {
            let Some(i) = find(&name) else {
                bail!("no partner called '{name}'");
            };
            let mut cfg = current.config.clone();
            let p = cfg.partners.remove(i);
            (cfg, format!("partner {} removed", p.name))
        }
        PartnerCmd::Add {
            name,
            domains,
            smime_certs,
            prefer,
            note,
        } => {
            let prefer = match prefer.as_str() {
                "smime" => PartnerMethod::Smime,
                "tls" => PartnerMethod::Tls,
                other => bail!("--prefer {other}: smime or tls"),
            };
            let mut smime = Vec::new();
            for f in &smime_certs {
                smime.push(fs::read_to_string(f).with_context(|| f.display().to_string())?);
            }
            let entry = Partner {
                name: name.trim().to_string(),
                domains: domains
                    .iter()
                    .map(|d| d.trim().to_ascii_lowercase())
                    .collect(),
                prefer,
                smime,
                note,
            };
            let mut cfg = current.config.clone();
            let verb = match find(&name) {
                Some(i) => {
                    cfg.partners[i] = entry;
                    "changed"
                }
                None => {
                    cfg.partners.push(entry);
                    "added"
                }
            };
            (cfg, format!("partner {} {verb}", name.trim()))
        }
    };
    if let Err(problems) = cfg.validate() {
        eprintln!("{} problem(s), nothing changed:", problems.len());
        for p in &problems {
            eprintln!("  {p}");
        }
        return Ok(ExitCode::from(64));
    }
    let mut audit = AuditLog::open(&data.audit_db())?;
    let rev = store.commit_audited(&mut audit, &cfg, actor, "local", &comment, Some(current.id))?;
    println!("{comment} (revision {})", rev.id);
    if let Some(m) = crate::nudge(data, ControlRequest::Reload) {
        println!("engine: {m}");
    }
    Ok(ExitCode::SUCCESS)
}
