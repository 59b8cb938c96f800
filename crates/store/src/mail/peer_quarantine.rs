//! Held (quarantined) copies replicated between the two units of an HA pair (ARCHITECTURE.md,
//! "Tracking and audit replication"): each unit sends its quarantine rows in the order they
//! last changed (`quarantine.changed`, from `quarantine_sequence`, kept by triggers) with the
//! held original of every row still held; the peer keeps them apart (`peer_quarantine`, files
//! in `DIR/peer-quarantine/`), out of its own quarantine and digest, until it adopts them
//! (the peer is gone, or the pair dissolved): then the held ones become its own entries.
//!
//! Rows travel as JSON objects by column name (a BLOB as `{"hex": "…"}`), so the two tables
//! need no mapping of their own; the receiver uses only column names its table has.
//! `peer_quarantine` copies `quarantine`'s columns as they were at migration 11: a later
//! migration adding a column to `quarantine` adds it here too.

use rusqlite::types::Value as Sql;
use rusqlite::{OptionalExtension, params_from_iter};
use serde_json::{Map, Value};

use super::MailDb;
use crate::{Result, SqlContext, StoreError};

pub(super) const MIGRATION: &str = "
    ALTER TABLE quarantine ADD COLUMN changed INTEGER;
    UPDATE quarantine SET changed = rowid;
    CREATE INDEX quarantine_changed ON quarantine(changed);
    CREATE TABLE quarantine_sequence (n INTEGER NOT NULL);
    INSERT INTO quarantine_sequence (n) SELECT coalesce(max(rowid), 0) FROM quarantine;
    CREATE TRIGGER quarantine_inserted AFTER INSERT ON quarantine BEGIN
        UPDATE quarantine_sequence SET n = n + 1;
        UPDATE quarantine SET changed = (SELECT n FROM quarantine_sequence) WHERE id = NEW.id;
    END;
    CREATE TRIGGER quarantine_updated
        AFTER UPDATE OF state, recipients, expires_at, updated_at ON quarantine BEGIN
        UPDATE quarantine_sequence SET n = n + 1;
        UPDATE quarantine SET changed = (SELECT n FROM quarantine_sequence) WHERE id = NEW.id;
    END;
    CREATE TABLE peer_quarantine AS SELECT * FROM quarantine WHERE 0;
    ALTER TABLE peer_quarantine ADD COLUMN origin TEXT;
    CREATE UNIQUE INDEX peer_quarantine_id ON peer_quarantine(id);
    CREATE INDEX peer_quarantine_origin ON peer_quarantine(origin, changed);
";

/// Most quarantine rows sent in one frame (each may bring its held original).
pub const QUARANTINE_BATCH: u32 = 16;

/// One quarantine row as it travels, with what the sender needs to know of it.
#[derive(Debug, Clone)]
pub struct QuarantineRow {
    pub id: String,
    pub state: String,
    pub changed: i64,
    pub columns: Map<String, Value>,
}

fn to_json(v: Sql) -> Value {
    match v {
        Sql::Null => Value::Null,
        Sql::Integer(i) => Value::from(i),
        Sql::Real(f) => Value::from(f),
        Sql::Text(t) => Value::from(t),
        Sql::Blob(b) => serde_json::json!({ "hex": hex::encode(b) }),
    }
}

