//! DLP incidents (`dlp_incident`): one row per rule that matched on what the `dlp` check found
//! (or could not scan), written in the transaction that accepts or refuses the message, and
//! kept for the incidents view and the audit report. Only masked snippets are stored (all but
//! the last 3 characters hidden, by the detectors); full identifiers never reach the database.

use rusqlite::{Connection, Transaction, params};
use serde::Serialize;

use super::MailDb;
use crate::{Result, SqlContext};

pub(super) const MIGRATION: &str = "
    CREATE TABLE dlp_incident (
        id INTEGER PRIMARY KEY,
        queue_id TEXT NOT NULL,
        at INTEGER NOT NULL,
        direction TEXT NOT NULL,
        sender TEXT NOT NULL,
        recipients TEXT NOT NULL,
        subject TEXT,
        rule TEXT NOT NULL,
        action TEXT NOT NULL,
        monitor INTEGER NOT NULL,
        detections TEXT NOT NULL,
        unscannable TEXT NOT NULL
    );
    CREATE INDEX dlp_incident_at ON dlp_incident(at);
";

/// One rule's match on one message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewIncident {
    pub queue_id: String,
    /// `inbound` | `outbound`.
    pub direction: String,
    pub sender: String,
    /// The recipients the rule applied to.
    pub recipients: Vec<String>,
    pub subject: Option<String>,
    pub rule: String,
    /// The rule's action (`quarantine`, `encrypt`, …); with `monitor` it was only recorded.
    pub action: String,
    pub monitor: bool,
    /// The dlp check's detections (JSON array: detector, count, confidence, masked snippets,
    /// locations).
    pub detections: serde_json::Value,
    /// The parts that could not be scanned (JSON array: location, reason).
    pub unscannable: serde_json::Value,
}

/// A stored incident.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Incident {
    pub id: i64,
    pub at: i64,
    #[serde(flatten)]
    pub incident: NewIncident,
}

pub(super) fn insert(tx: &Transaction<'_>, i: &NewIncident, now: i64) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO dlp_incident (queue_id, at, direction, sender, recipients, subject, rule,
         action, monitor, detections, unscannable) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)",
    )
    .and_then(|mut st| {
        st.execute(params![
            i.queue_id,
            now,
            i.direction,
            i.sender,
            serde_json::to_string(&i.recipients).unwrap_or_default(),
            i.subject,
            i.rule,
            i.action,
            i.monitor,
            i.detections.to_string(),
            i.unscannable.to_string(),
        ])
    })
    .at(tx)?;
    Ok(())
}

/// Which incidents: a time window, and optionally a rule, a sender, a detector, monitor-only.
#[derive(Debug, Clone, Default)]
pub struct IncidentQuery {
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub rule: Option<String>,
    pub sender: Option<String>,
    pub detector: Option<String>,
    /// `Some(true)`: only monitor-mode matches; `Some(false)`: only enforced ones.
    pub monitor: Option<bool>,
    pub limit: u32,
}

/// The audit report of a period: per rule, the top senders and destinations, and identifiers
/// by type.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IncidentReport {
    pub since: i64,
    pub until: i64,
    pub rules: Vec<RuleSummary>,
    pub top_senders: Vec<(String, i64)>,
    pub top_domains: Vec<(String, i64)>,
    /// Identifiers found, by detector, over the incidents' messages (each message once).
    pub identifiers: Vec<(String, i64)>,
    pub messages: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RuleSummary {
    pub rule: String,
    pub action: String,
    pub monitor: bool,
    pub messages: i64,
    pub senders: i64,
    pub recipient_domains: Vec<(String, i64)>,
}

const WINDOW: &str = "(?1 IS NULL OR at >= ?1) AND (?2 IS NULL OR at < ?2)";

