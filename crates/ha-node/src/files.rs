//! `DIR/ha/`: the pair settings (`pair.toml`), the pair key (`pair.key`, 0600), the persisted
//! epoch (`epoch`) and the published state (`state.json`). Pairing and unpairing from the
//! command line and the console go through here.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use palisade_ha::PairKey;
use palisade_ha::code::PairingCode;
use palisade_ha::pair::{self, HaStatus, PairSettings};
use ring::rand::SecureRandom;

#[derive(Debug, thiserror::Error)]
pub enum PairError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {problem}", path.display())]
    Parse { problem: String, path: PathBuf },
    #[error("this unit is already in a pair (unpair first)")]
    AlreadyPaired,
    #[error("this unit is not in a pair")]
    NotPaired,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Code(palisade_ha::code::CodeError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PairError + '_ {
    move |source| PairError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub struct HaDir {
    dir: PathBuf,
}

impl HaDir {
    pub fn new(dir: impl Into<PathBuf>) -> HaDir {
        HaDir { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn settings_path(&self) -> PathBuf {
        self.dir.join("pair.toml")
    }
    pub fn key_path(&self) -> PathBuf {
        self.dir.join("pair.key")
    }
    pub fn epoch_path(&self) -> PathBuf {
        self.dir.join("epoch")
    }
    pub fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    pub fn paired(&self) -> bool {
        self.settings_path().exists()
    }

    pub fn settings(&self) -> Result<PairSettings, PairError> {
        let p = self.settings_path();
        let text = std::fs::read_to_string(&p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => PairError::NotPaired,
            _ => io(&p)(e),
        })?;
        let s: PairSettings = toml::from_str(&text).map_err(|e| PairError::Parse {
            problem: e.to_string(),
            path: p.clone(),
        })?;
        let problems = s.problems();
        if !problems.is_empty() {
            return Err(PairError::Parse {
                problem: problems.join("; "),
                path: p,
            });
        }
        Ok(s)
    }

    pub fn key(&self) -> Result<PairKey, PairError> {
        let p = self.key_path();
        let b = std::fs::read(&p).map_err(io(&p))?;
        let bytes: [u8; 32] = b.as_slice().try_into().map_err(|_| PairError::Parse {
            problem: format!("{} bytes, a pair key is 32", b.len()),
            path: p.clone(),
        })?;
        Ok(PairKey::new(bytes))
    }

    pub fn epoch(&self) -> u64 {
        std::fs::read_to_string(self.epoch_path())
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Writes the epoch durably (file and directory fsync'd) before the caller acts on it.
    pub fn persist_epoch(&self, epoch: u64) -> Result<(), PairError> {
        write_atomic(&self.epoch_path(), format!("{epoch}\n").as_bytes(), 0o600)
    }

    pub fn status(&self) -> Option<HaStatus> {
        let text = std::fs::read_to_string(self.state_path()).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn write_status(&self, s: &HaStatus) -> Result<(), PairError> {
        let json = serde_json::to_vec_pretty(s).expect("serialisable");
        write_atomic(&self.state_path(), &json, 0o640)
    }

    fn write_pair(&self, settings: &PairSettings, key: &[u8; 32]) -> Result<(), PairError> {
        let problems = settings.problems();
        if !problems.is_empty() {
            return Err(PairError::Invalid(problems.join("; ")));
        }
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        write_atomic(&self.key_path(), key, 0o600)?;
        let text = toml::to_string(settings).expect("serialisable");
        write_atomic(&self.settings_path(), text.as_bytes(), 0o640)?;
        let _ = std::fs::remove_file(self.state_path());
        Ok(())
    }

    /// Makes this unit the first of a pair; returns the pairing code (shown once).
    pub fn create(
        &self,
        vip: IpAddr,
        prefix_len: u8,
        interface: &str,
        ha_address: IpAddr,
        witness: Option<IpAddr>,
    ) -> Result<String, PairError> {
        if self.paired() {
            return Err(PairError::AlreadyPaired);
        }
        let key = random_key()?;
        let settings = PairSettings {
            node_id: random_node_id()?,
            priority: pair::CREATE_PRIORITY,
            vip,
            prefix_len,
            interface: interface.to_string(),
            ha_address,
            peer_address: None,
            witness,
            port: pair::DEFAULT_PORT,
            interval_ms: pair::DEFAULT_INTERVAL_MS,
            dead_time_ms: pair::DEFAULT_DEAD_TIME_MS,
            preempt: false,
        };
        self.write_pair(&settings, &key)?;
        Ok(PairingCode {
            key,
            vip,
            prefix_len,
            port: settings.port,
            interface: settings.interface.clone(),
        }
        .encode())
    }

    /// Makes this unit the second of the pair whose code is given.
    pub fn join(
        &self,
        code: &str,
        peer: IpAddr,
        ha_address: IpAddr,
        interface: Option<&str>,
        witness: Option<IpAddr>,
    ) -> Result<PairSettings, PairError> {
        if self.paired() {
            return Err(PairError::AlreadyPaired);
        }
        let code = PairingCode::decode(code).map_err(PairError::Code)?;
        let settings = PairSettings {
            node_id: random_node_id()?,
            priority: pair::JOIN_PRIORITY,
            vip: code.vip,
            prefix_len: code.prefix_len,
            interface: interface.unwrap_or(&code.interface).to_string(),
            ha_address,
            peer_address: Some(peer),
            witness,
            port: code.port,
            interval_ms: pair::DEFAULT_INTERVAL_MS,
            dead_time_ms: pair::DEFAULT_DEAD_TIME_MS,
            preempt: false,
        };
        self.write_pair(&settings, &code.key)?;
        Ok(settings)
    }

    /// Leaves the pair: settings, key, epoch and state go (the running `palisade ha` stops
    /// at its next start; the caller restarts the supervisor's children).
    /// Writes the engine's spool replication key (`DIR/keys/replication.key`, derived from
    /// the pair key: the engine never reads `pair.key`) while paired, removes it otherwise.
    /// The file is 0600 and belongs to whoever owns its directory (the engine's user).
    pub fn sync_replication_key(&self, path: &Path) -> Result<(), PairError> {
        if !self.key_path().exists() {
            return match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path)(e)),
                _ => Ok(()),
            };
        }
        let key = self.key()?.derive("replication");
        write_atomic(path, &key, 0o600)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let meta = std::fs::metadata(dir).map_err(io(dir))?;
        use std::os::unix::fs::MetadataExt;
        if nix::unistd::Uid::effective().is_root() {
            std::os::unix::fs::lchown(path, Some(meta.uid()), Some(meta.gid()))
                .map_err(io(path))?;
        }
        Ok(())
    }

    pub fn unpair(&self) -> Result<(), PairError> {
        if !self.paired() {
            return Err(PairError::NotPaired);
        }
        for p in [
            self.settings_path(),
            self.key_path(),
            self.epoch_path(),
            self.state_path(),
        ] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&p)(e)),
            }
        }
        Ok(())
    }
}

