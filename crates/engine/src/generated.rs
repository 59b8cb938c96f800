//! Messages the engine writes itself (bounces, quarantine digests): spooled like received
//! mail — the content file fsync'd before the caller commits the [`NewMessage`] this returns —
//! from the null sender, to one recipient, never bounced.

use palisade_spool::{Batch, Body, MessageKind, NewMessage, NewRecipient, Notify, Origin};

use crate::state::Shared;

/// What a generated message is, besides its content.
#[derive(Debug, Clone)]
pub(crate) struct Generated {
    pub kind: MessageKind,
    pub smtputf8: bool,
    pub recipient: String,
    /// The recipient's route key.
    pub route: String,
    /// With angle brackets, for tracking.
    pub message_id: String,
    pub subject: String,
    pub from_header: String,
}

/// Writes `content` as spool file `id` (fsync'd) and returns the queue entry to commit. A
/// file whose entry is never committed is removed by recovery (or by the caller).
pub(crate) async fn spool(
    shared: &Shared,
    id: String,
    content: &[u8],
    g: Generated,
) -> Result<NewMessage, String> {
    let cfg = shared.config();
    let mut file = shared.spool.create(&id).map_err(|e| e.to_string())?;
    file.write(content).await.map_err(|e| e.to_string())?;
    let spooled = file.finish().await.map_err(|e| e.to_string())?;
    let now = palisade_store::now_unix();
    Ok(NewMessage {
        id,
        received_at: now,
        expires_at: now + cfg.delivery.max_lifetime_secs as i64,
        sender: String::new(),
        size: spooled.size,
        sha256: spooled.sha256,
        kind: g.kind,
        smtputf8: g.smtputf8,
        body: Some(Body::EightBitMime),
        envid: None,
        ret: None,
        recipients: vec![NewRecipient {
            address: g.recipient,
            route: g.route,
            notify: Some(Notify {
                never: true,
                ..Default::default()
            }),
            orcpt: None,
            artifact: 0,
        }],
        artifacts: vec![],
        origin: Origin {
            listener: "local".into(),
            client_ip: "127.0.0.1".into(),
            client_helo: cfg.system.hostname.clone(),
            tls: None,
            auth_user: None,
        },
        message_id: Some(g.message_id),
        subject: Some(g.subject),
        from_header: Some(g.from_header),
        verdict: None,
        status: None,
    })
}

/// Commits `batch`, whose `accepted` are messages written by [`spool`], and hands them to the
/// queue runner; when the commit fails their content files go.
pub(crate) async fn commit(shared: &Shared, batch: Batch) -> Result<(), String> {
    let messages = batch.accepted.clone();
    if let Err(e) = shared.spool.commit(batch).await {
        for m in &messages {
            shared.spool.remove_content(&m.id);
        }
        return Err(e.to_string());
    }
    for m in &messages {
        shared.runner().submit(crate::outbound::queued_from_new(m));
    }
    Ok(())
}

/// Spools and commits one notice from the gateway (`id` is its queue id, `content` the whole
/// message) to `to`: the confirmation and policy notices.
pub(crate) async fn notice(
    shared: &Shared,
    id: &str,
    content: &[u8],
    to: &str,
    subject: &str,
) -> Result<(), String> {
    let cfg = shared.config();
    let msg = spool(
        shared,
        id.to_string(),
        content,
        Generated {
            kind: MessageKind::Mail,
            smtputf8: !to.is_ascii(),
            recipient: to.to_string(),
            route: crate::route_for(&cfg, to),
            message_id: format!("<{id}.notice@{}>", cfg.system.hostname),
            subject: subject.to_string(),
            from_header: cfg.digest_from(),
        },
    )
    .await?;
    commit(
        shared,
        Batch {
            accepted: vec![msg],
            ..Default::default()
        },
    )
    .await
}
