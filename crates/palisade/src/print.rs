//! Human-readable output of the operational subcommands (`--json` prints the records instead).

use palisade_store::AuditEntry;
use palisade_store::format_unix;
use palisade_store::mail::{QueuedMessage, TrackedEvent, TrackedMessage};

pub fn queue(msgs: &[QueuedMessage]) {
    if msgs.is_empty() {
        println!("queue is empty");
        return;
    }
    for m in msgs {
        let sender = if m.sender.is_empty() { "<>" } else { &m.sender };
        println!(
            "{}  {}  {:>9}  {}",
            m.id,
            format_unix(m.received_at),
            m.size,
            sender
        );
        for r in &m.recipients {
            let when = if r.state == "queued" {
                format!("next {}", format_unix(r.next_attempt))
            } else {
                String::new()
            };
            println!(
                "    {:<9} {:<40} attempts {:<3} {}  {}",
                r.state,
                r.address,
                r.attempts,
                when,
                r.last_error.as_deref().unwrap_or("")
            );
        }
    }
    println!("{} message(s)", msgs.len());
}

pub fn tracked(m: &TrackedMessage) {
    let sender = if m.sender.is_empty() { "<>" } else { &m.sender };
    println!(
        "{}  {}  {:<9}  from {} to {}  [{} {}{}{}]  size {}  msgid {}  subject {:?}",
        m.queue_id,
        format_unix(m.received_at),
        m.status,
        sender,
        m.rcpts.join(","),
        m.listener,
        m.client_ip,
        m.tls
            .as_deref()
            .map(|t| format!(" {t}"))
            .unwrap_or_default(),
        m.auth_user
            .as_deref()
            .map(|u| format!(" auth {u}"))
            .unwrap_or_default(),
        m.size,
        m.message_id.as_deref().unwrap_or("-"),
        m.subject.as_deref().unwrap_or("")
    );
}

pub fn events(events: &[TrackedEvent]) {
    for e in events {
        println!(
            "    {}  {:<9} {} {} {}",
            format_unix(e.ts),
            e.event,
            e.rcpt.as_deref().unwrap_or(""),
            e.remote.as_deref().unwrap_or(""),
            e.reply.as_deref().or(e.detail.as_deref()).unwrap_or("")
        );
    }
}

pub fn audit(entries: &[AuditEntry]) {
    for e in entries {
        println!(
            "{:>6}  {}  {:<18} {:<14} {:<20} {}",
            e.seq,
            format_unix(e.ts),
            e.actor,
            e.source,
            e.action,
            e.target
        );
    }
}
