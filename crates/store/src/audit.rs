//! The audit log: every admin action and policy decision, in a hash chain.
//!
//! Entry `n` stores `hash_n = SHA-256(hash_{n-1} ‖ n ‖ ts ‖ actor ‖ source ‖ action ‖ target ‖
//! detail)` (fields length-prefixed), so changing, inserting or deleting any entry breaks every
//! hash after it and `verify` names the first entry that no longer fits. Appends from several
//! processes are serialised by SQLite's write lock (`BEGIN IMMEDIATE`), which is what keeps the
//! chain linear.
//!
//! Known limit: removing entries from the *end* leaves a shorter chain that still verifies.
//! Anchoring the head elsewhere (the SIEM stream, the HA peer) is what closes that gap.

use std::path::Path;

use ring::digest;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::{Result, SqlContext, migrate, now_unix, open_db};

const MIGRATIONS: &[&str] = &["CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        ts INTEGER NOT NULL,
        actor TEXT NOT NULL,
        source TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL,
        prev_hash BLOB NOT NULL,
        hash BLOB NOT NULL
    );
    CREATE INDEX audit_ts ON audit(ts);
    CREATE INDEX audit_action ON audit(action);"];

const ZERO_HASH: [u8; 32] = [0; 32];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub ts: i64,
    /// Who: a console user, `cli:<unix user>`, `engine`, `supervisor`.
    pub actor: String,
    /// From where: a client IP for the console, `local` for the CLI.
    pub source: String,
    /// Stable dotted name: `config.commit`, `login.failed`, `queue.delete`, ...
    pub action: String,
    /// What it was done to: a user name, queue id, revision number; may be empty.
    pub target: String,
    /// JSON with whatever else matters (a config diff, a reason).
    pub detail: String,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "lowercase")]
pub enum AuditVerdict {
    /// Every entry fits the chain; `head` is the last entry's hash.
    Intact { entries: i64, head: String },
    /// The first entry that does not fit, and why.
    Tampered { seq: i64, reason: String },
}

/// Filters for listing; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub actor: Option<String>,
    /// Matches `action` by prefix (`login.` finds every login event).
    pub action_prefix: Option<String>,
    /// Matches anywhere in target or detail.
    pub text: Option<String>,
    pub limit: Option<u32>,
    /// Newest first unless set.
    pub oldest_first: bool,
}

pub struct AuditLog {
    conn: rusqlite::Connection,
}

fn chain_hash(prev: &[u8], seq: i64, ts: i64, fields: [&str; 5]) -> Vec<u8> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(prev);
    ctx.update(&seq.to_be_bytes());
    ctx.update(&ts.to_be_bytes());
    for f in fields {
        ctx.update(&(f.len() as u64).to_be_bytes());
        ctx.update(f.as_bytes());
    }
    ctx.finish().as_ref().to_vec()
}

impl AuditLog {
    pub fn open(path: &Path) -> Result<Self> {
        let mut conn = open_db(path)?;
        migrate::migrate(&mut conn, MIGRATIONS)?;
        Ok(AuditLog { conn })
    }

