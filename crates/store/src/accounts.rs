//! Console accounts in `config.db`: users and roles, argon2id password hashes, sessions,
//! failed-login throttling, TOTP second factor, API tokens.
//!
//! Everything that decides whether someone gets in lives here, next to the data, so the
//! console, the CLI (`palisade admin reset-password`) and the supervisor (the first-start
//! administrator) share one implementation. Every login attempt and every change to an
//! account is written to the audit log by the method that makes it; callers cannot forget.
//!
//! Secrets never stored in clear: passwords (argon2id), session ids and API tokens (SHA-256 of
//! 256 random bits: a fast hash is enough for values nobody can guess). TOTP secrets are
//! needed in clear to verify a code, so they are sealed (ChaCha20-Poly1305) with a key only
//! the console's user can read: see [`crate::totp_key`] and [`Accounts::with_totp_key`].
//!
//! API tokens expire (30, 90 or 365 days; see [`TOKEN_LIFETIMES_DAYS`]): an expired token
//! is refused and listed as expired until it is revoked.
//!
//! Throttling (see [`throttle`]) never locks an account for everyone: failures are counted per
//! (account, source), per source, and per account from *unfamiliar* sources only, and each
//! count beyond its free allowance makes the next attempt wait twice as long as the one before
//! (capped). A source is familiar to an account when it is in the trusted (management) networks
//! or the account signed in from it before, so a stranger guessing `admin` from anywhere else
//! never keeps the administrator out. Password hashes run under a fixed memory and CPU budget
//! ([`crate::password`]); a throttled attempt computes no hash at all.

mod login;
mod sessions;
mod throttle;
mod tokens;
pub mod totp;

pub use login::{Credentials, LoginResult, Purpose};
pub use sessions::{NewSession, Session, SessionPolicy};
use std::path::Path;
pub(crate) use throttle::MIGRATION_LOGIN_SOURCES;
pub use throttle::{Counts, Scope, Tally, Throttle};
pub use tokens::{ApiToken, DEFAULT_TOKEN_LIFETIME_DAYS, TOKEN_LIFETIMES_DAYS};

use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use serde_json::json;

use crate::audit::AuditLog;
use crate::password::{self, Priority, Verified};
use crate::totp_key::TotpKey;
use crate::{SqlContext, StoreError, config_store, migrate, now_unix, open_db};

/// What a console user may do. Checked per route by the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including users and configuration.
    Administrator,
    /// The queue (and, later, quarantine); reads tracking and the dashboard.
    Operator,
    /// Reads everything, changes nothing.
    Auditor,
    /// Sends mail through the submission port after SMTP AUTH (a scanner, an application);
    /// no console access. Its password is set once and not forced to change (an SMTP client
    /// cannot).
    Submission,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Administrator,
        Role::Operator,
        Role::Auditor,
        Role::Submission,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Administrator => "administrator",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
            Role::Submission => "submission",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no such user: {0}")]
    NoSuchUser(String),
    #[error("a user named {0} already exists")]
    Exists(String),
    #[error("'{0}' is not a valid user name (1 to 64 letters, digits, '.', '_', '-', '@')")]
    BadName(String),
    #[error("{0}")]
    WeakPassword(&'static str),
    #[error("the current password is wrong")]
    WrongPassword,
    #[error("that code is not valid; check the device's clock and try again")]
    BadCode,
    #[error("authenticators can only be set up by the console (it holds the key that seals them)")]
    NoTotpKey,
    #[error("an API token lives 30, 90 or 365 days, not {0}")]
    BadTokenLifetime(u32),
    #[error("there must be at least one administrator")]
    LastAdministrator,
    #[error("no such API token")]
    NoSuchToken,
    #[error("password hashing: {0}")]
    Hash(String),
}

pub type Result<T, E = AccountError> = std::result::Result<T, E>;

fn sql<T>(conn: &rusqlite::Connection, r: rusqlite::Result<T>) -> Result<T> {
    r.at(conn).map_err(AccountError::from)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub must_change_password: bool,
    pub totp_enabled: bool,
    pub created_at: i64,
    pub password_changed_at: i64,
    pub last_login_at: Option<i64>,
}

