//! The `authentication` check: SPF, DKIM, DMARC and ARC of inbound mail, with `mail-auth` over
//! the engine's hickory resolver (`[dns] nameservers` when set).
//!
//! - SPF of the envelope sender (MAIL FROM) for the client IP and HELO; of the HELO name when
//!   the sender is null.
//! - DKIM: every signature verified.
//! - DMARC of the From domain with its alignment (relaxed or strict, as published) from the
//!   SPF and DKIM results; `p=reject` / `p=quarantine` get what `[authentication]` says, and
//!   `dmarc_overrides` domains are only recorded.
//! - ARC: the chain is verified and reported (`arc=`); a DMARC failure is only recorded when
//!   the chain verifies and its newest seal is by one of `trusted_arc_sealers` that recorded
//!   `dmarc=pass` (RFC 8617 section 7.2: a trusted forwarder). With `[authentication.arc_seal]`
//!   the message is sealed (an ARC set with these results; `chain` none/pass/fail as verified
//!   here, applied at write time over the final copy by `dkim::DkimKeys::seal`).
//!
//! One `Authentication-Results` field (RFC 8601) goes on top of the message, after every field
//! claiming our authserv-id (`system.hostname`) that came with the message is removed.
//!
//! DNS never refuses mail: a lookup that fails or does not answer before the check's own
//! deadline (a little before its budget) is a `temperror` result, recorded and not enforced.
//! Mail from trusted networks or authenticated clients (outbound) is skipped.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mail_auth::common::headers::HeaderWriter;
use mail_auth::dmarc::Policy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    ArcOutput, AuthenticatedMessage, AuthenticationResults, DkimOutput, DkimResult, DmarcOutput,
    DmarcResult, DnsError, Error as AuthError, MessageAuthenticator, Parameters, ResolverCache,
    SpfOutput, SpfResult, Txt,
};
use palisade_policy::{Action, Decision, Explanation, Reply, Scope};
use palisade_store::Config;
use palisade_store::config::{Authentication, DmarcQuarantineAction, DmarcRejectAction};
use serde_json::json;

use super::edit::AUTHENTICATION_RESULTS;
use super::{Check, CheckFuture, Envelope, Findings, Subject};

const NAME: &str = "authentication";

/// Parsed TXT records (SPF, DKIM keys, DMARC) shared by all messages of one configuration, for
/// their DNS lifetime. Bounded: when full, expired entries go, then everything.
#[derive(Default)]
pub struct TxtCache {
    map: Mutex<HashMap<Box<str>, (Txt, Instant)>>,
    /// Tests: a name not in the cache has no record (NXDOMAIN) instead of being looked up.
    #[cfg(test)]
    pub(crate) only_these: bool,
}

const TXT_CACHE_ENTRIES: usize = 4096;

impl ResolverCache<Box<str>, Txt> for TxtCache {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let found = map
            .get(name)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(v, _)| v.clone());
        #[cfg(test)]
        if found.is_none() && self.only_these {
            return Some(Txt::Error(AuthError::Dns(DnsError::RecordNotFound(
                mail_auth::hickory_resolver::proto::op::ResponseCode::NXDomain,
            ))));
        }
        found
    }

    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(name).map(|(v, _)| v)
    }

    fn insert(&self, key: Box<str>, value: Txt, valid_until: Instant) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= TXT_CACHE_ENTRIES {
            let now = Instant::now();
            map.retain(|_, (_, until)| *until > now);
            if map.len() >= TXT_CACHE_ENTRIES {
                map.clear();
            }
        }
        map.insert(key, (value, valid_until));
    }
}

pub struct AuthenticationCheck {
    /// `None` when no resolver could be built (no `[dns] nameservers` and no system
    /// configuration): the check is then skipped, saying so.
    authenticator: Option<MessageAuthenticator>,
    cache: Arc<TxtCache>,
    /// `system.hostname`: our authserv-id and the SPF `r` macro.
    hostname: String,
    settings: Authentication,
    /// Lookups stop at this much after the check starts (its budget less a margin), so slow
    /// DNS is a temperror result rather than a failed check.
    lookup_budget: Duration,
}

