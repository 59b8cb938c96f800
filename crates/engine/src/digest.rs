//! The quarantine digest (`[digest]`): once a day, each recipient in our inbound domains with
//! newly held mail gets a list of it with a signed, expiring, single-use release link per
//! entry (`palisade_store::digest`), served by the console.
//!
//! The engine owns the spool, so it sends them: a digest is a generated message
//! (`generated::spool`), committed in one transaction with the `digest_sent` rows of the
//! entries it lists — a restart never lists an entry twice, and a crash before the commit
//! lists it again next time. The scheduled run happens at the first check at or after
//! `digest.hour` (UTC) each day, recorded in `digest_run`; an operator can send at once
//! (control request `digest`, `palisade quarantine digest --now`).
//!
//! Entries that a check in `digest.exclude_checks` explained (malware, dangerous attachments,
//! uninspectable mail) are never listed: recipients get no link that would release them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use palisade_spool::digest::{self as compose, DigestEntry, DigestInput};
use palisade_spool::{Batch, MessageKind, QuarantineEntry, QuarantineState, Spool};
use palisade_store::Config;
use palisade_store::digest::{Claims, DigestKey};
use palisade_store::mail::DigestSent;
use serde::Serialize;

use crate::state::Shared;

/// How often the scheduler looks at the clock.
const CHECK_INTERVAL: Duration = Duration::from_secs(60);

/// What one run sent.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Digest messages queued.
    pub digests: usize,
    /// Entries listed in them.
    pub entries: usize,
    /// The digests' queue ids, by recipient.
    pub queued: Vec<(String, String)>,
}

/// One recipient's digest, before it is written.
#[derive(Debug, Clone)]
pub struct Pending {
    /// As the entries were held for it.
    pub recipient: String,
    /// Newest first.
    pub entries: Vec<QuarantineEntry>,
}

/// The digests a run would send now: per covered recipient, the held entries not yet listed
/// to them and not excluded. `only`: that recipient alone. Blocking (reads `mail.db`).
pub fn pending(
    db: &palisade_store::MailDb,
    cfg: &Config,
    only: Option<&str>,
) -> Result<Vec<Pending>, palisade_store::StoreError> {
    let held = db.quarantine_list(Some(QuarantineState::Held), None, u32::MAX)?;
    let listed = db.digest_listed()?;
    let protected = protected_rules(cfg);
    let mut by_rcpt: BTreeMap<String, Pending> = BTreeMap::new();
    for entry in held {
        for r in &entry.recipients {
            let lower = r.address.to_ascii_lowercase();
            if !cfg.digest_covers(&r.address)
                || only.is_some_and(|o| !o.eq_ignore_ascii_case(&r.address))
                || listed.contains(&(entry.id.clone(), lower.clone()))
                || excluded(&entry, &r.address, &cfg.digest.exclude_checks, &protected)
            {
                continue;
            }
            by_rcpt
                .entry(lower)
                .or_insert_with(|| Pending {
                    recipient: r.address.clone(),
                    entries: Vec::new(),
                })
                .entries
                .push(entry.clone());
        }
    }
    Ok(by_rcpt.into_values().collect())
}

/// The rules whose holds only an operator releases, whatever `exclude_checks` says: data-loss
/// prevention (a rule reading the dlp check), the encryption hold and sender confirmation.
/// A recipient must never be able to release what the organisation's policy kept in.
fn protected_rules(cfg: &Config) -> Vec<String> {
    use palisade_store::config::RuleAction;
    cfg.filter
        .rules
        .iter()
        .filter(|r| {
            r.reads().contains(&"dlp")
                || matches!(r.action, RuleAction::Encrypt | RuleAction::Confirm)
        })
        .map(|r| r.name.clone())
        .collect()
}

