//! The checks that need nothing but the message: `mime` (what the view could not inspect) and
//! `rules` (the operator's `[[filter.rule]]`s). Later checks (authentication, antivirus,
//! antispam, DLP) live beside these and are listed in `Pipeline::from_config`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use palisade_inspect::{MessageView, PartKind};
use palisade_policy::{
    Action, CheckOutcome, CheckStatus, Decision, Direction, Edit, Explanation, Reply, Scope,
    StrippedPart,
};
use palisade_store::config::{
    Rule, RuleAction, RuleDirection, UninspectableAction, address_matches,
};
use palisade_store::mail::domain_of;
use serde_json::json;

use super::domains::{DomainFact, DomainHistory};
use super::{Check, CheckFuture, Envelope, Findings, Subject};

/// The header a message the view could not fully inspect carries when the configuration says
/// to deliver it anyway.
pub const UNINSPECTABLE_HEADER: &str = "X-Palisade-Uninspectable";

/// Reports the message's structure and acts on a message the view marked uninspectable
/// (over an `[inspect]` limit, or unparseable): never treated as clean.
pub struct MimeCheck {
    action: UninspectableAction,
}

impl MimeCheck {
    pub fn new(action: UninspectableAction) -> MimeCheck {
        MimeCheck { action }
    }

    fn findings(&self, view: &MessageView) -> Findings {
        let parts = view.parts();
        let attachments: Vec<&str> = parts
            .iter()
            .filter(|p| p.is_attachment)
            .map(|p| p.path.as_str())
            .collect();
        let archive_members = parts
            .iter()
            .filter(|p| matches!(p.kind, PartKind::ArchiveMember { .. }))
            .count();
        let mut f = Findings {
            facts: json!({
                "parts": parts.len(),
                "attachments": attachments,
                "archive_members": archive_members,
                "limits_hit": view.limits_hit(),
                "anomalies": view.anomalies(),
                "uninspectable": view.uninspectable(),
            }),
            ..Default::default()
        };
        let Some(reason) = view.uninspectable() else {
            return f;
        };
        let sentence = format!("The message could not be fully inspected: {reason}.");
        let explanation = |rule: &str| Explanation::new("mime", rule, sentence.clone());
        let decision = match self.action {
            UninspectableAction::Quarantine => Decision::new(
                Scope::Message,
                Action::quarantine(format!("uninspectable: {reason}")),
                explanation("uninspectable"),
            ),
            UninspectableAction::Reject => Decision::new(
                Scope::Message,
                Action::reject(Reply::new(
                    554,
                    "5.6.0",
                    "Message could not be inspected and is refused",
                )),
                explanation("uninspectable"),
            ),
            UninspectableAction::Tempfail => Decision::new(
                Scope::Message,
                Action::tempfail(Reply::new(
                    451,
                    "4.3.0",
                    "Message could not be inspected now, please try again later",
                )),
                explanation("uninspectable"),
            ),
            UninspectableAction::Deliver => Decision::new(
                Scope::Message,
                Action::add_header(UNINSPECTABLE_HEADER, one_line(reason, 200)),
                Explanation::new(
                    "mime",
                    "uninspectable",
                    format!(
                        "{sentence} Delivered anyway (filter.uninspectable = \"deliver\"), marked with {UNINSPECTABLE_HEADER}."
                    ),
                ),
            ),
        };
        f.decisions.push(decision);
        f
    }
}

impl Check for MimeCheck {
    fn name(&self) -> &str {
        "mime"
    }
    fn run(&self, subject: Subject) -> CheckFuture {
        let f = self.findings(&subject.view);
        Box::pin(async move { Ok(f) })
    }
}