impl AuthenticationCheck {
    pub fn from_config(cfg: &Config) -> AuthenticationCheck {
        let resolver = crate::outbound::route::resolver(cfg);
        let timeout = Duration::from_secs(
            cfg.filter
                .settings(NAME)
                .timeout_secs
                .min(cfg.filter.timeout_secs),
        );
        AuthenticationCheck::new(
            resolver.map(MessageAuthenticator),
            Arc::new(TxtCache::default()),
            cfg.system.hostname.clone(),
            cfg.authentication.clone(),
            timeout,
        )
    }

    /// `timeout` is the check's budget; lookups stop a little before it.
    pub fn new(
        authenticator: Option<MessageAuthenticator>,
        cache: Arc<TxtCache>,
        hostname: String,
        settings: Authentication,
        timeout: Duration,
    ) -> AuthenticationCheck {
        let lookup_budget = if timeout > Duration::from_secs(4) {
            timeout - Duration::from_secs(2)
        } else {
            timeout * 3 / 4
        };
        AuthenticationCheck {
            authenticator,
            cache,
            hostname,
            settings,
            lookup_budget,
        }
    }
}

impl Check for AuthenticationCheck {
    fn name(&self) -> &str {
        NAME
    }

    fn run(&self, subject: Subject) -> CheckFuture {
        let env = subject.envelope.clone();
        if let Some(reason) = skip_reason(&env) {
            return Box::pin(async move {
                Ok(Findings {
                    skipped: Some(reason),
                    ..Default::default()
                })
            });
        }
        let Some(authenticator) = self.authenticator.clone() else {
            return Box::pin(async {
                Ok(Findings {
                    skipped: Some("no DNS resolver could be set up (see [dns] nameservers)".into()),
                    ..Default::default()
                })
            });
        };
        let cache = self.cache.clone();
        let hostname = self.hostname.clone();
        let settings = self.settings.clone();
        let deadline = tokio::time::Instant::now() + self.lookup_budget;
        Box::pin(async move {
            // Only a test evaluates a view without its file.
            let Some(content) = subject.content.clone() else {
                return Ok(Findings {
                    skipped: Some("no message content to authenticate".into()),
                    ..Default::default()
                });
            };
            let raw = tokio::fs::read(&*content)
                .await
                .map_err(|e| format!("reading the message: {e}"))?;
            let ctx = Context {
                authenticator: &authenticator,
                cache: &cache,
                hostname: &hostname,
                settings: &settings,
                deadline,
            };
            Ok(authenticate(&ctx, &env, &raw).await)
        })
    }
}

/// Why a message is not authenticated: it is outbound (a trusted network or an authenticated
/// client), where SPF/DMARC of the sender's own domain say nothing we do not already know.
fn skip_reason(env: &Envelope) -> Option<String> {
    if let Some(user) = &env.auth_user {
        Some(format!(
            "outbound: the client authenticated as {user}; only inbound mail is authenticated"
        ))
    } else if env.trusted {
        Some(format!(
            "outbound: the client {} is on smtp.trusted_networks; only inbound mail is authenticated",
            env.client_ip
        ))
    } else if env.direction == palisade_policy::Direction::Outbound {
        Some("outbound mail; only inbound mail is authenticated".into())
    } else {
        None
    }
}

/// What one evaluation needs besides the message.
pub struct Context<'a> {
    pub authenticator: &'a MessageAuthenticator,
    pub cache: &'a TxtCache,
    pub hostname: &'a str,
    pub settings: &'a Authentication,
    /// Lookups not answered by then are temperrors.
    pub deadline: tokio::time::Instant,
}

fn timed_out() -> AuthError {
    AuthError::Dns(DnsError::Resolver(
        "no DNS answer within the check's budget".into(),
    ))
}

