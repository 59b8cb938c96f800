//! The `dkim` check: DKIM signing of the organisation's outbound mail (`[[dkim.sign]]`).
//!
//! For outbound mail (trusted networks, authenticated clients) whose From domain is a
//! signing domain (or its subdomain: relaxed DMARC alignment), the check decides an
//! [`Edit::DkimSign`] per selector of that domain. The engine applies it after every other
//! edit, when it writes the copy that leaves ([`super::edit::write_edited`]), so that the
//! signature covers exactly what is sent. The keys ([`DkimKeys`]) are read from
//! `DIR/keys/dkim/` when the pipeline is built (at start and on every configuration change);
//! a key that cannot be read is reported (`dkim.key_unusable`) and that selector does not
//! sign, so mail still flows, unsigned, and `palisade check` says why.
//!
//! Signed: relaxed/relaxed canonicalization; From, To, Cc, Subject, Date, Message-ID,
//! Reply-To, In-Reply-To, References, MIME-Version, Content-Type, Content-Transfer-Encoding,
//! List-Unsubscribe and List-Unsubscribe-Post, those present.

use std::collections::HashMap;
use std::sync::Arc;

use mail_auth::arc::{ArcSealer, Set};
use mail_auth::common::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::{Header, HeaderWriter};
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use mail_auth::{ArcOutput, AuthenticatedMessage, AuthenticationResults, DkimResult};
use palisade_policy::{Action, Decision, Direction, Explanation, Scope};
use palisade_store::DataDir;
use palisade_store::config::Config;
use palisade_store::dkim::{Algorithm, PrivateKey};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer};
use serde_json::json;

use super::{Check, CheckFuture, Findings, Subject};

pub const NAME: &str = "dkim";

const SIGNED_HEADERS: &[&str] = &[
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// Fields an ARC-Message-Signature covers (those present), as major sealers choose them.
const ARC_SIGNED_HEADERS: &[&str] = &[
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "DKIM-Signature",
];

/// The longest Authentication-Results value sealed: the ARC-Authentication-Results field is
/// written on one line, and a line longer than 998 octets would be folded (and the seal
/// broken) by the next MTA.
const MAX_SEALED_RESULTS: usize = 900;

/// The signing keys in use, by (domain, selector), lower case.
#[derive(Default)]
pub struct DkimKeys {
    keys: HashMap<(String, String), (Algorithm, DkimSigner<DkimKey, Done>)>,
    /// The ARC sealer of `[authentication.arc_seal]`.
    sealer: Option<((String, String), ArcSealer<DkimKey, Done>)>,
    /// (domain, selector, why) of the configured keys that could not be read.
    unusable: Vec<(String, String, String)>,
}

impl std::fmt::Debug for DkimKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkimKeys")
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .field("unusable", &self.unusable)
            .field("sealer", &self.sealer.as_ref().map(|(k, _)| k))
            .finish()
    }
}

fn id(domain: &str, selector: &str) -> (String, String) {
    (
        domain.trim_end_matches('.').to_ascii_lowercase(),
        selector.to_ascii_lowercase(),
    )
}

impl DkimKeys {
    /// Reads the key of every `[[dkim.sign]]` entry (none without a data directory).
    pub fn load(cfg: &Config, data: Option<&DataDir>) -> DkimKeys {
        let mut out = DkimKeys::default();
        for s in &cfg.dkim.sign {
            let (domain, selector) = id(&s.domain, &s.selector);
            let loaded = match data {
                None => Err("no data directory to read keys from".to_string()),
                Some(data) => palisade_store::dkim::load(data, &domain, &selector).and_then(|k| {
                    let signer = DkimSigner::from_key(to_signing_key(&k)?)
                        .domain(domain.clone())
                        .selector(selector.clone())
                        .headers(SIGNED_HEADERS.iter().copied())
                        .header_canonicalization(Canonicalization::Relaxed)
                        .body_canonicalization(Canonicalization::Relaxed);
                    Ok((k.algorithm, signer))
                }),
            };
            match loaded {
                Ok((alg, key)) => {
                    out.keys.insert((domain, selector), (alg, key));
                }
                Err(e) => {
                    tracing::error!(event = "dkim.key_unusable", domain = %domain,
                        selector = %selector, error = %e,
                        "this DKIM key does not sign: mail of its domain leaves without its signature");
                    out.unusable.push((domain, selector, e));
                }
            }
        }
        if let Some(seal) = &cfg.authentication.arc_seal {
            let (domain, selector) = id(&seal.domain, &seal.selector);
            let loaded = match data {
                None => Err("no data directory to read keys from".to_string()),
                Some(data) => palisade_store::dkim::load(data, &domain, &selector).and_then(|k| {
                    Ok(ArcSealer::from_key(to_signing_key(&k)?)
                        .domain(domain.clone())
                        .selector(selector.clone())
                        .headers(ARC_SIGNED_HEADERS.iter().copied())
                        .header_canonicalization(Canonicalization::Relaxed)
                        .body_canonicalization(Canonicalization::Relaxed))
                }),
            };
            match loaded {
                Ok(sealer) => out.sealer = Some(((domain, selector), sealer)),
                Err(e) => {
                    tracing::error!(event = "arc.key_unusable", domain = %domain,
                        selector = %selector, error = %e,
                        "this ARC sealing key is not usable: inbound mail leaves unsealed");
                    out.unusable.push((domain, selector, e));
                }
            }
        }
        out
    }

