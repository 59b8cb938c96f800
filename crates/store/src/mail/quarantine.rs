//! Quarantine rows: a message (or some of its recipients) held in `DIR/quarantine/<id>` with
//! the reason and the filter's explanations, until an operator releases or deletes it, or it
//! expires. The rows are written in the same transaction as the rest of the acceptance
//! ([`Batch::quarantined`](super::Batch)); leaving the `held` state is a
//! [`QuarantineChange`] that fails the batch when the entry is no longer held.

use palisade_smtp_proto::{Body, Notify, Ret};
use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use super::model::{QuarantineState, opt_param, parse, parse_opt, stored};
use super::{MailDb, Origin};
use crate::{Result, SqlContext, StoreError};

/// A recipient a quarantined message was held for, with what it needs to be enqueued again.
/// Stored as JSON (`[{address, route, notify, orcpt}]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldRecipient {
    pub address: String,
    pub route: String,
    #[serde(
        default,
        serialize_with = "opt_param::serialize",
        deserialize_with = "opt_param::deserialize"
    )]
    pub notify: Option<Notify>,
    #[serde(default)]
    pub orcpt: Option<String>,
}

/// A message the engine has written to `DIR/quarantine/<id>` (fsync'd) and now records.
#[derive(Debug, Clone, Default)]
pub struct NewQuarantine {
    /// The quarantine id: the file's name in `DIR/quarantine/`.
    pub id: String,
    /// The queue id the message was received as (its tracking row).
    pub queue_id: String,
    pub received_at: i64,
    /// After this, [`MailDb::quarantine_expired`] lists it for purging.
    pub expires_at: i64,
    /// Empty for the null sender.
    pub sender: String,
    pub recipients: Vec<HeldRecipient>,
    /// One line for lists and the tracking event.
    pub reason: String,
    /// The filter's explanations (opaque JSON), shown by `quarantine show`.
    pub explanations: Option<serde_json::Value>,
    pub size: u64,
    pub sha256: Vec<u8>,
    pub smtputf8: bool,
    pub body: Option<Body>,
    pub envid: Option<String>,
    pub ret: Option<Ret>,
    /// Where it came from (listener, client address).
    pub origin: Origin,
    pub subject: Option<String>,
    pub from_header: Option<String>,
    pub message_id: Option<String>,
    /// The spam check's score of the message, when it scored it (whatever held it).
    pub score: Option<f64>,
}

/// A quarantine entry as stored.
#[derive(Debug, Clone, Serialize)]
pub struct QuarantineEntry {
    pub id: String,
    pub queue_id: String,
    pub received_at: i64,
    pub expires_at: i64,
    pub sender: String,
    pub recipients: Vec<HeldRecipient>,
    pub reason: String,
    pub explanations: Option<serde_json::Value>,
    pub size: u64,
    #[serde(skip)]
    pub sha256: Vec<u8>,
    pub smtputf8: bool,
    #[serde(serialize_with = "opt_param::serialize")]
    pub body: Option<Body>,
    pub envid: Option<String>,
    #[serde(serialize_with = "opt_param::serialize")]
    pub ret: Option<Ret>,
    pub listener: String,
    pub client_ip: String,
    pub subject: Option<String>,
    pub from_header: Option<String>,
    pub message_id: Option<String>,
    pub state: QuarantineState,
    pub updated_at: i64,
    /// The queue id it was released as.
    pub released_as: Option<String>,
    /// The spam check's score of the message, when it scored it.
    pub score: Option<f64>,
}

/// What [`MailDb::quarantine_search`] looks for: every given condition must hold. Text
/// conditions are case-insensitive substrings (blank: no condition); `text` matches id,
/// queue id, sender, recipients, subject, From header or reason; `sender` the envelope sender
/// or the From header.
#[derive(Debug, Clone, Default)]
pub struct QuarantineQuery {
    /// `None`: every state.
    pub state: Option<QuarantineState>,
    pub text: Option<String>,
    pub reason: Option<String>,
    pub sender: Option<String>,
    pub recipient: Option<String>,
    /// Received at or after (unix seconds).
    pub since: Option<i64>,
    /// Received before (unix seconds).
    pub until: Option<i64>,
    /// A spam score at least this (entries the spam check did not score never match).
    pub min_score: Option<f64>,
    pub limit: u32,
    pub offset: u32,
}

/// A held entry leaving the `held` state.
#[derive(Debug, Clone)]
pub struct QuarantineChange {
    pub id: String,
    /// `Released` or `Deleted`.
    pub state: QuarantineState,
    pub released_as: Option<String>,
}

const COLUMNS: &str = "id, queue_id, received_at, expires_at, sender, recipients, reason,
    explanations, size, sha256, smtputf8, body, envid, ret, listener, client_ip, subject,
    from_header, message_id, state, updated_at, released_as, score";

