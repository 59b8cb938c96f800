//! `[dlp]`: data-loss prevention (the `dlp` check). The check finds identifiers and words in
//! every part of a message (see `palisade_dlp` and `palisade_inspect::extract`) and decides
//! nothing itself: the operator's `[[filter.rule]]`s do, with conditions such as
//! `dlp = { nhs_number = 5 }` or `unscannable = true`, and any of them in monitor mode first.
//!
//! ```toml
//! [dlp]
//! enabled = true        # outbound mail is always scanned when enabled
//! inbound = false       # scan mail from outside too
//! max_text_mib = 32     # text read per message; beyond it the rest is "unscannable"
//! nhs_number = true     # built-in detectors, each on or off
//! chi_number = true
//! ni_number = true
//! payment_card = true
//! iban = true
//! sort_code_account = true
//! uk_postcode = true
//! date_of_birth = true  # a date after DOB / date of birth / born
//! clinical_terms = false   # the built-in dictionary of clinical terms
//! icd10_codes = false      # ICD-10 codes written with their dot (E11.9, J45.909)
//!
//! [[dlp.dictionary]]     # detector "dictionary:project-x"
//! name = "project-x"
//! words = ["Bluebell", "trial 42"]
//!
//! [[dlp.pattern]]        # detector "pattern:mrn" (the regex crate's syntax, linear time)
//! name = "mrn"
//! regex = '\bMRN[0-9]{7}\b'
//!
//! [[dlp.fingerprint]]    # detector "fingerprint:board-minutes": exactly this file attached
//! name = "board-minutes"
//! sha256 = "…"           # sha256sum FILE
//! ```

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dlp {
    pub enabled: bool,
    pub inbound: bool,
    pub max_text_mib: u32,
    pub nhs_number: bool,
    pub chi_number: bool,
    pub ni_number: bool,
    pub payment_card: bool,
    pub iban: bool,
    pub sort_code_account: bool,
    pub uk_postcode: bool,
    /// Dates written just after a date-of-birth label (DOB, date of birth, born).
    pub date_of_birth: bool,
    pub clinical_terms: bool,
    pub icd10_codes: bool,
    #[serde(rename = "dictionary", skip_serializing_if = "Vec::is_empty")]
    pub dictionaries: Vec<DlpDictionary>,
    #[serde(rename = "pattern", skip_serializing_if = "Vec::is_empty")]
    pub patterns: Vec<DlpPattern>,
    /// Registered confidential files, by the SHA-256 of their bytes: an attachment (or an
    /// archive member, at any depth) with exactly those bytes is detector `fingerprint:NAME`.
    #[serde(rename = "fingerprint", skip_serializing_if = "Vec::is_empty")]
    pub fingerprints: Vec<DlpFingerprint>,
}

impl Default for Dlp {
    fn default() -> Self {
        Dlp {
            enabled: true,
            inbound: false,
            max_text_mib: 32,
            nhs_number: true,
            chi_number: true,
            ni_number: true,
            payment_card: true,
            iban: true,
            sort_code_account: true,
            uk_postcode: true,
            date_of_birth: true,
            clinical_terms: false,
            icd10_codes: false,
            dictionaries: Vec::new(),
            patterns: Vec::new(),
            fingerprints: Vec::new(),
        }
    }
}

