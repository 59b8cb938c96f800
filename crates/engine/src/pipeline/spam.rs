//! The `spam` check: one score from explained rules and the Bayes classifier, and what each
//! score gets (`[spam]` thresholds: add headers, tag the subject, quarantine, reject at DATA).
//!
//! Every rule that applies is a score contribution with its weight and a sentence, so the
//! operator reads why a message scored what it did (`palisade check --json`, tracking, the
//! console). The rules:
//!
//! - `GTUBE`: the Generic Test for Unsolicited Bulk Email string in the text (1000).
//! - Senders: `BLOCKED_SENDER` (`[spam] block_senders`); `allow_senders` skip scoring.
//! - Authentication (the `authentication` check's outcome, waited for): `SPF_FAIL`,
//!   `SPF_SOFTFAIL`, `DKIM_INVALID`, `DKIM_VALID_AU` (a valid signature of the From domain),
//!   `DMARC_FAIL`, `DMARC_PASS`.
//! - The client: `RDNS_NONE` (no forward-confirmed reverse DNS), `RDNS_DYNAMIC` (a name that
//!   looks like an access network's), `HELO_NOT_FQDN`, `HELO_IP_LITERAL`, `HELO_IP_MISMATCH`,
//!   `HELO_FORGED_OURS` (a stranger greeting with our own name or domain).
//! - Headers: `MISSING_FROM`, `MISSING_DATE`, `MISSING_MESSAGE_ID`, `MISSING_SUBJECT`,
//!   `DATE_IN_FUTURE` (> 12 h), `DATE_IN_PAST` (> 4 days), `FROM_NAME_SPOOF` (the display name
//!   shows another domain's address), `REPLYTO_OTHER_DOMAIN`, `SUBJECT_ALL_CAPS`.
//! - Content: `HTML_ONLY`, `HTML_IMAGE_ONLY`, `URL_IP_HOST`, `URL_TEXT_MISMATCH` (a link
//!   whose text shows one site and whose target is another), `URL_SHORTENER`.
//! - DNS lists (`[[spam.dnsbl]]`): the client address on `ip` zones, the registered domains of
//!   every link and of the sender on `domain` zones, each zone with its own weight (negative
//!   for allowlists); rule `DNSBL_<ZONE>` / `URIBL_<ZONE>`.
//! - Bayes: `BAYES_00` … `BAYES_99` by probability, once enough mail is learned.
//!
//! A DNS list that does not answer in time, or the Bayes database being unreadable, leaves its
//! rules out and says so in the facts; it never fails the check (mail is not deferred because a
//! blocklist is slow). Only the rules above count toward the spam score: other checks'
//! decisions stand on their own.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;
use palisade_inspect::MessageView;
use palisade_inspect::text::{BodyText, body_text};
use palisade_policy::{Action, Decision, Direction, Explanation, Reply, Scope};
use palisade_store::bayes::{self, Bayes};
use palisade_store::config::{DnsblKind, Spam, address_matches};
use palisade_store::{Config, DataDir};
use serde_json::{Value, json};

use super::{Check, CheckFuture, Envelope, Findings, Subject, printable_line};

pub const NAME: &str = "spam";

/// The GTUBE string (SpamAssassin's, also Rspamd's).
pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// Spam headers we write; copies that came with the message are removed.
pub const SPAM_FLAG: &str = "X-Spam-Flag";
pub const SPAM_STATUS: &str = "X-Spam-Status";

/// Distinct registered domains looked up on domain lists per message.
const MAX_DOMAIN_LOOKUPS: usize = 20;

