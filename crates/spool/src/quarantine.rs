//! Quarantine administration: the one library call per operator action on a held message,
//! like [`admin`](crate::admin) for the queue. Each makes its change in `mail.db` and the
//! files, then writes the action's audit entry (`quarantine.release`, `quarantine.delete`),
//! so no caller can forget the entry or write it twice.
//!
//! The running engine calls these from its control socket (and hands a released message to
//! its queue runner); when the engine is not running, the CLI calls them directly and the
//! engine delivers the released message when it starts.
//!
//! Release keeps the promise of acceptance: the held bytes are copied, byte-identical and
//! checked against the size and SHA-256 recorded when they were held, into a new spool file
//! (fsync'd, directory fsync'd) before one transaction records the new queue entry, the
//! entry's new state and the tracking events; the held file is removed only after that.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use palisade_store::mail::{
    Batch, DigestRelease, Event, HeldRecipient, MailDb, MessageKind, NewMessage, NewRecipient,
    Origin, QuarantineChange, QuarantineEntry, QuarantineNarrow, QuarantineState,
};
use palisade_store::{ConfigStore, DataDir, StoreError};
use ring::digest;
use serde_json::json;

use crate::admin::{Requester, audit};
use crate::{Spool, SpoolError, io_err};

/// A release that was committed.
#[derive(Debug, Clone)]
pub struct Released {
    /// The queue id the message was enqueued as.
    pub queue_id: String,
    pub recipients: Vec<NewRecipient>,
}

/// Quarantine entries, newest first; `state` `None` lists every state.
pub fn list(
    data: &DataDir,
    state: Option<QuarantineState>,
    search: Option<&str>,
    limit: u32,
) -> Result<Vec<QuarantineEntry>, SpoolError> {
    Ok(MailDb::open(&data.mail_db())?.quarantine_list(state, search, limit)?)
}

pub fn get(data: &DataDir, id: &str) -> Result<Option<QuarantineEntry>, SpoolError> {
    Ok(MailDb::open(&data.mail_db())?.quarantine_get(id)?)
}

/// The entry `id`, which must be held.
fn held(db: &MailDb, id: &str) -> Result<QuarantineEntry, SpoolError> {
    let entry = db
        .quarantine_get(id)?
        .ok_or_else(|| SpoolError::NotQuarantined(id.to_string()))?;
    if entry.state != QuarantineState::Held {
        return Err(SpoolError::NotHeld {
            id: id.to_string(),
            state: entry.state,
        });
    }
    Ok(entry)
}

/// How long a released message may stay queued: the configured message lifetime.
fn lifetime(data: &DataDir) -> Result<i64, SpoolError> {
    let secs = ConfigStore::open(&data.config_db())?
        .current()?
        .map(|r| r.config.delivery.max_lifetime_secs)
        .unwrap_or_else(|| palisade_store::Config::default().delivery.max_lifetime_secs);
    Ok(secs as i64)
}

