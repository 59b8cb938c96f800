//! `[authentication]`: SPF, DKIM, DMARC and ARC of inbound mail (the `authentication` check).
//!
//! ```toml
//! [authentication]
//! enabled = true                       # inbound mail only; trusted / authenticated mail is skipped
//! dmarc_reject = "reject"              # what a DMARC failure under p=reject gets:
//!                                      #   reject (550 5.7.1 at DATA) | quarantine | monitor
//! dmarc_quarantine = "quarantine"      # ... under p=quarantine: quarantine | monitor
//! dmarc_overrides = ["broken.example"] # known-broken senders: their DMARC failure is only recorded
//! trusted_arc_sealers = ["lists.example"] # forwarders whose ARC word on DMARC is taken: a DMARC
//!                                      #   failure is only recorded when the intact ARC chain's
//!                                      #   last seal is theirs and they saw dmarc=pass
//!
//! [authentication.arc_seal]            # seal inbound mail with ARC (RFC 8617) for the
//! domain = "hospital.example"          #   organisation's own servers behind this hop, with a
//! selector = "pal202612r"              #   DKIM key of DIR/keys/dkim (palisade dkim generate)
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
    /// ARC sealers (the `d=` of an ARC-Seal) trusted to tell what a message's authentication
    /// was before they changed it (RFC 8617 section 7.2): a mailing list or forwarder of the
    /// organisation's partners. A DMARC failure is only recorded when the ARC chain verifies,
    /// its newest seal is one of these, and that hop recorded `dmarc=pass`.
    pub trusted_arc_sealers: Vec<String>,
    /// Seals inbound mail with ARC (RFC 8617) as this domain, with the DKIM key of this
    /// selector, so that the organisation's own servers behind the appliance (Exchange,
    /// Microsoft 365 with the appliance as a trusted ARC sealer) can rely on the results this
    /// hop recorded after it changed the message (a subject tag, a stripped attachment).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arc_seal: Option<ArcSeal>,
}

/// `[authentication.arc_seal]`: the sealing domain and the selector of its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArcSeal {
    pub domain: String,
    pub selector: String,
}

impl Default for Authentication {
    fn default() -> Self {
        Authentication {
            enabled: true,
            dmarc_reject: DmarcRejectAction::Reject,
            dmarc_quarantine: DmarcQuarantineAction::Quarantine,
            dmarc_overrides: Vec::new(),
            trusted_arc_sealers: Vec::new(),
            arc_seal: None,
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

    /// Whether `sealer` (an ARC-Seal's `d=`) is one of `trusted_arc_sealers` (exactly: a
    /// sealer's subdomain is someone else's signing domain).
    pub fn arc_sealer_trusted(&self, sealer: &str) -> bool {
        let sealer = sealer.trim_end_matches('.');
        self.trusted_arc_sealers
            .iter()
            .any(|t| t.trim_end_matches('.').eq_ignore_ascii_case(sealer))
    }

    pub(super) fn problems(&self, bad: &mut dyn FnMut(&str, String)) {
        if let Some(seal) = &self.arc_seal {
            if !is_valid_domain(seal.domain.trim_end_matches('.')) {
                bad(
                    "authentication.arc_seal.domain",
                    format!("'{}' is not a valid domain name", seal.domain),
                );
            }
            if !crate::dkim::valid_selector(&seal.selector) {
                bad(
                    "authentication.arc_seal.selector",
                    format!(
                        "'{}' is not a valid selector (letters, digits, hyphens, dots)",
                        seal.selector
                    ),
                );
            }
        }
        for (field, list) in [
            ("dmarc_overrides", &self.dmarc_overrides),
            ("trusted_arc_sealers", &self.trusted_arc_sealers),
        ] {
            for (i, d) in list.iter().enumerate() {
                if !is_valid_domain(d) {
                    bad(
                        &format!("authentication.{field}[{i}]"),
                        format!("'{d}' is not a valid domain name"),
                    );
                } else if list[..i].iter().any(|p| p.eq_ignore_ascii_case(d)) {
                    bad(
                        &format!("authentication.{field}[{i}]"),
                        format!("'{d}' is listed twice"),
                    );
                }
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

    #[test]
    fn trusted_arc_sealers_are_validated_and_match_exactly() {
        let a = Authentication {
            trusted_arc_sealers: vec!["lists.example".into(), "*.example".into()],
            ..Default::default()
        };
        let p = problems(&a);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].0, "authentication.trusted_arc_sealers[1]");
        assert!(a.arc_sealer_trusted("Lists.Example."));
        assert!(!a.arc_sealer_trusted("evil.lists.example"));
        assert!(!a.arc_sealer_trusted("example"));
    }

    #[test]
    fn the_arc_sealing_key_is_a_domain_and_a_selector() {
        let seal = |d: &str, s: &str| Authentication {
            arc_seal: Some(ArcSeal {
                domain: d.into(),
                selector: s.into(),
            }),
            ..Default::default()
        };
        assert!(problems(&seal("hospital.example", "pal202612r")).is_empty());
        let p = problems(&seal("not a domain", "../key"));
        assert_eq!(
            p.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>(),
            [
                "authentication.arc_seal.domain",
                "authentication.arc_seal.selector"
            ]
        );
    }
}