    pub fn append(
        &mut self,
        actor: &str,
        source: &str,
        action: &str,
        target: &str,
        detail: &serde_json::Value,
    ) -> Result<AuditEntry> {
        let detail = detail.to_string();
        let tx = crate::begin_immediate(&mut self.conn)?;
        let last: Option<(i64, Vec<u8>)> = tx
            .query_row(
                "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .at(&tx)?;
        let (seq, prev) = match last {
            Some((s, h)) => (s + 1, h),
            None => (1, ZERO_HASH.to_vec()),
        };
        let ts = now_unix();
        let hash = chain_hash(&prev, seq, ts, [actor, source, action, target, &detail]);
        tx.execute(
            "INSERT INTO audit (seq, ts, actor, source, action, target, detail, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![seq, ts, actor, source, action, target, detail, prev, hash],
        )
        .at(&tx)?;
        tx.commit().at(&self.conn)?;
        tracing::info!(event = "audit.append", seq, actor, source, action, target);
        Ok(AuditEntry {
            seq,
            ts,
            actor: actor.into(),
            source: source.into(),
            action: action.into(),
            target: target.into(),
            detail,
            hash: hex::encode(hash),
        })
    }

    /// Walks the whole chain in order and reports the first entry that does not fit.
    pub fn verify(&self) -> Result<AuditVerdict> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT seq, ts, actor, source, action, target, detail, prev_hash, hash
                 FROM audit ORDER BY seq",
            )
            .at(&self.conn)?;
        let mut rows = stmt.query([]).at(&self.conn)?;
        let mut expected_seq = 1i64;
        let mut prev = ZERO_HASH.to_vec();
        while let Some(r) = rows.next().at(&self.conn)? {
            let get = |i| -> rusqlite::Result<String> { r.get(i) };
            let seq: i64 = r.get(0).at(&self.conn)?;
            let ts: i64 = r.get(1).at(&self.conn)?;
            let fields = [
                get(2).at(&self.conn)?,
                get(3).at(&self.conn)?,
                get(4).at(&self.conn)?,
                get(5).at(&self.conn)?,
                get(6).at(&self.conn)?,
            ];
            let stored_prev: Vec<u8> = r.get(7).at(&self.conn)?;
            let stored: Vec<u8> = r.get(8).at(&self.conn)?;
            if seq != expected_seq {
                return Ok(AuditVerdict::Tampered {
                    seq: expected_seq,
                    reason: format!("entry {expected_seq} is missing (next is {seq})"),
                });
            }
            if stored_prev != prev {
                return Ok(AuditVerdict::Tampered {
                    seq,
                    reason: "its link to the previous entry does not match".into(),
                });
            }
            let f = fields.each_ref().map(|s| s.as_str());
            if chain_hash(&prev, seq, ts, f) != stored {
                return Ok(AuditVerdict::Tampered {
                    seq,
                    reason: "its content does not match its hash".into(),
                });
            }
            prev = stored;
            expected_seq += 1;
        }
        Ok(AuditVerdict::Intact {
            entries: expected_seq - 1,
            head: hex::encode(prev),
        })
    }

    pub fn list(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let mut sql = String::from(
            "SELECT seq, ts, actor, source, action, target, detail, hash FROM audit WHERE 1=1",
        );
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(s) = f.since {
            sql.push_str(" AND ts >= ?");
            args.push(s.into());
        }
        if let Some(u) = f.until {
            sql.push_str(" AND ts <= ?");
            args.push(u.into());
        }
        if let Some(a) = &f.actor {
            sql.push_str(" AND actor = ?");
            args.push(a.clone().into());
        }
        if let Some(a) = &f.action_prefix {
            sql.push_str(" AND substr(action, 1, length(?)) = ?");
            args.push(a.clone().into());
            args.push(a.clone().into());
        }
        if let Some(t) = &f.text {
            sql.push_str(" AND (instr(target, ?) > 0 OR instr(detail, ?) > 0)");
            args.push(t.clone().into());
            args.push(t.clone().into());
        }
        sql.push_str(if f.oldest_first {
            " ORDER BY seq ASC"
        } else {
            " ORDER BY seq DESC"
        });
        if let Some(l) = f.limit {
            sql.push_str(&format!(" LIMIT {l}"));
        }
        let mut stmt = self.conn.prepare(&sql).at(&self.conn)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), |r| {
                Ok(AuditEntry {
                    seq: r.get(0)?,
                    ts: r.get(1)?,
                    actor: r.get(2)?,
                    source: r.get(3)?,
                    action: r.get(4)?,
                    target: r.get(5)?,
                    detail: r.get(6)?,
                    hash: hex::encode(r.get::<_, Vec<u8>>(7)?),
                })
            })
            .at(&self.conn)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().at(&self.conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn log_with(n: usize) -> (tempfile::TempDir, AuditLog) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = AuditLog::open(&dir.path().join("audit.db")).unwrap();
        for i in 0..n {
            log.append(
                "admin",
                "127.0.0.1",
                "config.commit",
                &i.to_string(),
                &json!({"i": i}),
            )
            .unwrap();
        }
        (dir, log)
    }

    #[test]
    fn intact_chain_verifies() {
        let (_d, log) = log_with(5);
        match log.verify().unwrap() {
            AuditVerdict::Intact { entries, .. } => assert_eq!(entries, 5),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn edited_entry_is_named() {
        let (_d, log) = log_with(5);
        log.conn
            .execute("UPDATE audit SET actor = 'mallory' WHERE seq = 3", [])
            .unwrap();
        assert!(matches!(
            log.verify().unwrap(),
            AuditVerdict::Tampered { seq: 3, .. }
        ));
    }

    #[test]
    fn deleted_entry_is_named() {
        let (_d, log) = log_with(5);
        log.conn
            .execute("DELETE FROM audit WHERE seq = 2", [])
            .unwrap();
        assert!(matches!(
            log.verify().unwrap(),
            AuditVerdict::Tampered { seq: 2, .. }
        ));
    }

    #[test]
    fn rehashed_entry_breaks_the_next_link() {
        // An attacker who rewrites entry 2 *and* recomputes its hash still breaks entry 3.
        let (_d, log) = log_with(4);
        let prev: Vec<u8> = log
            .conn
            .query_row("SELECT hash FROM audit WHERE seq = 1", [], |r| r.get(0))
            .unwrap();
        let ts: i64 = log
            .conn
            .query_row("SELECT ts FROM audit WHERE seq = 2", [], |r| r.get(0))
            .unwrap();
        let forged = chain_hash(
            &prev,
            2,
            ts,
            ["mallory", "127.0.0.1", "config.commit", "1", "{}"],
        );
        log.conn
            .execute(
                "UPDATE audit SET actor='mallory', detail='{}', hash=?1 WHERE seq=2",
                [forged],
            )
            .unwrap();
        assert!(matches!(
            log.verify().unwrap(),
            AuditVerdict::Tampered { seq: 3, .. }
        ));
    }

    #[test]
    fn filters() {
        let (_d, mut log) = log_with(3);
        log.append("bob", "local", "login.failed", "bob", &json!({}))
            .unwrap();
        let f = AuditFilter {
            action_prefix: Some("login.".into()),
            ..Default::default()
        };
        let got = log.list(&f).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].actor, "bob");
        let all = log
            .list(&AuditFilter {
                limit: Some(2),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 3]);
    }
}
