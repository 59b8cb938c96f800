//! Replicas of the peer's queue (ARCHITECTURE.md, "Spool replication"): what the other unit of
//! an HA pair accepted and has not finished, kept here so that it is delivered if that unit
//! dies. A replica is never delivered as it is; adoption turns it into an ordinary queue entry
//! (through a [`super::Batch`], `adopted`) and leaves a tombstone, so that the peer, when it
//! comes back, can be told which of its messages we took over.
//!
//! The record is what a queue entry is (the message, its content files by number and hash,
//! its recipients) plus what its tracking row said (for the trace page on the unit that
//! delivers it). It travels as JSON between the units and is stored as that JSON.

use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use super::{MailDb, NewArtifact, NewMessage, NewRecipient, Origin, QueuedMessage};
use crate::{Result, SqlContext, now_unix};

pub(super) const MIGRATION: &str = "
    CREATE TABLE replica (
        id TEXT PRIMARY KEY,
        received_at INTEGER NOT NULL,
        record TEXT NOT NULL
    );
    CREATE TABLE replica_done (
        id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        PRIMARY KEY (id, idx)
    );
    CREATE TABLE replica_adopted (
        id TEXT PRIMARY KEY,
        at INTEGER NOT NULL
    );
";

/// How long a tombstone of an adopted replica is kept (the peer is told about it when it
/// comes back within this time).
pub const ADOPTED_KEPT_SECS: i64 = 7 * 86_400;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaArtifact {
    pub n: u32,
    pub size: u64,
    /// SHA-256 in hex.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaRecipient {
    /// The recipient's index in the origin's queue (what `done` names).
    pub idx: i64,
    pub address: String,
    pub route: String,
    #[serde(default)]
    pub notify: Option<String>,
    #[serde(default)]
    pub orcpt: Option<String>,
    pub artifact: u32,
}

/// One queued message of the peer, as it travels and as it is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaRecord {
    pub id: String,
    pub received_at: i64,
    pub expires_at: i64,
    pub sender: String,
    pub size: u64,
    pub sha256: String,
    pub kind: String,
    pub smtputf8: bool,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub envid: Option<String>,
    #[serde(default)]
    pub ret: Option<String>,
    pub artifacts: Vec<ReplicaArtifact>,
    pub recipients: Vec<ReplicaRecipient>,
    #[serde(default)]
    pub origin: ReplicaOrigin,
}

/// The tracking row's facts about where the message came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaOrigin {
    pub listener: String,
    pub client_ip: String,
    pub client_helo: String,
    pub tls: Option<String>,
    pub auth_user: Option<String>,
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub from_header: Option<String>,
}

impl ReplicaRecord {
    /// The record of a message as the committer hands it over (every recipient queued).
    pub fn from_new(m: &NewMessage) -> ReplicaRecord {
        ReplicaRecord {
            id: m.id.clone(),
            received_at: m.received_at,
            expires_at: m.expires_at,
            sender: m.sender.clone(),
            size: m.size,
            sha256: hex::encode(&m.sha256),
            kind: m.kind.as_str().into(),
            smtputf8: m.smtputf8,
            body: super::stored(&m.body),
            envid: m.envid.clone(),
            ret: super::stored(&m.ret),
            artifacts: m
                .artifact_list()
                .into_iter()
                .map(|a| ReplicaArtifact {
                    n: a.n,
                    size: a.size,
                    sha256: hex::encode(a.sha256),
                })
                .collect(),
            recipients: m
                .recipients
                .iter()
                .enumerate()
                .map(|(i, r)| ReplicaRecipient {
                    idx: i as i64,
                    address: r.address.clone(),
                    route: r.route.clone(),
                    notify: super::stored(&r.notify),
                    orcpt: r.orcpt.clone(),
                    artifact: r.artifact,
                })
                .collect(),
            origin: ReplicaOrigin {
                listener: m.origin.listener.clone(),
                client_ip: m.origin.client_ip.clone(),
                client_helo: m.origin.client_helo.clone(),
                tls: m.origin.tls.clone(),
                auth_user: m.origin.auth_user.clone(),
                message_id: m.message_id.clone(),
                subject: m.subject.clone(),
                from_header: m.from_header.clone(),
            },
        }
    }