    /// Why the ARC sealing key of `[authentication.arc_seal]` cannot seal, if it cannot.
    pub fn sealing_problem(&self, domain: &str, selector: &str) -> Option<String> {
        match &self.sealer {
            Some((k, _)) if *k == id(domain, selector) => None,
            _ => Some(
                self.unusable(domain, selector)
                    .unwrap_or("the key is not loaded")
                    .to_string(),
            ),
        }
    }

    /// A new ARC set for `message` (see [`super::edit::Signer::arc_set`]).
    pub fn seal(
        &self,
        domain: &str,
        selector: &str,
        chain: &str,
        results: &str,
        message: &[u8],
    ) -> Result<String, String> {
        let Some((key, sealer)) = self
            .sealer
            .as_ref()
            .filter(|(k, _)| *k == id(domain, selector))
        else {
            return Err(format!("no usable ARC sealing key {selector} for {domain}"));
        };
        // One line, single spaces: the field is written as given and must canonicalize (relaxed)
        // to the same bytes that were signed.
        let results: String = results.split_whitespace().collect::<Vec<_>>().join(" ");
        if results.len() > MAX_SEALED_RESULTS {
            return Err(format!(
                "the authentication results are {} bytes, more than the {MAX_SEALED_RESULTS} a one-line ARC-Authentication-Results holds",
                results.len()
            ));
        }
        let msg = AuthenticatedMessage::parse(message).ok_or("the message cannot be parsed")?;
        let arc = prior_chain(&msg, chain)?;
        let ar = AuthenticationResults::new(&results);
        let set = sealer
            .seal(&msg, &ar, &arc)
            .map_err(|e| format!("ARC sealing as {} (selector {}): {e}", key.0, key.1))?;
        Ok(set.to_header())
    }

    pub fn algorithm(&self, domain: &str, selector: &str) -> Option<Algorithm> {
        self.keys.get(&id(domain, selector)).map(|(a, _)| *a)
    }

    fn unusable(&self, domain: &str, selector: &str) -> Option<&str> {
        let (d, s) = id(domain, selector);
        self.unusable
            .iter()
            .find(|(ud, us, _)| *ud == d && *us == s)
            .map(|(_, _, e)| e.as_str())
    }

    /// The `DKIM-Signature` field (with its CRLF) of `message` for `domain` and `selector`.
    pub fn sign(&self, domain: &str, selector: &str, message: &[u8]) -> Result<String, String> {
        let (d, s) = id(domain, selector);
        let Some((_, signer)) = self.keys.get(&(d.clone(), s.clone())) else {
            return Err(format!("no usable DKIM key {s} for {d}"));
        };
        let sig = signer
            .sign(message)
            .map_err(|e| format!("DKIM signing with {s} for {d}: {e}"))?;
        Ok(sig.to_header())
    }
}

fn to_signing_key(k: &PrivateKey) -> Result<DkimKey, String> {
    match k.algorithm {
        Algorithm::Ed25519 => Ed25519Key::from_pkcs8_maybe_unchecked_der(&k.der)
            .map(DkimKey::Ed25519)
            .map_err(|e| format!("unusable Ed25519 key: {e}")),
        Algorithm::Rsa => {
            let der = if k.is_pkcs8() {
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(k.der.as_slice()))
            } else {
                PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(k.der.as_slice()))
            };
            RsaKey::<Sha256>::from_key_der(der)
                .map(DkimKey::Rsa)
                .map_err(|e| format!("unusable RSA key: {e}"))
        }
    }
}

