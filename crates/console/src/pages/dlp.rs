//! Data protection: the operator's rules (`[[filter.rule]]`) in the order they are evaluated,
//! each enforced, in monitor mode or disabled; the rule editor with its dry run against an
//! uploaded message; the DLP detectors (`[dlp]`: built-in ones on or off, the organisation's
//! dictionaries and patterns).
//!
//! Every change is one configuration revision through `forms::edit_config`, like every other
//! settings form: the revision the page was drawn from (a rule is named by its position in
//! that revision, so a list changed meanwhile is a conflict, never the wrong rule), validated
//! as a whole, audited, the engine asked to reload.
//!
//! The dry run never touches the running engine: the console writes the draft configuration
//! (today's with the edited rule in its place) and the message into a private directory and
//! runs `palisade check --config … --json --no-dns` on them, a child process with a time
//! limit. What it prints is the same report `palisade check` gives on the command line.

use std::collections::BTreeMap;
use std::time::Duration;

use askama::Template;
use axum::Form;
use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use palisade_store::config::{
    AddressGroup, Dlp, DlpDictionary, DlpFingerprint, DlpPattern, Rule, RuleAction, RuleDirection,
};
use palisade_store::{Config, Problem};
use serde_json::Value;

use crate::auth::{Perm, Principal, allows};
use crate::error::{AppError, render_status};
use crate::forms::{
    Choices, Raw, checked, choose, commit_edit, get, parse_strings, revision, select,
};
use crate::state::AppState;
use crate::view::{Field, FormView, Page, Submitted};

/// The most a dry run may take (the check's own budgets are inside it).
const DRY_RUN_TIMEOUT: Duration = Duration::from_secs(90);

/// One line of the rule list.
struct RuleRow {
    index: usize,
    name: String,
    direction: &'static str,
    conditions: String,
    action: String,
    /// `enforce`, `monitor` or `disabled`.
    mode: &'static str,
}

#[derive(Template)]
#[template(path = "dlp.html")]
struct DlpPage {
    page: Page,
    editable: bool,
    revision: i64,
    rules: Vec<RuleRow>,
    detectors: FormView,
}

/// What a dry run found, as the editor shows it.
#[derive(Default)]
struct DryRun {
    /// Why there is no report (the message could not be checked).
    error: Option<String>,
    detections: Vec<DetectionRow>,
    unscannable: Vec<String>,
    /// Rules that matched: name, mode, action, why, to whom.
    matched: Vec<(String, String, String, String, String)>,
    /// Per recipient: the outcome and the explanation lines.
    decisions: Vec<(String, String, Vec<String>)>,
    reply: String,
}

struct DetectionRow {
    detector: String,
    count: u64,
    confidence: String,
    snippets: String,
    locations: String,
}

#[derive(Template)]
#[template(path = "dlp_rule.html")]
struct RulePage {
    page: Page,
    editable: bool,
    form: FormView,
    /// The rule's position (`None`: a new rule).
    index: Option<usize>,
    revision: i64,
    dry_run: Option<DryRun>,
    /// Which checks the dry run leaves out.
    dry_run_note: &'static str,
}

const DIRECTIONS: Choices<RuleDirection> = &[
    (
        "outbound",
        "Outbound (from our users)",
        RuleDirection::Outbound,
    ),
    ("inbound", "Inbound (from outside)", RuleDirection::Inbound),
    ("any", "Both directions", RuleDirection::Any),
];

const ACTIONS: Choices<RuleAction> = &[
    (
        "quarantine",
        "Quarantine (an operator releases it)",
        RuleAction::Quarantine,
    ),
    (
        "encrypt",
        "Encrypt (held in quarantine until gateway encryption is configured)",
        RuleAction::Encrypt,
    ),
    (
        "confirm",
        "Ask the sender to confirm (signed link; discarded if not confirmed in time)",
        RuleAction::Confirm,
    ),
    (
        "reject",
        "Reject (5xx during the SMTP session)",
        RuleAction::Reject,
    ),
    (
        "strip",
        "Strip the attachments it matched (every attachment without type conditions; original kept in quarantine)",
        RuleAction::Strip,
    ),
    ("tempfail", "Defer (4xx)", RuleAction::Tempfail),
    ("discard", "Discard silently", RuleAction::Discard),
    ("deliver", "Deliver (stop here)", RuleAction::Deliver),
    ("add_header", "Add a header", RuleAction::AddHeader),
    ("tag_subject", "Tag the subject", RuleAction::TagSubject),
    ("bcc", "Send a copy to an address", RuleAction::Bcc),
];

const MODES: &[(&str, &str)] = &[
    ("enforce", "Enforce"),
    ("monitor", "Monitor (record what it would do)"),
    ("disabled", "Disabled"),
];

const UNSCANNABLE: &[(&str, &str)] = &[
    ("", "Either"),
    ("yes", "Part of the message could not be scanned"),
    ("no", "Everything was scanned"),
];

fn mode_of(r: &Rule) -> &'static str {
    match (r.enabled, r.monitor) {
        (false, _) => "disabled",
        (true, true) => "monitor",
        (true, false) => "enforce",
    }
}

fn set_mode(r: &mut Rule, mode: &str) -> bool {
    let (enabled, monitor) = match mode {
        "enforce" => (true, false),
        "monitor" => (true, true),
        "disabled" => (false, false),
        _ => return false,
    };
    r.enabled = enabled;
    r.monitor = monitor;
    true
}

