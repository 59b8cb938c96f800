//! `[filter]`: the checks every message passes after DATA, their time budgets and failure
//! modes, what happens to a message the MIME view could not fully inspect, and the operator's
//! own rules (`[[filter.rule]]`).
//!
//! ```toml
//! [filter]
//! timeout_secs = 60            # all checks of one message together
//! uninspectable = "quarantine" # a message over an [inspect] limit, or unparseable
//! quarantine_retention_days = 30
//!
//! [filter.check.rules]         # per check: budget, failure mode, on/off
//! timeout_secs = 10
//! failure_mode = "tempfail"
//!
//! [[filter.rule]]
//! name = "executables held"
//! part_types = ["exe", "application/x-msdownload"]
//! action = "quarantine"
//! reason = "Executable attachment"
//! ```

use std::collections::BTreeMap;

use palisade_policy::FailureMode;
use serde::{Deserialize, Serialize};

/// The checks the engine knows. A `[filter.check.NAME]` table for any other name is an error.
pub const CHECK_NAMES: &[&str] = &[
    "mime",
    "rules",
    "antivirus",
    "authentication",
    "attachments",
    "spam",
    "dkim",
    "dlp",
    "encryption",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Filter {
    /// Budget for every check of one message together (they run concurrently). The client is
    /// waiting for the reply to its final dot (RFC 5321 allows it 10 minutes), so this stays
    /// well below that.
    pub timeout_secs: u64,
    /// What happens to a message the MIME view marks uninspectable (over an `[inspect]` limit,
    /// or unparseable): never treated as clean. `quarantine` (default), `reject`, `tempfail`,
    /// or `deliver` (tagged with an `X-Palisade-Uninspectable` header and recorded).
    pub uninspectable: UninspectableAction,
    /// Held messages are deleted this many days after they arrived.
    pub quarantine_retention_days: u32,
    /// A message held for its sender's confirmation (a `confirm` rule) is discarded, and its
    /// sender told, when not confirmed within this many hours.
    pub confirmation_hours: u32,
    /// Per-check settings, by check name (`mime`, `rules`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub check: BTreeMap<String, CheckSettings>,
    /// The operator's rules, in order.
    #[serde(rename = "rule", skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    /// Named address groups the rules refer to (`sender_groups`, `recipient_groups`).
    #[serde(rename = "group", skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<AddressGroup>,
    /// An outbound message whose Subject contains this (any case) goes to its external
    /// recipients encrypted — S/MIME to a partner, enforced TLS, else held — as an `encrypt`
    /// rule would send it; the tag is removed from every copy. Empty: off.
    pub encrypt_tag: String,
}

/// A named list of address patterns (as a rule's `senders`): the organisation's groups —
/// clinicians, finance, a ward — kept here (there is no directory connection).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressGroup {
    pub name: String,
    pub members: Vec<String>,
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            timeout_secs: 60,
            uninspectable: UninspectableAction::Quarantine,
            quarantine_retention_days: 30,
            confirmation_hours: 24,
            check: BTreeMap::new(),
            rules: Vec::new(),
            groups: Vec::new(),
            encrypt_tag: "[secure]".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UninspectableAction {
    Quarantine,
    Reject,
    Tempfail,
    Deliver,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckSettings {
    pub enabled: bool,
    /// This check's own budget, inside `filter.timeout_secs`.
    pub timeout_secs: u64,
    /// What a failure or timeout of this check does to the message (never "clean").
    pub failure_mode: FailureMode,
}

impl Default for CheckSettings {
    fn default() -> Self {
        CheckSettings {
            enabled: true,
            timeout_secs: 30,
            failure_mode: FailureMode::Tempfail,
        }
    }
}

impl Filter {
    /// The settings of check `name` (defaults when it has no table).
    pub fn settings(&self, name: &str) -> CheckSettings {
        self.check.get(name).cloned().unwrap_or_default()
    }
}

/// Which way a rule applies. `inbound`: from anywhere else; `outbound`: from our users
/// (authenticated, or from `smtp.trusted_networks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleDirection {
    #[default]
    Any,
    Inbound,
    Outbound,
}

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    Deliver,
    Quarantine,
    Reject,
    Tempfail,
    Discard,
    AddHeader,
    TagSubject,
    Bcc,
    /// Send only encrypted. Until gateway encryption exists the message is held in quarantine
    /// (reason `encryption pending: …`): it never leaves in clear.
    Encrypt,
    /// Hold for the sender to confirm (reason `confirmation: …`); an operator can release it.
    Confirm,
    /// Remove the attachments the rule's `part_types` / `file_extensions` matched (every
    /// attachment when it has neither) from the delivered copy, each replaced by a note; the
    /// original is kept in quarantine. A message whose attachment cannot be cut out alone is
    /// held instead.
    Strip,
}

