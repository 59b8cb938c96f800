//! The dashboard's protection panel: what the filters did in a time window — messages in and
//! out, refused by the check that decided, quarantined by the check that decided, virus
//! detections with their signatures, and where spam came from.
//!
//! Everything is read from tracking (`track_message`, its `verdict` JSON as the engine writes
//! it: `{"envelope":{…,"direction"},"checks":[{name, status, facts, …}],"verdict":{"per_recipient":
//! [{disposition, decided_by, edits, …}], …}}`) and the quarantine rows. The work is bounded:
//! every query walks an index on `received_at` over the window only — the partial indexes
//! `track_message_filtered` (verdicts naming a refusal, quarantine, virus or spam) and
//! `track_message_unchecked_or_outbound`, and `(received_at, status)` for the plain counts — so
//! a verdict is read and parsed only when a plain substring test (`instr`, evaluated once when
//! the row is written) says it can match (the engine writes the verdict compactly with
//! `serde_json`, so `"action":"reject"` appears exactly like that); at most
//! [`PROTECTION_MAX_MESSAGES`] of the newest messages are counted (the summary says from when
//! when there were more), and the top lists are `LIMIT`ed in SQL.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::MailDb;
use crate::{Result, SqlContext};

/// At most this many messages (the newest of the window) are counted.
pub const PROTECTION_MAX_MESSAGES: u64 = 200_000;
/// Length of each top list (signatures, spam client addresses, spam sender domains).
pub const PROTECTION_TOP: u32 = 10;

/// Why mail was refused or held: the check that decided, or the SMTP dialogue when no check
/// did. A check this version does not know is [`ProtectionReason::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProtectionReason {
    Antivirus,
    Attachments,
    /// SPF, DKIM, ARC and DMARC (one check).
    Authentication,
    Spam,
    /// The operator's `[[filter.rule]]`s.
    Rules,
    /// Malformed or uninspectable MIME.
    Mime,
    /// A check failed or did not finish in time and its failure mode decided, or a check
    /// deferred the message (4xx).
    CheckFailure,
    /// Refused before any check ran: relay denied, unknown recipients, limits, protocol.
    Smtp,
    Other,
}

impl ProtectionReason {
    /// In the order the panel shows them.
    pub const ALL: [ProtectionReason; 9] = [
        ProtectionReason::Antivirus,
        ProtectionReason::Attachments,
        ProtectionReason::Authentication,
        ProtectionReason::Spam,
        ProtectionReason::Rules,
        ProtectionReason::Mime,
        ProtectionReason::CheckFailure,
        ProtectionReason::Smtp,
        ProtectionReason::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProtectionReason::Antivirus => "antivirus",
            ProtectionReason::Attachments => "attachments",
            ProtectionReason::Authentication => "authentication",
            ProtectionReason::Spam => "spam",
            ProtectionReason::Rules => "rules",
            ProtectionReason::Mime => "mime",
            ProtectionReason::CheckFailure => "check_failure",
            ProtectionReason::Smtp => "smtp",
            ProtectionReason::Other => "other",
        }
    }

    /// For people.
    pub fn label(self) -> &'static str {
        match self {
            ProtectionReason::Antivirus => "Antivirus",
            ProtectionReason::Attachments => "Attachments",
            ProtectionReason::Authentication => "Authentication (DMARC)",
            ProtectionReason::Spam => "Spam",
            ProtectionReason::Rules => "Rules",
            ProtectionReason::Mime => "MIME",
            ProtectionReason::CheckFailure => "Check failed / deferred",
            ProtectionReason::Smtp => "SMTP dialogue",
            ProtectionReason::Other => "Other checks",
        }
    }

    /// The reason a query names: a check's name (a `stage`), or one of ours.
    fn from_key(key: &str) -> ProtectionReason {
        ProtectionReason::ALL
            .into_iter()
            .find(|r| r.as_str() == key)
            .unwrap_or(ProtectionReason::Other)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReasonCount {
    pub reason: ProtectionReason,
    pub count: u64,
}

/// One entry of a top list. `name` came from a stranger (a signature name clamd reported for
/// their file, their sender domain): escape it wherever it is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopEntry {
    pub name: String,
    pub count: u64,
}

