//! Data-loss prevention detectors (see ARCHITECTURE.md, "Data-loss prevention"): validated
//! identifiers found in text, each detection with a count, a confidence and masked snippets.
//! Pure: no I/O, no allocation beyond the detections; the text is walked once for numbers
//! (a tokenizer of digit runs with single space or hyphen separators) and once by one
//! aho-corasick automaton for every literal (context words, dictionaries); the few regexes
//! (postcodes, NI numbers, IBANs, custom patterns) are the `regex` crate's, linear in the text.
//!
//! A candidate whose checksum fails is never a detection: 10-digit phone numbers and order
//! numbers that fail NHS modulus 11, card-like numbers that fail Luhn.

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::Regex;
use serde::Serialize;

/// What one detector found in one text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    /// `nhs_number`, `chi_number`, `ni_number`, `payment_card`, `iban`,
    /// `sort_code_account`, `uk_postcode`, or `dictionary:NAME` / `pattern:NAME`.
    pub detector: String,
    pub count: usize,
    /// 0..1: the highest confidence of its matches (context words raise it).
    pub confidence: f32,
    /// At most [`MAX_SNIPPETS`] matches, masked: all but the last 3 characters hidden.
    pub snippets: Vec<String>,
}

pub const MAX_SNIPPETS: usize = 5;

/// How far (in bytes, each side) a context word may be from a match to raise its confidence.
pub const CONTEXT_WINDOW: usize = 60;

/// A named word list: a detection counts every whole-word occurrence (case-insensitive).
#[derive(Debug, Clone, PartialEq)]
pub struct Dictionary {
    pub name: String,
    pub words: Vec<String>,
}

/// A named custom pattern (the `regex` crate's syntax; compiled with a size limit).
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    pub name: String,
    pub regex: String,
}

/// Which detectors run.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub nhs_number: bool,
    pub chi_number: bool,
    pub ni_number: bool,
    pub payment_card: bool,
    pub iban: bool,
    pub sort_code_account: bool,
    pub uk_postcode: bool,
    /// Dates written after a date-of-birth label ("DOB", "date of birth", "born").
    pub date_of_birth: bool,
    pub dictionaries: Vec<Dictionary>,
    pub patterns: Vec<Pattern>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            nhs_number: true,
            chi_number: true,
            ni_number: true,
            payment_card: true,
            iban: true,
            sort_code_account: true,
            uk_postcode: true,
            date_of_birth: true,
            dictionaries: Vec::new(),
            patterns: Vec::new(),
        }
    }
}

/// The built-in dictionary of clinical terms (`[dlp] clinical_terms`): words that make a
/// message about someone's health, the special category of personal data (UK GDPR art. 9).
pub const CLINICAL_TERMS: &[&str] = &[
    "diagnosis",
    "diagnosed",
    "prognosis",
    "discharge summary",
    "referral letter",
    "clinic letter",
    "histology",
    "biopsy",
    "pathology report",
    "radiology report",
    "blood results",
    "test results",
    "prescription",
    "medication",
    "dosage",
    "chemotherapy",
    "radiotherapy",
    "oncology",
    "cancer",
    "carcinoma",
    "tumour",
    "metastatic",
    "hiv",
    "antiretroviral",
    "hepatitis",
    "tuberculosis",
    "sexually transmitted",
    "chlamydia",
    "gonorrhoea",
    "syphilis",
    "pregnancy",
    "termination of pregnancy",
    "miscarriage",
    "ivf",
    "fertility",
    "mental health act",
    "sectioned",
    "psychiatric",
    "psychosis",
    "schizophrenia",
    "bipolar",
    "depression",
    "anxiety disorder",
    "eating disorder",
    "self-harm",
    "suicide",
    "overdose",
    "substance misuse",
    "alcohol dependence",
    "methadone",
    "dementia",
    "alzheimer's",
    "epilepsy",
    "diabetes",
    "learning disability",
    "autism",
    "safeguarding",
    "child protection",
    "dnacpr",
    "palliative",
    "end of life care",
    "allergy",
    "allergies",
    "gender identity clinic",
    "genetic test",
    "mri scan",
    "ct scan",
    "x-ray",
    "ecg",
];