/// Copies `from` to a new file `to` (0640), checking size and SHA-256 on the way, and fsyncs
/// it. On any failure `to` is removed.
fn copy_checked(from: &Path, to: &Path, size: u64, sha256: &[u8]) -> Result<(), SpoolError> {
    let result = (|| {
        let mut src = File::open(from).map_err(io_err(from))?;
        let mut dst = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(to)
            .map_err(io_err(to))?;
        let mut ctx = digest::Context::new(&digest::SHA256);
        let mut buf = vec![0u8; 64 * 1024];
        let mut len = 0u64;
        loop {
            let n = src.read(&mut buf).map_err(io_err(from))?;
            if n == 0 {
                break;
            }
            ctx.update(&buf[..n]);
            dst.write_all(&buf[..n]).map_err(io_err(to))?;
            len += n as u64;
        }
        let damaged = |reason: String| SpoolError::Damaged {
            path: from.display().to_string(),
            reason,
        };
        if len != size {
            return Err(damaged(format!("{len} bytes, {size} were quarantined")));
        }
        if ctx.finish().as_ref() != sha256 {
            return Err(damaged(
                "does not match the checksum taken when it was held".into(),
            ));
        }
        dst.sync_all().map_err(io_err(to))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(to);
    }
    result
}

/// The tracking status an entry's original message gets when the entry leaves `held`: only
/// a message that was wholly quarantined changes (one with delivered recipients keeps its own).
fn status_after(db: &MailDb, queue_id: &str, status: &str) -> Result<Option<String>, SpoolError> {
    Ok(db
        .track_status(queue_id)?
        .filter(|s| s == "quarantined")
        .map(|_| status.to_string()))
}

/// Enqueues held message `id` again, byte-identical, to `recipients` (`None`: the ones it was
/// held for), as a new queue id with the original's sender and DSN parameters. Refused when
/// `id` is not held or its file does not match what was held. Audited as
/// `quarantine.release`.
pub fn release(
    data: &DataDir,
    id: &str,
    recipients: Option<Vec<NewRecipient>>,
    by: Requester<'_>,
) -> Result<Released, SpoolError> {
    let mut db = MailDb::open(&data.mail_db())?;
    let entry = held(&db, id)?;
    let recipients = match recipients {
        Some(r) => r,
        None => entry.recipients.iter().map(queued_again).collect(),
    };
    enqueue_held(data, &mut db, &entry, recipients, Vec::new(), None, by)
}

/// A release asked for from a digest link: the one recipient the link names.
#[derive(Debug, Clone, Copy)]
pub struct DigestLink<'a> {
    /// The recipient the entry was held for and the link was made for.
    pub recipient: &'a str,
    /// The link's token (already verified): its hash is recorded in the release's
    /// transaction, so a link releases at most once.
    pub token: &'a str,
}

/// The prefix of the reason of a message held for its sender's confirmation (a `confirm`
/// rule).
pub const CONFIRMATION: &str = "confirmation:";

/// What the sender of a message held for confirmation decided with the link of its notice.
/// `send`: released to every recipient it is held for (and their domains are no longer new);
/// otherwise deleted. Refused when the entry is not held, not held for confirmation, not the
/// link's sender's, or the link was already used. Audited `quarantine.release` /
/// `quarantine.delete` with `"via": "confirmation"`.
pub fn confirm_from_link(
    data: &DataDir,
    id: &str,
    link: DigestLink<'_>,
    send: bool,
    by: Requester<'_>,
) -> Result<Option<Released>, SpoolError> {
    let mut db = MailDb::open(&data.mail_db())?;
    if db
        .digest_release_of(&palisade_store::digest::token_id(link.token))?
        .is_some()
    {
        return Err(SpoolError::LinkUsed);
    }
    let entry = held(&db, id)?;
    if !entry.reason.starts_with(CONFIRMATION) || !entry.sender.eq_ignore_ascii_case(link.recipient)
    {
        return Err(SpoolError::NotHeldFor {
            id: id.to_string(),
            recipient: link.recipient.to_string(),
        });
    }
    if send {
        let recipients = entry.recipients.iter().map(queued_again).collect();
        return enqueue_held(
            data,
            &mut db,
            &entry,
            recipients,
            Vec::new(),
            Some(link),
            by,
        )
        .map(Some);
    }
    delete_held(
        data,
        &mut db,
        &entry,
        format!("quarantined copy {id} cancelled by its sender"),
        Some("confirmation"),
        by,
    )?;
    Ok(None)
}

/// Releases held message `id` to one of the recipients it was held for (as its digest link
/// asked), to that recipient only: the entry stays held for the others, and leaves the
/// `held` state when none is left. Refused when the entry is not held for that recipient or
/// the link was already used. Audited as `quarantine.release` (with `"via": "digest"`).
pub fn release_from_digest(
    data: &DataDir,
    id: &str,
    link: DigestLink<'_>,
    by: Requester<'_>,
) -> Result<Released, SpoolError> {
    let mut db = MailDb::open(&data.mail_db())?;
    if db
        .digest_release_of(&palisade_store::digest::token_id(link.token))?
        .is_some()
    {
        return Err(SpoolError::LinkUsed);
    }
    let entry = held(&db, id)?;
    let (mine, others): (Vec<&HeldRecipient>, Vec<&HeldRecipient>) = entry
        .recipients
        .iter()
        .partition(|r| r.address.eq_ignore_ascii_case(link.recipient));
    let Some(mine) = mine.first() else {
        return Err(SpoolError::NotHeldFor {
            id: id.to_string(),
            recipient: link.recipient.to_string(),
        });
    };
    let recipients = vec![queued_again(mine)];
    let remaining = others.into_iter().cloned().collect();
    enqueue_held(data, &mut db, &entry, recipients, remaining, Some(link), by)
}

