//! The filter pipeline a received message passes after it is on disk and before it is
//! committed: authentication, antivirus, antispam, DLP and policy plug in here as stages.
//!
//! Today the pipeline has no stages, so every message that passed the SMTP checks is accepted;
//! what exists is the seam (the context each stage sees, the verdicts it can return) and the
//! header inspection that message tracking needs.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use palisade_smtp_proto::{Reply, ReversePath};

/// The headers tracking and the stages look at, parsed from the start of the content.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Headers {
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub from: Option<String>,
}

/// Longest header value kept for tracking; longer ones are cut at a character boundary.
const MAX_FIELD: usize = 998;

fn bounded(s: &str) -> String {
    if s.len() <= MAX_FIELD {
        return s.to_string();
    }
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

impl Headers {
    /// Parses the header block at the start of `head` (the first bytes of the content, which
    /// start with the Received header this hop added).
    pub fn parse(head: &[u8]) -> Headers {
        let Some(msg) = mail_parser::MessageParser::default().parse_headers(head) else {
            return Headers::default();
        };
        Headers {
            message_id: msg.message_id().map(|id| bounded(&format!("<{id}>"))),
            subject: msg.subject().map(bounded),
            from: msg
                .from()
                .and_then(|l| l.first())
                .and_then(|m| m.address().map(bounded)),
        }
    }
}

/// What a stage sees.
#[derive(Debug)]
pub struct MessageContext<'a> {
    pub queue_id: &'a str,
    pub sender: &'a ReversePath,
    pub recipients: Vec<&'a str>,
    pub headers: &'a Headers,
    pub client_ip: IpAddr,
    pub trusted: bool,
}

/// A stage's decision about the whole message.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Accept,
    /// Refuse with this reply (4xx: try later; 5xx: never).
    Reject(Reply),
}

pub type StageFuture<'a> = Pin<Box<dyn Future<Output = Verdict> + Send + 'a>>;

/// One filter stage.
pub trait Stage: Send + Sync {
    fn name(&self) -> &'static str;
    fn inspect<'a>(&'a self, ctx: &'a MessageContext<'a>) -> StageFuture<'a>;
}

/// The stages in order. Empty until the filters exist.
fn stages() -> &'static [&'static dyn Stage] {
    &[]
}

/// Runs every stage; the first that does not accept decides.
pub async fn run(ctx: &MessageContext<'_>) -> Verdict {
    for stage in stages() {
        match stage.inspect(ctx).await {
            Verdict::Accept => {}
            v => {
                tracing::info!(event = "pipeline.verdict", stage = stage.name(), queue_id = ctx.queue_id, verdict = ?v);
                return v;
            }
        }
    }
    Verdict::Accept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_for_tracking() {
        let head = b"Received: from x ([127.0.0.1])\r\n\tby y; Mon, 1 Jan 2024 00:00:00 +0000\r\n\
            From: \"Dr A\" <a@example.org>\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\
            Message-ID: <abc@example.org>\r\n\r\nbody";
        let h = Headers::parse(head);
        assert_eq!(h.message_id.as_deref(), Some("<abc@example.org>"));
        assert_eq!(h.subject.as_deref(), Some("café"));
        assert_eq!(h.from.as_deref(), Some("a@example.org"));
        assert_eq!(
            Headers::parse(b"no headers at all"),
            Headers::parse(b"no headers at all")
        );
    }
}
