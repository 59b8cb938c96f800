//! The filter seam: what every message passes after its content is on disk and before the
//! engine answers the final dot (see ARCHITECTURE.md, "The filter seam").
//!
//! One [`MessageView`] is built per message (crate `inspect`, bounded by `[inspect]`); every
//! [`Check`] gets it with the [`Envelope`] and returns what it found as a
//! `policy::CheckOutcome`. Checks run concurrently, each under its own budget
//! (`filter.check.NAME.timeout_secs`) inside the message's budget (`filter.timeout_secs`); a
//! check that fails, panics or runs out of time gets its configured failure mode (tempfail by
//! default), never "clean". `policy::decide` then turns the outcomes into one verdict per
//! recipient and the one DATA reply. [`Pipeline::from_config`] builds the checks the
//! configuration asks for; the engine swaps the pipeline with the configuration on reload, and
//! tests build one with their own checks ([`Pipeline::with_checks`]).
//!
//! `palisade check` runs the same pipeline on files without queueing them (building the
//! [`Report`] itself; [`evaluate_file`] does the same for one file and is no longer called by it).

pub mod antivirus;
pub mod attachments;
pub mod authentication;
mod checks;
pub mod decryption;
pub mod dkim;
pub mod dlp;
pub mod domains;
pub mod edit;
pub mod encryption;
pub mod spam;

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use palisade_inspect::{Limits, MessageView};
use palisade_policy::{
    CheckOutcome, CheckStatus, DecideContext, Decision, Direction, Explanation, FailureMode,
    RecipientInfo, Verdict,
};
use palisade_store::{Config, DataDir};
use serde::Serialize;

pub use checks::{MimeCheck, RuleInputs, RulesCheck, rule_action_name};

/// One envelope recipient as the checks see it.
#[derive(Debug, Clone, Serialize)]
pub struct EnvelopeRecipient {
    pub address: String,
    /// The route key delivery uses (`maildir`, `mx:example.org`, …).
    pub route: String,
    /// RFC 3461 NOTIFY, as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orcpt: Option<String>,
}

/// Everything about how the message arrived: the same for every check.
#[derive(Debug, Clone, Serialize)]
pub struct Envelope {
    pub queue_id: String,
    /// `smtp`, `submission`, or `check` (`palisade check`).
    pub listener: String,
    /// Outbound when the client authenticated or is on a trusted network.
    pub direction: Direction,
    pub client_ip: IpAddr,
    /// The client's forward-confirmed reverse DNS name, if it has one and the lookup (started
    /// at connect, at most 5 s) finished before the checks started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// The reverse DNS lookup finished before the checks started (so `client_name: None`
    /// means the client has no forward-confirmed name, not that nobody knows yet).
    #[serde(default)]
    pub rdns_checked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub helo: Option<String>,
    /// TLS protocol and cipher, `None` for plaintext.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_user: Option<String>,
    /// The client is on `smtp.trusted_networks`.
    pub trusted: bool,
    /// The envelope sender; empty for the null sender `<>`.
    pub sender: String,
    pub recipients: Vec<EnvelopeRecipient>,
    /// What opening the message's S/MIME found (inbound mail that carries it); the content
    /// the checks see is already decrypted when `decryption` is `decrypted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crypto: Option<encryption::Unwrapped>,
}

impl Envelope {
    pub fn sender_trusted_or_authenticated(&self) -> bool {
        self.trusted || self.auth_user.is_some()
    }
}

/// What a completed check hands back (the orchestrator adds its name and status).
#[derive(Debug, Clone, Default)]
pub struct Findings {
    /// Set when the check chose not to run (not applicable, disabled): recorded as skipped.
    pub skipped: Option<String>,
    pub facts: serde_json::Value,
    pub contributions: Vec<Explanation>,
    pub decisions: Vec<Decision>,
}

/// What a check sees. Cheap to clone; a check that does heavy work moves a clone into
/// `spawn_blocking`.
#[derive(Clone)]
pub struct Subject {
    pub envelope: Arc<Envelope>,
    pub view: Arc<MessageView>,
    /// The message as received (the spool file), for checks that hand the raw message to
    /// another program (clamd). `None` when a test evaluates a view alone.
    pub content: Option<Arc<Path>>,
    /// The other checks' outcomes as they finish.
    pub others: Others,
}