/// ICD-10 codes written with their dot (`E11.9`, `J45.909`): `[dlp] icd10_codes`.
pub const ICD10_PATTERN: &str = r"\b[A-TV-Z][0-9][0-9AB]\.[0-9A-KXZ]{1,4}\b";

/// Words near a number that make it more likely what it looks like.
const HEALTH_CONTEXT: &[&str] = &[
    "nhs",
    "patient",
    "hospital",
    "mrn",
    "clinic",
    "gp",
    "dob",
    "date of birth",
    "ward",
    "referral",
    "discharge",
];
const CHI_CONTEXT: &[&str] = &["chi"];
const CARD_CONTEXT: &[&str] = &[
    "card",
    "visa",
    "mastercard",
    "amex",
    "expiry",
    "expires",
    "cvv",
    "cvc",
    "payment",
];
const BANK_CONTEXT: &[&str] = &["sort code", "account", "bank", "iban", "acc no", "a/c"];
const NI_CONTEXT: &[&str] = &["national insurance", "ni number", "nino", "ni no"];
/// Labels a date of birth follows.
const DOB_CONTEXT: &[&str] = &[
    "dob",
    "d.o.b",
    "d.o.b.",
    "date of birth",
    "birth date",
    "birthdate",
    "born",
    "born on",
];
/// How far after its label (bytes) a date of birth may start.
const DOB_WINDOW: usize = 40;

/// Compiled detectors for one configuration.
#[derive(Debug)]
pub struct Scanner {
    settings: Settings,
    /// Context words (kind 0..4) then dictionary words (kind 5 + dictionary index).
    literals: AhoCorasick,
    /// Per word of `literals`: the kinds it is (a word may be a context word and a
    /// dictionary's).
    literal_kind: Vec<Vec<usize>>,
    postcode: Regex,
    ni: Regex,
    iban: Regex,
    date: Regex,
    patterns: Vec<(String, Regex)>,
}

const KIND_HEALTH: usize = 0;
const KIND_CHI: usize = 1;
const KIND_CARD: usize = 2;
const KIND_BANK: usize = 3;
const KIND_NI: usize = 4;
const KIND_DOB: usize = 5;
const KIND_DICTIONARY: usize = 6;

impl Scanner {
    /// Compiles the detectors; a custom pattern that does not compile (or is too large) is
    /// refused with its name.
    pub fn new(settings: Settings) -> Result<Scanner, String> {
        let mut words: Vec<String> = Vec::new();
        let mut kind = Vec::new();
        let mut index = HashMap::new();
        for (k, list) in [
            HEALTH_CONTEXT,
            CHI_CONTEXT,
            CARD_CONTEXT,
            BANK_CONTEXT,
            NI_CONTEXT,
            DOB_CONTEXT,
        ]
        .iter()
        .enumerate()
        {
            for w in *list {
                add_word(&mut index, &mut words, &mut kind, w.to_lowercase(), k);
            }
        }
        for (i, d) in settings.dictionaries.iter().enumerate() {
            for w in &d.words {
                let w = w.trim();
                if !w.is_empty() {
                    add_word(
                        &mut index,
                        &mut words,
                        &mut kind,
                        w.to_lowercase(),
                        KIND_DICTIONARY + i,
                    );
                }
            }
        }
        let literals = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            // Every match, overlapping ones too: a dictionary's "trial" inside its "trial 42",
            // a context word inside a longer one that is not a whole word.
            .match_kind(MatchKind::Standard)
            .build(&words)
            .map_err(|e| format!("word lists: {e}"))?;
        let mut patterns = Vec::new();
        for p in &settings.patterns {
            let re = regex::RegexBuilder::new(&p.regex)
                .size_limit(1 << 20)
                .dfa_size_limit(1 << 20)
                .build()
                .map_err(|e| format!("pattern {}: {e}", p.name))?;
            patterns.push((p.name.clone(), re));
        }
        let re = |s: &str| Regex::new(s).expect("built-in pattern");
        Ok(Scanner {
            settings,
            literals,
            literal_kind: kind,
            postcode: re(
                r"^(?:GIR ?0AA|[A-PR-UWYZ][A-HK-Y]?[0-9][0-9A-HJKPSTUW]? ?[0-9][ABD-HJLNP-UW-Z]{2})(?-u:\b)",
            ),
            ni: re(r"^[A-Z]{2} ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D](?-u:\b)"),
            iban: re(r"^[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?-u:\b)"),
            // 12/03/1984, 12.3.84, 1984-03-12, 12 March 1984, 12 Mar 84: a real day and
            // month (checked after the match: the month's length).
            date: re(concat!(
                r"(?i)(?-u:\b)(?:(?P<d1>[0-9]{1,2})[/.-](?P<m1>[0-9]{1,2})[/.-](?P<y1>[0-9]{4}|[0-9]{2})",
                r"|(?P<y2>[0-9]{4})-(?P<m2>[0-9]{2})-(?P<d2>[0-9]{2})",
                r"|(?P<d3>[0-9]{1,2})(?:st|nd|rd|th)? (?P<m3>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*,? (?P<y3>[0-9]{4}|[0-9]{2}))(?-u:\b)"
            )),
            patterns,
        })
    }

