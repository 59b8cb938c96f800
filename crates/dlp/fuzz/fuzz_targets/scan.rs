//! Arbitrary text through every detector (with a dictionary and a custom pattern): no panic
//! (byte offsets around multi-byte characters, chains of digit groups, context windows), every
//! detection counted at least once, and never more than the last 3 characters of an
//! identifier shown in a snippet.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use palisade_dlp::{Dictionary, MAX_SNIPPETS, Pattern, Scanner, Settings};

fn scanner() -> &'static Scanner {
    static S: OnceLock<Scanner> = OnceLock::new();
    S.get_or_init(|| {
        Scanner::new(Settings {
            dictionaries: vec![Dictionary {
                name: "words".into(),
                words: vec!["diabetes".into(), "E11.9".into(), "ünïcode".into()],
            }],
            patterns: vec![Pattern {
                name: "mrn".into(),
                regex: r"\bMRN[0-9]{7}\b".into(),
            }],
            ..Settings::default()
        })
        .expect("scanner")
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for d in scanner().scan(&text) {
        assert!(d.count >= 1 && d.count >= d.snippets.len(), "{d:?}");
        assert!(d.snippets.len() <= MAX_SNIPPETS);
        assert!((0.0..=1.0).contains(&d.confidence));
        for s in &d.snippets {
            let shown = s.chars().filter(|c| c.is_alphanumeric()).count();
            assert!(shown <= 3, "{s}");
        }
    }
});