pub type CheckFuture = Pin<Box<dyn Future<Output = Result<Findings, String>> + Send>>;

/// One filter check. `Err` is a failure (the configured failure mode applies); so is a panic
/// or running out of time.
pub trait Check: Send + Sync {
    fn name(&self) -> &str;
    fn run(&self, subject: Subject) -> CheckFuture;
}

/// A check with its budget and failure mode.
#[derive(Clone)]
pub struct Configured {
    pub check: Arc<dyn Check>,
    pub timeout: Duration,
    pub failure_mode: FailureMode,
}

/// The checks of one configuration revision.
pub struct Pipeline {
    checks: Vec<Configured>,
    /// All checks of one message together.
    budget: Duration,
    limits: Limits,
    /// The signing keys of the `dkim` check (read when the pipeline is built).
    dkim_keys: Arc<dkim::DkimKeys>,
    encryption: Arc<encryption::Encryption>,
    /// The `encryption` check is enabled: inbound S/MIME and OpenPGP are opened.
    opens_smime: bool,
}

/// The result of running the pipeline on one message.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// What the checks saw.
    #[serde(serialize_with = "serialize_arc")]
    pub envelope: Arc<Envelope>,
    /// In pipeline order.
    pub outcomes: Vec<CheckOutcome>,
    pub verdict: Verdict,
}

fn serialize_arc<S: serde::Serializer>(e: &Arc<Envelope>, s: S) -> Result<S::Ok, S::Error> {
    e.as_ref().serialize(s)
}

impl Pipeline {
    /// The checks `cfg` asks for, in order: `mime` (the view's limits and anomalies), then
    /// `rules` (the operator's `[[filter.rule]]`s), `antivirus` (with `[antivirus] enabled`),
    /// `attachments` (with `[attachments] enabled`, the default), `authentication` (with
    /// `[authentication] enabled`), `spam` (with `[spam] enabled`, the default; its Bayes
    /// statistics are `data`'s `bayes.db`, none without `data`), `dlp` (with `[dlp] enabled`),
    /// `encryption` (always; inbound S/MIME and OpenPGP are opened before the checks unless it
    /// is disabled),
    /// `dkim` (with signing domains). A check with
    /// `filter.check.NAME.enabled = false` is recorded as skipped.
    pub fn from_config(cfg: &Config, data: Option<&DataDir>) -> Pipeline {
        let f = &cfg.filter;
        let encryption = Arc::new(encryption::Encryption::from_config(cfg, data));
        let mut all: Vec<Arc<dyn Check>> = vec![
            Arc::new(MimeCheck::new(f.uninspectable)),
            Arc::new(
                RulesCheck::with_domains(
                    f.rules_with_groups(),
                    cfg.domains.iter().map(|d| d.name.clone()).collect(),
                    data,
                )
                .with_encryption(encryption.clone()),
            ),
        ];
        if cfg.antivirus.enabled
            && let Some(av) = antivirus::AntivirusCheck::from_config(&cfg.antivirus)
        {
            all.push(Arc::new(av));
        }
        if cfg.authentication.enabled {
            all.push(Arc::new(authentication::AuthenticationCheck::from_config(
                cfg,
            )));
        }
        all.push(Arc::new(decryption::DecryptionCheck::from_config(cfg)));
        if cfg.attachments.enabled {
            all.push(Arc::new(attachments::AttachmentsCheck::new(
                cfg.attachments.clone(),
            )));
        }
        if cfg.spam.enabled {
            all.push(Arc::new(spam::SpamCheck::from_config(cfg, data)));
        }
        if cfg.dlp.enabled {
            all.push(Arc::new(dlp::DlpCheck::from_config(cfg)));
        }
        let dkim_keys = Arc::new(dkim::DkimKeys::load(cfg, data));
        if !cfg.dkim.sign.is_empty() {
            all.push(Arc::new(dkim::DkimCheck::new(cfg, dkim_keys.clone())));
        }
        let checks = all
            .into_iter()
            .map(|check| {
                let s = f.settings(check.name());
                let check: Arc<dyn Check> = if s.enabled {
                    check
                } else {
                    Arc::new(Disabled(check.name().to_string()))
                };
                Configured {
                    check,
                    timeout: Duration::from_secs(s.timeout_secs),
                    failure_mode: s.failure_mode,
                }
            })
            .collect();
        Pipeline {
            checks,
            budget: Duration::from_secs(f.timeout_secs),
            limits: cfg.inspect.clone(),
            dkim_keys,
            encryption,
            opens_smime: f.settings("encryption").enabled,
        }
    }

