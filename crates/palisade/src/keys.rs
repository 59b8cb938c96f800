//! `palisade keys generate|import|show|export`: the organisation's own S/MIME certificate and
//! key (`DIR/keys/smime/gateway.{crt,key}`) and OpenPGP key (`DIR/keys/openpgp/gateway.{pub,sec}.asc`),
//! the private parts 0600 and the engine's: they sign outbound mail and decrypt inbound, and `palisade partner add|list|show|remove`: the
//! partner directory (`[[partner]]` in the configuration, one audited revision per change).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use palisade_control::engine::ControlRequest;
use palisade_engine::pipeline::encryption::{
    GATEWAY_CERT, GATEWAY_KEY, GATEWAY_PGP_PUBLIC, GATEWAY_PGP_SECRET,
};
use palisade_store::config::{Partner, PartnerMethod};
use palisade_store::config_store::ConfigStore;
use palisade_store::{AuditLog, DataDir};
use serde_json::json;

/// O_NOFOLLOW (Linux).
const O_NOFOLLOW: i32 = 0o400000;

#[derive(Subcommand)]
pub enum KeysCmd {
    /// Make the gateway's keys: S/MIME (RSA-3072 and a self-signed certificate for EMAIL)
    /// and OpenPGP (Curve25519, user ID "NAME <EMAIL>"). A key that exists is never replaced;
    /// only the missing one is made.
    Generate {
        /// The certificate's name (CN), e.g. the organisation's.
        #[arg(long)]
        name: String,
        /// The address the keys are for (e.g. the gateway's postmaster).
        #[arg(long)]
        email: String,
        #[arg(long, default_value_t = 1095)]
        days: u32,
    },
    /// Install keys made elsewhere (a CA-issued S/MIME certificate, an existing OpenPGP key).
    /// A key that exists is never replaced.
    Import {
        /// PEM certificate (with its chain after it) for the S/MIME key.
        #[arg(long, requires = "smime_key")]
        smime_cert: Option<PathBuf>,
        /// PKCS#8 PEM RSA private key belonging to --smime-cert.
        #[arg(long, requires = "smime_cert")]
        smime_key: Option<PathBuf>,
        /// Armored OpenPGP secret key (without a passphrase).
        #[arg(long)]
        pgp_secret: Option<PathBuf>,
    },
    /// The gateway keys' details.
    Show {
        #[arg(long)]
        json: bool,
    },
    /// The gateway's S/MIME certificate (PEM), or with --openpgp its OpenPGP public key, to
    /// give to partners. Never a private key.
    Export {
        #[arg(long)]
        openpgp: bool,
    },
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
        /// An armored file with its OpenPGP public key(s).
        #[arg(long = "pgp-key")]
        pgp_key: Option<PathBuf>,
        /// smime (its certificates, else its OpenPGP key, else enforced TLS), pgp (its
        /// OpenPGP key, else its certificates, else enforced TLS) or tls (enforced TLS only).
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

fn pgp_paths(data: &DataDir) -> (PathBuf, PathBuf) {
    (
        data.keys().join(GATEWAY_PGP_PUBLIC),
        data.keys().join(GATEWAY_PGP_SECRET),
    )
}

/// `DIR/keys/SUB`, a 0700 directory of the keys' owner (made when missing); the owner.
fn key_dir(data: &DataDir, sub: &str) -> Result<(u32, u32)> {
    let keys = data.keys();
    let owner = fs::metadata(&keys).with_context(|| {
        format!(
            "{}: start Palisade once with this data directory first",
            keys.display()
        )
    })?;
    let (uid, gid) = (owner.uid(), owner.gid());
    let dir = keys.join(sub);
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
    Ok((uid, gid))
}

/// Writes new files (never replacing one, never through a link), fsync'd, owned by the keys'
/// owner.
fn write_new(files: &[(&PathBuf, &str, u32)], owner: (u32, u32)) -> Result<()> {
    for (path, _, _) in files {
        if path.exists() {
            bail!(
                "{} exists: a gateway key is never replaced here",
                path.display()
            );
        }
    }
    for (path, text, mode) in files {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(*mode)
            .custom_flags(O_NOFOLLOW)
            .open(path)
            .with_context(|| path.display().to_string())?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::os::unix::fs::chown(path, Some(owner.0), Some(owner.1))?;
    }
    Ok(())
}

fn install_smime(
    data: &DataDir,
    cert_pem: &str,
    key_pem: &str,
    actor: &str,
    what: &str,
) -> Result<()> {
    let (cert_path, key_path) = gateway_paths(data);
    // They must belong together and be usable before anything is written.
    palisade_crypto::GatewayKey::from_pem(cert_pem, key_pem)?;
    let owner = key_dir(data, "smime")?;
    write_new(
        &[(&key_path, key_pem, 0o600), (&cert_path, cert_pem, 0o644)],
        owner,
    )?;
    let der = palisade_crypto::pem_certificates(cert_pem)?;
    let info = palisade_crypto::certificate_info(&der[0])?;
    AuditLog::open(&data.audit_db())?.append(
        actor,
        "local",
        &format!("smime.key_{what}"),
        &info.emails.join(", "),
        &json!({ "fingerprint": info.fingerprint, "not_after": info.not_after }),
    )?;
    println!(
        "gateway S/MIME key {} and certificate {}",
        key_path.display(),
        cert_path.display()
    );
    println!("  fingerprint (SHA-256) {}", info.fingerprint);
    Ok(())
}

fn install_pgp(data: &DataDir, secret: &str, actor: &str, what: &str) -> Result<()> {
    let (pub_path, sec_path) = pgp_paths(data);
    let key = palisade_crypto::PgpKey::from_armored(secret)?;
    let public = key.public_armored()?;
    let owner = key_dir(data, "openpgp")?;
    write_new(
        &[(&sec_path, secret, 0o600), (&pub_path, &public, 0o644)],
        owner,
    )?;
    AuditLog::open(&data.audit_db())?.append(
        actor,
        "local",
        &format!("openpgp.key_{what}"),
        &key.fingerprint(),
        &json!({ "fingerprint": key.fingerprint() }),
    )?;
    println!(
        "gateway OpenPGP key {} and public key {}",
        sec_path.display(),
        pub_path.display()
    );
    println!("  fingerprint {}", key.fingerprint());
    Ok(())
}

pub fn keys(data: &DataDir, cmd: KeysCmd, actor: &str) -> Result<ExitCode> {
    let (cert_path, key_path) = gateway_paths(data);
    let (pub_path, sec_path) = pgp_paths(data);
    match cmd {
        KeysCmd::Generate { name, email, days } => {
            let smime = key_path.exists() || cert_path.exists();
            let pgp = sec_path.exists() || pub_path.exists();
            if smime && pgp {
                bail!(
                    "{} and {} exist: the gateway keys are never replaced here",
                    key_path.display(),
                    sec_path.display()
                );
            }
            if !smime {
                let (cert_pem, key_pem) =
                    palisade_crypto::GatewayKey::generate(&name, &email, days)?;
                install_smime(data, &cert_pem, &key_pem, actor, "generated")?;
            }
            if !pgp {
                let name = name.replace(['<', '>', '\n', '\r'], " ");
                let (secret, _) =
                    palisade_crypto::PgpKey::generate(&format!("{} <{email}>", name.trim()), days)?;
                install_pgp(data, &secret, actor, "generated")?;
            }
        }
        KeysCmd::Import {
            smime_cert,
            smime_key,
            pgp_secret,
        } => {
            if smime_cert.is_none() && pgp_secret.is_none() {
                bail!("give --smime-cert and --smime-key, or --pgp-secret");
            }
            if let (Some(c), Some(k)) = (smime_cert, smime_key) {
                let cert_pem = fs::read_to_string(&c).with_context(|| c.display().to_string())?;
                let key_pem = fs::read_to_string(&k).with_context(|| k.display().to_string())?;
                install_smime(data, &cert_pem, &key_pem, actor, "imported")?;
            }
            if let Some(f) = pgp_secret {
                let secret = fs::read_to_string(&f).with_context(|| f.display().to_string())?;
                install_pgp(data, &secret, actor, "imported")?;
            }
        }
        KeysCmd::Show { json: as_json } => {
            let smime = fs::read_to_string(&cert_path)
                .ok()
                .and_then(|pem| palisade_crypto::pem_certificates(&pem).ok())
                .and_then(|d| palisade_crypto::certificate_info(&d[0]).ok());
            let pgp = fs::read_to_string(&pub_path)
                .ok()
                .and_then(|a| palisade_crypto::pgp_certificate_info(&a).ok())
                .and_then(|v| v.into_iter().next());
            if smime.is_none() && pgp.is_none() {
                bail!("no gateway key (palisade keys generate)");
            }
            if as_json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "smime": smime.as_ref().map(cert_json),
                        "openpgp": pgp.as_ref().map(pgp_json),
                    }))?
                );
            } else {
                if let Some(i) = &smime {
                    println!("S/MIME");
                    print_cert("  ", i);
                }
                if let Some(i) = &pgp {
                    println!("OpenPGP");
                    print_pgp("  ", i);
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        KeysCmd::Export { openpgp } => {
            let path = if openpgp { &pub_path } else { &cert_path };
            let text = fs::read_to_string(path).with_context(|| {
                format!(
                    "{}: no such gateway key (palisade keys generate)",
                    path.display()
                )
            })?;
            print!("{text}");
            return Ok(ExitCode::SUCCESS);
        }
    }
    if let Some(m) = crate::nudge(data, ControlRequest::Reload) {
        println!("engine: {m}");
    }
    Ok(ExitCode::SUCCESS)
}

