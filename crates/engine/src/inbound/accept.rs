//! After the checks accepted a message: turn the per-recipient verdict into what the spool
//! keeps — the delivered copies (one artifact per distinct set of header edits; the received
//! file itself when there are none), the quarantine copies, a DSN for refused recipients of a
//! trusted sender — and commit all of it, with the tracking record and every explanation, in
//! one batch before the 250 (the promise: every file fsync'd, then one transaction).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use palisade_policy::{Disposition, Edit, RecipientVerdict, Reply, Verdict};
use palisade_smtp_proto::{Body, Notify};
use palisade_spool::dsn::{self, DsnInput, FailedRecipient};
use palisade_spool::{
    Batch, Event, HeldRecipient, MessageKind, NewArtifact, NewMessage, NewQuarantine, NewRecipient,
    Origin, SpooledContent,
};

use super::session::{Session, Transaction, sender_string};
use crate::pipeline::{Evaluation, edit};

/// What to commit, and the files written for it.
pub(super) struct Plan {
    pub batch: Batch,
    /// The queued message (if any recipient is queued), for the queue runner.
    pub queued: Option<NewMessage>,
    /// A DSN for refused recipients, for the queue runner.
    pub dsn: Option<NewMessage>,
    /// Files written for this plan (removed if the commit fails).
    pub written: Vec<PathBuf>,
    /// Whether the received file (artifact 0) is kept; if not it goes after the commit.
    pub original_kept: bool,
}

/// The tracking line of one recipient's decision.
fn decision_detail(r: &RecipientVerdict) -> String {
    let mut s = match &r.disposition {
        Disposition::Quarantine { reason } => format!("quarantine ({reason})"),
        Disposition::Reject(reply) | Disposition::Tempfail(reply) => format!(
            "{} ({} {} {})",
            r.disposition.name(),
            reply.code,
            reply.enhanced,
            reply.text
        ),
        Disposition::Redirect { route } => format!("redirect to {route}"),
        d => d.name().to_string(),
    };
    for e in &r.explanations {
        let score = e.score.map(|x| format!(" {x:+}")).unwrap_or_default();
        s.push_str(&format!(
            "; {}/{}{}: {}",
            e.stage, e.rule, score, e.sentence
        ));
    }
    for m in &r.monitored {
        s.push_str(&format!(
            "; monitor {}/{}: {}",
            m.explanation.stage, m.explanation.rule, m.explanation.sentence
        ));
    }
    s
}

/// One tracking event per recipient whose fate a check decided or explained. A check that was
/// skipped (not applicable, e.g. authentication of outbound mail) explains nothing about it:
/// its reason stays in the verdict (`track_message.verdict`) without an event of its own.
pub(super) fn decision_events(id: &str, verdict: &Verdict) -> Vec<Event> {
    verdict
        .per_recipient
        .iter()
        .filter(|r| {
            !(r.disposition == Disposition::Deliver
                && r.explanations.iter().all(|e| e.rule == "skipped")
                && r.monitored.is_empty())
        })
        .map(|r| Event {
            queue_id: id.to_string(),
            event: "decision".into(),
            rcpt: Some(r.address.clone()),
            detail: decision_detail(r),
            status: None,
        })
        .collect()
}

/// What tracking keeps of the checks (`track_message.verdict`): the envelope they saw, every
/// check's outcome and the verdict. Compact JSON: the dashboard's queries rely on it.
pub(super) fn verdict_json(eval: &Evaluation) -> String {
    serde_json::json!({
        "envelope": eval.envelope.as_ref(),
        "checks": eval.outcomes,
        "verdict": eval.verdict,
    })
    .to_string()
}

