//! ClamAV signature databases in `<data dir>/clamav/` (clamd's `DatabaseDirectory` on the
//! appliance), installed from uploaded files — the appliance has no route to the public
//! mirrors — and a few words with clamd over its socket (`VERSION`, `RELOAD`).
//!
//! Used by `palisade av update|status` and the console; the engine scans through its own
//! client. Files are checked before they are installed: a known database extension, a
//! plain file name, a size limit, and for `.cvd`/`.cld`/`.cud` bundles the 512-byte
//! `ClamAV-VDB:` header (version, signature count, build time). clamd verifies a bundle's
//! digital signature itself when it loads it; a file it rejects makes the reload fail, which
//! `RELOAD`'s caller reports.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::config::ClamdAddress;

/// Signatures older than this are stale: `av status` and the console say so.
pub const STALE_AFTER_SECS: i64 = 3 * 86400;

/// The largest database file accepted (main.cvd is ~170 MiB today).
pub const MAX_DATABASE_BYTES: u64 = 1024 * 1024 * 1024;

/// Signature bundles (`ClamAV-VDB:` header + tar.gz).
const BUNDLES: &[&str] = &["cvd", "cld", "cud"];
/// Text databases clamd loads from its database directory.
const TEXT: &[&str] = &[
    "hdb", "hsb", "hdu", "hsu", "mdb", "msb", "mdu", "msu", "ndb", "ndu", "ldb", "ldu", "idb",
    "cdb", "cfg", "crb", "fp", "sfp", "ign", "ign2", "ftm", "pdb", "gdb", "wdb", "info", "yar",
    "yara", "cat",
];

/// One database file, installed or about to be.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Database {
    pub name: String,
    pub bytes: u64,
    /// `bundle` (.cvd/.cld/.cud) or `signatures` (a text database).
    pub kind: &'static str,
    /// A bundle's version (e.g. daily 27480).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// How many signatures a bundle says it holds, or the lines of a text database.
    pub signatures: u64,
    /// A bundle's build time (Unix seconds); for a text database, when it was installed.
    pub built: Option<i64>,
}

/// Checks one file before it is installed: its name and its content.
pub fn inspect(name: &str, content: &[u8]) -> Result<Database, String> {
    let valid_name = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !valid_name {
        return Err(format!(
            "'{name}' is not a plain database file name (letters, digits, '.', '-', '_')"
        ));
    }
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    if content.len() as u64 > MAX_DATABASE_BYTES {
        return Err(format!(
            "{name} is {} bytes, more than the {} accepted",
            content.len(),
            MAX_DATABASE_BYTES
        ));
    }
    if content.is_empty() {
        return Err(format!("{name} is empty"));
    }
    if BUNDLES.contains(&ext.as_str()) {
        let (version, signatures, built) = bundle_header(content)
            .map_err(|e| format!("{name} is not a ClamAV signature bundle: {e}"))?;
        return Ok(Database {
            name: name.to_string(),
            bytes: content.len() as u64,
            kind: "bundle",
            version: Some(version),
            signatures,
            built,
        });
    }
    if !TEXT.contains(&ext.as_str()) {
        return Err(format!(
            "{name}: '.{ext}' is not a ClamAV database type (.cvd, .cld, .cud, or a signature \
             file such as .ndb, .hdb, .ldb, .yar)"
        ));
    }
    if content.contains(&0) {
        return Err(format!(
            "{name} contains NUL bytes; a .{ext} database is text"
        ));
    }
    let text = std::str::from_utf8(content)
        .map_err(|_| format!("{name} is not UTF-8 text; a .{ext} database is text"))?;
    let signatures = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .count() as u64;
    if signatures == 0 && ext != "ign" && ext != "ign2" && ext != "fp" && ext != "sfp" {
        return Err(format!("{name} holds no signatures"));
    }
    Ok(Database {
        name: name.to_string(),
        bytes: content.len() as u64,
        kind: "signatures",
        version: None,
        signatures,
        built: None,
    })
}