/// Runs SPF, DKIM and ARC concurrently, then DMARC, and turns the results into findings.
pub async fn authenticate(ctx: &Context<'_>, env: &Envelope, raw: &[u8]) -> Findings {
    let a = ctx.authenticator;
    let helo = env.helo.as_deref().unwrap_or("");
    let sender = env.sender.as_str();
    let ip = env.client_ip;
    // The identity SPF checks: MAIL FROM, or HELO for the null sender.
    let spf_params = if sender.is_empty() {
        SpfParameters::verify_ehlo(ip, helo, ctx.hostname)
    } else {
        SpfParameters::verify_mail_from(ip, helo, ctx.hostname, sender)
    };
    let spf_domain: String = if sender.is_empty() {
        helo.to_string()
    } else {
        sender
            .rsplit_once('@')
            .map_or(helo, |(_, d)| d)
            .to_ascii_lowercase()
    };
    let message = AuthenticatedMessage::parse(raw);

    let spf = async {
        let p = Parameters::new(spf_params).with_txt_cache(ctx.cache);
        tokio::time::timeout_at(ctx.deadline, a.verify_spf(p))
            .await
            .unwrap_or_else(|_| {
                SpfOutput::new(spf_domain.clone()).with_result(SpfResult::TempError)
            })
    };
    let dkim = async {
        let Some(m) = &message else {
            return Vec::<DkimOutput<'_>>::new();
        };
        let p = Parameters::new(m).with_txt_cache(ctx.cache);
        match tokio::time::timeout_at(ctx.deadline, a.verify_dkim(p)).await {
            Ok(out) => out,
            Err(_) => m
                .dkim_headers
                .iter()
                .map(|h| DkimOutput::temp_err(timed_out()).with_signature(&h.header))
                .collect(),
        }
    };
    let arc = async {
        let m = message.as_ref()?;
        if m.as_headers.is_empty() && m.ams_headers.is_empty() && m.aar_headers.is_empty() {
            return None;
        }
        let p = Parameters::new(m).with_txt_cache(ctx.cache);
        Some(
            tokio::time::timeout_at(ctx.deadline, a.verify_arc(p))
                .await
                .ok(),
        )
    };
    let (spf, dkim, arc) = tokio::join!(spf, dkim, arc);

    let from_domain = message
        .as_ref()
        .and_then(|m| m.from.first())
        .and_then(|f| f.rsplit_once('@'))
        .map(|(_, d)| d.to_ascii_lowercase());
    let dmarc: Option<DmarcOutput> = match (&message, &from_domain) {
        (Some(m), Some(from)) => {
            let p = Parameters::new(DmarcParameters::new(m, &dkim, &spf_domain, &spf))
                .with_txt_cache(ctx.cache);
            Some(
                tokio::time::timeout_at(ctx.deadline, a.verify_dmarc(p))
                    .await
                    .unwrap_or_else(|_| {
                        DmarcOutput::new(from.clone())
                            .with_spf_result(DmarcResult::TempError(timed_out()))
                            .with_dkim_result(DmarcResult::TempError(timed_out()))
                    }),
            )
        }
        _ => None,
    };

    // The header: mail-auth's formatting, our folding kept, nothing but printable text.
    let mut ar = AuthenticationResults::new(ctx.hostname);
    ar = if sender.is_empty() {
        ar.with_spf_ehlo_result(&spf, ip, helo)
    } else {
        ar.with_spf_mailfrom_result(&spf, ip, sender, helo)
    };
    let header_from = message
        .as_ref()
        .and_then(|m| m.from.first())
        .map(String::as_str)
        .unwrap_or("");
    ar = ar.with_dkim_results(&dkim, header_from);
    if let Some(Some(arc)) = &arc {
        ar = ar.with_arc_result(arc, ip);
    }
    if let Some(d) = &dmarc {
        ar = ar.with_dmarc_result(d);
    }
    let mut value = header_value(&ar.to_header());
    if dkim.is_empty() {
        value.push_str(";\r\n\tdkim=none");
    }
    if dmarc.is_none() {
        value.push_str(";\r\n\tdmarc=none (no From domain)");
    }

    let forged = message
        .as_ref()
        .map(|m| {
            m.headers
                .iter()
                .filter(|(name, v)| {
                    std::str::from_utf8(name)
                        .is_ok_and(|n| n.trim().eq_ignore_ascii_case(AUTHENTICATION_RESULTS))
                        && super::edit::claimed_authserv_id(&[b"x:".as_slice(), v].concat())
                            .is_some_and(|id| id.eq_ignore_ascii_case(ctx.hostname))
                })
                .count()
        })
        .unwrap_or(0);

    findings(
        ctx,
        Results {
            spf: &spf,
            spf_identity: if sender.is_empty() {
                "helo"
            } else {
                "mailfrom"
            },
            dkim: &dkim,
            arc: arc.as_ref(),
            dmarc: dmarc.as_ref(),
            header: value,
            forged,
            parsed: message.is_some(),
            client_ip: ip,
        },
    )
}

