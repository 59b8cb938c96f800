//! `mail.db`: queue rows and message tracking.
//!
//! The queue tables say what still has to be delivered; the tracking tables say what happened
//! to every message (kept after delivery, for the trace page and the charts). Both live in one
//! database so that a [`Batch`] (accepted messages, delivery outcomes, generated bounces,
//! rejections) is a single transaction: what the client was told and what the queue holds can
//! never disagree. Batches are how the spool group-commits many sessions with one fsync.

use std::path::Path;

/// The DSN parameters of the queue model are the wire format's types.
pub use palisade_smtp_proto::{Body, Notify, Ret};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::{Result, SqlContext, StoreError, migrate, now_unix, open_db};

mod digest;
/// The tracking rows the protection panel looks into (`mail::protection`): those whose verdict
/// names a refusal, a deferral, a quarantine, a hold, a stripped part, a virus or spam. One
/// expression for the partial index `track_message_filtered` (migration 5) and the queries
/// that use it (SQLite uses a partial index only when the query repeats its condition).
macro_rules! protection_filtered {
    () => {
        "(instr(verdict, '\"action\":\"reject\"') OR instr(verdict, '\"action\":\"tempfail\"')
          OR instr(verdict, '\"action\":\"quarantine\"')
          OR instr(verdict, '\"action\":\"hold_for_confirmation\"')
          OR instr(verdict, '\"action\":\"strip_parts\"')
          OR instr(verdict, '\"status\":\"infected\"') OR instr(verdict, '\"status\":\"spam\"'))"
    };
}

/// The rows whose direction the verdict does not say is inbound: outbound mail, and rows
/// without a verdict (refused before the checks, bounces we sent). Partial index
/// `track_message_unchecked_or_outbound` (migration 5).
macro_rules! protection_unchecked_or_outbound {
    () => {
        "(verdict IS NULL OR instr(verdict, '\"direction\":\"outbound\"'))"
    };
}

mod domains;
mod incident;
mod model;
mod peer_quarantine;
mod peer_track;
mod protection;
mod quarantine;
mod replica;

pub use digest::{DigestRelease, DigestSent, QuarantineNarrow};
pub use domains::domain_of;
pub use incident::{Incident, IncidentQuery, IncidentReport, NewIncident, RuleSummary};
pub use model::{MessageKind, QuarantineState, RcptState};
use model::{opt_param, parse, parse_opt, stored};
pub use peer_quarantine::{QUARANTINE_BATCH, QuarantineRow, is_quarantine_id};
pub use peer_track::{TRACK_BATCH, TrackCursor, TrackEventRow, TrackRow};
pub use protection::{
    PROTECTION_MAX_MESSAGES, PROTECTION_TOP, ProtectionReason, ProtectionSummary, ReasonCount,
    TopEntry,
};
pub use quarantine::{
    HeldRecipient, NewQuarantine, QuarantineChange, QuarantineEntry, QuarantineQuery,
    explanation_sentences,
};
pub use replica::{
    ADOPTED_KEPT_SECS, ReplicaArtifact, ReplicaChanges, ReplicaOrigin, ReplicaRecipient,
    ReplicaRecord,
};

pub const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE queue_message (
        id TEXT PRIMARY KEY,
        received_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        sender TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 BLOB NOT NULL,
        kind TEXT NOT NULL,
        smtputf8 INTEGER NOT NULL,
        body TEXT,
        envid TEXT,
        ret TEXT
    );
    CREATE TABLE queue_rcpt (
        message_id TEXT NOT NULL REFERENCES queue_message(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        address TEXT NOT NULL,
        route TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt INTEGER NOT NULL,
        last_error TEXT,
        notify TEXT,
        orcpt TEXT,
        PRIMARY KEY (message_id, idx)
    );
    CREATE INDEX queue_rcpt_due ON queue_rcpt(state, next_attempt);

    CREATE TABLE track_message (
        queue_id TEXT PRIMARY KEY,
        received_at INTEGER NOT NULL,
        listener TEXT NOT NULL,
        client_ip TEXT NOT NULL,
        client_helo TEXT NOT NULL,
        tls TEXT,
        auth_user TEXT,
        sender TEXT NOT NULL,
        rcpts TEXT NOT NULL,
        size INTEGER NOT NULL,
        message_id TEXT,
        subject TEXT,
        from_header TEXT,
        status TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX track_message_received ON track_message(received_at);
    CREATE INDEX track_message_msgid ON track_message(message_id);
    CREATE INDEX track_message_sender ON track_message(sender);
    CREATE TABLE track_event (
        id INTEGER PRIMARY KEY,
        queue_id TEXT NOT NULL,
        ts INTEGER NOT NULL,
        event TEXT NOT NULL,
        rcpt TEXT,
        remote TEXT,
        tls TEXT,
        reply TEXT,
        detail TEXT
    );
    CREATE INDEX track_event_queue ON track_event(queue_id);
    CREATE INDEX track_event_ts ON track_event(ts, event);
",
    "
    -- Several content files per message: artifact 0 is DIR/spool/<id> (what DATA received),
    -- artifact n >= 1 is DIR/spool/<id>.<n> (an edited copy). Each recipient names the one
    -- it is delivered.
    CREATE TABLE queue_artifact (
        message_id TEXT NOT NULL REFERENCES queue_message(id) ON DELETE CASCADE,
        artifact INTEGER NOT NULL,
        size INTEGER NOT NULL,
        sha256 BLOB NOT NULL,
        PRIMARY KEY (message_id, artifact)
    );
    INSERT INTO queue_artifact (message_id, artifact, size, sha256)
        SELECT id, 0, size, sha256 FROM queue_message;
    ALTER TABLE queue_rcpt ADD COLUMN artifact INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE track_message ADD COLUMN verdict TEXT;

    -- Quarantine: the held original in DIR/quarantine/<id>, and what to do with it.
    CREATE TABLE quarantine (
        id TEXT PRIMARY KEY,
        queue_id TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        sender TEXT NOT NULL,
        recipients TEXT NOT NULL,
        reason TEXT NOT NULL,
        explanations TEXT,
        size INTEGER NOT NULL,
        sha256 BLOB NOT NULL,
        smtputf8 INTEGER NOT NULL,
        body TEXT,
        envid TEXT,
        ret TEXT,
        listener TEXT NOT NULL,
        client_ip TEXT NOT NULL,
        subject TEXT,
        from_header TEXT,
        message_id TEXT,
        state TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        released_as TEXT
    );
    CREATE INDEX quarantine_received ON quarantine(received_at);
    CREATE INDEX quarantine_state ON quarantine(state, expires_at);
",
    // 3: a message's held copies, found when its queued recipients are finished (its final
    // tracking status counts them).
    "CREATE INDEX quarantine_queue ON quarantine(queue_id);",
    // 4: the quarantine digest (see `mail::digest`).
    digest::MIGRATION,
    // 5: the dashboard's protection panel reads only the rows these admit, so that a window of
    // a busy site costs what its refusals, quarantines, viruses, spam and outbound mail cost,
    // not a read of every verdict.
    concat!(
        "CREATE INDEX track_message_received_status ON track_message(received_at, status);
         CREATE INDEX track_message_filtered ON track_message(received_at) WHERE ",
        protection_filtered!(),
        ";
         CREATE INDEX track_message_unchecked_or_outbound ON track_message(received_at) WHERE ",
        protection_unchecked_or_outbound!(),
        ";"
    ),
    // 6: the spam score of a held message, to filter the quarantine by. Entries held before
    // carry it only in their reason (`spam: score N`).
    "ALTER TABLE quarantine ADD COLUMN score REAL;
     UPDATE quarantine SET score = CAST(substr(reason, 13) AS REAL)
         WHERE reason LIKE 'spam: score %';",
    // 7: DLP incidents (see `mail::incident`).
    incident::MIGRATION,
    // 8: where outbound mail goes (see `mail::domains`).
    domains::MIGRATION,
    // 9: replicas of the HA peer's queue (see `mail::replica`).
    replica::MIGRATION,
    // 10: the HA peer's tracking, and this database's identity (see `mail::peer_track`).
    peer_track::MIGRATION,
    // 11: the HA peer's held copies (see `mail::peer_quarantine`).
    peer_quarantine::MIGRATION,
];

/// How the message reached us: for tracking and for the trace page.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Origin {
    /// `smtp`, `submission` or `local` (bounces we generated).
    pub listener: String,
    pub client_ip: String,
    pub client_helo: String,
    /// Protocol and cipher, `None` for plaintext.
    pub tls: Option<String>,
    pub auth_user: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct NewRecipient {
    pub address: String,
    /// Destination key the delivery side groups by (`maildir`, `mx:example.org`, ...).
    pub route: String,
    pub notify: Option<Notify>,
    pub orcpt: Option<String>,
    /// The content file this recipient is delivered (0: what DATA received).
    pub artifact: u32,
}

/// One content file of a message: `DIR/spool/<id>` for `n == 0`, `DIR/spool/<id>.<n>` else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewArtifact {
    pub n: u32,
    pub size: u64,
    pub sha256: Vec<u8>,
}

