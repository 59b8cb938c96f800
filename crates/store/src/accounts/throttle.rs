//! Failed-login throttling that strangers cannot turn into a lock-out.
//!
//! Failures are recorded in `console_login_failure` (time, account name, source key) and
//! counted over a sliding window in three scopes:
//!
//! | scope | counts | applies to |
//! |---|---|---|
//! | account + source | one account's failures from one source | every attempt |
//! | source | failures from one source, any account (name guessing) | every attempt |
//! | account | one account's failures from everywhere (a distributed attack) | unfamiliar sources only |
//!
//! Each scope has a free allowance; every failure beyond it doubles the wait before the next
//! attempt in that scope (from `first_delay_secs` up to `max_delay_secs`), measured from the
//! last failure. There is no hard lock: the wait ends on its own, and a source that is
//! *familiar* to the account — in `trusted_networks` (the management network) or one the account
//! signed in from within `familiar_secs` — is never held back by what other sources did. An
//! IPv6 source counts as its /64, an IPv4-mapped one as the IPv4 address.

use std::net::IpAddr;

use ipnet::IpNet;
use rusqlite::{OptionalExtension, params};

use super::{Result, sql};

/// Throttle settings; [`Throttle::default`] is what the services use.
#[derive(Debug, Clone)]
pub struct Throttle {
    /// Failures older than this are forgotten.
    pub window_secs: i64,
    /// Failures for one account from one source before waits begin.
    pub free_per_account_source: u32,
    /// Failures from one source, over all accounts, before waits begin.
    pub free_per_source: u32,
    /// Failures for one account from all sources before unfamiliar sources must wait.
    pub free_per_account: u32,
    /// The first wait; each further failure doubles it.
    pub first_delay_secs: i64,
    pub max_delay_secs: i64,
    /// Sources in these networks are familiar to every account.
    pub trusted_networks: Vec<IpNet>,
    /// How long a source stays familiar after a successful sign-in from it.
    pub familiar_secs: i64,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            window_secs: 3600,
            free_per_account_source: 5,
            free_per_source: 20,
            free_per_account: 10,
            first_delay_secs: 1,
            max_delay_secs: 15 * 60,
            trusted_networks: Vec::new(),
            familiar_secs: 90 * 86400,
        }
    }
}

/// Which count a wait comes from (recorded in the audit entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    AccountSource,
    Source,
    Account,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::AccountSource => "account+source",
            Scope::Source => "source",
            Scope::Account => "account",
        }
    }
}

/// Failures in one scope within the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub count: u32,
    /// Time of the latest failure (0 when none).
    pub last: i64,
}

/// The three tallies for one attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub account_source: Tally,
    pub source: Tally,
    pub account: Tally,
}

impl Counts {
    pub fn of(&self, scope: Scope) -> Tally {
        match scope {
            Scope::AccountSource => self.account_source,
            Scope::Source => self.source,
            Scope::Account => self.account,
        }
    }

    /// The tallies once a failure at `now` is added.
    pub fn with_failure(&self, now: i64) -> Counts {
        let add = |t: Tally| Tally {
            count: t.count + 1,
            last: now,
        };
        Counts {
            account_source: add(self.account_source),
            source: add(self.source),
            account: add(self.account),
        }
    }
}

impl Throttle {
    fn free(&self, scope: Scope) -> u32 {
        match scope {
            Scope::AccountSource => self.free_per_account_source,
            Scope::Source => self.free_per_source,
            Scope::Account => self.free_per_account,
        }
    }