/// `ClamAV-VDB:build time:version:signatures:functionality level:md5:dsig:builder:stime`,
/// space-padded to 512 bytes. Returns (version, signatures, build time).
fn bundle_header(content: &[u8]) -> Result<(u64, u64, Option<i64>), String> {
    if content.len() < 512 {
        return Err("shorter than its 512-byte header".into());
    }
    let header =
        std::str::from_utf8(&content[..512]).map_err(|_| "its header is not text".to_string())?;
    let fields: Vec<&str> = header.trim_end().split(':').collect();
    if fields.first() != Some(&"ClamAV-VDB") || fields.len() < 8 {
        return Err("no 'ClamAV-VDB:' header".into());
    }
    let version = fields[2]
        .trim()
        .parse()
        .map_err(|_| format!("version '{}' is not a number", fields[2]))?;
    let signatures = fields[3]
        .trim()
        .parse()
        .map_err(|_| format!("signature count '{}' is not a number", fields[3]))?;
    let built = fields.get(8).and_then(|s| s.trim().parse::<i64>().ok());
    Ok((version, signatures, built))
}

/// Installs a checked file into `dir` (created if missing), replacing one of the same name
/// atomically: written beside it, synced, renamed. Mode 0644: clamd runs as its own user.
pub fn install(dir: &Path, name: &str, content: &[u8]) -> Result<Database, String> {
    let mut db = inspect(name, content)?;
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let target = dir.join(name);
    let tmp = dir.join(format!(".{name}.uploading"));
    let write = || -> std::io::Result<()> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        // The directory is writable by the `palisade` group: a name left there (or planted,
        // as a symbolic link) is removed, and the new file is created, never followed.
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(0o400000) // O_NOFOLLOW
            .open(&tmp)?;
        // Readable by clamd (its own user) whatever the writer's umask.
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        f.write_all(content)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        std::fs::File::open(dir)?.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("installing {}: {e}", target.display()));
    }
    if db.built.is_none() {
        db.built = Some(crate::now_unix());
    }
    Ok(db)
}

/// The databases in `dir`, by name. A text database's `built` is its file's modification
/// time (when it was installed).
pub fn installed(dir: &Path) -> Vec<Database> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<Database> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let meta = e.metadata().ok().filter(|m| m.is_file())?;
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as i64);
            // Bundles: only the header is read, not the whole (large) file.
            let is_bundle = name
                .rsplit_once('.')
                .is_some_and(|(_, e)| BUNDLES.contains(&e.to_ascii_lowercase().as_str()));
            let mut head = Vec::new();
            std::fs::File::open(e.path())
                .ok()?
                .take(if is_bundle { 512 } else { MAX_DATABASE_BYTES })
                .read_to_end(&mut head)
                .ok()?;
            let mut db = inspect(&name, &head).ok()?;
            db.bytes = meta.len();
            if db.built.is_none() {
                db.built = mtime;
            }
            Some(db)
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The newest signature time among `dbs` (a bundle's build time, a text database's install
/// time): what "signature age" is measured from.
pub fn newest(dbs: &[Database]) -> Option<i64> {
    dbs.iter().filter_map(|d| d.built).max()
}

/// The newest signature time in `dir` without reading whole files: a bundle's build time
/// from its header, a text database's modification time. `None` when there is none.
pub fn newest_in(dir: &Path) -> Option<i64> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let meta = e.metadata().ok().filter(|m| m.is_file())?;
            let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
            if BUNDLES.contains(&ext.as_str()) {
                let mut head = Vec::new();
                std::fs::File::open(e.path())
                    .ok()?
                    .take(512)
                    .read_to_end(&mut head)
                    .ok()?;
                bundle_header(&head).ok()?.2
            } else if TEXT.contains(&ext.as_str()) && !name.starts_with('.') {
                meta.modified()
                    .ok()?
                    .duration_since(std::time::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_secs() as i64)
            } else {
                None
            }
        })
        .max()
}

/// One command to clamd (`VERSION`, `RELOAD`, `PING`), NUL-delimited, with a timeout; its
/// answer without the terminator.
pub fn clamd_command(
    address: &ClamdAddress,
    command: &str,
    timeout: Duration,
) -> Result<String, String> {
    fn talk<S: Read + Write>(mut s: S, command: &str) -> std::io::Result<String> {
        s.write_all(format!("z{command}\0").as_bytes())?;
        let mut answer = Vec::new();
        s.take(64 * 1024).read_to_end(&mut answer)?;
        Ok(String::from_utf8_lossy(&answer)
            .trim_end_matches(['\0', '\n'])
            .to_string())
    }
    let r = match address {
        ClamdAddress::Unix(p) => std::os::unix::net::UnixStream::connect(p).and_then(|s| {
            s.set_read_timeout(Some(timeout))?;
            s.set_write_timeout(Some(timeout))?;
            talk(s, command)
        }),
        ClamdAddress::Tcp(a) => {
            use std::net::ToSocketAddrs;
            a.to_socket_addrs()
                .and_then(|mut it| {
                    it.next().ok_or_else(|| {
                        std::io::Error::new(std::io::ErrorKind::NotFound, "no address")
                    })
                })
                .and_then(|sa| std::net::TcpStream::connect_timeout(&sa, timeout))
                .and_then(|s| {
                    s.set_read_timeout(Some(timeout))?;
                    s.set_write_timeout(Some(timeout))?;
                    talk(s, command)
                })
        }
    };
    r.map_err(|e| format!("clamd at {address} did not answer: {e}"))
}