    /// The record of a message in our queue (an inventory resync): its recipients still
    /// queued, its tracking facts from the tracking row.
    pub fn from_queued(m: &QueuedMessage, origin: ReplicaOrigin) -> ReplicaRecord {
        ReplicaRecord {
            id: m.id.clone(),
            received_at: m.received_at,
            expires_at: m.expires_at,
            sender: m.sender.clone(),
            size: m.size,
            sha256: hex::encode(&m.sha256),
            kind: m.kind.as_str().into(),
            smtputf8: m.smtputf8,
            body: super::stored(&m.body),
            envid: m.envid.clone(),
            ret: super::stored(&m.ret),
            artifacts: m
                .artifacts
                .iter()
                .map(|a| ReplicaArtifact {
                    n: a.n,
                    size: a.size,
                    sha256: hex::encode(&a.sha256),
                })
                .collect(),
            recipients: m
                .recipients
                .iter()
                .filter(|r| r.state == super::RcptState::Queued)
                .map(|r| ReplicaRecipient {
                    idx: r.idx,
                    address: r.address.clone(),
                    route: r.route.clone(),
                    notify: super::stored(&r.notify),
                    orcpt: r.orcpt.clone(),
                    artifact: r.artifact,
                })
                .collect(),
            origin,
        }
    }

    /// Every problem that makes the record unusable (checked when it arrives, so a bad
    /// record is refused by the peer, not found at adoption).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.id.is_empty()
            || self.id.len() > 64
            || !self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            p.push(format!("id {:?} is not a queue id", self.id));
        }
        if self.artifacts.is_empty() || self.artifacts.len() > 64 {
            p.push(format!("{} content files (1 to 64)", self.artifacts.len()));
        }
        if self.recipients.len() > 10_000 {
            p.push("more than 10000 recipients".into());
        }
        for r in &self.recipients {
            if !self.artifacts.iter().any(|a| a.n == r.artifact) {
                p.push(format!(
                    "recipient {} names a missing content file",
                    r.address
                ));
            }
        }
        for a in &self.artifacts {
            if hex::decode(&a.sha256).map(|h| h.len()) != Ok(32) {
                p.push(format!("content file {}: bad checksum", a.n));
            }
        }
        if self.kind.parse::<super::MessageKind>().is_err() {
            p.push(format!("kind {:?}", self.kind));
        }
        p
    }

    /// The queue entry adoption makes: recipients in `done` left out; due at once.
    pub fn to_new_message(&self, done: &[i64]) -> Result<NewMessage> {
        use super::model::parse_opt;
        const T: &str = "replica";
        Ok(NewMessage {
            id: self.id.clone(),
            received_at: self.received_at,
            expires_at: self.expires_at,
            sender: self.sender.clone(),
            size: self.size,
            sha256: hex::decode(&self.sha256).unwrap_or_default(),
            kind: super::model::parse(T, "kind", self.kind.clone())?,
            smtputf8: self.smtputf8,
            body: parse_opt(T, "body", self.body.clone())?,
            envid: self.envid.clone(),
            ret: parse_opt(T, "ret", self.ret.clone())?,
            recipients: self
                .recipients
                .iter()
                .filter(|r| !done.contains(&r.idx))
                .map(|r| {
                    Ok(NewRecipient {
                        address: r.address.clone(),
                        route: r.route.clone(),
                        notify: parse_opt(T, "notify", r.notify.clone())?,
                        orcpt: r.orcpt.clone(),
                        artifact: r.artifact,
                    })
                })
                .collect::<Result<_>>()?,
            artifacts: self
                .artifacts
                .iter()
                .map(|a| NewArtifact {
                    n: a.n,
                    size: a.size,
                    sha256: hex::decode(&a.sha256).unwrap_or_default(),
                })
                .collect(),
            origin: Origin {
                listener: self.origin.listener.clone(),
                client_ip: self.origin.client_ip.clone(),
                client_helo: self.origin.client_helo.clone(),
                tls: self.origin.tls.clone(),
                auth_user: self.origin.auth_user.clone(),
            },
            message_id: self.origin.message_id.clone(),
            subject: self.origin.subject.clone(),
            from_header: self.origin.from_header.clone(),
            verdict: None,
            status: Some("delivered".into()),
        })
    }
}

