//! What the quarantine digest records in `mail.db`: which held entries each recipient was told
//! about (`digest_sent`, so a restart or a second run does not list them again), the days the
//! scheduled digest ran (`digest_run`), and every release made from a digest link
//! (`digest_release`, keyed by the token's hash: a second use of the same link fails the
//! release's own transaction).

use rusqlite::{OptionalExtension, Transaction, params};

use super::{HeldRecipient, MailDb};
use crate::{Result, SqlContext, StoreError};

/// One entry listed in a digest to one recipient.
#[derive(Debug, Clone)]
pub struct DigestSent {
    pub quarantine_id: String,
    pub recipient: String,
    /// The queue id of the digest message that listed it.
    pub digest_id: String,
}

/// A release made from a digest link.
#[derive(Debug, Clone)]
pub struct DigestRelease {
    /// [`crate::digest::token_id`] of the link's token.
    pub token_id: String,
    pub quarantine_id: String,
    pub recipient: String,
    /// The queue id the released copy was enqueued as.
    pub queue_id: String,
    pub source: String,
}

/// A held entry that stays held for fewer recipients (one of them had it released).
#[derive(Debug, Clone)]
pub struct QuarantineNarrow {
    pub id: String,
    /// The recipients it stays held for (not empty).
    pub recipients: Vec<HeldRecipient>,
}

pub(super) const MIGRATION: &str = "
    CREATE TABLE digest_sent (
        quarantine_id TEXT NOT NULL,
        recipient TEXT NOT NULL COLLATE NOCASE,
        sent_at INTEGER NOT NULL,
        digest_id TEXT NOT NULL,
        PRIMARY KEY (quarantine_id, recipient)
    );
    CREATE TABLE digest_run (
        day TEXT PRIMARY KEY,
        ran_at INTEGER NOT NULL
    );
    CREATE TABLE digest_release (
        token TEXT PRIMARY KEY,
        quarantine_id TEXT NOT NULL,
        recipient TEXT NOT NULL,
        used_at INTEGER NOT NULL,
        queue_id TEXT NOT NULL,
        source TEXT NOT NULL
    );
";

pub(super) fn sent(tx: &Transaction<'_>, s: &DigestSent, now: i64) -> Result<()> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO digest_sent (quarantine_id, recipient, sent_at, digest_id)
         VALUES (?1, ?2, ?3, ?4)",
    )
    .at(tx)?
    .execute(params![s.quarantine_id, s.recipient, now, s.digest_id])
    .at(tx)?;
    Ok(())
}

pub(super) fn released(tx: &Transaction<'_>, r: &DigestRelease, now: i64) -> Result<()> {
    let n = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO digest_release (token, quarantine_id, recipient, used_at,
             queue_id, source) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .at(tx)?
        .execute(params![
            r.token_id,
            r.quarantine_id,
            r.recipient,
            now,
            r.queue_id,
            r.source
        ])
        .at(tx)?;
    if n == 0 {
        return Err(StoreError::Inconsistent(
            "this release link was already used".into(),
        ));
    }
    Ok(())
}

pub(super) fn narrow(tx: &Transaction<'_>, n: &QuarantineNarrow, now: i64) -> Result<()> {
    if n.recipients.is_empty() {
        return Err(StoreError::Inconsistent(format!(
            "quarantine entry {}: no recipient left to hold it for",
            n.id
        )));
    }
    let recipients = serde_json::to_string(&n.recipients).expect("recipients serialize");
    let changed = tx
        .execute(
            "UPDATE quarantine SET recipients = ?2, updated_at = ?3
             WHERE id = ?1 AND state = 'held'",
            params![n.id, recipients, now],
        )
        .at(tx)?;
    if changed == 0 {
        return Err(StoreError::Inconsistent(format!(
            "quarantine entry {} is not held",
            n.id
        )));
    }
    Ok(())
}

impl MailDb {
    /// Every (held entry, recipient) already listed in a digest, recipients lowercased.
    pub fn digest_listed(&self) -> Result<std::collections::HashSet<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT d.quarantine_id, lower(d.recipient) FROM digest_sent d
                 JOIN quarantine q ON q.id = d.quarantine_id WHERE q.state = 'held'",
            )
            .at(&self.conn)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .at(&self.conn)?;
        rows.collect::<rusqlite::Result<_>>().at(&self.conn)
    }

    /// Whether the scheduled digest already ran on `day` (a local date, `2026-12-02`).
    pub fn digest_ran_on(&self, day: &str) -> Result<bool> {
        Ok(self
            .conn
            .query_row("SELECT 1 FROM digest_run WHERE day = ?1", [day], |_| Ok(()))
            .optional()
            .at(&self.conn)?
            .is_some())
    }

    /// Records that the scheduled digest ran on `day`.
    pub fn digest_mark_run(&self, day: &str, now: i64) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO digest_run (day, ran_at) VALUES (?1, ?2)",
                params![day, now],
            )
            .at(&self.conn)?;
        Ok(())
    }

    /// The release made with the token named `token_id`, if one was: `(queue id, used at)`.
    pub fn digest_release_of(&self, token_id: &str) -> Result<Option<(String, i64)>> {
        self.conn
            .query_row(
                "SELECT queue_id, used_at FROM digest_release WHERE token = ?1",
                [token_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .at(&self.conn)
    }
}
