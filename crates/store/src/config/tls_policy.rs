//! `[[tls_policy]]`: how the delivery client protects the connection to one destination,
//! overriding `delivery.tls` (see ARCHITECTURE.md, "Gateway encryption").
//!
//! ```toml
//! [delivery]
//! tls = "opportunistic"                # the default: none | opportunistic | required | verified
//! ca_file = "/etc/ssl/certs/ca-certificates.crt"   # trust anchors for `verified`
//!
//! [[tls_policy]]
//! destination = "partner.example"      # recipient domain (MX), route domain, or smarthost host;
//!                                      # ".partner.example" covers every subdomain
//! mode = "verified"
//! names = ["mx.partner.example"]       # certificate names accepted besides the host's own
//! ca = """-----BEGIN CERTIFICATE-----
//! ...
//! -----END CERTIFICATE-----"""         # trust anchors of this destination (a private CA)
//! ```
//!
//! The destination of a connection is the recipient domain when delivering to its MX hosts,
//! the route's domain for a static route, and the host name for smarthosts and internal
//! hosts. The most specific entry wins: an exact name, then the longest `.suffix`.

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};

use super::{Config, OutboundTls, is_valid_domain};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsPolicy {
    /// `partner.example`, or `.partner.example` for every subdomain of it.
    pub destination: String,
    pub mode: OutboundTls,
    /// For `verified`: certificate names accepted besides the name of the host connected to
    /// (e.g. the provider that hosts a partner's MX).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// For `verified`: PEM certificates trusted for this destination besides `delivery.ca_file`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ca: String,
}

impl Default for TlsPolicy {
    fn default() -> Self {
        TlsPolicy {
            destination: String::new(),
            mode: OutboundTls::Verified,
            names: Vec::new(),
            ca: String::new(),
        }
    }
}

impl TlsPolicy {
    /// Whether this entry covers `destination` (lower case, no final dot); `Some(specificity)`.
    fn covers(&self, destination: &str) -> Option<usize> {
        domain_covers(&self.destination, destination)
    }

    /// The certificates of `ca`, DER. Validation made sure they parse.
    pub fn ca_certificates(&self) -> Vec<CertificateDer<'static>> {
        parse_pem_certificates(&self.ca).unwrap_or_default()
    }
}

/// Every `CERTIFICATE` block of a PEM text; an error when there is none or one is broken.
pub fn parse_pem_certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into());
    }
    Ok(certs)
}

/// Whether `pattern` — `example.org`, or `.example.org` for its subdomains — covers `domain`
/// (lower case, no final dot), and how specifically: an exact name beats any suffix, a longer
/// suffix a shorter one. Shared by `[[tls_policy]]` and `[[partner]]`.
pub(super) fn domain_covers(pattern: &str, domain: &str) -> Option<usize> {
    let own = pattern.trim_end_matches('.').to_ascii_lowercase();
    if let Some(suffix) = own.strip_prefix('.') {
        domain
            .strip_suffix(suffix)
            .is_some_and(|rest| rest.ends_with('.'))
            .then_some(suffix.len())
    } else {
        (own == domain).then_some(usize::MAX)
    }
}

impl Config {
    /// The TLS mode for a connection to `destination` and the policy entry that set it
    /// (`None`: `delivery.tls`).
    pub fn tls_policy_for(&self, destination: &str) -> (OutboundTls, Option<&TlsPolicy>) {
        let d = destination.trim_end_matches('.').to_ascii_lowercase();
        let best = self
            .tls_policies
            .iter()
            .filter_map(|p| p.covers(&d).map(|s| (s, p)))
            .max_by_key(|(s, _)| *s);
        match best {
            Some((_, p)) => (p.mode, Some(p)),
            None => (self.delivery.tls, None),
        }
    }