/// Built-in weights, replaced by `[spam.weights]`.
pub const WEIGHTS: &[(&str, f64)] = &[
    ("GTUBE", 1000.0),
    ("SPF_FAIL", 2.0),
    ("SPF_SOFTFAIL", 0.8),
    ("DKIM_INVALID", 0.5),
    ("DKIM_VALID_AU", -0.5),
    ("DMARC_FAIL", 1.5),
    ("DMARC_PASS", -0.5),
    ("RDNS_NONE", 1.0),
    ("RDNS_DYNAMIC", 1.0),
    ("HELO_NOT_FQDN", 1.0),
    ("HELO_IP_LITERAL", 0.5),
    ("HELO_IP_MISMATCH", 1.0),
    ("HELO_FORGED_OURS", 3.0),
    ("MISSING_FROM", 2.0),
    ("MISSING_DATE", 1.0),
    ("MISSING_MESSAGE_ID", 1.0),
    ("MISSING_SUBJECT", 0.5),
    ("DATE_IN_FUTURE", 1.5),
    ("DATE_IN_PAST", 1.0),
    ("FROM_NAME_SPOOF", 2.0),
    ("REPLYTO_OTHER_DOMAIN", 0.3),
    ("SUBJECT_ALL_CAPS", 0.5),
    ("HTML_ONLY", 0.5),
    ("HTML_IMAGE_ONLY", 1.0),
    ("URL_IP_HOST", 1.5),
    ("URL_TEXT_MISMATCH", 2.5),
    ("URL_SHORTENER", 0.3),
    ("BAYES_00", -1.9),
    ("BAYES_05", -0.5),
    ("BAYES_20", -0.1),
    ("BAYES_40", 0.0),
    ("BAYES_50", 0.8),
    ("BAYES_60", 1.5),
    ("BAYES_80", 2.5),
    ("BAYES_95", 3.5),
    ("BAYES_99", 4.5),
];

/// Link hosts that only redirect elsewhere.
const SHORTENERS: &[&str] = &[
    "bit.ly",
    "tinyurl.com",
    "t.co",
    "goo.gl",
    "ow.ly",
    "is.gd",
    "buff.ly",
    "rebrand.ly",
    "cutt.ly",
    "shorturl.at",
    "rb.gy",
    "t.ly",
    "tiny.cc",
];

/// One rule that applied.
#[derive(Debug, Clone)]
struct Hit {
    name: String,
    weight: f64,
    sentence: String,
}

pub struct SpamCheck {
    settings: Spam,
    /// `system.hostname` and the inbound domains: what a stranger's HELO must not claim.
    ours: Vec<String>,
    resolver: Option<TokioResolver>,
    bayes: Option<Arc<BayesPool>>,
    /// DNS lists and waiting for other checks stop at this much after the check starts.
    lookup_budget: Duration,
}

/// Read connections to `bayes.db`, reused across messages.
pub struct BayesPool {
    path: PathBuf,
    idle: Mutex<Vec<Bayes>>,
}

