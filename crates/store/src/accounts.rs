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

mod throttle;
use std::path::Path;
use std::sync::OnceLock;
pub(crate) use throttle::MIGRATION_LOGIN_SOURCES;
pub use throttle::{Counts, Scope, Tally, Throttle};

use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, hmac};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use serde_json::json;

use crate::audit::AuditLog;
use crate::password::{self, Priority, Verified};
use crate::totp_key::{Opened, TotpKey};
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

#[derive(Debug)]
pub enum LoginResult {
    Success {
        user: User,
        session: NewSession,
    },
    /// Wrong user name, password or code: deliberately one answer for all three.
    Refused,
    /// Too many recent failures for this account or from this address: come back after
    /// `retry_after_secs`.
    Throttled {
        retry_after_secs: i64,
    },
    /// Every password-hashing slot is taken: a temporary failure, not a verdict.
    Busy,
}

/// Where credentials are being presented: decides which roles may use them and how the
/// attempts are named in the audit log (`login.*` or `smtp_auth.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Console,
    Submission,
}

impl Purpose {
    fn allows(self, role: Role) -> bool {
        match self {
            Purpose::Console => role != Role::Submission,
            Purpose::Submission => role == Role::Submission,
        }
    }
    fn action(self, what: &str) -> String {
        match self {
            Purpose::Console => format!("login.{what}"),
            Purpose::Submission => format!("smtp_auth.{what}"),
        }
    }
}

/// id, password hash, TOTP secret, last TOTP step, role.
type CredentialRow = (i64, String, Option<Vec<u8>>, i64, String);