/// Where the data directory keeps clamd's databases.
pub fn directory(data: &crate::DataDir) -> PathBuf {
    data.root().join("clamav")
}

/// The outcome of one freshclam run, kept in `DIR/run/av-update.json` for the console and
/// `palisade av status`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct UpdateOutcome {
    /// When it ended (Unix seconds).
    pub at: i64,
    pub ok: bool,
    /// What changed ("daily.cvd updated (version: 27480, sigs: …)") or why it failed.
    pub message: String,
}

/// How long one freshclam run may take.
pub const FRESHCLAM_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// freshclam's configuration for `[antivirus]`: the database directory, the private mirror
/// (or, without one, no official database at all), the custom URLs. Values are checked by the
/// configuration's validation (no line breaks; `http(s)://`).
pub fn freshclam_conf(dir: &Path, owner: &str, av: &crate::config::Antivirus) -> String {
    let mut c = format!(
        "# Written by Palisade for each run; edits are lost.\n\
         DatabaseDirectory {}\n\
         DatabaseOwner {owner}\n\
         Foreground yes\n\
         LogTime no\n\
         DNSDatabaseInfo no\n\
         ConnectTimeout 30\n\
         ReceiveTimeout 600\n\
         MaxAttempts 2\n\
         TestDatabases yes\n",
        dir.display()
    );
    let mirror = av.mirror.trim().trim_end_matches('/');
    if mirror.is_empty() {
        // Only what custom_urls name: never the public mirrors (the appliance has no route).
        // freshclam insists on a mirror option; with every official database excluded it
        // never asks it (`.invalid` never resolves, RFC 2606).
        c.push_str("DatabaseMirror invalid.invalid\n");
        for db in ["main", "daily", "bytecode"] {
            c.push_str(&format!("ExcludeDatabase {db}\n"));
        }
    } else {
        c.push_str(&format!("PrivateMirror {mirror}\n"));
    }
    for u in &av.custom_urls {
        c.push_str(&format!("DatabaseCustomURL {}\n", u.trim()));
    }
    c
}

/// Runs freshclam once for `[antivirus]` (configuration in `DIR/run/freshclam.conf`), bounded
/// by [`FRESHCLAM_TIMEOUT`]; records and returns the outcome. Asking clamd to reload is the
/// caller's.
pub fn freshclam_update(
    data: &crate::DataDir,
    owner: &str,
    av: &crate::config::Antivirus,
) -> UpdateOutcome {
    let outcome = |ok: bool, message: String| UpdateOutcome {
        at: crate::now_unix(),
        ok,
        message,
    };
    let result = (|| -> Result<String, String> {
        if !av.fetches() {
            return Err("no mirror and no custom URL is configured".into());
        }
        let dir = directory(data);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let conf = data.run().join("freshclam.conf");
        let _ = std::fs::remove_file(&conf);
        std::fs::write(&conf, freshclam_conf(&dir, owner, av))
            .map_err(|e| format!("{}: {e}", conf.display()))?;
        let log = data.run().join("freshclam.log");
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut child = std::process::Command::new(&av.freshclam)
            .arg(format!("--config-file={}", conf.display()))
            .arg("--stdout")
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("{} cannot be started: {e}", av.freshclam))?;
        let deadline = std::time::Instant::now() + FRESHCLAM_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) if std::time::Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "freshclam did not finish within {} min",
                        FRESHCLAM_TIMEOUT.as_secs() / 60
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(200)),
                Err(e) => return Err(e.to_string()),
            }
        };
        let text = std::fs::read(&log)
            .map(|b| String::from_utf8_lossy(&b[b.len().saturating_sub(64 * 1024)..]).into_owned())
            .unwrap_or_default();
        let mut lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| {
                l.contains(" updated (") || l.contains("is up-to-date") || l.starts_with("ERROR")
            })
            .collect();
        lines.dedup();
        let summary = if lines.is_empty() {
            text.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_string()
        } else {
            lines.join("; ")
        };
        if status.success() {
            Ok(summary)
        } else {
            Err(format!("freshclam failed ({status}): {summary}"))
        }
    })();
    let o = match result {
        Ok(m) => outcome(true, m),
        Err(m) => outcome(false, m),
    };
    let path = data.run().join("av-update.json");
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    if std::fs::write(&tmp, serde_json::to_vec(&o).unwrap_or_default())
        .and_then(|()| std::fs::rename(&tmp, &path))
        .is_err()
    {
        tracing::warn!(event = "antivirus.update_record_failed", path = %path.display());
    }
    o
}