impl BayesPool {
    pub fn new(path: PathBuf) -> BayesPool {
        BayesPool {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn classify(
        &self,
        tokens: &[String],
        min_spam: u64,
        min_ham: u64,
    ) -> Result<(Option<bayes::Classification>, bayes::Totals), String> {
        let conn = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match conn {
            Some(c) => c,
            None => {
                if !self.path.exists() {
                    // Nothing learned yet (the supervisor creates it; `palisade check` on a
                    // laptop may have none).
                    return Ok((None, bayes::Totals::default()));
                }
                Bayes::open(&self.path).map_err(|e| e.to_string())?
            }
        };
        let result = conn
            .classify(tokens, min_spam, min_ham)
            .and_then(|c| Ok((c, conn.totals()?)))
            .map_err(|e| e.to_string());
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < 8 {
            idle.push(conn);
        }
        result
    }
}

impl SpamCheck {
    /// `data`: where `bayes.db` is (none: Bayes is left out).
    pub fn from_config(cfg: &Config, data: Option<&DataDir>) -> SpamCheck {
        let mut ours = vec![cfg.system.hostname.to_ascii_lowercase()];
        ours.extend(cfg.domains.iter().map(|d| d.name.to_ascii_lowercase()));
        let timeout = Duration::from_secs(
            cfg.filter
                .settings(NAME)
                .timeout_secs
                .min(cfg.filter.timeout_secs),
        );
        let lookup_budget = if timeout > Duration::from_secs(4) {
            timeout - Duration::from_secs(2)
        } else {
            timeout * 3 / 4
        };
        let bayes = (cfg.spam.bayes)
            .then(|| data.map(|d| Arc::new(BayesPool::new(d.bayes_db()))))
            .flatten();
        SpamCheck {
            settings: cfg.spam.clone(),
            ours,
            resolver: if cfg.spam.dnsbl.is_empty() {
                None
            } else {
                crate::outbound::route::resolver(cfg)
            },
            bayes,
            lookup_budget,
        }
    }
}

fn weight_of(settings: &Spam, rule: &str) -> f64 {
    if let Some(w) = settings.weights.get(rule) {
        return *w;
    }
    WEIGHTS
        .iter()
        .find(|(n, _)| *n == rule)
        .map(|(_, w)| *w)
        .unwrap_or(0.0)
}

impl Check for SpamCheck {
    fn name(&self) -> &str {
        NAME
    }

    fn run(&self, subject: Subject) -> CheckFuture {
        let env = subject.envelope.clone();
        if env.direction == Direction::Outbound && !self.settings.outbound {
            return Box::pin(async {
                Ok(Findings {
                    skipped: Some(
                        "outbound mail is not scored ([spam] outbound = false)".to_string(),
                    ),
                    ..Default::default()
                })
            });
        }
        let settings = self.settings.clone();
        let ours = self.ours.clone();
        let resolver = self.resolver.clone();
        let bayes_pool = self.bayes.clone();
        let deadline = tokio::time::Instant::now() + self.lookup_budget;
        let weights = Arc::new(settings.clone());
        let w = move |rule: &str| weight_of(&weights, rule);
        Box::pin(async move {
            let view = subject.view.clone();
            if let Some(pattern) = settings
                .allow_senders
                .iter()
                .find(|p| !env.sender.is_empty() && address_matches(p, &env.sender))
            {
                return Ok(Findings {
                    facts: json!({
                        "status": "allowed",
                        "score": 0.0,
                        "thresholds": thresholds(&settings),
                        "action": "none",
                        "rules": [],
                        "allowed_by": pattern,
                    }),
                    ..Default::default()
                });
            }
            // Text, links and Bayes tokens: CPU work off the async threads.
            let text_view = view.clone();
            // Bayes tokens only when there is a classifier to ask.
            let want_tokens = bayes_pool.is_some();
            let (body, tokens) = tokio::task::spawn_blocking(move || {
                let body = body_text(&text_view, bayes::MAX_TEXT_BYTES);
                let tokens = if want_tokens {
                    bayes::tokens(&text_view, &body)
                } else {
                    Vec::new()
                };
                (body, tokens)
            })
            .await
            .map_err(|e| format!("reading the text: {e}"))?;
            let body = Arc::new(body);

            let mut hits: Vec<Hit> = Vec::new();
            let hit = |hits: &mut Vec<Hit>, name: &str, sentence: String| {
                let weight = w(name);
                if weight != 0.0 {
                    hits.push(Hit {
                        name: name.to_string(),
                        weight,
                        sentence,
                    });
                }
            };
            if body.text.contains(GTUBE) {
                hit(
                    &mut hits,
                    "GTUBE",
                    "The message contains the GTUBE spam test string.".into(),
                );
            }
            if let Some(p) = settings
                .block_senders
                .iter()
                .find(|p| !env.sender.is_empty() && address_matches(p, &env.sender))
            {
                hits.push(Hit {
                    name: "BLOCKED_SENDER".into(),
                    weight: settings.block_weight,
                    sentence: format!(
                        "The sender {} is on the block list ({}).",
                        printable_line(&env.sender, 200),
                        printable_line(p, 200)
                    ),
                });
            }
            for (name, sentence) in client_rules(&env, &ours) {
                hit(&mut hits, name, sentence);
            }
            for (name, sentence) in header_rules(&view, time::OffsetDateTime::now_utc()) {
                hit(&mut hits, name, sentence);
            }
            for (name, sentence) in content_rules(&body) {
                hit(&mut hits, name, sentence);
            }

            // DNS lists and Bayes at the same time; then what authentication found.
            let dns = async {
                match &resolver {
                    Some(r) => dns_lists(r, &settings, &env, &body, deadline).await,
                    None => (Vec::new(), Vec::new()),
                }
            };
            let bayes_fut = async {
                let Some(pool) = bayes_pool.clone() else {
                    return json!({"state": "off"});
                };
                let (min_spam, min_ham) = (settings.bayes_min_spam, settings.bayes_min_ham);
                let tokens = tokens.clone();
                let r =
                    tokio::task::spawn_blocking(move || pool.classify(&tokens, min_spam, min_ham))
                        .await;
                match r {
                    Ok(Ok((Some(c), t))) => json!({
                        "state": "scored", "probability": c.probability, "known_tokens": c.known,
                        "used_tokens": c.used, "learned_spam": t.spam, "learned_ham": t.ham }),
                    Ok(Ok((None, t))) => json!({
                        "state": "learning", "learned_spam": t.spam, "learned_ham": t.ham,
                        "needed_spam": min_spam, "needed_ham": min_ham }),
                    Ok(Err(e)) => json!({"state": "error", "error": printable_line(&e, 300)}),
                    Err(e) => json!({"state": "error", "error": e.to_string()}),
                }
            };
            let auth = async {
                tokio::time::timeout_at(deadline, subject.others.outcome("authentication"))
                    .await
                    .ok()
                    .flatten()
            };
            let ((dns_hits, dns_facts), bayes_facts, auth) = tokio::join!(dns, bayes_fut, auth);
            hits.extend(dns_hits);
            if bayes_facts["state"] == "scored"
                && let Some(p) = bayes_facts["probability"].as_f64()
            {
                let (name, range) = bayes_bucket(p);
                hit(
                    &mut hits,
                    name,
                    format!(
                        "The Bayes classifier puts the spam probability at {:.1} % ({range}).",
                        p * 100.0
                    ),
                );
            }
            let auth_facts = match &auth {
                Some(o) if o.is_completed() && !o.facts.is_null() => {
                    for (name, sentence) in authentication_rules(&o.facts) {
                        hit(&mut hits, name, sentence);
                    }
                    json!("used")
                }
                Some(o) => json!(format!(
                    "not used: the authentication check {}",
                    state_of(o)
                )),
                None => json!("not used: no authentication result"),
            };

            let foreign = view.headers().all.iter().any(|f| {
                f.name.eq_ignore_ascii_case(SPAM_FLAG) || f.name.eq_ignore_ascii_case(SPAM_STATUS)
            });
            Ok(findings(
                &settings,
                foreign,
                hits,
                Facts {
                    dns: dns_facts,
                    bayes: bayes_facts,
                    authentication: auth_facts,
                    links: body.links.len(),
                },
            ))
        })
    }
}

fn state_of(o: &palisade_policy::CheckOutcome) -> &'static str {
    use palisade_policy::CheckStatus::*;
    match o.status {
        Completed => "completed without facts",
        Failed { .. } => "failed",
        TimedOut { .. } => "timed out",
        Skipped { .. } => "was skipped",
    }
}

fn thresholds(s: &Spam) -> Value {
    json!({
        "add_header": s.add_header,
        "tag_subject": s.tag_subject,
        "quarantine": s.quarantine,
        "reject": s.reject,
    })
}

/// The Bayes rule for a probability, with its range for the sentence.
fn bayes_bucket(p: f64) -> (&'static str, &'static str) {
    match p {
        p if p < 0.01 => ("BAYES_00", "0 to 1 %"),
        p if p < 0.05 => ("BAYES_05", "1 to 5 %"),
        p if p < 0.20 => ("BAYES_20", "5 to 20 %"),
        p if p < 0.40 => ("BAYES_40", "20 to 40 %"),
        p if p < 0.60 => ("BAYES_50", "40 to 60 %"),
        p if p < 0.80 => ("BAYES_60", "60 to 80 %"),
        p if p < 0.95 => ("BAYES_80", "80 to 95 %"),
        p if p < 0.99 => ("BAYES_95", "95 to 99 %"),
        _ => ("BAYES_99", "99 to 100 %"),
    }
}

/// What the check looked at besides its rules.
struct Facts {
    dns: Vec<Value>,
    bayes: Value,
    authentication: Value,
    links: usize,
}

/// The score, the thresholds it reached, and the decisions they ask for. `foreign`: the
/// message came with spam headers of its own (removed: only ours are believed).
fn findings(settings: &Spam, foreign: bool, hits: Vec<Hit>, extra: Facts) -> Findings {
    let score: f64 = hits.iter().map(|h| h.weight).sum();
    let score = (score * 100.0).round() / 100.0;
    let names: Vec<&str> = hits.iter().map(|h| h.name.as_str()).collect();
    let action = if score >= settings.reject {
        "reject"
    } else if score >= settings.quarantine {
        "quarantine"
    } else if score >= settings.tag_subject {
        "tag_subject"
    } else if score >= settings.add_header {
        "add_header"
    } else {
        "none"
    };
    let mut f = Findings {
        facts: json!({
            "status": if action == "none" { "ham" } else { "spam" },
            "score": score,
            "thresholds": thresholds(settings),
            "action": action,
            "rules": hits.iter().map(|h| json!({
                "name": h.name, "weight": h.weight, "sentence": h.sentence })).collect::<Vec<_>>(),
            "bayes": extra.bayes,
            "dnsbl": extra.dns,
            "authentication": extra.authentication,
            "links": extra.links,
        }),
        ..Default::default()
    };
    f.contributions = hits
        .iter()
        .map(|h| Explanation::new(NAME, h.name.clone(), h.sentence.clone()).with_score(h.weight))
        .collect();
    let summary = format!(
        "Spam score {score} (add header at {}, quarantine at {}, reject at {}): {}.",
        settings.add_header,
        settings.quarantine,
        settings.reject,
        if names.is_empty() {
            "no rule applied".to_string()
        } else {
            names.join(", ")
        }
    );
    let why = |rule: &str| Explanation::new(NAME, rule, summary.clone()).with_score(score);
    // Spam headers from outside must not be believed by the mail clients: ours replace them.
    if foreign {
        for name in [SPAM_FLAG, SPAM_STATUS] {
            f.decisions.push(Decision::new(
                Scope::Message,
                Action::remove_header(name),
                Explanation::new(
                    NAME,
                    "headers",
                    format!("The {name} field that came with the message is removed."),
                ),
            ));
        }
    }
    let status = format!(
        "{}, score={score} required={} tests={}",
        if action == "none" { "No" } else { "Yes" },
        settings.add_header,
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(",")
        }
    );
    match action {
        "reject" => f.decisions.push(Decision::new(
            Scope::Message,
            Action::reject(Reply::new(
                550,
                "5.7.1",
                format!("Message refused as spam (score {score})"),
            )),
            why("reject"),
        )),
        "quarantine" => f.decisions.push(Decision::new(
            Scope::Message,
            Action::quarantine(format!("spam: score {score}")),
            why("quarantine"),
        )),
        _ => {}
    }
    if action != "none" {
        f.decisions.push(Decision::new(
            Scope::Message,
            Action::add_header(SPAM_FLAG, "YES"),
            why("add_header"),
        ));
        f.decisions.push(Decision::new(
            Scope::Message,
            Action::add_header(SPAM_STATUS, printable_line(&status, 900)),
            why("add_header"),
        ));
    }
    if matches!(action, "tag_subject" | "quarantine" | "reject") {
        f.decisions.push(Decision::new(
            Scope::Message,
            Action::tag_subject(settings.subject_tag.clone()),
            why("tag_subject"),
        ));
    }
    f
}