struct Results<'a, 'x> {
    spf: &'a SpfOutput,
    spf_identity: &'static str,
    dkim: &'a [DkimOutput<'x>],
    /// `None`: no ARC headers; `Some(None)`: no answer in time.
    arc: Option<&'a Option<ArcOutput<'x>>>,
    dmarc: Option<&'a DmarcOutput>,
    header: String,
    forged: usize,
    parsed: bool,
    client_ip: IpAddr,
}

/// The value of a header `Name: value\r\n` as mail-auth writes it, each folded line kept
/// (`\r\n\t` between them) and stripped of anything that is not printable.
fn header_value(header: &str) -> String {
    let value = header
        .split_once(':')
        .map(|(_, v)| v.trim_start())
        .unwrap_or(header)
        .trim_end_matches(['\r', '\n']);
    value
        .split("\r\n\t")
        .map(|line| line.chars().filter(|c| !c.is_control()).collect::<String>())
        .collect::<Vec<_>>()
        .join("\r\n\t")
}

fn spf_name(r: SpfResult) -> &'static str {
    match r {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

fn dkim_name(r: &DkimResult) -> (&'static str, Option<String>) {
    match r {
        DkimResult::Pass => ("pass", None),
        DkimResult::Neutral(e) => ("neutral", Some(e.to_string())),
        DkimResult::Fail(e) => ("fail", Some(e.to_string())),
        DkimResult::PermError(e) => ("permerror", Some(e.to_string())),
        DkimResult::TempError(e) => ("temperror", Some(e.to_string())),
        DkimResult::None => ("none", None),
    }
}

fn dmarc_name(r: &DmarcResult) -> (&'static str, Option<String>) {
    match r {
        DmarcResult::Pass => ("pass", None),
        DmarcResult::Fail(e) => ("fail", Some(e.to_string())),
        DmarcResult::TempError(e) => ("temperror", Some(e.to_string())),
        DmarcResult::PermError(e) => ("permerror", Some(e.to_string())),
        DmarcResult::None => ("none", None),
    }
}

fn policy_name(p: Policy) -> &'static str {
    match p {
        Policy::Reject => "reject",
        Policy::Quarantine => "quarantine",
        Policy::None | Policy::Unspecified => "none",
    }
}