/// Whether a check in `exclude`, or a rule in `protected`, explained this recipient's hold
/// (or, with no per-recipient explanation recorded, anyone's); holds for encryption or
/// confirmation are never offered, even if their rule is gone since.
fn excluded(
    entry: &QuarantineEntry,
    recipient: &str,
    exclude: &[String],
    protected: &[String],
) -> bool {
    if entry.reason.starts_with("encryption pending:") || entry.reason.starts_with("confirmation:")
    {
        return true;
    }
    let Some(serde_json::Value::Array(per)) = &entry.explanations else {
        return false;
    };
    let said = |v: &serde_json::Value| -> Vec<(String, String)> {
        let text = |x: &serde_json::Value, k: &str| {
            x.get(k)
                .and_then(|s| s.as_str())
                .unwrap_or_default()
                .to_string()
        };
        v.get("explanations")
            .and_then(|e| e.as_array())
            .map(|a| {
                a.iter()
                    .map(|x| (text(x, "stage"), text(x, "rule")))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mine: Vec<&serde_json::Value> = per
        .iter()
        .filter(|p| {
            p.get("recipient")
                .and_then(|r| r.as_str())
                .is_some_and(|r| r.eq_ignore_ascii_case(recipient))
        })
        .collect();
    let considered: Vec<&serde_json::Value> = if mine.is_empty() {
        per.iter().collect()
    } else {
        mine
    };
    considered
        .iter()
        .flat_map(|p| said(p))
        .any(|(stage, rule)| {
            exclude.contains(&stage) || (stage == "rules" && protected.contains(&rule))
        })
}

/// Sends the digests due now (`only`: to that recipient alone). Each is committed with the
/// entries it lists and handed to the queue runner.
pub(crate) async fn send(shared: &Arc<Shared>, only: Option<String>) -> Result<Summary, String> {
    let cfg = shared.config();
    let data = shared.data.clone();
    let key = tokio::task::spawn_blocking(move || DigestKey::load_or_create(&data.digest_key()))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("digest key: {e}"))?
        .0;
    let s = shared.clone();
    let c = cfg.clone();
    let pending = tokio::task::spawn_blocking(move || {
        let db = s.spool.db().lock().expect("lock");
        pending(&db, &c, only.as_deref())
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;

    let mut summary = Summary::default();
    let base = cfg.digest_link_base();
    let from = cfg.digest_from();
    let max = cfg.digest.max_entries as usize;
    for p in pending {
        let now = palisade_store::now_unix();
        let expires_at = now + cfg.digest.link_valid_hours as i64 * 3600;
        let listed: Vec<&QuarantineEntry> = p.entries.iter().take(max).collect();
        let entries: Vec<DigestEntry> = listed
            .iter()
            .map(|e| {
                let token = key.sign(&Claims {
                    quarantine_id: e.id.clone(),
                    recipient: p.recipient.clone(),
                    expires_at,
                });
                DigestEntry {
                    received_at: e.received_at,
                    sender: e.from_header.clone().unwrap_or_else(|| e.sender.clone()),
                    subject: e.subject.clone(),
                    reason: e.reason.clone(),
                    link: format!("{base}/digest/release/{token}"),
                }
            })
            .collect();
        let id = Spool::new_id();
        let content = compose::build(&DigestInput {
            hostname: &cfg.system.hostname,
            from: &from,
            to: &p.recipient,
            digest_id: &id,
            entries: &entries,
            more: p.entries.len() - listed.len(),
            link_valid_hours: cfg.digest.link_valid_hours,
            now,
        });
        let msg = crate::generated::spool(
            shared,
            id.clone(),
            &content,
            crate::generated::Generated {
                kind: MessageKind::Mail,
                smtputf8: !p.recipient.is_ascii(),
                recipient: p.recipient.clone(),
                route: crate::route_for(&cfg, &p.recipient),
                message_id: format!("<{id}.digest@{}>", cfg.system.hostname),
                subject: compose::subject(p.entries.len()),
                from_header: from.clone(),
            },
        )
        .await?;
        let batch = Batch {
            accepted: vec![msg.clone()],
            digest_sent: listed
                .iter()
                .map(|e| DigestSent {
                    quarantine_id: e.id.clone(),
                    recipient: p.recipient.clone(),
                    digest_id: id.clone(),
                })
                .collect(),
            ..Default::default()
        };
        crate::generated::commit(shared, batch)
            .await
            .map_err(|e| format!("digest to {}: {e}", p.recipient))?;
        tracing::info!(event = "digest.queued", queue_id = %id, rcpt = %p.recipient,
            entries = listed.len(), not_listed = p.entries.len() - listed.len());
        summary.digests += 1;
        summary.entries += listed.len();
        summary.queued.push((p.recipient.clone(), id));
    }
    Ok(summary)
}

/// The scheduler: with `digest.enabled`, sends the day's digests at the first check at or
/// after `digest.hour` (UTC), once a day (recorded in `mail.db`, so a restart does not send
/// them again).
pub(crate) fn spawn_scheduler(shared: Arc<Shared>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(CHECK_INTERVAL).await;
            if shared.is_shutting_down() {
                return;
            }
            let cfg = shared.config();
            if !cfg.digest.enabled {
                continue;
            }
            let now = time::OffsetDateTime::now_utc();
            if now.hour() < cfg.digest.hour {
                continue;
            }
            let day = now.date().to_string();
            let s = shared.clone();
            let d = day.clone();
            let ran = tokio::task::spawn_blocking(move || {
                s.spool.db().lock().expect("lock").digest_ran_on(&d)
            })
            .await;
            match ran {
                Ok(Ok(false)) => {}
                Ok(Ok(true)) => continue,
                Ok(Err(e)) => {
                    tracing::error!(event = "digest.failed", error = %e);
                    continue;
                }
                Err(e) => {
                    tracing::error!(event = "digest.failed", error = %e);
                    continue;
                }
            }
            match send(&shared, None).await {
                Ok(sum) => {
                    tracing::info!(event = "digest.sent", day = %day, digests = sum.digests,
                        entries = sum.entries);
                    let s = shared.clone();
                    let r = tokio::task::spawn_blocking(move || {
                        s.spool
                            .db()
                            .lock()
                            .expect("lock")
                            .digest_mark_run(&day, palisade_store::now_unix())
                    })
                    .await;
                    if let Ok(Err(e)) = r {
                        tracing::error!(event = "digest.failed", error = %e);
                    }
                }
                // Tried again at the next check.
                Err(e) => tracing::error!(event = "digest.failed", error = %e),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(explanations: serde_json::Value) -> QuarantineEntry {
        QuarantineEntry {
            id: "Q".into(),
            queue_id: "Q".into(),
            received_at: 0,
            expires_at: 0,
            sender: String::new(),
            recipients: vec![],
            reason: String::new(),
            explanations: Some(explanations),
            size: 0,
            sha256: vec![],
            smtputf8: false,
            body: None,
            envid: None,
            ret: None,
            listener: String::new(),
            client_ip: String::new(),
            subject: None,
            from_header: None,
            message_id: None,
            state: QuarantineState::Held,
            updated_at: 0,
            released_as: None,
            score: None,
        }
    }

    #[test]
    fn entries_explained_by_an_excluded_check_are_not_offered() {
        let exclude = vec!["antivirus".to_string()];
        let e = entry(json!([
            {"recipient": "a@h.test", "explanations": [{"stage": "rules", "rule": "x"}]},
            {"recipient": "b@h.test", "explanations": [{"stage": "antivirus", "rule": "eicar"}]},
        ]));
        assert!(!excluded(&e, "A@h.test", &exclude, &[]));
        assert!(excluded(&e, "b@h.test", &exclude, &[]));
        // Nothing recorded for this recipient: anyone's explanation counts.
        assert!(excluded(&e, "c@h.test", &exclude, &[]));
        assert!(!excluded(&entry(json!([])), "a@h.test", &exclude, &[]));
        // A DLP rule's hold is the operator's, whatever exclude_checks says.
        assert!(excluded(&e, "a@h.test", &[], &["x".to_string()]));
        let mut held = entry(json!([]));
        held.reason = "encryption pending: patient identifiers".into();
        assert!(excluded(&held, "a@h.test", &[], &[]));
    }
}