    fn scopes(familiar: bool) -> &'static [Scope] {
        if familiar {
            &[Scope::AccountSource, Scope::Source]
        } else {
            &[Scope::AccountSource, Scope::Source, Scope::Account]
        }
    }

    /// The wait that `count` failures impose in `scope`, in seconds (0: none).
    pub fn delay(&self, scope: Scope, count: u32) -> i64 {
        let free = self.free(scope);
        if count < free {
            return 0;
        }
        let doublings = (count - free).min(40);
        self.first_delay_secs
            .saturating_mul(1i64 << doublings)
            .min(self.max_delay_secs)
    }

    /// Whether an attempt now must wait, and for which scope and how long (the longest).
    pub fn wait(&self, counts: &Counts, familiar: bool, now: i64) -> Option<(Scope, i64)> {
        Self::scopes(familiar)
            .iter()
            .filter_map(|&scope| {
                let t = counts.of(scope);
                let remaining = t.last + self.delay(scope, t.count) - now;
                (t.count > 0 && remaining > 0).then_some((scope, remaining))
            })
            .max_by_key(|&(_, r)| r)
    }

    /// The waits that tallies impose (after a failure: what to audit).
    pub fn delays(&self, counts: &Counts, familiar: bool) -> Vec<(Scope, i64)> {
        Self::scopes(familiar)
            .iter()
            .map(|&scope| (scope, self.delay(scope, counts.of(scope).count)))
            .filter(|&(_, d)| d > 0)
            .collect()
    }

    /// Whether `source` is in the trusted networks.
    pub fn is_trusted(&self, source: &str) -> bool {
        let Ok(ip) = source.parse::<IpAddr>() else {
            return false;
        };
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.trusted_networks.iter().any(|n| n.contains(&ip))
    }
}

/// The key failures from `source` are recorded under: one IPv6 /64 counts as one source.
pub fn source_key(source: &str) -> String {
    match source.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Ok(v4) => v4.to_string(),
        Err(_) => source.to_string(),
    }
}

/// The account name that failed release links of the quarantine digest are counted under:
/// they share the per-source tally with failed sign-ins (a stranger guessing either is slowed
/// down the same way); no user can have this name (names have no parentheses or spaces).
pub const RELEASE_LINK: &str = "(release link)";

impl super::Accounts {
    /// Whether `source` must wait before its next release-link attempt (seconds left), after
    /// its recent failures (a bad, expired or used link). The account scope does not apply:
    /// strangers elsewhere cannot slow down a recipient's own link.
    pub fn release_link_wait(&self, source: &str, now: i64, t: &Throttle) -> Result<Option<i64>> {
        let c = &self.conn;
        let n = counts(c, RELEASE_LINK, &source_key(source), now, t)?;
        Ok(t.wait(&n, true, now).map(|(_, secs)| secs))
    }

    /// Records a failed release-link attempt from `source`.
    pub fn release_link_failure(&self, source: &str, now: i64) -> Result<()> {
        record_failure(&self.conn, RELEASE_LINK, &source_key(source), now)
    }
}

/// The schema step that adds the familiar sources (appended to `config_store::MIGRATIONS`).
pub(crate) const MIGRATION_LOGIN_SOURCES: &str = "
    CREATE TABLE console_login_source (
        user_name TEXT NOT NULL COLLATE NOCASE,
        source TEXT NOT NULL,
        last_success INTEGER NOT NULL,
        PRIMARY KEY (user_name, source)
    );
";

/// Whether the account signed in from this source recently enough to trust it.
pub(super) fn is_known(
    c: &rusqlite::Connection,
    name: &str,
    key: &str,
    now: i64,
    t: &Throttle,
) -> Result<bool> {
    let last: Option<i64> = sql(
        c,
        c.query_row(
            "SELECT last_success FROM console_login_source WHERE user_name = ?1 AND source = ?2",
            params![name, key],
            |r| r.get(0),
        )
        .optional(),
    )?;
    Ok(last.is_some_and(|l| now - l <= t.familiar_secs))
}

/// The tallies for an attempt by `name` from `key`, after forgetting expired failures.
pub(super) fn counts(
    c: &rusqlite::Connection,
    name: &str,
    key: &str,
    now: i64,
    t: &Throttle,
) -> Result<Counts> {
    let since = now - t.window_secs;
    sql(
        c,
        c.execute("DELETE FROM console_login_failure WHERE ts < ?1", [since]),
    )?;
    let tally = |r: &rusqlite::Row<'_>, i: usize| -> rusqlite::Result<Tally> {
        Ok(Tally {
            count: r.get(i)?,
            last: r.get::<_, Option<i64>>(i + 1)?.unwrap_or(0),
        })
    };
    sql(
        c,
        c.query_row(
            "SELECT (SELECT count(*) FROM console_login_failure
                     WHERE user_name = ?1 AND source = ?2 AND ts >= ?3),
                    (SELECT max(ts) FROM console_login_failure
                     WHERE user_name = ?1 AND source = ?2 AND ts >= ?3),
                    (SELECT count(*) FROM console_login_failure WHERE source = ?2 AND ts >= ?3),
                    (SELECT max(ts) FROM console_login_failure WHERE source = ?2 AND ts >= ?3),
                    (SELECT count(*) FROM console_login_failure WHERE user_name = ?1 AND ts >= ?3),
                    (SELECT max(ts) FROM console_login_failure WHERE user_name = ?1 AND ts >= ?3)",
            params![name, key, since],
            |r| {
                Ok(Counts {
                    account_source: tally(r, 0)?,
                    source: tally(r, 2)?,
                    account: tally(r, 4)?,
                })
            },
        ),
    )
}