    pub(super) fn tls_policy_problems(&self, bad: &mut dyn FnMut(&str, String)) {
        let mut seen = std::collections::BTreeSet::new();
        for (i, p) in self.tls_policies.iter().enumerate() {
            let path = format!("tls_policy[{i}]");
            let name = p.destination.trim_end_matches('.').to_ascii_lowercase();
            let bare = name.strip_prefix('.').unwrap_or(&name);
            if !is_valid_domain(bare) && bare.parse::<std::net::IpAddr>().is_err() {
                bad(
                    &format!("{path}.destination"),
                    format!(
                        "'{}' is not a domain, '.domain' (its subdomains) or host name",
                        p.destination
                    ),
                );
            } else if !seen.insert(name) {
                bad(
                    &format!("{path}.destination"),
                    format!("'{}' has two TLS policies", p.destination),
                );
            }
            for (j, n) in p.names.iter().enumerate() {
                if !is_valid_domain(n) && n.parse::<std::net::IpAddr>().is_err() {
                    bad(
                        &format!("{path}.names[{j}]"),
                        format!("'{n}' is not a host name"),
                    );
                }
            }
            if !p.ca.trim().is_empty()
                && let Err(e) = parse_pem_certificates(&p.ca)
            {
                bad(&format!("{path}.ca"), e);
            }
            if p.mode != OutboundTls::Verified && (!p.names.is_empty() || !p.ca.trim().is_empty()) {
                bad(
                    &format!("{path}.mode"),
                    "names and ca are used only by mode 'verified'".into(),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(destination: &str, mode: OutboundTls) -> TlsPolicy {
        TlsPolicy {
            destination: destination.into(),
            mode,
            ..TlsPolicy::default()
        }
    }

    #[test]
    fn the_most_specific_entry_wins() {
        let mut cfg = Config::default();
        cfg.delivery.tls = OutboundTls::Opportunistic;
        cfg.tls_policies = vec![
            policy(".nhs.test", OutboundTls::Required),
            policy(".trust.nhs.test", OutboundTls::Verified),
            policy("nhs.test", OutboundTls::None),
        ];
        assert!(cfg.validate().is_ok(), "{:?}", cfg.validate());
        let mode = |d: &str| cfg.tls_policy_for(d).0;
        assert_eq!(mode("nhs.test"), OutboundTls::None);
        assert_eq!(mode("NHS.test."), OutboundTls::None);
        assert_eq!(mode("gp.nhs.test"), OutboundTls::Required);
        assert_eq!(mode("a.trust.nhs.test"), OutboundTls::Verified);
        // A suffix covers subdomains only, not the domain itself or lookalikes.
        assert_eq!(mode("trust.nhs.test"), OutboundTls::Required);
        assert_eq!(mode("evilnhs.test"), OutboundTls::Opportunistic);
        assert_eq!(mode("elsewhere.test"), OutboundTls::Opportunistic);
        assert!(cfg.tls_policy_for("elsewhere.test").1.is_none());
    }

    #[test]
    fn bad_entries_are_problems_naming_their_field() {
        let cfg = Config {
            tls_policies: vec![
                policy("not a domain", OutboundTls::Verified),
                policy("p.test", OutboundTls::Verified),
                policy("P.test.", OutboundTls::Required),
                TlsPolicy {
                    destination: "q.test".into(),
                    mode: OutboundTls::Verified,
                    names: vec!["bad name".into()],
                    ca: "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"
                        .into(),
                },
                TlsPolicy {
                    destination: "r.test".into(),
                    mode: OutboundTls::Required,
                    names: vec!["mx.r.test".into()],
                    ca: String::new(),
                },
            ],
            ..Config::default()
        };
        let problems = cfg.validate().unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "tls_policy[0].destination",
                "tls_policy[2].destination",
                "tls_policy[3].names[0]",
                "tls_policy[3].ca",
                "tls_policy[4].mode"
            ],
            "{problems:?}"
        );
    }

    #[test]
    fn round_trips_through_toml() {
        let text = "[delivery]\ntls = \"verified\"\n\n[[tls_policy]]\ndestination = \".partner.test\"\nmode = \"required\"\n";
        let cfg = Config::from_toml(text).expect("valid");
        assert_eq!(cfg.delivery.tls, OutboundTls::Verified);
        assert_eq!(cfg.tls_policies.len(), 1);
        let again = Config::from_toml(&cfg.to_toml()).expect("round trip");
        assert_eq!(again, cfg);
        let bad = Config::from_toml("[[tls_policy]]\ndestination = \"x.test\"\nmode = \"dane\"\n")
            .unwrap_err();
        assert!(
            bad.iter().any(|p| p.path.starts_with("tls_policy")),
            "{bad:?}"
        );
    }
}