/// The outcome of checking credentials.
#[derive(Debug)]
pub enum Credentials {
    Valid(User),
    /// Wrong user name, password, code or role: one answer for all.
    Refused,
    /// See [`LoginResult::Throttled`].
    Throttled {
        retry_after_secs: i64,
    },
    /// See [`LoginResult::Busy`].
    Busy,
}

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
const TOKEN_PREFIX: &str = "pal_";

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

    /// Checks a console login attempt and, if it succeeds, opens a new session. Every attempt
    /// is audited: `login.success`, `login.failed` (with the reason, which the user is not
    /// told), `login.throttled`.
    pub fn login(
        &mut self,
        audit: &mut AuditLog,
        name: &str,
        password: &str,
        code: Option<&str>,
        source: &str,
        throttle: &Throttle,
    ) -> Result<LoginResult> {
        match self.check_credentials(
            audit,
            name,
            password,
            code,
            source,
            throttle,
            Purpose::Console,
        )? {
            Credentials::Refused => Ok(LoginResult::Refused),
            Credentials::Throttled { retry_after_secs } => {
                Ok(LoginResult::Throttled { retry_after_secs })
            }
            Credentials::Busy => Ok(LoginResult::Busy),
            Credentials::Valid(user) => {
                let session = self.open_session(user.id, source)?;
                Ok(LoginResult::Success { user, session })
            }
        }
    }

    /// SMTP AUTH on the submission port: only `submission` accounts, same throttling and
    /// auditing (`smtp_auth.*`) as console logins.
    pub fn authenticate_submission(
        &mut self,
        audit: &mut AuditLog,
        name: &str,
        password: &str,
        source: &str,
        throttle: &Throttle,
    ) -> Result<Credentials> {
        self.check_credentials(
            audit,
            name,
            password,
            None,
            source,
            throttle,
            Purpose::Submission,
        )
    }

    /// Checks credentials with throttling, and audits the attempt.
    ///
    /// Order matters for what a stranger can make us spend: the throttle is consulted first
    /// (a few indexed SELECTs, no hash), then the password is verified within the hashing
    /// budget, and only a real verdict is recorded. Attempts refused by the throttle or the
    /// budget are logged, not audited one by one (the failure that started or lengthened a
    /// delay is audited as `*.throttled`, so the audit log records every throttle without
    /// letting an attacker grow it at will).
    #[allow(clippy::too_many_arguments)]
    fn check_credentials(
        &mut self,
        audit: &mut AuditLog,
        name: &str,
        password: &str,
        code: Option<&str>,
        source: &str,
        throttle: &Throttle,
        purpose: Purpose,
    ) -> Result<Credentials> {
        let now = now_unix();
        // An attacker chooses the name: keep what is recorded bounded.
        let name: String = name.trim().chars().take(64).collect();
        let key = throttle::source_key(source);
        let c = &self.conn;
        let familiar =
            throttle.is_trusted(source) || throttle::is_known(c, &name, &key, now, throttle)?;
        let counts = throttle::counts(c, &name, &key, now, throttle)?;
        if let Some((scope, retry_after_secs)) = throttle.wait(&counts, familiar, now) {
            tracing::warn!(
                event = "login.throttled",
                purpose = ?purpose,
                user = %name,
                source,
                scope = scope.as_str(),
                retry_after_secs,
                "attempt refused without checking the password"
            );
            return Ok(Credentials::Throttled { retry_after_secs });
        }

        let row: Option<CredentialRow> = sql(
            c,
            c.query_row(
                "SELECT id, password_hash, totp_secret, totp_last_step, role FROM console_user
                 WHERE name = ?1",
                [&name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional(),
        )?;
        let priority = if familiar {
            Priority::Trusted
        } else {
            Priority::Normal
        };
        // Same work for an unknown user as for a real one, so timing does not tell who exists.
        let stored = row.as_ref().map_or(dummy_hash(), |r| r.1.as_str());
        let verdict = password::verify_password(stored, password, priority);
        if verdict == Verified::Busy {
            tracing::warn!(event = "login.busy", purpose = ?purpose, user = %name, source,
                "password hashing budget exhausted; temporary failure");
            return Ok(Credentials::Busy);
        }
        let failure = match &row {
            None => Some("unknown user"),
            Some(_) if verdict != Verified::Match => Some("wrong password"),
            Some((_, _, _, _, role)) if !Role::parse(role).is_some_and(|r| purpose.allows(r)) => {
                Some("role not allowed here")
            }
            Some((id, _, Some(secret), last_step, _)) => {
                match code
                    .and_then(|code| self.totp_verify_stored(*id, secret, code, now, *last_step))
                {
                    Some(step) => {
                        sql(
                            c,
                            c.execute(
                                "UPDATE console_user SET totp_last_step = ?2 WHERE name = ?1",
                                params![name, step],
                            ),
                        )?;
                        None
                    }
                    None if code.is_none_or(|c| c.trim().is_empty()) => {
                        Some("second factor missing")
                    }
                    None => Some("wrong second factor"),
                }
            }
            Some(_) => None,
        };
        if let Some(reason) = failure {
            throttle::record_failure(c, &name, &key, now, throttle)?;
            audit.append(
                &name,
                source,
                &purpose.action("failed"),
                &name,
                &json!({ "reason": reason }),
            )?;
            // The delay this failure starts (or lengthens), per scope: audited, so every
            // throttle is on record.
            let after = counts.with_failure(now);
            for (scope, delay) in throttle.delays(&after, familiar) {
                audit.append(
                    &name,
                    source,
                    &purpose.action("throttled"),
                    &name,
                    &json!({ "scope": scope.as_str(), "failures": after.of(scope).count,
                             "delay_secs": delay, "window_secs": throttle.window_secs }),
                )?;
            }
            return Ok(Credentials::Refused);
        }
        let (id, _, secret, _, _) = row.expect("checked above");
        sql(
            c,
            c.execute(
                "UPDATE console_user SET last_login_at = ?2 WHERE id = ?1",
                params![id, now],
            ),
        )?;
        throttle::record_success(c, &name, &key, now)?;
        let user = self.user(id)?;
        audit.append(
            &user.name,
            source,
            &purpose.action("success"),
            &user.name,
            &json!({ "second_factor": secret.is_some(), "role": user.role.as_str(),
                     "familiar_source": familiar }),
        )?;
        Ok(Credentials::Valid(user))
    }

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

    /// Starts TOTP enrolment: a new secret, kept pending until a code from it is confirmed.
    /// Returns the secret in base32 and the `otpauth://` provisioning URI.
    pub fn totp_begin(&mut self, id: i64, issuer: &str) -> Result<(String, String)> {
        let user = self.user(id)?;
        let key = self.totp_key.as_ref().ok_or(AccountError::NoTotpKey)?;
        let mut secret = [0u8; crate::totp_key::LEGACY_LEN];
        SystemRandom::new()
            .fill(&mut secret)
            .expect("system random source");
        let c = &self.conn;
        sql(
            c,
            c.execute(
                "UPDATE console_user SET totp_pending = ?2 WHERE id = ?1",
                params![id, key.seal(id, &secret)],
            ),
        )?;
        let b32 = totp::base32(&secret);
        Ok((b32.clone(), totp::uri(issuer, &user.name, &b32)))
    }

    /// Completes enrolment when `code` comes from the pending secret.
    pub fn totp_confirm(
        &mut self,
        audit: &mut AuditLog,
        id: i64,
        code: &str,
        source: &str,
    ) -> Result<()> {
        let user = self.user(id)?;
        let c = &self.conn;
        let pending: Option<Vec<u8>> = sql(
            c,
            c.query_row(
                "SELECT totp_pending FROM console_user WHERE id = ?1",
                [id],
                |r| r.get(0),
            ),
        )?;
        let key = self.totp_key.as_ref().ok_or(AccountError::NoTotpKey)?;
        let plain = pending
            .as_deref()
            .and_then(|s| key.open(id, s))
            .map(|(Opened::Sealed(p) | Opened::Legacy(p))| p)
            .ok_or(AccountError::BadCode)?;
        let step = totp::verify(&plain, code, now_unix(), 0).ok_or(AccountError::BadCode)?;
        sql(
            c,
            c.execute(
                "UPDATE console_user SET totp_secret = ?3, totp_pending = NULL,
                 totp_last_step = ?2 WHERE id = ?1",
                params![id, step, key.seal(id, &plain)],
            ),
        )?;
        audit.append(
            &user.name,
            source,
            "user.totp_enabled",
            &user.name,
            &json!({}),
        )?;
        Ok(())
    }

    pub fn totp_disable(
        &mut self,
        audit: &mut AuditLog,
        id: i64,
        actor: &str,
        source: &str,
    ) -> Result<()> {
        let user = self.user(id)?;
        let c = &self.conn;
        sql(
            c,
            c.execute(
                "UPDATE console_user SET totp_secret = NULL, totp_pending = NULL WHERE id = ?1",
                [id],
            ),
        )?;
        audit.append(actor, source, "user.totp_disabled", &user.name, &json!({}))?;
        Ok(())
    }

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

impl Accounts {
    /// Checks `code` against a stored TOTP secret of user `id` (sealed, or legacy clear);
    /// a legacy secret that just proved itself is sealed on the spot. The step, as
    /// `totp::verify` gives it.
    fn totp_verify_stored(
        &self,
        id: i64,
        stored: &[u8],
        code: &str,
        now: i64,
        last_step: i64,
    ) -> Option<i64> {
        let opened = crate::totp_key::open_stored(self.totp_key.as_ref(), id, stored)?;
        let (Opened::Sealed(plain) | Opened::Legacy(plain)) = &opened;
        let step = totp::verify(plain, code, now, last_step)?;
        if let (Opened::Legacy(plain), Some(key)) = (&opened, &self.totp_key) {
            let r = self.conn.execute(
                "UPDATE console_user SET totp_secret = ?2 WHERE id = ?1 AND totp_secret = ?3",
                params![id, key.seal(id, plain), stored],
            );
            if let Err(e) = r {
                // Still valid in clear; the next successful use tries again.
                tracing::warn!(event = "accounts.totp_seal_failed", user_id = id, error = %e);
            }
        }
        Some(step)
    }

    /// Seals every legacy clear TOTP secret (and pending enrolment) still in `config.db`.
    /// The console does this when it starts; returns how many values it sealed.
    pub fn seal_legacy_totp(&mut self) -> Result<usize> {
        let Some(key) = self.totp_key.clone() else {
            return Ok(0);
        };
        let c = &self.conn;
        let mut n = 0;
        for column in ["totp_secret", "totp_pending"] {
            let rows: Vec<(i64, Vec<u8>)> = {
                let mut stmt = sql(
                    c,
                    c.prepare(&format!(
                        "SELECT id, {column} FROM console_user
                         WHERE length({column}) = {}",
                        crate::totp_key::LEGACY_LEN
                    )),
                )?;
                let rows = sql(c, stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))))?;
                sql(c, rows.collect())?
            };
            for (id, clear) in rows {
                n += sql(
                    c,
                    c.execute(
                        &format!(
                            "UPDATE console_user SET {column} = ?2 WHERE id = ?1 AND {column} = ?3"
                        ),
                        params![id, key.seal(id, &clear), clear],
                    ),
                )?;
            }
        }
        Ok(n)
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
    b.iter().map(|x| format!("{x:02x}")).collect()
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

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not a password anyone has").unwrap_or_default())
}