/// The rule's conditions in a line (what the list shows).
fn conditions(r: &Rule) -> String {
    let mut c = Vec::new();
    let list = |v: &[String]| v.join(", ");
    if !r.senders.is_empty() {
        c.push(format!("sender {}", list(&r.senders)));
    }
    if !r.recipients.is_empty() {
        c.push(format!("recipient {}", list(&r.recipients)));
    }
    if !r.sender_groups.is_empty() {
        c.push(format!("sender in {}", list(&r.sender_groups)));
    }
    if !r.recipient_groups.is_empty() {
        c.push(format!("recipient in {}", list(&r.recipient_groups)));
    }
    if r.external {
        c.push("external recipients".into());
    }
    if let Some(n) = r.min_external_recipients {
        c.push(format!("≥ {n} external recipients"));
    }
    if r.first_mail_to_domain {
        c.push("first mail to a domain".into());
    }
    if r.lookalike_domain {
        c.push("look-alike domain".into());
    }
    if !r.dlp.is_empty() {
        let d: Vec<String> = r.dlp.iter().map(|(k, n)| format!("{k} ≥ {n}")).collect();
        c.push(d.join(" or "));
    }
    if let Some(conf) = r.dlp_min_confidence {
        c.push(format!("confidence ≥ {conf}"));
    }
    match r.unscannable {
        Some(true) => c.push("unscannable content".into()),
        Some(false) => c.push("everything scanned".into()),
        None => {}
    }
    if let (Some(h), Some(v)) = (&r.header, &r.contains) {
        c.push(format!("{h} contains \"{v}\""));
    }
    if !r.part_types.is_empty() {
        c.push(format!("type {}", list(&r.part_types)));
    }
    if !r.file_extensions.is_empty() {
        c.push(format!("extension {}", list(&r.file_extensions)));
    }
    if let Some(n) = r.min_size {
        c.push(format!("size ≥ {n} bytes"));
    }
    if !r.spam.is_empty() {
        c.push(format!("spam {}", list(&r.spam)));
    }
    if !r.antivirus.is_empty() {
        c.push(format!("antivirus {}", list(&r.antivirus)));
    }
    if c.is_empty() {
        "every message".into()
    } else {
        c.join("; ")
    }
}

fn action_label(r: &Rule) -> String {
    let name = crate::forms::value_of(ACTIONS, &r.action);
    match r.action {
        RuleAction::Bcc => format!("{name} {}", r.address.as_deref().unwrap_or("")),
        RuleAction::TagSubject => format!("{name} {}", r.value.as_deref().unwrap_or("")),
        RuleAction::AddHeader => format!(
            "{name} {}: {}",
            r.header_name.as_deref().unwrap_or(""),
            r.value.as_deref().unwrap_or("")
        ),
        _ => name.to_string(),
    }
}

fn detectors_form(d: &Dlp, groups: &[AddressGroup]) -> FormView {
    let groups: Vec<String> = groups
        .iter()
        .map(|g| format!("{}: {}", g.name, g.members.join(", ")))
        .collect();
    let dictionaries: Vec<String> = d
        .dictionaries
        .iter()
        .map(|x| format!("{}: {}", x.name, x.words.join(", ")))
        .collect();
    let patterns: Vec<String> = d
        .patterns
        .iter()
        .map(|x| format!("{}: {}", x.name, x.regex))
        .collect();
    let fingerprints: Vec<String> = d
        .fingerprints
        .iter()
        .map(|x| format!("{}: {}", x.name, x.sha256))
        .collect();
    let mut f = FormView::new("detectors", "/dlp/detectors", "", "Save detectors")
        .intro("What the dlp check looks for in every part of a message (bodies, PDFs, Office and OpenDocument files, archives, winmail.dat). It decides nothing itself: the rules above do.")
        .field(
            Field::checkbox("enabled", "Scan outbound mail", d.enabled)
                .path("dlp.enabled"),
        )
        .field(
            Field::checkbox("inbound", "Scan inbound mail too", d.inbound).path("dlp.inbound"),
        )
        .field(
            Field::new("max_text_mib", "Text read per message (MiB)", "number", d.max_text_mib.to_string())
                .path("dlp.max_text_mib")
                .help("Beyond it the rest of the message is reported as unscannable."),
        );
    for (name, label, on) in builtins(d) {
        f = f.field(Field::checkbox(name, label, on).path(format!("dlp.{name}")));
    }
    f.field(
        Field::new("dictionaries", "Dictionaries", "textarea", dictionaries.join("\n"))
            .path("dlp.dictionary")
            .rows(5)
            .help("One per line: name: word, phrase, … (whole words, any case). A rule counts them as dictionary:name."),
    )
    .field(
        Field::new("patterns", "Patterns", "textarea", patterns.join("\n"))
            .path("dlp.pattern")
            .rows(5)
            .help(r"One per line: name: regular expression (e.g. mrn: \bMRN[0-9]{7}\b). A rule counts them as pattern:name."),
    )
    .field(
        Field::new("fingerprints", "Registered files", "textarea", fingerprints.join("\n"))
            .path("dlp.fingerprint")
            .rows(3)
            .help("One per line: name: SHA-256 of the file (sha256sum FILE). Attached, or inside an archive, with exactly those bytes, it counts as fingerprint:name."),
    )
    .field(
        Field::new("groups", "Address groups", "textarea", groups.join("\n"))
            .path("filter.group")
            .rows(3)
            .help("One per line: name: addresses or patterns (clinicians: @wards.example.nhs.uk, ada@example.nhs.uk). Rules name them as sender or recipient groups."),
    )
}

