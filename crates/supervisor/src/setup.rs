//! Preparing the data directory before any child starts: the configuration (created from the
//! embedded default or `--initial-config` on first start, validated on every start), service
//! users, ownership and modes, and the TLS certificates.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::unistd::{Gid, Group, Uid, User, chown};
use palisade_store::accounts::Accounts as ConsoleAccounts;
use palisade_store::{AuditLog, Config, ConfigStore, DataDir, Problem, Revision};

use crate::SupervisorError;

pub(crate) const GROUP: &str = "palisade";

/// A service account a child runs as.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Account {
    pub uid: Uid,
    pub gid: Gid,
}

/// Who owns what: when the supervisor runs as root every role has its own account; otherwise
/// everything runs as the invoking user and `accounts` is `None`.
#[derive(Debug, Clone)]
pub(crate) struct Accounts {
    pub group: Gid,
    pub mail: Account,
    pub web: Account,
    /// `palisade ha` (CAP_NET_ADMIN and CAP_NET_RAW as ambient capabilities, nothing else).
    pub ha: Account,
}

pub(crate) fn is_root() -> bool {
    Uid::effective().is_root()
}

fn run(cmd: &mut Command) -> Result<(), SupervisorError> {
    let out = cmd
        .output()
        .map_err(|e| SupervisorError::Setup(format!("{cmd:?}: {e}")))?;
    if !out.status.success() {
        return Err(SupervisorError::Setup(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn ensure_user(name: &str, group: &str) -> Result<Account, SupervisorError> {
    let lookup =
        || User::from_name(name).map_err(|e| SupervisorError::Setup(format!("user {name}: {e}")));
    if lookup()?.is_none() {
        tracing::info!(event = "supervisor.create_user", user = name);
        run(Command::new("useradd")
            .args(["--system", "--no-create-home", "--home-dir", "/nonexistent"])
            .args(["--shell", "/usr/sbin/nologin", "--gid", group, name]))
        .map_err(|e| {
            SupervisorError::Setup(format!(
                "service user {name} is missing and could not be created ({e})"
            ))
        })?;
    }
    let u =
        lookup()?.ok_or_else(|| SupervisorError::Setup(format!("user {name} still missing")))?;
    Ok(Account {
        uid: u.uid,
        gid: u.gid,
    })
}

/// Creates (if missing) the group and the service users.
pub(crate) fn accounts() -> Result<Accounts, SupervisorError> {
    let group = match Group::from_name(GROUP)
        .map_err(|e| SupervisorError::Setup(format!("group {GROUP}: {e}")))?
    {
        Some(g) => g.gid,
        None => {
            tracing::info!(event = "supervisor.create_group", group = GROUP);
            run(Command::new("groupadd").args(["--system", GROUP])).map_err(|e| {
                SupervisorError::Setup(format!(
                    "group {GROUP} is missing and could not be created ({e})"
                ))
            })?;
            Group::from_name(GROUP)
                .ok()
                .flatten()
                .ok_or_else(|| SupervisorError::Setup(format!("group {GROUP} still missing")))?
                .gid
        }
    };
    Ok(Accounts {
        group,
        mail: ensure_user("palisade-mail", GROUP)?,
        web: ensure_user("palisade-web", GROUP)?,
        ha: ensure_user("palisade-ha", GROUP)?,
    })
}

/// Service users must be able to walk down to the data directory.
fn check_reachable(dir: &Path) -> Result<(), SupervisorError> {
    let mut p = dir.parent();
    while let Some(d) = p {
        let meta =
            fs::metadata(d).map_err(|e| SupervisorError::Setup(format!("{}: {e}", d.display())))?;
        if meta.permissions().mode() & 0o001 == 0 {
            return Err(SupervisorError::Setup(format!(
                "the service users cannot reach {}: {} has mode {:o}; allow traversal (chmod o+x) or choose another data directory",
                dir.display(),
                d.display(),
                meta.permissions().mode() & 0o7777
            )));
        }
        p = d.parent();
    }
    Ok(())
}

fn mkdir(path: &Path, mode: u32) -> Result<(), SupervisorError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(|e| SupervisorError::Setup(format!("create {}: {e}", path.display())))?;
    // An existing directory keeps whatever mode it had; set ours.
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| SupervisorError::Setup(format!("chmod {}: {e}", path.display())))
}

fn own(path: &Path, uid: Option<Uid>, gid: Gid) -> Result<(), SupervisorError> {
    chown(path, uid, Some(gid))
        .map_err(|e| SupervisorError::Setup(format!("chown {}: {e}", path.display())))
}

/// Creates the directory tree. As root: the data dir is `root:palisade 2770` (every role
/// shares the SQLite files through the group), the spool, mailbox and keys belong to the
/// engine's user, `console/` (the key sealing TOTP secrets) to the console's user, 0700;
/// `tls/` is readable by the group with each key owned by the role using it; `clamav/` is
/// writable by the group (the console installs uploaded signatures) and readable by clamd.
pub(crate) fn prepare_dirs(
    data: &DataDir,
    accounts: Option<&Accounts>,
) -> Result<(), SupervisorError> {
    let root = data.root();
    let Some(a) = accounts else {
        mkdir(root, 0o700)?;
        for d in [
            data.spool(),
            data.spool_corrupt(),
            data.quarantine(),
            data.replica(),
            data.keys(),
            data.console(),
            data.tls(),
            data.mailbox(),
            data.run(),
            data.ha(),
        ] {
            mkdir(&d, 0o700)?;
        }
        return Ok(());
    };
    mkdir(root, 0o2770)?;
    own(root, Some(Uid::from_raw(0)), a.group)?;
    check_reachable(&fs::canonicalize(root).map_err(|e| SupervisorError::Setup(e.to_string()))?)?;
    let mail_dirs = [
        (data.spool(), 0o2750),
        (data.spool_corrupt(), 0o2750),
        (data.quarantine(), 0o2750),
        (data.replica(), 0o2750),
        (data.mailbox(), 0o2750),
        // The group may enter: the digest key is 0640 root:palisade (the console checks
        // release links with it); other keys are the engine's alone (0600).
        (data.keys(), 0o2750),
    ];
    for (d, mode) in mail_dirs {
        mkdir(&d, mode)?;
        own(&d, Some(a.mail.uid), a.group)?;
    }
    mkdir(&data.console(), 0o700)?;
    own(&data.console(), Some(a.web.uid), a.group)?;
    // The pair's settings and key, written by the command line as root: handed to palisade-ha
    // (the group may read the settings and the published state, never the key).
    mkdir(&data.ha(), 0o2750)?;
    // lchown, and only the known names: palisade-ha can write in DIR/ha, and a symbolic link
    // it planted there must never make root hand over its target.
    for p in std::iter::once(data.ha()).chain(palisade_ha::pair::FILES.map(|n| data.ha().join(n))) {
        if fs::symlink_metadata(&p).is_ok() {
            std::os::unix::fs::lchown(&p, Some(a.ha.uid.as_raw()), Some(a.group.as_raw()))
                .map_err(|e| SupervisorError::Setup(format!("chown {}: {e}", p.display())))?;
        }
    }
    // A key the console created while running as someone else (or restored from a backup)
    // must stay readable by it.
    if data.totp_key().exists() {
        own(&data.totp_key(), Some(a.web.uid), a.group)?;
        fs::set_permissions(data.totp_key(), fs::Permissions::from_mode(0o600)).map_err(|e| {
            SupervisorError::Setup(format!("chmod {}: {e}", data.totp_key().display()))
        })?;
    }
    // ClamAV's databases: installed by root (`palisade av update`) or by the console (an
    // upload), read by clamd (others may read; on the appliance clamav owns the directory).
    let clamav = palisade_store::clamav::directory(data);
    mkdir(&clamav, 0o2775)?;
    own(&clamav, None, a.group)?;
    for d in [data.tls(), data.run()] {
        mkdir(&d, 0o2750)?;
        own(&d, Some(Uid::from_raw(0)), a.group)?;
    }
    fs::set_permissions(data.run(), fs::Permissions::from_mode(0o2770))
        .map_err(|e| SupervisorError::Setup(format!("chmod {}: {e}", data.run().display())))?;
    Ok(())
}

/// The databases are shared by every role through the group. Files a root-run CLI command
/// created (a `-wal` left behind) would otherwise lock the services out.
pub(crate) fn fix_db_modes(
    data: &DataDir,
    accounts: Option<&Accounts>,
) -> Result<(), SupervisorError> {
    let Some(a) = accounts else { return Ok(()) };
    for entry in fs::read_dir(data.root()).map_err(|e| SupervisorError::Setup(e.to_string()))? {
        let entry = entry.map_err(|e| SupervisorError::Setup(e.to_string()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".db")
            || name.ends_with(".db-wal")
            || name.ends_with(".db-shm")
            || name.ends_with(".db-journal")
        {
            let p = entry.path();
            own(&p, None, a.group)?;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o660))
                .map_err(|e| SupervisorError::Setup(format!("chmod {}: {e}", p.display())))?;
        }
    }
    Ok(())
}

/// On first start records the initial configuration (the embedded default or the given file);
/// on every start validates what is in force. Every problem is reported at once.
pub(crate) fn configuration(
    data: &DataDir,
    initial: Option<&Path>,
) -> Result<(Revision, bool), SupervisorError> {
    let mut store = ConfigStore::open(&data.config_db())?;
    let mut audit = AuditLog::open(&data.audit_db())?;
    if let Some(rev) = store.current()? {
        let problems = rev.config.problems();
        if !problems.is_empty() {
            return Err(SupervisorError::Config(problems));
        }
        return Ok((rev, false));
    }
    let cfg = match initial {
        None => Config::default(),
        Some(path) => {
            let text = fs::read_to_string(path).map_err(|e| {
                SupervisorError::Config(vec![Problem::new("", format!("{}: {e}", path.display()))])
            })?;
            Config::from_toml(&text).map_err(SupervisorError::Config)?
        }
    };
    let rev = store.init(&mut audit, &cfg)?;
    Ok((rev, true))
}

/// Creates (or migrates) every database as root before any child starts, so that
/// `fix_db_modes` makes each one group-writable: SQLite creates files 0644 minus the umask,
/// and a database first created by one service would be read-only for the others (the
/// console writes `mail.db` for queue actions, the engine writes `audit.db`).
pub(crate) fn create_databases(data: &DataDir) -> Result<(), SupervisorError> {
    palisade_store::MailDb::open(&data.mail_db())?;
    AuditLog::open(&data.audit_db())?;
    // The console and `palisade learn` write it, the engine reads it.
    palisade_store::bayes::Bayes::open(&data.bayes_db())?;
    Ok(())
}

/// The key that signs the quarantine digest's release links is `root:palisade 0640`: the
/// engine signs with it, the console checks with it, neither can change it.
///
/// With role accounts, `keys/` belongs to the engine's user and the supervisor, which holds
/// no CAP_DAC_OVERRIDE on the appliance, cannot create files in it: the engine creates the
/// key the first time it sends a digest, and from the next start on it is handed to root
/// here (CAP_CHOWN, CAP_FOWNER). Running as one user (no accounts), it is created here.
pub(crate) fn digest_key(
    data: &DataDir,
    accounts: Option<&Accounts>,
) -> Result<(), SupervisorError> {
    let path = data.digest_key();
    let Some(a) = accounts else {
        palisade_store::digest::DigestKey::load_or_create(&path)
            .map_err(|e| SupervisorError::Setup(format!("digest key: {e}")))?;
        return Ok(());
    };
    if path.exists() {
        own(&path, Some(Uid::from_raw(0)), a.group)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640))
            .map_err(|e| SupervisorError::Setup(format!("chmod {}: {e}", path.display())))?;
    }
    Ok(())
}