fn queued_again(r: &HeldRecipient) -> NewRecipient {
    NewRecipient {
        address: r.address.clone(),
        route: r.route.clone(),
        notify: r.notify,
        orcpt: r.orcpt.clone(),
        artifact: 0,
    }
}

/// Copies the held file of `entry` into the spool for `recipients` and commits the new queue
/// entry with the entry's new state: released, or (with `remaining` recipients) still held
/// for them.
fn enqueue_held(
    data: &DataDir,
    db: &mut MailDb,
    entry: &QuarantineEntry,
    recipients: Vec<NewRecipient>,
    remaining: Vec<HeldRecipient>,
    link: Option<DigestLink<'_>>,
    by: Requester<'_>,
) -> Result<Released, SpoolError> {
    let id = entry.id.as_str();
    if recipients.is_empty() {
        return Err(StoreError::Inconsistent(format!("{id}: no recipient to release to")).into());
    }
    let lifetime = lifetime(data)?;

    let queue_id = Spool::new_id();
    let spool_dir = data.spool();
    let held_path = data.quarantine().join(id);
    let spooled = spool_dir.join(&queue_id);
    copy_checked(&held_path, &spooled, entry.size, &entry.sha256)?;
    if let Err(e) = crate::fsync_dir(&spool_dir) {
        let _ = std::fs::remove_file(&spooled);
        return Err(e);
    }

    let now = crate::now();
    let addresses: Vec<&str> = recipients.iter().map(|r| r.address.as_str()).collect();
    let still_held = !remaining.is_empty();
    let mut batch = Batch {
        accepted: vec![NewMessage {
            id: queue_id.clone(),
            received_at: now,
            expires_at: now + lifetime,
            sender: entry.sender.clone(),
            size: entry.size,
            sha256: entry.sha256.clone(),
            kind: MessageKind::Mail,
            smtputf8: entry.smtputf8,
            body: entry.body,
            envid: entry.envid.clone(),
            ret: entry.ret,
            recipients: recipients.clone(),
            artifacts: vec![],
            origin: Origin {
                listener: entry.listener.clone(),
                client_ip: entry.client_ip.clone(),
                client_helo: format!("released from quarantine {id}"),
                tls: None,
                auth_user: None,
            },
            message_id: entry.message_id.clone(),
            subject: entry.subject.clone(),
            from_header: entry.from_header.clone(),
            verdict: None,
            status: None,
        }],
        events: vec![
            Event {
                queue_id: entry.queue_id.clone(),
                event: "released".into(),
                rcpt: None,
                detail: format!(
                    "quarantined copy {id} released as {queue_id} to {} by {}",
                    addresses.join(", "),
                    by.actor
                ),
                status: if still_held {
                    None
                } else {
                    status_after(db, &entry.queue_id, "released")?
                },
            },
            Event {
                queue_id: queue_id.clone(),
                event: "released".into(),
                rcpt: None,
                detail: format!("from quarantine {id} (received as {})", entry.queue_id),
                status: None,
            },
        ],
        ..Default::default()
    };
    if still_held {
        batch.quarantine_narrowed.push(QuarantineNarrow {
            id: id.to_string(),
            recipients: remaining.clone(),
        });
    } else {
        batch.quarantine_changes.push(QuarantineChange {
            id: id.to_string(),
            state: QuarantineState::Released,
            released_as: Some(queue_id.clone()),
        });
    }
    let confirmed = entry.reason.starts_with(CONFIRMATION);
    if confirmed {
        // The sender confirmed these recipients: their domains are known from now on.
        let domains: std::collections::BTreeSet<String> = recipients
            .iter()
            .filter_map(|r| palisade_store::mail::domain_of(&r.address))
            .collect();
        batch.recipient_domains = domains.into_iter().collect();
    }
    if let Some(link) = link {
        batch.digest_releases.push(DigestRelease {
            token_id: palisade_store::digest::token_id(link.token),
            quarantine_id: id.to_string(),
            recipient: link.recipient.to_string(),
            queue_id: queue_id.clone(),
            source: by.source.to_string(),
        });
    }
    if let Err(e) = db.apply(&batch) {
        let _ = std::fs::remove_file(&spooled);
        return Err(e.into());
    }
    // After the commit: a crash before this leaves a file without a held row, which recovery
    // removes. A copy still held for other recipients stays.
    if !still_held && let Err(e) = std::fs::remove_file(&held_path) {
        tracing::warn!(event = "quarantine.remove_failed", quarantine_id = id, error = %e);
    }
    tracing::info!(event = "quarantine.released", quarantine_id = id, queue_id = %queue_id,
        actor = by.actor, still_held = remaining.len());
    let mut detail = json!({
        "queue_id": queue_id,
        "original_queue_id": entry.queue_id,
        "recipients": addresses,
    });
    if link.is_some() {
        detail["via"] = json!(if confirmed { "confirmation" } else { "digest" });
        detail["still_held_for"] = json!(
            remaining
                .iter()
                .map(|r| r.address.as_str())
                .collect::<Vec<_>>()
        );
    }
    audit(data, by, "quarantine.release", id, detail)?;
    Ok(Released {
        queue_id,
        recipients,
    })
}