impl MailDb {
    /// The newest incidents matching `q` (at most `q.limit`, 1000 when 0).
    pub fn incidents(&self, q: &IncidentQuery) -> Result<Vec<Incident>> {
        let limit = if q.limit == 0 {
            1000
        } else {
            q.limit.min(100_000)
        };
        let sql = format!(
            "SELECT id, at, queue_id, direction, sender, recipients, subject, rule, action,
                    monitor, detections, unscannable
             FROM dlp_incident
             WHERE {WINDOW}
               AND (?3 IS NULL OR rule = ?3)
               AND (?4 IS NULL OR instr(lower(sender), lower(?4)) > 0)
               AND (?5 IS NULL OR EXISTS (SELECT 1 FROM json_each(detections)
                                          WHERE json_extract(value, '$.detector') = ?5))
               AND (?6 IS NULL OR monitor = ?6)
             ORDER BY at DESC, id DESC LIMIT ?7"
        );
        let conn: &Connection = &self.conn;
        let mut st = conn.prepare(&sql).at(conn)?;
        let rows = st
            .query_map(
                params![
                    q.since, q.until, q.rule, q.sender, q.detector, q.monitor, limit
                ],
                |r| {
                    let json = |s: String| serde_json::from_str(&s).unwrap_or_default();
                    Ok(Incident {
                        id: r.get(0)?,
                        at: r.get(1)?,
                        incident: NewIncident {
                            queue_id: r.get(2)?,
                            direction: r.get(3)?,
                            sender: r.get(4)?,
                            recipients: serde_json::from_str(&r.get::<_, String>(5)?)
                                .unwrap_or_default(),
                            subject: r.get(6)?,
                            rule: r.get(7)?,
                            action: r.get(8)?,
                            monitor: r.get(9)?,
                            detections: json(r.get(10)?),
                            unscannable: json(r.get(11)?),
                        },
                    })
                },
            )
            .at(conn)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().at(conn)
    }

    /// The audit report of `[since, until)`.
    pub fn incident_report(&self, since: i64, until: i64) -> Result<IncidentReport> {
        let conn: &Connection = &self.conn;
        let pairs = |sql: &str| -> Result<Vec<(String, i64)>> {
            let mut st = conn.prepare(sql).at(conn)?;
            let rows = st
                .query_map(params![since, until], |r| Ok((r.get(0)?, r.get(1)?)))
                .at(conn)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().at(conn)
        };
        let mut rules = Vec::new();
        {
            let mut st = conn
                .prepare(&format!(
                    "SELECT rule, action, monitor, count(DISTINCT queue_id), count(DISTINCT sender)
                     FROM dlp_incident WHERE {WINDOW}
                     GROUP BY rule, action, monitor ORDER BY count(DISTINCT queue_id) DESC, rule"
                ))
                .at(conn)?;
            let rows = st
                .query_map(params![since, until], |r| {
                    Ok(RuleSummary {
                        rule: r.get(0)?,
                        action: r.get(1)?,
                        monitor: r.get(2)?,
                        messages: r.get(3)?,
                        senders: r.get(4)?,
                        recipient_domains: Vec::new(),
                    })
                })
                .at(conn)?;
            for r in rows {
                rules.push(r.at(conn)?);
            }
        }
        for r in &mut rules {
            let mut st = conn
                .prepare(&format!(
                    "SELECT lower(substr(value, instr(value, '@') + 1)) AS d,
                            count(DISTINCT queue_id)
                     FROM dlp_incident, json_each(dlp_incident.recipients)
                     WHERE {WINDOW} AND rule = ?3 AND action = ?4 AND monitor = ?5
                     GROUP BY d ORDER BY 2 DESC, d LIMIT 20"
                ))
                .at(conn)?;
            let rows = st
                .query_map(params![since, until, r.rule, r.action, r.monitor], |x| {
                    Ok((x.get(0)?, x.get(1)?))
                })
                .at(conn)?;
            r.recipient_domains = rows.collect::<rusqlite::Result<Vec<_>>>().at(conn)?;
        }
        let top_senders = pairs(&format!(
            "SELECT sender, count(DISTINCT queue_id) FROM dlp_incident WHERE {WINDOW}
             GROUP BY sender ORDER BY 2 DESC, sender LIMIT 20"
        ))?;
        let top_domains = pairs(&format!(
            "SELECT lower(substr(value, instr(value, '@') + 1)) AS d, count(DISTINCT queue_id)
             FROM dlp_incident, json_each(dlp_incident.recipients) WHERE {WINDOW}
             GROUP BY d ORDER BY 2 DESC, d LIMIT 20"
        ))?;
        // Each message once (several rules may have matched it): its first incident's
        // detections.
        let identifiers = pairs(&format!(
            "SELECT json_extract(j.value, '$.detector') AS det, sum(json_extract(j.value, '$.count'))
             FROM (SELECT detections FROM dlp_incident WHERE id IN
                     (SELECT min(id) FROM dlp_incident WHERE {WINDOW} GROUP BY queue_id)) AS m,
                  json_each(m.detections) AS j
             GROUP BY det ORDER BY 2 DESC, det"
        ))?;
        let messages: i64 = conn
            .query_row(
                &format!("SELECT count(DISTINCT queue_id) FROM dlp_incident WHERE {WINDOW}"),
                params![since, until],
                |r| r.get(0),
            )
            .at(conn)?;
        Ok(IncidentReport {
            since,
            until,
            rules,
            top_senders,
            top_domains,
            identifiers,
            messages,
        })
    }
}

