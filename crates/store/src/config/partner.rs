//! `[[partner]]`: the partner directory — organisations mail to whom the `encrypt` action
//! protects with their S/MIME certificates (see ARCHITECTURE.md, "Gateway encryption").
//!
//! ```toml
//! [[partner]]
//! name = "County Hospital"
//! domains = ["county.nhs.example"]     # ".county.nhs.example" covers its subdomains
//! prefer = "smime"                     # "pgp": their OpenPGP key; "tls": enforced TLS only
//! smime = ["""-----BEGIN CERTIFICATE-----
//! ...
//! -----END CERTIFICATE-----"""]         # their gateway's (or each person's) certificates
//! pgp = """-----BEGIN PGP PUBLIC KEY BLOCK-----
//! ...
//! -----END PGP PUBLIC KEY BLOCK-----"""  # their OpenPGP certificate(s)
//! note = "contact: it@county.nhs.example"
//! ```
//!
//! Certificates are public: they live in the configuration, replicate to an HA peer with it,
//! and every change is a revision with an author.

use serde::{Deserialize, Serialize};

use super::{Config, is_valid_domain};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PartnerMethod {
    /// S/MIME to the partner's certificates; else OpenPGP when it has a key; else enforced TLS.
    #[default]
    Smime,
    /// OpenPGP (PGP/MIME) to the partner's key; else S/MIME; else enforced TLS.
    Pgp,
    /// Enforced TLS only (a `[[tls_policy]]` of `required` or `verified` for the domain).
    Tls,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Partner {
    pub name: String,
    pub domains: Vec<String>,
    pub prefer: PartnerMethod,
    /// PEM certificates (one or more per entry).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub smime: Vec<String>,
    /// Armored OpenPGP public key block (one or more certificates).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pgp: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
}

impl Partner {
    fn covers(&self, domain: &str) -> Option<usize> {
        self.domains
            .iter()
            .filter_map(|d| super::tls_policy::domain_covers(d, domain))
            .max()
    }

    /// Every certificate of the entry, DER (validation made sure they parse).
    pub fn certificates(&self) -> Vec<Vec<u8>> {
        self.smime
            .iter()
            .filter_map(|pem| palisade_crypto::pem_certificates(pem).ok())
            .flatten()
            .collect()
    }
}

impl Config {
    /// The partner whose domains cover `domain` (the most specific entry).
    pub fn partner_for(&self, domain: &str) -> Option<&Partner> {
        let d = domain.trim_end_matches('.').to_ascii_lowercase();
        self.partners
            .iter()
            .filter_map(|p| p.covers(&d).map(|s| (s, p)))
            .max_by_key(|(s, _)| *s)
            .map(|(_, p)| p)
    }

    pub(super) fn partner_problems(&self, bad: &mut dyn FnMut(&str, String)) {
        let mut names = std::collections::BTreeSet::new();
        let mut domains = std::collections::BTreeSet::new();
        for (i, p) in self.partners.iter().enumerate() {
            let path = format!("partner[{i}]");
            if p.name.trim().is_empty() {
                bad(&format!("{path}.name"), "a partner needs a name".into());
            } else if !names.insert(p.name.trim().to_lowercase()) {
                bad(
                    &format!("{path}.name"),
                    format!("two partners are called '{}'", p.name),
                );
            }
            if p.domains.is_empty() {
                bad(
                    &format!("{path}.domains"),
                    "needs at least one domain".into(),
                );
            }
            for (j, d) in p.domains.iter().enumerate() {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                if !is_valid_domain(d.strip_prefix('.').unwrap_or(&d)) {
                    bad(
                        &format!("{path}.domains[{j}]"),
                        format!("'{d}' is not a domain or '.domain' (its subdomains)"),
                    );
                } else if self.inbound_domain(&d).is_some() {
                    bad(
                        &format!("{path}.domains[{j}]"),
                        format!("'{d}' is one of our own inbound domains"),
                    );
                } else if !domains.insert(d.clone()) {
                    bad(
                        &format!("{path}.domains[{j}]"),
                        format!("'{d}' belongs to two partners"),
                    );
                }
            }
            if !p.pgp.trim().is_empty() {
                let field = format!("{path}.pgp");
                match palisade_crypto::pgp_certificate_info(&p.pgp) {
                    Err(e) => bad(&field, e.to_string()),
                    Ok(certs) => {
                        for c in certs.iter().filter(|c| !c.can_encrypt) {
                            bad(
                                &field,
                                format!(
                                    "{}: no valid encryption key (expired, revoked, or signing only)",
                                    c.fingerprint
                                ),
                            );
                        }
                    }
                }
            }
            for (j, pem) in p.smime.iter().enumerate() {
                let field = format!("{path}.smime[{j}]");
                match palisade_crypto::pem_certificates(pem) {
                    Err(e) => bad(&field, e.to_string()),
                    Ok(certs) => {
                        for der in certs {
                            match palisade_crypto::certificate_info(&der) {
                                Err(e) => bad(&field, e.to_string()),
                                Ok(info) if !info.can_encrypt => bad(
                                    &field,
                                    format!(
                                        "{}: a {} key cannot be encrypted to yet (RSA of 2048 bits or more)",
                                        info.subject, info.key
                                    ),
                                ),
                                Ok(_) => {}
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partner(name: &str, domains: &[&str]) -> Partner {
        Partner {
            name: name.into(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            ..Partner::default()
        }
    }

    #[test]
    fn the_most_specific_partner_covers_a_domain() {
        let cfg = Config {
            partners: vec![
                partner("NHS", &[".nhs.test"]),
                partner("County", &["county.nhs.test", ".wards.county.nhs.test"]),
            ],
            ..Config::default()
        };
        assert!(cfg.validate().is_ok(), "{:?}", cfg.validate());
        let who = |d: &str| cfg.partner_for(d).map(|p| p.name.as_str());
        assert_eq!(who("county.nhs.test"), Some("County"));
        assert_eq!(who("a.wards.county.nhs.test"), Some("County"));
        assert_eq!(who("gp.nhs.test"), Some("NHS"));
        assert_eq!(who("nhs.test"), None);
        assert_eq!(who("elsewhere.test"), None);
    }

    #[test]
    fn bad_partners_are_problems_naming_their_field() {
        let mut own = partner("Us", &["example.test"]);
        own.smime = vec!["not a certificate".into()];
        let cfg = Config {
            partners: vec![
                own,
                partner("", &["a.test"]),
                partner("Twice", &["a.test"]),
                partner("twice", &[]),
            ],
            ..Config::default()
        };
        let problems = cfg.validate().unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "partner[0].domains[0]",
                "partner[0].smime[0]",
                "partner[1].name",
                "partner[2].domains[0]",
                "partner[3].name",
                "partner[3].domains",
            ],
            "{problems:?}"
        );
    }
}