/// Header values we write must stay one line of printable text.
fn one_line(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > max {
        let mut end = max;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

/// The operator's rules, in order.
pub struct RulesCheck {
    rules: Arc<Vec<Rule>>,
    /// The inbound domains (`[[domain]]`): a recipient elsewhere is external.
    domains: Arc<Vec<String>>,
    /// Where outbound mail went before (first mail to a domain, look-alikes).
    history: Arc<DomainHistory>,
    /// What the rules read besides the message, worked out once per configuration: the
    /// checks they wait for, whether they need the recipient domains and the message's size.
    reads: Arc<Vec<&'static str>>,
    reads_domains: bool,
    reads_size: bool,
    /// Where the `encrypt` action sends each recipient.
    encryption: Arc<super::encryption::Encryption>,
}

/// What the rules see besides the message: the outcomes of the checks they read and the
/// message's size.
#[derive(Default)]
pub struct RuleInputs {
    pub outcomes: HashMap<&'static str, Arc<CheckOutcome>>,
    pub size: Option<u64>,
    /// The external recipients' domains (lower case), when a rule reads them.
    pub domains: HashMap<String, DomainFact>,
}

impl RuleInputs {
    fn facts(&self, check: &str) -> Option<&serde_json::Value> {
        let o = self.outcomes.get(check)?;
        matches!(o.status, CheckStatus::Completed).then_some(&o.facts)
    }
}

impl RulesCheck {
    pub fn new(rules: Vec<Rule>) -> RulesCheck {
        RulesCheck::with_domains(rules, Vec::new(), None)
    }

    /// `domains`: the inbound domains; `data`: where the recipient-domain history is.
    pub fn with_domains(
        rules: Vec<Rule>,
        domains: Vec<String>,
        data: Option<&palisade_store::DataDir>,
    ) -> RulesCheck {
        let domains: Vec<String> = domains
            .into_iter()
            .map(|d| d.to_ascii_lowercase())
            .collect();
        let rules: Vec<Rule> = rules.into_iter().filter(|r| r.enabled).collect();
        let mut reads: Vec<&'static str> = rules.iter().flat_map(|r| r.reads()).collect();
        reads.sort_unstable();
        reads.dedup();
        RulesCheck {
            reads: Arc::new(reads),
            reads_domains: rules.iter().any(Rule::reads_domains),
            reads_size: rules.iter().any(|r| r.min_size.is_some()),
            rules: Arc::new(rules),
            history: Arc::new(DomainHistory::new(data, domains.clone())),
            domains: Arc::new(domains),
            encryption: Arc::default(),
        }
    }

    /// The routes the `encrypt` action uses (without: every encrypt holds).
    pub fn with_encryption(mut self, e: Arc<super::encryption::Encryption>) -> RulesCheck {
        self.encryption = e;
        self
    }

    /// The decisions of an `encrypt` rule: per recipient in `scope`, S/MIME to its partner
    /// (an encrypted copy), enforced TLS, or — with neither — held (`encryption pending`).
    fn encrypt_decisions(
        &self,
        env: &Envelope,
        scope: &Scope,
        reason: &str,
        explanation: &Explanation,
    ) -> Vec<(Scope, Action, Explanation)> {
        use super::encryption::Route;
        let indexes: Vec<usize> = match scope {
            Scope::Message => (0..env.recipients.len()).collect(),
            Scope::Recipients(set) => set.iter().copied().collect(),
        };
        let mut smime: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut pgp: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut tls: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut none: Vec<usize> = Vec::new();
        for i in indexes {
            let Some(r) = env.recipients.get(i) else {
                continue;
            };
            match self.encryption.route(&r.address) {
                Route::Smime { partner } => smime.entry(partner).or_default().push(i),
                Route::Pgp { partner } => pgp.entry(partner).or_default().push(i),
                Route::Tls { policy } => tls.entry(policy).or_default().push(i),
                Route::None => none.push(i),
            }
        }
        let with = |sentence: String| {
            Explanation::new(
                &explanation.stage,
                &explanation.rule,
                format!("{} {sentence}", explanation.sentence),
            )
        };
        let mut out = Vec::new();
        for (partner, idx) in smime {
            let sentence = with(format!("Encrypted with S/MIME for {partner}."));
            out.push((
                Scope::recipients(idx.clone()),
                Action::encrypt(Some("smime".into())),
                sentence.clone(),
            ));
            out.push((
                Scope::recipients(idx),
                Action::Edit(Edit::SmimeEncrypt { partner }),
                sentence,
            ));
        }
        for (partner, idx) in pgp {
            let sentence = with(format!("Encrypted with OpenPGP for {partner}."));
            out.push((
                Scope::recipients(idx.clone()),
                Action::encrypt(Some("openpgp".into())),
                sentence.clone(),
            ));
            out.push((
                Scope::recipients(idx),
                Action::Edit(Edit::PgpEncrypt { partner }),
                sentence,
            ));
        }
        for (policy, idx) in tls {
            out.push((
                Scope::recipients(idx),
                Action::encrypt(Some("tls".into())),
                with(format!("Sent only over TLS enforced by {policy}.")),
            ));
        }
        if !none.is_empty() {
            let domains: std::collections::BTreeSet<&str> = none
                .iter()
                .filter_map(|&i| env.recipients[i].address.rsplit_once('@').map(|(_, d)| d))
                .collect();
            let domains: Vec<&str> = domains.into_iter().collect();
            out.push((
                Scope::recipients(none),
                Action::quarantine(format!("encryption pending: {reason}")),
                with(format!(
                    "Held: no partner certificate and no enforced TLS for {}; it is never sent in clear.",
                    domains.join(", ")
                )),
            ));
        }
        out
    }

    fn findings(&self, env: &Envelope, view: &MessageView, inputs: &RuleInputs) -> Findings {
        let mut f = Findings::default();
        let mut matched = Vec::new();
        for rule in self.rules.iter() {
            let Some(m) = rule_matches(rule, env, view, inputs, &self.domains) else {
                continue;
            };
            let (scope, why) = (m.scope, m.why);
            let reason = rule.reason.clone().unwrap_or_else(|| rule.name.clone());
            let sentence = format!("Rule \"{}\" matched ({why}): {reason}.", rule.name);
            let action = match rule.action {
                RuleAction::Deliver => Action::deliver(),
                RuleAction::Quarantine => Action::quarantine(reason.clone()),
                RuleAction::Encrypt => Action::quarantine(format!("encryption pending: {reason}")),
                RuleAction::Confirm => Action::quarantine(format!("confirmation: {reason}")),
                RuleAction::Discard => Action::discard(),
                RuleAction::Reject => Action::reject(Reply::new(
                    rule.reply_code.unwrap_or(550),
                    "5.7.1",
                    rule.reply_text
                        .clone()
                        .unwrap_or_else(|| "Message refused by policy".into()),
                )),
                RuleAction::Tempfail => Action::tempfail(Reply::new(
                    rule.reply_code.unwrap_or(451),
                    "4.7.1",
                    rule.reply_text
                        .clone()
                        .unwrap_or_else(|| "Message deferred by policy, try again later".into()),
                )),
                RuleAction::AddHeader => Action::add_header(
                    rule.header_name.clone().unwrap_or_default(),
                    one_line(rule.value.as_deref().unwrap_or(""), 900),
                ),
                RuleAction::TagSubject => {
                    Action::tag_subject(one_line(rule.value.as_deref().unwrap_or(""), 100))
                }
                RuleAction::Bcc => Action::bcc(rule.address.clone().unwrap_or_default()),
                RuleAction::Strip => match strip_parts(rule, view, &reason) {
                    Some(parts) => Action::strip_parts(parts),
                    None => Action::quarantine(format!(
                        "{reason} (the attachment cannot be removed on its own)"
                    )),
                },
            };
            let explanation = Explanation::new("rules", rule.name.clone(), sentence);
            let decisions = if matches!(rule.action, RuleAction::Encrypt) {
                self.encrypt_decisions(env, &scope, &reason, &explanation)
            } else {
                vec![(scope.clone(), action, explanation)]
            };
            let mut entry = json!({"rule": rule.name, "scope": scope, "why": why,
                "monitor": rule.monitor, "action": rule_action_name(rule.action)});
            if rule.reads().contains(&"dlp") {
                // An incident is recorded for it (`dlp::incidents`).
                entry["dlp"] = json!(m.dlp);
            }
            if rule.notify_sender {
                entry["notify_sender"] = json!(true);
            }
            if !rule.notify.is_empty() {
                entry["notify"] = json!(rule.notify);
            }
            entry["reason"] = json!(reason);
            matched.push(entry);
            for (scope, action, explanation) in decisions {
                let mut d = Decision::new(scope, action, explanation);
                if rule.monitor {
                    d = d.monitored();
                }
                f.decisions.push(d);
            }
        }
        // The subject tag (`filter.encrypt_tag`, "[secure]"): the sender asks for encryption.
        // Every external recipient goes encrypted (or is held); every copy loses the tag.
        if let Some(tag) = self.encryption.tag()
            && env.direction == Direction::Outbound
            && view
                .headers()
                .subject
                .as_deref()
                .is_some_and(|s| s.to_lowercase().contains(&tag.to_lowercase()))
        {
            let external: Vec<usize> = env
                .recipients
                .iter()
                .enumerate()
                .filter(|(_, r)| is_external(&r.address, &self.domains))
                .map(|(i, _)| i)
                .collect();
            let name = "subject tag";
            let explanation = Explanation::new(
                "rules",
                name,
                format!("The subject carries {tag}: the sender asked for encryption."),
            );
            if !external.is_empty() {
                for (scope, action, explanation) in self.encrypt_decisions(
                    env,
                    &Scope::recipients(external.clone()),
                    &format!("the subject carries {tag}"),
                    &explanation,
                ) {
                    f.decisions.push(Decision::new(scope, action, explanation));
                }
            }
            f.decisions.push(Decision::new(
                Scope::Message,
                Action::Edit(Edit::UntagSubject {
                    tag: tag.to_string(),
                }),
                explanation,
            ));
            matched.push(json!({"rule": name, "scope": Scope::recipients(external),
                "why": format!("subject contains \"{tag}\""), "monitor": false,
                "action": "encrypt", "reason": format!("the subject carries {tag}")}));
        }
        f.facts = json!({ "rules": self.rules.len(), "matched": matched });
        f
    }
}

/// The configuration's name of a rule action.
pub fn rule_action_name(a: RuleAction) -> &'static str {
    match a {
        RuleAction::Deliver => "deliver",
        RuleAction::Quarantine => "quarantine",
        RuleAction::Reject => "reject",
        RuleAction::Tempfail => "tempfail",
        RuleAction::Discard => "discard",
        RuleAction::AddHeader => "add_header",
        RuleAction::TagSubject => "tag_subject",
        RuleAction::Bcc => "bcc",
        RuleAction::Encrypt => "encrypt",
        RuleAction::Confirm => "confirm",
        RuleAction::Strip => "strip",
    }
}

/// The parts a `strip` rule removes: those its part conditions matched (every attachment
/// without them), each cut at the part that can go on its own (an attachment, not a member
/// of an archive); `None` when there is nothing that can be cut out.
fn strip_parts(rule: &Rule, view: &MessageView, reason: &str) -> Option<Vec<StrippedPart>> {
    let parts = view.parts();
    let wanted = |p: &palisade_inspect::Part| {
        if rule.part_types.is_empty() && rule.file_extensions.is_empty() {
            return p.filename.is_some();
        }
        let by_type = p.real_type.as_ref().is_some_and(|t| {
            rule.part_types
                .iter()
                .any(|w| w.eq_ignore_ascii_case(&t.extension) || w.eq_ignore_ascii_case(&t.mime))
        });
        let by_name = p.filename.as_deref().is_some_and(|n| {
            n.rsplit_once('.').is_some_and(|(_, ext)| {
                rule.file_extensions
                    .iter()
                    .any(|w| w.eq_ignore_ascii_case(ext.trim()))
            })
        });
        by_type || by_name
    };
    let mut cuts: Vec<usize> = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        if !wanted(p) {
            continue;
        }
        let cut = super::attachments::strippable(parts, i)?;
        if !cuts.contains(&cut) {
            cuts.push(cut);
        }
    }
    // A part inside another that is cut already goes with it.
    let inside = |i: usize, j: usize| {
        let mut k = parts[i].parent;
        while let Some(x) = k {
            if x == j {
                return true;
            }
            k = parts[x].parent;
        }
        false
    };
    let outer: Vec<usize> = cuts
        .iter()
        .copied()
        .filter(|&i| !cuts.iter().any(|&j| j != i && inside(i, j)))
        .collect();
    let out: Vec<StrippedPart> = outer
        .into_iter()
        .filter_map(|i| {
            let p = &parts[i];
            let span = p.span?;
            let name = super::printable_line(&p.path, 150);
            Some(StrippedPart {
                section: p.section.clone(),
                name: name.clone(),
                reason: one_line(reason, 200),
                start: span.start,
                end: span.end,
                note: format!(
                    "Palisade removed the attachment \"{name}\" from this message ({}).\r\nThe original message is kept in quarantine; ask your mail administrator if you need it released.",
                    one_line(reason, 200)
                ),
            })
        })
        .collect();
    (!out.is_empty()).then_some(out)
}