/// One operator rule: every condition given must hold (AND); each list matches if any of its
/// entries does (OR). A rule with `recipients` applies only to the recipients it matched;
/// without, to the whole message.
///
/// Address patterns: `user@example.org` (exact; `*` in the user part stands for anything),
/// `@example.org`, `*@example.org` or
/// `example.org` (that domain), `*.example.org` (its subdomains and itself);
/// case-insensitive. Part types match the real
/// type found from the content's magic bytes (its usual extension, `exe`, or MIME type,
/// `application/x-msdownload`), never the declared one; file extensions match the declared
/// file names (`invoice.pdf.exe` → `exe`), of attachments and of archive members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    #[serde(default)]
    pub direction: RuleDirection,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub senders: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
    /// Groups (`[[filter.group]]`) whose members count as `senders` entries (any of them, or
    /// of `senders`, matches).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sender_groups: Vec<String>,
    /// Groups whose members count as `recipients` entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipient_groups: Vec<String>,
    /// A header field (`header`) whose decoded value contains `contains` (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub part_types: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_extensions: Vec<String>,
    pub action: RuleAction,
    /// For people: why (quarantine reason, explanation sentence). Defaults to the rule name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `reject`/`tempfail`: the reply code (5xx / 4xx) and text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_code: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_text: Option<String>,
    /// `add_header`: the field name and value; `tag_subject`: the tag (in `value`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `bcc`: the address copies go to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Record what the rule would do without doing it.
    #[serde(default)]
    pub monitor: bool,
    /// Tell the sender what the rule did (a short notice from the gateway: subject,
    /// recipients, the reason; never the content). Enforced rules only, once the message was
    /// accepted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub notify_sender: bool,
    /// Addresses told of each match (a compliance officer, the mail team): rule, action,
    /// sender, recipients, subject and what the dlp check found, masked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
    /// `false`: kept in the list but not evaluated (the console's "disabled").
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub enabled: bool,
    /// DLP: detector name → the least count (summed over the message's parts) that matches;
    /// any one detector reaching its count matches (`dlp = { nhs_number = 5 }`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dlp: BTreeMap<String, u32>,
    /// DLP matches count only at or above this confidence (0 .. 1; context words raise it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dlp_min_confidence: Option<f32>,
    /// `true`: matches when part of the message could not be scanned (encrypted, a legacy
    /// binary document, a scan without text, …); `false`: only when everything was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unscannable: Option<bool>,
    /// Applies only to recipients outside the inbound domains (`[[domain]]`), and only when
    /// there is one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
    /// Matches when the message has at least this many recipients outside the inbound domains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_external_recipients: Option<u32>,
    /// Matches messages of at least this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_size: Option<u64>,
    /// The spam check's status: `ham`, `spam`, `allowed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spam: Vec<String>,
    /// The antivirus check's status: `clean`, `infected`, `unscannable`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub antivirus: Vec<String>,
    /// Applies to external recipients whose domain the organisation has never mailed before
    /// (`mail.db`'s recipient domains: a new appliance has mailed none).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub first_mail_to_domain: bool,
    /// Applies to external recipients whose domain looks like one of the inbound domains or
    /// one the organisation mails often (`nhs.nte`, `nhs-net.com` for `nhs.net`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lookalike_domain: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Rule {
    /// A rule with no condition (it matches every message) doing `action`, enforced.
    pub fn new(name: impl Into<String>, action: RuleAction) -> Rule {
        Rule {
            name: name.into(),
            direction: RuleDirection::Any,
            senders: Vec::new(),
            recipients: Vec::new(),
            sender_groups: Vec::new(),
            recipient_groups: Vec::new(),
            header: None,
            contains: None,
            part_types: Vec::new(),
            file_extensions: Vec::new(),
            action,
            reason: None,
            reply_code: None,
            reply_text: None,
            header_name: None,
            value: None,
            address: None,
            monitor: false,
            notify_sender: false,
            notify: Vec::new(),
            enabled: true,
            dlp: BTreeMap::new(),
            dlp_min_confidence: None,
            unscannable: None,
            external: false,
            min_external_recipients: None,
            min_size: None,
            spam: Vec::new(),
            antivirus: Vec::new(),
            first_mail_to_domain: false,
            lookalike_domain: false,
        }
    }

    /// The checks whose outcomes this rule's conditions read (the rules check waits for them).
    pub fn reads(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if !self.dlp.is_empty() || self.unscannable.is_some() {
            out.push("dlp");
        }
        if !self.spam.is_empty() {
            out.push("spam");
        }
        if !self.antivirus.is_empty() {
            out.push("antivirus");
        }
        out
    }

    /// Whether the rule needs the recipient domains' history.
    pub fn reads_domains(&self) -> bool {
        self.first_mail_to_domain || self.lookalike_domain
    }
}

