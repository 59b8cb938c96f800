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

    /// Key material: 0700, readable only by the engine's user.
    pub fn keys(&self) -> PathBuf {
        self.root.join("keys")
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
