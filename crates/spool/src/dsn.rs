//! Delivery status notifications (RFC 3464): the bounce a sender gets when some recipients
//! failed permanently or their message expired in the queue.
//!
//! Bounces go out with the null sender and are queued as [`MessageKind::Dsn`](crate::MessageKind)
//! entries, which are never bounced themselves (RFC 5321 6.1, 3464 §1).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

/// One recipient the bounce reports.
#[derive(Debug, Clone)]
pub struct FailedRecipient {
    pub address: String,
    /// The ORCPT parameter the client gave (`rfc822;addr`), if any.
    pub orcpt: Option<String>,
    /// Enhanced status code, `5.1.1`.
    pub status: String,
    /// The reply or local reason, `550 5.1.1 <x@y>: user unknown`.
    pub diagnostic: String,
    /// The host that gave the reply, if one did.
    pub remote: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DsnInput<'a> {
    /// `system.hostname`: Reporting-MTA and the From address.
    pub reporting_host: &'a str,
    pub queue_id: &'a str,
    pub arrival: i64,
    pub sender: &'a str,
    pub envid: Option<&'a str>,
    /// RET=FULL: include the whole message (up to a limit) instead of its headers.
    pub ret_full: bool,
    /// The original content as queued.
    pub original: &'a [u8],
    pub failed: &'a [FailedRecipient],
}

/// Whether a recipient's NOTIFY parameter asks for a failure report (the default does).
pub fn wants_failure_report(notify: Option<&str>) -> bool {
    match notify {
        None => true,
        Some(n) => n
            .split(',')
            .any(|k| k.trim().eq_ignore_ascii_case("FAILURE")),
    }
}

/// The enhanced status code of a reply text, or one derived from its basic code.
pub fn status_of(reply: &str, fallback: &str) -> String {
    let mut words = reply.split_whitespace();
    let basic = words.next().unwrap_or("");
    if let Some(enh) = words.next() {
        let parts: Vec<&str> = enh.split('.').collect();
        if parts.len() == 3
            && matches!(parts[0], "2" | "4" | "5")
            && parts[1..]
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
        {
            return enh.to_string();
        }
    }
    match basic.as_bytes().first() {
        Some(b'5') => "5.0.0".into(),
        Some(b'4') => "4.0.0".into(),
        _ => fallback.into(),
    }
}

/// Largest original message returned whole with RET=FULL; bigger ones get their headers only.
const MAX_RETURNED: usize = 1024 * 1024;

fn date(ts: i64) -> String {
    OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| t.format(&Rfc2822).ok())
        .unwrap_or_default()
}

fn header_block(content: &[u8]) -> &[u8] {
    content
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| &content[..i + 2])
        .unwrap_or(content)
}