/// A replica leaving: queued here as an ordinary message in the same transaction.
pub(super) fn adopted(tx: &Transaction<'_>, ids: &[String], now: i64) -> Result<()> {
    for id in ids {
        tx.execute("DELETE FROM replica WHERE id = ?1", [id])
            .at(tx)?;
        tx.execute("DELETE FROM replica_done WHERE id = ?1", [id])
            .at(tx)?;
        tx.execute(
            "INSERT OR REPLACE INTO replica_adopted (id, at) VALUES (?1, ?2)",
            params![id, now],
        )
        .at(tx)?;
        tx.execute(
            "INSERT INTO track_event (queue_id, ts, event, detail) VALUES (?1, ?2, 'adopted', ?3)",
            params![id, now, "taken over from the peer unit's replicated queue"],
        )
        .at(tx)?;
    }
    Ok(())
}

/// What a group from the peer changes, applied in one transaction.
#[derive(Debug, Default)]
pub struct ReplicaChanges<'a> {
    /// New replicas (their files already durable in `DIR/replica/`).
    pub records: Vec<&'a ReplicaRecord>,
    /// Recipients the peer finished: (message id, recipient index).
    pub done: Vec<(String, i64)>,
    /// Messages the peer no longer queues.
    pub remove: Vec<String>,
}