/// The built-in detectors: form name (= configuration key), label, on.
fn builtins(d: &Dlp) -> [(&'static str, &'static str, bool); 10] {
    [
        ("nhs_number", "NHS numbers (modulus 11)", d.nhs_number),
        ("chi_number", "CHI numbers", d.chi_number),
        ("ni_number", "National Insurance numbers", d.ni_number),
        (
            "payment_card",
            "Payment card numbers (Luhn, issuer ranges)",
            d.payment_card,
        ),
        ("iban", "IBANs (mod 97)", d.iban),
        (
            "sort_code_account",
            "Sort codes with account numbers",
            d.sort_code_account,
        ),
        ("uk_postcode", "UK postcodes", d.uk_postcode),
        (
            "date_of_birth",
            "Dates of birth (after DOB, date of birth, born)",
            d.date_of_birth,
        ),
        (
            "clinical_terms",
            "Clinical terms (built-in dictionary)",
            d.clinical_terms,
        ),
        ("icd10_codes", "ICD-10 codes (E11.9)", d.icd10_codes),
    ]
}

fn builtin_slot<'a>(d: &'a mut Dlp, name: &str) -> &'a mut bool {
    match name {
        "nhs_number" => &mut d.nhs_number,
        "chi_number" => &mut d.chi_number,
        "ni_number" => &mut d.ni_number,
        "payment_card" => &mut d.payment_card,
        "iban" => &mut d.iban,
        "sort_code_account" => &mut d.sort_code_account,
        "uk_postcode" => &mut d.uk_postcode,
        "date_of_birth" => &mut d.date_of_birth,
        "clinical_terms" => &mut d.clinical_terms,
        _ => &mut d.icd10_codes,
    }
}

/// `name: rest` lines; a line without the colon is a problem at `path[i]`.
fn named_lines(text: &str, path: &str, problems: &mut Vec<Problem>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        match line.split_once(':') {
            Some((n, rest)) if !n.trim().is_empty() => {
                out.push((n.trim().to_string(), rest.trim().to_string()))
            }
            _ => problems.push(Problem::new(
                format!("{path}[{i}]"),
                format!("'{line}' is not 'name: …'"),
            )),
        }
    }
    out
}

async fn show(
    state: &AppState,
    p: &Principal,
    sub: Option<Submitted>,
) -> Result<Response, AppError> {
    let page = Page::load(state, p, "dlp", "Data protection").await?;
    let rev = state.current_revision().await?;
    let editable = allows(p.user.role, Perm::EditConfig);
    let rules = rev
        .config
        .filter
        .rules
        .iter()
        .enumerate()
        .map(|(index, r)| RuleRow {
            index,
            name: r.name.clone(),
            direction: crate::forms::value_of(DIRECTIONS, &r.direction),
            conditions: conditions(r),
            action: action_label(r),
            mode: mode_of(r),
        })
        .collect();
    let status = if sub.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let detectors = detectors_form(&rev.config.dlp, &rev.config.filter.groups)
        .hidden("revision", rev.id)
        .editable(editable)
        .finish(sub.as_ref());
    render_status(
        status,
        &DlpPage {
            page,
            editable,
            revision: rev.id,
            rules,
            detectors,
        },
    )
}

pub async fn page(State(state): State<AppState>, p: Principal) -> Result<Response, AppError> {
    show(&state, &p, None).await
}

pub async fn detectors(
    State(state): State<AppState>,
    p: Principal,
    Form(raw): Form<Raw>,
) -> Result<Response, AppError> {
    let rev = revision(&raw)?;
    let raw2 = raw.clone();
    let done = commit_edit(&state, &p, rev, "/dlp#detectors", move |cfg| {
        let mut pr = Vec::new();
        let raw = &raw2;
        let d = &mut cfg.dlp;
        d.enabled = checked(raw, "enabled");
        d.inbound = checked(raw, "inbound");
        crate::forms::set_num(
            &mut d.max_text_mib,
            raw,
            "max_text_mib",
            "dlp.max_text_mib",
            &mut pr,
        );
        for (name, _, _) in builtins(&d.clone()) {
            *builtin_slot(d, name) = checked(raw, name);
        }
        d.dictionaries = named_lines(get(raw, "dictionaries"), "dlp.dictionary", &mut pr)
            .into_iter()
            .map(|(name, words)| DlpDictionary {
                name,
                words: parse_strings(&words),
            })
            .collect();
        d.patterns = named_lines(get(raw, "patterns"), "dlp.pattern", &mut pr)
            .into_iter()
            .map(|(name, regex)| DlpPattern { name, regex })
            .collect();
        cfg.filter.groups = named_lines(get(raw, "groups"), "filter.group", &mut pr)
            .into_iter()
            .map(|(name, members)| AddressGroup {
                name,
                members: parse_strings(&members),
            })
            .collect();
        let d = &mut cfg.dlp;
        d.fingerprints = named_lines(get(raw, "fingerprints"), "dlp.fingerprint", &mut pr)
            .into_iter()
            .map(|(name, sha256)| DlpFingerprint {
                name,
                sha256: sha256.to_ascii_lowercase(),
            })
            .collect();
        ("DLP detectors changed".into(), pr)
    })
    .await?;
    match done {
        Ok(r) => Ok(r),
        Err(problems) => {
            let sub = Submitted {
                form: "detectors".into(),
                raw,
                problems,
            };
            show(&state, &p, Some(sub)).await
        }
    }
}

