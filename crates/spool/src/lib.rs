//! The durable queue and its promise: a message is acknowledged only after its content file is
//! fsync'd, the spool directory is fsync'd and its queue row is committed; it is removed only
//! after the next hop accepted it.
//!
//! The spool owns the content files (`DIR/spool/<queue id>` and its artifacts
//! `DIR/spool/<queue id>.<n>`, edited copies delivered to some recipients), the quarantine
//! area (`DIR/quarantine/<id>`, [`quarantine`]: held originals, released or deleted by an
//! operator), the group committer that turns many sessions' [`Batch`]es into one fsync per
//! directory and one SQLite transaction, recovery at start (files without rows were never
//! acknowledged and go; rows whose file is missing or damaged are reported and set aside,
//! never delivered), retry scheduling, and DSN bounces. It owns the typed queue model
//! ([`RcptState`], [`MessageKind`], the DSN parameters), mapped from rows in `store`.
//! It does not speak SMTP and does not decide routes: that is the engine.

#![forbid(unsafe_code)]

pub mod admin;
mod committer;
pub mod digest;
pub mod dsn;
mod file;
pub mod notice;
pub mod quarantine;
mod recovery;
pub mod replica;
pub mod schedule;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use palisade_store::DataDir;
pub use palisade_store::mail::{
    Artifact, Batch, Body, Event, HeldRecipient, MailDb, MessageKind, NewArtifact, NewMessage,
    NewQuarantine, NewRecipient, Notify, Origin, Outcome, OutcomeKind, QuarantineChange,
    QuarantineEntry, QuarantineState, QueuedMessage, QueuedRecipient, RcptState, Rejection, Ret,
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
    /// No quarantine entry with this id.
    #[error("no quarantined message {0}")]
    NotQuarantined(String),
    /// The quarantine entry was already released or deleted.
    #[error("quarantined message {id} is {state}, not held")]
    NotHeld { id: String, state: QuarantineState },
    /// A digest link for a recipient the entry is not (or no longer) held for.
    #[error("quarantined message {id} is not held for {recipient}")]
    NotHeldFor { id: String, recipient: String },
    /// A digest link that was already used.
    #[error("this release link was already used")]
    LinkUsed,
    /// A held file that does not match what was recorded: it is not released.
    #[error("held file {path} is damaged: {reason}")]
    Damaged { path: String, reason: String },
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
    quarantine_dir: PathBuf,
    committer: committer::Committer,
    db: Arc<Mutex<MailDb>>,
}

impl Spool {
    /// Opens the spool, runs recovery, and starts the group committer.
    pub fn open(data: &DataDir) -> Result<(Spool, RecoveryReport), SpoolError> {
        Spool::open_replicated(data, None)
    }