/// A message the spool has made durable on disk and now records.
///
/// With `recipients` empty, only tracking is recorded (no queue entry): every recipient was
/// quarantined or discarded; the tracking status is then `status` (`quarantined`,
/// `discarded`), else `queued`.
#[derive(Debug, Clone, Default)]
pub struct NewMessage {
    pub id: String,
    pub received_at: i64,
    pub expires_at: i64,
    /// Empty for the null sender `<>`.
    pub sender: String,
    /// Size and SHA-256 of artifact 0 (what DATA received).
    pub size: u64,
    pub sha256: Vec<u8>,
    pub kind: MessageKind,
    pub smtputf8: bool,
    pub body: Option<Body>,
    pub envid: Option<String>,
    pub ret: Option<Ret>,
    pub recipients: Vec<NewRecipient>,
    /// Every content file the message owns. Empty: the one artifact 0 with `size`/`sha256`.
    /// When given, it must list each artifact a recipient names (checked at commit); a file
    /// not listed is not the message's and recovery removes it.
    pub artifacts: Vec<NewArtifact>,
    pub origin: Origin,
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub from_header: Option<String>,
    /// The filter verdict (JSON), kept with the tracking row.
    pub verdict: Option<String>,
    /// Tracking status of a message with no recipient queued (see above).
    pub status: Option<String>,
}

impl NewMessage {
    /// The content files this message owns (artifact 0 alone when `artifacts` is empty).
    pub fn artifact_list(&self) -> Vec<NewArtifact> {
        if self.artifacts.is_empty() {
            vec![NewArtifact {
                n: 0,
                size: self.size,
                sha256: self.sha256.clone(),
            }]
        } else {
            self.artifacts.clone()
        }
    }
}

/// A transaction refused during the SMTP dialogue: tracked, never queued.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub id: String,
    pub ts: i64,
    pub origin: Origin,
    pub sender: String,
    pub rcpts: Vec<String>,
    /// The reply the client got.
    pub reply: String,
    /// The filter verdict (JSON, as for an accepted message) when the checks refused it.
    pub verdict: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeKind {
    Delivered,
    /// Temporary failure; try again at this time.
    Deferred {
        next_attempt: i64,
    },
    /// Permanent failure (or expiry): the recipient is done and a bounce is due.
    Failed,
}

/// The result of one delivery attempt for one recipient.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub message_id: String,
    pub idx: i64,
    pub rcpt: String,
    pub kind: OutcomeKind,
    /// The host that answered (`mx1.example.org[192.0.2.1]:25`, `maildir`).
    pub remote: Option<String>,
    pub tls: Option<String>,
    /// The reply or error text.
    pub reply: String,
}

/// A tracking event without a queue change (corrupt spool file, admin actions, expiry notes).
#[derive(Debug, Clone)]
pub struct Event {
    pub queue_id: String,
    pub event: String,
    pub rcpt: Option<String>,
    pub detail: String,
    /// If set, the message's tracking status becomes this.
    pub status: Option<String>,
}

/// Everything one commit records. Applied in one transaction by [`MailDb::apply`].
#[derive(Debug, Default)]
pub struct Batch {
    pub accepted: Vec<NewMessage>,
    pub rejected: Vec<Rejection>,
    pub outcomes: Vec<Outcome>,
    pub events: Vec<Event>,
    /// Queue entries to remove (all recipients final, deleted by an admin, or corrupt).
    pub remove: Vec<String>,
    /// Messages (or some of their recipients) held in `DIR/quarantine/`; each writes a
    /// `quarantined` tracking event per recipient.
    pub quarantined: Vec<NewQuarantine>,
    /// Quarantine entries leaving the `held` state; the whole batch fails if one is no longer
    /// held (released or deleted by someone else meanwhile).
    pub quarantine_changes: Vec<QuarantineChange>,
    /// Held entries that stay held for fewer recipients (a recipient released its copy from
    /// a digest link); fails the batch when one is no longer held.
    pub quarantine_narrowed: Vec<QuarantineNarrow>,
    /// Entries listed in a digest (committed with the digest message itself).
    pub digest_sent: Vec<DigestSent>,
    /// Releases made from digest links; the batch fails when a link was already used.
    pub digest_releases: Vec<DigestRelease>,
    /// DLP incidents of the messages accepted or refused in this batch.
    pub incidents: Vec<NewIncident>,
    /// Recipient domains outbound mail of this batch goes to (one message more each).
    pub recipient_domains: Vec<String>,
    /// Replicas of the peer's queue taken over (queued as `accepted` in the same batch):
    /// their replica rows become tombstones.
    pub adopted: Vec<String>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.accepted.is_empty()
            && self.rejected.is_empty()
            && self.outcomes.is_empty()
            && self.events.is_empty()
            && self.remove.is_empty()
            && self.quarantined.is_empty()
            && self.quarantine_changes.is_empty()
            && self.quarantine_narrowed.is_empty()
            && self.digest_sent.is_empty()
            && self.digest_releases.is_empty()
            && self.incidents.is_empty()
            && self.recipient_domains.is_empty()
            && self.adopted.is_empty()
    }

    /// Whether committing this batch makes new spool files part of the queue (the spool
    /// directory must be fsync'd first).
    pub fn adds_spool_files(&self) -> bool {
        self.accepted.iter().any(|m| !m.recipients.is_empty())
    }
}