/// The list's buttons: move a rule up or down, set its mode, delete it.
pub async fn order(
    State(state): State<AppState>,
    p: Principal,
    Form(raw): Form<Raw>,
) -> Result<Response, AppError> {
    let rev = revision(&raw)?;
    let index: usize = get(&raw, "index")
        .parse()
        .map_err(|_| AppError::BadRequest("The form did not say which rule.".into()))?;
    let op = get(&raw, "op").to_string();
    let done = commit_edit(&state, &p, rev, "/dlp#rules", move |cfg| {
        let rules = &mut cfg.filter.rules;
        let mut pr = Vec::new();
        let Some(name) = rules.get(index).map(|r| r.name.clone()) else {
            pr.push(Problem::new(
                "filter.rule",
                "There is no such rule.".to_string(),
            ));
            return (String::new(), pr);
        };
        let comment = match op.as_str() {
            "up" if index > 0 => {
                rules.swap(index, index - 1);
                format!("rule '{name}' moved up")
            }
            "down" if index + 1 < rules.len() => {
                rules.swap(index, index + 1);
                format!("rule '{name}' moved down")
            }
            "up" | "down" => format!("rule '{name}' not moved"),
            "delete" => {
                rules.remove(index);
                format!("rule '{name}' deleted")
            }
            mode if set_mode(&mut rules[index], mode) => format!("rule '{name}' set to {mode}"),
            _ => {
                pr.push(Problem::new(
                    "filter.rule",
                    format!("'{op}' is not an action"),
                ));
                String::new()
            }
        };
        (comment, pr)
    })
    .await?;
    match done {
        Ok(r) => Ok(r),
        Err(problems) => {
            let lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            Err(AppError::BadRequest(lines.join(" ")))
        }
    }
}

/// The editor's fields, filled from `r`; `i` is the rule's position in the list (its
/// configuration path, so the validation's problems land by their fields).
fn rule_form(r: &Rule, i: usize, action: &str) -> FormView {
    let at = |f: &str| format!("filter.rule[{i}].{f}");
    let opt = |v: Option<String>| v.unwrap_or_default();
    let dlp: Vec<String> = r.dlp.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let unscannable = match r.unscannable {
        Some(true) => "yes",
        Some(false) => "no",
        None => "",
    };
    FormView::new("rule", action, "", "Save rule")
        .field(Field::new("name", "Name", "text", &r.name).path(at("name")))
        .field(Field::new("mode", "Mode", "select", mode_of(r)).options(MODES).path(at("monitor")).help("Monitor: the rule's verdict is recorded (incidents, report) while the message flows as if the rule were absent."))
        .field(select("direction", "Applies to", DIRECTIONS, &r.direction, &at("direction")))
        .field(
            Field::new("senders", "Senders", "textarea", r.senders.join("\n"))
                .path(at("senders"))
                .rows(2)
                .help("user@example.org, @example.org, *.example.org; any of them. Empty: any sender."),
        )
        .field(
            Field::new("recipients", "Recipients", "textarea", r.recipients.join("\n"))
                .path(at("recipients"))
                .rows(2)
                .help("As senders. The rule then applies only to the recipients it matched."),
        )
        .field(
            Field::new("sender_groups", "Sender groups", "text", r.sender_groups.join(", "))
                .path(at("sender_groups"))
                .help("Address groups (below, with the detectors) whose members count as senders."),
        )
        .field(
            Field::new("recipient_groups", "Recipient groups", "text", r.recipient_groups.join(", "))
                .path(at("recipient_groups"))
                .help("Address groups whose members count as recipients."),
        )
        .field(Field::checkbox("external", "Only recipients outside our domains", r.external).path(at("external")))
        .field(
            Field::new("min_external_recipients", "At least this many external recipients", "number", opt(r.min_external_recipients.map(|n| n.to_string())))
                .path(at("min_external_recipients")),
        )
        .field(Field::checkbox("first_mail_to_domain", "First mail to the recipient's domain", r.first_mail_to_domain).path(at("first_mail_to_domain")))
        .field(Field::checkbox("lookalike_domain", "Recipient domain looks like one of ours or one we mail often", r.lookalike_domain).path(at("lookalike_domain")))
        .field(
            Field::new("dlp", "Detections", "textarea", dlp.join("\n"))
                .path(at("dlp"))
                .rows(3)
                .help("One per line: detector and the least count in the message, e.g. nhs_number 5, payment_card 1, dictionary:project-x 1. Any line reaching its count matches."),
        )
        .field(
            Field::new("dlp_min_confidence", "Least confidence (0 to 1)", "text", opt(r.dlp_min_confidence.map(|c| c.to_string())))
                .path(at("dlp_min_confidence"))
                .help("Context words (NHS, patient, card, …) near a number raise it."),
        )
        .field(Field::new("unscannable", "Scanning", "select", unscannable).options(UNSCANNABLE).path(at("unscannable")))
        .field(Field::new("header", "Header field", "text", opt(r.header.clone())).path(at("header")))
        .field(Field::new("contains", "… contains", "text", opt(r.contains.clone())).path(at("contains")).help("e.g. Subject contains [secure]"))
        .field(Field::new("part_types", "Attachment types", "text", r.part_types.join(", ")).path(at("part_types")).help("By content: pdf, xlsx, exe, application/zip, …"))
        .field(Field::new("file_extensions", "File name extensions", "text", r.file_extensions.join(", ")).path(at("file_extensions")))
        .field(Field::new("min_size", "At least this many bytes", "number", opt(r.min_size.map(|n| n.to_string()))).path(at("min_size")))
        .field(Field::new("spam", "Spam verdict", "text", r.spam.join(", ")).path(at("spam")).help("ham, spam, allowed"))
        .field(Field::new("antivirus", "Antivirus verdict", "text", r.antivirus.join(", ")).path(at("antivirus")).help("clean, infected, unscannable"))
        .field(select("action", "Action", ACTIONS, &r.action, &at("action")))
        .field(Field::new("reason", "Reason (shown to operators and in notices)", "text", opt(r.reason.clone())).path(at("reason")))
        .field(Field::new("reply_code", "Reply code (reject, defer)", "number", opt(r.reply_code.map(|c| c.to_string()))).path(at("reply_code")))
        .field(Field::new("reply_text", "Reply text (reject, defer)", "text", opt(r.reply_text.clone())).path(at("reply_text")))
        .field(Field::new("header_name", "Header name (add header)", "text", opt(r.header_name.clone())).path(at("header_name")))
        .field(Field::new("value", "Header value or subject tag", "text", opt(r.value.clone())).path(at("value")))
        .field(Field::new("address", "Copy to (bcc)", "text", opt(r.address.clone())).path(at("address")))
        .field(Field::checkbox("notify_sender", "Tell the sender what the rule did (never the content)", r.notify_sender).path(at("notify_sender")))
        .field(
            Field::new("notify", "Tell these addresses of each match", "text", r.notify.join(", "))
                .path(at("notify"))
                .help("A compliance officer, the mail team: rule, sender, recipients, subject and what was found, masked. Enforced rules only."),
        )
}