    /// [`Spool::open`], with every committed group handed to `replicator` before its
    /// sessions are answered.
    pub fn open_replicated(
        data: &DataDir,
        replicator: Option<std::sync::Arc<dyn replica::Replicate>>,
    ) -> Result<(Spool, RecoveryReport), SpoolError> {
        let dir = data.spool();
        let corrupt_dir = data.spool_corrupt();
        let quarantine_dir = data.quarantine();
        for d in [&dir, &corrupt_dir, &quarantine_dir] {
            std::fs::create_dir_all(d).map_err(io_err(d))?;
        }
        let mut db = MailDb::open(&data.mail_db())?;
        let mut report = recovery::recover(&dir, &corrupt_dir, &mut db)?;
        report.quarantine_damaged = recovery::recover_quarantine(&quarantine_dir, &db)?;
        let committer = committer::Committer::start(
            dir.clone(),
            quarantine_dir.clone(),
            MailDb::open(&data.mail_db())?,
            replicator,
        );
        Ok((
            Spool {
                dir,
                corrupt_dir,
                quarantine_dir,
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

    /// Artifact 0 of message `id`: the content DATA received.
    pub fn content_path(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Content file `n` of message `id`: `DIR/spool/<id>` for 0, `DIR/spool/<id>.<n>` else.
    pub fn artifact_path(&self, id: &str, n: u32) -> PathBuf {
        artifact_path(&self.dir, id, n)
    }

    /// Starts writing the content of message `id`. Dropping the returned file without
    /// [`IncomingFile::finish`] removes it.
    pub fn create(&self, id: &str) -> Result<IncomingFile, SpoolError> {
        IncomingFile::create(self.content_path(id))
    }

    /// Starts writing artifact `n` of message `id` (same semantics as [`Spool::create`]). The
    /// committer fsyncs the spool directory before the batch naming it is committed.
    pub fn create_artifact(&self, id: &str, n: u32) -> Result<IncomingFile, SpoolError> {
        IncomingFile::create(self.artifact_path(id, n))
    }

    /// Replaces artifact 0 of message `id`, not yet committed, with `data` (the gateway
    /// decrypted it): written to a scratch artifact (`<id>.4294967295`), fsync'd and renamed
    /// over it; the committer fsyncs the directory with the batch that names it. A crash in
    /// between leaves files without a row, which recovery removes.
    pub async fn replace_content(&self, id: &str, data: &[u8]) -> io::Result<SpooledContent> {
        let mut f = self
            .create_artifact(id, u32::MAX)
            .map_err(|e| io::Error::other(e.to_string()))?;
        f.write(data).await?;
        let c = f.finish().await?;
        let dest = self.content_path(id);
        if let Err(e) = std::fs::rename(&c.path, &dest) {
            let _ = std::fs::remove_file(&c.path);
            return Err(e);
        }
        Ok(SpooledContent { path: dest, ..c })
    }

    /// The held copy of quarantine entry `qid`: `DIR/quarantine/<qid>`.
    pub fn quarantine_path(&self, qid: &str) -> PathBuf {
        self.quarantine_dir.join(qid)
    }

    /// Starts writing a held copy (0640); `qid` is a [`Spool::new_id`] (recovery removes
    /// files so named that have no held row, and leaves other names alone). Once `finish()`ed
    /// and named in [`Batch::quarantined`], the committer fsyncs the quarantine directory
    /// before the transaction, the same promise as spool files.
    pub fn create_quarantine(&self, qid: &str) -> Result<IncomingFile, SpoolError> {
        IncomingFile::create(self.quarantine_path(qid))
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

    /// Removes the content of a message that was never queued or whose row is gone: artifact
    /// 0 and the artifacts numbered after it up to the first gap. A crash before this (or an
    /// artifact after a gap) leaves a file without a row, which recovery removes.
    pub fn remove_content(&self, id: &str) {
        remove_file(&self.content_path(id), id);
        for n in 1.. {
            if !remove_file(&self.artifact_path(id, n), id) {
                break;
            }
        }
    }

    /// Removes one content file of a message (the received file, artifact 0, once only edited
    /// copies of it are queued). A crash before this leaves a file without its row, which
    /// recovery removes.
    pub fn remove_artifact(&self, id: &str, n: u32) {
        remove_file(&self.artifact_path(id, n), id);
    }

    /// Removes every content file of a delivered (or deleted) message.
    pub fn remove_message(&self, msg: &QueuedMessage) {
        remove_file(&self.content_path(&msg.id), &msg.id);
        for a in msg.artifacts.iter().filter(|a| a.n != 0) {
            remove_file(&self.artifact_path(&msg.id, a.n), &msg.id);
        }
    }

    /// Moves the content files of a message that failed its integrity check out of the spool,
    /// for inspection. Returns where artifact 0 went.
    pub fn set_aside(&self, msg: &QueuedMessage) -> PathBuf {
        let numbers: Vec<u32> = msg.artifacts.iter().map(|a| a.n).collect();
        recovery::set_aside(&self.dir, &self.corrupt_dir, &msg.id, &numbers)
    }

    /// Free bytes on the spool's filesystem, for refusing mail early when the disk is nearly full.
    pub fn free_space(&self) -> io::Result<u64> {
        let st = nix::sys::statvfs::statvfs(&self.dir).map_err(io::Error::from)?;
        Ok(st.blocks_available() as u64 * st.fragment_size() as u64)
    }
}

impl Spool {
    /// Checks artifact `n` of a queued message against the size and SHA-256 recorded when it
    /// was accepted. `Err` carries the reason; such content must never be delivered. Blocking.
    pub fn verify(&self, msg: &QueuedMessage, n: u32) -> Result<(), String> {
        let Some(a) = msg.artifact(n) else {
            return Err(format!("artifact {n} is not recorded"));
        };
        verify_file(&self.artifact_path(&msg.id, n), a.size, &a.sha256)
    }
}

/// Checks a file against a recorded size and SHA-256.
pub(crate) fn verify_file(path: &Path, size: u64, sha256: &[u8]) -> Result<(), String> {
    match file::sha256_file(path) {
        Err(e) => Err(format!("content file unreadable: {e}")),
        Ok((len, _)) if len != size => Err(format!(
            "content file has {len} bytes, {size} were accepted"
        )),
        Ok((_, hash)) if hash != sha256 => {
            Err("content does not match the checksum taken when it was accepted".into())
        }
        Ok(_) => Ok(()),
    }
}

/// Content file `n` of message `id` in `dir` (`<id>` for 0, `<id>.<n>` else): the spool's and the
/// replica store's naming.
pub fn artifact_path(dir: &Path, id: &str, n: u32) -> PathBuf {
    if n == 0 {
        dir.join(id)
    } else {
        dir.join(format!("{id}.{n}"))
    }
}

/// Removes a file; `false` when it was not there.
fn remove_file(path: &Path, id: &str) -> bool {
    match std::fs::remove_file(path) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => {
            tracing::warn!(event = "spool.remove_failed", queue_id = id, path = %path.display(), error = %e);
            true
        }
    }
}

pub(crate) fn fsync_dir(dir: &Path) -> Result<(), SpoolError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

pub(crate) fn now() -> i64 {
    palisade_store::now_unix()
}

#[cfg(test)]
mod tests;