fn day(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .map(|d| d.date().to_string())
        .unwrap_or_else(|_| t.to_string())
}

fn csv_field(s: &str) -> String {
    // A leading = + - @ would be a formula in a spreadsheet: quoted and prefixed.
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) || s.starts_with('\'') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

impl IncidentReport {
    /// One CSV table: `section,name,action,monitor,messages,senders` rows for the rules, then
    /// the top senders, destinations and identifier totals.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("section,name,action,monitor,messages,senders\n");
        for r in &self.rules {
            out.push_str(&format!(
                "rule,{},{},{},{},{}\n",
                csv_field(&r.rule),
                r.action,
                r.monitor,
                r.messages,
                r.senders
            ));
            for (d, n) in &r.recipient_domains {
                out.push_str(&format!(
                    "rule_domain,{},{},{},{n},\n",
                    csv_field(&format!("{} → {d}", r.rule)),
                    r.action,
                    r.monitor
                ));
            }
        }
        for (section, list) in [
            ("sender", &self.top_senders),
            ("domain", &self.top_domains),
            ("identifier", &self.identifiers),
        ] {
            for (name, n) in list {
                out.push_str(&format!("{section},{},,,{n},\n", csv_field(name)));
            }
        }
        out
    }

    /// A self-contained printable page for a governance board (no scripts, no remote content).
    pub fn to_html(&self, organisation: &str) -> String {
        let e = html_escape;
        let mut h = String::new();
        h.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">");
        h.push_str(&format!(
            "<title>Data-loss prevention report {} to {}</title>",
            day(self.since),
            day(self.until)
        ));
        h.push_str("<style>body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#111}table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #999;padding:.3em .6em;text-align:left}td.n{text-align:right}h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}@media print{body{margin:0}}</style></head><body>");
        h.push_str(&format!(
            "<h1>Data-loss prevention report — {}</h1><p>Period: {} to {} (UTC). Messages with an incident: <strong>{}</strong>. Rules in monitor mode only recorded what they would have done; identifiers are counted, never shown.</p>",
            e(organisation),
            day(self.since),
            day(self.until),
            self.messages
        ));
        h.push_str("<h2>Rules</h2><table><thead><tr><th>Rule</th><th>Action</th><th>Mode</th><th>Messages</th><th>Senders</th><th>Recipient domains</th></tr></thead><tbody>");
        for r in &self.rules {
            let domains: Vec<String> = r
                .recipient_domains
                .iter()
                .map(|(d, n)| format!("{} ({n})", e(d)))
                .collect();
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td><td>{}</td></tr>",
                e(&r.rule),
                e(&r.action),
                if r.monitor { "monitor (would have)" } else { "enforced" },
                r.messages,
                r.senders,
                domains.join(", ")
            ));
        }
        if self.rules.is_empty() {
            h.push_str("<tr><td colspan=6>No incidents in this period.</td></tr>");
        }
        h.push_str("</tbody></table>");
        for (title, list, what) in [
            ("Identifiers found, by type", &self.identifiers, "Type"),
            ("Top senders", &self.top_senders, "Sender"),
            ("Top destinations", &self.top_domains, "Recipient domain"),
        ] {
            h.push_str(&format!(
                "<h2>{title}</h2><table><thead><tr><th>{what}</th><th>Count</th></tr></thead><tbody>"
            ));
            for (name, n) in list {
                h.push_str(&format!(
                    "<tr><td>{}</td><td class=n>{n}</td></tr>",
                    e(name)
                ));
            }
            h.push_str("</tbody></table>");
        }
        h.push_str("</body></html>\n");
        h
    }
}