/// What the filters did from `since` to now. Message counts, each message once per line even
/// when several of its recipients are involved.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProtectionSummary {
    pub since: i64,
    /// `since`, unless the window held more than [`PROTECTION_MAX_MESSAGES`] messages: then the
    /// counts cover those received from here on.
    pub counted_since: i64,
    pub truncated: bool,
    /// Messages accepted, by direction (outbound: authenticated or from a trusted network).
    pub inbound: u64,
    pub outbound: u64,
    /// Transactions refused whole (5xx or 4xx to the client, nothing kept).
    pub rejected: u64,
    /// Messages refused whole or for some recipients, by what decided (every reason, in
    /// [`ProtectionReason::ALL`] order, zeros included). A message refused for two reasons is
    /// counted under each.
    pub refused_by: Vec<ReasonCount>,
    /// Messages with a copy held in quarantine.
    pub quarantined: u64,
    /// The same by what decided (stripped attachments: `attachments`); reasons
    /// [`ProtectionReason::Smtp`] excluded.
    pub quarantined_by: Vec<ReasonCount>,
    /// Messages the antivirus check found infected (refused or quarantined).
    pub infected: u64,
    /// The most frequent signature names, most messages first.
    pub signatures: Vec<TopEntry>,
    /// Messages the spam check would quarantine or refuse (action `quarantine`/`reject`, or a
    /// score at or above its quarantine threshold).
    pub spam: u64,
    /// Their client addresses, most messages first.
    pub spam_clients: Vec<TopEntry>,
    /// Their envelope senders' domains (lower case; empty for the null sender).
    pub spam_domains: Vec<TopEntry>,
}

/// Accepted messages by direction, and transactions refused whole: the first two from the
/// `(received_at, status)` index alone; the outbound ones from the rows the
/// `track_message_unchecked_or_outbound` index admits. A row without a verdict (a bounce we
/// generated, a transaction refused before the checks) is outbound when it came through
/// submission, authenticated, or from us.
const TOTALS_SQL: &str = concat!(
    "SELECT
       (SELECT count(*) FROM track_message INDEXED BY track_message_received_status
        WHERE received_at >= ?1 AND status <> 'rejected'),
       (SELECT count(*) FROM track_message INDEXED BY track_message_unchecked_or_outbound
        WHERE received_at >= ?1 AND ",
    protection_unchecked_or_outbound!(),
    " AND status <> 'rejected'
          AND CASE WHEN verdict IS NULL
                     THEN auth_user IS NOT NULL OR listener IN ('submission', 'local')
                   ELSE verdict ->> '$.envelope.direction' = 'outbound' END),
       (SELECT count(*) FROM track_message INDEXED BY track_message_received_status
        WHERE received_at >= ?1 AND status = 'rejected')"
);

/// Per reason, the messages refused (whole or for some recipients) by it: each refused
/// recipient's deciding check; refusals without a verdict are the SMTP dialogue's.
const REFUSED_SQL: &str = concat!(
    "SELECT reason, count(DISTINCT queue_id) FROM (
      SELECT t.queue_id AS queue_id,
        CASE WHEN r.value ->> '$.disposition.action' = 'tempfail'
               OR r.value ->> '$.decided_by.rule' IN ('check_failed', 'check_timed_out')
               THEN 'check_failure'
             ELSE coalesce(r.value ->> '$.decided_by.stage', '') END AS reason
      FROM track_message t INDEXED BY track_message_filtered,
           json_each(t.verdict, '$.verdict.per_recipient') r
      WHERE t.received_at >= ?1 AND ",
    protection_filtered!(),
    " AND (instr(t.verdict, '\"action\":\"reject\"') OR instr(t.verdict, '\"action\":\"tempfail\"'))
        AND r.value ->> '$.disposition.action' IN ('reject', 'tempfail')
      UNION ALL
      SELECT queue_id, 'smtp' FROM track_message INDEXED BY track_message_unchecked_or_outbound
      WHERE received_at >= ?1 AND ",
    protection_unchecked_or_outbound!(),
    " AND verdict IS NULL AND status = 'rejected')
    GROUP BY reason"
);

