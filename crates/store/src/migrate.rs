//! Versioned schema migrations, tracked in SQLite's `user_version`.
//!
//! Each database has an ordered list of migration scripts; migration `n` (1-based) brings the
//! schema from version `n-1` to `n`. Migrations only ever append: a released script is never
//! edited, so a database created by any earlier build upgrades in place. Opening a database
//! written by a newer build is refused rather than guessed at.

use rusqlite::Connection;

use crate::{Result, SqlContext, StoreError};

pub(crate) fn migrate(conn: &mut Connection, migrations: &[&str]) -> Result<()> {
    let known = migrations.len() as i64;
    // IMMEDIATE: two processes opening a fresh database at once must not both migrate it.
    let tx = crate::begin_immediate(conn)?;
    let found: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .at(&tx)?;
    if found > known {
        return Err(StoreError::SchemaTooNew {
            path: tx.path().unwrap_or("(memory)").to_string(),
            found,
            known,
        });
    }
    for (i, script) in migrations.iter().enumerate().skip(found as usize) {
        tx.execute_batch(script).at(&tx)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .at(&tx)?;
    }
    tx.commit().at(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_only_missing_steps_and_refuses_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = crate::open_db(&path).unwrap();
        migrate(&mut conn, &["CREATE TABLE a(x);"]).unwrap();
        // Re-running the first step would fail ("table a already exists"): it must be skipped.
        migrate(&mut conn, &["CREATE TABLE a(x);", "CREATE TABLE b(y);"]).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 2);
        let err = migrate(&mut conn, &["CREATE TABLE a(x);"]).unwrap_err();
        assert!(matches!(
            err,
            StoreError::SchemaTooNew {
                found: 2,
                known: 1,
                ..
            }
        ));
    }
}