/// What the `authentication` check found, as spam evidence.
fn authentication_rules(facts: &Value) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let spf = facts["spf"]["result"].as_str().unwrap_or("");
    let spf_domain = facts["spf"]["domain"].as_str().unwrap_or("");
    match spf {
        "fail" => out.push((
            "SPF_FAIL",
            format!(
                "SPF fails for {}: the client is not allowed to send for it.",
                printable_line(spf_domain, 200)
            ),
        )),
        "softfail" => out.push((
            "SPF_SOFTFAIL",
            format!("SPF soft-fails for {}.", printable_line(spf_domain, 200)),
        )),
        _ => {}
    }
    let dmarc_domain = facts["dmarc"]["domain"].as_str().unwrap_or("");
    let dkim = facts["dkim"].as_array().cloned().unwrap_or_default();
    if dkim
        .iter()
        .any(|d| matches!(d["result"].as_str(), Some("fail")))
    {
        out.push((
            "DKIM_INVALID",
            "A DKIM signature of the message does not verify.".to_string(),
        ));
    }
    if !dmarc_domain.is_empty()
        && dkim.iter().any(|d| {
            d["result"] == "pass"
                && d["domain"]
                    .as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(dmarc_domain))
        })
    {
        out.push((
            "DKIM_VALID_AU",
            format!(
                "A valid DKIM signature of the author's domain {}.",
                printable_line(dmarc_domain, 200)
            ),
        ));
    }
    match facts["dmarc"]["result"].as_str() {
        // The operator said this domain's failures do not count (`dmarc_overrides`), or a
        // trusted ARC sealer saw it pass before forwarding changed the message.
        Some("fail")
            if matches!(
                facts["dmarc"]["action"].as_str(),
                Some("override" | "arc_override")
            ) => {}
        Some("fail") => out.push((
            "DMARC_FAIL",
            format!(
                "DMARC fails for the From domain {}.",
                printable_line(dmarc_domain, 200)
            ),
        )),
        Some("pass") => out.push((
            "DMARC_PASS",
            format!(
                "DMARC passes for the From domain {}.",
                printable_line(dmarc_domain, 200)
            ),
        )),
        _ => {}
    }
    out
}