/// The ARC sets `msg` arrived with, in instance order, and how their validation ended
/// (`chain`, as the authentication check recorded it), as mail-auth's sealer takes them. A
/// chain that is structurally broken (missing fields, instances not 1..n, more than 50) or
/// whose last seal says `cv=fail` is not sealed over (RFC 8617 section 5.1.2).
fn prior_chain<'x>(
    msg: &'x AuthenticatedMessage<'x>,
    chain: &str,
) -> Result<ArcOutput<'x>, String> {
    let n = msg.ams_headers.len();
    if msg.has_arc_errors || n != msg.as_headers.len() || n != msg.aar_headers.len() || n > 49 {
        return Err("the ARC chain the message arrived with is broken: not sealed".into());
    }
    let result = match chain {
        "pass" => DkimResult::Pass,
        "none" if n == 0 => DkimResult::None,
        _ => DkimResult::Fail(mail_auth::Error::Arc(mail_auth::arc::ArcError::BrokenChain)),
    };
    let mut out = ArcOutput::default().with_result(result);
    for i in 1..=n as u32 {
        let ams = msg.ams_headers.iter().find(|h| h.header.i == i);
        let seal = msg.as_headers.iter().find(|h| h.header.i == i);
        let aar = msg.aar_headers.iter().find(|h| h.header.i == i);
        let (Some(ams), Some(seal), Some(aar)) = (ams, seal, aar) else {
            return Err(format!("the ARC chain has no complete set {i}: not sealed"));
        };
        out = out.with_set(Set {
            signature: Header {
                name: ams.name,
                value: ams.value,
                header: &ams.header,
            },
            seal: Header {
                name: seal.name,
                value: seal.value,
                header: &seal.header,
            },
            results: Header {
                name: aar.name,
                value: aar.value,
                header: &aar.header,
            },
        });
    }
    if !out.can_be_sealed() {
        return Err("the last ARC seal says cv=fail: the chain is not sealed further".into());
    }
    Ok(out)
}

impl super::edit::Signer for DkimKeys {
    fn dkim_signature(
        &self,
        domain: &str,
        selector: &str,
        message: &[u8],
    ) -> Result<String, String> {
        self.sign(domain, selector, message)
    }

    fn arc_set(
        &self,
        domain: &str,
        selector: &str,
        chain: &str,
        results: &str,
        message: &[u8],
    ) -> Result<String, String> {
        self.seal(domain, selector, chain, results, message)
    }
}

pub struct DkimCheck {
    cfg: palisade_store::config::Dkim,
    keys: Arc<DkimKeys>,
}

impl DkimCheck {
    pub fn new(cfg: &Config, keys: Arc<DkimKeys>) -> DkimCheck {
        DkimCheck {
            cfg: cfg.dkim.clone(),
            keys,
        }
    }

    fn findings(&self, subject: &Subject) -> Findings {
        if subject.envelope.direction != Direction::Outbound {
            return Findings {
                skipped: Some("only outbound mail is signed".into()),
                ..Default::default()
            };
        }
        let headers = subject.view.headers();
        let from_domain = match headers.from.as_slice() {
            [one] => one
                .address
                .as_deref()
                .and_then(|a| a.rsplit_once('@'))
                .map(|(_, d)| d.to_ascii_lowercase()),
            _ => None,
        };
        let Some(from_domain) = from_domain else {
            return Findings {
                facts: json!({ "status": "unsigned", "reason": "the message has no single From address" }),
                ..Default::default()
            };
        };
        let signers = self.cfg.signers_for(&from_domain);
        if signers.is_empty() {
            return Findings {
                facts: json!({
                    "status": "unsigned",
                    "from_domain": from_domain,
                    "reason": format!("no [[dkim.sign]] entry for {from_domain} or a parent domain"),
                }),
                ..Default::default()
            };
        }
        let mut f = Findings::default();
        let mut signatures = Vec::new();
        for s in signers {
            let (domain, selector) = id(&s.domain, &s.selector);
            match self.keys.algorithm(&domain, &selector) {
                Some(alg) => {
                    f.decisions.push(Decision::new(
                        Scope::Message,
                        Action::dkim_sign(domain.clone(), selector.clone()),
                        Explanation::new(
                            NAME,
                            "sign",
                            format!(
                                "Signed with DKIM for {domain} (selector {selector}, {}): the From domain is {from_domain}.",
                                alg.signing_name()
                            ),
                        ),
                    ));
                    signatures.push(json!({
                        "domain": domain, "selector": selector,
                        "algorithm": alg.signing_name(), "status": "signed",
                    }));
                }
                None => {
                    let why = self
                        .keys
                        .unusable(&domain, &selector)
                        .unwrap_or("the key is not loaded")
                        .to_string();
                    f.contributions.push(Explanation::new(
                        NAME,
                        "key_unusable",
                        format!("Not signed with {selector} for {domain}: {why}."),
                    ));
                    signatures.push(json!({
                        "domain": domain, "selector": selector,
                        "status": "key_unusable", "error": why,
                    }));
                }
            }
        }
        let signed = !f.decisions.is_empty();
        f.facts = json!({
            "status": if signed { "signed" } else { "unsigned" },
            "from_domain": from_domain,
            "signatures": signatures,
        });
        f
    }
}

