//! Where the organisation's outbound mail goes (`recipient_domain`): per recipient domain, when
//! it was first and last mailed and how many messages went there. Kept in the transaction that
//! accepts an outbound message (its delivered recipients' domains) and the one that releases a
//! held message; read by the rules' `first_mail_to_domain` and `lookalike_domain` conditions.

use rusqlite::{Transaction, params};

use super::MailDb;
use crate::{Result, SqlContext};

pub(super) const MIGRATION: &str = "
    CREATE TABLE recipient_domain (
        domain TEXT PRIMARY KEY,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        messages INTEGER NOT NULL
    );
    CREATE INDEX recipient_domain_messages ON recipient_domain(messages);
";

/// The domain of `address` as the history keys it: lower case, without a trailing dot;
/// `None` without an `@` or with an empty domain. Recording and reading both use it.
pub fn domain_of(address: &str) -> Option<String> {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
        .filter(|d| !d.is_empty())
}

/// One message more to each of `domains` (lower case, each once).
pub(super) fn record(tx: &Transaction<'_>, domains: &[String], now: i64) -> Result<()> {
    let mut st = tx
        .prepare_cached(
            "INSERT INTO recipient_domain (domain, first_seen, last_seen, messages)
             VALUES (?1, ?2, ?2, 1)
             ON CONFLICT(domain) DO UPDATE SET last_seen = ?2, messages = messages + 1",
        )
        .at(tx)?;
    for d in domains {
        st.execute(params![d.to_ascii_lowercase(), now]).at(tx)?;
    }
    Ok(())
}

impl MailDb {
    /// How many messages went to `domain` before (0: never).
    pub fn domain_messages(&self, domain: &str) -> Result<i64> {
        let n: Option<i64> = self
            .conn
            .query_row(
                "SELECT messages FROM recipient_domain WHERE domain = ?1",
                [domain.to_ascii_lowercase()],
                |r| r.get(0),
            )
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })
            .at(&self.conn)?;
        Ok(n.unwrap_or(0))
    }

    /// The `limit` domains mailed most often, with at least `min_messages` messages.
    pub fn top_recipient_domains(
        &self,
        min_messages: i64,
        limit: u32,
    ) -> Result<Vec<(String, i64)>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT domain, messages FROM recipient_domain WHERE messages >= ?1
                 ORDER BY messages DESC, domain LIMIT ?2",
            )
            .at(&self.conn)?;
        let rows = st
            .query_map(params![min_messages, limit], |r| Ok((r.get(0)?, r.get(1)?)))
            .at(&self.conn)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().at(&self.conn)
    }
}