pub(super) fn record_failure(
    c: &rusqlite::Connection,
    name: &str,
    key: &str,
    now: i64,
) -> Result<()> {
    sql(
        c,
        c.execute(
            "INSERT INTO console_login_failure (ts, user_name, source) VALUES (?1, ?2, ?3)",
            params![now, name, key],
        ),
    )?;
    Ok(())
}

/// A sign-in succeeded: this source's failures for the account are forgiven (others' are not:
/// the owner signing in must not reset an attacker's count) and the source becomes familiar.
pub(super) fn record_success(
    c: &rusqlite::Connection,
    name: &str,
    key: &str,
    now: i64,
) -> Result<()> {
    sql(
        c,
        c.execute(
            "DELETE FROM console_login_failure WHERE user_name = ?1 AND source = ?2",
            params![name, key],
        ),
    )?;
    sql(
        c,
        c.execute(
            "INSERT INTO console_login_source (user_name, source, last_success) VALUES (?1, ?2, ?3)
             ON CONFLICT (user_name, source) DO UPDATE SET last_success = excluded.last_success",
            params![name, key, now],
        ),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Throttle {
        Throttle {
            free_per_account_source: 3,
            free_per_source: 5,
            free_per_account: 4,
            first_delay_secs: 2,
            max_delay_secs: 60,
            ..Throttle::default()
        }
    }

    #[test]
    fn delays_double_beyond_the_allowance_and_are_capped() {
        let t = t();
        let d: Vec<i64> = (0..12).map(|n| t.delay(Scope::AccountSource, n)).collect();
        assert_eq!(d, [0, 0, 0, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
        assert_eq!(t.delay(Scope::Source, 4), 0);
        assert_eq!(t.delay(Scope::Source, 5), 2);
        assert_eq!(t.delay(Scope::Account, u32::MAX), 60);
    }

    #[test]
    fn waits_run_from_the_last_failure_and_skip_the_account_scope_for_familiar_sources() {
        let t = t();
        let c = Counts {
            account_source: Tally {
                count: 1,
                last: 100,
            },
            source: Tally {
                count: 1,
                last: 100,
            },
            account: Tally {
                count: 6,
                last: 100,
            }, // delay 8
        };
        assert_eq!(t.wait(&c, false, 103), Some((Scope::Account, 5)));
        assert_eq!(t.wait(&c, false, 108), None);
        assert_eq!(t.wait(&c, true, 103), None);
        let mine = Counts {
            account_source: Tally {
                count: 4,
                last: 100,
            }, // delay 4
            ..c
        };
        assert_eq!(t.wait(&mine, true, 101), Some((Scope::AccountSource, 3)));
        assert_eq!(t.delays(&mine, true), vec![(Scope::AccountSource, 4)]);
        assert_eq!(
            t.delays(&mine, false),
            vec![(Scope::AccountSource, 4), (Scope::Account, 8)]
        );
    }

    #[test]
    fn sources_are_keyed_by_address_or_v6_prefix() {
        assert_eq!(source_key("192.0.2.1"), "192.0.2.1");
        assert_eq!(source_key("::ffff:192.0.2.1"), "192.0.2.1");
        assert_eq!(source_key("2001:db8:1:2:3::4"), "2001:db8:1:2::/64");
        let t = Throttle {
            trusted_networks: vec!["10.0.0.0/8".parse().unwrap()],
            ..Throttle::default()
        };
        assert!(t.is_trusted("10.1.2.3"));
        assert!(t.is_trusted("::ffff:10.1.2.3"));
        assert!(!t.is_trusted("192.0.2.1"));
        assert!(!t.is_trusted("local"));
    }
}