/// A queued message with its recipients, as the delivery side and `queue list` see it.
#[derive(Debug, Clone, Serialize)]
pub struct QueuedMessage {
    pub id: String,
    pub received_at: i64,
    pub expires_at: i64,
    pub sender: String,
    /// Size and SHA-256 of artifact 0.
    pub size: u64,
    #[serde(skip)]
    pub sha256: Vec<u8>,
    pub kind: MessageKind,
    pub smtputf8: bool,
    #[serde(serialize_with = "opt_param::serialize")]
    pub body: Option<Body>,
    pub envid: Option<String>,
    #[serde(serialize_with = "opt_param::serialize")]
    pub ret: Option<Ret>,
    /// Every content file of the message, by number.
    pub artifacts: Vec<Artifact>,
    pub recipients: Vec<QueuedRecipient>,
}

impl QueuedMessage {
    pub fn artifact(&self, n: u32) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.n == n)
    }
}

/// One content file of a queued message, as recorded when it was accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Artifact {
    pub n: u32,
    pub size: u64,
    #[serde(skip)]
    pub sha256: Vec<u8>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueuedRecipient {
    pub idx: i64,
    pub address: String,
    pub route: String,
    pub state: RcptState,
    pub attempts: i64,
    pub next_attempt: i64,
    pub last_error: Option<String>,
    #[serde(serialize_with = "opt_param::serialize")]
    pub notify: Option<Notify>,
    pub orcpt: Option<String>,
    /// The content file this recipient is delivered.
    pub artifact: u32,
}