/// Reverse DNS and HELO.
fn client_rules(env: &Envelope, ours: &[String]) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let ip = env.client_ip;
    if env.rdns_checked && env.client_name.is_none() && is_public(ip) {
        out.push((
            "RDNS_NONE",
            format!("The client {ip} has no forward-confirmed reverse DNS name."),
        ));
    }
    if let Some(name) = &env.client_name
        && looks_dynamic(name, ip)
    {
        out.push((
            "RDNS_DYNAMIC",
            format!(
                "The client's name {} looks like an access network's, not a mail server's.",
                printable_line(name, 200)
            ),
        ));
    }
    let helo = env.helo.as_deref().unwrap_or("").trim();
    if let Some(literal) = helo.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let literal = literal.strip_prefix("IPv6:").unwrap_or(literal);
        out.push((
            "HELO_IP_LITERAL",
            "The client greeted with an address literal instead of its name.".into(),
        ));
        if literal.parse::<IpAddr>().ok() != Some(ip) {
            out.push((
                "HELO_IP_MISMATCH",
                format!(
                    "The client greeted as {} but connected from {ip}.",
                    printable_line(helo, 100)
                ),
            ));
        }
    } else if !helo.is_empty() {
        let h = helo.trim_end_matches('.').to_ascii_lowercase();
        if !h.contains('.') || h.parse::<IpAddr>().is_ok() {
            out.push((
                "HELO_NOT_FQDN",
                format!(
                    "The client's greeting {} is not a fully qualified domain name.",
                    printable_line(helo, 100)
                ),
            ));
        }
        if ours.iter().any(|o| !o.is_empty() && *o == h) {
            out.push((
                "HELO_FORGED_OURS",
                format!(
                    "A client from outside greeted with our own name {}.",
                    printable_line(helo, 100)
                ),
            ));
        }
    }
    out
}