impl Check for RulesCheck {
    fn name(&self) -> &str {
        "rules"
    }
    fn run(&self, subject: Subject) -> CheckFuture {
        let check = RulesCheck {
            rules: self.rules.clone(),
            domains: self.domains.clone(),
            history: self.history.clone(),
            reads: self.reads.clone(),
            reads_domains: self.reads_domains,
            reads_size: self.reads_size,
            encryption: self.encryption.clone(),
        };
        Box::pin(async move {
            // The checks these rules read (dlp, spam, antivirus) never wait for rules: no
            // cycle. One that is missing, failed or skipped matches no condition on it (its own
            // failure mode already applies).
            let mut inputs = RuleInputs::default();
            for &name in check.reads.iter() {
                if let Some(o) = subject.others.outcome(name).await {
                    inputs.outcomes.insert(name, o);
                }
            }
            if check.reads_size {
                inputs.size = subject
                    .content
                    .as_deref()
                    .and_then(|p| std::fs::metadata(p).ok())
                    .map(|m| m.len());
            }
            if check.reads_domains {
                let external: Vec<String> = subject
                    .envelope
                    .recipients
                    .iter()
                    .filter(|r| is_external(&r.address, &check.domains))
                    .filter_map(|r| domain_of(&r.address))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let history = check.history.clone();
                inputs.domains = tokio::task::spawn_blocking(move || history.facts(&external))
                    .await
                    .map_err(|e| format!("the recipient-domain history stopped: {e}"))?;
            }
            Ok(check.findings(&subject.envelope, &subject.view, &inputs))
        })
    }
}