/// One registered file (`sha256sum FILE` gives the hash).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlpFingerprint {
    pub name: String,
    /// 64 hexadecimal digits.
    pub sha256: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlpDictionary {
    pub name: String,
    pub words: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlpPattern {
    pub name: String,
    pub regex: String,
}

/// Every detector name a rule's `dlp` condition may use with this configuration.
pub const BUILT_IN_DETECTORS: &[&str] = &[
    "nhs_number",
    "chi_number",
    "ni_number",
    "payment_card",
    "iban",
    "sort_code_account",
    "uk_postcode",
    "date_of_birth",
    "dictionary:clinical_terms",
    "pattern:icd10_codes",
];

impl Dlp {
    /// The scanner's settings.
    pub fn settings(&self) -> palisade_dlp::Settings {
        let mut dictionaries: Vec<palisade_dlp::Dictionary> = self
            .dictionaries
            .iter()
            .map(|d| palisade_dlp::Dictionary {
                name: d.name.clone(),
                words: d.words.clone(),
            })
            .collect();
        if self.clinical_terms {
            dictionaries.push(palisade_dlp::Dictionary {
                name: "clinical_terms".into(),
                words: palisade_dlp::CLINICAL_TERMS
                    .iter()
                    .map(|w| w.to_string())
                    .collect(),
            });
        }
        let mut patterns: Vec<palisade_dlp::Pattern> = self
            .patterns
            .iter()
            .map(|p| palisade_dlp::Pattern {
                name: p.name.clone(),
                regex: p.regex.clone(),
            })
            .collect();
        if self.icd10_codes {
            patterns.push(palisade_dlp::Pattern {
                name: "icd10_codes".into(),
                regex: palisade_dlp::ICD10_PATTERN.into(),
            });
        }
        palisade_dlp::Settings {
            nhs_number: self.nhs_number,
            chi_number: self.chi_number,
            ni_number: self.ni_number,
            payment_card: self.payment_card,
            iban: self.iban,
            sort_code_account: self.sort_code_account,
            uk_postcode: self.uk_postcode,
            date_of_birth: self.date_of_birth,
            dictionaries,
            patterns,
        }
    }

    /// Whether `detector` names a detector of this configuration (a rule's condition on an
    /// unknown one would never match).
    pub fn knows(&self, detector: &str) -> bool {
        BUILT_IN_DETECTORS.contains(&detector)
            || detector
                .strip_prefix("dictionary:")
                .is_some_and(|n| self.dictionaries.iter().any(|d| d.name == n))
            || detector
                .strip_prefix("pattern:")
                .is_some_and(|n| self.patterns.iter().any(|p| p.name == n))
            || detector
                .strip_prefix("fingerprint:")
                .is_some_and(|n| self.fingerprints.iter().any(|f| f.name == n))
    }

    pub(super) fn problems(&self, bad: &mut dyn FnMut(&str, String)) {
        if !(1..=256).contains(&self.max_text_mib) {
            bad(
                "dlp.max_text_mib",
                format!("{} is outside 1 .. 256", self.max_text_mib),
            );
        }
        let name_ok = |n: &str| {
            !n.is_empty()
                && n.len() <= 64
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        let mut names = std::collections::BTreeSet::new();
        for (i, d) in self.dictionaries.iter().enumerate() {
            let path = format!("dlp.dictionary[{i}]");
            if !name_ok(&d.name) || !names.insert(format!("d:{}", d.name)) {
                bad(
                    &format!("{path}.name"),
                    format!(
                        "'{}' must be unique, 1-64 letters, digits, '-' or '_'",
                        d.name
                    ),
                );
            }
            if d.words.iter().all(|w| w.trim().is_empty()) {
                bad(&format!("{path}.words"), "needs at least one word".into());
            }
            if d.words.len() > 100_000 || d.words.iter().any(|w| w.len() > 200) {
                bad(
                    &format!("{path}.words"),
                    "at most 100000 words of at most 200 bytes".into(),
                );
            }
        }
        for (i, p) in self.patterns.iter().enumerate() {
            let path = format!("dlp.pattern[{i}]");
            if !name_ok(&p.name) || !names.insert(format!("p:{}", p.name)) {
                bad(
                    &format!("{path}.name"),
                    format!(
                        "'{}' must be unique, 1-64 letters, digits, '-' or '_'",
                        p.name
                    ),
                );
            }
        }
        for (i, f) in self.fingerprints.iter().enumerate() {
            let path = format!("dlp.fingerprint[{i}]");
            if !name_ok(&f.name) || !names.insert(format!("f:{}", f.name)) {
                bad(
                    &format!("{path}.name"),
                    format!(
                        "'{}' must be unique, 1-64 letters, digits, '-' or '_'",
                        f.name
                    ),
                );
            }
            if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                bad(
                    &format!("{path}.sha256"),
                    format!("'{}' is not a SHA-256 (64 hexadecimal digits)", f.sha256),
                );
            }
        }
        if self.fingerprints.len() > 100_000 {
            bad("dlp.fingerprint", "at most 100000 files".into());
        }
        // The whole scanner must compile (patterns within the size limit).
        if let Err(e) = palisade_dlp::Scanner::new(self.settings()) {
            let at = self
                .patterns
                .iter()
                .position(|p| e.starts_with(&format!("pattern {}:", p.name)))
                .map_or("dlp".to_string(), |i| format!("dlp.pattern[{i}].regex"));
            bad(&at, e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_and_names_are_checked() {
        let mut d = Dlp::default();
        d.patterns.push(DlpPattern {
            name: "mrn".into(),
            regex: "(".into(),
        });
        d.dictionaries.push(DlpDictionary {
            name: "bad name".into(),
            words: vec![],
        });
        let mut out = Vec::new();
        d.problems(&mut |p, m| out.push((p.to_string(), m)));
        let paths: Vec<&str> = out.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "dlp.dictionary[0].name",
                "dlp.dictionary[0].words",
                "dlp.pattern[0].regex"
            ],
            "{out:?}"
        );
        assert!(Dlp::default().knows("nhs_number") && !Dlp::default().knows("pattern:mrn"));
        assert!(d.knows("pattern:mrn"));
    }

    /// The README's DLP example is a valid configuration (rules with quoted detector names,
    /// a pattern, monitor mode, an address group).
    #[test]
    fn the_readme_example_is_valid() {
        let readme = include_str!("../../../../README.md");
        let start = readme
            .find("[dlp]\ninbound")
            .expect("README has the DLP example");
        let end = start + readme[start..].find("```").expect("end of the example");
        let cfg = crate::Config::from_toml(&readme[start..end]).unwrap_or_else(|p| {
            panic!("{p:?}");
        });
        assert_eq!(cfg.filter.rules.len(), 3);
        assert_eq!(cfg.filter.groups.len(), 1);
        assert_eq!(
            cfg.filter.rules_with_groups()[2].senders,
            cfg.filter.groups[0].members
        );
        assert_eq!(cfg.filter.rules[0].dlp.get("pattern:mrn"), Some(&1));
        assert!(cfg.dlp.clinical_terms && cfg.filter.rules[0].monitor);
    }
}