/// Whether the address can be on a public list at all.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            !(v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80)
        }
    }
}

/// Names access networks give their customers: the address's octets in the name, or words
/// such as `dynamic`, `dsl`, `pool`, `dhcp`, `cable`.
fn looks_dynamic(name: &str, ip: IpAddr) -> bool {
    let n = name.to_ascii_lowercase();
    let first = n.split('.').next().unwrap_or("");
    const WORDS: &[&str] = &[
        "dynamic",
        "dyn",
        "dsl",
        "adsl",
        "pool",
        "dhcp",
        "cable",
        "dialup",
        "ppp",
        "broadband",
        "customer",
        "client",
        "host",
        "static",
        "user",
        "cpe",
        "ip",
    ];
    let word_hit = first
        .split(|c: char| !c.is_ascii_alphabetic())
        .any(|w| WORDS.contains(&w));
    let octets_hit = match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            let fwd = format!("{}-{}-{}-{}", o[0], o[1], o[2], o[3]);
            let rev = format!("{}-{}-{}-{}", o[3], o[2], o[1], o[0]);
            let dotted = format!("{}.{}.{}.{}", o[3], o[2], o[1], o[0]);
            n.contains(&fwd) || n.contains(&rev) || n.starts_with(&dotted)
        }
        IpAddr::V6(_) => false,
    };
    octets_hit || (word_hit && first.chars().any(|c| c.is_ascii_digit()))
}

fn domain_of(address: &str) -> Option<String> {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('>').to_ascii_lowercase())
}