/// Gives `dir` and its known files to `uid`:`gid` (the key and the epoch stay 0600, the rest
/// 0640): the command line runs as root, `palisade ha-node` as palisade-ha. `lchown`: a
/// symbolic link planted there by palisade-ha changes owner itself, never its target.
pub fn hand_over(
    dir: &Path,
    uid: nix::unistd::Uid,
    gid: nix::unistd::Gid,
) -> Result<(), PairError> {
    let chown = |p: &Path| {
        std::os::unix::fs::lchown(p, Some(uid.as_raw()), Some(gid.as_raw())).map_err(io(p))
    };
    chown(dir)?;
    for name in palisade_ha::pair::FILES {
        let p = dir.join(name);
        if std::fs::symlink_metadata(&p).is_ok() {
            chown(&p)?;
        }
    }
    Ok(())
}

fn random_key() -> Result<[u8; 32], PairError> {
    let mut k = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut k)
        .map_err(|_| PairError::Invalid("no randomness".into()))?;
    Ok(k)
}

fn random_node_id() -> Result<u64, PairError> {
    let mut b = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| PairError::Invalid("no randomness".into()))?;
    Ok(u64::from_be_bytes(b).max(1))
}

/// Writes beside and renames, file and directory fsync'd; `mode` from the start (a key is
/// never readable by others, not even for a moment).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PairError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_then_join_share_key_and_address() {
        let t = std::env::temp_dir().join(format!("ha-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&t);
        let a = HaDir::new(t.join("a"));
        let b = HaDir::new(t.join("b"));
        let code = a
            .create(
                "192.0.2.10".parse().unwrap(),
                24,
                "lan0",
                "10.99.0.1".parse().unwrap(),
                None,
            )
            .unwrap();
        assert!(matches!(
            a.create(
                "192.0.2.10".parse().unwrap(),
                24,
                "lan0",
                "10.99.0.1".parse().unwrap(),
                None
            ),
            Err(PairError::AlreadyPaired)
        ));
        let sb = b
            .join(
                &code,
                "10.99.0.1".parse().unwrap(),
                "10.99.0.2".parse().unwrap(),
                None,
                None,
            )
            .unwrap();
        let sa = a.settings().unwrap();
        assert_eq!(a.key().unwrap().bytes(), b.key().unwrap().bytes());
        assert_eq!(
            (sa.vip, sa.prefix_len, &sa.interface),
            (sb.vip, sb.prefix_len, &sb.interface)
        );
        assert!(sa.priority > sb.priority);
        assert_ne!(sa.node_id, sb.node_id);
        let mode = std::fs::metadata(a.key_path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        a.persist_epoch(7).unwrap();
        assert_eq!(a.epoch(), 7);
        a.unpair().unwrap();
        assert!(!a.paired());
        assert!(matches!(a.unpair(), Err(PairError::NotPaired)));
        let _ = std::fs::remove_dir_all(&t);
    }
}
