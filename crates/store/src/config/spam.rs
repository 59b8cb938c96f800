//! `[spam]`: the `spam` check — one score from explained rules and a Bayes classifier, and what
//! each score gets.
//!
//! ```toml
//! [spam]
//! enabled = true
//! add_header = 3.0        # at or above: X-Spam-Flag / X-Spam-Score / X-Spam-Report headers
//! tag_subject = 6.0       # at or above: the subject starts with subject_tag
//! subject_tag = "[SPAM]"
//! quarantine = 8.0        # at or above: held in quarantine
//! reject = 15.0           # at or above: 550 5.7.1 at DATA (nothing kept, no bounce)
//! outbound = false        # also score mail from trusted networks / authenticated clients
//! allow_senders = ["@partner.example", "*.nhs.uk"]   # never scored as spam (still recorded)
//! block_senders = ["bulk@spammer.example"]           # always scored `block_weight`
//! block_weight = 100.0
//! bayes = true            # the classifier trained by `palisade learn` and the console
//! bayes_min_spam = 200    # messages of each class learned before Bayes scores anything
//! bayes_min_ham = 200
//!
//! [[spam.dnsbl]]          # DNS blocklists / allowlists, each with its weight
//! zone = "zen.spamhaus.org"
//! kind = "ip"             # ip: the client address; domain: every URL and the sender domain
//! weight = 3.5            # negative for an allowlist (list.dnswl.org)
//! answers = ["127.0.0.2", "127.0.0.3"]   # only these answers count (empty: any 127.0.0.0/8
//!                                        # answer except 127.255.255.x, the zones' error codes)
//!
//! [spam.weights]          # a rule's weight, replacing the built-in one (0 turns it off)
//! RDNS_NONE = 0.5
//! ```
//!
//! Thresholds are ordered; one left at a value above `reject` never applies. No blocklist is
//! configured by default: the public ones need a registration (or a local mirror) for a
//! site of a hospital's size, and a zone that stops answering must not change verdicts quietly.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::is_valid_domain;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Spam {
    pub enabled: bool,
    pub add_header: f64,
    pub tag_subject: f64,
    pub subject_tag: String,
    pub quarantine: f64,
    pub reject: f64,
    /// Also score outbound mail (trusted networks, authenticated clients).
    pub outbound: bool,
    /// Sender patterns (address, `@domain`, `domain`, `*.domain`) that are never spam.
    pub allow_senders: Vec<String>,
    /// Sender patterns that always score `block_weight`.
    pub block_senders: Vec<String>,
    pub block_weight: f64,
    pub bayes: bool,
    pub bayes_min_spam: u64,
    pub bayes_min_ham: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dnsbl: Vec<Dnsbl>,
    /// Weights replacing the built-in ones, by rule name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub weights: BTreeMap<String, f64>,
}

impl Default for Spam {
    fn default() -> Self {
        Spam {
            enabled: true,
            add_header: 3.0,
            tag_subject: 6.0,
            subject_tag: "[SPAM]".into(),
            quarantine: 8.0,
            reject: 15.0,
            outbound: false,
            allow_senders: Vec::new(),
            block_senders: Vec::new(),
            block_weight: 100.0,
            bayes: true,
            bayes_min_spam: 200,
            bayes_min_ham: 200,
            dnsbl: Vec::new(),
            weights: BTreeMap::new(),
        }
    }
}

/// One DNS list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dnsbl {
    pub zone: String,
    #[serde(default)]
    pub kind: DnsblKind,
    pub weight: f64,
    /// The answers that count; empty: any answer in 127.0.0.0/8 except 127.255.255.0/24.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DnsblKind {
    /// The client's address (reversed octets / nibbles under the zone).
    #[default]
    Ip,
    /// Registered domains: of every URL in the message and of the envelope sender.
    Domain,
}

impl Dnsbl {
    /// Whether `answer` means "listed" for this zone.
    pub fn counts(&self, answer: Ipv4Addr) -> bool {
        if self.answers.is_empty() {
            let o = answer.octets();
            o[0] == 127 && !(o[1] == 255 && o[2] == 255)
        } else {
            self.answers.contains(&answer)
        }
    }
}

/// Rule names are upper-case ASCII letters, digits and `_` (`RDNS_NONE`).
pub fn is_rule_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

