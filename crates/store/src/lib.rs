//! Palisade's persistent state in SQLite: the data directory's layout, schemas and their
//! migrations, the typed configuration with its revisions, the hash-chained audit log, queue
//! rows and message tracking.
//!
//! This crate owns *what is stored and how it is shaped*; it never decides what to do with mail
//! (that is `spool` and `engine`) and never talks to the network.
//!
//! Databases (all WAL, `synchronous=FULL`, shared by several processes):
//! - `config.db`: configuration revisions, console users and sessions;
//! - `audit.db`: the audit chain;
//! - `bayes.db`: the Bayes classifier's token statistics (`bayes`);
//! - `mail.db`: queue rows and message tracking, in one file so that accepting a message is a
//!   single transaction (SQLite does not make a transaction across attached WAL databases atomic).

#![forbid(unsafe_code)]

pub mod accounts;
pub mod audit;
pub mod bayes;
pub mod clamav;
pub mod config;
pub mod config_store;
pub mod data_dir;
pub mod digest;
pub mod dkim;
pub mod mail;
mod migrate;
pub mod password;
pub mod totp_key;

use std::path::Path;
use std::time::Duration;

pub use audit::{AuditEntry, AuditLog, AuditVerdict};
pub use config::{Config, Problem};
pub use config_store::{ConfigStore, Revision};
pub use data_dir::DataDir;
pub use mail::MailDb;
/// Re-exported so callers can inspect SQLite error codes without their own dependency.
pub use rusqlite;

/// Errors a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "database {path} has schema version {found}, newer than this build understands ({known})"
    )]
    SchemaTooNew {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("configuration is invalid ({} problem(s))", .0.len())]
    Invalid(Vec<Problem>),
    #[error("configuration changed since revision {expected} (now {current}); reload and retry")]
    Conflict { expected: i64, current: i64 },
    #[error("no such {what}: {id}")]
    NotFound { what: &'static str, id: String },
    /// A stored value this build cannot read (a damaged or hand-edited row).
    #[error("{table}.{column} holds {value:?}, which is not a valid value")]
    BadValue {
        table: &'static str,
        column: &'static str,
        value: String,
    },
    /// A batch that contradicts itself or the stored rows (a recipient naming an artifact the
    /// message does not have, a quarantine entry that is no longer held): nothing was written.
    #[error("{0}")]
    Inconsistent(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Wraps a rusqlite error with the database it came from, so messages say which file failed.
pub(crate) trait SqlContext<T> {
    fn at(self, conn: &rusqlite::Connection) -> Result<T>;
}

impl<T> SqlContext<T> for rusqlite::Result<T> {
    fn at(self, conn: &rusqlite::Connection) -> Result<T> {
        self.map_err(|source| StoreError::Sqlite {
            path: conn.path().unwrap_or("(memory)").to_string(),
            source,
        })
    }
}

/// Starts a write transaction that takes SQLite's write lock at once (`BEGIN IMMEDIATE`), so a
/// read-then-write sequence (the audit chain's head, a revision check) cannot interleave with
/// another process's.
pub(crate) fn begin_immediate(
    conn: &mut rusqlite::Connection,
) -> Result<rusqlite::Transaction<'_>> {
    let path = conn.path().unwrap_or("(memory)").to_string();
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|source| StoreError::Sqlite { path, source })
}

/// Opens a database the way every Palisade process must: WAL so that the console reads while
/// the engine writes, `synchronous=FULL` because a commit is a promise to a client, foreign
/// keys on, and a busy timeout so that short write contention between processes waits instead
/// of failing.
pub fn open_db(path: &Path) -> Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path).map_err(|source| StoreError::Sqlite {
        path: path.display().to_string(),
        source,
    })?;
    conn.busy_timeout(Duration::from_secs(30)).at(&conn)?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         PRAGMA synchronous=FULL;
         PRAGMA foreign_keys=ON;",
    )
    .at(&conn)?;
    Ok(conn)
}

/// Seconds since the Unix epoch, the one time unit stored in every table.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch (the HA heartbeats and their published state).
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// RFC 3339 rendering of a stored timestamp, for CLI and export output.
pub fn format_unix(ts: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ts.to_string())
}
