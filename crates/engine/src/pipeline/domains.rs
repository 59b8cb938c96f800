//! Recipient domains as the rules see them: whether the organisation has mailed a domain
//! before (`mail.db`'s `recipient_domain`, kept by acceptance and release) and whether it looks
//! like one it mails often or one of its own (a look-alike: `nhs.nte`, `nhs-net.com`,
//! `rnicrosoft.com`), for the conditions `first_mail_to_domain` and `lookalike_domain`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use palisade_store::{DataDir, MailDb};
use serde::Serialize;

/// Domains mailed at least this often are the ones look-alikes are compared with.
const KNOWN_MIN_MESSAGES: i64 = 3;
const KNOWN_LIMIT: u32 = 500;

/// What the rules know of one recipient domain.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DomainFact {
    /// Messages sent there before (0: never).
    pub messages: i64,
    /// The known domain it imitates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookalike_of: Option<String>,
}

pub struct DomainHistory {
    path: Option<PathBuf>,
    db: Mutex<Option<MailDb>>,
    own: Vec<String>,
}

impl DomainHistory {
    /// `data`: where `mail.db` is (none: every domain is new, look-alikes only of `own`).
    pub fn new(data: Option<&DataDir>, own: Vec<String>) -> DomainHistory {
        DomainHistory {
            path: data.map(|d| d.mail_db()),
            db: Mutex::new(None),
            own: own.into_iter().map(|d| d.to_ascii_lowercase()).collect(),
        }
    }

    /// The facts of `domains` (lower case). Blocking: SQLite.
    pub fn facts(&self, domains: &[String]) -> HashMap<String, DomainFact> {
        let mut guard = self.db.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none()
            && let Some(path) = &self.path
        {
            match MailDb::open(path) {
                Ok(db) => *guard = Some(db),
                Err(e) => tracing::warn!(event = "rules.domain_history_unavailable", error = %e),
            }
        }
        let db = guard.as_ref();
        // Read each time (an indexed query of at most KNOWN_LIMIT rows, only for messages a
        // domain rule looks at): a domain becomes known the moment its third message is.
        let mut known = self.own.clone();
        if let Some(db) = db {
            match db.top_recipient_domains(KNOWN_MIN_MESSAGES, KNOWN_LIMIT) {
                Ok(list) => known.extend(list.into_iter().map(|(d, _)| d)),
                Err(e) => tracing::warn!(event = "rules.domain_history_unavailable", error = %e),
            }
        }
        domains
            .iter()
            .map(|d| {
                let messages = db.and_then(|db| db.domain_messages(d).ok()).unwrap_or(0);
                (
                    d.clone(),
                    DomainFact {
                        messages,
                        lookalike_of: lookalike(d, &known),
                    },
                )
            })
            .collect()
    }
}

/// The known domain `candidate` imitates: not itself nor a subdomain of it, but within one edit
/// (two for names of 10 characters or more; Damerau-Levenshtein, transpositions count one;
/// names whose first label is shorter than 3 characters are not judged by edits), or the same once
/// confusable characters are folded (`0`→`o`, `1`/`i`→`l`, `rn`→`m`, `vv`→`w`, hyphens and dots
/// dropped), also without its top-level domain (`nhs-net.com` for `nhs.net`).
pub fn lookalike(candidate: &str, known: &[String]) -> Option<String> {
    let c = candidate.trim_end_matches('.').to_ascii_lowercase();
    let c_skel = skeleton(&c);
    let c_bare = c.rsplit_once('.').map(|(b, _)| skeleton(b));
    known
        .iter()
        .filter(|k| **k != c && !c.ends_with(&format!(".{k}")) && !k.ends_with(&format!(".{c}")))
        .find(|k| {
            let ks = skeleton(k);
            // Edits judge names whose first label has 3 characters or more; one edit for
            // short names, two from 10 characters.
            let first = k.split('.').next().unwrap_or("");
            let max = if k.len() >= 10 { 2 } else { 1 };
            (first.len() >= 3 && damerau_at_most(&c, k, max))
                || ks == c_skel
                || c_bare.as_deref() == Some(ks.as_str())
        })
        .cloned()
}

fn skeleton(s: &str) -> String {
    let folded: String = s
        .chars()
        .filter(|c| *c != '-' && *c != '.')
        .map(|c| match c {
            '0' => 'o',
            '1' | 'i' => 'l',
            '3' => 'e',
            '5' => 's',
            c => c,
        })
        .collect();
    folded.replace("rn", "m").replace("vv", "w")
}

/// Whether the optimal-string-alignment distance of `a` and `b` is at most `max`.
fn damerau_at_most(a: &str, b: &str, max: usize) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > max || a.len() > 253 || b.len() > 253 {
        return false;
    }
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()] <= max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookalikes_of_known_domains() {
        let known: Vec<String> = ["nhs.net", "clinic.example", "microsoft.com", "gp.example"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for (candidate, want) in [
            ("nhs.nte", Some("nhs.net")),
            ("nhs-net.com", Some("nhs.net")),
            ("nhs.net.co", Some("nhs.net")),
            ("rnicrosoft.com", Some("microsoft.com")),
            ("micros0ft.com", Some("microsoft.com")),
            ("clinlc.example", Some("clinic.example")),
            ("nhs.net", None),
            ("mail.nhs.net", None),
            ("hospital.example", None),
            ("gq.example", None), // too short to judge by edits
            ("example.org", None),
        ] {
            assert_eq!(lookalike(candidate, &known).as_deref(), want, "{candidate}");
        }
    }
}
