//! Queue administration: the one library call per operator action on the queue. Each makes
//! its change in `mail.db` and then writes the action's audit entry (`queue.retry`,
//! `queue.flush`, `queue.delete`, `queue.bounce`), so no caller can forget the entry or write
//! it twice.
//!
//! The running engine calls these from its control socket (for the console and the CLI) and
//! then acts on what it holds in memory (it wakes the queue runner, finalizes a bounced
//! message); when the engine is not running, the CLI calls them directly and the engine picks
//! the change up when it starts.

use palisade_store::mail::{Batch, Event, MailDb, Outcome, OutcomeKind, RcptState};
use palisade_store::{AuditLog, DataDir};
use serde_json::json;

use crate::SpoolError;

/// Who asked, for the audit log: `actor` (a console user, `cli:root`) and `source` (their
/// address, or `local`).
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    pub actor: &'a str,
    pub source: &'a str,
}

pub(crate) fn audit(
    data: &DataDir,
    by: Requester<'_>,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> Result<(), SpoolError> {
    AuditLog::open(&data.audit_db())?.append(by.actor, by.source, action, target, &detail)?;
    Ok(())
}

/// Makes the queued recipients of message `id` due now. Returns how many there were.
/// Audited as `queue.retry` (target: the id).
pub fn retry(data: &DataDir, id: &str, by: Requester<'_>) -> Result<usize, SpoolError> {
    let n = MailDb::open(&data.mail_db())?.retry_now(Some(id))?;
    audit(data, by, "queue.retry", id, json!({ "recipients": n }))?;
    Ok(n)
}

/// Makes every queued recipient of every message due now. Returns how many there were.
/// Audited as `queue.flush` (target `*`).
pub fn flush(data: &DataDir, by: Requester<'_>) -> Result<usize, SpoolError> {
    let n = MailDb::open(&data.mail_db())?.retry_now(None)?;
    audit(data, by, "queue.flush", "*", json!({ "recipients": n }))?;
    Ok(n)
}

/// Deletes a queued message: its rows (tracked as `deleted`) and its content files. `false`
/// when it was not queued (nothing is audited then). Audited as `queue.delete`.
///
/// The content file belongs to the engine's user: called by anyone else (the CLI as root is
/// fine) the file may stay, and the engine removes it at its next start (a file without a row).
pub fn delete(data: &DataDir, id: &str, by: Requester<'_>) -> Result<bool, SpoolError> {
    let mut db = MailDb::open(&data.mail_db())?;
    let Some(msg) = db.message(id)? else {
        return Ok(false);
    };
    db.apply(&Batch {
        events: vec![Event {
            queue_id: id.to_string(),
            event: "deleted".into(),
            rcpt: None,
            detail: format!("deleted by {}", by.actor),
            status: Some("deleted".into()),
        }],
        remove: vec![id.to_string()],
        ..Default::default()
    })?;
    for a in &msg.artifacts {
        let _ = std::fs::remove_file(crate::artifact_path(&data.spool(), id, a.n));
    }
    let recipients: Vec<&str> = msg.recipients.iter().map(|r| r.address.as_str()).collect();
    audit(
        data,
        by,
        "queue.delete",
        id,
        json!({ "sender": msg.sender, "recipients": recipients, "size": msg.size }),
    )?;
    Ok(true)
}

/// The reason given to the sender when an administrator bounces a message.
pub const BOUNCE_REASON: &str = "returned to the sender by the administrator";

/// Returns a queued message to its sender: every recipient still queued fails with
/// [`BOUNCE_REASON`]. Returns how many recipients that was, `None` when the message is not
/// queued (nothing is audited then). Audited as `queue.bounce`.
///
/// The bounce itself (the DSN) is made when the message is finalized: by the engine right
/// after this call, or, when the engine is not running, by the engine's check for finished
/// messages when it starts.
pub fn bounce(data: &DataDir, id: &str, by: Requester<'_>) -> Result<Option<usize>, SpoolError> {
    let mut db = MailDb::open(&data.mail_db())?;
    let Some(msg) = db.message(id)? else {
        return Ok(None);
    };
    let outcomes: Vec<Outcome> = msg
        .recipients
        .iter()
        .filter(|r| r.state == RcptState::Queued)
        .map(|r| Outcome {
            message_id: msg.id.clone(),
            idx: r.idx,
            rcpt: r.address.clone(),
            kind: OutcomeKind::Failed,
            remote: None,
            tls: None,
            reply: format!("550 5.0.0 {BOUNCE_REASON}"),
        })
        .collect();
    let n = outcomes.len();
    if n > 0 {
        db.apply(&Batch {
            outcomes,
            ..Default::default()
        })?;
    }
    audit(data, by, "queue.bounce", id, json!({ "recipients": n }))?;
    Ok(Some(n))
}