impl Check for DkimCheck {
    fn name(&self) -> &str {
        NAME
    }

    fn run(&self, subject: Subject) -> CheckFuture {
        let f = self.findings(&subject);
        Box::pin(async move { Ok(f) })
    }
}

/// What DNS publishes for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// The record is there and carries this key.
    Yes,
    /// There is a DKIM record, with another key (or a revoked one): the record found.
    Differs(String),
    /// No record at `<selector>._domainkey.<domain>`.
    Missing,
    /// DNS did not answer (the message).
    Unknown(String),
}

impl Published {
    pub fn name(&self) -> &'static str {
        match self {
            Published::Yes => "published",
            Published::Differs(_) => "differs",
            Published::Missing => "missing",
            Published::Unknown(_) => "unknown",
        }
    }
}

/// Asks DNS (`[dns] nameservers`, else the system's resolver) whether `record` (as
/// `palisade_store::dkim::PrivateKey::dns_record` makes it) is published for the key.
pub async fn published(cfg: &Config, domain: &str, selector: &str, record: &str) -> Published {
    let Some(resolver) = crate::outbound::route::resolver(cfg) else {
        return Published::Unknown("no DNS resolver".into());
    };
    let name = format!("{selector}._domainkey.{}.", domain.trim_end_matches('.'));
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        resolver.txt_lookup(name.as_str()),
    )
    .await;
    let lookup = match answer {
        Err(_) => return Published::Unknown("no answer within 10 s".into()),
        Ok(Err(e)) if e.is_nx_domain() || e.is_no_records_found() => return Published::Missing,
        Ok(Err(e)) => return Published::Unknown(e.to_string()),
        Ok(Ok(l)) => l,
    };
    let want = tag(record, "p");
    let mut seen = None;
    for r in lookup.answers() {
        let hickory_resolver::proto::rr::RData::TXT(txt) = &r.data else {
            continue;
        };
        let text: String = txt
            .txt_data
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        if !text
            .replace(' ', "")
            .to_ascii_lowercase()
            .contains("v=dkim1")
            && !text.contains("p=")
        {
            continue;
        }
        if tag(&text, "p") == want
            && tag(&text, "k")
                .unwrap_or_else(|| "rsa".into())
                .eq_ignore_ascii_case(&tag(record, "k").unwrap_or_default())
        {
            return Published::Yes;
        }
        seen = Some(text);
    }
    match seen {
        Some(t) => Published::Differs(t),
        None => Published::Missing,
    }
}

/// Every key in `DIR/keys/dkim` and every `[[dkim.sign]]` entry without one: its record,
/// whether it signs, and (with `dns`) whether DNS publishes it, all lookups at once. For
/// `palisade dkim list` and the console (through the engine, the keys' owner).
pub async fn report(data: &DataDir, cfg: &Config, dns: bool) -> Vec<KeyReport> {
    let (d, c) = (data.clone(), cfg.clone());
    let mut rows = tokio::task::spawn_blocking(move || report_files(&d, &c))
        .await
        .unwrap_or_default();
    if dns {
        let mut lookups = tokio::task::JoinSet::new();
        for (i, r) in rows.iter().enumerate() {
            if let Some(record) = r.record.clone() {
                let (cfg, domain, selector) = (cfg.clone(), r.domain.clone(), r.selector.clone());
                lookups
                    .spawn(async move { (i, published(&cfg, &domain, &selector, &record).await) });
            }
        }
        while let Some(Ok((i, p))) = lookups.join_next().await {
            rows[i].dns_detail = match &p {
                Published::Differs(t) => Some(t.clone()),
                Published::Unknown(e) => Some(e.clone()),
                _ => None,
            };
            rows[i].dns = Some(p.name().to_string());
        }
    }
    rows
}

/// One row of [`report`]: the control protocol's type.
pub type KeyReport = palisade_control::engine::DkimKey;

