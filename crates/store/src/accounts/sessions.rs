//! Console sessions (the cookie's id is never stored, only its SHA-256), their timeouts, and
//! the one-line flash message a page shows after a redirect.

use rusqlite::{OptionalExtension, params};

use super::*;
use crate::now_unix;

/// How long a session lives without use, and at most.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    pub idle_secs: i64,
    pub absolute_secs: i64,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            idle_secs: 30 * 60,
            absolute_secs: 12 * 3600,
        }
    }
}

/// A logged-in session, found from its cookie.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    /// The token every form of this session must carry.
    pub csrf: String,
    pub created_at: i64,
    pub last_seen: i64,
    pub source: String,
}

/// A session just created: `id` goes into the cookie and is never stored.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: String,
    pub csrf: String,
}

impl Accounts {
    /// A new session for a user who just proved who they are.
    pub fn open_session(&mut self, user_id: i64, source: &str) -> Result<NewSession> {
        let id = random_hex(32);
        let csrf = random_hex(32);
        let now = now_unix();
        let c = &self.conn;
        sql(
            c,
            c.execute(
                "INSERT INTO console_session (id_hash, user_id, created_at, last_seen, source, csrf)
                 VALUES (?1, ?2, ?3, ?3, ?4, ?5)",
                params![sha256(&id), user_id, now, source, csrf],
            ),
        )?;
        Ok(NewSession { id, csrf })
    }

    /// The session a cookie names, if it exists and has not timed out (an expired one is
    /// deleted). Touches `last_seen`.
    pub fn session(&mut self, cookie: &str, policy: &SessionPolicy) -> Result<Option<Session>> {
        let now = now_unix();
        let key = sha256(cookie);
        let c = &self.conn;
        let row: Option<(i64, i64, i64, String, String)> = sql(
            c,
            c.query_row(
                "SELECT user_id, created_at, last_seen, source, csrf FROM console_session
                 WHERE id_hash = ?1",
                [&key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional(),
        )?;
        let Some((user_id, created_at, last_seen, source, csrf)) = row else {
            return Ok(None);
        };
        if now - last_seen > policy.idle_secs || now - created_at > policy.absolute_secs {
            sql(
                c,
                c.execute("DELETE FROM console_session WHERE id_hash = ?1", [&key]),
            )?;
            return Ok(None);
        }
        if now != last_seen {
            sql(
                c,
                c.execute(
                    "UPDATE console_session SET last_seen = ?2 WHERE id_hash = ?1",
                    params![key, now],
                ),
            )?;
        }
        let user = self.user(user_id)?;
        Ok(Some(Session {
            user,
            csrf,
            created_at,
            last_seen: now,
            source,
        }))
    }

    /// Ends the session a cookie names. Audited by the caller, who knows the user.
    pub fn close_session(&mut self, cookie: &str) -> Result<()> {
        let c = &self.conn;
        sql(
            c,
            c.execute(
                "DELETE FROM console_session WHERE id_hash = ?1",
                [sha256(cookie)],
            ),
        )?;
        Ok(())
    }

    /// Deletes sessions past their timeouts (housekeeping; `session` also refuses them).
    pub fn purge_sessions(&mut self, policy: &SessionPolicy) -> Result<usize> {
        let now = now_unix();
        let c = &self.conn;
        sql(
            c,
            c.execute(
                "DELETE FROM console_session WHERE last_seen < ?1 OR created_at < ?2",
                params![now - policy.idle_secs, now - policy.absolute_secs],
            ),
        )
    }

    /// A one-line message shown on the next page the session loads (after a redirect).
    pub fn set_flash(&mut self, cookie: &str, message: &str) -> Result<()> {
        let c = &self.conn;
        sql(
            c,
            c.execute(
                "UPDATE console_session SET flash = ?2 WHERE id_hash = ?1",
                params![sha256(cookie), message],
            ),
        )?;
        Ok(())
    }

    pub fn take_flash(&mut self, cookie: &str) -> Result<Option<String>> {
        let key = sha256(cookie);
        let c = &self.conn;
        let flash: Option<Option<String>> = sql(
            c,
            c.query_row(
                "SELECT flash FROM console_session WHERE id_hash = ?1",
                [&key],
                |r| r.get(0),
            )
            .optional(),
        )?;
        let flash = flash.flatten();
        if flash.is_some() {
            sql(
                c,
                c.execute(
                    "UPDATE console_session SET flash = NULL WHERE id_hash = ?1",
                    [&key],
                ),
            )?;
        }
        Ok(flash)
    }
}
