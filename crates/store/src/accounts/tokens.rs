//! API tokens: created once (only a SHA-256 of the token is kept), expiring, revocable.

use rusqlite::{OptionalExtension, params};
use serde_json::json;

use super::*;
use crate::audit::AuditLog;
use crate::now_unix;

#[derive(Debug, Clone, Serialize)]
pub struct ApiToken {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub created_at: i64,
    /// Refused from this time on.
    pub expires_at: i64,
    pub last_used_at: Option<i64>,
}

impl ApiToken {
    pub fn expired(&self, now: i64) -> bool {
        now >= self.expires_at
    }
}

/// How long a new API token may live, in days. There is no "never": a forgotten token in a
/// script is a credential nobody reviews.
pub const TOKEN_LIFETIMES_DAYS: [u32; 3] = [30, 90, 365];
pub const DEFAULT_TOKEN_LIFETIME_DAYS: u32 = 90;

const TOKEN_PREFIX: &str = "pal_";

impl Accounts {
    /// A new API token for `user_id`, with that user's role. Returned once; only its hash
    /// is kept.
    pub fn create_token(
        &mut self,
        audit: &mut AuditLog,
        user_id: i64,
        name: &str,
        lifetime_days: u32,
        source: &str,
    ) -> Result<(ApiToken, String)> {
        if !TOKEN_LIFETIMES_DAYS.contains(&lifetime_days) {
            return Err(AccountError::BadTokenLifetime(lifetime_days));
        }
        let user = self.user(user_id)?;
        let name: String = name.trim().chars().take(64).collect();
        let token = format!("{TOKEN_PREFIX}{}", random_hex(32));
        let now = now_unix();
        let expires_at = now + i64::from(lifetime_days) * 86400;
        let c = &self.conn;
        sql(
            c,
            c.execute(
                "INSERT INTO console_api_token (user_id, name, token_hash, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![user_id, name, sha256(&token), now, expires_at],
            ),
        )?;
        let t = ApiToken {
            id: c.last_insert_rowid(),
            user_id,
            name: name.clone(),
            created_at: now,
            expires_at,
            last_used_at: None,
        };
        audit.append(
            &user.name,
            source,
            "token.create",
            &user.name,
            &json!({ "token_id": t.id, "name": name, "expires_at": expires_at }),
        )?;
        Ok((t, token))
    }

    pub fn tokens(&self, user_id: i64) -> Result<Vec<ApiToken>> {
        let c = &self.conn;
        let mut stmt = sql(
            c,
            c.prepare(
                "SELECT id, user_id, name, created_at, expires_at, last_used_at
                 FROM console_api_token WHERE user_id = ?1 ORDER BY id",
            ),
        )?;
        let rows = sql(
            c,
            stmt.query_map([user_id], |r| {
                Ok(ApiToken {
                    id: r.get(0)?,
                    user_id: r.get(1)?,
                    name: r.get(2)?,
                    created_at: r.get(3)?,
                    expires_at: r.get(4)?,
                    last_used_at: r.get(5)?,
                })
            }),
        )?;
        sql(c, rows.collect())
    }

    /// Revokes a token of `user_id` (a user can only revoke their own).
    pub fn revoke_token(
        &mut self,
        audit: &mut AuditLog,
        user_id: i64,
        token_id: i64,
        source: &str,
    ) -> Result<()> {
        let user = self.user(user_id)?;
        let c = &self.conn;
        let n = sql(
            c,
            c.execute(
                "DELETE FROM console_api_token WHERE id = ?1 AND user_id = ?2",
                params![token_id, user_id],
            ),
        )?;
        if n == 0 {
            return Err(AccountError::NoSuchToken);
        }
        audit.append(
            &user.name,
            source,
            "token.revoke",
            &user.name,
            &json!({ "token_id": token_id }),
        )?;
        Ok(())
    }

    /// The user an API token belongs to. Expired tokens are refused, and users who must
    /// still change their password cannot use tokens.
    pub fn token_user(&mut self, token: &str) -> Result<Option<User>> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        let key = sha256(token);
        let c = &self.conn;
        let row: Option<(i64, i64, i64, Option<i64>)> = sql(
            c,
            c.query_row(
                "SELECT id, user_id, expires_at, last_used_at FROM console_api_token
                 WHERE token_hash = ?1",
                [&key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional(),
        )?;
        let Some((id, user_id, expires_at, last)) = row else {
            return Ok(None);
        };
        let now = now_unix();
        if now >= expires_at {
            tracing::info!(event = "console.token_expired", token_id = id);
            return Ok(None);
        }
        // Recorded at most once a minute: a busy script should not turn reads into writes.
        if last.is_none_or(|l| now - l >= 60) {
            sql(
                c,
                c.execute(
                    "UPDATE console_api_token SET last_used_at = ?2 WHERE id = ?1",
                    params![id, now],
                ),
            )?;
        }
        let user = self.user(user_id)?;
        Ok((!user.must_change_password).then_some(user))
    }
}