    /// Whether `run` is one of the numeric identifiers (recorded in `hits` if so).
    fn numeric(
        &self,
        text: &str,
        run: &Run,
        near: &dyn Fn(usize, usize, usize) -> bool,
        hits: &mut Hits,
    ) -> bool {
        let d = run.digits.as_str();
        let raw = &text[run.start..run.end];
        let mut found = false;
        if d.len() == 10 && (run.groups == [3, 3, 4] || run.groups == [10]) && mod11_valid(d) {
            if self.settings.chi_number
                && valid_ddmmyy(&d[..6])
                && near(KIND_CHI, run.start, run.end)
            {
                hits.add("chi_number".into(), 0.9, raw);
                found = true;
            } else if self.settings.nhs_number {
                let c = if near(KIND_HEALTH, run.start, run.end) {
                    0.95
                } else {
                    0.6
                };
                hits.add("nhs_number".into(), c, raw);
                found = true;
            }
        }
        if self.settings.payment_card
            && (13..=19).contains(&d.len())
            && card_grouping(&run.groups)
            && luhn_valid(d)
            && card_issuer(d).is_some()
        {
            let c = if near(KIND_CARD, run.start, run.end) {
                0.95
            } else {
                0.75
            };
            hits.add("payment_card".into(), c, raw);
            found = true;
        }
        if self.settings.sort_code_account && run.groups == [2, 2, 2] && run.separator == Some('-')
        {
            let mut end = (run.end + 40).min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let account = chains(&text[run.end..end])
                .map(|c| window(&text[run.end..end], &c))
                .find(|a| a.digits.len() == 8 && a.groups.len() == 1);
            if let Some(account) = account {
                let c = if near(KIND_BANK, run.start, run.end) {
                    0.9
                } else {
                    0.6
                };
                let span = &text[run.start..run.end + account.end];
                hits.add("sort_code_account".into(), c, span);
                found = true;
            }
        }
        found
    }