impl Spam {
    /// The ordered thresholds with their names, lowest first.
    pub fn thresholds(&self) -> [(&'static str, f64); 4] {
        [
            ("add_header", self.add_header),
            ("tag_subject", self.tag_subject),
            ("quarantine", self.quarantine),
            ("reject", self.reject),
        ]
    }

    pub(super) fn problems(&self, bad: &mut dyn FnMut(&str, String)) {
        for (name, v) in self.thresholds() {
            if !v.is_finite() || !(-1000.0..=10000.0).contains(&v) {
                bad(
                    &format!("spam.{name}"),
                    format!("{v} is not a score between -1000 and 10000"),
                );
            }
        }
        if self.subject_tag.trim().is_empty()
            || self.subject_tag.len() > 40
            || self.subject_tag.chars().any(|c| c.is_control())
        {
            bad(
                "spam.subject_tag",
                "must be 1 to 40 printable characters".into(),
            );
        }
        if !self.block_weight.is_finite() || self.block_weight <= 0.0 {
            bad("spam.block_weight", "must be a positive score".into());
        }
        for (field, list) in [
            ("allow_senders", &self.allow_senders),
            ("block_senders", &self.block_senders),
        ] {
            for (i, p) in list.iter().enumerate() {
                if let Some(why) = super::filter::address_pattern_problem(p) {
                    bad(&format!("spam.{field}[{i}]"), why);
                }
            }
        }
        for (i, z) in self.dnsbl.iter().enumerate() {
            if !is_valid_domain(&z.zone) || !z.zone.contains('.') {
                bad(
                    &format!("spam.dnsbl[{i}].zone"),
                    format!("'{}' is not a DNS zone", z.zone),
                );
            }
            if !z.weight.is_finite() || z.weight == 0.0 || z.weight.abs() > 1000.0 {
                bad(
                    &format!("spam.dnsbl[{i}].weight"),
                    "must be a non-zero score between -1000 and 1000".into(),
                );
            }
            if self.dnsbl[..i]
                .iter()
                .any(|o| o.zone.eq_ignore_ascii_case(&z.zone) && o.kind == z.kind)
            {
                bad(
                    &format!("spam.dnsbl[{i}].zone"),
                    format!("'{}' is listed twice", z.zone),
                );
            }
        }
        for (name, w) in &self.weights {
            if !is_rule_name(name) {
                bad(
                    &format!("spam.weights.{name}"),
                    "a rule name is upper-case letters, digits and _".into(),
                );
            } else if !w.is_finite() || w.abs() > 1000.0 {
                bad(
                    &format!("spam.weights.{name}"),
                    "must be a score between -1000 and 1000".into(),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(s: &Spam) -> Vec<String> {
        let mut out = Vec::new();
        s.problems(&mut |p, _| out.push(p.to_string()));
        out
    }

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_field() {
        assert!(problems(&Spam::default()).is_empty());
        let s = Spam {
            reject: f64::NAN,
            subject_tag: " ".into(),
            allow_senders: vec!["@ok.example".into(), "not a domain".into()],
            dnsbl: vec![
                Dnsbl {
                    zone: "bl.example".into(),
                    kind: DnsblKind::Ip,
                    weight: 0.0,
                    answers: vec![],
                },
                Dnsbl {
                    zone: "BL.example".into(),
                    kind: DnsblKind::Ip,
                    weight: 1.0,
                    answers: vec![],
                },
            ],
            weights: [("rdns_none".to_string(), 1.0)].into(),
            ..Default::default()
        };
        assert_eq!(
            problems(&s),
            [
                "spam.reject",
                "spam.subject_tag",
                "spam.allow_senders[1]",
                "spam.dnsbl[0].weight",
                "spam.dnsbl[1].zone",
                "spam.weights.rdns_none"
            ]
        );
    }

    #[test]
    fn answers_in_the_error_range_never_count() {
        let z = Dnsbl {
            zone: "bl.example".into(),
            kind: DnsblKind::Ip,
            weight: 2.0,
            answers: vec![],
        };
        assert!(z.counts(Ipv4Addr::new(127, 0, 0, 2)));
        assert!(!z.counts(Ipv4Addr::new(127, 255, 255, 254)));
        assert!(!z.counts(Ipv4Addr::new(10, 0, 0, 2)));
        let only = Dnsbl {
            answers: vec![Ipv4Addr::new(127, 0, 0, 4)],
            ..z
        };
        assert!(!only.counts(Ipv4Addr::new(127, 0, 0, 2)));
        assert!(only.counts(Ipv4Addr::new(127, 0, 0, 4)));
    }
}