/// RFC 6238 TOTP (HMAC-SHA-1, 6 digits, 30-second steps): what every authenticator app does.
pub mod totp {
    use super::hmac;

    pub const STEP_SECS: i64 = 30;

    /// The code for time step `step` (RFC 4226 dynamic truncation).
    pub fn code_at(secret: &[u8], step: i64) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
        let mac = hmac::sign(&key, &(step as u64).to_be_bytes());
        let h = mac.as_ref();
        let off = (h[h.len() - 1] & 0x0f) as usize;
        let bin = u32::from_be_bytes([h[off] & 0x7f, h[off + 1], h[off + 2], h[off + 3]]);
        format!("{:06}", bin % 1_000_000)
    }

    /// The step `code` matches (now, one before, one after, for clock drift), if it is later
    /// than `last_step`: a code is accepted once.
    pub fn verify(secret: &[u8], code: &str, now: i64, last_step: i64) -> Option<i64> {
        let code = code.trim().replace(' ', "");
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let now_step = now / STEP_SECS;
        let mut found = None;
        // Compare every candidate, so timing does not say which step matched.
        for step in [now_step - 1, now_step, now_step + 1] {
            let want = code_at(secret, step);
            let same = want
                .bytes()
                .zip(code.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
            if same && step > last_step {
                found = Some(step);
            }
        }
        found
    }

    /// RFC 4648 base32 without padding, as authenticator apps expect.
    pub fn base32(data: &[u8]) -> String {
        const A: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let mut out = String::new();
        let (mut buf, mut bits) = (0u32, 0u32);
        for &b in data {
            buf = (buf << 8) | b as u32;
            bits += 8;
            while bits >= 5 {
                out.push(A[((buf >> (bits - 5)) & 31) as usize] as char);
                bits -= 5;
            }
        }
        if bits > 0 {
            out.push(A[((buf << (5 - bits)) & 31) as usize] as char);
        }
        out
    }

    pub fn base32_decode(s: &str) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let (mut buf, mut bits) = (0u32, 0u32);
        for c in s.bytes().filter(|c| *c != b'=' && *c != b' ') {
            let v = match c.to_ascii_uppercase() {
                c @ b'A'..=b'Z' => c - b'A',
                c @ b'2'..=b'7' => c - b'2' + 26,
                _ => return None,
            };
            buf = (buf << 5) | v as u32;
            bits += 5;
            if bits >= 8 {
                out.push((buf >> (bits - 8)) as u8);
                bits -= 8;
            }
        }
        Some(out)
    }

    fn pct(s: &str) -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }

    /// The provisioning URI (Key Uri Format) an authenticator app imports.
    pub fn uri(issuer: &str, account: &str, secret_b32: &str) -> String {
        format!(
            "otpauth://totp/{}:{}?secret={secret_b32}&issuer={}&algorithm=SHA1&digits=6&period=30",
            pct(issuer),
            pct(account),
            pct(issuer)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stores() -> (tempfile::TempDir, Accounts, AuditLog) {
        let d = tempfile::tempdir().unwrap();
        let a = Accounts::open(&d.path().join("config.db"))
            .unwrap()
            .with_totp_key(TotpKey::generate());
        let l = AuditLog::open(&d.path().join("audit.db")).unwrap();
        (d, a, l)
    }

    fn raw_totp(acc: &Accounts, id: i64) -> Vec<u8> {
        acc.conn
            .query_row(
                "SELECT totp_secret FROM console_user WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .unwrap()
    }

    #[test]
    fn totp_secrets_are_sealed_and_legacy_ones_resealed() {
        let (_d, mut acc, mut audit) = stores();
        let (bob, pw) = acc
            .create_user(&mut audit, "bob", Role::Operator, "admin", "x")
            .unwrap();
        let newpw = "correct horse battery";
        acc.change_password(&mut audit, bob.id, &pw, newpw, "x")
            .unwrap();
        let (b32, _) = acc.totp_begin(bob.id, "Palisade").unwrap();
        let secret = totp::base32_decode(&b32).unwrap();
        let pending: Vec<u8> = acc
            .conn
            .query_row(
                "SELECT totp_pending FROM console_user WHERE id = ?1",
                [bob.id],
                |r| r.get(0),
            )
            .unwrap();
        assert!(!pending.windows(secret.len()).any(|w| w == secret));
        let code = totp::code_at(&secret, now_unix() / 30 - 1);
        acc.totp_confirm(&mut audit, bob.id, &code, "x").unwrap();
        let stored = raw_totp(&acc, bob.id);
        assert_ne!(stored, secret);
        assert!(stored.len() > secret.len());
        assert!(!stored.windows(secret.len()).any(|w| w == secret));
        let t = Throttle::default();
        let code = totp::code_at(&secret, now_unix() / 30);
        let r = acc
            .login(&mut audit, "bob", newpw, Some(&code), "192.0.2.2", &t)
            .unwrap();
        assert!(matches!(r, LoginResult::Success { .. }));

        // Without the key (the engine, the CLI) the sealed secret cannot be used.
        let path = acc.conn.path().unwrap().to_string();
        let mut keyless = Accounts::open(Path::new(&path)).unwrap();
        let code = totp::code_at(&secret, now_unix() / 30 + 1);
        let r = keyless
            .login(&mut audit, "bob", newpw, Some(&code), "192.0.2.2", &t)
            .unwrap();
        assert!(matches!(r, LoginResult::Refused));
        assert!(matches!(
            keyless.totp_begin(bob.id, "P"),
            Err(AccountError::NoTotpKey)
        ));

        // A clear secret from before sealing still works, and is sealed once it is used.
        acc.conn
            .execute(
                "UPDATE console_user SET totp_secret = ?2, totp_last_step = 0 WHERE id = ?1",
                params![bob.id, secret],
            )
            .unwrap();
        let code = totp::code_at(&secret, now_unix() / 30 + 1);
        let r = acc
            .login(&mut audit, "bob", newpw, Some(&code), "192.0.2.2", &t)
            .unwrap();
        assert!(matches!(r, LoginResult::Success { .. }));
        let stored = raw_totp(&acc, bob.id);
        assert_ne!(stored, secret);
        assert!(!stored.windows(secret.len()).any(|w| w == secret));
        assert!(
            acc.totp_key
                .as_ref()
                .unwrap()
                .open(bob.id, &stored)
                .is_some()
        );

        // And the console seals the ones nobody used.
        acc.conn
            .execute(
                "UPDATE console_user SET totp_secret = ?2 WHERE id = ?1",
                params![bob.id, secret],
            )
            .unwrap();
        assert_eq!(acc.seal_legacy_totp().unwrap(), 1);
        assert_ne!(raw_totp(&acc, bob.id), secret);
        assert_eq!(acc.seal_legacy_totp().unwrap(), 0);
    }

    #[test]
    fn tokens_expire() {
        let (_d, mut acc, mut audit) = stores();
        let (u, pw) = acc
            .create_user(&mut audit, "ci", Role::Auditor, "admin", "x")
            .unwrap();
        acc.change_password(&mut audit, u.id, &pw, "correct horse battery", "x")
            .unwrap();
        assert!(matches!(
            acc.create_token(&mut audit, u.id, "t", 0, "x"),
            Err(AccountError::BadTokenLifetime(0))
        ));
        let (t, secret) = acc.create_token(&mut audit, u.id, "t", 30, "x").unwrap();
        assert_eq!(t.expires_at - t.created_at, 30 * 86400);
        assert!(acc.token_user(&secret).unwrap().is_some());
        let listed = acc.tokens(u.id).unwrap();
        assert!(listed[0].last_used_at.is_some());
        assert!(!listed[0].expired(now_unix()));
        acc.conn
            .execute(
                "UPDATE console_api_token SET expires_at = ?2 WHERE id = ?1",
                params![t.id, now_unix() - 1],
            )
            .unwrap();
        assert!(acc.token_user(&secret).unwrap().is_none());
        assert!(acc.tokens(u.id).unwrap()[0].expired(now_unix()));
    }

    #[test]
    fn tokens_from_before_expiry_get_ninety_days() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("config.db");
        {
            let mut conn = crate::open_db(&path).unwrap();
            migrate::migrate(&mut conn, &config_store::MIGRATIONS[..2]).unwrap();
            conn.execute(
                "INSERT INTO console_user (name, role, password_hash, created_at,
                 password_changed_at) VALUES ('old', 'auditor', 'x', 1, 1)",
                [],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO console_api_token (user_id, name, token_hash, created_at)
                 VALUES (1, 'old', x'00', 1)",
                [],
            )
            .unwrap();
        }
        let acc = Accounts::open(&path).unwrap();
        let t = &acc.tokens(1).unwrap()[0];
        assert!((t.expires_at - (now_unix() + 90 * 86400)).abs() < 60);
    }

    #[test]
    fn submission_accounts_send_mail_and_console_accounts_do_not() {
        let (_d, mut a, mut log) = stores();
        let t = Throttle::default();
        let (u, pw) = a
            .create_user(&mut log, "scanner", Role::Submission, "admin", "local")
            .unwrap();
        assert!(
            !u.must_change_password,
            "an SMTP client cannot change its password"
        );
        let (_, admin_pw) = a
            .create_user(&mut log, "alice", Role::Administrator, "admin", "local")
            .unwrap();
        assert!(matches!(
            a.login(&mut log, "scanner", &pw, None, "10.0.0.1", &t)
                .unwrap(),
            LoginResult::Refused
        ));
        assert!(matches!(
            a.authenticate_submission(&mut log, "scanner", &pw, "10.0.0.1", &t).unwrap(),
            Credentials::Valid(u) if u.name == "scanner"
        ));
        assert!(matches!(
            a.authenticate_submission(&mut log, "alice", &admin_pw, "10.0.0.1", &t)
                .unwrap(),
            Credentials::Refused
        ));
        let actions: Vec<String> = log
            .list(&Default::default())
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert!(actions.contains(&"login.failed".to_string()));
        assert!(actions.contains(&"smtp_auth.success".to_string()));
        assert!(actions.contains(&"smtp_auth.failed".to_string()));
    }

    #[test]
    fn rfc6238_vectors() {
        // RFC 6238 appendix B, SHA-1, truncated to 6 digits.
        let secret = b"12345678901234567890";
        for (t, code) in [
            (59, "287082"),
            (1111111109, "081804"),
            (1111111111, "050471"),
            (1234567890, "005924"),
            (2000000000, "279037"),
            (20000000000, "353130"),
        ] {
            assert_eq!(totp::code_at(secret, t / 30), code, "t={t}");
        }
        assert_eq!(totp::verify(secret, "287082", 59, 0), Some(1));
        // Replay of the same step is refused.
        assert_eq!(totp::verify(secret, "287082", 59, 1), None);
        assert_eq!(totp::verify(secret, "28708", 59, 0), None);
        let b = totp::base32(secret);
        assert_eq!(b, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(totp::base32_decode(&b).unwrap(), secret);
        assert!(totp::uri("Palisade gw", "a b", &b).starts_with(
            "otpauth://totp/Palisade%20gw:a%20b?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Palisade%20gw"
        ));
    }

    #[test]
    fn first_admin_login_change_and_sessions() {
        let (_d, mut acc, mut audit) = stores();
        let pw = acc.ensure_initial_admin(&mut audit).unwrap().unwrap();
        assert!(acc.ensure_initial_admin(&mut audit).unwrap().is_none());
        let t = Throttle::default();
        let LoginResult::Success { user, session } = acc
            .login(&mut audit, "admin", &pw, None, "192.0.2.1", &t)
            .unwrap()
        else {
            panic!("login failed")
        };
        assert!(user.must_change_password);
        let p = SessionPolicy::default();
        assert!(acc.session(&session.id, &p).unwrap().is_some());
        assert!(matches!(
            acc.change_password(
                &mut audit,
                user.id,
                "wrong",
                "a much better passphrase",
                "x"
            ),
            Err(AccountError::WrongPassword)
        ));
        assert!(matches!(
            acc.change_password(&mut audit, user.id, &pw, "short", "x"),
            Err(AccountError::WeakPassword(_))
        ));
        let u = acc
            .change_password(&mut audit, user.id, &pw, "a much better passphrase", "x")
            .unwrap();
        assert!(!u.must_change_password);
        // The password change ended the session.
        assert!(acc.session(&session.id, &p).unwrap().is_none());
        let actions: Vec<_> = audit
            .list(&Default::default())
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(
            actions,
            [
                "user.password_changed",
                "user.password_change_failed",
                "login.success",
                "user.create"
            ]
        );
    }

    fn quick_throttle() -> Throttle {
        Throttle {
            window_secs: 600,
            free_per_account_source: 3,
            free_per_source: 6,
            free_per_account: 5,
            first_delay_secs: 2,
            max_delay_secs: 4,
            ..Throttle::default()
        }
    }

    fn actions(audit: &AuditLog, prefix: &str) -> Vec<String> {
        audit
            .list(&crate::audit::AuditFilter {
                action_prefix: Some(prefix.into()),
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect()
    }

    #[test]
    fn a_stranger_guessing_is_slowed_down_but_never_locks_the_owner_out() {
        let (_d, mut acc, mut audit) = stores();
        let pw = acc.ensure_initial_admin(&mut audit).unwrap().unwrap();
        let t = quick_throttle();
        let (mut refused, mut throttled) = (0, 0);
        for i in 0..20 {
            match acc
                .login(
                    &mut audit,
                    "admin",
                    &format!("guess {i}"),
                    None,
                    "198.51.100.7",
                    &t,
                )
                .unwrap()
            {
                LoginResult::Refused => refused += 1,
                LoginResult::Throttled { retry_after_secs } => {
                    assert!((1..=2).contains(&retry_after_secs), "{retry_after_secs}");
                    throttled += 1;
                }
                r => panic!("{r:?}"),
            }
        }
        // Three free failures, then the fourth must wait 2 s: the rest were not checked.
        assert_eq!((refused, throttled), (3, 17));
        // The owner, from elsewhere, is not affected.
        let r = acc
            .login(&mut audit, "admin", &pw, None, "192.0.2.99", &t)
            .unwrap();
        assert!(matches!(r, LoginResult::Success { .. }), "{r:?}");
        // Each real failure is audited; the one that started a wait is audited as a throttle;
        // refused attempts are not audited one by one.
        assert_eq!(actions(&audit, "login.failed").len(), 3);
        assert_eq!(actions(&audit, "login.throttled").len(), 1);
        // After the wait the stranger may try again (and waits longer after that failure).
        std::thread::sleep(std::time::Duration::from_millis(2100));
        let r = acc
            .login(&mut audit, "admin", "again", None, "198.51.100.7", &t)
            .unwrap();
        assert!(matches!(r, LoginResult::Refused), "{r:?}");
        let r = acc
            .login(&mut audit, "admin", &pw, None, "198.51.100.7", &t)
            .unwrap();
        assert!(
            matches!(
                r,
                LoginResult::Throttled {
                    retry_after_secs: 3..=4
                }
            ),
            "{r:?}"
        );
    }

    #[test]
    fn a_distributed_attack_holds_back_unfamiliar_sources_only() {
        let (_d, mut acc, mut audit) = stores();
        let pw = acc.ensure_initial_admin(&mut audit).unwrap().unwrap();
        let t = Throttle {
            trusted_networks: vec!["10.20.0.0/16".parse().unwrap()],
            first_delay_secs: 60,
            max_delay_secs: 120,
            ..quick_throttle()
        };
        // The owner signs in once from their desk: that source becomes familiar.
        let r = acc
            .login(&mut audit, "admin", &pw, None, "192.0.2.10", &t)
            .unwrap();
        assert!(matches!(r, LoginResult::Success { .. }));
        // Ten addresses, one guess each: the account scope (5 free) holds back strangers.
        for i in 0..10 {
            acc.login(
                &mut audit,
                "admin",
                "guess",
                None,
                &format!("203.0.113.{i}"),
                &t,
            )
            .unwrap();
        }
        let r = acc
            .login(&mut audit, "admin", &pw, None, "203.0.113.200", &t)
            .unwrap();
        assert!(matches!(r, LoginResult::Throttled { .. }), "{r:?}");
        // The familiar source and the management network get in at once.
        let r = acc
            .login(&mut audit, "admin", &pw, None, "192.0.2.10", &t)
            .unwrap();
        assert!(matches!(r, LoginResult::Success { .. }), "{r:?}");
        let r = acc
            .login(&mut audit, "admin", &pw, None, "10.20.3.4", &t)
            .unwrap();
        assert!(matches!(r, LoginResult::Success { .. }), "{r:?}");
        // The owner's success did not wipe the attackers' count.
        let r = acc
            .login(&mut audit, "admin", &pw, None, "203.0.113.201", &t)
            .unwrap();
        assert!(matches!(r, LoginResult::Throttled { .. }), "{r:?}");
    }

    #[test]
    fn one_source_guessing_names_is_throttled_as_a_source() {
        let (_d, mut acc, mut audit) = stores();
        let pw = acc.ensure_initial_admin(&mut audit).unwrap().unwrap();
        let t = quick_throttle();
        // One /64 counts as one source.
        for i in 0..6 {
            let r = acc
                .login(
                    &mut audit,
                    &format!("user{i}"),
                    "x",
                    None,
                    &format!("2001:db8::{i}"),
                    &t,
                )
                .unwrap();
            assert!(matches!(r, LoginResult::Refused), "{r:?}");
        }
        let r = acc
            .login(&mut audit, "admin", &pw, None, "2001:db8::ffff", &t)
            .unwrap();
        assert!(matches!(r, LoginResult::Throttled { .. }), "{r:?}");
        let r = acc
            .login(&mut audit, "admin", &pw, None, "2001:db9::1", &t)
            .unwrap();
        assert!(matches!(r, LoginResult::Success { .. }), "{r:?}");
    }

    #[test]
    fn totp_login_users_tokens() {
        let (_d, mut acc, mut audit) = stores();
        acc.ensure_initial_admin(&mut audit).unwrap();
        let (bob, pw) = acc
            .create_user(&mut audit, "bob", Role::Operator, "admin", "x")
            .unwrap();
        assert!(matches!(
            acc.create_user(&mut audit, "BOB", Role::Auditor, "admin", "x"),
            Err(AccountError::Exists(_))
        ));
        assert!(matches!(
            acc.create_user(&mut audit, "bad name", Role::Auditor, "admin", "x"),
            Err(AccountError::BadName(_))
        ));
        let (b32, _) = acc.totp_begin(bob.id, "Palisade").unwrap();
        let secret = totp::base32_decode(&b32).unwrap();
        assert!(matches!(
            acc.totp_confirm(&mut audit, bob.id, "000000x", "x"),
            Err(AccountError::BadCode)
        ));
        let code = totp::code_at(&secret, now_unix() / 30 - 1);
        acc.totp_confirm(&mut audit, bob.id, &code, "x").unwrap();
        assert!(acc.user(bob.id).unwrap().totp_enabled);
        let t = Throttle::default();
        let r = acc
            .login(&mut audit, "bob", &pw, None, "192.0.2.2", &t)
            .unwrap();
        assert!(matches!(r, LoginResult::Refused));
        let code = totp::code_at(&secret, now_unix() / 30);
        let r = acc
            .login(&mut audit, "bob", &pw, Some(&code), "192.0.2.2", &t)
            .unwrap();
        assert!(matches!(r, LoginResult::Success { .. }));
        // The same code cannot be used twice.
        let r = acc
            .login(&mut audit, "bob", &pw, Some(&code), "192.0.2.2", &t)
            .unwrap();
        assert!(matches!(r, LoginResult::Refused));

        let admin = acc.user_by_name("admin").unwrap().unwrap();
        assert!(matches!(
            acc.delete_user(&mut audit, admin.id, "admin", "x"),
            Err(AccountError::LastAdministrator)
        ));
        assert!(matches!(
            acc.set_role(&mut audit, admin.id, Role::Auditor, "admin", "x"),
            Err(AccountError::LastAdministrator)
        ));

        // Tokens work once the password is no longer a one-time one.
        let (tok, secret_token) = acc
            .create_token(&mut audit, admin.id, "ci", 90, "x")
            .unwrap();
        assert!(acc.token_user(&secret_token).unwrap().is_none());
        let newpw = acc
            .reset_password(&mut audit, "admin", "cli:root", "local")
            .unwrap();
        acc.change_password(&mut audit, admin.id, &newpw, "correct horse battery", "x")
            .unwrap();
        assert_eq!(
            acc.token_user(&secret_token).unwrap().unwrap().name,
            "admin"
        );
        assert!(acc.token_user("pal_0000").unwrap().is_none());
        acc.revoke_token(&mut audit, admin.id, tok.id, "x").unwrap();
        assert!(acc.token_user(&secret_token).unwrap().is_none());
        acc.delete_user(&mut audit, bob.id, "admin", "x").unwrap();
        assert_eq!(acc.users().unwrap().len(), 1);
    }

    #[test]
    fn session_timeouts() {
        let (_d, mut acc, mut audit) = stores();
        acc.ensure_initial_admin(&mut audit).unwrap();
        let admin = acc.user_by_name("admin").unwrap().unwrap();
        let s = acc.open_session(admin.id, "x").unwrap();
        let p = SessionPolicy {
            idle_secs: 1,
            absolute_secs: 100,
        };
        acc.set_flash(&s.id, "saved").unwrap();
        assert_eq!(acc.take_flash(&s.id).unwrap().as_deref(), Some("saved"));
        assert_eq!(acc.take_flash(&s.id).unwrap(), None);
        assert!(acc.session(&s.id, &p).unwrap().is_some());
        std::thread::sleep(std::time::Duration::from_millis(2100));
        assert!(acc.session(&s.id, &p).unwrap().is_none());
        let s = acc.open_session(admin.id, "x").unwrap();
        acc.close_session(&s.id).unwrap();
        assert!(acc.session(&s.id, &p).unwrap().is_none());
        assert_eq!(one_time_password().len(), 23);
    }
}