/// The rule the editor's fields describe; what cannot be read is a problem at its field.
fn rule_from(raw: &Raw, i: usize, problems: &mut Vec<Problem>) -> Rule {
    let at = |f: &str| format!("filter.rule[{i}].{f}");
    let text = |name: &str| Some(get(raw, name).trim().to_string()).filter(|s| !s.is_empty());
    fn num<T: std::str::FromStr>(
        v: Option<String>,
        path: String,
        pr: &mut Vec<Problem>,
    ) -> Option<T> {
        let v = v?;
        match v.parse() {
            Ok(n) => Some(n),
            Err(_) => {
                pr.push(Problem::new(
                    path,
                    format!("'{v}' is not a number in range"),
                ));
                None
            }
        }
    }
    let mut dlp = BTreeMap::new();
    for (j, line) in get(raw, "dlp")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        match line.split_whitespace().collect::<Vec<_>>()[..] {
            [d, n] if n.parse::<u32>().is_ok_and(|n| n > 0) => {
                dlp.insert(d.to_string(), n.parse().unwrap_or(1));
            }
            [d] => {
                dlp.insert(d.to_string(), 1);
            }
            _ => problems.push(Problem::new(
                format!("{}[{j}]", at("dlp")),
                format!("'{line}' is not 'detector count'"),
            )),
        }
    }
    let mut r = Rule {
        name: get(raw, "name").trim().to_string(),
        direction: choose(
            DIRECTIONS,
            raw,
            "direction",
            &at("direction"),
            RuleDirection::Outbound,
            problems,
        ),
        senders: parse_strings(get(raw, "senders")),
        recipients: parse_strings(get(raw, "recipients")),
        sender_groups: parse_strings(get(raw, "sender_groups")),
        recipient_groups: parse_strings(get(raw, "recipient_groups")),
        header: text("header"),
        contains: text("contains"),
        part_types: parse_strings(get(raw, "part_types")),
        file_extensions: parse_strings(get(raw, "file_extensions")),
        action: choose(
            ACTIONS,
            raw,
            "action",
            &at("action"),
            RuleAction::Quarantine,
            problems,
        ),
        reason: text("reason"),
        reply_code: num(text("reply_code"), at("reply_code"), problems),
        reply_text: text("reply_text"),
        header_name: text("header_name"),
        value: text("value"),
        address: text("address"),
        monitor: false,
        notify_sender: checked(raw, "notify_sender"),
        notify: parse_strings(get(raw, "notify")),
        enabled: true,
        dlp,
        dlp_min_confidence: num(
            text("dlp_min_confidence"),
            at("dlp_min_confidence"),
            problems,
        ),
        unscannable: match get(raw, "unscannable") {
            "yes" => Some(true),
            "no" => Some(false),
            _ => None,
        },
        external: checked(raw, "external"),
        min_external_recipients: num(
            text("min_external_recipients"),
            at("min_external_recipients"),
            problems,
        ),
        min_size: num(text("min_size"), at("min_size"), problems),
        spam: parse_strings(get(raw, "spam")),
        antivirus: parse_strings(get(raw, "antivirus")),
        first_mail_to_domain: checked(raw, "first_mail_to_domain"),
        lookalike_domain: checked(raw, "lookalike_domain"),
    };
    if !set_mode(&mut r, get(raw, "mode")) {
        problems.push(Problem::new(at("monitor"), "choose a mode".to_string()));
    }
    r
}