/// Why a rule matched and to whom.
struct Match {
    scope: Scope,
    why: String,
    /// The DLP detectors that made it match, with their counts.
    dlp: std::collections::BTreeMap<String, usize>,
}

/// The recipients a rule applies to: `hits` where nothing chose before, else those of the
/// chosen that are also in `hits`.
fn narrow(chosen: &mut Option<Vec<usize>>, hits: Vec<usize>) {
    *chosen = Some(match chosen.take() {
        Some(c) => c.into_iter().filter(|i| hits.contains(i)).collect(),
        None => hits,
    });
}

fn is_external(address: &str, domains: &[String]) -> bool {
    !domains.contains(&domain_of(address).unwrap_or_default())
}

/// Whether `rule` applies to this message, to whom, and a short account of why.
fn rule_matches(
    rule: &Rule,
    env: &Envelope,
    view: &MessageView,
    inputs: &RuleInputs,
    domains: &[String],
) -> Option<Match> {
    let mut why = Vec::new();
    let mut dlp_hits = std::collections::BTreeMap::new();
    match (rule.direction, env.direction) {
        (RuleDirection::Any, _)
        | (RuleDirection::Inbound, Direction::Inbound)
        | (RuleDirection::Outbound, Direction::Outbound) => {}
        _ => return None,
    }
    if !rule.senders.is_empty() {
        let hit = rule
            .senders
            .iter()
            .find(|p| !env.sender.is_empty() && address_matches(p, &env.sender))?;
        why.push(format!("sender {} matches {hit}", env.sender));
    }
    if let (Some(name), Some(needle)) = (&rule.header, &rule.contains) {
        let needle = needle.to_lowercase();
        let headers = view.headers();
        let hit = if name.eq_ignore_ascii_case("subject") {
            headers
                .subject
                .as_deref()
                .is_some_and(|s| s.to_lowercase().contains(&needle))
        } else {
            headers
                .all
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case(name))
                .any(|h| h.value.to_lowercase().contains(&needle))
        };
        if !hit {
            return None;
        }
        why.push(format!("{name} contains \"{needle}\""));
    }
    if !rule.part_types.is_empty() {
        let part = view.parts().iter().find(|p| {
            p.real_type.as_ref().is_some_and(|t| {
                rule.part_types.iter().any(|want| {
                    want.eq_ignore_ascii_case(&t.extension) || want.eq_ignore_ascii_case(&t.mime)
                })
            })
        })?;
        let t = part
            .real_type
            .as_ref()
            .map(|t| t.mime.as_str())
            .unwrap_or("");
        why.push(format!("{} is really {t}", part.path));
    }
    if !rule.file_extensions.is_empty() {
        let part = view.parts().iter().find(|p| {
            p.filename.as_deref().is_some_and(|n| {
                n.rsplit_once('.').is_some_and(|(_, ext)| {
                    rule.file_extensions
                        .iter()
                        .any(|want| want.eq_ignore_ascii_case(ext.trim()))
                })
            })
        })?;
        why.push(format!("file name {}", part.path));
    }
    if let Some(min) = rule.min_size {
        let size = inputs.size?;
        if size < min {
            return None;
        }
        why.push(format!("{size} bytes"));
    }
    let external = env
        .recipients
        .iter()
        .filter(|r| is_external(&r.address, domains))
        .count();
    if let Some(min) = rule.min_external_recipients {
        if (external as u64) < u64::from(min) {
            return None;
        }
        why.push(format!("{external} external recipients"));
    }
    for (check, wanted) in [("spam", &rule.spam), ("antivirus", &rule.antivirus)] {
        if wanted.is_empty() {
            continue;
        }
        let status = inputs.facts(check)?.get("status")?.as_str()?;
        if !wanted.iter().any(|w| w == status) {
            return None;
        }
        why.push(format!("{check} {status}"));
    }
    if !rule.dlp.is_empty() {
        let facts = inputs.facts("dlp")?;
        let min_confidence = f64::from(rule.dlp_min_confidence.unwrap_or(0.0));
        for d in facts.get("detections")?.as_array()? {
            let (Some(name), Some(count), Some(conf)) = (
                d.get("detector").and_then(|v| v.as_str()),
                d.get("count").and_then(|v| v.as_u64()),
                d.get("confidence").and_then(|v| v.as_f64()),
            ) else {
                continue;
            };
            if let Some(&min) = rule.dlp.get(name)
                && count >= u64::from(min.max(1))
                && conf + 1e-6 >= min_confidence
            {
                dlp_hits.insert(name.to_string(), count as usize);
            }
        }
        if dlp_hits.is_empty() {
            return None;
        }
        let list: Vec<String> = dlp_hits.iter().map(|(k, v)| format!("{v} × {k}")).collect();
        why.push(format!("found {}", list.join(", ")));
    }
    if let Some(want) = rule.unscannable {
        let facts = inputs.facts("dlp")?;
        let list = facts.get("unscannable")?.as_array()?;
        if list.is_empty() == want {
            return None;
        }
        if let Some(first) = list.first() {
            let loc = first.get("location").and_then(|v| v.as_str()).unwrap_or("");
            let reason = first.get("reason").and_then(|v| v.as_str()).unwrap_or("");
            why.push(format!("could not scan {loc} ({reason})"));
        } else {
            why.push("everything was scanned".into());
        }
    }
    let mut chosen: Option<Vec<usize>> = None;
    if !rule.recipients.is_empty() {
        chosen = Some(
            env.recipients
                .iter()
                .enumerate()
                .filter(|(_, r)| {
                    rule.recipients
                        .iter()
                        .any(|p| address_matches(p, &r.address))
                })
                .map(|(i, _)| i)
                .collect(),
        );
    }
    if rule.reads_domains() {
        let mut notes = Vec::new();
        let hits: Vec<usize> = env
            .recipients
            .iter()
            .enumerate()
            .filter(|(_, r)| is_external(&r.address, domains))
            .filter(|(_, r)| {
                let d = domain_of(&r.address).unwrap_or_default();
                let fact = inputs.domains.get(&d).cloned().unwrap_or_default();
                let new = !rule.first_mail_to_domain || fact.messages == 0;
                let like = !rule.lookalike_domain || fact.lookalike_of.is_some();
                if new && like {
                    let mut n = Vec::new();
                    if rule.first_mail_to_domain {
                        n.push(format!("first mail to {d}"));
                    }
                    if let Some(k) = fact.lookalike_of.filter(|_| rule.lookalike_domain) {
                        n.push(format!("{d} looks like {k}"));
                    }
                    notes.extend(n);
                }
                new && like
            })
            .map(|(i, _)| i)
            .collect();
        if hits.is_empty() {
            return None;
        }
        notes.dedup();
        why.push(notes.join(", "));
        narrow(&mut chosen, hits);
    }
    if rule.external {
        let ext: Vec<usize> = env
            .recipients
            .iter()
            .enumerate()
            .filter(|(_, r)| is_external(&r.address, domains))
            .map(|(i, _)| i)
            .collect();
        narrow(&mut chosen, ext);
    }
    let scope = match chosen {
        None => Scope::Message,
        Some(hits) => {
            if hits.is_empty() {
                return None;
            }
            let names: Vec<&str> = hits
                .iter()
                .map(|&i| env.recipients[i].address.as_str())
                .collect();
            why.push(format!("recipient {}", names.join(", ")));
            Scope::recipients(hits)
        }
    };
    if why.is_empty() {
        why.push("every message".into());
    }
    Some(Match {
        scope,
        why: why.join("; "),
        dlp: dlp_hits,
    })
}