/// On first start (no console user yet): creates the administrator with a one-time password
/// and returns it, to be printed once.
pub(crate) fn initial_admin(data: &DataDir) -> Result<Option<String>, SupervisorError> {
    let err = |e: palisade_store::accounts::AccountError| {
        SupervisorError::Setup(format!("console accounts: {e}"))
    };
    let mut accounts = ConsoleAccounts::open(&data.config_db()).map_err(err)?;
    let mut audit = AuditLog::open(&data.audit_db())?;
    accounts.ensure_initial_admin(&mut audit).map_err(err)
}

/// Largest certificate chain and key accepted (PEM text).
const MAX_PEM: usize = 256 * 1024;

/// Checks a certificate chain and key the way a service will load them, then installs them
/// for `service` with that service's ownership. The target must be inside `DIR/tls/`: the
/// paths come from the configuration, which an administrator can edit, and root must not
/// write wherever a configuration points.
pub(crate) fn install_certificate(
    data: &DataDir,
    service: &str,
    cert_pem: &str,
    key_pem: &str,
    accounts: Option<&Accounts>,
) -> Result<String, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    if cert_pem.len() > MAX_PEM || key_pem.len() > MAX_PEM {
        return Err("the certificate or key is too large".into());
    }
    let cfg = ConfigStore::open(&data.config_db())
        .and_then(|s| s.current())
        .map_err(|e| e.to_string())?
        .ok_or("no configuration")?
        .config;
    let (cert, key, owner) = match service {
        "smtp" => (
            data.resolve(&cfg.tls.cert),
            data.resolve(&cfg.tls.key),
            accounts.map(|a| (a.mail.uid, a.group)),
        ),
        "console" => (
            data.resolve(&cfg.console.cert),
            data.resolve(&cfg.console.key),
            accounts.map(|a| (a.web.uid, a.group)),
        ),
        other => return Err(format!("no service named {other}")),
    };
    let tls_dir = fs::canonicalize(data.tls()).map_err(|e| e.to_string())?;
    for p in [&cert, &key] {
        let parent = p.parent().and_then(|d| fs::canonicalize(d).ok());
        let named = p.file_name().is_some_and(|n| n != ".." && n != ".");
        if parent.as_deref() != Some(tls_dir.as_path()) || !named {
            return Err(format!(
                "{} is not in {}: certificates are only installed there",
                p.display(),
                data.tls().display()
            ));
        }
    }
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the certificate cannot be read: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in the certificate file".into());
    }
    let parsed_key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("the key cannot be read: {e}"))?;
    rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, parsed_key)
    .map_err(|e| format!("the certificate and key cannot serve TLS: {e}"))?;
    write_secret(&key, key_pem.as_bytes(), 0o600, owner).map_err(|e| e.to_string())?;
    write_secret(&cert, cert_pem.as_bytes(), 0o644, owner).map_err(|e| e.to_string())?;
    Ok(format!("installed {} for {service}", cert.display()))
}