/// The rule at `index` of the current revision, or a new one.
async fn editor_page(
    state: &AppState,
    p: &Principal,
    index: Option<usize>,
    sub: Option<Submitted>,
    dry_run: Option<DryRun>,
) -> Result<Response, AppError> {
    let page = Page::load(state, p, "dlp", "Data protection rule").await?;
    let rev = state.current_revision().await?;
    let rules = &rev.config.filter.rules;
    let (rule, i) = match index {
        Some(i) => (
            rules
                .get(i)
                .cloned()
                .ok_or_else(|| AppError::NotFound("There is no such rule.".into()))?,
            i,
        ),
        None => (new_rule(), rules.len()),
    };
    let editable = allows(p.user.role, Perm::EditConfig);
    let mut form = rule_form(&rule, i, "/dlp/rules/save")
        .hidden("revision", rev.id)
        .hidden("index", index.map(|i| i.to_string()).unwrap_or_default())
        .editable(editable)
        .finish(sub.as_ref());
    form.multipart = true;
    let status = if sub.as_ref().is_some_and(|s| !s.problems.is_empty()) {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    render_status(
        status,
        &RulePage {
            page,
            editable,
            form,
            index,
            revision: rev.id,
            dry_run,
            dry_run_note: "The dry run runs the MIME, attachment, DLP, spam (without DNS lists) and rules checks; antivirus, sender authentication and DKIM signing are left out.",
        },
    )
}

/// A new rule as the editor offers it: outbound, in monitor mode, quarantining.
fn new_rule() -> Rule {
    let mut r = Rule::new("", RuleAction::Quarantine);
    r.direction = RuleDirection::Outbound;
    r.monitor = true;
    r
}

pub async fn new(State(state): State<AppState>, p: Principal) -> Result<Response, AppError> {
    editor_page(&state, &p, None, None, None).await
}

pub async fn edit(
    State(state): State<AppState>,
    p: Principal,
    Path(index): Path<usize>,
) -> Result<Response, AppError> {
    editor_page(&state, &p, Some(index), None, None).await
}

/// The editor's form (multipart, for the dry run's file): its text fields, and the message.
async fn read_editor(mut mp: Multipart) -> Result<(Raw, Vec<u8>), AppError> {
    let mut raw = Raw::new();
    let mut message = Vec::new();
    loop {
        let field = mp
            .next_field()
            .await
            .map_err(|e| AppError::BadRequest(format!("The upload was incomplete: {e}")))?;
        let Some(field) = field else { break };
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| AppError::BadRequest(format!("The upload was incomplete: {e}")))?;
        if name == "message" {
            message = bytes.to_vec();
        } else {
            raw.insert(name, String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    Ok((raw, message))
}

fn index_of(raw: &Raw) -> Result<Option<usize>, AppError> {
    match get(raw, "index") {
        "" => Ok(None),
        s => s
            .parse()
            .map(Some)
            .map_err(|_| AppError::BadRequest("The form did not say which rule.".into())),
    }
}

/// The editor's buttons: save the rule, or try it against the uploaded message.
pub async fn save(
    State(state): State<AppState>,
    p: Principal,
    mp: Multipart,
) -> Result<Response, AppError> {
    let (raw, message) = read_editor(mp).await?;
    let rev = revision(&raw)?;
    let index = index_of(&raw)?;
    if get(&raw, "action_button") == "test" {
        return dry_run(&state, &p, index, raw, message).await;
    }
    let raw2 = raw.clone();
    let done = commit_edit(&state, &p, rev, "/dlp#rules", move |cfg| {
        let i = index.unwrap_or(cfg.filter.rules.len());
        let mut pr = Vec::new();
        let rule = rule_from(&raw2, i, &mut pr);
        let comment = match index {
            Some(_) if i >= cfg.filter.rules.len() => {
                pr.push(Problem::new(
                    "filter.rule",
                    "There is no such rule.".to_string(),
                ));
                String::new()
            }
            Some(_) => {
                let c = format!("rule '{}' changed", rule.name);
                cfg.filter.rules[i] = rule;
                c
            }
            None => {
                let c = format!("rule '{}' added", rule.name);
                cfg.filter.rules.push(rule);
                c
            }
        };
        (comment, pr)
    })
    .await?;
    match done {
        Ok(r) => Ok(r),
        Err(problems) => {
            let sub = Submitted {
                form: "rule".into(),
                raw,
                problems,
            };
            editor_page(&state, &p, index, Some(sub), None).await
        }
    }
}

/// Runs the draft rule against the uploaded message (see the module's comment).
async fn dry_run(
    state: &AppState,
    p: &Principal,
    index: Option<usize>,
    raw: Raw,
    message: Vec<u8>,
) -> Result<Response, AppError> {
    let current = state.current_revision().await?;
    let mut cfg = current.config.clone();
    let i = index.unwrap_or(cfg.filter.rules.len());
    let mut problems = Vec::new();
    let mut rule = rule_from(&raw, i, &mut problems);
    // A disabled draft is still what the operator wants to see work.
    rule.enabled = true;
    if rule.name.trim().is_empty() {
        rule.name = "draft".into();
    }
    match index {
        Some(i) if i < cfg.filter.rules.len() => cfg.filter.rules[i] = rule,
        Some(_) => return Err(AppError::NotFound("There is no such rule.".into())),
        None => cfg.filter.rules.push(rule),
    }
    for check in ["antivirus", "authentication", "dkim"] {
        cfg.filter.check.entry(check.into()).or_default().enabled = false;
    }
    cfg.antivirus.enabled = false;
    cfg.authentication.enabled = false;
    for q in cfg.problems() {
        if !problems.iter().any(|x| x.path == q.path) {
            problems.push(q);
        }
    }
    let result = if !problems.is_empty() {
        None
    } else if message.is_empty() {
        Some(DryRun {
            error: Some("Choose a message file (.eml) to test the rule against.".into()),
            ..Default::default()
        })
    } else {
        let to = parse_strings(get(&raw, "test_to"));
        let direction = if get(&raw, "test_direction") == "in" {
            "in"
        } else {
            "out"
        };
        Some(run_check(state, &cfg, &message, direction, &to).await)
    };
    let sub = Submitted {
        form: "rule".into(),
        raw,
        problems,
    };
    editor_page(state, p, index, Some(sub), result).await
}

/// `palisade check` on the draft configuration and the message, in a private directory
/// removed afterwards.
async fn run_check(
    state: &AppState,
    cfg: &Config,
    message: &[u8],
    direction: &str,
    to: &[String],
) -> DryRun {
    let fail = |e: String| DryRun {
        error: Some(e),
        ..Default::default()
    };
    let dir = state
        .data()
        .console()
        .join(format!("dry-run-{}", hex::encode(rand_bytes())));
    let toml = cfg.to_toml();
    let setup = (|| -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        std::fs::write(dir.join("config.toml"), toml)?;
        std::fs::write(dir.join("message.eml"), message)?;
        Ok(())
    })();
    if let Err(e) = setup {
        let _ = std::fs::remove_dir_all(&dir);
        return fail(format!("The dry run could not start: {e}"));
    }
    // Through the magic link: the console's user may not be able to walk the path to the
    // binary (a development build under root's home), as the supervisor's children start.
    let mut cmd = tokio::process::Command::new("/proc/self/exe");
    cmd.arg0("palisade")
        .arg("--data")
        .arg(state.data().root())
        .arg("check")
        .arg("--config")
        .arg(dir.join("config.toml"))
        .args(["--json", "--no-dns", "--direction", direction]);
    for t in to {
        // `--to=VALUE`: a value beginning with '-' stays a value, never an option.
        cmd.arg(format!("--to={t}"));
    }
    cmd.arg(dir.join("message.eml"))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(DRY_RUN_TIMEOUT, cmd.output()).await;
    let _ = std::fs::remove_dir_all(&dir);
    let out = match out {
        Err(_) => {
            return fail(format!(
                "The check did not finish within {} seconds.",
                DRY_RUN_TIMEOUT.as_secs()
            ));
        }
        Ok(Err(e)) => return fail(format!("The check could not run: {e}")),
        Ok(Ok(o)) => o,
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err
            .trim()
            .replace(&dir.display().to_string(), "")
            .replace("palisade check: ", "");
        return fail(format!(
            "The message could not be checked: {}",
            err.chars().take(500).collect::<String>()
        ));
    }
    match serde_json::from_slice::<Value>(&out.stdout) {
        Ok(report) => dry_run_from(&report),
        Err(e) => fail(format!("The check's report could not be read: {e}")),
    }
}

fn rand_bytes() -> [u8; 12] {
    let mut b = [0u8; 12];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    b
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// What the editor shows of `palisade check`'s report.
fn dry_run_from(report: &Value) -> DryRun {
    let facts = |check: &str| &report["checks"][check]["facts"];
    let dlp = facts("dlp");
    let detections = dlp["detections"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| DetectionRow {
                    detector: d["detector"].as_str().unwrap_or("").to_string(),
                    count: d["count"].as_u64().unwrap_or(0),
                    confidence: format!("{:.2}", d["confidence"].as_f64().unwrap_or(0.0)),
                    snippets: strs(&d["snippets"]).join(", "),
                    locations: super::incidents::locations(&d["locations"]).join(", "),
                })
                .collect()
        })
        .unwrap_or_default();
    let unscannable = dlp["unscannable"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|u| match (u["location"].as_str(), u["reason"].as_str()) {
                    (Some(l), Some(r)) => format!("{l}: {r}"),
                    _ => u.to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    let matched = facts("rules")["matched"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    let scope = match &m["scope"] {
                        Value::Object(o) if o.contains_key("recipients") => {
                            format!(
                                "{} recipient(s)",
                                o["recipients"].as_array().map_or(0, |r| r.len())
                            )
                        }
                        _ => "the whole message".into(),
                    };
                    (
                        m["rule"].as_str().unwrap_or("").to_string(),
                        if m["monitor"].as_bool() == Some(true) {
                            "monitor"
                        } else {
                            "enforce"
                        }
                        .to_string(),
                        m["action"].as_str().unwrap_or("").to_string(),
                        m["why"].as_str().unwrap_or("").to_string(),
                        scope,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let decisions = report["decisions"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| {
                    let mut lines: Vec<String> = d["explanations"]
                        .as_array()
                        .map(|e| {
                            e.iter()
                                .filter_map(|x| x["sentence"].as_str().map(String::from))
                                .collect()
                        })
                        .unwrap_or_default();
                    if let Some(m) = d["monitored"].as_array() {
                        for x in m {
                            if let Some(s) = x["explanation"]["sentence"].as_str() {
                                lines.push(format!("(monitor, not done) {s}"));
                            }
                        }
                    }
                    let mut outcome = d["action"].as_str().unwrap_or("").to_string();
                    if let Some(r) = d["disposition"]["reason"].as_str() {
                        outcome = format!("{outcome}: {r}");
                    }
                    (
                        d["recipient"].as_str().unwrap_or("").to_string(),
                        outcome,
                        lines,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let r = &report["smtp_reply"];
    let reply = match r["result"].as_str() {
        Some("accept") | None => "accepted (250)".to_string(),
        Some(result) => format!(
            "{result}: {} {} {}",
            r["code"].as_u64().unwrap_or(0),
            r["enhanced"].as_str().unwrap_or(""),
            r["text"].as_str().unwrap_or("")
        ),
    };
    DryRun {
        error: None,
        detections,
        unscannable,
        matched,
        decisions,
        reply,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a browser sends for the editor as drawn for `r`.
    fn submitted(r: &Rule) -> Raw {
        rule_form(r, 0, "/dlp/rules/save")
            .fields
            .into_iter()
            .filter(|f| f.kind != "checkbox" || f.checked)
            .map(|f| (f.name, f.value))
            .collect()
    }

    #[test]
    fn the_editor_gives_back_the_rule_it_shows() {
        let mut r = Rule::new("NHS numbers leaving", RuleAction::Bcc);
        r.direction = RuleDirection::Outbound;
        r.senders = vec!["@hospital.example".into(), "ada@hospital.example".into()];
        r.external = true;
        r.min_external_recipients = Some(3);
        r.lookalike_domain = true;
        r.dlp = [
            ("nhs_number".to_string(), 5),
            ("dictionary:x".to_string(), 1),
        ]
        .into();
        r.dlp_min_confidence = Some(0.5);
        r.unscannable = Some(true);
        r.header = Some("Subject".into());
        r.contains = Some("[secure]".into());
        r.part_types = vec!["xlsx".into(), "pdf".into()];
        r.min_size = Some(1000);
        r.spam = vec!["ham".into()];
        r.address = Some("archive@hospital.example".into());
        r.reason = Some("why".into());
        r.notify_sender = true;
        r.notify = vec![
            "dpo@hospital.example".into(),
            "mail@hospital.example".into(),
        ];
        for mode in ["enforce", "monitor", "disabled"] {
            assert!(set_mode(&mut r, mode));
            let mut problems = Vec::new();
            let back = rule_from(&submitted(&r), 0, &mut problems);
            assert!(problems.is_empty(), "{problems:?}");
            assert_eq!(back, r, "{mode}");
        }
    }

    #[test]
    fn unreadable_fields_are_problems_at_their_paths() {
        let mut raw = submitted(&new_rule());
        raw.insert("dlp".into(), "nhs_number five".into());
        raw.insert("min_size".into(), "-3".into());
        raw.insert("action".into(), "explode".into());
        let mut problems = Vec::new();
        rule_from(&raw, 4, &mut problems);
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "filter.rule[4].dlp[0]",
                "filter.rule[4].action",
                "filter.rule[4].min_size"
            ]
        );
    }

    #[test]
    fn the_dry_run_reads_the_checks_report() {
        let report = serde_json::json!({
            "checks": {
                "dlp": {"facts": {
                    "detections": [{"detector": "nhs_number", "count": 5, "confidence": 0.95,
                        "snippets": ["*******004"], "locations": [{"location": "a.xlsx", "count": 5}]}],
                    "unscannable": [{"location": "b.pdf", "reason": "encrypted PDF"}]}},
                "rules": {"facts": {"matched": [{"rule": "r", "monitor": true, "action": "quarantine",
                    "why": "found 5 × nhs_number", "scope": {"recipients": [0]}}]}}
            },
            "decisions": [{"recipient": "x@y.example", "action": "quarantine",
                "disposition": {"action": "quarantine", "reason": "held"},
                "explanations": [{"sentence": "Rule r matched."}], "monitored": []}],
            "smtp_reply": {"result": "reject", "code": 550, "enhanced": "5.7.1", "text": "no"}
        });
        let d = dry_run_from(&report);
        assert_eq!(d.detections[0].locations, "a.xlsx (5)");
        assert_eq!(d.unscannable, ["b.pdf: encrypted PDF"]);
        assert_eq!(d.matched[0].4, "1 recipient(s)");
        assert_eq!(d.decisions[0].1, "quarantine: held");
        assert_eq!(d.reply, "reject: 550 5.7.1 no");
    }
}