impl MailDb {
    /// Records what the peer sent. A replica already present is left as it is.
    pub fn replica_apply(&mut self, c: &ReplicaChanges<'_>) -> Result<()> {
        let tx = crate::begin_immediate(&mut self.conn)?;
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO replica (id, received_at, record) VALUES (?1, ?2, ?3)",
                )
                .at(&tx)?;
            for r in &c.records {
                let json = serde_json::to_string(r).unwrap_or_default();
                ins.execute(params![r.id, r.received_at, json]).at(&tx)?;
            }
            let mut done = tx
                .prepare_cached("INSERT OR IGNORE INTO replica_done (id, idx) VALUES (?1, ?2)")
                .at(&tx)?;
            for (id, idx) in &c.done {
                done.execute(params![id, idx]).at(&tx)?;
            }
            for id in &c.remove {
                tx.execute("DELETE FROM replica WHERE id = ?1", [id])
                    .at(&tx)?;
                tx.execute("DELETE FROM replica_done WHERE id = ?1", [id])
                    .at(&tx)?;
            }
        }
        tx.commit().at(&self.conn)
    }

    /// Whether a replica `id` is stored.
    pub fn replica_has(&self, id: &str) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM replica WHERE id = ?1)",
                [id],
                |r| r.get(0),
            )
            .at(&self.conn)
    }

    /// The ids of every stored replica.
    pub fn replica_count(&self) -> Result<u64> {
        self.conn
            .query_row("SELECT count(*) FROM replica", [], |r| r.get::<_, i64>(0))
            .map(|n| n.max(0) as u64)
            .at(&self.conn)
    }

    pub fn replica_ids(&self) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare("SELECT id FROM replica ORDER BY received_at, id")
            .at(&self.conn)?;
        let rows = st.query_map([], |r| r.get(0)).at(&self.conn)?;
        rows.collect::<rusqlite::Result<_>>().at(&self.conn)
    }

    /// One stored replica with the indexes of its finished recipients.
    pub fn replica(&self, id: &str) -> Result<Option<(ReplicaRecord, Vec<i64>)>> {
        let json: Option<String> = self
            .conn
            .query_row("SELECT record FROM replica WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
            .at(&self.conn)?;
        let Some(json) = json else { return Ok(None) };
        let record: ReplicaRecord =
            serde_json::from_str(&json).map_err(|e| crate::StoreError::BadValue {
                table: "replica",
                column: "record",
                value: e.to_string(),
            })?;
        let mut st = self
            .conn
            .prepare_cached("SELECT idx FROM replica_done WHERE id = ?1")
            .at(&self.conn)?;
        let done = st
            .query_map([id], |r| r.get(0))
            .at(&self.conn)?
            .collect::<rusqlite::Result<_>>()
            .at(&self.conn)?;
        Ok(Some((record, done)))
    }

    /// The inventory step: drops every replica the peer no longer queues (not in `queued`),
    /// and answers which of `queued` we lack and which we adopted. Tombstones older than
    /// [`ADOPTED_KEPT_SECS`] go.
    pub fn replica_inventory(&mut self, queued: &[String]) -> Result<(Vec<String>, Vec<String>)> {
        let now = now_unix();
        let tx = crate::begin_immediate(&mut self.conn)?;
        let (missing, adopted) = {
            tx.execute(
                "DELETE FROM replica_adopted WHERE at < ?1",
                [now - ADOPTED_KEPT_SECS],
            )
            .at(&tx)?;
            tx.execute_batch("CREATE TEMP TABLE IF NOT EXISTS inventory (id TEXT PRIMARY KEY); DELETE FROM temp.inventory;")
                .at(&tx)?;
            {
                let mut ins = tx
                    .prepare_cached("INSERT OR IGNORE INTO temp.inventory (id) VALUES (?1)")
                    .at(&tx)?;
                for id in queued {
                    ins.execute([id]).at(&tx)?;
                }
            }
            tx.execute_batch(
                "DELETE FROM replica_done WHERE id NOT IN (SELECT id FROM temp.inventory);
                 DELETE FROM replica WHERE id NOT IN (SELECT id FROM temp.inventory);",
            )
            .at(&tx)?;
            let select = |sql: &str| -> Result<Vec<String>> {
                let mut st = tx.prepare(sql).at(&tx)?;
                let rows = st.query_map([], |r| r.get(0)).at(&tx)?;
                rows.collect::<rusqlite::Result<_>>().at(&tx)
            };
            let missing = select(
                "SELECT i.id FROM temp.inventory i WHERE NOT EXISTS
                   (SELECT 1 FROM replica r WHERE r.id = i.id)
                 AND NOT EXISTS (SELECT 1 FROM replica_adopted a WHERE a.id = i.id)",
            )?;
            let adopted =
                select("SELECT i.id FROM temp.inventory i JOIN replica_adopted a ON a.id = i.id")?;
            tx.execute_batch("DELETE FROM temp.inventory;").at(&tx)?;
            (missing, adopted)
        };
        tx.commit().at(&self.conn)?;
        Ok((missing, adopted))
    }

    /// The ids of every queued message (the inventory we send).
    pub fn queue_ids(&self) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare("SELECT id FROM queue_message ORDER BY received_at, id")
            .at(&self.conn)?;
        let rows = st.query_map([], |r| r.get(0)).at(&self.conn)?;
        rows.collect::<rusqlite::Result<_>>().at(&self.conn)
    }

    /// A queued message as a replica record (for a resync), tracking facts included.
    pub fn replica_record_of(&self, id: &str) -> Result<Option<ReplicaRecord>> {
        let Some(m) = self.message(id)? else {
            return Ok(None);
        };
        let origin = self
            .conn
            .query_row(
                "SELECT listener, client_ip, client_helo, tls, auth_user, message_id, subject,
                 from_header FROM track_message WHERE queue_id = ?1",
                [id],
                |r| {
                    Ok(ReplicaOrigin {
                        listener: r.get(0)?,
                        client_ip: r.get(1)?,
                        client_helo: r.get(2)?,
                        tls: r.get(3)?,
                        auth_user: r.get(4)?,
                        message_id: r.get(5)?,
                        subject: r.get(6)?,
                        from_header: r.get(7)?,
                    })
                },
            )
            .optional()
            .at(&self.conn)?
            .unwrap_or_default();
        Ok(Some(ReplicaRecord::from_queued(&m, origin)))
    }
}
