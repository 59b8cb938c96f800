//! `[authentication]`: SPF, DKIM, DMARC and ARC of inbound mail (the `authentication` check).
//!
//! ```toml
//! [authentication]
//! enabled = true                       # inbound mail only; trusted / authenticated mail is skipped
//! dmarc_reject = "reject"              # what a DMARC failure under p=reject gets:
//!                                      #   reject (550 5.7.1 at DATA) | quarantine | monitor
//! dmarc_quarantine = "quarantine"      # ... under p=quarantine: quarantine | monitor
//! dmarc_overrides = ["broken.example"] # known-broken senders: their DMARC failure is only recorded
//!
//! [filter.check.authentication]        # budget of all lookups of one message
//! timeout_secs = 20
//! ```
//!
//! On by default: it costs a few DNS lookups per inbound message, and a DNS failure is a
//! `temperror` result that is recorded and never refuses or defers mail (the check stops its
//! own lookups before its budget, so it does not fail for slow DNS either). Lookups use
//! `[dns] nameservers` when set, else the system's resolver.

use serde::{Deserialize, Serialize};

use super::is_valid_domain;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Authentication {
    pub enabled: bool,
    /// What a message failing DMARC gets when the author domain publishes `p=reject`.
    pub dmarc_reject: DmarcRejectAction,
    /// What a message failing DMARC gets when the author domain publishes `p=quarantine`.
    pub dmarc_quarantine: DmarcQuarantineAction,
    /// Author domains (and their subdomains) whose DMARC failures are recorded but not
    /// enforced: senders known to break their own DMARC (mailing lists, forwarders, …).
    pub dmarc_overrides: Vec<String>,
}

impl Default for Authentication {
    fn default() -> Self {
        Authentication {
            enabled: true,
            dmarc_reject: DmarcRejectAction::Reject,
            dmarc_quarantine: DmarcQuarantineAction::Quarantine,
            dmarc_overrides: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DmarcRejectAction {
    /// 550 5.7.1 at DATA for the whole message.
    Reject,
    Quarantine,
    /// Recorded only (a monitored decision).
    Monitor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DmarcQuarantineAction {
    Quarantine,
    /// Recorded only (a monitored decision).
    Monitor,
}

impl Authentication {
    /// Whether DMARC failures of `domain` are only recorded (`dmarc_overrides`: the domain
    /// itself or a subdomain of it).
    pub fn dmarc_overridden(&self, domain: &str) -> bool {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        self.dmarc_overrides.iter().any(|o| {
            let o = o.trim_end_matches('.').to_ascii_lowercase();
            domain == o || domain.ends_with(&format!(".{o}"))
        })
    }

    pub(super) fn problems(&self, bad: &mut dyn FnMut(&str, String)) {
        for (i, d) in self.dmarc_overrides.iter().enumerate() {
            if !is_valid_domain(d) {
                bad(
                    &format!("authentication.dmarc_overrides[{i}]"),
                    format!("'{d}' is not a valid domain name"),
                );
            } else if self.dmarc_overrides[..i]
                .iter()
                .any(|p| p.eq_ignore_ascii_case(d))
            {
                bad(
                    &format!("authentication.dmarc_overrides[{i}]"),
                    format!("'{d}' is listed twice"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(a: &Authentication) -> Vec<(String, String)> {
        let mut out = Vec::new();
        a.problems(&mut |p, m| out.push((p.to_string(), m)));
        out
    }

    #[test]
    fn overrides_are_validated_and_match_subdomains() {
        let a = Authentication {
            dmarc_overrides: vec![
                "lists.example".into(),
                "bad domain".into(),
                "LISTS.example".into(),
            ],
            ..Default::default()
        };
        let p = problems(&a);
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].0, "authentication.dmarc_overrides[1]");
        assert_eq!(p[1].0, "authentication.dmarc_overrides[2]");
        assert!(a.dmarc_overridden("lists.example"));
        assert!(a.dmarc_overridden("news.Lists.Example."));
        assert!(!a.dmarc_overridden("otherlists.example"));
        assert!(problems(&Authentication::default()).is_empty());
    }
}