    /// Every detection in `text`, one per detector that found something, in a stable order.
    pub fn scan(&self, text: &str) -> Vec<Detection> {
        let mut hits = Hits::default();
        // Context words and dictionary words, at their positions.
        let mut context: Vec<Vec<usize>> = vec![Vec::new(); KIND_DICTIONARY];
        {
            for m in self.literals.find_overlapping_iter(text) {
                if !whole_word(text, m.start(), m.end()) {
                    continue;
                }
                for &k in &self.literal_kind[m.pattern().as_usize()] {
                    if k < KIND_DICTIONARY {
                        context[k].push(m.start());
                    } else {
                        let d = &self.settings.dictionaries[k - KIND_DICTIONARY];
                        hits.add(
                            format!("dictionary:{}", d.name),
                            0.6,
                            &text[m.start()..m.end()],
                        );
                    }
                }
            }
        }
        // Sorted, so that each candidate looks up its context in O(log n): a long text
        // full of context words would otherwise cost (candidates × words).
        for c in &mut context {
            c.sort_unstable();
        }
        let near = |k: usize, start: usize, end: usize| {
            let from = start.saturating_sub(CONTEXT_WINDOW);
            let c = &context[k];
            let i = c.partition_point(|&p| p < from);
            c.get(i).is_some_and(|&p| p <= end + CONTEXT_WINDOW)
        };
        if self.settings.date_of_birth {
            // Only where a label is: one short, anchored look after each.
            let mut next = 0;
            for &p in &context[KIND_DOB] {
                let from = p.max(next);
                let mut end = (p + DOB_WINDOW + 30).min(text.len());
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                if from >= end {
                    continue;
                }
                if let Some(c) = self.date.captures(&text[from..end])
                    && let Some(m) = c.get(0)
                    && from + m.start() <= p + DOB_WINDOW
                    && date_valid(&c)
                {
                    next = from + m.end();
                    hits.add("date_of_birth".into(), 0.85, m.as_str());
                }
            }
        }
        for chain in chains(text) {
            // Numbers written one after another ("943 476 5919 401 023 2137") make one chain
            // of groups: every window of up to MAX_WINDOW consecutive groups is a candidate,
            // the longest match first, and a match's groups are not used again.
            let mut s = 0;
            while s < chain.len() {
                let longest = MAX_WINDOW.min(chain.len() - s);
                let hit = (1..=longest).rev().find(|&len| {
                    let run = window(text, &chain[s..s + len]);
                    self.numeric(text, &run, &near, &mut hits)
                });
                s += hit.unwrap_or(1);
            }
        }
        // NI numbers, IBANs and postcodes all begin a word with an upper-case letter followed
        // by another or a digit: one pass finds those starts (rare in prose), and the three
        // patterns, anchored, are tried there only. Matches of one detector do not overlap.
        let mut next = [0usize; 3];
        for start in upper_starts(text.as_bytes()) {
            let mut end = (start + 64).min(text.len());
            while end < text.len() && text.as_bytes()[end].is_ascii_alphanumeric() {
                end += 1;
            }
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let at = &text[start..end];
            if self.settings.ni_number
                && start >= next[0]
                && let Some(m) = self.ni.find(at)
                && ni_prefix_valid(&m.as_str()[..2])
            {
                next[0] = start + m.end();
                let c = if near(KIND_NI, start, start + m.end()) {
                    0.95
                } else {
                    0.8
                };
                hits.add("ni_number".into(), c, m.as_str());
            }
            if self.settings.iban
                && start >= next[1]
                && let Some(m) = self.iban.find(at)
            {
                let compact: String = m.as_str().chars().filter(|c| *c != ' ').collect();
                if iban_valid(&compact) {
                    next[1] = start + m.end();
                    let c = if near(KIND_BANK, start, start + m.end()) {
                        0.95
                    } else {
                        0.85
                    };
                    hits.add("iban".into(), c, m.as_str());
                }
            }
            if self.settings.uk_postcode
                && start >= next[2]
                && let Some(m) = self.postcode.find(at)
            {
                next[2] = start + m.end();
                hits.add("uk_postcode".into(), 0.3, m.as_str());
            }
        }
        for (name, re) in &self.patterns {
            for m in re.find_iter(text) {
                if !m.as_str().is_empty() {
                    hits.add(format!("pattern:{name}"), 0.7, m.as_str());
                }
            }
        }
        hits.finish()
    }
}

#[derive(Default)]
struct Hits {
    by: Vec<Detection>,
}

impl Hits {
    fn add(&mut self, detector: String, confidence: f32, raw: &str) {
        let i = match self.by.iter().position(|d| d.detector == detector) {
            Some(i) => i,
            None => {
                self.by.push(Detection {
                    detector,
                    count: 0,
                    confidence: 0.0,
                    snippets: Vec::new(),
                });
                self.by.len() - 1
            }
        };
        let d = &mut self.by[i];
        d.count += 1;
        d.confidence = d.confidence.max(confidence);
        if d.snippets.len() < MAX_SNIPPETS {
            d.snippets.push(mask(raw));
        }
    }

    fn finish(mut self) -> Vec<Detection> {
        self.by.sort_by(|a, b| a.detector.cmp(&b.detector));
        self.by
    }
}

/// All but the last 3 letters and digits hidden (`*** *** *919`); separators stay.
pub fn mask(raw: &str) -> String {
    let total = raw.chars().filter(|c| c.is_alphanumeric()).count();
    let mut seen = 0;
    raw.chars()
        .map(|c| {
            if c.is_alphanumeric() {
                seen += 1;
                if seen + 3 > total { c } else { '*' }
            } else {
                c
            }
        })
        .collect()
}