/// The outcome of the last freshclam run, if there was one.
pub fn last_update(data: &crate::DataDir) -> Option<UpdateOutcome> {
    let b = std::fs::read(data.run().join("av-update.json")).ok()?;
    serde_json::from_slice(&b).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cvd(version: u64, sigs: u64, stime: i64) -> Vec<u8> {
        let mut h = format!(
            "ClamAV-VDB:01 Dec 2026 09-23 +0000:{version}:{sigs}:90:0123456789abcdef0123456789abcdef:sig:builder:{stime}"
        )
        .into_bytes();
        h.resize(512, b' ');
        h.extend_from_slice(b"\x1f\x8b rest of the tar.gz");
        h
    }

    #[test]
    fn checks_names_types_and_headers() {
        let ok = inspect("local.ndb", b"Test.Sig:0:*:414243\n# comment\n").unwrap();
        assert_eq!((ok.kind, ok.signatures), ("signatures", 1));
        let b = inspect("daily.cvd", &cvd(27480, 2071563, 1_795_000_000)).unwrap();
        assert_eq!(
            (b.kind, b.version, b.signatures, b.built),
            ("bundle", Some(27480), 2071563, Some(1_795_000_000))
        );
        for (name, content) in [
            ("../etc/passwd.ndb", &b"x:0:*:41"[..]),
            (".hidden.ndb", b"x:0:*:41"),
            ("evil.sh", b"echo"),
            ("a.ndb", b""),
            ("a.ndb", b"\0\0"),
            ("a.ndb", b"# only a comment\n"),
            ("main.cvd", b"not a bundle"),
        ] {
            assert!(inspect(name, content).is_err(), "{name} accepted");
        }
        let mut wrong = cvd(1, 1, 1);
        wrong[..10].copy_from_slice(b"NotClamAV:");
        assert!(inspect("main.cvd", &wrong).is_err());
    }

    #[test]
    fn installs_atomically_and_lists() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("clamav");
        install(&dir, "local.ndb", b"A:0:*:41\nB:0:*:42\n").unwrap();
        install(&dir, "daily.cvd", &cvd(7, 9, 1_700_000_000)).unwrap();
        // Replacing keeps one file; no temporary left behind.
        install(&dir, "local.ndb", b"A:0:*:41\n").unwrap();
        assert!(install(&dir, "bad.exe", b"MZ").is_err());
        let all = installed(&dir);
        assert_eq!(
            all.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            ["daily.cvd", "local.ndb"]
        );
        assert_eq!(all[1].signatures, 1);
        assert_eq!(all[0].version, Some(7));
        assert!(newest(&all).unwrap() > 1_700_000_000);
        assert_eq!(newest(&all), newest_in(&dir));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("local.ndb"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
    }

    #[test]
    fn freshclam_asks_the_private_mirror_or_only_the_custom_urls() {
        let dir = Path::new("/data/clamav");
        let mut av = crate::config::Antivirus {
            custom_urls: vec!["https://intranet.example/av/hospital.ndb".into()],
            ..Default::default()
        };
        let c = freshclam_conf(dir, "palisade-mail", &av);
        assert!(c.contains("DatabaseDirectory /data/clamav\n"), "{c}");
        assert!(c.contains("DatabaseOwner palisade-mail\n"));
        assert!(c.contains("DatabaseCustomURL https://intranet.example/av/hospital.ndb\n"));
        for db in ["main", "daily", "bytecode"] {
            assert!(c.contains(&format!("ExcludeDatabase {db}\n")), "{c}");
        }
        assert!(!c.contains("PrivateMirror"));
        av.mirror = "http://clamav.hospital.local/".into();
        let c = freshclam_conf(dir, "palisade-mail", &av);
        assert!(
            c.contains("PrivateMirror http://clamav.hospital.local\n"),
            "{c}"
        );
        assert!(!c.contains("ExcludeDatabase") && !c.contains("DatabaseMirror"));
    }
}