fn from_json(v: &Value) -> std::result::Result<Sql, String> {
    Ok(match v {
        Value::Null => Sql::Null,
        Value::Bool(b) => Sql::Integer(*b as i64),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Sql::Integer(i),
            None => Sql::Real(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => Sql::Text(s.clone()),
        Value::Object(o) => match o.get("hex").and_then(Value::as_str) {
            Some(h) => Sql::Blob(hex::decode(h).map_err(|e| e.to_string())?),
            None => return Err("an object that is not {\"hex\": …}".into()),
        },
        Value::Array(_) => return Err("an array".into()),
    })
}

/// A quarantine id as this project makes them (also a file name in two directories): letters,
/// digits, `-` and `_`, at most 64.
pub fn is_quarantine_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn columns(conn: &rusqlite::Connection, table: &str) -> Result<Vec<String>> {
    let mut st = conn
        .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
        .at(conn)?;
    st.query_map([], |r| r.get(0))
        .at(conn)?
        .collect::<rusqlite::Result<_>>()
        .at(conn)
}

impl MailDb {
    /// The newest change of this unit's quarantine.
    pub fn own_quarantine_head(&self) -> Result<i64> {
        self.conn
            .query_row("SELECT n FROM quarantine_sequence", [], |r| r.get(0))
            .at(&self.conn)
    }

    /// This unit's quarantine rows changed after `after`, in the order they changed.
    pub fn own_quarantine_after(&self, after: i64, limit: u32) -> Result<Vec<QuarantineRow>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT * FROM quarantine WHERE changed > ?1 ORDER BY changed LIMIT ?2")
            .at(&self.conn)?;
        let names: Vec<String> = st.column_names().map(|s| s.to_string()).collect();
        let mut rows = st.query(rusqlite::params![after, limit]).at(&self.conn)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().at(&self.conn)? {
            let mut columns = Map::new();
            for (i, n) in names.iter().enumerate() {
                columns.insert(n.clone(), to_json(r.get::<_, Sql>(i).at(&self.conn)?));
            }
            let text = |k: &str| {
                columns
                    .get(k)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            out.push(QuarantineRow {
                id: text("id"),
                state: text("state"),
                changed: columns.get("changed").and_then(Value::as_i64).unwrap_or(0),
                columns,
            });
        }
        Ok(out)
    }

    /// The newest change of `origin`'s quarantine kept here.
    pub fn peer_quarantine_cursor(&self, origin: &str) -> Result<i64> {
        self.conn
            .query_row(
                "SELECT coalesce(max(changed), 0) FROM peer_quarantine WHERE origin = ?1",
                [origin],
                |r| r.get(0),
            )
            .at(&self.conn)
    }

    /// Keeps the peer's rows (as sent: a newer one replaces the older); returns the cursor.
    pub fn peer_quarantine_apply(
        &mut self,
        origin: &str,
        rows: &[Map<String, Value>],
    ) -> Result<i64> {
        let known = columns(&self.conn, "peer_quarantine")?;
        let tx = crate::begin_immediate(&mut self.conn)?;
        for row in rows {
            let mut names = Vec::new();
            let mut values = Vec::new();
            for (k, v) in row {
                if k == "origin" || !known.contains(k) {
                    continue;
                }
                names.push(k.as_str());
                values.push(from_json(v).map_err(|e| {
                    StoreError::Inconsistent(format!("the peer's quarantine column {k}: {e}"))
                })?);
            }
            if !names.contains(&"id") || !names.contains(&"changed") {
                return Err(StoreError::Inconsistent(
                    "a quarantine row from the peer without its id or change number".into(),
                ));
            }
            let id = row.get("id").and_then(Value::as_str).unwrap_or_default();
            if !is_quarantine_id(id) {
                return Err(StoreError::Inconsistent(format!(
                    "a quarantine row from the peer with the id '{}'",
                    id.chars().take(80).collect::<String>()
                )));
            }
            values.push(Sql::Text(origin.to_string()));
            let marks = vec!["?"; values.len()].join(",");
            tx.execute(
                &format!(
                    "INSERT OR REPLACE INTO peer_quarantine ({}, origin) VALUES ({marks})",
                    names.join(",")
                ),
                params_from_iter(values),
            )
            .at(&tx)?;
        }
        tx.commit().at(&self.conn)?;
        self.peer_quarantine_cursor(origin)
    }

    /// The ids of the peer's entries still held here.
    pub fn peer_quarantine_held(&self) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare("SELECT id FROM peer_quarantine WHERE state = 'held' ORDER BY id")
            .at(&self.conn)?;
        st.query_map([], |r| r.get(0))
            .at(&self.conn)?
            .collect::<rusqlite::Result<_>>()
            .at(&self.conn)
    }

    /// Whether the peer's entry `id` is kept here, and its state.
    pub fn peer_quarantine_state(&self, id: &str) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT state FROM peer_quarantine WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()
            .at(&self.conn)
    }

    /// The peer's held entries `ids` (their originals already linked into `DIR/quarantine/`)
    /// become this unit's own, in one transaction, and leave `peer_quarantine` with the copies
    /// no longer held; a held copy that could not be taken (not in `ids`, or a row this
    /// version's quarantine refuses) stays there. Returns the ids taken.
    pub fn peer_quarantine_adopt(&mut self, ids: &[String]) -> Result<Vec<String>> {
        let own = columns(&self.conn, "quarantine")?;
        let theirs = columns(&self.conn, "peer_quarantine")?;
        let common: Vec<&str> = own
            .iter()
            .filter(|c| theirs.contains(c) && c.as_str() != "changed")
            .map(String::as_str)
            .collect();
        let list = common.join(",");
        let tx = crate::begin_immediate(&mut self.conn)?;
        let mut taken = Vec::new();
        for id in ids {
            tx.execute(
                &format!(
                    "INSERT OR IGNORE INTO quarantine ({list}) SELECT {list} FROM peer_quarantine
                     WHERE id = ?1 AND state = 'held'"
                ),
                [id],
            )
            .at(&tx)?;
            let here: bool = tx
                .query_row(
                    "SELECT EXISTS(SELECT 1 FROM quarantine WHERE id = ?1)",
                    [id],
                    |r| r.get(0),
                )
                .at(&tx)?;
            if here {
                tx.execute("DELETE FROM peer_quarantine WHERE id = ?1", [id])
                    .at(&tx)?;
                taken.push(id.clone());
            }
        }
        tx.execute("DELETE FROM peer_quarantine WHERE state != 'held'", [])
            .at(&tx)?;
        tx.commit().at(&self.conn)?;
        Ok(taken)
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

    fn hold(db: &MailDb, id: &str) {
        db.conn
            .execute(
                "INSERT INTO quarantine (id, queue_id, received_at, expires_at, sender, recipients,
                 reason, size, sha256, smtputf8, listener, client_ip, state, updated_at)
                 VALUES (?1, 'Q', 1, 99, 's@x', 'r@y', 'rule', 10, x'00ff', 0, 'smtp', '192.0.2.1',
                 'held', 1)",
                [id],
            )
            .unwrap();
    }

    #[test]
    fn the_peers_quarantine_is_kept_apart_until_adopted() {
        let (_a, a) = db();
        let (_b, mut b) = db();
        hold(&a, "H1");
        hold(&a, "H2");
        let rows = a.own_quarantine_after(0, QUARANTINE_BATCH).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].changed, a.own_quarantine_head().unwrap());
        let maps: Vec<_> = rows.iter().map(|r| r.columns.clone()).collect();
        let cursor = b.peer_quarantine_apply("A", &maps).unwrap();
        assert_eq!(cursor, a.own_quarantine_head().unwrap());
        // Not in B's own quarantine, and B sends nothing of it back.
        assert!(b.own_quarantine_after(0, 100).unwrap().is_empty());
        assert_eq!(
            b.peer_quarantine_state("H1").unwrap().as_deref(),
            Some("held")
        );
        // A releases H2: the change travels.
        a.conn
            .execute(
                "UPDATE quarantine SET state = 'released', updated_at = 2 WHERE id = 'H2'",
                [],
            )
            .unwrap();
        let rows = a.own_quarantine_after(cursor, 100).unwrap();
        assert_eq!((rows.len(), rows[0].state.as_str()), (1, "released"));
        b.peer_quarantine_apply("A", &[rows[0].columns.clone()])
            .unwrap();
        assert_eq!(b.peer_quarantine_held().unwrap(), vec!["H1".to_string()]);
        // Adopted: H1 becomes B's own (with its sha256 intact), the copies are gone.
        assert_eq!(
            b.peer_quarantine_adopt(&["H1".into()]).unwrap(),
            vec!["H1".to_string()]
        );
        let sha: Vec<u8> = b
            .conn
            .query_row("SELECT sha256 FROM quarantine WHERE id = 'H1'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(sha, vec![0, 255]);
        assert!(b.peer_quarantine_held().unwrap().is_empty());
        assert_eq!(b.own_quarantine_after(0, 100).unwrap().len(), 1);
        // A row that is not a quarantine row is refused, and so is an id that is a path.
        let mut bad = Map::new();
        bad.insert("state".into(), Value::from("held"));
        assert!(b.peer_quarantine_apply("A", &[bad]).is_err());
        let mut path = maps[0].clone();
        path.insert("id".into(), Value::from("../spool/Q1"));
        assert!(b.peer_quarantine_apply("A", &[path]).is_err());
    }
}
