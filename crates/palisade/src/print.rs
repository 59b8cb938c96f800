//! Human-readable output of the operational subcommands (`--json` prints the records instead).

use palisade_store::AuditEntry;
use palisade_store::format_unix;
use palisade_store::mail::{
    QuarantineEntry, QueuedMessage, RcptState, TrackedEvent, TrackedMessage,
};

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
            let when = if r.state == RcptState::Queued {
                format!("next {}", format_unix(r.next_attempt))
            } else {
                String::new()
            };
            println!(
                "    {:<9} {:<40} attempts {:<3} {}  {}",
                r.state.as_str(),
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

fn sender(s: &str) -> &str {
    if s.is_empty() { "<>" } else { s }
}

pub fn quarantine(entries: &[QuarantineEntry]) {
    if entries.is_empty() {
        println!("no quarantined messages");
        return;
    }
    for e in entries {
        let to: Vec<&str> = e.recipients.iter().map(|r| r.address.as_str()).collect();
        println!(
            "{}  {}  {:<8}  {:>9}  from {} to {}",
            e.id,
            format_unix(e.received_at),
            e.state.as_str(),
            e.size,
            sender(&e.sender),
            to.join(",")
        );
        println!(
            "    {}  subject {:?}",
            e.reason,
            e.subject.as_deref().unwrap_or("")
        );
    }
    println!("{} message(s)", entries.len());
}

pub fn quarantine_entry(e: &QuarantineEntry, headers: &Result<String, String>) {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    println!("id           {}", e.id);
    println!("state        {}", e.state.as_str());
    if let Some(q) = &e.released_as {
        println!("released as  {q}");
    }
    println!("queue id     {} (as received)", e.queue_id);
    println!("received     {}", format_unix(e.received_at));
    println!("expires      {}", format_unix(e.expires_at));
    println!("updated      {}", format_unix(e.updated_at));
    println!(
        "from         {} [{} {}]",
        sender(&e.sender),
        e.listener,
        e.client_ip
    );
    println!("size         {}", e.size);
    println!("subject      {}", opt(&e.subject));
    println!("From:        {}", opt(&e.from_header));
    println!("Message-ID:  {}", opt(&e.message_id));
    println!("reason       {}", e.reason);
    println!("recipients");
    for r in &e.recipients {
        println!(
            "    {:<40} route {}{}",
            r.address,
            r.route,
            r.notify
                .map(|n| format!("  NOTIFY={}", n.to_param()))
                .unwrap_or_default()
        );
    }
    if let Some(x) = &e.explanations {
        println!("explanations");
        let pretty = serde_json::to_string_pretty(x).unwrap_or_default();
        for line in pretty.lines() {
            println!("    {line}");
        }
    }
    match headers {
        Ok(h) => {
            println!("headers");
            for line in h.lines() {
                println!("    {line}");
            }
        }
        Err(e) => println!("headers      ({e})"),
    }
}
