//! The layout of the data directory (`/data` on the appliance, `--data DIR` elsewhere).
//! Every path any process uses is named here once.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config_db(&self) -> PathBuf {
        self.root.join("config.db")
    }

    pub fn audit_db(&self) -> PathBuf {
        self.root.join("audit.db")
    }

    /// The Bayes classifier's statistics (`palisade_store::bayes`).
    pub fn bayes_db(&self) -> PathBuf {
        self.root.join("bayes.db")
    }

    /// Queue rows and message tracking.
    pub fn mail_db(&self) -> PathBuf {
        self.root.join("mail.db")
    }

    /// Message content files, one per queued message, named by queue id.
    pub fn spool(&self) -> PathBuf {
        self.root.join("spool")
    }

    /// Spool files that failed their integrity check: kept for inspection, never delivered.
    pub fn spool_corrupt(&self) -> PathBuf {
        self.root.join("spool-corrupt")
    }

    pub fn quarantine(&self) -> PathBuf {
        self.root.join("quarantine")
    }

    /// Content files of the HA peer's replicated queue (`<id>`, `<id>.<n>`): the engine's,
    /// never delivered until adopted.
    pub fn replica(&self) -> PathBuf {
        self.root.join("replica")
    }

    /// The HA peer's held originals (its quarantine), kept apart until adopted.
    pub fn peer_quarantine(&self) -> PathBuf {
        self.root.join("peer-quarantine")
    }

    /// The key that authenticates spool replication between the units of a pair (0600, the
    /// engine's; derived from the pair key).
    pub fn replication_key(&self) -> PathBuf {
        self.keys().join("replication.key")
    }

    /// Key material: owned by the engine's user, group `palisade` may enter (2750); each key
    /// file says who may read it.
    pub fn keys(&self) -> PathBuf {
        self.root.join("keys")
    }

    /// The key that signs the quarantine digest's release links (0640 root:palisade: the
    /// engine signs, the console checks; see `palisade_store::digest`).
    pub fn digest_key(&self) -> PathBuf {
        self.keys().join("digest.key")
    }

    /// The console's own secrets: 0700, owned by the console's user (`palisade-web`).
    pub fn console(&self) -> PathBuf {
        self.root.join("console")
    }

    /// The key that seals TOTP secrets in `config.db` (see `palisade_store::totp_key`).
    pub fn totp_key(&self) -> PathBuf {
        self.console().join("totp.key")
    }

    /// TLS certificates and keys of the listeners.
    pub fn tls(&self) -> PathBuf {
        self.root.join("tls")
    }

    /// The local Maildir delivery route.
    pub fn mailbox(&self) -> PathBuf {
        self.root.join("mailbox")
    }

    /// Runtime sockets (the engine's control socket).
    pub fn run(&self) -> PathBuf {
        self.root.join("run")
    }

    /// The HA pair's settings, key, epoch and published state (`palisade ha`).
    pub fn ha(&self) -> PathBuf {
        self.root.join("ha")
    }

    pub fn control_socket(&self) -> PathBuf {
        self.run().join("engine.sock")
    }

    /// Resolves a path from the configuration: relative paths are relative to the data dir.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.root.join(p)
        }
    }
}