/// One line of text that cannot break the message's framing.
fn line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Builds the bounce message (CRLF line ends, ready to spool).
pub fn build(input: &DsnInput<'_>) -> Vec<u8> {
    let now = crate::now();
    let host = input.reporting_host;
    let boundary = format!("{}.dsn/{}", input.queue_id, host);
    let mut out = String::new();
    let mut h = |s: String| {
        out.push_str(&s);
        out.push_str("\r\n");
    };
    h(format!("From: Mail Delivery System <MAILER-DAEMON@{host}>"));
    h(format!("To: <{}>", line(input.sender)));
    h("Subject: Undelivered Mail Returned to Sender".into());
    h(format!("Date: {}", date(now)));
    h(format!("Message-ID: <{}.dsn@{host}>", input.queue_id));
    h("Auto-Submitted: auto-replied".into());
    h("MIME-Version: 1.0".into());
    h(format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\""
    ));
    h(String::new());
    h("This is a MIME-encapsulated message.".into());
    h(String::new());
    h(format!("--{boundary}"));
    h("Content-Description: Notification".into());
    h("Content-Type: text/plain; charset=utf-8".into());
    h(String::new());
    h(format!("This is the mail system at host {host}."));
    h(String::new());
    h("Your message could not be delivered to one or more recipients.".into());
    h("It has been returned below, with the reason for each recipient.".into());
    h(String::new());
    for f in input.failed {
        h(format!("<{}>: {}", line(&f.address), line(&f.diagnostic)));
    }
    h(String::new());
    h(format!("--{boundary}"));
    h("Content-Description: Delivery report".into());
    h("Content-Type: message/delivery-status".into());
    h(String::new());
    h(format!("Reporting-MTA: dns; {host}"));
    h(format!("X-Palisade-Queue-ID: {}", input.queue_id));
    if let Some(envid) = input.envid {
        h(format!("Original-Envelope-Id: {}", line(envid)));
    }
    h(format!("Arrival-Date: {}", date(input.arrival)));
    for f in input.failed {
        h(String::new());
        h(format!("Final-Recipient: rfc822; {}", line(&f.address)));
        if let Some(o) = &f.orcpt {
            h(format!("Original-Recipient: {}", line(o)));
        }
        h("Action: failed".into());
        h(format!("Status: {}", f.status));
        if let Some(r) = &f.remote {
            h(format!("Remote-MTA: dns; {}", line(r)));
        }
        h(format!("Diagnostic-Code: smtp; {}", line(&f.diagnostic)));
        h(format!("Last-Attempt-Date: {}", date(now)));
    }
    h(String::new());
    h(format!("--{boundary}"));
    let whole = input.ret_full && input.original.len() <= MAX_RETURNED;
    if whole {
        h("Content-Description: Undelivered Message".into());
        h("Content-Type: message/rfc822".into());
    } else {
        h("Content-Description: Undelivered Message Headers".into());
        h("Content-Type: text/rfc822-headers".into());
    }
    h(String::new());
    let mut bytes = out.into_bytes();
    let original = if whole {
        input.original
    } else {
        header_block(input.original)
    };
    bytes.extend_from_slice(original);
    if !original.ends_with(b"\r\n") {
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_report_structure() {
        let original = b"From: a@example.org\r\nSubject: hi\r\n\r\nsecret body\r\n";
        let failed = [FailedRecipient {
            address: "x@example.net".into(),
            orcpt: Some("rfc822;x@example.net".into()),
            status: status_of("550 5.1.1 no such user", "5.0.0"),
            diagnostic: "550 5.1.1 no such user".into(),
            remote: Some("mx.example.net".into()),
        }];
        let dsn = build(&DsnInput {
            reporting_host: "gw.example.org",
            queue_id: "0123456789ABCDEF0123",
            arrival: 1_700_000_000,
            sender: "a@example.org",
            envid: Some("E1"),
            ret_full: false,
            original,
            failed: &failed,
        });
        let text = String::from_utf8(dsn).unwrap();
        assert!(text.contains("report-type=delivery-status"));
        assert!(text.contains("Final-Recipient: rfc822; x@example.net\r\n"));
        assert!(text.contains("Original-Recipient: rfc822;x@example.net\r\n"));
        assert!(text.contains("Status: 5.1.1\r\n"));
        assert!(text.contains("Original-Envelope-Id: E1\r\n"));
        assert!(text.contains("Subject: hi\r\n"));
        assert!(
            !text.contains("secret body"),
            "headers only without RET=FULL"
        );
        assert!(text.ends_with("--\r\n"));
        assert!(
            !text.replace("\r\n", "").contains('\n'),
            "only CRLF line ends"
        );
    }

    #[test]
    fn status_codes_and_notify() {
        assert_eq!(status_of("550 5.7.1 denied", "5.0.0"), "5.7.1");
        assert_eq!(status_of("554 transaction failed", "5.0.0"), "5.0.0");
        assert_eq!(status_of("451 try later", "4.4.7"), "4.0.0");
        assert_eq!(status_of("connection refused", "4.4.7"), "4.4.7");
        assert!(wants_failure_report(None));
        assert!(wants_failure_report(Some("SUCCESS,FAILURE")));
        assert!(!wants_failure_report(Some("NEVER")));
        assert!(!wants_failure_report(Some("DELAY")));
    }
}