/// The schema step for `config.db` that `config_store::MIGRATIONS` appends. Released: never
/// edit it; add a new step there instead.
pub(crate) const MIGRATION_ACCOUNTS: &str = "
    CREATE TABLE console_user (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        role TEXT NOT NULL CHECK (role IN ('administrator', 'operator', 'auditor', 'submission')),
        password_hash TEXT NOT NULL,
        must_change_password INTEGER NOT NULL DEFAULT 1,
        totp_secret BLOB,
        totp_pending BLOB,
        totp_last_step INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        password_changed_at INTEGER NOT NULL,
        last_login_at INTEGER
    );
    CREATE TABLE console_session (
        id_hash BLOB PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES console_user(id) ON DELETE CASCADE,
        created_at INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        source TEXT NOT NULL,
        csrf TEXT NOT NULL,
        flash TEXT
    );
    CREATE INDEX console_session_user ON console_session(user_id);
    CREATE TABLE console_login_failure (
        ts INTEGER NOT NULL,
        user_name TEXT NOT NULL COLLATE NOCASE,
        source TEXT NOT NULL
    );
    CREATE INDEX console_login_failure_user ON console_login_failure(user_name, ts);
    CREATE INDEX console_login_failure_source ON console_login_failure(source, ts);
    CREATE TABLE console_api_token (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES console_user(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        token_hash BLOB NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER
    );
";

/// Second schema step for `config.db`: API tokens get an expiry. Tokens made before it
/// expire 90 days after the upgrade (not at once: scripts using them keep working while
/// their owners replace them). TOTP secrets become sealed values in the same column (no
/// schema change: see `totp_key`).
pub(crate) const MIGRATION_ACCOUNTS_2: &str = "
    ALTER TABLE console_api_token ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 0;
    UPDATE console_api_token SET expires_at = CAST(strftime('%s', 'now') AS INTEGER) + 90 * 86400;
";

/// The user the first start creates.
pub const INITIAL_ADMIN: &str = "admin";
/// Shortest password a user may choose (one-time passwords are longer).
pub const MIN_PASSWORD_LEN: usize = 12;

pub struct Accounts {
    conn: rusqlite::Connection,
    /// Seals TOTP secrets; only the console has it (see `with_totp_key`).
    totp_key: Option<TotpKey>,
}

const USER_COLUMNS: &str = "id, name, role, must_change_password, totp_secret IS NOT NULL,
     created_at, password_changed_at, last_login_at";

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    let role: String = r.get(2)?;
    Ok(User {
        id: r.get(0)?,
        name: r.get(1)?,
        role: Role::parse(&role).unwrap_or(Role::Auditor),
        must_change_password: r.get(3)?,
        totp_enabled: r.get(4)?,
        created_at: r.get(5)?,
        password_changed_at: r.get(6)?,
        last_login_at: r.get(7)?,
    })
}

impl Accounts {
    /// Opens `config.db` (migrating it like `ConfigStore::open` does).
    pub fn open(path: &Path) -> Result<Self> {
        let mut conn = open_db(path)?;
        migrate::migrate(&mut conn, config_store::MIGRATIONS)?;
        Ok(Accounts {
            conn,
            totp_key: None,
        })
    }

    /// Gives these accounts the key that seals TOTP secrets. Without it (the CLI, the
    /// supervisor, the engine) nobody can enrol an authenticator, and a user with a sealed
    /// secret cannot pass the second factor here; everything else works.
    pub fn with_totp_key(mut self, key: TotpKey) -> Self {
        self.totp_key = Some(key);
        self
    }

    pub fn users(&self) -> Result<Vec<User>> {
        let c = &self.conn;
        let mut stmt = sql(
            c,
            c.prepare(&format!(
                "SELECT {USER_COLUMNS} FROM console_user ORDER BY name"
            )),
        )?;
        let rows = sql(c, stmt.query_map([], user_row))?;
        sql(c, rows.collect())
    }

    pub fn user(&self, id: i64) -> Result<User> {
        let c = &self.conn;
        sql(
            c,
            c.query_row(
                &format!("SELECT {USER_COLUMNS} FROM console_user WHERE id = ?1"),
                [id],
                user_row,
            )
            .optional(),
        )?
        .ok_or_else(|| AccountError::NoSuchUser(id.to_string()))
    }

    pub fn user_by_name(&self, name: &str) -> Result<Option<User>> {
        let c = &self.conn;
        sql(
            c,
            c.query_row(
                &format!("SELECT {USER_COLUMNS} FROM console_user WHERE name = ?1"),
                [name],
                user_row,
            )
            .optional(),
        )
    }

    fn administrators(&self) -> Result<i64> {
        let c = &self.conn;
        sql(
            c,
            c.query_row(
                "SELECT count(*) FROM console_user WHERE role = 'administrator'",
                [],
                |r| r.get(0),
            ),
        )
    }