pub(super) fn insert(tx: &Transaction<'_>, q: &NewQuarantine, now: i64) -> Result<()> {
    let recipients = serde_json::to_string(&q.recipients).expect("recipients serialize");
    let explanations = q.explanations.as_ref().map(|e| e.to_string());
    tx.prepare_cached(&format!(
        "INSERT INTO quarantine ({COLUMNS})
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,NULL,?22)"
    ))
    .at(tx)?
    .execute(params![
        q.id,
        q.queue_id,
        q.received_at,
        q.expires_at,
        q.sender,
        recipients,
        q.reason,
        explanations,
        q.size as i64,
        q.sha256,
        q.smtputf8,
        stored(&q.body),
        q.envid,
        stored(&q.ret),
        q.origin.listener,
        q.origin.client_ip,
        q.subject,
        q.from_header,
        q.message_id,
        QuarantineState::Held.as_str(),
        now,
        q.score
    ])
    .at(tx)?;
    let mut ev = tx
        .prepare_cached(
            "INSERT INTO track_event (queue_id, ts, event, rcpt, detail)
             VALUES (?1, ?2, 'quarantined', ?3, ?4)",
        )
        .at(tx)?;
    for r in &q.recipients {
        ev.execute(params![q.queue_id, now, r.address, q.reason])
            .at(tx)?;
    }
    // The tracking row lists every recipient, held ones included, so a search by recipient
    // finds the message.
    let rcpts: Option<String> = tx
        .query_row(
            "SELECT rcpts FROM track_message WHERE queue_id = ?1",
            [&q.queue_id],
            |r| r.get(0),
        )
        .optional()
        .at(tx)?;
    if let Some(rcpts) = rcpts {
        let mut list: Vec<&str> = rcpts.split('\n').filter(|s| !s.is_empty()).collect();
        for r in &q.recipients {
            if !list.contains(&r.address.as_str()) {
                list.push(&r.address);
            }
        }
        tx.execute(
            "UPDATE track_message SET rcpts = ?2 WHERE queue_id = ?1",
            params![q.queue_id, list.join("\n")],
        )
        .at(tx)?;
    }
    Ok(())
}

pub(super) fn change(tx: &Transaction<'_>, c: &QuarantineChange, now: i64) -> Result<()> {
    let n = tx
        .execute(
            "UPDATE quarantine SET state = ?2, released_as = ?3, updated_at = ?4
             WHERE id = ?1 AND state = 'held'",
            params![c.id, c.state.as_str(), c.released_as, now],
        )
        .at(tx)?;
    if n == 0 {
        return Err(StoreError::Inconsistent(format!(
            "quarantine entry {} is not held",
            c.id
        )));
    }
    Ok(())
}

type Row = (
    String,
    String,
    i64,
    i64,
    String,
    String,
    String,
    Option<String>,
    i64,
    Vec<u8>,
    bool,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    i64,
    Option<String>,
    Option<f64>,
);

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
        r.get(11)?,
        r.get(12)?,
        r.get(13)?,
        r.get(14)?,
        r.get(15)?,
        r.get(16)?,
        r.get(17)?,
        r.get(18)?,
        r.get(19)?,
        r.get(20)?,
        r.get(21)?,
        r.get(22)?,
    ))
}

/// The one mapping from a quarantine row to the typed entry.
fn typed(row: Row) -> Result<QuarantineEntry> {
    const T: &str = "quarantine";
    let (
        id,
        queue_id,
        received_at,
        expires_at,
        sender,
        recipients,
        reason,
        explanations,
        size,
        sha256,
        smtputf8,
        body,
        envid,
        ret,
        listener,
        client_ip,
        subject,
        from_header,
        message_id,
        state,
        updated_at,
        released_as,
        score,
    ) = row;
    let recipients = serde_json::from_str(&recipients).map_err(|_| StoreError::BadValue {
        table: T,
        column: "recipients",
        value: recipients.clone(),
    })?;
    let explanations = explanations
        .map(|e| {
            serde_json::from_str(&e).map_err(|_| StoreError::BadValue {
                table: T,
                column: "explanations",
                value: e.clone(),
            })
        })
        .transpose()?;
    Ok(QuarantineEntry {
        id,
        queue_id,
        received_at,
        expires_at,
        sender,
        recipients,
        reason,
        explanations,
        size: size as u64,
        sha256,
        smtputf8,
        body: parse_opt(T, "body", body)?,
        envid,
        ret: parse_opt(T, "ret", ret)?,
        listener,
        client_ip,
        subject,
        from_header,
        message_id,
        state: parse(T, "state", state)?,
        updated_at,
        released_as,
        score,
    })
}

