//! Recovery at start: reconcile content files with queue rows.
//!
//! - file without row: the message was never acknowledged (crash during DATA or before the
//!   commit), so nobody was promised anything: the file is removed;
//! - row whose file is missing or has the wrong size: the content is damaged; it is moved
//!   to `spool-corrupt/` (if present), the row is removed with a `corrupt` tracking event, and
//!   the report says so loudly. It is never delivered and never makes the engine crash-loop.
//!
//! The content hash is checked before every delivery (see `Spool::verify`), not here: reading
//! every queued byte at start would make a restart with a large queue slow.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use palisade_store::mail::{Batch, Event, MailDb};

use crate::{SpoolError, io_err};

#[derive(Debug, Default, Clone)]
pub struct RecoveryReport {
    /// Messages still queued, to be delivered.
    pub queued: usize,
    /// Partial files of unacknowledged messages that were removed.
    pub removed_partial: Vec<String>,
    /// Queue entries whose content was missing or damaged, with the reason.
    pub corrupt: Vec<(String, String)>,
}

pub(crate) fn set_aside(spool: &Path, corrupt: &Path, id: &str) -> PathBuf {
    let from = spool.join(id);
    let to = corrupt.join(id);
    if let Err(e) = std::fs::rename(&from, &to)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::error!(event = "spool.set_aside_failed", queue_id = id, error = %e);
    }
    to
}

fn is_queue_id(name: &str) -> bool {
    name.len() == 20 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

pub(crate) fn recover(
    spool: &Path,
    corrupt: &Path,
    db: &mut MailDb,
) -> Result<RecoveryReport, SpoolError> {
    let mut report = RecoveryReport::default();
    let rows: HashMap<String, u64> = db
        .queue_ids()?
        .into_iter()
        .map(|(id, size, _)| (id, size))
        .collect();

    let mut files = HashMap::new();
    for entry in std::fs::read_dir(spool).map_err(io_err(spool))? {
        let entry = entry.map_err(io_err(spool))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if !is_queue_id(&name) {
            tracing::warn!(event = "spool.stray_file", path = %path.display());
            continue;
        }
        if rows.contains_key(&name) {
            let len = entry.metadata().map_err(io_err(&path))?.len();
            files.insert(name, len);
        } else {
            std::fs::remove_file(&path).map_err(io_err(&path))?;
            report.removed_partial.push(name);
        }
    }

    let mut batch = Batch::default();
    for (id, size) in &rows {
        let reason = match files.get(id) {
            None => Some("content file is missing".to_string()),
            Some(len) if len != size => Some(format!(
                "content file has {len} bytes, {size} were accepted"
            )),
            Some(_) => None,
        };
        match reason {
            None => report.queued += 1,
            Some(reason) => {
                set_aside(spool, corrupt, id);
                batch.events.push(Event {
                    queue_id: id.clone(),
                    event: "corrupt".into(),
                    rcpt: None,
                    detail: reason.clone(),
                    status: Some("corrupt".into()),
                });
                batch.remove.push(id.clone());
                report.corrupt.push((id.clone(), reason));
            }
        }
    }
    if !batch.is_empty() {
        db.apply(&batch)?;
    }
    // The removals above must be durable before new files with new names appear.
    std::fs::File::open(spool)
        .and_then(|d| d.sync_all())
        .map_err(io_err(spool))?;
    Ok(report)
}
