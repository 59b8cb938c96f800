//! Queue administration from outside the engine (the CLI, the console): every change is made
//! in `mail.db` and recorded in the audit log; the engine only needs a nudge to rescan.

use palisade_store::mail::{Batch, Event, MailDb};
use palisade_store::{AuditLog, DataDir};
use serde_json::json;

use crate::SpoolError;

/// Deletes queued messages (content included). Returns the ids that existed.
pub fn delete(
    data: &DataDir,
    ids: &[String],
    actor: &str,
    source: &str,
) -> Result<Vec<String>, SpoolError> {
    let mut db = MailDb::open(&data.mail_db())?;
    let mut audit = AuditLog::open(&data.audit_db())?;
    let mut deleted = Vec::new();
    for id in ids {
        let Some(msg) = db.message(id)? else { continue };
        db.apply(&Batch {
            events: vec![Event {
                queue_id: id.clone(),
                event: "deleted".into(),
                rcpt: None,
                detail: format!("deleted by {actor}"),
                status: Some("deleted".into()),
            }],
            remove: vec![id.clone()],
            ..Default::default()
        })?;
        let _ = std::fs::remove_file(data.spool().join(id));
        audit.append(
            actor,
            source,
            "queue.delete",
            id,
            &json!({ "sender": msg.sender, "recipients": msg.recipients.iter().map(|r| &r.address).collect::<Vec<_>>(), "size": msg.size }),
        )?;
        deleted.push(id.clone());
    }
    Ok(deleted)
}

/// Makes queued recipients due now: of one message, or all. Returns how many.
pub fn retry(
    data: &DataDir,
    id: Option<&str>,
    actor: &str,
    source: &str,
) -> Result<usize, SpoolError> {
    let mut db = MailDb::open(&data.mail_db())?;
    let n = db.retry_now(id)?;
    let mut audit = AuditLog::open(&data.audit_db())?;
    audit.append(
        actor,
        source,
        "queue.retry",
        id.unwrap_or("*"),
        &json!({ "recipients": n }),
    )?;
    Ok(n)
}