/// Deletes held message `id`: its state becomes `deleted`, its file goes. Refused when `id`
/// is not held. Audited as `quarantine.delete`.
pub fn delete(data: &DataDir, id: &str, by: Requester<'_>) -> Result<(), SpoolError> {
    let mut db = MailDb::open(&data.mail_db())?;
    let entry = held(&db, id)?;
    delete_held(
        data,
        &mut db,
        &entry,
        format!("quarantined copy {id} deleted by {}", by.actor),
        None,
        by,
    )
}

/// Deletes a held entry (tracking event `detail`), logs and audits it (`quarantine.delete`,
/// with `"via"` when a link asked for it).
fn delete_held(
    data: &DataDir,
    db: &mut MailDb,
    entry: &QuarantineEntry,
    detail: String,
    via: Option<&str>,
    by: Requester<'_>,
) -> Result<(), SpoolError> {
    let id = entry.id.as_str();
    remove_held(data, db, entry, "deleted", detail)?;
    tracing::info!(
        event = "quarantine.deleted",
        quarantine_id = id,
        actor = by.actor
    );
    let recipients: Vec<&str> = entry
        .recipients
        .iter()
        .map(|r| r.address.as_str())
        .collect();
    let mut detail = json!({ "queue_id": entry.queue_id, "sender": entry.sender,
        "recipients": recipients, "reason": entry.reason });
    if let Some(via) = via {
        detail["via"] = json!(via);
    }
    audit(data, by, "quarantine.delete", id, detail)
}

/// Deletes every held entry whose `expires_at` is before `now` (retention), tracked as
/// `expired`. Returns their ids. Not audited: nobody asked, the configured retention did.
pub fn purge(data: &DataDir, now: i64) -> Result<Vec<QuarantineEntry>, SpoolError> {
    let mut db = MailDb::open(&data.mail_db())?;
    let mut purged = Vec::new();
    for id in db.quarantine_expired(now)? {
        let Some(entry) = db.quarantine_get(&id)? else {
            continue;
        };
        match remove_held(
            data,
            &mut db,
            &entry,
            "expired",
            format!("quarantined copy {id} expired"),
        ) {
            Ok(()) => purged.push(entry),
            // Released or deleted meanwhile.
            Err(SpoolError::Store(StoreError::Inconsistent(_))) => {}
            Err(e) => return Err(e),
        }
    }
    if !purged.is_empty() {
        tracing::info!(event = "quarantine.purged", count = purged.len());
    }
    Ok(purged)
}

fn remove_held(
    data: &DataDir,
    db: &mut MailDb,
    entry: &QuarantineEntry,
    event: &str,
    detail: String,
) -> Result<(), SpoolError> {
    db.apply(&Batch {
        events: vec![Event {
            queue_id: entry.queue_id.clone(),
            event: event.into(),
            rcpt: None,
            detail,
            status: status_after(db, &entry.queue_id, event)?,
        }],
        quarantine_changes: vec![QuarantineChange {
            id: entry.id.clone(),
            state: QuarantineState::Deleted,
            released_as: None,
        }],
        ..Default::default()
    })?;
    let path = data.quarantine().join(&entry.id);
    if let Err(e) = std::fs::remove_file(&path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(event = "quarantine.remove_failed", quarantine_id = %entry.id, error = %e);
    }
    Ok(())
}
