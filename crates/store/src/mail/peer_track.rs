//! Tracking replicated between the two units of an HA pair (ARCHITECTURE.md, "Tracking and
//! audit replication"): each unit sends the tracking it wrote itself (`origin IS NULL`): its
//! events in id order, and its message rows in the order they last changed (`changed`, from
//! `track_sequence`, kept by triggers: a status can change without an event). The peer keeps
//! them in its own `track_message`/`track_event`, so the survivor of a failover can still
//! trace the mail the dead unit handled. What the peer keeps carries its origin (the sending
//! database's `instance` id) and its id or change number there: a resend is harmless, and the
//! largest of each is the cursor to resume from.

use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::MailDb;
use crate::{Result, SqlContext};

pub(super) const MIGRATION: &str = "
    ALTER TABLE track_event ADD COLUMN origin TEXT;
    ALTER TABLE track_event ADD COLUMN origin_id INTEGER;
    CREATE UNIQUE INDEX track_event_origin ON track_event(origin, origin_id)
        WHERE origin IS NOT NULL;
    ALTER TABLE track_message ADD COLUMN changed INTEGER;
    ALTER TABLE track_message ADD COLUMN origin TEXT;
    ALTER TABLE track_message ADD COLUMN origin_changed INTEGER;
    UPDATE track_message SET changed = rowid;
    CREATE INDEX track_message_changed ON track_message(changed) WHERE origin IS NULL;
    CREATE INDEX track_message_origin ON track_message(origin, origin_changed)
        WHERE origin IS NOT NULL;
    CREATE TABLE track_sequence (n INTEGER NOT NULL);
    INSERT INTO track_sequence (n) SELECT coalesce(max(rowid), 0) FROM track_message;
    CREATE TRIGGER track_message_inserted AFTER INSERT ON track_message
        WHEN NEW.origin IS NULL BEGIN
            UPDATE track_sequence SET n = n + 1;
            UPDATE track_message SET changed = (SELECT n FROM track_sequence)
                WHERE queue_id = NEW.queue_id;
        END;
    CREATE TRIGGER track_message_updated
        AFTER UPDATE OF status, updated_at, rcpts, verdict ON track_message
        WHEN NEW.origin IS NULL BEGIN
            UPDATE track_sequence SET n = n + 1;
            UPDATE track_message SET changed = (SELECT n FROM track_sequence)
                WHERE queue_id = NEW.queue_id;
        END;
    -- This database's identity, told to the peer with its tracking.
    CREATE TABLE instance (id TEXT NOT NULL);
    INSERT INTO instance (id) VALUES (lower(hex(randomblob(16))));
";

/// Where the peer's copy of our tracking stands: the newest event and message change it has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackCursor {
    pub event: i64,
    pub changed: i64,
}

/// Most events sent in one frame.
pub const TRACK_BATCH: u32 = 500;

/// A `track_message` row as it travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackRow {
    pub queue_id: String,
    pub received_at: i64,
    pub listener: String,
    pub client_ip: String,
    pub client_helo: String,
    pub tls: Option<String>,
    pub auth_user: Option<String>,
    pub sender: String,
    pub rcpts: String,
    pub size: i64,
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub from_header: Option<String>,
    pub status: String,
    pub updated_at: i64,
    pub verdict: Option<String>,
    /// Its change number on the unit that wrote it.
    pub changed: i64,
}

/// A `track_event` row as it travels (`id` is its id on the unit that wrote it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackEventRow {
    pub id: i64,
    pub queue_id: String,
    pub ts: i64,
    pub event: String,
    pub rcpt: Option<String>,
    pub remote: Option<String>,
    pub tls: Option<String>,
    pub reply: Option<String>,
    pub detail: Option<String>,
}

impl MailDb {
    /// This database's identity (made by its migration, random).
    pub fn instance_id(&self) -> Result<String> {
        self.conn
            .query_row("SELECT id FROM instance LIMIT 1", [], |r| r.get(0))
            .at(&self.conn)
    }

    /// The newest event and message change this unit wrote itself.
    pub fn own_track_head(&self) -> Result<TrackCursor> {
        let event = self
            .conn
            .query_row(
                "SELECT coalesce(max(id), 0) FROM track_event WHERE origin IS NULL",
                [],
                |r| r.get(0),
            )
            .at(&self.conn)?;
        let changed = self
            .conn
            .query_row("SELECT n FROM track_sequence", [], |r| r.get(0))
            .at(&self.conn)?;
        Ok(TrackCursor { event, changed })
    }