fn findings(ctx: &Context<'_>, r: Results<'_, '_>) -> Findings {
    let authserv_id = ctx.hostname;
    let spf_result = spf_name(r.spf.result());
    let mut sentences: Vec<String> = Vec::new();
    sentences.push(match r.spf_identity {
        "helo" => format!(
            "SPF {spf_result} for the HELO name {} (null sender) from {}.",
            r.spf.domain(),
            r.client_ip
        ),
        _ => format!(
            "SPF {spf_result} for the envelope sender's domain {} from {}.",
            r.spf.domain(),
            r.client_ip
        ),
    });

    let dkim: Vec<serde_json::Value> = r
        .dkim
        .iter()
        .map(|o| {
            let (result, error) = dkim_name(o.result());
            let (domain, selector) = o
                .signature()
                .map(|s| (s.d.clone(), s.s.clone()))
                .unwrap_or_default();
            json!({ "result": result, "domain": domain, "selector": selector, "error": error })
        })
        .collect();
    if r.dkim.is_empty() {
        sentences.push("No DKIM signature.".into());
    } else {
        let list: Vec<String> = dkim
            .iter()
            .map(|d| {
                format!(
                    "{} for d={} s={}",
                    d["result"].as_str().unwrap_or(""),
                    d["domain"].as_str().unwrap_or(""),
                    d["selector"].as_str().unwrap_or("")
                )
            })
            .collect();
        sentences.push(format!("DKIM: {}.", list.join("; ")));
    }

    let arc = match r.arc {
        None => json!({ "result": "none", "sets": 0 }),
        Some(None) => {
            json!({ "result": "temperror", "error": "no DNS answer within the check's budget" })
        }
        Some(Some(a)) => {
            let (result, error) = dkim_name(a.result());
            sentences.push(format!("ARC chain of {} set(s): {result}.", a.sets().len()));
            json!({ "result": result, "sets": a.sets().len(), "error": error })
        }
    };

    let mut decisions = Vec::new();
    let dmarc_facts = match r.dmarc {
        None => {
            sentences.push("DMARC: none (the message has no single From domain).".into());
            json!({ "result": "none", "policy": "none", "domain": null, "aligned_by": [] })
        }
        Some(d) => {
            let (result, error) = dmarc_name(&d.result());
            let policy = policy_name(d.policy());
            let mut aligned_by = Vec::new();
            if d.spf_result() == &DmarcResult::Pass {
                aligned_by.push("spf");
            }
            if d.dkim_result() == &DmarcResult::Pass {
                aligned_by.push("dkim");
            }
            let domain = d.domain().to_string();
            let vouch = arc_vouch(ctx.settings, r.arc.and_then(|a| a.as_ref()), &domain);
            let action = dmarc_decision(
                ctx,
                d,
                &domain,
                policy,
                vouch.as_deref(),
                &mut sentences,
                &mut decisions,
            );
            if result == "pass" {
                sentences.push(format!(
                    "DMARC pass for {domain}: aligned by {}.",
                    aligned_by.join(" and ")
                ));
            }
            json!({
                "result": result,
                "policy": policy,
                "domain": domain,
                "aligned_by": aligned_by,
                "spf_alignment": dmarc_name(d.spf_result()).0,
                "dkim_alignment": dmarc_name(d.dkim_result()).0,
                "error": error,
                "action": action,
            })
        }
    };

    // Forged results first out, then ours on top.
    let removal = if r.forged > 0 {
        format!(
            "Removed {} Authentication-Results header(s) claiming our authserv-id {authserv_id}: they came with the message, not from us.",
            r.forged
        )
    } else {
        format!(
            "Authentication-Results headers claiming our authserv-id {authserv_id} are removed (none came with this message)."
        )
    };
    decisions.insert(
        0,
        Decision::new(
            Scope::Message,
            Action::remove_authentication_results(authserv_id),
            Explanation::new(NAME, "forged_results", removal),
        ),
    );
    decisions.insert(
        1,
        Decision::new(
            Scope::Message,
            Action::add_header(AUTHENTICATION_RESULTS, r.header.clone()),
            Explanation::new(NAME, "results", sentences.join(" ")),
        ),
    );
    let sealed = ctx.settings.arc_seal.as_ref().map(|seal| {
        // The chain the message arrived with, as verified here: a seal says cv=pass only
        // after a verified chain; no answer in time is not sealed over (a cv=fail would
        // condemn the chain for every later hop).
        let chain = match r.arc {
            Some(Some(a)) if a.sets().is_empty() => Ok("none"),
            Some(Some(a)) if matches!(a.result(), DkimResult::Pass) => Ok("pass"),
            Some(Some(_)) => Ok("fail"),
            Some(None) => Err("the ARC chain could not be verified in time"),
            // Not verified: no ARC set came with the message.
            None if r.parsed => Ok("none"),
            None => Err("the message could not be parsed"),
        };
        match chain {
            Ok(chain) => {
                decisions.push(Decision::new(
                    Scope::Message,
                    Action::Edit(palisade_policy::Edit::ArcSeal {
                        domain: seal.domain.clone(),
                        selector: seal.selector.clone(),
                        chain: chain.into(),
                        results: r.header.clone(),
                    }),
                    Explanation::new(
                        NAME,
                        "arc_seal",
                        format!(
                            "Sealed with ARC as {} (selector {}, chain {chain}).",
                            seal.domain, seal.selector
                        ),
                    ),
                ));
                json!({ "domain": seal.domain, "selector": seal.selector, "chain": chain })
            }
            Err(why) => json!({ "domain": seal.domain, "skipped": why }),
        }
    });

    Findings {
        facts: json!({
            "status": "checked",
            "authserv_id": authserv_id,
            "spf": {
                "result": spf_result,
                "domain": r.spf.domain(),
                "identity": r.spf_identity,
                "explanation": r.spf.explanation(),
            },
            "dkim": dkim,
            "dmarc": dmarc_facts,
            "arc": arc,
            "arc_seal": sealed,
            "header": r.header,
            "forged_removed": r.forged,
            "parsed": r.parsed,
        }),
        decisions,
        ..Default::default()
    }
}

