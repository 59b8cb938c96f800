//! Delivery status notifications (RFC 3464): the bounce a sender gets when some recipients
//! failed permanently or their message expired in the queue.
//!
//! Bounces go out with the null sender and are queued as [`MessageKind::Dsn`](crate::MessageKind)
//! entries, which are never bounced themselves (RFC 5321 6.1, 3464 §1).

use mail_builder::MessageBuilder;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::raw::Raw;
use mail_builder::headers::text::Text;
use mail_builder::mime::MimePart;
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
pub fn wants_failure_report(notify: Option<crate::Notify>) -> bool {
    crate::Notify::wants_failure(notify)
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

/// The Content-Transfer-Encoding a part sent as is needs (message/* may not be encoded,
/// RFC 2046 5.2.1; the returned headers are kept as they were too).
fn identity_encoding(body: &[u8]) -> &'static str {
    if body.is_ascii() { "7bit" } else { "8bit" }
}

/// A part mail-builder writes as is, with this content type and description.
fn as_is<'x>(content_type: &'x str, description: &'x str, body: Vec<u8>) -> MimePart<'x> {
    let encoding = identity_encoding(&body);
    MimePart::new(ContentType::new(content_type), body)
        .header("Content-Description", Text::new(description))
        .transfer_encoding(encoding)
}

/// The message/delivery-status body (RFC 3464 2.2, 2.3): per-message fields, then one
/// block per recipient, each block after an empty line.
fn delivery_status(input: &DsnInput<'_>, now: i64) -> String {
    let host = input.reporting_host;
    let mut out = String::new();
    let mut h = |s: String| {
        out.push_str(&s);
        out.push_str("\r\n");
    };
    h(format!("Reporting-MTA: dns; {host}"));
    h(format!("X-Palisade-Queue-ID: {}", line(input.queue_id)));
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
        h(format!("Status: {}", line(&f.status)));
        if let Some(r) = &f.remote {
            h(format!("Remote-MTA: dns; {}", line(r)));
        }
        h(format!("Diagnostic-Code: smtp; {}", line(&f.diagnostic)));
        h(format!("Last-Attempt-Date: {}", date(now)));
    }
    out
}