    /// What this unit wrote after `after`, oldest first: at most `limit` message rows (in the
    /// order they changed) and `limit` events.
    pub fn own_track_after(
        &self,
        after: TrackCursor,
        limit: u32,
    ) -> Result<(Vec<TrackRow>, Vec<TrackEventRow>)> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT id, queue_id, ts, event, rcpt, remote, tls, reply, detail FROM track_event
                 WHERE id > ?1 AND origin IS NULL ORDER BY id LIMIT ?2",
            )
            .at(&self.conn)?;
        let events = st
            .query_map(params![after.event, limit], |r| {
                Ok(TrackEventRow {
                    id: r.get(0)?,
                    queue_id: r.get(1)?,
                    ts: r.get(2)?,
                    event: r.get(3)?,
                    rcpt: r.get(4)?,
                    remote: r.get(5)?,
                    tls: r.get(6)?,
                    reply: r.get(7)?,
                    detail: r.get(8)?,
                })
            })
            .at(&self.conn)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .at(&self.conn)?;
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT queue_id, received_at, listener, client_ip, client_helo, tls, auth_user,
                 sender, rcpts, size, message_id, subject, from_header, status, updated_at, verdict,
                 changed
                 FROM track_message WHERE changed > ?1 AND origin IS NULL ORDER BY changed LIMIT ?2",
            )
            .at(&self.conn)?;
        let messages = st
            .query_map(params![after.changed, limit], |r| {
                Ok(TrackRow {
                    queue_id: r.get(0)?,
                    received_at: r.get(1)?,
                    listener: r.get(2)?,
                    client_ip: r.get(3)?,
                    client_helo: r.get(4)?,
                    tls: r.get(5)?,
                    auth_user: r.get(6)?,
                    sender: r.get(7)?,
                    rcpts: r.get(8)?,
                    size: r.get(9)?,
                    message_id: r.get(10)?,
                    subject: r.get(11)?,
                    from_header: r.get(12)?,
                    status: r.get(13)?,
                    updated_at: r.get(14)?,
                    verdict: r.get(15)?,
                    changed: r.get(16)?,
                })
            })
            .at(&self.conn)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .at(&self.conn)?;
        Ok((messages, events))
    }

    /// The newest event and message change of `origin` kept here: where its sender resumes.
    pub fn peer_track_cursor(&self, origin: &str) -> Result<TrackCursor> {
        let event = self
            .conn
            .query_row(
                "SELECT coalesce(max(origin_id), 0) FROM track_event WHERE origin = ?1",
                [origin],
                |r| r.get(0),
            )
            .at(&self.conn)?;
        let changed = self
            .conn
            .query_row(
                "SELECT coalesce(max(origin_changed), 0) FROM track_message WHERE origin = ?1",
                [origin],
                |r| r.get(0),
            )
            .at(&self.conn)?;
        Ok(TrackCursor { event, changed })
    }

    /// Keeps what the peer sent, in one transaction: its messages' rows (a row of this unit's
    /// own, such as one it adopted and delivers, stays unless the peer's changed later) and its
    /// events (one already here is left). Returns the new cursor of `origin`.
    pub fn peer_track_apply(
        &mut self,
        origin: &str,
        messages: &[TrackRow],
        events: &[TrackEventRow],
    ) -> Result<TrackCursor> {
        let tx = crate::begin_immediate(&mut self.conn)?;
        {
            let mut msg = tx
                .prepare_cached(
                    "INSERT INTO track_message (queue_id, received_at, listener, client_ip,
                     client_helo, tls, auth_user, sender, rcpts, size, message_id, subject,
                     from_header, status, updated_at, verdict, origin, origin_changed)
                     VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18)
                     ON CONFLICT(queue_id) DO UPDATE SET received_at = excluded.received_at,
                       listener = excluded.listener, client_ip = excluded.client_ip,
                       client_helo = excluded.client_helo, tls = excluded.tls,
                       auth_user = excluded.auth_user, sender = excluded.sender,
                       rcpts = excluded.rcpts, size = excluded.size,
                       message_id = excluded.message_id, subject = excluded.subject,
                       from_header = excluded.from_header, status = excluded.status,
                       updated_at = excluded.updated_at, verdict = excluded.verdict,
                       origin = excluded.origin, origin_changed = excluded.origin_changed
                     WHERE track_message.origin IS excluded.origin
                        OR excluded.updated_at > track_message.updated_at",
                )
                .at(&tx)?;
            for m in messages {
                msg.execute(params![
                    m.queue_id,
                    m.received_at,
                    m.listener,
                    m.client_ip,
                    m.client_helo,
                    m.tls,
                    m.auth_user,
                    m.sender,
                    m.rcpts,
                    m.size,
                    m.message_id,
                    m.subject,
                    m.from_header,
                    m.status,
                    m.updated_at,
                    m.verdict,
                    origin,
                    m.changed
                ])
                .at(&tx)?;
            }
            let mut ev = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO track_event (queue_id, ts, event, rcpt, remote, tls,
                     reply, detail, origin, origin_id) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
                )
                .at(&tx)?;
            for e in events {
                ev.execute(params![
                    e.queue_id, e.ts, e.event, e.rcpt, e.remote, e.tls, e.reply, e.detail, origin,
                    e.id
                ])
                .at(&tx)?;
            }
        }
        tx.commit().at(&self.conn)?;
        // The whole batch is applied (a row skipped because ours is newer included): the
        // cursor moves past it, or those rows would be sent again and again.
        let kept = self.peer_track_cursor(origin)?;
        Ok(TrackCursor {
            event: events.iter().map(|e| e.id).fold(kept.event, i64::max),
            changed: messages
                .iter()
                .map(|m| m.changed)
                .fold(kept.changed, i64::max),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, MailDb) {
        let d = tempfile::tempdir().unwrap();
        let db = MailDb::open(&d.path().join("mail.db")).unwrap();
        (d, db)
    }

    fn row(id: &str, status: &str, updated_at: i64) -> TrackRow {
        TrackRow {
            queue_id: id.into(),
            received_at: 100,
            listener: "smtp".into(),
            client_ip: "192.0.2.1".into(),
            client_helo: "h".into(),
            tls: None,
            auth_user: None,
            sender: "a@example.org".into(),
            rcpts: "b@example.net".into(),
            size: 10,
            message_id: None,
            subject: Some("s".into()),
            from_header: None,
            status: status.into(),
            updated_at,
            verdict: None,
            changed: updated_at,
        }
    }

    fn event(id: i64, queue_id: &str, event: &str) -> TrackEventRow {
        TrackEventRow {
            id,
            queue_id: queue_id.into(),
            ts: 100 + id,
            event: event.into(),
            rcpt: None,
            remote: None,
            tls: None,
            reply: None,
            detail: None,
        }
    }

    #[test]
    fn a_peers_tracking_is_kept_once_and_sent_back_never() {
        let (_a, a) = db();
        let (_b, mut b) = db();
        let origin = a.instance_id().unwrap();
        assert_eq!(origin.len(), 32);
        assert_ne!(origin, b.instance_id().unwrap());
        // What A "wrote": a message with two events.
        a.conn
            .execute_batch(
                "INSERT INTO track_message (queue_id, received_at, listener, client_ip, client_helo,
                 sender, rcpts, size, status, updated_at) VALUES
                 ('Q1', 100, 'smtp', '192.0.2.1', 'h', 'a@x', 'b@y', 10, 'delivered', 120);
                 INSERT INTO track_event (queue_id, ts, event) VALUES ('Q1', 101, 'accepted');
                 INSERT INTO track_event (queue_id, ts, event) VALUES ('Q1', 120, 'delivered');",
            )
            .unwrap();
        let start = TrackCursor::default();
        let (msgs, evs) = a.own_track_after(start, TRACK_BATCH).unwrap();
        assert_eq!((msgs.len(), evs.len()), (1, 2));
        let head = a.own_track_head().unwrap();
        assert_eq!(head.event, 2);
        assert_eq!(b.peer_track_apply(&origin, &msgs, &evs).unwrap(), head);
        // A resend changes nothing.
        assert_eq!(b.peer_track_apply(&origin, &msgs, &evs).unwrap(), head);
        assert_eq!(b.track_events("Q1").unwrap().len(), 2);
        assert_eq!(b.peer_track_cursor(&origin).unwrap(), head);
        // B never sends A's tracking back as its own.
        let (m, e) = b.own_track_after(start, TRACK_BATCH).unwrap();
        assert!(m.is_empty() && e.is_empty());
        assert_eq!(b.own_track_head().unwrap(), start);
        // A status changed without an event travels too (a change number, not an event).
        a.conn
            .execute(
                "UPDATE track_message SET status = 'bounced' WHERE queue_id = 'Q1'",
                [],
            )
            .unwrap();
        let (m, e) = a.own_track_after(head, TRACK_BATCH).unwrap();
        assert_eq!((m.len(), e.len()), (1, 0));
        assert_eq!(m[0].status, "bounced");
        b.peer_track_apply(&origin, &m, &e).unwrap();
        let status = |db: &MailDb| -> String {
            db.conn
                .query_row(
                    "SELECT status FROM track_message WHERE queue_id = 'Q1'",
                    [],
                    |r| r.get(0),
                )
                .unwrap()
        };
        assert_eq!(status(&b), "bounced");
        // A row of B's own (it adopted the message) is replaced only by a later one.
        b.conn
            .execute(
                "UPDATE track_message SET origin = NULL, status = 'adopted here', updated_at = 500
                 WHERE queue_id = 'Q1'",
                [],
            )
            .unwrap();
        b.peer_track_apply(&origin, &[row("Q1", "queued", 130)], &[])
            .unwrap();
        assert_eq!(status(&b), "adopted here");
        b.peer_track_apply(&origin, &[row("Q1", "delivered", 600)], &[])
            .unwrap();
        assert_eq!(status(&b), "delivered");
        // Only events after the cursor travel.
        let after_first = TrackCursor {
            event: 1,
            changed: head.changed + 1,
        };
        assert_eq!(a.own_track_after(after_first, TRACK_BATCH).unwrap().1, {
            let mut e = event(2, "Q1", "delivered");
            e.ts = 120;
            vec![e]
        });
    }
}