impl Session {
    /// Writes every file the verdict needs and assembles the batch. `Err` is a local error
    /// (disk full, I/O): nothing was promised and the caller answers 4xx.
    pub(super) async fn plan(
        &self,
        id: &str,
        tx: &Transaction,
        content: &SpooledContent,
        eval: &Evaluation,
        tracking: &palisade_inspect::Tracking,
        signer: Arc<dyn edit::Signer>,
    ) -> Result<Plan, (std::io::Error, Vec<PathBuf>)> {
        let verdict: &Verdict = &eval.verdict;
        let spool = &self.shared.spool;
        let original = spool.content_path(id);
        let now = palisade_store::now_unix();
        let mut written: Vec<PathBuf> = Vec::new();
        macro_rules! tryw {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(e) => return Err((e, written)),
                }
            };
        }

        // Delivered copies, by distinct edits. Edits serialize deterministically.
        let key = |edits: &[Edit]| serde_json::to_string(edits).unwrap_or_default();
        let mut artifact_of: BTreeMap<String, u32> = BTreeMap::new();
        let mut artifacts: Vec<NewArtifact> = Vec::new();
        let mut recipients: Vec<NewRecipient> = Vec::new();
        let mut held: BTreeMap<(String, String), (Vec<Edit>, Vec<usize>)> = BTreeMap::new();
        let mut refused: Vec<(usize, Reply)> = Vec::new();
        let mut original_kept = false;
        for r in &verdict.per_recipient {
            let accepted = &tx.rcpts[r.index];
            match &r.disposition {
                Disposition::Deliver
                | Disposition::Redirect { .. }
                | Disposition::Encrypt { .. } => {
                    let k = key(&r.edits);
                    let n = match artifact_of.get(&k) {
                        Some(n) => *n,
                        None => {
                            let n = if r.edits.is_empty() {
                                original_kept = true;
                                artifacts.push(NewArtifact {
                                    n: 0,
                                    size: content.size,
                                    sha256: content.sha256.clone(),
                                });
                                0
                            } else {
                                let n = artifacts.iter().filter(|a| a.n > 0).count() as u32 + 1;
                                let mut f = tryw!(
                                    spool.create_artifact(id, n).map_err(std::io::Error::other)
                                );
                                written.push(spool.artifact_path(id, n));
                                tryw!(
                                    edit::write_edited(
                                        &original,
                                        &r.edits,
                                        Some(signer.clone()),
                                        &mut f
                                    )
                                    .await
                                );
                                let done = tryw!(f.finish().await);
                                artifacts.push(NewArtifact {
                                    n,
                                    size: done.size,
                                    sha256: done.sha256,
                                });
                                n
                            };
                            artifact_of.insert(k, n);
                            n
                        }
                    };
                    let route = match &r.disposition {
                        Disposition::Redirect { route } => route.clone(),
                        _ => accepted.route.clone(),
                    };
                    recipients.push(NewRecipient {
                        address: accepted.address.clone(),
                        route,
                        notify: accepted.notify,
                        orcpt: accepted.orcpt.clone(),
                        artifact: n,
                    });
                    for copy in &r.copies {
                        if recipients
                            .iter()
                            .any(|x| x.address.eq_ignore_ascii_case(copy))
                        {
                            continue;
                        }
                        recipients.push(NewRecipient {
                            address: copy.clone(),
                            route: crate::route_for(&self.cfg, copy),
                            notify: Some(Notify {
                                never: true,
                                ..Default::default()
                            }),
                            orcpt: None,
                            artifact: n,
                        });
                    }
                }
                Disposition::Quarantine { reason } => {
                    held.entry((key(&r.edits), reason.clone()))
                        .or_insert_with(|| (r.edits.clone(), Vec::new()))
                        .1
                        .push(r.index);
                }
                Disposition::HoldForConfirmation => {
                    // Sender confirmation comes with outbound DLP (issue 11); until then a
                    // held message waits in quarantine for an operator.
                    held.entry((key(&r.edits), "held for sender confirmation".into()))
                        .or_insert_with(|| (r.edits.clone(), Vec::new()))
                        .1
                        .push(r.index);
                }
                Disposition::Reject(reply) => refused.push((r.index, reply.clone())),
                // Tempfail never reaches here (the whole message was deferred); discard keeps
                // nothing.
                Disposition::Tempfail(_) | Disposition::Discard => {}
            }
        }

        // A copy with attachments stripped: the original, unedited, is kept in quarantine for
        // the recipients who got that copy, so an operator can release it to them.
        for r in &verdict.per_recipient {
            let stripped: Vec<String> = r
                .edits
                .iter()
                .flat_map(|e| match e {
                    Edit::StripParts { parts } => parts.iter().map(|p| p.summary()).collect(),
                    _ => Vec::new(),
                })
                .collect();
            if stripped.is_empty() || !r.disposition.keeps() {
                continue;
            }
            let reason = format!("attachment stripped: {}", stripped.join(", "));
            // Unedited, except that outbound mail keeps its DKIM signature: a release sends
            // it signed too.
            let signing: Vec<Edit> = r
                .edits
                .iter()
                .filter(|e| matches!(e, Edit::DkimSign { .. }))
                .cloned()
                .collect();
            held.entry((key(&signing), reason))
                .or_insert_with(|| (signing.clone(), Vec::new()))
                .1
                .push(r.index);
        }

        let origin: Origin = self.origin();
        let sender = sender_string(&tx.from);
        let retention = self.cfg.filter.quarantine_retention_days as i64 * 86400;
        let verdict_json = verdict_json(eval);
        // The spam check's score, kept with each held copy to filter the quarantine by.
        let spam_score = eval
            .outcomes
            .iter()
            .find(|o| o.name == crate::pipeline::spam::NAME)
            .and_then(|o| o.facts["score"].as_f64());
        let mut quarantined = Vec::new();
        for (k, ((_, reason), (edits, idxs))) in held.into_iter().enumerate() {
            // Quarantine ids are queue-id shaped (recovery recognises them): the message's
            // own id for the first entry, a fresh one for each further set of edits.
            let qid = if k == 0 {
                id.to_string()
            } else {
                palisade_spool::Spool::new_id()
            };
            let mut f = tryw!(spool.create_quarantine(&qid).map_err(std::io::Error::other));
            written.push(spool.quarantine_path(&qid));
            tryw!(edit::write_edited(&original, &edits, Some(signer.clone()), &mut f).await);
            let done = tryw!(f.finish().await);
            let explanations: Vec<serde_json::Value> = idxs
                .iter()
                .map(|&i| {
                    let r = &verdict.per_recipient[i];
                    serde_json::json!({
                        "recipient": r.address,
                        "action": r.disposition.name(),
                        "explanations": r.explanations,
                        "monitored": r.monitored,
                    })
                })
                .collect();
            quarantined.push(NewQuarantine {
                id: qid,
                queue_id: id.to_string(),
                received_at: now,
                expires_at: if reason.starts_with(palisade_spool::quarantine::CONFIRMATION) {
                    now + i64::from(self.cfg.filter.confirmation_hours) * 3600
                } else {
                    now + retention
                },
                sender: sender.clone(),
                recipients: idxs
                    .iter()
                    .map(|&i| {
                        let a = &tx.rcpts[i];
                        HeldRecipient {
                            address: a.address.clone(),
                            route: a.route.clone(),
                            notify: a.notify,
                            orcpt: a.orcpt.clone(),
                        }
                    })
                    .collect(),
                reason,
                explanations: Some(serde_json::Value::Array(explanations)),
                size: done.size,
                sha256: done.sha256,
                smtputf8: tx.params.smtputf8,
                body: tx.params.body,
                envid: tx.params.envid.clone(),
                ret: tx.params.ret,
                origin: origin.clone(),
                subject: tracking.subject.clone(),
                from_header: tracking.from.clone(),
                message_id: tracking.message_id.clone(),
                score: spam_score,
            });
        }

        // Refused recipients of an accepted message: a DSN only for our own senders
        // (decide() says so); inbound, silence — never backscatter.
        let mut dsn_msg = None;
        if verdict.dsn_for_refused && !refused.is_empty() && !sender.is_empty() {
            let original_bytes = tryw!(tokio::fs::read(&original).await);
            let failed: Vec<FailedRecipient> = refused
                .iter()
                .map(|(i, reply)| {
                    let a = &tx.rcpts[*i];
                    let diag = format!("{} {} {}", reply.code, reply.enhanced, reply.text);
                    FailedRecipient {
                        address: a.address.clone(),
                        orcpt: a.orcpt.clone(),
                        status: dsn::status_of(&diag, "5.7.1"),
                        diagnostic: diag,
                        remote: None,
                    }
                })
                .collect();
            let body = dsn::build(&DsnInput {
                reporting_host: &self.cfg.system.hostname,
                queue_id: id,
                arrival: now,
                sender: &sender,
                envid: tx.params.envid.as_deref(),
                ret_full: matches!(tx.params.ret, Some(palisade_smtp_proto::Ret::Full)),
                original: &original_bytes,
                failed: &failed,
            });
            let dsn_id = palisade_spool::Spool::new_id();
            let mut f = tryw!(spool.create(&dsn_id).map_err(std::io::Error::other));
            written.push(spool.content_path(&dsn_id));
            tryw!(f.write(&body).await);
            let done = tryw!(f.finish().await);
            let hostname = self.cfg.system.hostname.clone();
            dsn_msg = Some(NewMessage {
                id: dsn_id.clone(),
                received_at: now,
                expires_at: now + self.cfg.delivery.max_lifetime_secs as i64,
                sender: String::new(),
                size: done.size,
                sha256: done.sha256,
                kind: MessageKind::Dsn,
                smtputf8: tx.params.smtputf8,
                body: Some(Body::EightBitMime),
                envid: None,
                ret: None,
                recipients: vec![NewRecipient {
                    address: sender.clone(),
                    route: crate::route_for(&self.cfg, &sender),
                    notify: Some(Notify {
                        never: true,
                        ..Default::default()
                    }),
                    orcpt: None,
                    artifact: 0,
                }],
                artifacts: Vec::new(),
                origin: Origin {
                    listener: "local".into(),
                    client_ip: "127.0.0.1".into(),
                    client_helo: hostname.clone(),
                    tls: None,
                    auth_user: None,
                },
                message_id: Some(format!("<{dsn_id}.dsn@{hostname}>")),
                subject: Some("Undelivered Mail Returned to Sender".into()),
                from_header: Some(format!("MAILER-DAEMON@{hostname}")),
                verdict: None,
                status: None,
            });
        }

        let status = if !recipients.is_empty() {
            None
        } else if !quarantined.is_empty() {
            Some("quarantined".to_string())
        } else if !refused.is_empty() {
            Some("rejected".to_string())
        } else {
            Some("discarded".to_string())
        };
        let msg = NewMessage {
            id: id.to_string(),
            received_at: now,
            expires_at: now + self.cfg.delivery.max_lifetime_secs as i64,
            sender: sender.clone(),
            size: content.size,
            sha256: content.sha256.clone(),
            kind: MessageKind::Mail,
            smtputf8: tx.params.smtputf8,
            body: tx.params.body,
            envid: tx.params.envid.clone(),
            ret: tx.params.ret,
            recipients,
            artifacts,
            origin,
            message_id: tracking.message_id.clone(),
            subject: tracking.subject.clone(),
            from_header: tracking.from.clone(),
            verdict: Some(verdict_json),
            status,
        };
        let events = decision_events(id, verdict);
        let queued = (!msg.recipients.is_empty()).then(|| msg.clone());
        let mut accepted = vec![msg];
        if let Some(d) = &dsn_msg {
            accepted.push(d.clone());
        }
        Ok(Plan {
            batch: Batch {
                accepted,
                quarantined,
                events,
                incidents: crate::pipeline::dlp::incidents(eval, tracking.subject.as_deref()),
                recipient_domains: delivered_domains(eval),
                ..Default::default()
            },
            queued,
            dsn: dsn_msg,
            written,
            original_kept,
        })
    }
}

/// The domains an outbound message is delivered to (each once), for the recipient-domain
/// history the rules read (`first_mail_to_domain`, `lookalike_domain`).
fn delivered_domains(eval: &Evaluation) -> Vec<String> {
    if eval.envelope.direction != palisade_policy::Direction::Outbound {
        return Vec::new();
    }
    let set: std::collections::BTreeSet<String> = eval
        .verdict
        .per_recipient
        .iter()
        .filter(|r| {
            matches!(
                r.disposition,
                Disposition::Deliver | Disposition::Redirect { .. } | Disposition::Encrypt { .. }
            )
        })
        .filter_map(|r| eval.envelope.recipients.get(r.index))
        .filter_map(|r| palisade_store::mail::domain_of(&r.address))
        .collect();
    set.into_iter().collect()
}