/// Per reason, the messages with a quarantined copy: each held recipient's deciding check,
/// and `attachments` for the original kept when a check stripped parts from a copy.
const QUARANTINED_SQL: &str = concat!(
    "SELECT reason, count(DISTINCT queue_id) FROM (
      SELECT t.queue_id AS queue_id,
        CASE WHEN r.value ->> '$.disposition.action' NOT IN ('quarantine', 'hold_for_confirmation')
               THEN 'attachments'
             WHEN r.value ->> '$.decided_by.rule' IN ('check_failed', 'check_timed_out')
               THEN 'check_failure'
             ELSE coalesce(r.value ->> '$.decided_by.stage', '') END AS reason
      FROM track_message t INDEXED BY track_message_filtered,
           json_each(t.verdict, '$.verdict.per_recipient') r
      WHERE t.received_at >= ?1 AND ",
    protection_filtered!(),
    " AND (instr(t.verdict, '\"action\":\"quarantine\"')
             OR instr(t.verdict, '\"action\":\"hold_for_confirmation\"')
             OR instr(t.verdict, '\"action\":\"strip_parts\"'))
        AND (r.value ->> '$.disposition.action' IN ('quarantine', 'hold_for_confirmation')
             OR (r.value ->> '$.disposition.action' IN ('deliver', 'redirect', 'encrypt')
                 AND instr(r.value ->> '$.edits', '\"action\":\"strip_parts\"'))))
    GROUP BY reason"
);

/// Messages held in quarantine (held at acceptance; whatever happened to the copy since).
/// Without `INDEXED BY` SQLite prefers walking the whole `quarantine_queue` index for the
/// `DISTINCT`.
const HELD_SQL: &str = "SELECT count(DISTINCT queue_id) FROM quarantine
    INDEXED BY quarantine_received WHERE received_at >= ?1";

/// Infected messages (kind 0) and the top signatures (kind 1).
const VIRUS_SQL: &str = concat!(
    "WITH v AS MATERIALIZED (
      SELECT t.queue_id AS queue_id, c.value AS av
      FROM track_message t INDEXED BY track_message_filtered, json_each(t.verdict, '$.checks') c
      WHERE t.received_at >= ?1 AND ",
    protection_filtered!(),
    " AND instr(t.verdict, '\"status\":\"infected\"')
        AND c.value ->> '$.name' = 'antivirus' AND c.value ->> '$.facts.status' = 'infected')
    SELECT 0, NULL, count(DISTINCT queue_id) FROM v
    UNION ALL
    SELECT * FROM (
      SELECT 1, s.value, count(DISTINCT v.queue_id) AS n
      FROM v, json_each(v.av, '$.facts.signatures') s
      WHERE s.type = 'text'
      GROUP BY s.value ORDER BY n DESC, s.value LIMIT ?2)"
);

/// Spam messages (kind 0), top client addresses (1) and top sender domains (2). The domain is
/// what follows the sender's last `@`. Only rows whose spam facts say `"status":"spam"` or an
/// action `quarantine`/`reject` are looked at (the partial index): a score at or above the
/// quarantine threshold with the status `ham` would contradict the spam check.
const SPAM_SQL: &str = concat!(
    "WITH s AS MATERIALIZED (
      SELECT t.queue_id AS queue_id, t.client_ip AS client_ip,
        lower(CASE WHEN instr(t.sender, '@')
                THEN substr(t.sender, length(rtrim(t.sender, replace(t.sender, '@', ''))) + 1)
                ELSE '' END) AS domain
      FROM track_message t INDEXED BY track_message_filtered, json_each(t.verdict, '$.checks') c
      WHERE t.received_at >= ?1 AND ",
    protection_filtered!(),
    " AND instr(t.verdict, '\"name\":\"spam\"')
        AND c.value ->> '$.name' = 'spam'
        AND (c.value ->> '$.facts.action' IN ('quarantine', 'reject')
             OR c.value ->> '$.facts.score' >= c.value ->> '$.facts.thresholds.quarantine'))
    SELECT 0, NULL, count(DISTINCT queue_id) FROM s
    UNION ALL
    SELECT * FROM (SELECT 1, client_ip, count(DISTINCT queue_id) AS n FROM s
                   GROUP BY client_ip ORDER BY n DESC, client_ip LIMIT ?2)
    UNION ALL
    SELECT * FROM (SELECT 2, domain, count(DISTINCT queue_id) AS n FROM s
                   GROUP BY domain ORDER BY n DESC, domain LIMIT ?2)"
);