/// Builds the bounce message (CRLF line ends, ready to spool): a multipart/report
/// (RFC 3462) of a text notice, the message/delivery-status report and the original
/// (message/rfc822 with RET=FULL, text/rfc822-headers otherwise). mail-builder does the
/// MIME structure, boundaries and encodings; the report body is written here.
pub fn build(input: &DsnInput<'_>) -> Vec<u8> {
    let now = crate::now();
    let host = input.reporting_host;

    let mut notice = format!(
        "This is the mail system at host {host}.\r\n\r\n\
         Your message could not be delivered to one or more recipients.\r\n\
         It has been returned below, with the reason for each recipient.\r\n\r\n"
    );
    for f in input.failed {
        notice.push_str(&format!(
            "<{}>: {}\r\n",
            line(&f.address),
            line(&f.diagnostic)
        ));
    }

    let whole = input.ret_full && input.original.len() <= MAX_RETURNED;
    let mut original = if whole {
        input.original.to_vec()
    } else {
        header_block(input.original).to_vec()
    };
    if !original.ends_with(b"\r\n") {
        original.extend_from_slice(b"\r\n");
    }
    let returned = if whole {
        as_is("message/rfc822", "Undelivered Message", original)
    } else {
        as_is(
            "text/rfc822-headers",
            "Undelivered Message Headers",
            original,
        )
    };

    let report = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", "delivery-status"),
        vec![
            MimePart::new("text/plain", notice)
                .header("Content-Description", Text::new("Notification")),
            as_is(
                "message/delivery-status",
                "Delivery report",
                delivery_status(input, now).into_bytes(),
            ),
            returned,
        ],
    );

    MessageBuilder::new()
        .from((
            "Mail Delivery System".to_string(),
            format!("MAILER-DAEMON@{host}"),
        ))
        .to(line(input.sender))
        .subject("Undelivered Mail Returned to Sender")
        .date(now)
        .message_id(format!("{}.dsn@{host}", input.queue_id))
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .body(report)
        .write_to_vec()
        .expect("writing to memory")
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
        // mail-builder quotes parameter values, which is equally valid (RFC 2045 5.1).
        assert!(text.contains("report-type=\"delivery-status\""));
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

    /// The bounce parsed back: the report structure and every field RFC 3464 asks for.
    #[test]
    fn parses_as_a_delivery_status_report() {
        use mail_parser::{MessageParser, MimeHeaders, PartType};
        let original = b"From: a@example.org\r\nSubject: hi\r\n\r\nsecret body \xc3\xa9\r\n";
        let failed = [FailedRecipient {
            address: "x@example.net".into(),
            orcpt: Some("rfc822;x@example.net".into()),
            status: "5.1.1".into(),
            diagnostic: "550 5.1.1 no such user".into(),
            remote: Some("mx.example.net".into()),
        }];
        for ret_full in [false, true] {
            let dsn = build(&DsnInput {
                reporting_host: "gw.example.org",
                queue_id: "Q1",
                arrival: 1_700_000_000,
                sender: "a@example.org",
                envid: Some("E1"),
                ret_full,
                original,
                failed: &failed,
            });
            let m = MessageParser::new().parse(&dsn).unwrap();
            let ct = m.content_type().unwrap();
            assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
            assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
            assert_eq!(
                m.from().unwrap().first().unwrap().address(),
                Some("MAILER-DAEMON@gw.example.org")
            );
            assert_eq!(
                m.to().unwrap().first().unwrap().address(),
                Some("a@example.org")
            );
            assert_eq!(
                m.header_raw("Auto-Submitted").map(str::trim),
                Some("auto-replied")
            );
            assert_eq!(m.message_id(), Some("Q1.dsn@gw.example.org"));
            let root = &m.parts[0];
            let PartType::Multipart(children) = &root.body else {
                panic!("not multipart")
            };
            assert_eq!(children.len(), 3);
            let part = |i: usize| &m.parts[children[i] as usize];
            let types: Vec<String> = (0..3)
                .map(|i| {
                    let c = part(i).content_type().unwrap();
                    format!("{}/{}", c.ctype(), c.subtype().unwrap_or(""))
                })
                .collect();
            let returned = if ret_full {
                "message/rfc822"
            } else {
                "text/rfc822-headers"
            };
            assert_eq!(types, ["text/plain", "message/delivery-status", returned]);
            let notice = part(0).text_contents().unwrap();
            assert!(
                notice.contains("<x@example.net>: 550 5.1.1 no such user"),
                "{notice}"
            );
            let report = String::from_utf8(part(1).contents().to_vec()).unwrap();
            let (per_message, per_recipient) = report.split_once("\r\n\r\n").unwrap();
            for f in [
                "Reporting-MTA: dns; gw.example.org",
                "Original-Envelope-Id: E1",
                "Arrival-Date: ",
            ] {
                assert!(per_message.contains(f), "{f}: {per_message}");
            }
            for f in [
                "Final-Recipient: rfc822; x@example.net\r\n",
                "Original-Recipient: rfc822;x@example.net\r\n",
                "Action: failed\r\n",
                "Status: 5.1.1\r\n",
                "Remote-MTA: dns; mx.example.net\r\n",
                "Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n",
            ] {
                assert!(per_recipient.contains(f), "{f}: {per_recipient}");
            }
            if ret_full {
                let PartType::Message(inner) = &part(2).body else {
                    panic!("message/rfc822 not parsed as a message")
                };
                assert_eq!(inner.subject(), Some("hi"));
                assert!(String::from_utf8_lossy(inner.raw_message()).contains("secret body é"));
            } else {
                let headers = String::from_utf8(part(2).contents().to_vec()).unwrap();
                assert!(headers.contains("Subject: hi\r\n"), "{headers}");
                assert!(!headers.contains("secret body"));
            }
        }
    }

    #[test]
    fn status_codes_and_notify() {
        assert_eq!(status_of("550 5.7.1 denied", "5.0.0"), "5.7.1");
        assert_eq!(status_of("554 transaction failed", "5.0.0"), "5.0.0");
        assert_eq!(status_of("451 try later", "4.4.7"), "4.0.0");
        assert_eq!(status_of("connection refused", "4.4.7"), "4.4.7");
        assert!(wants_failure_report(None));
        let n = |s: &str| Some(s.parse().unwrap());
        assert!(wants_failure_report(n("SUCCESS,FAILURE")));
        assert!(!wants_failure_report(n("NEVER")));
        assert!(!wants_failure_report(n("DELAY")));
    }
}