/// Writes a self-signed certificate and key for `hostname` if either file is missing.
/// The key is 0600 and owned by the role that serves with it.
pub(crate) fn ensure_certificate(
    cert: &Path,
    key: &Path,
    hostname: &str,
    owner: Option<(Uid, Gid)>,
) -> Result<bool, SupervisorError> {
    if cert.exists() && key.exists() {
        return Ok(false);
    }
    let err = |e: rcgen::Error| SupervisorError::Setup(format!("certificate for {hostname}: {e}"));
    // Named after the appliance and valid from now, so that what a browser shows for the
    // console (until an administrator installs a real certificate) makes sense.
    let mut params = rcgen::CertificateParams::new(vec![hostname.to_string()]).map_err(err)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, hostname);
    params.distinguished_name.push(
        rcgen::DnType::OrganizationName,
        "Palisade appliance (self-signed)",
    );
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    let signing_key = rcgen::KeyPair::generate().map_err(err)?;
    let certificate = params.self_signed(&signing_key).map_err(err)?;
    write_secret(key, signing_key.serialize_pem().as_bytes(), 0o600, owner)?;
    write_secret(cert, certificate.pem().as_bytes(), 0o644, owner)?;
    tracing::info!(event = "supervisor.certificate_created", cert = %cert.display(), host = hostname);
    Ok(true)
}

