//! Recovery at start: reconcile content files with queue rows.
//!
//! - file (`<id>` or `<id>.<n>`) without its `queue_artifact` row: the message was never
//!   acknowledged (crash during DATA or before the commit), or the file is an artifact no
//!   recipient was given; nobody was promised anything: the file is removed;
//! - artifact row whose file is missing or has the wrong size: the content is damaged; the
//!   message's files are moved to `spool-corrupt/` (those present), its rows are removed with a
//!   `corrupt` tracking event, and the report says so loudly. It is never delivered and never
//!   makes the engine crash-loop;
//! - quarantine: a held file without a `held` row was never acknowledged (or was released or
//!   deleted just before a crash) and is removed; a held row whose file is missing or has the
//!   wrong size is reported (release refuses it; delete or expiry clears it).
//!
//! The content hash is checked before every delivery (see `Spool::verify`), not here: reading
//! every queued byte at start would make a restart with a large queue slow.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use palisade_store::mail::{Batch, Event, MailDb};

use crate::{SpoolError, artifact_path, io_err};

#[derive(Debug, Default, Clone)]
pub struct RecoveryReport {
    /// Messages still queued, to be delivered.
    pub queued: usize,
    /// Files of unacknowledged messages (or unused artifacts) that were removed, by name.
    pub removed_partial: Vec<String>,
    /// Queue entries whose content was missing or damaged, with the reason.
    pub corrupt: Vec<(String, String)>,
    /// Held quarantine entries whose file is missing or damaged, with the reason.
    pub quarantine_damaged: Vec<(String, String)>,
}

/// Moves message `id`'s files (artifact 0 and `artifacts`) to `corrupt`. Returns where
/// artifact 0 went.
pub(crate) fn set_aside(spool: &Path, corrupt: &Path, id: &str, artifacts: &[u32]) -> PathBuf {
    let mut numbers = vec![0];
    numbers.extend(artifacts.iter().copied().filter(|&n| n != 0));
    for n in numbers {
        let from = artifact_path(spool, id, n);
        let to = artifact_path(corrupt, id, n);
        if let Err(e) = std::fs::rename(&from, &to)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::error!(event = "spool.set_aside_failed", queue_id = id, path = %from.display(), error = %e);
        }
    }
    corrupt.join(id)
}

pub(crate) fn is_queue_id(name: &str) -> bool {
    name.len() == 20 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `<id>` → (id, 0), `<id>.<n>` → (id, n) for n ≥ 1; anything else is not a spool file.
fn parse_name(name: &str) -> Option<(&str, u32)> {
    match name.split_once('.') {
        None => is_queue_id(name).then_some((name, 0)),
        Some((id, n)) => {
            let n: u32 = n.parse().ok().filter(|&n| n >= 1)?;
            // One spelling per number: `<id>.01` is not artifact 1.
            (is_queue_id(id) && n.to_string().len() == name.len() - id.len() - 1).then_some((id, n))
        }
    }
}

pub(crate) fn recover(
    spool: &Path,
    corrupt: &Path,
    db: &mut MailDb,
) -> Result<RecoveryReport, SpoolError> {
    let mut report = RecoveryReport::default();
    // message id → artifact number → recorded size
    let mut rows: BTreeMap<String, BTreeMap<u32, u64>> = BTreeMap::new();
    for (id, n, size) in db.queue_artifacts()? {
        rows.entry(id).or_default().insert(n, size);
    }

    let mut files: HashMap<(String, u32), u64> = HashMap::new();
    for entry in std::fs::read_dir(spool).map_err(io_err(spool))? {
        let entry = entry.map_err(io_err(spool))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let Some((id, n)) = parse_name(&name) else {
            tracing::warn!(event = "spool.stray_file", path = %path.display());
            continue;
        };
        if rows.get(id).is_some_and(|a| a.contains_key(&n)) {
            let len = entry.metadata().map_err(io_err(&path))?.len();
            files.insert((id.to_string(), n), len);
        } else {
            std::fs::remove_file(&path).map_err(io_err(&path))?;
            report.removed_partial.push(name);
        }
    }

    let mut batch = Batch::default();
    for (id, artifacts) in &rows {
        let reason = artifacts.iter().find_map(|(&n, size)| {
            let which = if n == 0 {
                "content file".to_string()
            } else {
                format!("content file {n}")
            };
            match files.get(&(id.clone(), n)) {
                None => Some(format!("{which} is missing")),
                Some(len) if len != size => {
                    Some(format!("{which} has {len} bytes, {size} were accepted"))
                }
                Some(_) => None,
            }
        });
        match reason {
            None => report.queued += 1,
            Some(reason) => {
                let numbers: Vec<u32> = artifacts.keys().copied().collect();
                set_aside(spool, corrupt, id, &numbers);
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
    crate::fsync_dir(spool)?;
    Ok(report)
}

/// Reconciles `DIR/quarantine/` with the held rows (see the module comment).
pub(crate) fn recover_quarantine(
    dir: &Path,
    db: &MailDb,
) -> Result<Vec<(String, String)>, SpoolError> {
    let held: HashMap<String, u64> = db.quarantine_held()?.into_iter().collect();
    let mut seen = HashMap::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if held.contains_key(&name) {
            let len = entry.metadata().map_err(io_err(&path))?.len();
            seen.insert(name, len);
        } else if is_queue_id(&name) {
            tracing::info!(event = "quarantine.removed_unheld", path = %path.display());
            std::fs::remove_file(&path).map_err(io_err(&path))?;
        } else {
            tracing::warn!(event = "quarantine.stray_file", path = %path.display());
        }
    }
    let mut damaged = Vec::new();
    for (id, size) in &held {
        let reason = match seen.get(id) {
            None => format!("held file {} is missing", dir.join(id).display()),
            Some(len) if len != size => {
                format!("held file has {len} bytes, {size} were quarantined")
            }
            Some(_) => continue,
        };
        tracing::error!(event = "quarantine.damaged", quarantine_id = %id, reason = %reason,
            "a held message's file is damaged; it cannot be released");
        damaged.push((id.clone(), reason));
    }
    crate::fsync_dir(dir)?;
    Ok(damaged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spool_file_names() {
        let id = "0123456789ABCDEF0123";
        assert_eq!(parse_name(id), Some((id, 0)));
        assert_eq!(parse_name(&format!("{id}.1")), Some((id, 1)));
        assert_eq!(parse_name(&format!("{id}.12")), Some((id, 12)));
        for bad in ["x", "0123456789ABCDEF0123.0", "0123456789ABCDEF0123.01"] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
        assert_eq!(parse_name(&format!("{id}.a")), None);
        assert_eq!(parse_name(&format!("{id}.")), None);
        assert_eq!(parse_name("0123456789ABCDEF012.1"), None);
    }
}
