//! Spool replication's two ends that touch the disk (ARCHITECTURE.md, "Spool replication"):
//!
//! - [`Replicate`], the committer's hook: after a group is committed here and before its
//!   sessions are answered, the engine's replicator sends it to the peer;
//! - [`ReplicaStore`], the peer's queue kept here (`DIR/replica/`, rows in `mail.db`), written
//!   with the spool's promise (file fsync, directory fsync, then the row) and never delivered;
//! - [`Spool::adopt_replicas`], which turns every replica into an ordinary queued message when
//!   the peer is gone.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use palisade_store::DataDir;
use palisade_store::mail::{Batch, MailDb, ReplicaChanges, ReplicaRecord};
use ring::digest;

use crate::{Spool, SpoolError, artifact_path, io_err};

/// The committer's replication hook. `replicate` is called on the committer's thread with
/// every batch of a group that was just committed, before any of its waiters is answered. It
/// blocks until the peer acknowledged the group or gave up (its own time bound); a failure is
/// the replicator's to record (the unit answers alone and says it is degraded), never the
/// sessions'.
pub trait Replicate: Send + Sync {
    fn replicate(&self, batches: &[&Batch]);
}

/// What of a group goes to the peer: the messages queued, the recipients finished, the
/// messages removed. Empty for a group that changed nothing the peer keeps.
#[derive(Debug, Default)]
pub struct GroupChanges {
    pub records: Vec<ReplicaRecord>,
    pub done: Vec<(String, i64)>,
    pub remove: Vec<String>,
}

impl GroupChanges {
    pub fn of(batches: &[&Batch]) -> GroupChanges {
        use palisade_store::mail::OutcomeKind;
        let mut g = GroupChanges::default();
        for b in batches {
            g.records.extend(
                b.accepted
                    .iter()
                    .filter(|m| !m.recipients.is_empty())
                    .map(ReplicaRecord::from_new),
            );
            g.done.extend(
                b.outcomes
                    .iter()
                    .filter(|o| !matches!(o.kind, OutcomeKind::Deferred { .. }))
                    .map(|o| (o.message_id.clone(), o.idx)),
            );
            g.remove.extend(b.remove.iter().cloned());
        }
        g
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.done.is_empty() && self.remove.is_empty()
    }
}

/// The peer's queue, kept here.
pub struct ReplicaStore {
    dir: PathBuf,
    db: Mutex<MailDb>,
    /// The replica count last read (`count` answers it while a group holds the database).
    counted: AtomicU64,
}

/// A replica content file being received. Dropped without `finish`, it is removed.
pub struct ReplicaFile {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    hash: digest::Context,
}

impl ReplicaFile {
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.hash.update(data);
        self.size += data.len() as u64;
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("closed"))?
            .write_all(data)
    }

    /// Fsyncs the file and checks it against what the record says.
    pub fn finish(mut self, size: u64, sha256_hex: &str) -> Result<(), String> {
        let file = self.file.take().ok_or("closed")?;
        file.sync_all()
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        let hash = std::mem::replace(&mut self.hash, digest::Context::new(&digest::SHA256));
        let got = hex::encode(hash.finish().as_ref());
        if self.size != size || got != sha256_hex {
            let _ = std::fs::remove_file(&self.path);
            return Err(format!(
                "{}: {} bytes / {got}, the record says {size} / {sha256_hex}",
                self.path.display(),
                self.size
            ));
        }
        self.size = u64::MAX; // finished: keep the file
        Ok(())
    }
}

