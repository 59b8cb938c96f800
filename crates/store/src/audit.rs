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
use serde::{Deserialize, Serialize};

use crate::{Result, SqlContext, migrate, now_unix, open_db};

const MIGRATIONS: &[&str] = &[
    "CREATE TABLE audit (
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
    CREATE INDEX audit_action ON audit(action);",
    // 2: the HA peer's log, as it sent it (see `peer_append`).
    "CREATE TABLE peer_audit (
        chain INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        actor TEXT NOT NULL,
        source TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL,
        prev_hash BLOB NOT NULL,
        hash BLOB NOT NULL,
        received_at INTEGER NOT NULL,
        PRIMARY KEY (chain, seq)
    );",
];

/// Most entries sent to the peer in one frame.
pub const AUDIT_BATCH: u32 = 200;

/// An entry with its links, as it travels to the HA peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainEntry {
    pub seq: i64,
    pub ts: i64,
    pub actor: String,
    pub source: String,
    pub action: String,
    pub target: String,
    pub detail: String,
    /// Hex.
    pub prev_hash: String,
    /// Hex.
    pub hash: String,
}

/// Where the copy of the peer's log stands: its chain number (a new one starts when the
/// peer's log no longer continues the copy) and its newest entry.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerHead {
    pub chain: i64,
    pub seq: i64,
    /// Hex; `None` for an empty chain.
    pub hash: Option<String>,
}

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
        self.verify_chain(
            "SELECT seq, ts, actor, source, action, target, detail, prev_hash, hash
             FROM audit WHERE ?1 = 0 ORDER BY seq",
            0,
        )
    }

    /// Each chain of the peer's log kept here, verified like our own.
    pub fn peer_verify(&self) -> Result<Vec<(i64, AuditVerdict)>> {
        let chains: Vec<i64> = {
            let mut st = self
                .conn
                .prepare("SELECT DISTINCT chain FROM peer_audit ORDER BY chain")
                .at(&self.conn)?;
            st.query_map([], |r| r.get(0))
                .at(&self.conn)?
                .collect::<rusqlite::Result<_>>()
                .at(&self.conn)?
        };
        chains
            .into_iter()
            .map(|c| {
                let v = self.verify_chain(
                    "SELECT seq, ts, actor, source, action, target, detail, prev_hash, hash
                     FROM peer_audit WHERE chain = ?1 ORDER BY seq",
                    c,
                )?;
                Ok((c, v))
            })
            .collect()
    }

    fn verify_chain(&self, sql: &str, chain: i64) -> Result<AuditVerdict> {
        let mut stmt = self.conn.prepare(sql).at(&self.conn)?;
        let mut rows = stmt.query([chain]).at(&self.conn)?;
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
        self.list_from("audit", f)
    }

    /// The peer's log as kept here (every chain; the newest chain first unless oldest_first).
    pub fn peer_list(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
        self.list_from("peer_audit", f)
    }

    fn list_from(&self, table: &str, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let chain = table == "peer_audit";
        let mut sql = format!(
            "SELECT seq, ts, actor, source, action, target, detail, hash FROM {table} WHERE 1=1"
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
        sql.push_str(&if f.oldest_first {
            (if chain {
                " ORDER BY chain ASC, seq ASC"
            } else {
                " ORDER BY seq ASC"
            })
            .to_string()
        } else {
            (if chain {
                " ORDER BY chain DESC, seq DESC"
            } else {
                " ORDER BY seq DESC"
            })
            .to_string()
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

impl AuditLog {
    /// Our own entries after `after`, oldest first, at most `limit`: what the peer lacks.
    pub fn chain_after(&self, after: i64, limit: u32) -> Result<Vec<ChainEntry>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT seq, ts, actor, source, action, target, detail, prev_hash, hash
                 FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .at(&self.conn)?;
        let rows = st
            .query_map(params![after, limit], |r| {
                Ok(ChainEntry {
                    seq: r.get(0)?,
                    ts: r.get(1)?,
                    actor: r.get(2)?,
                    source: r.get(3)?,
                    action: r.get(4)?,
                    target: r.get(5)?,
                    detail: r.get(6)?,
                    prev_hash: hex::encode(r.get::<_, Vec<u8>>(7)?),
                    hash: hex::encode(r.get::<_, Vec<u8>>(8)?),
                })
            })
            .at(&self.conn)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().at(&self.conn)
    }

    /// The hash of our entry `seq` (hex), if there is one.
    pub fn hash_of(&self, seq: i64) -> Result<Option<String>> {
        let h: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT hash FROM audit WHERE seq = ?1", [seq], |r| r.get(0))
            .optional()
            .at(&self.conn)?;
        Ok(h.map(hex::encode))
    }

    /// Where the copy of the peer's log stands (chain 0, seq 0: nothing received yet).
    pub fn peer_head(&self) -> Result<PeerHead> {
        let row: Option<(i64, i64, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT chain, seq, hash FROM peer_audit ORDER BY chain DESC, seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .at(&self.conn)?;
        Ok(match row {
            Some((chain, seq, h)) => PeerHead {
                chain,
                seq,
                hash: Some(hex::encode(h)),
            },
            None => PeerHead {
                chain: 0,
                seq: 0,
                hash: None,
            },
        })
    }

    /// Appends what the peer sent to the copy of its log, in one transaction, after checking
    /// that every entry continues the copy (its number, its link, its own hash). `restart`
    /// begins a new chain (the peer's log no longer continues the copy: a new log, or one
    /// changed after it was sent; the old chain stays as it was received). Returns the head.
    pub fn peer_append(&mut self, entries: &[ChainEntry], restart: bool) -> Result<PeerHead> {
        let head = self.peer_head()?;
        let (chain, mut seq, mut prev) = if restart || head.chain == 0 {
            (head.chain + 1, 0, ZERO_HASH.to_vec())
        } else {
            let prev = hex::decode(head.hash.as_deref().unwrap_or_default())
                .map_err(|e| crate::StoreError::Inconsistent(e.to_string()))?;
            (head.chain, head.seq, prev)
        };
        let bad = |why: String| crate::StoreError::Inconsistent(why);
        let now = now_unix();
        let tx = crate::begin_immediate(&mut self.conn)?;
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO peer_audit (chain, seq, ts, actor, source, action, target, detail,
                     prev_hash, hash, received_at) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)",
                )
                .at(&tx)?;
            for e in entries {
                if e.seq != seq + 1 {
                    return Err(bad(format!(
                        "the peer's audit entry {} does not follow entry {seq} kept here",
                        e.seq
                    )));
                }
                let claimed_prev = hex::decode(&e.prev_hash).map_err(|x| bad(x.to_string()))?;
                if claimed_prev != prev {
                    return Err(bad(format!(
                        "the peer's audit entry {} does not link to the entry before it",
                        e.seq
                    )));
                }
                let fields = [e.actor.as_str(), &e.source, &e.action, &e.target, &e.detail];
                let hash = chain_hash(&prev, e.seq, e.ts, fields);
                if hex::encode(&hash) != e.hash {
                    return Err(bad(format!(
                        "the peer's audit entry {} does not match its hash",
                        e.seq
                    )));
                }
                ins.execute(params![
                    chain, e.seq, e.ts, e.actor, e.source, e.action, e.target, e.detail, prev,
                    hash, now
                ])
                .at(&tx)?;
                seq = e.seq;
                prev = hash;
            }
        }
        tx.commit().at(&self.conn)?;
        Ok(PeerHead {
            chain,
            seq,
            hash: (seq > 0).then(|| hex::encode(&prev)),
        })
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

    #[test]
    fn the_peers_log_is_kept_only_as_a_continuing_chain() {
        let (_a, a) = log_with(5);
        let (_b, mut b) = log_with(1);
        let first = a.chain_after(0, 3).unwrap();
        assert_eq!(b.peer_append(&first, false).unwrap().seq, 3);
        let rest = a.chain_after(3, AUDIT_BATCH).unwrap();
        let head = b.peer_append(&rest, false).unwrap();
        assert_eq!((head.chain, head.seq), (1, 5));
        assert_eq!(head.hash, a.hash_of(5).unwrap());
        // A gap, a resend, a changed entry: refused, nothing kept.
        assert!(b.peer_append(&first, false).is_err());
        let mut changed = a.chain_after(0, 1).unwrap();
        changed[0].actor = "mallory".into();
        assert!(b.peer_append(&changed, true).is_err());
        assert_eq!(b.peer_head().unwrap().seq, 5);
        // A new log on the peer starts a second chain; the first stays.
        let (_c, c) = log_with(2);
        let head = b.peer_append(&c.chain_after(0, 10).unwrap(), true).unwrap();
        assert_eq!((head.chain, head.seq), (2, 2));
        let verdicts = b.peer_verify().unwrap();
        assert_eq!(verdicts.len(), 2);
        assert!(
            verdicts
                .iter()
                .all(|(_, v)| matches!(v, AuditVerdict::Intact { .. }))
        );
        assert_eq!(b.peer_list(&AuditFilter::default()).unwrap().len(), 7);
        // Our own log is untouched by the copy.
        assert!(matches!(
            b.verify().unwrap(),
            AuditVerdict::Intact { entries: 1, .. }
        ));
    }
}