/// Whether a date the `date` pattern matched is a real day of a real month, in a plausible
/// year of birth (1900 up to this century; two-digit years are any).
fn date_valid(c: &regex::Captures<'_>) -> bool {
    let num = |k: &str| c.name(k).and_then(|m| m.as_str().parse::<u32>().ok());
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let (d, m, y) = if let (Some(d), Some(m)) = (num("d1"), num("m1")) {
        (d, m, c.name("y1").map(|y| y.as_str()))
    } else if let (Some(d), Some(m)) = (num("d2"), num("m2")) {
        (d, m, c.name("y2").map(|y| y.as_str()))
    } else if let (Some(d), Some(m)) = (
        num("d3"),
        c.name("m3").and_then(|m| {
            let m = m.as_str().to_ascii_lowercase();
            MONTHS.iter().position(|x| *x == m).map(|i| i as u32 + 1)
        }),
    ) {
        (d, m, c.name("y3").map(|y| y.as_str()))
    } else {
        return false;
    };
    let Some(y) = y else { return false };
    let year: u32 = y.parse().unwrap_or(0);
    if y.len() == 4 && !(1900..=2099).contains(&year) {
        return false;
    }
    let leap = y.len() == 2
        || (year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)));
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// Adds `w` as a word of kind `k` (once per kind, however often it is listed).
fn add_word(
    index: &mut HashMap<String, usize>,
    words: &mut Vec<String>,
    kinds: &mut Vec<Vec<usize>>,
    w: String,
    k: usize,
) {
    match index.get(&w) {
        Some(&i) if kinds[i].contains(&k) => {}
        Some(&i) => kinds[i].push(k),
        None => {
            index.insert(w.clone(), words.len());
            words.push(w);
            kinds.push(vec![k]);
        }
    }
}

/// Word starts with an upper-case ASCII letter followed by another or a digit (`SW1A`,
/// `AB123456C`, `GB82…`), not preceded by a letter, digit or underscore.
fn upper_starts(b: &[u8]) -> impl Iterator<Item = usize> + '_ {
    (0..b.len().saturating_sub(1)).filter(move |&i| {
        b[i].is_ascii_uppercase()
            && (b[i + 1].is_ascii_uppercase() || b[i + 1].is_ascii_digit())
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
    })
}

fn whole_word(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
}

/// A candidate number: consecutive digit groups joined by one separator.
#[derive(Debug, Clone, PartialEq)]
struct Run {
    start: usize,
    end: usize,
    digits: String,
    groups: Vec<usize>,
    separator: Option<char>,
}

/// The most groups one identifier is written in (a card in groups of four: 5).
const MAX_WINDOW: usize = 5;
/// A group longer than this is no identifier's part (the longest card has 19 digits).
const MAX_GROUP: usize = 19;

/// One group of digits: its byte range, and the separator before it (none for the first).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Group {
    start: usize,
    end: usize,
    before: Option<u8>,
}

/// Chains of digit groups separated by exactly one space or one hyphen, not touching letters
/// or other digits (an order reference like `A1234567890B` is no number of ours). A group
/// over [`MAX_GROUP`] digits breaks the chain and is dropped.
fn chains(text: &str) -> impl Iterator<Item = Vec<Group>> + '_ {
    let b = text.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < b.len() {
            if !b[i].is_ascii_digit() || (i > 0 && b[i - 1].is_ascii_alphanumeric()) {
                i += 1;
                continue;
            }
            let mut chain: Vec<Group> = Vec::new();
            let mut j = i;
            let mut before = None;
            loop {
                let start = j;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
                let glued = b.get(j).is_some_and(|c| c.is_ascii_alphabetic());
                if j - start > MAX_GROUP || glued {
                    // Not ours, and it ends the chain: skip the rest of the token.
                    while j < b.len() && b[j].is_ascii_alphanumeric() {
                        j += 1;
                    }
                    break;
                }
                chain.push(Group {
                    start,
                    end: j,
                    before,
                });
                if j + 1 < b.len()
                    && (b[j] == b' ' || b[j] == b'-')
                    && b[j + 1].is_ascii_digit()
                    && chain
                        .last()
                        .and_then(|g| g.before)
                        .is_none_or(|s| s == b[j])
                {
                    before = Some(b[j]);
                    j += 1;
                } else {
                    break;
                }
            }
            i = j.max(i + 1);
            if !chain.is_empty() {
                return Some(chain);
            }
        }
        None
    })
}