    /// On first start: creates the administrator `admin` with a one-time password if there is
    /// no user at all, and returns that password (to be shown once, on the console).
    pub fn ensure_initial_admin(&mut self, audit: &mut AuditLog) -> Result<Option<String>> {
        let password = one_time_password();
        let hash = hash_password(&password)?;
        let now = now_unix();
        let tx = crate::begin_immediate(&mut self.conn)?;
        let users: i64 = tx
            .query_row("SELECT count(*) FROM console_user", [], |r| r.get(0))
            .at(&tx)?;
        if users > 0 {
            return Ok(None);
        }
        tx.execute(
            "INSERT INTO console_user (name, role, password_hash, must_change_password,
             created_at, password_changed_at) VALUES (?1, 'administrator', ?2, 1, ?3, ?3)",
            params![INITIAL_ADMIN, hash, now],
        )
        .at(&tx)?;
        tx.commit().at(&self.conn)?;
        audit.append(
            "system",
            "local",
            "user.create",
            INITIAL_ADMIN,
            &json!({ "role": "administrator", "reason": "first start" }),
        )?;
        Ok(Some(password))
    }

    /// Creates a user with a generated password (returned; console users change it at their
    /// first login).
    pub fn create_user(
        &mut self,
        audit: &mut AuditLog,
        name: &str,
        role: Role,
        actor: &str,
        source: &str,
    ) -> Result<(User, String)> {
        if !valid_name(name) {
            return Err(AccountError::BadName(name.into()));
        }
        if self.user_by_name(name)?.is_some() {
            return Err(AccountError::Exists(name.into()));
        }
        let password = one_time_password();
        let hash = hash_password(&password)?;
        let now = now_unix();
        let c = &self.conn;
        sql(
            c,
            c.execute(
                "INSERT INTO console_user (name, role, password_hash, must_change_password,
                 created_at, password_changed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                // An SMTP client cannot change its password: submission accounts keep theirs.
                params![name, role.as_str(), hash, role != Role::Submission, now],
            ),
        )?;
        let user = self.user(c.last_insert_rowid())?;
        audit.append(
            actor,
            source,
            "user.create",
            name,
            &json!({ "role": role.as_str() }),
        )?;
        Ok((user, password))
    }

    pub fn set_role(
        &mut self,
        audit: &mut AuditLog,
        id: i64,
        role: Role,
        actor: &str,
        source: &str,
    ) -> Result<User> {
        let user = self.user(id)?;
        if user.role == role {
            return Ok(user);
        }
        if user.role == Role::Administrator && self.administrators()? <= 1 {
            return Err(AccountError::LastAdministrator);
        }
        let c = &self.conn;
        sql(
            c,
            c.execute(
                "UPDATE console_user SET role = ?2 WHERE id = ?1",
                params![id, role.as_str()],
            ),
        )?;
        // Sessions carry the role they were opened with in nothing but the user row, so the
        // change applies at the next request; still, make the user log in again.
        sql(
            c,
            c.execute("DELETE FROM console_session WHERE user_id = ?1", [id]),
        )?;
        audit.append(
            actor,
            source,
            "user.role",
            &user.name,
            &json!({ "from": user.role.as_str(), "to": role.as_str() }),
        )?;
        self.user(id)
    }

    pub fn delete_user(
        &mut self,
        audit: &mut AuditLog,
        id: i64,
        actor: &str,
        source: &str,
    ) -> Result<()> {
        let user = self.user(id)?;
        if user.role == Role::Administrator && self.administrators()? <= 1 {
            return Err(AccountError::LastAdministrator);
        }
        let c = &self.conn;
        sql(c, c.execute("DELETE FROM console_user WHERE id = ?1", [id]))?;
        audit.append(
            actor,
            source,
            "user.delete",
            &user.name,
            &json!({ "role": user.role.as_str() }),
        )?;
        Ok(())
    }

    /// Recovery and admin reset: a new one-time password, changed at the next login; every
    /// session and the second factor of the user are dropped (a user who lost the password
    /// may also have lost the device).
    pub fn reset_password(
        &mut self,
        audit: &mut AuditLog,
        name: &str,
        actor: &str,
        source: &str,
    ) -> Result<String> {
        let user = self
            .user_by_name(name)?
            .ok_or_else(|| AccountError::NoSuchUser(name.into()))?;
        let password = one_time_password();
        let hash = hash_password(&password)?;
        let c = &self.conn;
        sql(
            c,
            c.execute(
                "UPDATE console_user SET password_hash = ?2, must_change_password = 1,
                 password_changed_at = ?3, totp_secret = NULL, totp_pending = NULL
                 WHERE id = ?1",
                params![user.id, hash, now_unix()],
            ),
        )?;
        sql(
            c,
            c.execute("DELETE FROM console_session WHERE user_id = ?1", [user.id]),
        )?;
        sql(
            c,
            c.execute(
                "DELETE FROM console_login_failure WHERE user_name = ?1",
                [&user.name],
            ),
        )?;
        audit.append(
            actor,
            source,
            "user.reset_password",
            &user.name,
            &json!({ "totp_cleared": user.totp_enabled }),
        )?;
        Ok(password)
    }

    /// Whether `password` is the user's password (to confirm a sensitive change by a user who
    /// is already logged in).
    pub fn password_matches(&self, id: i64, password: &str) -> Result<bool> {
        let stored: Option<String> = sql(
            &self.conn,
            self.conn
                .query_row(
                    "SELECT password_hash FROM console_user WHERE id = ?1",
                    [id],
                    |r| r.get(0),
                )
                .optional(),
        )?;
        Ok(stored.is_some_and(|h| verify_password(&h, password)))
    }

    /// A user changes their own password. Every session of the user ends; the caller opens a
    /// new one for the browser that made the change (see [`Accounts::open_session`]).
    pub fn change_password(
        &mut self,
        audit: &mut AuditLog,
        id: i64,
        current: &str,
        new: &str,
        source: &str,
    ) -> Result<User> {
        let user = self.user(id)?;
        let stored: String = sql(
            &self.conn,
            self.conn.query_row(
                "SELECT password_hash FROM console_user WHERE id = ?1",
                [id],
                |r| r.get(0),
            ),
        )?;
        if !verify_password(&stored, current) {
            audit.append(
                &user.name,
                source,
                "user.password_change_failed",
                &user.name,
                &json!({ "reason": "current password wrong" }),
            )?;
            return Err(AccountError::WrongPassword);
        }
        check_password_policy(&user.name, current, new)?;
        let hash = hash_password(new)?;
        let c = &self.conn;
        sql(
            c,
            c.execute(
                "UPDATE console_user SET password_hash = ?2, must_change_password = 0,
                 password_changed_at = ?3 WHERE id = ?1",
                params![id, hash, now_unix()],
            ),
        )?;
        sql(
            c,
            c.execute("DELETE FROM console_session WHERE user_id = ?1", [id]),
        )?;
        audit.append(
            &user.name,
            source,
            "user.password_changed",
            &user.name,
            &json!({ "sessions_ended": true }),
        )?;
        self.user(id)
    }
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
}