/// Search criteria for message tracking; all optional, combined with AND. Text criteria
/// match case-insensitively anywhere in the field.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct TrackQuery {
    pub sender: Option<String>,
    pub rcpt: Option<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub queue_id: Option<String>,
    pub status: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrackedMessage {
    pub queue_id: String,
    pub received_at: i64,
    pub listener: String,
    pub client_ip: String,
    pub client_helo: String,
    pub tls: Option<String>,
    pub auth_user: Option<String>,
    pub sender: String,
    pub rcpts: Vec<String>,
    pub size: u64,
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub from_header: Option<String>,
    pub status: String,
    pub updated_at: i64,
    /// The filter verdict (JSON) recorded at acceptance, if any.
    pub verdict: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrackedEvent {
    pub ts: i64,
    pub event: String,
    pub rcpt: Option<String>,
    pub remote: Option<String>,
    pub tls: Option<String>,
    pub reply: Option<String>,
    pub detail: Option<String>,
}

/// Counts of tracking events per time bucket, for the dashboard's charts.
#[derive(Debug, Clone, Serialize)]
pub struct FlowBucket {
    pub start: i64,
    pub received: u64,
    pub delivered: u64,
    pub deferred: u64,
    pub bounced: u64,
    pub rejected: u64,
}

pub struct MailDb {
    conn: rusqlite::Connection,
}

fn opt_str(s: &Option<String>) -> Option<&str> {
    s.as_deref()
}

impl MailDb {
    pub fn open(path: &Path) -> Result<Self> {
        let mut conn = open_db(path)?;
        migrate::migrate(&mut conn, MIGRATIONS)?;
        Ok(MailDb { conn })
    }

    /// Applies a batch in one transaction: after this returns, every accepted message is
    /// recorded durably (`synchronous=FULL`).
    pub fn apply(&mut self, batch: &Batch) -> Result<()> {
        self.apply_all(&[batch])
    }

    /// Applies several batches in one transaction (the group commit).
    pub fn apply_all(&mut self, batches: &[&Batch]) -> Result<()> {
        let now = now_unix();
        let tx = crate::begin_immediate(&mut self.conn)?;
        {
            let mut ins_msg = tx
                .prepare_cached(
                    "INSERT INTO queue_message (id, received_at, expires_at, sender, size, sha256,
                     kind, smtputf8, body, envid, ret) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)",
                )
                .at(&tx)?;
            let mut ins_artifact = tx
                .prepare_cached(
                    "INSERT INTO queue_artifact (message_id, artifact, size, sha256)
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .at(&tx)?;
            let mut ins_rcpt = tx
                .prepare_cached(
                    "INSERT INTO queue_rcpt (message_id, idx, address, route, state, next_attempt,
                     notify, orcpt, artifact) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .at(&tx)?;
            let mut ins_track = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO track_message (queue_id, received_at, listener, client_ip,
                     client_helo, tls, auth_user, sender, rcpts, size, message_id, subject,
                     from_header, status, updated_at, verdict)
                     VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16)",
                )
                .at(&tx)?;
            let mut ins_event = tx
                .prepare_cached(
                    "INSERT INTO track_event (queue_id, ts, event, rcpt, remote, tls, reply, detail)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .at(&tx)?;
            let mut set_status = tx
                .prepare_cached(
                    "UPDATE track_message SET status = ?2, updated_at = ?3 WHERE queue_id = ?1",
                )
                .at(&tx)?;

            for m in batches.iter().flat_map(|b| &b.accepted) {
                // No recipient left to deliver (all quarantined or discarded): tracking only.
                let queued = !m.recipients.is_empty();
                if queued {
                    let artifacts = m.artifact_list();
                    if let Some(r) = m
                        .recipients
                        .iter()
                        .find(|r| !artifacts.iter().any(|a| a.n == r.artifact))
                    {
                        return Err(StoreError::Inconsistent(format!(
                            "message {}: recipient {} names artifact {}, which it does not have",
                            m.id, r.address, r.artifact
                        )));
                    }
                    ins_msg
                        .execute(params![
                            m.id,
                            m.received_at,
                            m.expires_at,
                            m.sender,
                            m.size as i64,
                            m.sha256,
                            m.kind.as_str(),
                            m.smtputf8,
                            stored(&m.body),
                            m.envid,
                            stored(&m.ret)
                        ])
                        .at(&tx)?;
                    for a in &artifacts {
                        ins_artifact
                            .execute(params![m.id, a.n, a.size as i64, a.sha256])
                            .at(&tx)?;
                    }
                    for (i, r) in m.recipients.iter().enumerate() {
                        ins_rcpt
                            .execute(params![
                                m.id,
                                i as i64,
                                r.address,
                                r.route,
                                RcptState::Queued.as_str(),
                                m.received_at,
                                stored(&r.notify),
                                r.orcpt,
                                r.artifact
                            ])
                            .at(&tx)?;
                    }
                }
                let status = match (&m.status, queued) {
                    (Some(s), false) => s.as_str(),
                    _ => "queued",
                };
                let rcpts: Vec<&str> = m.recipients.iter().map(|r| r.address.as_str()).collect();
                ins_track
                    .execute(params![
                        m.id,
                        m.received_at,
                        m.origin.listener,
                        m.origin.client_ip,
                        m.origin.client_helo,
                        opt_str(&m.origin.tls),
                        opt_str(&m.origin.auth_user),
                        m.sender,
                        rcpts.join("\n"),
                        m.size as i64,
                        m.message_id,
                        m.subject,
                        m.from_header,
                        status,
                        now,
                        m.verdict
                    ])
                    .at(&tx)?;
                ins_event
                    .execute(params![
                        m.id,
                        m.received_at,
                        "received",
                        None::<String>,
                        format!("{} {}", m.origin.client_helo, m.origin.client_ip),
                        opt_str(&m.origin.tls),
                        None::<String>,
                        format!("from=<{}> size={} rcpts={}", m.sender, m.size, rcpts.len())
                    ])
                    .at(&tx)?;
            }

            for r in batches.iter().flat_map(|b| &b.rejected) {
                ins_track
                    .execute(params![
                        r.id,
                        r.ts,
                        r.origin.listener,
                        r.origin.client_ip,
                        r.origin.client_helo,
                        opt_str(&r.origin.tls),
                        opt_str(&r.origin.auth_user),
                        r.sender,
                        r.rcpts.join("\n"),
                        0i64,
                        None::<String>,
                        None::<String>,
                        None::<String>,
                        "rejected",
                        now,
                        r.verdict
                    ])
                    .at(&tx)?;
                ins_event
                    .execute(params![
                        r.id,
                        r.ts,
                        "rejected",
                        None::<String>,
                        r.origin.client_ip,
                        opt_str(&r.origin.tls),
                        r.reply,
                        None::<String>
                    ])
                    .at(&tx)?;
            }

            let mut upd_rcpt = tx
                .prepare_cached(
                    "UPDATE queue_rcpt SET state = ?3, attempts = attempts + 1, next_attempt = ?4,
                     last_error = ?5 WHERE message_id = ?1 AND idx = ?2",
                )
                .at(&tx)?;
            for o in batches.iter().flat_map(|b| &b.outcomes) {
                let (state, next, event, err) = match o.kind {
                    OutcomeKind::Delivered => (RcptState::Delivered, now, "delivered", None),
                    OutcomeKind::Deferred { next_attempt } => {
                        (RcptState::Queued, next_attempt, "deferred", Some(&o.reply))
                    }
                    OutcomeKind::Failed => (RcptState::Failed, now, "bounced", Some(&o.reply)),
                };
                upd_rcpt
                    .execute(params![o.message_id, o.idx, state.as_str(), next, err])
                    .at(&tx)?;
                ins_event
                    .execute(params![
                        o.message_id,
                        now,
                        event,
                        o.rcpt,
                        o.remote,
                        o.tls,
                        o.reply,
                        None::<String>
                    ])
                    .at(&tx)?;
                if event == "deferred" {
                    set_status
                        .execute(params![o.message_id, "deferred", now])
                        .at(&tx)?;
                }
            }

            for q in batches.iter().flat_map(|b| &b.quarantined) {
                quarantine::insert(&tx, q, now)?;
            }
            for c in batches.iter().flat_map(|b| &b.quarantine_changes) {
                quarantine::change(&tx, c, now)?;
            }
            for n in batches.iter().flat_map(|b| &b.quarantine_narrowed) {
                digest::narrow(&tx, n, now)?;
            }
            for s in batches.iter().flat_map(|b| &b.digest_sent) {
                digest::sent(&tx, s, now)?;
            }
            for r in batches.iter().flat_map(|b| &b.digest_releases) {
                digest::released(&tx, r, now)?;
            }
            for i in batches.iter().flat_map(|b| &b.incidents) {
                incident::insert(&tx, i, now)?;
            }
            for b in batches {
                domains::record(&tx, &b.recipient_domains, now)?;
                replica::adopted(&tx, &b.adopted, now)?;
            }

            for e in batches.iter().flat_map(|b| &b.events) {
                ins_event
                    .execute(params![
                        e.queue_id,
                        now,
                        e.event,
                        e.rcpt,
                        None::<String>,
                        None::<String>,
                        None::<String>,
                        e.detail
                    ])
                    .at(&tx)?;
                if let Some(s) = &e.status {
                    set_status.execute(params![e.queue_id, s, now]).at(&tx)?;
                }
            }

            for id in batches.iter().flat_map(|b| &b.remove) {
                // Final tracking status from the recipients' final states, unless an event
                // above already set one (deleted, corrupt).
                let (delivered, failed, queued): (i64, i64, i64) = tx
                    .query_row(
                        "SELECT
                           coalesce(sum(state = 'delivered'), 0),
                           coalesce(sum(state = 'failed'), 0),
                           coalesce(sum(state = 'queued'), 0)
                         FROM queue_rcpt WHERE message_id = ?1",
                        [id],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .at(&tx)?;
                if queued == 0 {
                    // Recipients held in quarantine at acceptance are not queue rows; a
                    // message with some of them is only partly delivered.
                    let held: bool = tx
                        .query_row(
                            "SELECT EXISTS(SELECT 1 FROM quarantine WHERE queue_id = ?1)",
                            [id],
                            |r| r.get(0),
                        )
                        .at(&tx)?;
                    let status = match (delivered, failed, held) {
                        (_, 0, false) => "delivered",
                        (0, _, false) => "bounced",
                        _ => "partial",
                    };
                    set_status.execute(params![id, status, now]).at(&tx)?;
                }
                tx.execute("DELETE FROM queue_message WHERE id = ?1", [id])
                    .at(&tx)?;
            }
        }
        tx.commit().at(&self.conn)
    }

    /// Ids of messages with recipients due for delivery at `now`, oldest first.
    pub fn due_ids(&self, now: i64, limit: u32) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT message_id FROM queue_rcpt
                 WHERE state = 'queued' AND next_attempt <= ?1
                 GROUP BY message_id ORDER BY min(next_attempt) LIMIT ?2",
            )
            .at(&self.conn)?;
        let ids = stmt
            .query_map(params![now, limit], |r| r.get(0))
            .at(&self.conn)?
            .collect::<rusqlite::Result<_>>()
            .at(&self.conn)?;
        Ok(ids)
    }

    /// Messages with recipients due for delivery at `now`, oldest first.
    pub fn due(&self, now: i64, limit: u32) -> Result<Vec<QueuedMessage>> {
        let mut out = Vec::new();
        for id in self.due_ids(now, limit)? {
            if let Some(m) = self.message(&id)? {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Messages with no recipient left to deliver that are still queued: the process died
    /// between recording the last outcome and removing the message. They need finalizing
    /// (bounce if due, then removal).
    pub fn finished_ids(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT m.id FROM queue_message m WHERE NOT EXISTS
                   (SELECT 1 FROM queue_rcpt r WHERE r.message_id = m.id AND r.state = 'queued')",
            )
            .at(&self.conn)?;
        let ids = stmt
            .query_map([], |r| r.get(0))
            .at(&self.conn)?
            .collect::<rusqlite::Result<_>>()
            .at(&self.conn)?;
        Ok(ids)
    }

    /// When the next recipient becomes due, so the scheduler can sleep until then.
    pub fn next_due(&self) -> Result<Option<i64>> {
        self.conn
            .query_row(
                "SELECT min(next_attempt) FROM queue_rcpt WHERE state = 'queued'",
                [],
                |r| r.get(0),
            )
            .at(&self.conn)
    }

    /// One queued message with its artifacts and recipients. The one place queue rows become
    /// the typed model: a value that does not parse is an error naming its column.
    pub fn message(&self, id: &str) -> Result<Option<QueuedMessage>> {
        type MessageRow = (
            String,
            i64,
            i64,
            String,
            i64,
            Vec<u8>,
            String,
            bool,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let row: Option<MessageRow> = self
            .conn
            .query_row(
                "SELECT id, received_at, expires_at, sender, size, sha256, kind, smtputf8, body,
                 envid, ret FROM queue_message WHERE id = ?1",
                [id],
                |r| {
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
                    ))
                },
            )
            .optional()
            .at(&self.conn)?;
        let Some((
            id,
            received_at,
            expires_at,
            sender,
            size,
            sha256,
            kind,
            smtputf8,
            body,
            envid,
            ret,
        )) = row
        else {
            return Ok(None);
        };
        const MSG: &str = "queue_message";
        let mut m = QueuedMessage {
            id,
            received_at,
            expires_at,
            sender,
            size: size as u64,
            sha256,
            kind: parse(MSG, "kind", kind)?,
            smtputf8,
            body: parse_opt(MSG, "body", body)?,
            envid,
            ret: parse_opt(MSG, "ret", ret)?,
            artifacts: vec![],
            recipients: vec![],
        };

        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT artifact, size, sha256 FROM queue_artifact WHERE message_id = ?1
                 ORDER BY artifact",
            )
            .at(&self.conn)?;
        m.artifacts = stmt
            .query_map([&m.id], |r| {
                Ok(Artifact {
                    n: r.get(0)?,
                    size: r.get::<_, i64>(1)? as u64,
                    sha256: r.get(2)?,
                })
            })
            .at(&self.conn)?
            .collect::<rusqlite::Result<_>>()
            .at(&self.conn)?;

        type RcptRow = (
            i64,
            String,
            String,
            String,
            i64,
            i64,
            Option<String>,
            Option<String>,
            Option<String>,
            u32,
        );
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT idx, address, route, state, attempts, next_attempt, last_error, notify,
                 orcpt, artifact FROM queue_rcpt WHERE message_id = ?1 ORDER BY idx",
            )
            .at(&self.conn)?;
        let rows: Vec<RcptRow> = stmt
            .query_map([&m.id], |r| {
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
                ))
            })
            .at(&self.conn)?
            .collect::<rusqlite::Result<_>>()
            .at(&self.conn)?;
        const RCPT: &str = "queue_rcpt";
        for (
            idx,
            address,
            route,
            state,
            attempts,
            next_attempt,
            last_error,
            notify,
            orcpt,
            artifact,
        ) in rows
        {
            m.recipients.push(QueuedRecipient {
                idx,
                address,
                route,
                state: parse(RCPT, "state", state)?,
                attempts,
                next_attempt,
                last_error,
                notify: parse_opt(RCPT, "notify", notify)?,
                orcpt,
                artifact,
            });
        }
        Ok(Some(m))
    }

    /// Every queued message, oldest first (for `queue list` and the console's queue page).
    /// `search` matches sender, recipient or queue id.
    pub fn list_queue(&self, search: Option<&str>, limit: u32) -> Result<Vec<QueuedMessage>> {
        let pattern = search.map(|s| s.to_ascii_lowercase()).unwrap_or_default();
        let mut stmt = self
            .conn
            .prepare(
                "SELECT m.id FROM queue_message m WHERE ?1 = ''
                   OR instr(lower(m.id), ?1) > 0 OR instr(lower(m.sender), ?1) > 0
                   OR EXISTS (SELECT 1 FROM queue_rcpt r WHERE r.message_id = m.id
                              AND instr(lower(r.address), ?1) > 0)
                 ORDER BY m.received_at, m.id LIMIT ?2",
            )
            .at(&self.conn)?;
        let ids: Vec<String> = stmt
            .query_map(params![pattern, limit], |r| r.get(0))
            .at(&self.conn)?
            .collect::<rusqlite::Result<_>>()
            .at(&self.conn)?;
        let mut out = Vec::new();
        for id in ids {
            if let Some(m) = self.message(&id)? {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Every content file the queue holds: (message id, artifact number, size), for
    /// recovery's file ↔ row reconciliation.
    pub fn queue_artifacts(&self) -> Result<Vec<(String, u32, u64)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT message_id, artifact, size FROM queue_artifact")
            .at(&self.conn)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
            })
            .at(&self.conn)?;
        rows.collect::<rusqlite::Result<_>>().at(&self.conn)
    }

    /// The tracking status of a message, if it is tracked.
    pub fn track_status(&self, queue_id: &str) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT status FROM track_message WHERE queue_id = ?1",
                [queue_id],
                |r| r.get(0),
            )
            .optional()
            .at(&self.conn)
    }

    pub fn queue_len(&self) -> Result<(u64, u64)> {
        self.conn
            .query_row(
                "SELECT (SELECT count(*) FROM queue_message),
                        (SELECT count(*) FROM queue_rcpt WHERE state = 'queued')",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .at(&self.conn)
    }

    /// Makes queued recipients due now: of one message, or of all with `None`.
    /// Returns the number of recipients affected.
    pub fn retry_now(&mut self, id: Option<&str>) -> Result<usize> {
        let now = now_unix();
        match id {
            Some(id) => self.conn.execute(
                "UPDATE queue_rcpt SET next_attempt = ?2 WHERE message_id = ?1 AND state = 'queued'",
                params![id, now],
            ),
            None => self.conn.execute(
                "UPDATE queue_rcpt SET next_attempt = ?1 WHERE state = 'queued'",
                params![now],
            ),
        }
        .at(&self.conn)
    }

    pub fn track_search(&self, q: &TrackQuery) -> Result<Vec<TrackedMessage>> {
        let mut sql = String::from(
            "SELECT queue_id, received_at, listener, client_ip, client_helo, tls, auth_user,
             sender, rcpts, size, message_id, subject, from_header, status, updated_at, verdict
             FROM track_message WHERE 1=1",
        );
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let mut contains = |col: &str, v: &Option<String>, sql: &mut String| {
            if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                sql.push_str(&format!(" AND instr(lower({col}), ?) > 0"));
                args.push(v.to_lowercase().into());
            }
        };
        contains("sender", &q.sender, &mut sql);
        contains("rcpts", &q.rcpt, &mut sql);
        contains("subject", &q.subject, &mut sql);
        contains("message_id", &q.message_id, &mut sql);
        contains("queue_id", &q.queue_id, &mut sql);
        if let Some(s) = q.status.as_ref().filter(|s| !s.is_empty()) {
            sql.push_str(" AND status = ?");
            args.push(s.clone().into());
        }
        if let Some(s) = q.since {
            sql.push_str(" AND received_at >= ?");
            args.push(s.into());
        }
        if let Some(u) = q.until {
            sql.push_str(" AND received_at <= ?");
            args.push(u.into());
        }
        sql.push_str(&format!(
            " ORDER BY received_at DESC, queue_id DESC LIMIT {}",
            q.limit.unwrap_or(200).min(10_000)
        ));
        let mut stmt = self.conn.prepare(&sql).at(&self.conn)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), |r| {
                Ok(TrackedMessage {
                    queue_id: r.get(0)?,
                    received_at: r.get(1)?,
                    listener: r.get(2)?,
                    client_ip: r.get(3)?,
                    client_helo: r.get(4)?,
                    tls: r.get(5)?,
                    auth_user: r.get(6)?,
                    sender: r.get(7)?,
                    rcpts: r
                        .get::<_, String>(8)?
                        .split('\n')
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect(),
                    size: r.get::<_, i64>(9)? as u64,
                    message_id: r.get(10)?,
                    subject: r.get(11)?,
                    from_header: r.get(12)?,
                    status: r.get(13)?,
                    updated_at: r.get(14)?,
                    verdict: r.get(15)?,
                })
            })
            .at(&self.conn)?;
        rows.collect::<rusqlite::Result<_>>().at(&self.conn)
    }

    pub fn track_events(&self, queue_id: &str) -> Result<Vec<TrackedEvent>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT ts, event, rcpt, remote, tls, reply, detail FROM track_event
                 WHERE queue_id = ?1 ORDER BY id",
            )
            .at(&self.conn)?;
        let rows = stmt
            .query_map([queue_id], |r| {
                Ok(TrackedEvent {
                    ts: r.get(0)?,
                    event: r.get(1)?,
                    rcpt: r.get(2)?,
                    remote: r.get(3)?,
                    tls: r.get(4)?,
                    reply: r.get(5)?,
                    detail: r.get(6)?,
                })
            })
            .at(&self.conn)?;
        rows.collect::<rusqlite::Result<_>>().at(&self.conn)
    }

    /// Mail flow counts in `bucket`-second buckets from `since` to now.
    pub fn flow(&self, since: i64, bucket: i64) -> Result<Vec<FlowBucket>> {
        let now = now_unix();
        let bucket = bucket.max(1);
        let n = ((now - since) / bucket + 1).max(1) as usize;
        let mut out: Vec<FlowBucket> = (0..n)
            .map(|i| FlowBucket {
                start: since + i as i64 * bucket,
                received: 0,
                delivered: 0,
                deferred: 0,
                bounced: 0,
                rejected: 0,
            })
            .collect();
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT (ts - ?1) / ?2, event, count(*) FROM track_event
                 WHERE ts >= ?1 GROUP BY 1, 2",
            )
            .at(&self.conn)?;
        let rows = stmt
            .query_map(params![since, bucket], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .at(&self.conn)?;
        for row in rows {
            let (i, event, count) = row.at(&self.conn)?;
            let Some(b) = out.get_mut(i as usize) else {
                continue;
            };
            let count = count as u64;
            match event.as_str() {
                "received" => b.received += count,
                "delivered" => b.delivered += count,
                "deferred" => b.deferred += count,
                "bounced" => b.bounced += count,
                "rejected" => b.rejected += count,
                _ => {}
            }
        }
        Ok(out)
    }

    /// Deletes tracking older than `before` (retention).
    pub fn purge_tracking(&mut self, before: i64) -> Result<usize> {
        let tx = crate::begin_immediate(&mut self.conn)?;
        tx.execute(
            "DELETE FROM track_event WHERE queue_id IN
               (SELECT queue_id FROM track_message WHERE updated_at < ?1
                AND queue_id NOT IN (SELECT id FROM queue_message))",
            [before],
        )
        .at(&tx)?;
        let n = tx
            .execute(
                "DELETE FROM track_message WHERE updated_at < ?1
                 AND queue_id NOT IN (SELECT id FROM queue_message)",
                [before],
            )
            .at(&tx)?;
        tx.commit().at(&self.conn)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str, rcpts: &[&str]) -> NewMessage {
        NewMessage {
            id: id.into(),
            received_at: now_unix(),
            expires_at: now_unix() + 3600,
            sender: "a@example.org".into(),
            size: 10,
            sha256: vec![1; 32],
            kind: MessageKind::Mail,
            smtputf8: false,
            body: None,
            envid: None,
            ret: None,
            recipients: rcpts
                .iter()
                .map(|r| NewRecipient {
                    address: r.to_string(),
                    route: "maildir".into(),
                    ..Default::default()
                })
                .collect(),
            artifacts: vec![],
            verdict: None,
            status: None,
            origin: Origin {
                listener: "smtp".into(),
                client_ip: "127.0.0.1".into(),
                client_helo: "client".into(),
                tls: None,
                auth_user: None,
            },
            message_id: Some("<m1@example.org>".into()),
            subject: Some("Hello".into()),
            from_header: None,
        }
    }

    fn outcome(id: &str, idx: i64, kind: OutcomeKind) -> Outcome {
        Outcome {
            message_id: id.into(),
            idx,
            rcpt: format!("r{idx}"),
            kind,
            remote: None,
            tls: None,
            reply: "250 ok".into(),
        }
    }

    #[test]
    fn accept_defer_deliver_and_track() {
        let d = tempfile::tempdir().unwrap();
        let mut db = MailDb::open(&d.path().join("mail.db")).unwrap();
        db.apply(&Batch {
            accepted: vec![msg("Q1", &["x@example.test", "y@example.test"])],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(db.queue_len().unwrap(), (1, 2));
        assert_eq!(db.due(now_unix(), 100).unwrap().len(), 1);

        let later = now_unix() + 1000;
        db.apply(&Batch {
            outcomes: vec![
                outcome("Q1", 0, OutcomeKind::Delivered),
                outcome(
                    "Q1",
                    1,
                    OutcomeKind::Deferred {
                        next_attempt: later,
                    },
                ),
            ],
            ..Default::default()
        })
        .unwrap();
        assert!(db.due(now_unix(), 100).unwrap().is_empty());
        assert_eq!(db.next_due().unwrap(), Some(later));
        assert_eq!(db.retry_now(Some("Q1")).unwrap(), 1);
        let due = db.due(now_unix(), 100).unwrap();
        assert_eq!(due[0].recipients[1].attempts, 1);

        db.apply(&Batch {
            outcomes: vec![outcome("Q1", 1, OutcomeKind::Failed)],
            remove: vec!["Q1".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(db.queue_len().unwrap(), (0, 0));
        let t = db
            .track_search(&TrackQuery {
                message_id: Some("M1@".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].status, "partial");
        let ev: Vec<_> = db
            .track_events("Q1")
            .unwrap()
            .into_iter()
            .map(|e| e.event)
            .collect();
        assert_eq!(ev, ["received", "delivered", "deferred", "bounced"]);
        let flow = db.flow(now_unix() - 3600, 3600).unwrap();
        let total: u64 = flow
            .iter()
            .map(|b| b.received + b.delivered + b.bounced)
            .sum();
        assert_eq!(total, 3);
    }

    /// A database written by the first schema (one content file per message) upgrades in
    /// place: its messages get artifact 0 and keep delivering.
    #[test]
    fn migration_from_v1_keeps_queued_rows_deliverable() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("mail.db");
        {
            let mut conn = crate::open_db(&path).unwrap();
            migrate::migrate(&mut conn, &MIGRATIONS[..1]).unwrap();
            conn.execute_batch(
                "INSERT INTO queue_message VALUES
                   ('Q1', 100, 9999999999, 'a@example.org', 10, x'0101', 'mail', 0, '8BITMIME',
                    'env', 'HDRS');
                 INSERT INTO queue_rcpt (message_id, idx, address, route, state, next_attempt,
                    notify) VALUES ('Q1', 0, 'x@example.test', 'maildir', 'queued', 0,
                    'SUCCESS,FAILURE');
                 INSERT INTO track_message VALUES ('Q1', 100, 'smtp', '127.0.0.1', 'h', NULL,
                    NULL, 'a@example.org', 'x@example.test', 10, NULL, NULL, NULL, 'queued', 100);",
            )
            .unwrap();
        }
        let mut db = MailDb::open(&path).unwrap();
        let due = db.due(now_unix(), 10).unwrap();
        assert_eq!(due.len(), 1);
        let m = &due[0];
        assert_eq!(
            m.artifacts,
            vec![Artifact {
                n: 0,
                size: 10,
                sha256: vec![1, 1]
            }]
        );
        assert_eq!(m.body, Some(Body::EightBitMime));
        assert_eq!(m.ret, Some(Ret::Hdrs));
        let r = &m.recipients[0];
        assert_eq!((r.state, r.artifact), (RcptState::Queued, 0));
        assert!(r.notify.unwrap().success && r.notify.unwrap().failure);
        assert_eq!(db.queue_artifacts().unwrap(), vec![("Q1".into(), 0, 10)]);
        db.apply(&Batch {
            outcomes: vec![outcome("Q1", 0, OutcomeKind::Delivered)],
            remove: vec!["Q1".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(db.queue_len().unwrap(), (0, 0));
        assert!(db.queue_artifacts().unwrap().is_empty());
        assert_eq!(db.track_status("Q1").unwrap().as_deref(), Some("delivered"));
    }

    /// Entries held for spam before the score column existed get their score from their
    /// reason; others have none.
    #[test]
    fn migration_6_reads_the_score_of_spam_held_before() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("mail.db");
        {
            let mut conn = crate::open_db(&path).unwrap();
            migrate::migrate(&mut conn, &MIGRATIONS[..5]).unwrap();
            for (id, reason) in [("S1", "spam: score 9.25"), ("V1", "virus: Eicar")] {
                conn.execute(
                    "INSERT INTO quarantine (id, queue_id, received_at, expires_at, sender,
                        recipients, reason, size, sha256, smtputf8, listener, client_ip,
                        state, updated_at)
                     VALUES (?1, 'Q', 1, 2, '', '[]', ?2, 1, x'00', 0, 'smtp', '', 'held', 1)",
                    rusqlite::params![id, reason],
                )
                .unwrap();
            }
        }
        let db = MailDb::open(&path).unwrap();
        assert_eq!(db.quarantine_get("S1").unwrap().unwrap().score, Some(9.25));
        assert_eq!(db.quarantine_get("V1").unwrap().unwrap().score, None);
    }

    #[test]
    fn typed_fields_round_trip_and_corrupt_values_are_errors() {
        let d = tempfile::tempdir().unwrap();
        let mut db = MailDb::open(&d.path().join("mail.db")).unwrap();
        let mut m = msg("Q1", &["x@example.test", "y@example.test"]);
        m.body = Some(Body::SevenBit);
        m.ret = Some(Ret::Full);
        m.recipients[0].notify = Some("NEVER".parse().unwrap());
        m.recipients[1].artifact = 1;
        m.artifacts = vec![
            NewArtifact {
                n: 0,
                size: 10,
                sha256: vec![1; 32],
            },
            NewArtifact {
                n: 1,
                size: 12,
                sha256: vec![2; 32],
            },
        ];
        m.verdict = Some(r#"{"action":"deliver"}"#.into());
        db.apply(&Batch {
            accepted: vec![m],
            ..Default::default()
        })
        .unwrap();
        let q = db.message("Q1").unwrap().unwrap();
        assert_eq!((q.body, q.ret), (Some(Body::SevenBit), Some(Ret::Full)));
        assert_eq!(q.artifacts.len(), 2);
        assert_eq!(q.artifact(1).unwrap().size, 12);
        assert!(q.recipients[0].notify.unwrap().never);
        assert_eq!(
            q.recipients.iter().map(|r| r.artifact).collect::<Vec<_>>(),
            [0, 1]
        );
        let json = serde_json::to_value(&q).unwrap();
        assert_eq!(json["body"], "7BIT");
        assert_eq!(json["ret"], "FULL");
        assert_eq!(json["recipients"][0]["state"], "queued");
        assert_eq!(json["recipients"][0]["notify"], "NEVER");
        let t = db.track_search(&TrackQuery::default()).unwrap();
        assert_eq!(t[0].verdict.as_deref(), Some(r#"{"action":"deliver"}"#));

        // A recipient naming an artifact the message does not have: nothing is written.
        let mut bad = msg("Q2", &["x@example.test"]);
        bad.recipients[0].artifact = 3;
        assert!(matches!(
            db.apply(&Batch {
                accepted: vec![bad],
                ..Default::default()
            }),
            Err(StoreError::Inconsistent(_))
        ));
        assert!(db.message("Q2").unwrap().is_none());

        db.conn
            .execute("UPDATE queue_rcpt SET state = 'sent' WHERE idx = 1", [])
            .unwrap();
        match db.message("Q1") {
            Err(StoreError::BadValue {
                table,
                column,
                value,
            }) => {
                assert_eq!(
                    (table, column, value.as_str()),
                    ("queue_rcpt", "state", "sent")
                );
            }
            other => panic!("expected BadValue, got {other:?}"),
        }
        db.conn
            .execute("UPDATE queue_rcpt SET state = 'queued'", [])
            .unwrap();
        db.conn
            .execute("UPDATE queue_message SET kind = 'bounce'", [])
            .unwrap();
        assert!(matches!(
            db.message("Q1"),
            Err(StoreError::BadValue { column: "kind", .. })
        ));
    }

    fn held(id: &str, queue_id: &str, expires_at: i64) -> NewQuarantine {
        NewQuarantine {
            id: id.into(),
            queue_id: queue_id.into(),
            received_at: now_unix(),
            expires_at,
            sender: "a@example.org".into(),
            recipients: vec![HeldRecipient {
                address: "q@example.test".into(),
                route: "maildir".into(),
                notify: Some("FAILURE".parse().unwrap()),
                orcpt: None,
            }],
            reason: "virus: Eicar-Test-Signature".into(),
            explanations: Some(serde_json::json!([{"stage": "antivirus"}])),
            size: 10,
            sha256: vec![3; 32],
            body: Some(Body::EightBitMime),
            subject: Some("Invoice".into()),
            ..Default::default()
        }
    }

    #[test]
    fn quarantine_rows_tracking_and_state_changes() {
        let d = tempfile::tempdir().unwrap();
        let mut db = MailDb::open(&d.path().join("mail.db")).unwrap();
        // One recipient delivered, one held; and a message held for every recipient.
        let mut all_held = msg("Q2", &[]);
        all_held.status = Some("quarantined".into());
        db.apply(&Batch {
            accepted: vec![msg("Q1", &["x@example.test"]), all_held],
            quarantined: vec![
                NewQuarantine {
                    score: Some(11.5),
                    ..held("H1", "Q1", now_unix() + 3600)
                },
                held("H2", "Q2", now_unix() - 1),
            ],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(db.queue_len().unwrap(), (1, 1), "Q2 is tracked, not queued");
        assert_eq!(
            db.track_status("Q2").unwrap().as_deref(),
            Some("quarantined")
        );
        let t = db
            .track_search(&TrackQuery {
                queue_id: Some("Q1".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(t[0].rcpts, ["x@example.test", "q@example.test"]);
        let ev = db.track_events("Q2").unwrap();
        assert_eq!(ev[1].event, "quarantined");
        assert_eq!(ev[1].rcpt.as_deref(), Some("q@example.test"));
        assert_eq!(ev[1].detail.as_deref(), Some("virus: Eicar-Test-Signature"));

        let e = db.quarantine_get("H1").unwrap().unwrap();
        assert_eq!(e.state, QuarantineState::Held);
        assert_eq!(e.body, Some(Body::EightBitMime));
        assert!(e.recipients[0].notify.unwrap().failure);
        assert_eq!(e.explanations.unwrap()[0]["stage"], "antivirus");
        assert_eq!(
            db.quarantine_list(None, Some("invoice"), 10).unwrap().len(),
            2
        );
        assert_eq!(db.quarantine_list(None, Some("H2"), 10).unwrap().len(), 1);
        assert_eq!(db.quarantine_expired(now_unix()).unwrap(), ["H2"]);
        // The console's search: conditions combine, pages are counted.
        let search = |q: QuarantineQuery| {
            let (rows, total) = db.quarantine_search(&q).unwrap();
            (rows.into_iter().map(|e| e.id).collect::<Vec<_>>(), total)
        };
        let all = QuarantineQuery {
            limit: 10,
            ..Default::default()
        };
        assert_eq!(search(all.clone()), (vec!["H2".into(), "H1".into()], 2));
        assert_eq!(
            search(QuarantineQuery {
                limit: 1,
                offset: 1,
                ..all.clone()
            }),
            (vec!["H1".into()], 2)
        );
        assert_eq!(
            search(QuarantineQuery {
                reason: Some("EICAR".into()),
                recipient: Some("q@EXAMPLE".into()),
                ..all.clone()
            })
            .1,
            2
        );
        assert_eq!(
            search(QuarantineQuery {
                sender: Some("nobody-like-this".into()),
                ..all.clone()
            }),
            (vec![], 0)
        );
        // A spam score at least this much; an entry the spam check did not score never
        // matches.
        assert_eq!(db.quarantine_get("H1").unwrap().unwrap().score, Some(11.5));
        assert_eq!(
            search(QuarantineQuery {
                min_score: Some(8.0),
                ..all.clone()
            }),
            (vec!["H1".into()], 1)
        );
        assert_eq!(
            search(QuarantineQuery {
                min_score: Some(12.0),
                ..all.clone()
            })
            .1,
            0
        );
        assert_eq!(
            search(QuarantineQuery {
                since: Some(now_unix() + 86400),
                ..all.clone()
            })
            .1,
            0
        );
        assert_eq!(
            search(QuarantineQuery {
                until: Some(now_unix() + 86400),
                state: Some(QuarantineState::Released),
                ..all.clone()
            })
            .1,
            0
        );

        // Q1's queued recipient delivered: with one recipient held, the message is partly
        // delivered, not delivered.
        db.apply(&Batch {
            outcomes: vec![outcome("Q1", 0, OutcomeKind::Delivered)],
            remove: vec!["Q1".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(db.track_status("Q1").unwrap().as_deref(), Some("partial"));

        let change = |id: &str| Batch {
            quarantine_changes: vec![QuarantineChange {
                id: id.into(),
                state: QuarantineState::Released,
                released_as: Some("Q9".into()),
            }],
            ..Default::default()
        };
        db.apply(&change("H1")).unwrap();
        // Twice: the second finds it no longer held and writes nothing.
        assert!(matches!(
            db.apply(&change("H1")),
            Err(StoreError::Inconsistent(_))
        ));
        let e = db.quarantine_get("H1").unwrap().unwrap();
        assert_eq!(e.state, QuarantineState::Released);
        assert_eq!(e.released_as.as_deref(), Some("Q9"));
        let listed = db
            .quarantine_list(Some(QuarantineState::Held), None, 10)
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, "H2");

        db.conn
            .execute("UPDATE quarantine SET state = 'gone' WHERE id = 'H2'", [])
            .unwrap();
        assert!(matches!(
            db.quarantine_get("H2"),
            Err(StoreError::BadValue {
                column: "state",
                ..
            })
        ));
    }
}