/// The candidate made of `groups` (consecutive groups of one chain).
fn window(text: &str, groups: &[Group]) -> Run {
    let start = groups[0].start;
    let end = groups[groups.len() - 1].end;
    Run {
        start,
        end,
        digits: text[start..end]
            .chars()
            .filter(char::is_ascii_digit)
            .collect(),
        groups: groups.iter().map(|g| g.end - g.start).collect(),
        separator: groups.get(1).and_then(|g| g.before).map(char::from),
    }
}

/// NHS (and CHI) numbers: weights 10..2 over the first nine digits; 11 − (sum mod 11) is the
/// check digit, 11 meaning 0 and 10 meaning no valid number.
pub fn mod11_valid(digits: &str) -> bool {
    let d: Vec<u32> = digits.chars().filter_map(|c| c.to_digit(10)).collect();
    if d.len() != 10 || d.iter().all(|&x| x == d[0]) {
        return false;
    }
    let sum: u32 = d[..9].iter().zip((2..=10).rev()).map(|(x, w)| x * w).sum();
    let check = match 11 - sum % 11 {
        11 => 0,
        10 => return false,
        c => c,
    };
    check == d[9]
}

fn valid_ddmmyy(s: &str) -> bool {
    let n = |r: std::ops::Range<usize>| s[r].parse::<u32>().unwrap_or(0);
    let (day, month, year) = (n(0..2), n(2..4), n(4..6));
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        // The century is not in the number: 29 February is allowed in any leap year's last
        // two digits.
        2 if year % 4 == 0 => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0;
    for (i, c) in digits.chars().rev().enumerate() {
        let Some(mut x) = c.to_digit(10) else {
            return false;
        };
        if i % 2 == 1 {
            x *= 2;
            if x > 9 {
                x -= 9;
            }
        }
        sum += x;
    }
    !digits.is_empty() && sum % 10 == 0
}

/// Card numbers are written whole or in groups of four (Amex 4-6-5).
fn card_grouping(groups: &[usize]) -> bool {
    match groups {
        [_] => true,
        [4, 6, 5] => true,
        g => g.len() >= 3 && g[..g.len() - 1].iter().all(|&x| x == 4) && g[g.len() - 1] <= 4,
    }
}

/// The issuer by its number's first digits and length (IIN ranges of the networks seen in
/// the UK).
pub fn card_issuer(digits: &str) -> Option<&'static str> {
    let len = digits.len();
    let p = |n: usize| {
        digits
            .get(..n)
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(0)
    };
    if digits.starts_with('4') && matches!(len, 13 | 16 | 19) {
        return Some("visa");
    }
    if len == 16 && ((51..=55).contains(&p(2)) || (2221..=2720).contains(&p(4))) {
        return Some("mastercard");
    }
    if len == 15 && matches!(p(2), 34 | 37) {
        return Some("amex");
    }
    if (16..=19).contains(&len) && (p(4) == 6011 || p(2) == 65 || (644..=649).contains(&p(3))) {
        return Some("discover");
    }
    if (12..=19).contains(&len)
        && matches!(
            p(4),
            5018 | 5020 | 5038 | 5893 | 6304 | 6759 | 6761 | 6762 | 6763
        )
    {
        return Some("maestro");
    }
    None
}

/// IBAN length by country (ISO 13616 registry, the countries UK organisations pay most).
fn iban_length(country: &str) -> Option<usize> {
    Some(match country {
        "GB" | "IE" | "DE" => 22,
        "FR" | "IT" | "MC" => 27,
        "ES" | "SE" => 24,
        "NL" | "DK" | "FI" => 18,
        "BE" => 16,
        "CH" | "LI" => 21,
        "AT" | "LU" => 20,
        "PL" => 28,
        "PT" => 25,
        "NO" => 15,
        "GR" => 27,
        "CZ" | "SK" => 24,
        "HU" => 28,
        "RO" => 24,
        "IS" => 26,
        "MT" => 31,
        "CY" => 28,
        "GI" => 23,
        "JE" | "GG" | "IM" => 22,
        _ => return None,
    })
}

