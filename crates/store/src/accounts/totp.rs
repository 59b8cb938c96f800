//! The TOTP second factor: enrolment, verification (sealed secrets, see `crate::totp_key`),
//! and the RFC 6238 primitives.

use rusqlite::params;
use serde_json::json;

use super::*;
use crate::audit::AuditLog;
use crate::now_unix;
use crate::totp_key::Opened;

impl Accounts {
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
}

impl Accounts {
    /// Checks `code` against a stored TOTP secret of user `id` (sealed, or legacy clear);
    /// a legacy secret that just proved itself is sealed on the spot. The step, as
    /// `totp::verify` gives it.
    pub(super) fn totp_verify_stored(
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

/// RFC 6238 as every authenticator app does it: HMAC-SHA-1, 6 digits, 30-second steps,
/// one step of clock drift either way (totp-rs).
pub const STEP_SECS: i64 = 30;

fn totp(secret: &[u8]) -> totp_rs::Totp {
    // build_noncompliant: the length rules of `build` are for new secrets; ours are 160 bits,
    // and a stored secret must keep working whatever the library's policy becomes.
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(STEP_SECS as u64)
        .with_secret(secret.to_vec())
        .build_noncompliant()
}

/// The code for time step `step`.
pub fn code_at(secret: &[u8], step: i64) -> String {
    totp(secret).generate((step * STEP_SECS) as u64).to_string()
}

/// The step `code` matches (now, one before, one after, for clock drift), if it is later
/// than `last_step`: a code is accepted once.
pub fn verify(secret: &[u8], code: &str, now: i64, last_step: i64) -> Option<i64> {
    let code = code.trim().replace(' ', "");
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) || now < 0 {
        return None;
    }
    let step = i64::try_from(totp(secret).check(&code, now as u64)?).ok()?;
    (step > last_step).then_some(step)
}

/// RFC 4648 base32 without padding, as authenticator apps expect.
pub fn base32(data: &[u8]) -> String {
    totp_rs::Secret::from(data.to_vec())
        .to_base32()
        .trim_end_matches('=')
        .to_string()
}

pub fn base32_decode(s: &str) -> Option<Vec<u8>> {
    let s: String = s.chars().filter(|c| *c != ' ' && *c != '=').collect();
    totp_rs::Secret::try_from_base32(s.to_ascii_uppercase())
        .ok()
        .map(|s| s.as_bytes().to_vec())
}

/// The provisioning URI (Key Uri Format) an authenticator app imports.
pub fn uri(issuer: &str, account: &str, secret_b32: &str) -> String {
    let secret = base32_decode(secret_b32).unwrap_or_default();
    let built = totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(STEP_SECS as u64)
        .with_secret(secret)
        .with_issuer(Some(issuer))
        .with_account_name(account)
        .build_noncompliant();
    built.to_url().unwrap_or_default()
}
