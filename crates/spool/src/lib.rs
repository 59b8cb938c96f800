//! The durable queue and its promise: a message is acknowledged only after its content file is
//! fsync'd, the spool directory is fsync'd and its queue row is committed; it is removed only
//! after the next hop accepted it.
//!
//! The spool owns the content files (`DIR/spool/<queue id>`), the group committer that turns
//! many sessions' [`Batch`]es into one directory fsync and one SQLite transaction, recovery at
//! start (files without rows were never acknowledged and go; rows whose file is missing or
//! damaged are reported and set aside, never delivered), retry scheduling, and DSN bounces.
//! It does not speak SMTP and does not decide routes: that is the engine.

#![forbid(unsafe_code)]

pub mod admin;
mod committer;
pub mod dsn;
mod file;
mod recovery;
pub mod schedule;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use palisade_store::DataDir;
pub use palisade_store::mail::{
    Batch, Event, MailDb, MessageKind, NewMessage, NewRecipient, Origin, Outcome, OutcomeKind,
    QueuedMessage, QueuedRecipient, Rejection,
};

pub use file::{IncomingFile, SpooledContent};
pub use recovery::RecoveryReport;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error(transparent)]
    Store(#[from] palisade_store::StoreError),
    #[error("spool {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    /// The committer thread is gone (engine shutting down or crashed).
    #[error("the spool committer has stopped")]
    Stopped,
}

impl SpoolError {
    /// True when the failure is the disk (or the database) being full: the SMTP answer is then
    /// 452 "insufficient storage" rather than a generic local error.
    pub fn is_disk_full(&self) -> bool {
        match self {
            SpoolError::Io { source, .. } => is_disk_full(source),
            SpoolError::Store(palisade_store::StoreError::Sqlite { source, .. }) => {
                matches!(
                    source.sqlite_error_code(),
                    Some(palisade_store::rusqlite::ErrorCode::DiskFull)
                )
            }
            _ => false,
        }
    }
}

pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == nix::libc::ENOSPC || code == nix::libc::EDQUOT)
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The spool of one engine. Cheap to clone.
#[derive(Clone)]
pub struct Spool {
    dir: PathBuf,
    corrupt_dir: PathBuf,
    committer: committer::Committer,
    db: Arc<Mutex<MailDb>>,
}

impl Spool {
    /// Opens the spool, runs recovery, and starts the group committer.
    pub fn open(data: &DataDir) -> Result<(Spool, RecoveryReport), SpoolError> {
        let dir = data.spool();
        let corrupt_dir = data.spool_corrupt();
        for d in [&dir, &corrupt_dir] {
            std::fs::create_dir_all(d).map_err(io_err(d))?;
        }
        let mut db = MailDb::open(&data.mail_db())?;
        let report = recovery::recover(&dir, &corrupt_dir, &mut db)?;
        let committer = committer::Committer::start(dir.clone(), MailDb::open(&data.mail_db())?);
        Ok((
            Spool {
                dir,
                corrupt_dir,
                committer,
                db: Arc::new(Mutex::new(db)),
            },
            report,
        ))
    }

    /// A new queue id: sortable by time (milliseconds, hex), then random, 20 characters.
    pub fn new_id() -> String {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut r = [0u8; 4];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut r)
            .expect("system randomness");
        format!("{ms:012X}{:08X}", u32::from_be_bytes(r))
    }

    pub fn content_path(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Starts writing the content of message `id`. Dropping the returned file without
    /// [`IncomingFile::finish`] removes it.
    pub fn create(&self, id: &str) -> Result<IncomingFile, SpoolError> {
        IncomingFile::create(self.content_path(id))
    }

    /// Records `batch` durably, group-committed with whatever other sessions and deliveries
    /// are committing at the same moment. Returns once the transaction is on disk.
    pub async fn commit(&self, batch: Batch) -> Result<(), SpoolError> {
        self.committer.commit(batch).await
    }

    /// Blocking access to the read side of `mail.db` (queue scans, queue admin). Use from a
    /// blocking context.
    pub fn db(&self) -> &Mutex<MailDb> {
        &self.db
    }

    /// Removes a delivered (or deleted) message's content. A crash before this leaves a file
    /// without a row, which recovery removes.
    pub fn remove_content(&self, id: &str) {
        let p = self.content_path(id);
        if let Err(e) = std::fs::remove_file(&p)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(event = "spool.remove_failed", queue_id = id, error = %e);
        }
    }

    /// Moves a content file that failed its integrity check out of the spool, for inspection.
    pub fn set_aside(&self, id: &str) -> PathBuf {
        recovery::set_aside(&self.dir, &self.corrupt_dir, id)
    }

    /// Free bytes on the spool's filesystem, for refusing mail early when the disk is nearly full.
    pub fn free_space(&self) -> io::Result<u64> {
        let st = nix::sys::statvfs::statvfs(&self.dir).map_err(io::Error::from)?;
        Ok(st.blocks_available() as u64 * st.fragment_size() as u64)
    }
}

impl Spool {
    /// Checks a queued message's content against the size and SHA-256 recorded when it was
    /// accepted. `Err` carries the reason; such content must never be delivered. Blocking.
    pub fn verify(&self, msg: &QueuedMessage) -> Result<(), String> {
        match file::sha256_file(&self.content_path(&msg.id)) {
            Err(e) => Err(format!("content file unreadable: {e}")),
            Ok((len, _)) if len != msg.size => Err(format!(
                "content file has {len} bytes, {} were accepted",
                msg.size
            )),
            Ok((_, hash)) if hash != msg.sha256 => {
                Err("content does not match the checksum taken when it was accepted".into())
            }
            Ok(_) => Ok(()),
        }
    }
}

pub(crate) fn now() -> i64 {
    palisade_store::now_unix()
}

#[cfg(test)]
mod tests;
