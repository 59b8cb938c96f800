//! Sender confirmation (a `confirm` rule): the message is held (quarantine reason
//! `confirmation: …`, expiring after `filter.confirmation_hours`) and its sender gets a notice
//! with a signed link (`<digest link base>/confirm/<token>`, the digest key under its own
//! purpose, `Purpose::Confirm`, naming the entry and the sender) to a console page without
//! login, where the sender sends it (released to every recipient it is held for) or cancels
//! it (deleted); the engine checks the token again and uses it up in that transaction
//! (`spool::quarantine::confirm_from_link`). Nobody answering: the expiry sweep discards it and
//! the sender is told (`discarded`).

use std::sync::Arc;

use palisade_spool::admin::Requester;
use palisade_spool::notice::{self, Notice};
use palisade_spool::quarantine::{CONFIRMATION, DigestLink, Released};
use palisade_spool::{HeldRecipient, NewQuarantine, QuarantineEntry, Spool};
use palisade_store::digest::{Claims, DigestKey, Purpose};

use crate::state::Shared;

/// A message held for its sender's confirmation, as its notice needs it.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    id: String,
    sender: String,
    recipients: Vec<String>,
    subject: Option<String>,
    reasons: Vec<String>,
    expires_at: i64,
}

impl Held {
    /// The entry when it is held for confirmation and has a sender to ask.
    pub(crate) fn of_new(q: &NewQuarantine) -> Option<Held> {
        Held::of(
            &q.id,
            &q.sender,
            &q.reason,
            &q.recipients,
            &q.subject,
            q.explanations.as_ref(),
            q.expires_at,
        )
    }

    pub(crate) fn of_entry(e: &QuarantineEntry) -> Option<Held> {
        Held::of(
            &e.id,
            &e.sender,
            &e.reason,
            &e.recipients,
            &e.subject,
            e.explanations.as_ref(),
            e.expires_at,
        )
    }

    fn of(
        id: &str,
        sender: &str,
        reason: &str,
        recipients: &[HeldRecipient],
        subject: &Option<String>,
        explanations: Option<&serde_json::Value>,
        expires_at: i64,
    ) -> Option<Held> {
        (reason.starts_with(CONFIRMATION) && !sender.is_empty()).then(|| Held {
            id: id.to_string(),
            sender: sender.to_string(),
            recipients: recipients.iter().map(|r| r.address.clone()).collect(),
            subject: subject.clone(),
            reasons: palisade_store::mail::explanation_sentences(explanations, "rules"),
            expires_at,
        })
    }
}

/// Sends the notices of `held` in the background: the link to confirm, or (`discarded`) word
/// that nobody did. A notice that cannot be sent is logged; the entry stays held (an operator
/// can still release it) or is gone.
pub(crate) fn spawn_notices(shared: Arc<Shared>, held: Vec<Held>, discarded: bool) {
    if held.is_empty() {
        return;
    }
    tokio::spawn(async move {
        for h in held {
            if let Err(e) = send_notice(&shared, &h, discarded).await {
                tracing::error!(event = "confirm.notice_failed", quarantine_id = %h.id, error = %e);
            }
        }
    });
}

async fn send_notice(shared: &Arc<Shared>, h: &Held, discarded: bool) -> Result<(), String> {
    let cfg = shared.config();
    let data = shared.data.clone();
    let key = tokio::task::spawn_blocking(move || DigestKey::load_or_create(&data.digest_key()))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("link key: {e}"))?
        .0;
    let id = Spool::new_id();
    let from = cfg.digest_from();
    let n = Notice {
        hostname: &cfg.system.hostname,
        from: &from,
        to: &h.sender,
        notice_id: &id,
        subject: h.subject.as_deref(),
        recipients: &h.recipients,
        reasons: &h.reasons,
        now: palisade_store::now_unix(),
        expires_at: h.expires_at,
    };
    let (content, subject) = if discarded {
        (notice::discarded(&n), "Not sent")
    } else {
        let token = key.sign_for(
            Purpose::Confirm,
            &Claims {
                quarantine_id: h.id.clone(),
                recipient: h.sender.clone(),
                expires_at: h.expires_at,
            },
        );
        let link = format!("{}/confirm/{token}", cfg.digest_link_base());
        (notice::confirmation(&n, &link), "Confirm before it is sent")
    };
    crate::generated::notice(shared, &id, &content, &h.sender, subject).await?;
    tracing::info!(event = if discarded { "confirm.discarded_notice" } else { "confirm.notice" },
        quarantine_id = %h.id, queue_id = %id, rcpt = %h.sender);
    Ok(())
}

/// The sender's answer through a confirmation link: the token is checked again (signature,
/// purpose, expiry, the entry), then the message is released to all its held recipients
/// (`send`) or deleted; either uses the link up.
pub(crate) fn answer(
    shared: &Shared,
    token: &str,
    send: bool,
    source: &str,
) -> Result<Option<Released>, String> {
    let key = DigestKey::load(&shared.data.digest_key()).map_err(|e| e.to_string())?;
    let claims = key
        .verify_for(Purpose::Confirm, token, palisade_store::now_unix())
        .map_err(|e| e.to_string())?;
    let actor = format!("sender:{}", claims.recipient);
    palisade_spool::quarantine::confirm_from_link(
        &shared.data,
        &claims.quarantine_id,
        DigestLink {
            recipient: &claims.recipient,
            token,
        },
        send,
        Requester {
            actor: &actor,
            source,
        },
    )
    .map_err(|e| e.to_string())
}