fn pgp_json(i: &palisade_crypto::PgpInfo) -> serde_json::Value {
    json!({
        "fingerprint": i.fingerprint, "user_ids": i.user_ids, "emails": i.emails,
        "algorithm": i.algorithm, "expires": i.expires, "can_encrypt": i.can_encrypt,
    })
}

fn print_pgp(indent: &str, i: &palisade_crypto::PgpInfo) {
    println!("{indent}user IDs     {}", i.user_ids.join(", "));
    println!("{indent}algorithm    {}", i.algorithm);
    if let Some(t) = i.expires {
        let d = time::OffsetDateTime::from_unix_timestamp(t)
            .map(|d| d.date().to_string())
            .unwrap_or_default();
        println!("{indent}expires      {d}");
    }
    println!("{indent}fingerprint  {}", i.fingerprint);
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
        "prefer": prefer_name(p.prefer),
        "certificates": certs,
        "openpgp": palisade_crypto::pgp_certificate_info(&p.pgp)
            .map(|v| v.iter().map(pgp_json).collect::<Vec<_>>())
            .unwrap_or_default(),
    })
}

fn prefer_name(m: PartnerMethod) -> &'static str {
    match m {
        PartnerMethod::Smime => "smime",
        PartnerMethod::Pgp => "pgp",
        PartnerMethod::Tls => "tls",
    }
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
                        "{}  {}  ({} certificate(s){}, prefers {})",
                        p.name,
                        p.domains.join(", "),
                        p.certificates().len(),
                        if p.pgp.trim().is_empty() {
                            ""
                        } else {
                            ", OpenPGP key"
                        },
                        prefer_name(p.prefer)
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
                for info in palisade_crypto::pgp_certificate_info(&p.pgp).unwrap_or_default() {
                    println!("  OpenPGP key");
                    print_pgp("    ", &info);
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
            pgp_key,
            prefer,
            note,
        } => {
            let prefer = match prefer.as_str() {
                "smime" => PartnerMethod::Smime,
                "pgp" => PartnerMethod::Pgp,
                "tls" => PartnerMethod::Tls,
                other => bail!("--prefer {other}: smime, pgp or tls"),
            };
            let pgp = match &pgp_key {
                Some(f) => fs::read_to_string(f).with_context(|| f.display().to_string())?,
                None => String::new(),
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
                pgp,
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