/// The rules for a password a user chooses.
pub fn check_password_policy(name: &str, current: &str, new: &str) -> Result<()> {
    if new.chars().count() < MIN_PASSWORD_LEN {
        return Err(AccountError::WeakPassword(
            "the new password must be at least 12 characters long",
        ));
    }
    if new.len() > 1024 {
        return Err(AccountError::WeakPassword("the new password is too long"));
    }
    if new == current {
        return Err(AccountError::WeakPassword(
            "the new password must differ from the current one",
        ));
    }
    if new.eq_ignore_ascii_case(name) {
        return Err(AccountError::WeakPassword(
            "the password must not be the user name",
        ));
    }
    if new.chars().all(|c| c == new.chars().next().unwrap_or(' ')) {
        return Err(AccountError::WeakPassword(
            "the password must not repeat one character",
        ));
    }
    Ok(())
}

fn sha256(s: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, s.as_bytes())
        .as_ref()
        .to_vec()
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut b)
        .expect("system random source");
    hex::encode(b)
}

/// 20 characters from an alphabet without look-alikes, in groups of five (99 bits).
pub fn one_time_password() -> String {
    const ALPHABET: &[u8; 31] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let rng = SystemRandom::new();
    let mut out = String::with_capacity(23);
    let mut n = 0;
    while n < 20 {
        let mut b = [0u8; 1];
        rng.fill(&mut b).expect("system random source");
        // Rejection sampling: 248 is the largest multiple of 31 below 256, so no bias.
        if b[0] >= 248 {
            continue;
        }
        if n > 0 && n % 5 == 0 {
            out.push('-');
        }
        out.push(ALPHABET[(b[0] % 31) as usize] as char);
        n += 1;
    }
    out
}

/// argon2id with OWASP's parameters (19 MiB, 2 passes), within the process's hashing budget.
pub fn hash_password(password: &str) -> Result<String> {
    password::hash_password(password).map_err(|e| AccountError::Hash(e.to_string()))
}

/// Whether `password` matches `hash`, for someone already signed in (confirming a change):
/// waits for the reserved slot; a busy budget counts as "no".
pub fn verify_password(hash: &str, password: &str) -> bool {
    password::verify_password(hash, password, Priority::Trusted) == Verified::Match
}

/// RFC 6238 TOTP (HMAC-SHA-1, 6 digits, 30-second steps): what every authenticator app does.
#[cfg(test)]
mod tests;