/// Header sanity.
fn header_rules(view: &MessageView, now: time::OffsetDateTime) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let h = view.headers();
    let has = |name: &str| h.all.iter().any(|f| f.name.eq_ignore_ascii_case(name));
    if !has("from") {
        out.push(("MISSING_FROM", "The message has no From field.".to_string()));
    }
    if !has("date") {
        out.push(("MISSING_DATE", "The message has no Date field.".to_string()));
    }
    if !has("message-id") {
        out.push((
            "MISSING_MESSAGE_ID",
            "The message has no Message-ID field.".to_string(),
        ));
    }
    if !has("subject") {
        out.push((
            "MISSING_SUBJECT",
            "The message has no Subject field.".to_string(),
        ));
    }
    if let Some(date) = h.date.as_deref().and_then(|d| {
        time::OffsetDateTime::parse(d, &time::format_description::well_known::Rfc3339).ok()
    }) {
        let ahead = date - now;
        if ahead > time::Duration::hours(12) {
            out.push((
                "DATE_IN_FUTURE",
                format!(
                    "The Date field is {} hours in the future.",
                    ahead.whole_hours()
                ),
            ));
        } else if -ahead > time::Duration::days(4) {
            out.push((
                "DATE_IN_PAST",
                format!("The Date field is {} days old.", (-ahead).whole_days()),
            ));
        }
    }
    let from_domain = h
        .from
        .first()
        .and_then(|m| m.address.as_deref())
        .and_then(domain_of);
    if let (Some(fd), Some(name)) = (&from_domain, h.from.first().and_then(|m| m.name.as_ref())) {
        let shown = name
            .split(|c: char| c.is_whitespace() || "<>()\"'".contains(c))
            .filter_map(|w| w.rsplit_once('@').map(|(_, d)| d))
            .map(|d| d.trim_end_matches(['.', ',', ';']).to_ascii_lowercase())
            .find(|d| d.contains('.') && registered(d) != registered(fd));
        if let Some(d) = shown {
            out.push((
                "FROM_NAME_SPOOF",
                format!(
                    "The From display name shows an address at {} but the message is from {}.",
                    printable_line(&d, 100),
                    printable_line(fd, 100)
                ),
            ));
        }
    }
    if let (Some(fd), Some(rd)) = (
        &from_domain,
        h.reply_to
            .first()
            .and_then(|m| m.address.as_deref())
            .and_then(domain_of),
    ) && registered(&rd) != registered(fd)
    {
        out.push((
            "REPLYTO_OTHER_DOMAIN",
            format!(
                "Replies go to {} although the message is from {}.",
                printable_line(&rd, 100),
                printable_line(fd, 100)
            ),
        ));
    }
    if let Some(subject) = &h.subject {
        let letters: Vec<char> = subject.chars().filter(|c| c.is_alphabetic()).collect();
        if letters.len() >= 10 && letters.iter().all(|c| c.is_uppercase()) {
            out.push((
                "SUBJECT_ALL_CAPS",
                "The subject is written in capitals only.".to_string(),
            ));
        }
    }
    out
}

/// The registered domain (public suffix + one label), or the name itself.
fn registered(host: &str) -> String {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    psl::domain_str(&host).unwrap_or(&host).to_string()
}

/// Links and HTML.
fn content_rules(body: &BodyText) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if body.html_parts > 0 && body.plain_parts == 0 {
        out.push((
            "HTML_ONLY",
            "The message has an HTML part and no plain-text alternative.".to_string(),
        ));
    }
    let visible = body.text.split_whitespace().map(str::len).sum::<usize>();
    if body.html_parts > 0 && body.images > 0 && visible < 200 {
        out.push((
            "HTML_IMAGE_ONLY",
            format!(
                "The HTML shows {} image(s) and almost no text ({visible} characters).",
                body.images
            ),
        ));
    }
    if let Some(l) = body.links.iter().find(|l| l.host.parse::<IpAddr>().is_ok()) {
        out.push((
            "URL_IP_HOST",
            format!(
                "A link points to a bare IP address ({}).",
                printable_line(&l.host, 60)
            ),
        ));
    }
    let mismatch = body.links.iter().find_map(|l| {
        let anchor = l.anchor.as_deref()?;
        let shown = anchor
            .split_whitespace()
            .find_map(palisade_inspect::text::host_of)
            .or_else(|| {
                let a = anchor.trim().trim_end_matches('/').to_ascii_lowercase();
                (a.contains('.')
                    && !a.contains(' ')
                    && a.chars()
                        .all(|c| c.is_alphanumeric() || c == '.' || c == '-')
                    && psl::suffix_str(&a).is_some_and(|s| s != a && psl::domain_str(&a).is_some()))
                .then_some(a)
            })?;
        (registered(&shown) != registered(&l.host)).then(|| (shown, l.host.clone()))
    });
    if let Some((shown, real)) = mismatch {
        out.push((
            "URL_TEXT_MISMATCH",
            format!(
                "A link shows {} but leads to {}.",
                printable_line(&shown, 100),
                printable_line(&real, 100)
            ),
        ));
    }
    if let Some(l) = body
        .links
        .iter()
        .find(|l| SHORTENERS.contains(&registered(&l.host).as_str()))
    {
        out.push((
            "URL_SHORTENER",
            format!(
                "A link goes through the URL shortener {}.",
                printable_line(&l.host, 100)
            ),
        ));
    }
    out
}