fn report_files(data: &DataDir, cfg: &Config) -> Vec<KeyReport> {
    let signs = |domain: &str, selector: &str| {
        cfg.dkim.sign.iter().any(|s| {
            s.domain.trim_end_matches('.').eq_ignore_ascii_case(domain)
                && s.selector.eq_ignore_ascii_case(selector)
        })
    };
    let mut rows: Vec<KeyReport> = palisade_store::dkim::list(data)
        .into_iter()
        .map(|(domain, selector)| {
            let mut row = KeyReport {
                name: format!("{selector}._domainkey.{domain}"),
                signing: signs(&domain, &selector),
                ..Default::default()
            };
            match palisade_store::dkim::load(data, &domain, &selector) {
                Ok(k) => {
                    row.algorithm = Some(k.algorithm.signing_name().to_string());
                    match k.dns_record() {
                        Ok(r) => row.record = Some(r),
                        Err(e) => row.error = Some(e),
                    }
                }
                Err(e) => row.error = Some(e),
            }
            KeyReport {
                domain,
                selector,
                ..row
            }
        })
        .collect();
    for s in &cfg.dkim.sign {
        let domain = s.domain.trim_end_matches('.').to_ascii_lowercase();
        let selector = s.selector.to_ascii_lowercase();
        if !rows
            .iter()
            .any(|r| r.domain == domain && r.selector == selector)
        {
            rows.push(KeyReport {
                name: format!("{selector}._domainkey.{domain}"),
                domain,
                selector,
                signing: true,
                error: Some(
                    "configured in [[dkim.sign]] but there is no key file: it does not sign".into(),
                ),
                ..Default::default()
            });
        }
    }
    rows
}

/// The value of `name=` in a DKIM key record, white space removed.
fn tag(record: &str, name: &str) -> Option<String> {
    record.split(';').find_map(|t| {
        let (k, v) = t.split_once('=')?;
        (k.trim().eq_ignore_ascii_case(name))
            .then(|| v.chars().filter(|c| !c.is_whitespace()).collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_policy::Edit;

    #[test]
    fn record_tags_ignore_white_space_and_case() {
        let r = "v=DKIM1; K=ed25519; p=abc def\t+/=";
        assert_eq!(tag(r, "p").as_deref(), Some("abcdef+/="));
        assert_eq!(tag(r, "k").as_deref(), Some("ed25519"));
        assert_eq!(tag(r, "h"), None);
    }

    #[test]
    fn keys_sign_with_their_selector_and_missing_keys_leave_the_copy_unsigned() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        std::fs::create_dir_all(data.keys()).unwrap();
        let mut cfg = Config::default();
        for (sel, alg) in [("e1", Algorithm::Ed25519), ("r1", Algorithm::Rsa)] {
            let k = PrivateKey::generate(alg).unwrap();
            palisade_store::dkim::write_new(&data, "hospital.example", sel, &k).unwrap();
            cfg.dkim.sign.push(palisade_store::config::DkimSign {
                domain: "hospital.example".into(),
                selector: sel.into(),
            });
        }
        cfg.dkim.sign.push(palisade_store::config::DkimSign {
            domain: "hospital.example".into(),
            selector: "missing".into(),
        });
        let keys = DkimKeys::load(&cfg, Some(&data));
        assert_eq!(
            keys.algorithm("Hospital.Example", "E1"),
            Some(Algorithm::Ed25519)
        );
        assert_eq!(
            keys.algorithm("hospital.example", "r1"),
            Some(Algorithm::Rsa)
        );
        assert!(keys.unusable("hospital.example", "missing").is_some());
        let msg = b"From: a@hospital.example\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nbody\r\n";
        for sel in ["e1", "r1"] {
            let h = keys.sign("hospital.example", sel, msg).unwrap();
            assert!(h.starts_with("DKIM-Signature: "), "{h}");
            assert!(
                h.contains("d=hospital.example") && h.contains(&format!("s={sel}")),
                "{h}"
            );
            assert!(h.ends_with("\r\n"));
        }
        assert!(keys.sign("hospital.example", "missing", msg).is_err());
        // Applied last, over what else was edited; a failure leaves the copy unsigned.
        let edits = vec![
            Edit::DkimSign {
                domain: "hospital.example".into(),
                selector: "e1".into(),
            },
            Edit::AddHeader {
                name: "X-A".into(),
                value: "1".into(),
            },
            Edit::DkimSign {
                domain: "hospital.example".into(),
                selector: "missing".into(),
            },
        ];
        let message = super::super::edit::edited(msg, &edits);
        let mut out = super::super::edit::signatures(&message, &edits, Some(&keys));
        out.extend_from_slice(&message);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("DKIM-Signature: "), "{text}");
        assert_eq!(text.matches("DKIM-Signature:").count(), 1);
        assert!(
            text.contains("\r\nX-A: 1\r\nFrom: a@hospital.example"),
            "{text}"
        );
    }
}
