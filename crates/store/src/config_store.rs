//! Configuration revisions in `config.db`.
//!
//! Every change is a new row holding the whole validated configuration (as TOML, the same text
//! `config export` prints), its author, time and comment; the newest row is the configuration
//! in force. Whole documents rather than per-setting rows make rollback, diff and export
//! trivially correct, and a configuration is small. Writers name the revision they edited
//! (`expected`), so two admins editing at once get a conflict instead of silently undoing each
//! other's change.

use std::path::Path;

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use serde_json::json;

use crate::audit::AuditLog;
use crate::config::Config;
use crate::{Result, SqlContext, StoreError, migrate, now_unix, open_db};

/// Schema of `config.db`. Append only (see `migrate`).
pub const MIGRATIONS: &[&str] = &[
    "CREATE TABLE config_revision (
        id INTEGER PRIMARY KEY,
        created_at INTEGER NOT NULL,
        author TEXT NOT NULL,
        comment TEXT NOT NULL,
        config TEXT NOT NULL
    );",
    crate::accounts::MIGRATION_ACCOUNTS,
    crate::accounts::MIGRATION_LOGIN_SOURCES,
    crate::accounts::MIGRATION_ACCOUNTS_2,
];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Revision {
    pub id: i64,
    pub created_at: i64,
    pub author: String,
    pub comment: String,
    #[serde(skip)]
    pub config: Config,
}

pub struct ConfigStore {
    conn: rusqlite::Connection,
}

/// A unified diff of the TOML form of two configurations; empty when they are equal.
pub fn diff(old: &Config, new: &Config) -> String {
    let (a, b) = (old.to_toml(), new.to_toml());
    if a == b {
        return String::new();
    }
    similar::TextDiff::from_lines(&a, &b)
        .unified_diff()
        .context_radius(2)
        .header("before", "after")
        .to_string()
}

impl ConfigStore {
    pub fn open(path: &Path) -> Result<Self> {
        let mut conn = open_db(path)?;
        migrate::migrate(&mut conn, MIGRATIONS)?;
        Ok(ConfigStore { conn })
    }

    /// The connection, for other tables that live in `config.db` (console users, sessions).
    pub fn conn(&self) -> &rusqlite::Connection {
        &self.conn
    }

    pub fn conn_mut(&mut self) -> &mut rusqlite::Connection {
        &mut self.conn
    }

    fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, i64, String, String, String)> {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    }

    fn revision(&self, row: (i64, i64, String, String, String)) -> Result<Revision> {
        let (id, created_at, author, comment, text) = row;
        // A stored revision was valid when it was written; if it no longer parses, the build
        // reading it is missing a migration, which must not be papered over with defaults.
        let config = Config::from_toml(&text).map_err(StoreError::Invalid)?;
        Ok(Revision {
            id,
            created_at,
            author,
            comment,
            config,
        })
    }

    /// The configuration in force, or `None` before the first start.
    pub fn current(&self) -> Result<Option<Revision>> {
        let row = self
            .conn
            .query_row(
                "SELECT id, created_at, author, comment, config FROM config_revision
                 ORDER BY id DESC LIMIT 1",
                [],
                Self::row,
            )
            .optional()
            .at(&self.conn)?;
        row.map(|r| self.revision(r)).transpose()
    }

    pub fn get(&self, id: i64) -> Result<Revision> {
        let row = self
            .conn
            .query_row(
                "SELECT id, created_at, author, comment, config FROM config_revision WHERE id = ?1",
                [id],
                Self::row,
            )
            .optional()
            .at(&self.conn)?
            .ok_or(StoreError::NotFound {
                what: "configuration revision",
                id: id.to_string(),
            })?;
        self.revision(row)
    }

    /// Newest first, without the documents.
    pub fn history(&self, limit: u32) -> Result<Vec<(i64, i64, String, String)>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, created_at, author, comment FROM config_revision
                 ORDER BY id DESC LIMIT ?1",
            )
            .at(&self.conn)?;
        let rows = stmt
            .query_map([limit], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .at(&self.conn)?;
        rows.collect::<rusqlite::Result<_>>().at(&self.conn)
    }

    /// Records `cfg` as a new revision. `expected` is the revision the change was based on;
    /// `None` skips the check (import, first start). Returns the revision and the diff against
    /// the previous one.
    pub fn commit(
        &mut self,
        cfg: &Config,
        author: &str,
        comment: &str,
        expected: Option<i64>,
    ) -> Result<(Revision, String)> {
        cfg.validate().map_err(StoreError::Invalid)?;
        let text = cfg.to_toml();
        let tx = crate::begin_immediate(&mut self.conn)?;
        let prev: Option<(i64, String)> = tx
            .query_row(
                "SELECT id, config FROM config_revision ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .at(&tx)?;
        if let Some(expected) = expected {
            let current = prev.as_ref().map(|p| p.0).unwrap_or(0);
            if current != expected {
                return Err(StoreError::Conflict { expected, current });
            }
        }
        let created_at = now_unix();
        tx.execute(
            "INSERT INTO config_revision (created_at, author, comment, config) VALUES (?1, ?2, ?3, ?4)",
            params![created_at, author, comment, text],
        )
        .at(&tx)?;
        let id = tx.last_insert_rowid();
        tx.commit().at(&self.conn)?;
        let diff = match prev {
            Some((_, old)) => match Config::from_toml(&old) {
                Ok(old) => diff(&old, cfg),
                Err(_) => String::from("(previous revision unreadable)"),
            },
            None => diff(&Config::default(), cfg),
        };
        Ok((
            Revision {
                id,
                created_at,
                author: author.into(),
                comment: comment.into(),
                config: cfg.clone(),
            },
            diff,
        ))
    }

    /// Commits and records the change, with its diff, in the audit log. This is the one way
    /// every interface (console, CLI import, rollback) changes the configuration.
    #[allow(clippy::too_many_arguments)]
    pub fn commit_audited(
        &mut self,
        audit: &mut AuditLog,
        cfg: &Config,
        actor: &str,
        source: &str,
        comment: &str,
        expected: Option<i64>,
    ) -> Result<Revision> {
        let (rev, diff) = self.commit(cfg, actor, comment, expected)?;
        audit.append(
            actor,
            source,
            "config.commit",
            &rev.id.to_string(),
            &json!({ "comment": comment, "diff": diff }),
        )?;
        Ok(rev)
    }

    /// On first start: records `initial` as revision 1 if there is no revision yet.
    /// Returns the configuration in force either way.
    pub fn init(&mut self, audit: &mut AuditLog, initial: &Config) -> Result<Revision> {
        if let Some(rev) = self.current()? {
            return Ok(rev);
        }
        self.commit_audited(
            audit,
            initial,
            "system",
            "local",
            "initial configuration",
            Some(0),
        )
        .or_else(|e| match e {
            // Another process initialised it between our check and our commit.
            StoreError::Conflict { .. } => Ok(self.current()?.expect("committed")),
            e => Err(e),
        })
    }

    /// Makes revision `id`'s configuration current again, as a new revision.
    pub fn rollback(
        &mut self,
        audit: &mut AuditLog,
        id: i64,
        actor: &str,
        source: &str,
    ) -> Result<Revision> {
        let old = self.get(id)?;
        self.commit_audited(
            audit,
            &old.config,
            actor,
            source,
            &format!("rollback to revision {id}"),
            None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stores() -> (tempfile::TempDir, ConfigStore, AuditLog) {
        let d = tempfile::tempdir().unwrap();
        let c = ConfigStore::open(&d.path().join("config.db")).unwrap();
        let a = AuditLog::open(&d.path().join("audit.db")).unwrap();
        (d, c, a)
    }

    #[test]
    fn revisions_conflicts_rollback_and_audit() {
        let (_d, mut cs, mut audit) = stores();
        assert!(cs.current().unwrap().is_none());
        let r1 = cs.init(&mut audit, &Config::default()).unwrap();
        assert_eq!(r1.id, 1);
        // A second init is a no-op.
        assert_eq!(cs.init(&mut audit, &Config::default()).unwrap().id, 1);

        let mut cfg = r1.config.clone();
        cfg.smtp.max_recipients = 50;
        let r2 = cs
            .commit_audited(
                &mut audit,
                &cfg,
                "alice",
                "10.0.0.9",
                "fewer rcpts",
                Some(1),
            )
            .unwrap();
        assert_eq!(r2.id, 2);

        // Bob edited revision 1 too: his save must not silently undo Alice's change.
        let err = cs
            .commit(&Config::default(), "bob", "", Some(1))
            .unwrap_err();
        assert!(matches!(
            err,
            StoreError::Conflict {
                expected: 1,
                current: 2
            }
        ));

        let r3 = cs.rollback(&mut audit, 1, "alice", "10.0.0.9").unwrap();
        assert_eq!(r3.id, 3);
        assert_eq!(cs.current().unwrap().unwrap().config, Config::default());

        let entries = audit.list(&Default::default()).unwrap();
        assert_eq!(entries.len(), 3);
        assert!(
            entries[1].detail.contains("-max_recipients = 100"),
            "{}",
            entries[1].detail
        );
        assert!(entries[1].detail.contains("+max_recipients = 50"));
    }

    #[test]
    fn invalid_configuration_is_refused_with_all_problems() {
        let (_d, mut cs, _a) = stores();
        let mut cfg = Config::default();
        cfg.system.hostname = "not a host".into();
        cfg.smtp.max_recipients = 0;
        match cs.commit(&cfg, "x", "", None).unwrap_err() {
            StoreError::Invalid(p) => assert_eq!(p.len(), 2),
            e => panic!("{e}"),
        }
        assert!(cs.current().unwrap().is_none());
    }
}
