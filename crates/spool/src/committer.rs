//! Group commit: one thread owns the writing connection to `mail.db`. It takes every batch
//! that is waiting, fsyncs the spool directory once (making all new content files' names
//! durable; the quarantine directory too when the group holds quarantined messages), applies all batches in one transaction, and answers each waiter. Under load, N
//! sessions finishing DATA together cost two fsyncs instead of 3N; alone, a session pays the
//! same as without batching. In an HA pair the group is handed to the replicator after its
//! transaction and before any waiter is answered (ARCHITECTURE.md, "Spool replication").

use std::path::PathBuf;
use std::sync::{Arc, mpsc};

use palisade_store::mail::{Batch, MailDb};
use tokio::sync::oneshot;

use crate::SpoolError;
use crate::replica::Replicate;

type Reply = oneshot::Sender<Result<(), SpoolError>>;

/// Largest number of batches merged into one transaction.
const MAX_GROUP: usize = 256;

#[derive(Clone)]
pub(crate) struct Committer {
    tx: mpsc::Sender<(Batch, Reply)>,
}

impl Committer {
    pub(crate) fn start(
        spool_dir: PathBuf,
        quarantine_dir: PathBuf,
        db: MailDb,
        replicator: Option<Arc<dyn Replicate>>,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<(Batch, Reply)>();
        std::thread::Builder::new()
            .name("spool-commit".into())
            .spawn(move || run(spool_dir, quarantine_dir, db, replicator, rx))
            .expect("spawn committer thread");
        Committer { tx }
    }

    pub(crate) async fn commit(&self, batch: Batch) -> Result<(), SpoolError> {
        if batch.is_empty() {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        self.tx.send((batch, tx)).map_err(|_| SpoolError::Stopped)?;
        rx.await.map_err(|_| SpoolError::Stopped)?
    }
}

fn run(
    spool_dir: PathBuf,
    quarantine_dir: PathBuf,
    mut db: MailDb,
    replicator: Option<Arc<dyn Replicate>>,
    rx: mpsc::Receiver<(Batch, Reply)>,
) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(item) => group.push(item),
                Err(_) => break,
            }
        }
        // Every file a batch names must be durable, name included, before its row exists.
        let spool = group.iter().any(|(b, _)| b.adds_spool_files());
        let quarantine = group.iter().any(|(b, _)| !b.quarantined.is_empty());
        let synced = [(spool, &spool_dir), (quarantine, &quarantine_dir)]
            .into_iter()
            .filter(|(needed, _)| *needed)
            .try_for_each(|(_, dir)| crate::fsync_dir(dir));
        if let Err(e) = synced {
            let msg = e.to_string();
            for (_, reply) in group {
                let _ = reply.send(Err(match &e {
                    SpoolError::Io { path, source } => SpoolError::Io {
                        path: path.clone(),
                        source: std::io::Error::new(source.kind(), msg.clone()),
                    },
                    _ => SpoolError::Stopped,
                }));
            }
            continue;
        }
        let batches: Vec<&Batch> = group.iter().map(|(b, _)| b).collect();
        match db.apply_all(&batches) {
            Ok(()) => {
                // The pair's promise: the peer has the group too before anyone hears 250.
                if let Some(r) = &replicator {
                    r.replicate(&batches);
                }
                for (_, reply) in group {
                    let _ = reply.send(Ok(()));
                }
            }
            // One bad batch must not fail its neighbours: retry each on its own.
            Err(_) => {
                for (b, reply) in group {
                    let res = db.apply(&b).map_err(SpoolError::from);
                    if let (Ok(()), Some(r)) = (&res, &replicator) {
                        r.replicate(&[&b]);
                    }
                    let _ = reply.send(res);
                }
            }
        }
    }
}
