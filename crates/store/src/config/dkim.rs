//! `[dkim]`: DKIM signing of the organisation's outbound mail (the `dkim` check).
//!
//! ```toml
//! [[dkim.sign]]                        # one per signing key in use
//! domain = "hospital.example"          # signs mail whose From domain is this or a subdomain
//! selector = "pal202612r"              # key DIR/keys/dkim/hospital.example/pal202612r.key
//! ```
//!
//! Keys are made with `palisade dkim generate DOMAIN` (RSA-2048 by default, or Ed25519),
//! which prints the TXT record to publish at `<selector>._domainkey.<domain>`;
//! `palisade dkim list` shows every key, whether it signs and whether DNS publishes it. Two
//! entries for one domain (an RSA and an Ed25519 key) sign every message twice (RFC 8463).
//! Only outbound mail (from trusted networks or authenticated clients) is signed.

use serde::{Deserialize, Serialize};

use super::is_valid_domain;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dkim {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sign: Vec<DkimSign>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimSign {
    pub domain: String,
    pub selector: String,
}

impl Dkim {
    /// The signing entries for mail whose From domain is `from_domain`: the most specific
    /// signing domain (the domain itself, else its nearest parent) and all of its selectors.
    pub fn signers_for(&self, from_domain: &str) -> Vec<&DkimSign> {
        let d = from_domain.trim_end_matches('.').to_ascii_lowercase();
        let matches = |s: &DkimSign| {
            let sd = s.domain.trim_end_matches('.').to_ascii_lowercase();
            d == sd || d.ends_with(&format!(".{sd}"))
        };
        let best = self
            .sign
            .iter()
            .filter(|s| matches(s))
            .map(|s| s.domain.trim_end_matches('.').len())
            .max();
        self.sign
            .iter()
            .filter(|s| matches(s) && Some(s.domain.trim_end_matches('.').len()) == best)
            .collect()
    }

    pub(super) fn problems(&self, bad: &mut dyn FnMut(&str, String)) {
        for (i, s) in self.sign.iter().enumerate() {
            let path = format!("dkim.sign[{i}]");
            if !is_valid_domain(&s.domain) {
                bad(
                    &format!("{path}.domain"),
                    format!("'{}' is not a valid domain name", s.domain),
                );
            }
            if !crate::dkim::valid_selector(&s.selector) {
                bad(
                    &format!("{path}.selector"),
                    format!(
                        "'{}' is not a valid selector (letters, digits, hyphens, dots; at most 63)",
                        s.selector
                    ),
                );
            }
            if self.sign[..i].iter().any(|p| {
                p.domain.eq_ignore_ascii_case(&s.domain)
                    && p.selector.eq_ignore_ascii_case(&s.selector)
            }) {
                bad(
                    &path,
                    format!("{} {} is listed twice", s.domain, s.selector),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(domain: &str, selector: &str) -> DkimSign {
        DkimSign {
            domain: domain.into(),
            selector: selector.into(),
        }
    }

    #[test]
    fn the_most_specific_domain_signs_with_all_its_selectors() {
        let d = Dkim {
            sign: vec![
                sign("hospital.example", "r1"),
                sign("hospital.example", "e1"),
                sign("research.hospital.example", "x1"),
            ],
        };
        let names = |f: &str| -> Vec<String> {
            d.signers_for(f)
                .iter()
                .map(|s| s.selector.clone())
                .collect()
        };
        assert_eq!(names("Hospital.Example"), ["r1", "e1"]);
        assert_eq!(names("ward.hospital.example"), ["r1", "e1"]);
        assert_eq!(names("lab.research.hospital.example"), ["x1"]);
        assert!(names("otherhospital.example").is_empty());
    }

    #[test]
    fn entries_are_validated() {
        let d = Dkim {
            sign: vec![
                sign("hospital.example", "r1"),
                sign("bad domain", "../x"),
                sign("HOSPITAL.example", "R1"),
            ],
        };
        let mut out = Vec::new();
        d.problems(&mut |p, m| out.push((p.to_string(), m)));
        let paths: Vec<&str> = out.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "dkim.sign[1].domain",
                "dkim.sign[1].selector",
                "dkim.sign[2]"
            ],
            "{out:?}"
        );
    }
}