pub fn iban_valid(compact: &str) -> bool {
    let (Some(country), true) = (compact.get(..2), compact.is_ascii()) else {
        return false;
    };
    if iban_length(country) != Some(compact.len()) {
        return false;
    }
    let rearranged = format!("{}{}", &compact[4..], &compact[..4]);
    let mut rem: u32 = 0;
    for c in rearranged.chars() {
        let v = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// National Insurance number prefixes HMRC never issues.
fn ni_prefix_valid(p: &str) -> bool {
    let b = p.as_bytes();
    b.len() == 2
        && !b"DFIQUV".contains(&b[0])
        && !b"DFIOQUV".contains(&b[1])
        && !matches!(p, "BG" | "GB" | "KN" | "NK" | "NT" | "TN" | "ZZ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &str) -> Vec<Detection> {
        Scanner::new(Settings::default()).unwrap().scan(text)
    }

    fn found<'a>(d: &'a [Detection], name: &str) -> Option<&'a Detection> {
        d.iter().find(|x| x.detector == name)
    }

    #[test]
    fn nhs_numbers_in_every_spacing_with_the_check_digit_and_context() {
        // 943 476 5919 is the NHS's own example of a valid number.
        for text in ["943 476 5919", "943-476-5919", "9434765919"] {
            let d = scan(&format!("Ref {text} attached"));
            let n = found(&d, "nhs_number").unwrap_or_else(|| panic!("{text}: {d:?}"));
            assert_eq!(n.count, 1);
            assert!(n.confidence < 0.9, "no context: {n:?}");
            assert!(
                n.snippets[0].ends_with("919") && !n.snippets[0].contains("943"),
                "{n:?}"
            );
        }
        let d = scan("Patient NHS number: 943 476 5919.");
        assert!(found(&d, "nhs_number").unwrap().confidence > 0.9);
        // The traps: a failing check digit, a phone number, mixed spacing, too many digits,
        // and a number glued to letters.
        for text in [
            "943 476 5918",
            "Call 0207 946 0018",
            "943 4765 919",
            "94347659190",
            "ORD9434765919X",
            "1111111111",
        ] {
            assert!(found(&scan(text), "nhs_number").is_none(), "{text}");
        }
    }

    #[test]
    fn chi_numbers_need_a_date_and_the_word() {
        // 0101011237: 01/01/01, check digit valid under modulus 11.
        assert!(mod11_valid("0101011237"));
        let d = scan("CHI 0101011237");
        assert_eq!(found(&d, "chi_number").map(|x| x.count), Some(1), "{d:?}");
        assert!(found(&d, "nhs_number").is_none());
        // Without the word it is reported as what it also is: a valid NHS-style number.
        assert!(found(&scan("ref 0101011237"), "nhs_number").is_some());
        // 31 February is no date.
        assert!(!valid_ddmmyy("310201"));
        assert!(valid_ddmmyy("290204") && !valid_ddmmyy("290203"));
    }

    #[test]
    fn payment_cards_need_luhn_and_an_issuer() {
        for (text, issuer) in [
            ("4111 1111 1111 1111", "visa"),
            ("5555-5555-5555-4444", "mastercard"),
            ("3782 822463 10005", "amex"),
            ("6011111111111117", "discover"),
        ] {
            let digits: String = text.chars().filter(char::is_ascii_digit).collect();
            assert_eq!(card_issuer(&digits), Some(issuer), "{text}");
            let d = scan(&format!("card: {text}"));
            let c = found(&d, "payment_card").unwrap_or_else(|| panic!("{text}: {d:?}"));
            assert!(c.confidence > 0.9);
        }
        for text in [
            "4111 1111 1111 1112",  // Luhn fails
            "1234 5678 9012 3452",  // no issuer
            "41 1111 1111 1111 11", // not a card's grouping
        ] {
            assert!(found(&scan(text), "payment_card").is_none(), "{text}");
        }
    }

    #[test]
    fn iban_ni_sort_code_and_postcode() {
        let d = scan("Pay GB82 WEST 1234 5698 7654 32 today");
        assert_eq!(found(&d, "iban").map(|x| x.count), Some(1), "{d:?}");
        assert!(found(&scan("GB82 WEST 1234 5698 7654 33"), "iban").is_none());
        assert!(iban_valid("DE89370400440532013000"));

        let d = scan("NI number QQ 12 34 56 C and AB123456C");
        let ni = found(&d, "ni_number").unwrap();
        assert_eq!(ni.count, 1, "QQ is never issued: {d:?}");
        assert_eq!(ni.snippets, ["******56C"]);

        let d = scan("Sort code 20-00-00, account 12345678");
        let s = found(&d, "sort_code_account").unwrap();
        assert!(
            s.confidence > 0.8 && s.snippets[0].ends_with("678"),
            "{s:?}"
        );
        assert!(found(&scan("20-00-00 only"), "sort_code_account").is_none());

        let d = scan("Ward 7, St Thomas', London SE1 7EH");
        assert_eq!(found(&d, "uk_postcode").map(|x| x.count), Some(1), "{d:?}");
    }

    #[test]
    fn dictionaries_and_patterns_count_whole_words() {
        let s = Scanner::new(Settings {
            dictionaries: vec![Dictionary {
                name: "clinical".into(),
                words: vec!["diabetes".into(), "E11.9".into()],
            }],
            patterns: vec![Pattern {
                name: "mrn".into(),
                regex: r"\bMRN[0-9]{7}\b".into(),
            }],
            ..Settings::default()
        })
        .unwrap();
        let d = s.scan("Type 2 Diabetes (E11.9); prediabetes; MRN1234567");
        let dict = found(&d, "dictionary:clinical").unwrap();
        assert_eq!(dict.count, 2, "prediabetes is not the word: {d:?}");
        assert_eq!(found(&d, "pattern:mrn").unwrap().snippets, ["*******567"]);
        let bad = Scanner::new(Settings {
            patterns: vec![Pattern {
                name: "broken".into(),
                regex: "(".into(),
            }],
            ..Settings::default()
        });
        assert!(bad.unwrap_err().starts_with("pattern broken:"));
    }

    #[test]
    fn numbers_listed_one_after_another_are_each_found() {
        // Cells joined by single spaces (a table flattened to text), and a list longer than
        // any one identifier.
        let text = "NHS: 943 476 5919 401 023 2137 943 476 5919 401 023 2137 943 476 5919";
        let d = scan(text);
        assert_eq!(found(&d, "nhs_number").map(|x| x.count), Some(5), "{d:?}");
        let d = scan("cards 4111 1111 1111 1111 5555 5555 5555 4444");
        assert_eq!(found(&d, "payment_card").map(|x| x.count), Some(2), "{d:?}");
        // A 30-digit reference is not three numbers.
        assert!(found(&scan("ref 943476591940102321379434765919"), "nhs_number").is_none());
    }

    #[test]
    fn dates_of_birth_after_their_label() {
        for (text, n) in [
            ("Patient John Smith, DOB 12/03/1984, seen today", 1),
            ("date of birth: 1984-03-12", 1),
            ("D.O.B. 3rd March 1984", 1),
            ("born on 29 Feb 1984 in Leeds", 1),
            ("Date of birth 31/04/1984", 0), // no 31st of April
            ("born on 29/02/1983", 0),       // not a leap year
            ("Appointment 12/03/1984", 0),   // no label
            (
                "DOB: not known to us at the time of writing; the clinic on 12/03/2026",
                0,
            ), // too far
            ("dobbin 12/03/1984", 0),        // not the word
        ] {
            let d = scan(text);
            let got = found(&d, "date_of_birth").map_or(0, |d| d.count);
            assert_eq!(got, n, "{text}");
        }
        let d = scan("DOB 12/03/1984");
        assert_eq!(found(&d, "date_of_birth").unwrap().snippets, ["**/**/*984"]);
    }

    #[test]
    fn masks_keep_the_last_three_and_the_separators() {
        assert_eq!(mask("943 476 5919"), "*** *** *919");
        assert_eq!(mask("ab"), "ab");
        assert_eq!(mask(""), "");
    }

    #[test]
    fn many_numbers_are_counted_and_snippets_bounded() {
        let text = "NHS 943 476 5919\n".repeat(50);
        let d = scan(&text);
        let n = found(&d, "nhs_number").unwrap();
        assert_eq!(n.count, 50);
        assert_eq!(n.snippets.len(), MAX_SNIPPETS);
    }
}