impl MailDb {
    pub fn quarantine_get(&self, id: &str) -> Result<Option<QuarantineEntry>> {
        let row = self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM quarantine WHERE id = ?1"),
                [id],
                read_row,
            )
            .optional()
            .at(&self.conn)?;
        row.map(typed).transpose()
    }

    /// Quarantine entries, newest first. `state` `None` means every state; `search` matches
    /// (case-insensitively) id, queue id, sender, recipients, subject or reason.
    pub fn quarantine_list(
        &self,
        state: Option<QuarantineState>,
        search: Option<&str>,
        limit: u32,
    ) -> Result<Vec<QuarantineEntry>> {
        let pattern = search.map(|s| s.to_lowercase()).unwrap_or_default();
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM quarantine
                 WHERE (?1 IS NULL OR state = ?1)
                   AND (?2 = '' OR instr(lower(id), ?2) > 0 OR instr(lower(queue_id), ?2) > 0
                        OR instr(lower(sender), ?2) > 0 OR instr(lower(recipients), ?2) > 0
                        OR instr(lower(coalesce(subject, '')), ?2) > 0
                        OR instr(lower(reason), ?2) > 0)
                 ORDER BY received_at DESC, id DESC LIMIT ?3"
            ))
            .at(&self.conn)?;
        let rows: Vec<Row> = stmt
            .query_map(params![state.map(|s| s.as_str()), pattern, limit], read_row)
            .at(&self.conn)?
            .collect::<rusqlite::Result<_>>()
            .at(&self.conn)?;
        rows.into_iter().map(typed).collect()
    }

    /// One page of the entries matching `q`, newest first, and how many match in all.
    pub fn quarantine_search(&self, q: &QuarantineQuery) -> Result<(Vec<QuarantineEntry>, u64)> {
        let lower = |s: &Option<String>| {
            s.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_lowercase)
                .unwrap_or_default()
        };
        let (text, reason, sender, rcpt) = (
            lower(&q.text),
            lower(&q.reason),
            lower(&q.sender),
            lower(&q.recipient),
        );
        let filter = "WHERE (?1 IS NULL OR state = ?1)
               AND (?2 = '' OR instr(lower(id), ?2) > 0 OR instr(lower(queue_id), ?2) > 0
                    OR instr(lower(sender), ?2) > 0 OR instr(lower(recipients), ?2) > 0
                    OR instr(lower(coalesce(subject, '')), ?2) > 0
                    OR instr(lower(coalesce(from_header, '')), ?2) > 0
                    OR instr(lower(reason), ?2) > 0)
               AND (?3 = '' OR instr(lower(reason), ?3) > 0)
               AND (?4 = '' OR instr(lower(sender), ?4) > 0
                    OR instr(lower(coalesce(from_header, '')), ?4) > 0)
               AND (?5 = '' OR instr(lower(recipients), ?5) > 0)
               AND (?6 IS NULL OR received_at >= ?6)
               AND (?7 IS NULL OR received_at < ?7)
               AND (?8 IS NULL OR score >= ?8)";
        let state = q.state.map(|s| s.as_str());
        let total: i64 = self
            .conn
            .query_row(
                &format!("SELECT count(*) FROM quarantine {filter}"),
                params![
                    state,
                    text,
                    reason,
                    sender,
                    rcpt,
                    q.since,
                    q.until,
                    q.min_score
                ],
                |r| r.get(0),
            )
            .at(&self.conn)?;
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM quarantine {filter}
                 ORDER BY received_at DESC, id DESC LIMIT ?9 OFFSET ?10"
            ))
            .at(&self.conn)?;
        let rows: Vec<Row> = stmt
            .query_map(
                params![
                    state,
                    text,
                    reason,
                    sender,
                    rcpt,
                    q.since,
                    q.until,
                    q.min_score,
                    q.limit,
                    q.offset
                ],
                read_row,
            )
            .at(&self.conn)?
            .collect::<rusqlite::Result<_>>()
            .at(&self.conn)?;
        let entries = rows.into_iter().map(typed).collect::<Result<_>>()?;
        Ok((entries, total as u64))
    }

    /// Ids of held entries whose `expires_at` is before `now`.
    pub fn quarantine_expired(&self, now: i64) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id FROM quarantine WHERE state = 'held' AND expires_at < ?1")
            .at(&self.conn)?;
        let ids = stmt
            .query_map([now], |r| r.get(0))
            .at(&self.conn)?
            .collect::<rusqlite::Result<_>>()
            .at(&self.conn)?;
        Ok(ids)
    }

    /// Every held entry with its size, for recovery's file ↔ row reconciliation.
    pub fn quarantine_held(&self) -> Result<Vec<(String, u64)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, size FROM quarantine WHERE state = 'held'")
            .at(&self.conn)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            .at(&self.conn)?;
        rows.collect::<rusqlite::Result<_>>().at(&self.conn)
    }
}

/// The sentences of the explanations of `stage` (`rules`, …) in a held entry's
/// `explanations` (one object per recipient, each with its `explanations`), each once.
pub fn explanation_sentences(explanations: Option<&serde_json::Value>, stage: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let per_recipient = explanations
        .and_then(|e| e.as_array())
        .into_iter()
        .flatten();
    for r in per_recipient {
        let list = r
            .get("explanations")
            .and_then(|e| e.as_array())
            .into_iter()
            .flatten();
        for e in list {
            if e.get("stage").and_then(|s| s.as_str()) == Some(stage)
                && let Some(s) = e.get("sentence").and_then(|s| s.as_str())
                && !out.iter().any(|o| o == s)
            {
                out.push(s.to_string());
            }
        }
    }
    out
}
