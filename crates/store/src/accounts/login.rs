//! Checking credentials: console logins and SMTP AUTH, with throttling, the hashing budget and
//! an audit entry for every verdict.

use std::sync::OnceLock;

use rusqlite::{OptionalExtension, params};
use serde_json::json;

use super::*;
use crate::audit::AuditLog;
use crate::now_unix;
use crate::password::{self, Priority, Verified};

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

impl Accounts {
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
            throttle::record_failure(c, &name, &key, now)?;
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
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not a password anyone has").unwrap_or_default())
}