impl MailDb {
    /// What the filters did from `since` to now (see [`ProtectionSummary`]).
    pub fn protection_summary(&self, since: i64) -> Result<ProtectionSummary> {
        self.protection_summary_bounded(since, PROTECTION_MAX_MESSAGES)
    }

    pub(crate) fn protection_summary_bounded(
        &self,
        since: i64,
        max_messages: u64,
    ) -> Result<ProtectionSummary> {
        let conn = &self.conn;
        // The first message beyond the bound, walking back from the newest: counting starts
        // after it.
        let beyond: Option<i64> = conn
            .query_row(
                "SELECT received_at FROM track_message WHERE received_at >= ?1
                 ORDER BY received_at DESC LIMIT 1 OFFSET ?2",
                params![since, max_messages as i64],
                |r| r.get(0),
            )
            .optional()
            .at(conn)?;
        let from = beyond.map_or(since, |t| t + 1);
        let mut out = ProtectionSummary {
            since,
            counted_since: from,
            truncated: beyond.is_some(),
            ..Default::default()
        };

        let (accepted, outbound, rejected) = conn
            .prepare_cached(TOTALS_SQL)
            .at(conn)?
            .query_row([from], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u64,
                ))
            })
            .at(conn)?;
        (out.inbound, out.outbound, out.rejected) =
            (accepted.saturating_sub(outbound), outbound, rejected);

        out.refused_by = self.by_reason(REFUSED_SQL, from, true)?;
        out.quarantined_by = self.by_reason(QUARANTINED_SQL, from, false)?;
        out.quarantined = conn
            .query_row(HELD_SQL, [from], |r| r.get::<_, i64>(0))
            .at(conn)? as u64;

        let (infected, mut tops) = self.counted_tops(VIRUS_SQL, from)?;
        out.infected = infected;
        out.signatures = tops.remove(&1).unwrap_or_default();
        let (spam, mut tops) = self.counted_tops(SPAM_SQL, from)?;
        out.spam = spam;
        out.spam_clients = tops.remove(&1).unwrap_or_default();
        out.spam_domains = tops.remove(&2).unwrap_or_default();
        Ok(out)
    }

    /// Every reason in display order with its count (zeros too); `smtp` only when asked.
    fn by_reason(&self, sql: &str, from: i64, with_smtp: bool) -> Result<Vec<ReasonCount>> {
        let conn = &self.conn;
        let mut stmt = conn.prepare_cached(sql).at(conn)?;
        let rows = stmt
            .query_map([from], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })
            .at(conn)?;
        let mut out: Vec<ReasonCount> = ProtectionReason::ALL
            .into_iter()
            .filter(|r| with_smtp || *r != ProtectionReason::Smtp)
            .map(|reason| ReasonCount { reason, count: 0 })
            .collect();
        for row in rows {
            let (key, n) = row.at(conn)?;
            let reason = ProtectionReason::from_key(&key);
            if let Some(rc) = out.iter_mut().find(|rc| rc.reason == reason) {
                rc.count += n;
            }
        }
        Ok(out)
    }

    /// A query answering `(0, NULL, total)` and `(kind, name, count)` rows: the total and the
    /// top lists by kind, most first.
    fn counted_tops(
        &self,
        sql: &str,
        from: i64,
    ) -> Result<(u64, std::collections::BTreeMap<i64, Vec<TopEntry>>)> {
        let conn = &self.conn;
        let mut stmt = conn.prepare_cached(sql).at(conn)?;
        let rows = stmt
            .query_map(params![from, PROTECTION_TOP], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, i64>(2)? as u64,
                ))
            })
            .at(conn)?;
        let mut total = 0;
        let mut tops: std::collections::BTreeMap<i64, Vec<TopEntry>> = Default::default();
        for row in rows {
            match row.at(conn)? {
                (0, _, n) => total = n,
                (kind, name, count) => tops.entry(kind).or_default().push(TopEntry {
                    name: name.unwrap_or_default(),
                    count,
                }),
            }
        }
        for list in tops.values_mut() {
            list.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
        }
        Ok((total, tops))
    }
}

#[cfg(test)]
mod tests;