/// A name for a zone in a rule: upper case, `_` for anything else.
fn zone_rule(prefix: &str, zone: &str) -> String {
    let z: String = zone
        .trim_end_matches('.')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{prefix}_{z}")
}

/// The reversed-address label of `ip` for an IP list (`4.3.2.1`, or 32 nibbles).
fn reversed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut nibbles = Vec::with_capacity(32);
            for b in v6.octets().iter().rev() {
                nibbles.push(format!("{:x}", b & 0xf));
                nibbles.push(format!("{:x}", b >> 4));
            }
            nibbles.join(".")
        }
    }
}

/// Looks up every configured list; returns the rules that applied and what each lookup said.
async fn dns_lists(
    resolver: &TokioResolver,
    settings: &Spam,
    env: &Envelope,
    body: &BodyText,
    deadline: tokio::time::Instant,
) -> (Vec<Hit>, Vec<Value>) {
    let mut domains: BTreeSet<String> = BTreeSet::new();
    if let Some(d) = domain_of(&env.sender) {
        domains.insert(registered(&d));
    }
    for l in &body.links {
        if domains.len() >= MAX_DOMAIN_LOOKUPS {
            break;
        }
        if l.host.parse::<IpAddr>().is_err() && l.host.contains('.') {
            domains.insert(registered(&l.host));
        }
    }
    let mut queries: Vec<(usize, String, String)> = Vec::new(); // (zone index, subject, name)
    for (i, z) in settings.dnsbl.iter().enumerate() {
        let zone = z.zone.trim_end_matches('.');
        match z.kind {
            DnsblKind::Ip => {
                if is_public(env.client_ip) {
                    queries.push((
                        i,
                        env.client_ip.to_string(),
                        format!("{}.{zone}.", reversed(env.client_ip)),
                    ));
                }
            }
            DnsblKind::Domain => {
                for d in &domains {
                    queries.push((i, d.clone(), format!("{d}.{zone}.")));
                }
            }
        }
    }
    let mut set = tokio::task::JoinSet::new();
    for (i, subject, name) in queries {
        let r = resolver.clone();
        set.spawn(async move {
            let answer = tokio::time::timeout_at(deadline, r.ipv4_lookup(name.as_str())).await;
            (i, subject, name, answer)
        });
    }
    let mut hits: Vec<Hit> = Vec::new();
    let mut facts = Vec::new();
    while let Some(joined) = set.join_next().await {
        let Ok((i, subject, name, answer)) = joined else {
            continue;
        };
        let z = &settings.dnsbl[i];
        let (listed, answers, error): (bool, Vec<Ipv4Addr>, Option<String>) = match answer {
            Err(_) => (false, vec![], Some("no answer in time".into())),
            Ok(Err(e)) if e.is_nx_domain() || e.is_no_records_found() => (false, vec![], None),
            Ok(Err(e)) => (false, vec![], Some(printable_line(&e.to_string(), 200))),
            Ok(Ok(lookup)) => {
                let a: Vec<Ipv4Addr> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::A(a) => Some(a.0),
                        _ => None,
                    })
                    .collect();
                (a.iter().any(|x| z.counts(*x)), a, None)
            }
        };
        facts.push(json!({
            "zone": z.zone, "kind": z.kind, "query": name.trim_end_matches('.'), "listed": listed,
            "answers": answers, "error": error,
        }));
        if listed {
            let prefix = match z.kind {
                DnsblKind::Ip => "DNSBL",
                DnsblKind::Domain => "URIBL",
            };
            let rule = zone_rule(prefix, &z.zone);
            // One hit per zone: a message with ten listed links scores the zone once.
            if hits.iter().any(|h| h.name == rule) {
                continue;
            }
            let what = match z.kind {
                DnsblKind::Ip => format!("The client {subject}"),
                DnsblKind::Domain => format!("The domain {}", printable_line(&subject, 100)),
            };
            let list = if z.weight < 0.0 {
                "allowlist"
            } else {
                "blocklist"
            };
            hits.push(Hit {
                name: rule,
                weight: z.weight,
                sentence: format!(
                    "{what} is on the {list} {} (answer {}).",
                    printable_line(&z.zone, 100),
                    answers
                        .iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
    facts.sort_by(|a, b| a["query"].as_str().cmp(&b["query"].as_str()));
    hits.sort_by(|a, b| a.name.cmp(&b.name));
    (hits, facts)
}

#[cfg(test)]
mod tests;