/// The trusted ARC sealer that vouches for the message's DMARC before it changed the message
/// (RFC 8617 section 7.2): the chain verifies, the newest seal's `d=` is one of
/// `trusted_arc_sealers`, and that hop's ARC-Authentication-Results has exactly one DMARC
/// result, `pass`, for `from_domain` (the From domain DMARC failed for here).
fn arc_vouch(
    settings: &Authentication,
    arc: Option<&ArcOutput<'_>>,
    from_domain: &str,
) -> Option<String> {
    let a = arc?;
    if a.result() != &DkimResult::Pass {
        return None;
    }
    let newest = a.sets().iter().max_by_key(|s| s.seal.header.i)?;
    let sealer = &newest.seal.header.d;
    if !settings.arc_sealer_trusted(sealer) {
        return None;
    }
    aar_dmarc_pass(newest.results.value, from_domain).then(|| sealer.to_ascii_lowercase())
}

/// The result specifications (`method=result prop=value …`) of an Authentication-Results
/// value (RFC 8601): comments removed, quoted strings kept whole (a `;` or `dmarc=pass`
/// inside one is text, not a result), the instance tag and the authserv-id left out.
fn aar_results(value: &[u8]) -> Vec<Vec<String>> {
    let text = String::from_utf8_lossy(value);
    let mut specs: Vec<Vec<String>> = vec![Vec::new()];
    let mut token = String::new();
    let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
    let end_token = |token: &mut String, specs: &mut Vec<Vec<String>>| {
        if !token.is_empty() {
            specs.last_mut().expect("one").push(std::mem::take(token));
        }
    };
    for c in text.chars() {
        if escaped {
            escaped = false;
            if depth == 0 {
                token.push(c);
            }
            continue;
        }
        match c {
            '\\' if quoted || depth > 0 => escaped = true,
            '"' if depth == 0 => {
                quoted = !quoted;
                token.push(c);
            }
            _ if quoted => token.push(c),
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            ';' => {
                end_token(&mut token, &mut specs);
                specs.push(Vec::new());
            }
            c if c.is_whitespace() => end_token(&mut token, &mut specs),
            c => token.push(c),
        }
    }
    end_token(&mut token, &mut specs);
    // `i=N; authserv-id [version]; results…`
    specs
        .into_iter()
        .skip(2)
        .filter(|s| !s.is_empty())
        .collect()
}

/// Whether an ARC-Authentication-Results value records exactly one DMARC result, `pass`, and
/// it is for `from_domain` (`header.from`).
fn aar_dmarc_pass(value: &[u8], from_domain: &str) -> bool {
    let dmarc: Vec<Vec<String>> = aar_results(value)
        .into_iter()
        .filter(|s| {
            s[0].split_once('=')
                .is_some_and(|(m, _)| m.eq_ignore_ascii_case("dmarc"))
        })
        .collect();
    let [spec] = dmarc.as_slice() else {
        return false;
    };
    let result_pass = spec[0]
        .split_once('=')
        .is_some_and(|(_, r)| r.eq_ignore_ascii_case("pass"));
    let want = from_domain.trim_end_matches('.');
    let same_from = spec[1..].iter().any(|p| {
        p.split_once('=').is_some_and(|(k, v)| {
            k.eq_ignore_ascii_case("header.from")
                && v.trim_matches('"')
                    .trim_end_matches('.')
                    .eq_ignore_ascii_case(want)
        })
    });
    result_pass && same_from
}