    /// A pipeline of exactly these checks (tests, and checks not yet in the configuration).
    pub fn with_checks(checks: Vec<Configured>, budget: Duration, limits: Limits) -> Pipeline {
        Pipeline {
            checks,
            budget,
            limits,
            dkim_keys: Arc::default(),
            encryption: Arc::default(),
            opens_smime: false,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Opens inbound S/MIME and OpenPGP (see [`encryption::Encryption::open_inbound`]): `None` when the
    /// header section `head` does not announce any; else (the decrypted message, if the
    /// gateway decrypted it; what was found). CPU work: call off the async threads.
    pub fn open_inbound(
        &self,
        head: &[u8],
        read_all: impl FnOnce() -> std::io::Result<Vec<u8>>,
    ) -> std::io::Result<Option<(Option<Vec<u8>>, encryption::Unwrapped)>> {
        if !self.opens_smime || !encryption::looks_encrypted(head) {
            return Ok(None);
        }
        let raw = read_all()?;
        Ok(Some(self.encryption.open_inbound(&raw)))
    }

    /// What applies the `dkim` check's signatures and the `encrypt` action's S/MIME to the
    /// copies that leave.
    pub fn signer(&self) -> Arc<dyn edit::Signer> {
        Arc::new(Outgoing {
            dkim: self.dkim_keys.clone(),
            encryption: self.encryption.clone(),
        })
    }

    pub fn check_names(&self) -> Vec<String> {
        self.checks
            .iter()
            .map(|c| c.check.name().to_string())
            .collect()
    }

    /// Runs every check concurrently on one message and decides. `content` is the message's
    /// file as received.
    pub async fn evaluate(
        &self,
        envelope: Arc<Envelope>,
        view: Arc<MessageView>,
        content: Option<&Path>,
    ) -> Evaluation {
        let content: Option<Arc<Path>> = content.map(Arc::from);
        let started = tokio::time::Instant::now();
        let deadline = started + self.budget;
        // Every check's outcome is published the moment it is known, for checks that read
        // another's (spam reads authentication).
        let mut senders = Vec::with_capacity(self.checks.len());
        let mut receivers = HashMap::new();
        for c in &self.checks {
            let (tx, rx) = tokio::sync::watch::channel(None);
            senders.push(tx);
            receivers.insert(c.check.name().to_string(), rx);
        }
        let others = Others {
            outcomes: Arc::new(receivers),
        };
        let mut handles = Vec::with_capacity(self.checks.len());
        for (c, tx) in self.checks.iter().zip(senders) {
            let subject = Subject {
                envelope: envelope.clone(),
                view: view.clone(),
                content: content.clone(),
                others: others.clone(),
            };
            let fut = c.check.run(subject);
            let until = (started + c.timeout).min(deadline);
            let name = c.check.name().to_string();
            let (mode, timeout) = (c.failure_mode, c.timeout);
            let queue_id = envelope.queue_id.clone();
            // Each check is its own task: a panic is that check's failure, not the session's
            // (its sender is dropped unsent: readers see no outcome).
            let handle = tokio::spawn(async move {
                let result = tokio::time::timeout_at(until, fut).await;
                let outcome = Arc::new(outcome_of(name, mode, timeout, &queue_id, result));
                let _ = tx.send(Some(outcome.clone()));
                outcome
            });
            handles.push((c, handle));
        }
        let mut outcomes = Vec::with_capacity(handles.len());
        for (c, handle) in handles {
            let name = c.check.name().to_string();
            let mode = c.failure_mode;
            let outcome = match handle.await {
                Ok(outcome) => Arc::unwrap_or_clone(outcome),
                Err(join) => {
                    let error = if join.is_panic() {
                        "the check panicked".to_string()
                    } else {
                        "the check was cancelled".to_string()
                    };
                    tracing::error!(event = "filter.check_failed", check = %name,
                        queue_id = %envelope.queue_id, error = %error, mode = %mode);
                    let mut o = CheckOutcome::new(name, CheckStatus::Failed { error, mode });
                    if let CheckStatus::Failed { error, .. } = &o.status {
                        o.facts = serde_json::json!({ "status": "error", "error": error });
                    }
                    o
                }
            };
            outcomes.push(outcome);
        }
        let recipients: Vec<RecipientInfo> = envelope
            .recipients
            .iter()
            .map(|r| RecipientInfo::new(r.address.clone()))
            .collect();
        let ctx = DecideContext {
            direction: envelope.direction,
            sender_trusted_or_authenticated: envelope.sender_trusted_or_authenticated(),
            // The rules check turns `encrypt` into S/MIME, enforced TLS or a hold per
            // recipient (`encryption::Route`): what reaches decide() has a way to go.
            encryption_available: true,
        };
        let verdict = palisade_policy::decide(&recipients, &outcomes, &ctx);
        Evaluation {
            envelope,
            outcomes,
            verdict,
        }
    }
}

/// One check's result as its outcome: completed (its findings), skipped, failed or timed out
/// (with its failure mode). Every outcome's facts say `status`; a failed check says `error`.
fn outcome_of(
    name: String,
    mode: FailureMode,
    timeout: Duration,
    queue_id: &str,
    result: Result<Result<Findings, String>, tokio::time::error::Elapsed>,
) -> CheckOutcome {
    match result {
        Ok(Ok(Findings {
            skipped: Some(reason),
            ..
        })) => CheckOutcome::new(name, CheckStatus::Skipped { reason }),
        Ok(Ok(f)) => {
            let mut o = CheckOutcome::new(name, CheckStatus::Completed);
            o.facts = f.facts;
            o.contributions = f.contributions;
            o.decisions = f.decisions;
            o
        }
        Ok(Err(error)) => {
            tracing::warn!(event = "filter.check_failed", check = %name,
                queue_id = %queue_id, error = %error, mode = %mode);
            let facts = serde_json::json!({ "status": "error", "error": &error });
            CheckOutcome::new(name, CheckStatus::Failed { error, mode }).with_facts(facts)
        }
        Err(_elapsed) => {
            tracing::warn!(event = "filter.check_timeout", check = %name,
                queue_id = %queue_id, mode = %mode);
            CheckOutcome::new(name, CheckStatus::TimedOut { mode })
                .with_facts(serde_json::json!({ "status": "error",
                    "error": format!("no answer within {} s", timeout.as_secs()) }))
        }
    }
}

/// The outcomes of the other checks of the same message, each available once that check has
/// finished. A check that waits for another must also be able to do without it: the other may
/// be missing from the pipeline, disabled, fail, or not finish within the waiting check's own
/// budget.
#[derive(Clone, Default)]
pub struct Others {
    outcomes: Arc<HashMap<String, tokio::sync::watch::Receiver<Option<Arc<CheckOutcome>>>>>,
}

impl Others {
    /// Waits for check `name` to finish; `None` when there is no such check in the pipeline or
    /// it panicked.
    pub async fn outcome(&self, name: &str) -> Option<Arc<CheckOutcome>> {
        let mut rx = self.outcomes.get(name)?.clone();
        let got = rx.wait_for(Option::is_some).await.ok()?;
        got.clone()
    }
}

/// Text from outside (a file name, a domain, clamd's answer), fit for one line of an SMTP
/// reply, a header or a note: printable ASCII (anything else becomes `?`), at most `max`
/// characters.
pub(crate) fn printable_line(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .take(max)
        .collect()
}

/// A check switched off in the configuration: recorded as skipped.
struct Disabled(String);

impl Check for Disabled {
    fn name(&self) -> &str {
        &self.0
    }
    fn run(&self, _subject: Subject) -> CheckFuture {
        Box::pin(async {
            Ok(Findings {
                skipped: Some("disabled in the configuration".into()),
                ..Default::default()
            })
        })
    }
}

/// Builds the view of a spooled file off the async threads (it is CPU work, bounded by the
/// limits' time budget).
pub async fn view_of(path: &Path, limits: &Limits) -> std::io::Result<MessageView> {
    let path = path.to_path_buf();
    let limits = limits.clone();
    tokio::task::spawn_blocking(move || MessageView::from_file(&path, &limits))
        .await
        .map_err(std::io::Error::other)?
}

/// What `palisade check` prints: the message's structure, every check's outcome, and the
/// decision per recipient.
#[derive(Debug, Serialize)]
pub struct Report {
    pub envelope: Envelope,
    pub headers: serde_json::Value,
    pub parts: serde_json::Value,
    pub limits: serde_json::Value,
    pub anomalies: serde_json::Value,
    pub uninspectable: Option<String>,
    /// One object per check name: status, facts, contributions, decisions.
    pub checks: serde_json::Map<String, serde_json::Value>,
    pub decisions: Vec<RecipientDecision>,
    pub smtp_reply: serde_json::Value,
    pub score: f64,
}

/// One recipient's line of a [`Report`].
#[derive(Debug, Serialize)]
pub struct RecipientDecision {
    pub recipient: String,
    pub action: String,
    /// The whole disposition (`{"action":"quarantine","reason":…}`).
    pub disposition: palisade_policy::Disposition,
    pub edits: Vec<palisade_policy::Edit>,
    pub copies: Vec<String>,
    pub explanations: Vec<Explanation>,
    pub monitored: Vec<Decision>,
}

impl Report {
    pub fn new(envelope: Envelope, view: &MessageView, eval: Evaluation) -> Report {
        let v = serde_json::to_value(view).unwrap_or_default();
        let take = |k: &str| v.get(k).cloned().unwrap_or(serde_json::Value::Null);
        let mut checks = serde_json::Map::new();
        for o in &eval.outcomes {
            checks.insert(o.name.clone(), serde_json::to_value(o).unwrap_or_default());
        }
        let decisions = eval
            .verdict
            .per_recipient
            .iter()
            .map(|r| RecipientDecision {
                recipient: r.address.clone(),
                action: r.disposition.name().to_string(),
                disposition: r.disposition.clone(),
                edits: r.edits.clone(),
                copies: r.copies.clone(),
                explanations: r.explanations.clone(),
                monitored: r.monitored.clone(),
            })
            .collect();
        Report {
            envelope,
            headers: take("headers"),
            parts: take("parts"),
            limits: take("limits"),
            anomalies: take("anomalies"),
            uninspectable: view.uninspectable().map(str::to_string),
            checks,
            decisions,
            smtp_reply: serde_json::to_value(&eval.verdict.smtp_reply).unwrap_or_default(),
            score: eval.verdict.score,
        }
    }
}

/// Runs `path` through the pipeline of `cfg` as if it had arrived with `envelope`, without
/// queueing or sending anything (`palisade check`).
pub async fn evaluate_file(
    cfg: &Config,
    data: Option<&DataDir>,
    envelope: Envelope,
    path: &Path,
) -> std::io::Result<Report> {
    let pipeline = Pipeline::from_config(cfg, data);
    let view = Arc::new(view_of(path, pipeline.limits()).await?);
    let eval = pipeline
        .evaluate(Arc::new(envelope.clone()), view.clone(), Some(path))
        .await;
    Ok(Report::new(envelope, &view, eval))
}

#[cfg(test)]
mod tests;

/// The engine's keys for the copies that leave: DKIM and ARC, S/MIME.
struct Outgoing {
    dkim: Arc<dkim::DkimKeys>,
    encryption: Arc<encryption::Encryption>,
}

impl edit::Signer for Outgoing {
    fn dkim_signature(
        &self,
        domain: &str,
        selector: &str,
        message: &[u8],
    ) -> Result<String, String> {
        self.dkim.dkim_signature(domain, selector, message)
    }

    fn arc_set(
        &self,
        domain: &str,
        selector: &str,
        chain: &str,
        results: &str,
        message: &[u8],
    ) -> Result<String, String> {
        self.dkim.arc_set(domain, selector, chain, results, message)
    }

    fn smime_protect(&self, partner: &str, message: &[u8]) -> Result<Vec<u8>, String> {
        self.encryption.protect(partner, message)
    }

    fn pgp_protect(&self, partner: &str, message: &[u8]) -> Result<Vec<u8>, String> {
        self.encryption.pgp_protect(partner, message)
    }
}