impl Drop for ReplicaFile {
    fn drop(&mut self) {
        if self.size != u64::MAX {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl ReplicaStore {
    /// Opens the store and removes replica files that have no row (a group that was never
    /// acknowledged, or a replica dropped or adopted before the files went).
    pub fn open(data: &DataDir) -> Result<ReplicaStore, SpoolError> {
        let dir = data.replica();
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let store = ReplicaStore {
            dir,
            db: Mutex::new(MailDb::open(&data.mail_db())?),
            counted: AtomicU64::new(0),
        };
        store.sweep()?;
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn db(&self) -> std::sync::MutexGuard<'_, MailDb> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes every file whose message has no replica row.
    pub fn sweep(&self) -> Result<usize, SpoolError> {
        let ids: std::collections::HashSet<String> = self.db().replica_ids()?.into_iter().collect();
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            let id = name.split('.').next().unwrap_or_default();
            if !ids.contains(id) && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    pub fn has(&self, id: &str) -> Result<bool, SpoolError> {
        Ok(self.db().replica_has(id)?)
    }

    /// Replicas kept, for status reports: never waits for the database (a group being
    /// received may hold it), the last count is answered then.
    pub fn count(&self) -> usize {
        if let Ok(db) = self.db.try_lock()
            && let Ok(n) = db.replica_count()
        {
            self.counted.store(n, Ordering::Relaxed);
        }
        self.counted.load(Ordering::Relaxed) as usize
    }

    /// Starts receiving content file `n` of replica `id` (a partial file of an earlier,
    /// broken connection is replaced).
    pub fn create_file(&self, id: &str, n: u32) -> Result<ReplicaFile, SpoolError> {
        if !crate::recovery::is_queue_id(id) {
            return Err(SpoolError::Io {
                path: id.into(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "not a queue id"),
            });
        }
        let path = artifact_path(&self.dir, id, n);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o640)
            .open(&path)
            .map_err(io_err(&path))?;
        Ok(ReplicaFile {
            path,
            file: Some(file),
            size: 0,
            hash: digest::Context::new(&digest::SHA256),
        })
    }

    /// Records a group from the peer: the directory is fsync'd (the new files' names) before
    /// the rows are committed; the files of removed replicas go after.
    pub fn commit(&self, changes: &ReplicaChanges<'_>) -> Result<(), SpoolError> {
        if !changes.records.is_empty() {
            crate::fsync_dir(&self.dir)?;
        }
        let gone: Vec<(String, Vec<u32>)> = {
            let db = self.db();
            changes
                .remove
                .iter()
                .filter_map(|id| {
                    db.replica(id)
                        .ok()
                        .flatten()
                        .map(|(r, _)| (id.clone(), r.artifacts.iter().map(|a| a.n).collect()))
                })
                .collect()
        };
        self.db().replica_apply(changes)?;
        for (id, numbers) in gone {
            self.remove_files(&id, &numbers);
        }
        Ok(())
    }

    fn remove_files(&self, id: &str, numbers: &[u32]) {
        for n in numbers {
            let _ = std::fs::remove_file(artifact_path(&self.dir, id, *n));
        }
    }

    /// The peer's inventory: replicas it no longer queues are dropped (rows, then files);
    /// answers (ids we lack, ids we adopted).
    pub fn inventory(&self, queued: &[String]) -> Result<(Vec<String>, Vec<String>), SpoolError> {
        let answer = self.db().replica_inventory(queued)?;
        self.sweep()?;
        Ok(answer)
    }
}

impl Spool {
    /// Makes every replica of the peer's queue an ordinary queued message, due at once (the
    /// peer is gone). Returns how many were queued. A replica whose files do not match its
    /// record is left where it is and reported.
    pub async fn adopt_replicas(&self, store: &ReplicaStore) -> Result<usize, SpoolError> {
        let ids = store.db().replica_ids()?;
        let mut adopted = 0;
        for chunk in ids.chunks(64) {
            let mut batch = Batch::default();
            let mut linked: Vec<PathBuf> = Vec::new();
            let mut replica_files: Vec<(String, Vec<u32>)> = Vec::new();
            for id in chunk {
                let Some((record, done)) = store.db().replica(id)? else {
                    continue;
                };
                let numbers: Vec<u32> = record.artifacts.iter().map(|a| a.n).collect();
                let queued_here = self
                    .db()
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .message(id)?
                    .is_some();
                let msg = match record.to_new_message(&done) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::error!(event = "replica.unusable", queue_id = %id, error = %e);
                        continue;
                    }
                };
                if queued_here || msg.recipients.is_empty() {
                    // Ours already (it came back to us), or the peer finished every recipient.
                    batch.adopted.push(id.clone());
                    replica_files.push((id.clone(), numbers));
                    continue;
                }
                let damaged = record.artifacts.iter().find_map(|a| {
                    let sha = hex::decode(&a.sha256).unwrap_or_default();
                    crate::verify_file(&artifact_path(store.dir(), id, a.n), a.size, &sha)
                        .err()
                        .map(|e| format!("content file {}: {e}", a.n))
                });
                if let Some(reason) = damaged {
                    tracing::error!(event = "replica.damaged", queue_id = %id, reason = %reason);
                    continue;
                }
                let mut ok = true;
                for n in &numbers {
                    let to = self.artifact_path(id, *n);
                    match std::fs::hard_link(artifact_path(store.dir(), id, *n), &to) {
                        Ok(()) => linked.push(to),
                        Err(e) => {
                            tracing::error!(event = "replica.link_failed", queue_id = %id, error = %e);
                            ok = false;
                            break;
                        }
                    }
                }
                if !ok {
                    continue;
                }
                batch.accepted.push(msg);
                batch.adopted.push(id.clone());
                replica_files.push((id.clone(), numbers));
            }
            if batch.is_empty() {
                continue;
            }
            let n = batch.accepted.len();
            if let Err(e) = self.commit(batch).await {
                for p in linked {
                    let _ = std::fs::remove_file(p);
                }
                return Err(e);
            }
            adopted += n;
            for (id, numbers) in replica_files {
                store.remove_files(&id, &numbers);
            }
        }
        Ok(adopted)
    }
}

/// Reads a content file in chunks, for sending (the size is what the record says).
pub fn read_chunks(path: &Path, mut each: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<u64> {
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let r = f.read(&mut buf)?;
        if r == 0 {
            return Ok(total);
        }
        total += r as u64;
        each(&buf[..r])?;
    }
}