fn write_secret(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(Uid, Gid)>,
) -> Result<(), SupervisorError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e: std::io::Error| SupervisorError::Setup(format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp: PathBuf = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    if let Some((uid, gid)) = owner {
        chown(&tmp, Some(uid), Some(gid))
            .map_err(|e| SupervisorError::Setup(format!("chown {}: {e}", tmp.display())))?;
    }
    fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_uses_initial_file_and_reports_all_problems() {
        let d = tempfile::tempdir().unwrap();
        let data = DataDir::new(d.path().join("data"));
        prepare_dirs(&data, None).unwrap();
        let bad = d.path().join("bad.toml");
        fs::write(
            &bad,
            "[smtp]\nmax_recipients = 0\nlisten = [\"nonsense\"]\n[system]\nhostname = \"a b\"\n",
        )
        .unwrap();
        match configuration(&data, Some(&bad)) {
            Err(SupervisorError::Config(p)) => {
                let paths: Vec<_> = p.iter().map(|p| p.path.as_str()).collect();
                assert_eq!(
                    paths,
                    ["smtp.listen", "system.hostname", "smtp.max_recipients"],
                    "{p:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        let good = d.path().join("good.toml");
        fs::write(&good, "[smtp]\nlisten = [\"127.0.0.1:10025\"]\n").unwrap();
        let (rev, created) = configuration(&data, Some(&good)).unwrap();
        assert!(created);
        assert_eq!(rev.config.smtp.listen[0].port(), 10025);
        // Second start: the stored configuration wins, the file is ignored.
        let (rev2, created) = configuration(&data, None).unwrap();
        assert!(!created);
        assert_eq!(rev2.id, rev.id);
    }

    #[test]
    fn certificate_is_created_once_with_a_private_key() {
        let d = tempfile::tempdir().unwrap();
        let (c, k) = (d.path().join("t/c.pem"), d.path().join("t/k.pem"));
        assert!(ensure_certificate(&c, &k, "gw.example.test", None).unwrap());
        assert!(!ensure_certificate(&c, &k, "gw.example.test", None).unwrap());
        assert_eq!(
            fs::metadata(&k).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(
            fs::read_to_string(&c)
                .unwrap()
                .contains("BEGIN CERTIFICATE")
        );
    }
}
