//! Golden cases: `tests/cases/*.json`, each a realistic message (recipients, context, check
//! outcomes as the checks would write them) and what decide() must make of it. A case reads as
//! documentation of the policy; add one per new kind of situation.

use std::path::Path;

use palisade_policy::{CheckOutcome, DecideContext, RecipientInfo, SmtpOutcome, decide};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    #[allow(dead_code)]
    about: String,
    recipients: Vec<String>,
    context: DecideContext,
    outcomes: Vec<CheckOutcome>,
    expect: Expect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    smtp_reply: SmtpOutcome,
    dispositions: Vec<String>,
    dsn_for_refused: bool,
    score: f64,
    /// Number of monitored decisions per recipient, when the case is about monitor mode.
    #[serde(default)]
    monitored: Option<Vec<usize>>,
}

#[test]
fn golden_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "cases missing in {}", dir.display());
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&file).unwrap();
        let case: Case = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let recipients: Vec<RecipientInfo> =
            case.recipients.iter().map(RecipientInfo::new).collect();
        let v = decide(&recipients, &case.outcomes, &case.context);
        let got: Vec<&str> = v
            .per_recipient
            .iter()
            .map(|r| r.disposition.name())
            .collect();
        assert_eq!(got, case.expect.dispositions, "{name}");
        assert_eq!(v.smtp_reply, case.expect.smtp_reply, "{name}");
        assert_eq!(v.dsn_for_refused, case.expect.dsn_for_refused, "{name}");
        assert_eq!(v.score, case.expect.score, "{name}");
        if let Some(monitored) = case.expect.monitored {
            let got: Vec<usize> = v.per_recipient.iter().map(|r| r.monitored.len()).collect();
            assert_eq!(got, monitored, "{name}");
        }
        // Every decided disposition carries the sentence of the rule that decided it.
        for r in &v.per_recipient {
            if let Some(why) = &r.decided_by {
                assert!(!why.sentence.is_empty(), "{name}");
            }
        }
    }
}