/// A pattern an address is matched with (see [`Rule`]).
pub fn address_matches(pattern: &str, address: &str) -> bool {
    let p = pattern.trim().to_ascii_lowercase();
    let a = address.to_ascii_lowercase();
    let (local, domain) = a.rsplit_once('@').unwrap_or(("", ""));
    if let Some(sub) = p.strip_prefix("*.").or_else(|| p.strip_prefix("*@*.")) {
        return domain == sub || domain.ends_with(&format!(".{sub}"));
    }
    if let Some(d) = p.strip_prefix('@').or_else(|| p.strip_prefix("*@")) {
        return domain == d;
    }
    if let Some((lp, dp)) = p.rsplit_once('@') {
        if lp.contains('*') {
            return domain == dp && glob(lp.as_bytes(), local.as_bytes());
        }
        return a == p;
    }
    domain == p
}

/// `*` in `pattern` stands for any run of bytes (none included).
fn glob(pattern: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, i));
            p += 1;
        } else if p < pattern.len() && pattern[p] == s[i] {
            p += 1;
            i += 1;
        } else if let Some((sp, si)) = star {
            p = sp + 1;
            i = si + 1;
            star = Some((sp, si + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Why `pattern` is not an address pattern [`address_matches`] understands: `user@domain`
/// (`*` in the user part stands for anything: `billing-*@domain`), `@domain` or `*@domain`,
/// `domain`, `*.domain` or `*@*.domain`. Anything else would silently match nothing, so it is
/// refused.
pub fn address_pattern_problem(pattern: &str) -> Option<String> {
    let p = pattern.trim();
    let explain = || {
        format!(
            "'{pattern}' is not an address pattern: user@domain, @domain (or *@domain), domain, *.domain"
        )
    };
    if p.is_empty() || !printable(p) || p.contains(char::is_whitespace) {
        return Some(explain());
    }
    let domain = match p.rsplit_once('@') {
        None => p.strip_prefix("*.").unwrap_or(p),
        Some(("*", d)) => d.strip_prefix("*.").unwrap_or(d),
        Some((l, _)) if l.contains('@') => return Some(explain()),
        Some((_, d)) => d,
    };
    if !super::is_valid_domain(domain) {
        return Some(explain());
    }
    None
}

fn printable(s: &str) -> bool {
    !s.chars().any(|c| c.is_control())
}

/// RFC 5322 field name: printable ASCII except `:`.
fn field_name_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 76 && s.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

impl Filter {
    /// The rules with their groups' members added to their `senders` and `recipients` (what
    /// the rules check evaluates).
    pub fn rules_with_groups(&self) -> Vec<Rule> {
        let members = |names: &[String]| -> Vec<String> {
            names
                .iter()
                .filter_map(|n| self.groups.iter().find(|g| &g.name == n))
                .flat_map(|g| g.members.iter().cloned())
                .collect()
        };
        self.rules
            .iter()
            .map(|r| {
                let mut r = r.clone();
                let (s, t) = (members(&r.sender_groups), members(&r.recipient_groups));
                r.senders.extend(s);
                r.recipients.extend(t);
                r
            })
            .collect()
    }

    pub(super) fn problems(&self, bad: &mut dyn FnMut(&str, String)) {
        if self.encrypt_tag.len() > 40 || self.encrypt_tag.chars().any(char::is_control) {
            bad(
                "filter.encrypt_tag",
                "at most 40 characters on one line".into(),
            );
        }
        let mut group_names = std::collections::BTreeSet::new();
        for (i, g) in self.groups.iter().enumerate() {
            let path = format!("filter.group[{i}]");
            if g.name.trim().is_empty()
                || g.name.len() > 100
                || !g
                    .name
                    .chars()
                    .all(|c| c.is_alphanumeric() || "-_. ".contains(c))
            {
                bad(
                    &format!("{path}.name"),
                    "needs a name (letters, digits, - _ . and spaces, at most 100)".into(),
                );
            } else if !group_names.insert(g.name.as_str()) {
                bad(
                    &format!("{path}.name"),
                    format!("'{}' is used by two groups", g.name),
                );
            }
            if g.members.is_empty() {
                bad(&format!("{path}.members"), "a group needs members".into());
            }
            for (j, p) in g.members.iter().enumerate() {
                if let Some(why) = address_pattern_problem(p) {
                    bad(&format!("{path}.members[{j}]"), why);
                }
            }
        }
        for (i, r) in self.rules.iter().enumerate() {
            for (field, list) in [
                ("sender_groups", &r.sender_groups),
                ("recipient_groups", &r.recipient_groups),
            ] {
                for (j, n) in list.iter().enumerate() {
                    if !self.groups.iter().any(|g| &g.name == n) {
                        bad(
                            &format!("filter.rule[{i}].{field}[{j}]"),
                            format!("no group '{n}' ([[filter.group]])"),
                        );
                    }
                }
            }
        }
        if !(1..=300).contains(&self.timeout_secs) {
            bad(
                "filter.timeout_secs",
                format!(
                    "{} is outside 1 .. 300 seconds (the client waits for the reply)",
                    self.timeout_secs
                ),
            );
        }
        if !(1..=3650).contains(&self.quarantine_retention_days) {
            bad(
                "filter.quarantine_retention_days",
                format!("{} is outside 1 .. 3650", self.quarantine_retention_days),
            );
        }
        if !(1..=720).contains(&self.confirmation_hours) {
            bad(
                "filter.confirmation_hours",
                format!("{} is outside 1 .. 720", self.confirmation_hours),
            );
        }
        for (name, s) in &self.check {
            let path = format!("filter.check.{name}");
            if !CHECK_NAMES.contains(&name.as_str()) {
                bad(
                    &path,
                    format!("unknown check '{name}' (known: {})", CHECK_NAMES.join(", ")),
                );
            }
            if !(1..=300).contains(&s.timeout_secs) {
                bad(
                    &format!("{path}.timeout_secs"),
                    format!("{} is outside 1 .. 300 seconds", s.timeout_secs),
                );
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            let path = format!("filter.rule[{i}]");
            let mut bad_field = |field: &str, msg: String| bad(&format!("{path}.{field}"), msg);
            if r.name.trim().is_empty() || !printable(&r.name) || r.name.len() > 200 {
                bad_field(
                    "name",
                    "needs a name (printable, at most 200 characters)".into(),
                );
            } else if !names.insert(r.name.clone()) {
                bad_field("name", format!("'{}' is used by two rules", r.name));
            }
            for (field, list) in [("senders", &r.senders), ("recipients", &r.recipients)] {
                for (j, p) in list.iter().enumerate() {
                    if let Some(why) = address_pattern_problem(p) {
                        bad_field(&format!("{field}[{j}]"), why);
                    }
                }
            }
            for (j, a) in r.notify.iter().enumerate() {
                let ok = a.rsplit_once('@').is_some_and(|(l, d)| {
                    !l.is_empty()
                        && !l.contains(['*', '@'])
                        && printable(l)
                        && !l.contains(char::is_whitespace)
                        && super::is_valid_domain(d)
                });
                if !ok {
                    bad_field(&format!("notify[{j}]"), format!("'{a}' is not an address"));
                }
            }
            match (&r.header, &r.contains) {
                (Some(h), Some(c)) => {
                    if !field_name_ok(h) {
                        bad_field("header", format!("'{h}' is not a header field name"));
                    }
                    if c.is_empty() || !printable(c) {
                        bad_field("contains", "must be printable text, not empty".into());
                    }
                }
                (None, None) => {}
                _ => bad_field("header", "header and contains go together".into()),
            }
            for (j, t) in r.part_types.iter().enumerate() {
                if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) {
                    bad_field(&format!("part_types[{j}]"), format!("'{t}' is not a type"));
                }
            }
            for (j, t) in r.file_extensions.iter().enumerate() {
                if t.is_empty() || t.contains('.') || !t.bytes().all(|b| b.is_ascii_graphic()) {
                    bad_field(
                        &format!("file_extensions[{j}]"),
                        format!("'{t}' is not an extension (without the dot)"),
                    );
                }
            }
            if let Some(c) = r.dlp_min_confidence
                && !(0.0..=1.0).contains(&c)
            {
                bad_field("dlp_min_confidence", format!("{c} is outside 0 .. 1"));
            }
            for (field, list, known) in [
                ("spam", &r.spam, &["ham", "spam", "allowed"][..]),
                (
                    "antivirus",
                    &r.antivirus,
                    &["clean", "infected", "unscannable"][..],
                ),
            ] {
                for (j, v) in list.iter().enumerate() {
                    if !known.contains(&v.as_str()) {
                        bad_field(
                            &format!("{field}[{j}]"),
                            format!("'{v}' is not one of {}", known.join(", ")),
                        );
                    }
                }
            }
            if let Some(reason) = &r.reason
                && (!printable(reason) || reason.len() > 500)
            {
                bad_field("reason", "must be printable, at most 500 characters".into());
            }
            match r.action {
                RuleAction::Reject | RuleAction::Tempfail => {
                    let want = if r.action == RuleAction::Reject { 5 } else { 4 };
                    if let Some(c) = r.reply_code
                        && !(c / 100 == want && (c % 100) < 60)
                    {
                        bad_field(
                            "reply_code",
                            format!("{c} is not a {want}xx reply code for action {:?}", r.action),
                        );
                    }
                    if let Some(t) = &r.reply_text
                        && (!printable(t) || t.len() > 400)
                    {
                        bad_field(
                            "reply_text",
                            "must be printable, at most 400 characters".into(),
                        );
                    }
                }
                RuleAction::AddHeader => {
                    match &r.header_name {
                        Some(h) if field_name_ok(h) => {}
                        _ => {
                            bad_field("header_name", "add_header needs a header field name".into())
                        }
                    }
                    match &r.value {
                        Some(v) if printable(v) && v.len() <= 900 => {}
                        _ => bad_field(
                            "value",
                            "add_header needs a printable value (at most 900 characters)".into(),
                        ),
                    }
                }
                RuleAction::TagSubject => match &r.value {
                    Some(v) if !v.trim().is_empty() && printable(v) && v.len() <= 100 => {}
                    _ => bad_field(
                        "value",
                        "tag_subject needs the tag (printable, at most 100 characters)".into(),
                    ),
                },
                RuleAction::Bcc => match &r.address {
                    Some(a)
                        if a.rsplit_once('@').is_some_and(|(l, d)| {
                            !l.is_empty()
                                && printable(l)
                                && !l.contains(' ')
                                && super::is_valid_domain(d)
                        }) => {}
                    _ => bad_field("address", "bcc needs an address".into()),
                },
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_patterns() {
        for (p, a, want) in [
            ("a@example.org", "A@Example.org", true),
            ("a@example.org", "b@example.org", false),
            ("@example.org", "x@example.org", true),
            ("example.org", "x@example.org", true),
            ("example.org", "x@sub.example.org", false),
            ("*.example.org", "x@sub.example.org", true),
            ("*.example.org", "x@example.org", true),
            ("*.example.org", "x@badexample.org", false),
            ("@example.org", "postmaster", false),
            ("*@example.org", "x@example.org", true),
            ("*@example.org", "x@sub.example.org", false),
            ("*@*.example.org", "x@sub.example.org", true),
            ("billing-*@example.org", "Billing-EU@example.org", true),
            ("billing-*@example.org", "billing@example.org", false),
            ("*bob*@example.org", "a.bob.b@example.org", true),
            ("*bob*@example.org", "bob@other.org", false),
        ] {
            assert_eq!(address_matches(p, a), want, "{p} vs {a}");
            assert_eq!(address_pattern_problem(p), None, "{p}");
        }
    }

    #[test]
    fn patterns_that_would_match_nothing_are_refused() {
        for p in [
            "",
            " ",
            "a@b@example.org",
            "not a domain",
            "@",
            "*.",
            "a b@example.org",
            "@*.example.org",
            "bob@*.example.org",
        ] {
            assert!(address_pattern_problem(p).is_some(), "{p:?} accepted");
        }
    }
}