/// What the DMARC result asks of us, as decisions; returns the action name for the facts
/// (`none`, `reject`, `quarantine`, `monitor`, `override`, `arc_override`, `not_enforced`).
fn dmarc_decision(
    ctx: &Context<'_>,
    d: &DmarcOutput,
    domain: &str,
    policy: &str,
    arc_vouch: Option<&str>,
    sentences: &mut Vec<String>,
    decisions: &mut Vec<Decision>,
) -> &'static str {
    let result = d.result();
    match &result {
        DmarcResult::Pass | DmarcResult::None => {
            if result == DmarcResult::None {
                sentences.push(format!("DMARC: {domain} publishes no DMARC policy."));
            }
            return "none";
        }
        DmarcResult::TempError(_) => {
            sentences.push(format!(
                "DMARC for {domain} could not be evaluated (a DNS lookup failed: temperror); not enforced."
            ));
            return "not_enforced";
        }
        DmarcResult::PermError(_) => {
            sentences.push(format!(
                "DMARC for {domain} could not be evaluated (permerror: its record is unusable); not enforced."
            ));
            return "not_enforced";
        }
        DmarcResult::Fail(_) => {}
    }
    let failed = format!(
        "The message failed DMARC for its From domain {domain} (neither SPF nor DKIM passed aligned with it), which publishes p={policy}."
    );
    let reject = || {
        Action::reject(Reply::new(
            550,
            "5.7.1",
            format!(
                "Message refused: it fails the DMARC policy (p=reject) of its From domain {}",
                super::printable_line(domain, 200)
            ),
        ))
    };
    let quarantine = || {
        Action::quarantine(format!(
            "dmarc: {} p={policy}",
            super::printable_line(domain, 200)
        ))
    };
    let (action, rule): (Option<Action>, &str) = match d.policy() {
        Policy::Reject => match ctx.settings.dmarc_reject {
            DmarcRejectAction::Reject => (Some(reject()), "reject"),
            DmarcRejectAction::Quarantine => (Some(quarantine()), "quarantine"),
            DmarcRejectAction::Monitor => (Some(reject()), "monitor"),
        },
        Policy::Quarantine => match ctx.settings.dmarc_quarantine {
            DmarcQuarantineAction::Quarantine => (Some(quarantine()), "quarantine"),
            DmarcQuarantineAction::Monitor => (Some(quarantine()), "monitor"),
        },
        Policy::None | Policy::Unspecified => (None, "none"),
    };
    let Some(action) = action else {
        sentences.push(format!("{failed} Nothing is enforced for p=none."));
        return "none";
    };
    if ctx.settings.dmarc_overridden(domain) {
        let s = format!(
            "{failed} {domain} is in authentication.dmarc_overrides: the failure is only recorded."
        );
        sentences.push(s.clone());
        decisions.push(
            Decision::new(
                Scope::Message,
                action,
                Explanation::new(NAME, "dmarc_override", s),
            )
            .monitored(),
        );
        return "override";
    }
    if let Some(sealer) = arc_vouch {
        let s = format!(
            "{failed} The ARC chain verifies and its newest seal is by {sealer}, a trusted ARC sealer (authentication.trusted_arc_sealers), which recorded dmarc=pass before it changed the message: the failure is only recorded."
        );
        sentences.push(s.clone());
        decisions.push(
            Decision::new(
                Scope::Message,
                action,
                Explanation::new(NAME, "arc_override", s),
            )
            .monitored(),
        );
        return "arc_override";
    }
    let (s, monitored) = match rule {
        "reject" => (
            format!("{failed} Refused (authentication.dmarc_reject = \"reject\")."),
            false,
        ),
        "quarantine" if d.policy() == Policy::Reject => (
            format!("{failed} Quarantined (authentication.dmarc_reject = \"quarantine\")."),
            false,
        ),
        "quarantine" => (
            format!("{failed} Quarantined (authentication.dmarc_quarantine = \"quarantine\")."),
            false,
        ),
        _ => (
            format!("{failed} Monitor mode: recorded, not enforced."),
            true,
        ),
    };
    sentences.push(s.clone());
    let decision = Decision::new(
        Scope::Message,
        action,
        Explanation::new(NAME, format!("dmarc_{policy}"), s),
    );
    decisions.push(if monitored {
        decision.monitored()
    } else {
        decision
    });
    rule
}

#[cfg(test)]
mod tests;
