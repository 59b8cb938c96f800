//! The quarantine digest a recipient gets: what is held for them, each with a release link.
//!
//! A `multipart/alternative` of plain text and HTML, built with mail-builder like the DSN.
//! It lists sender, subject, date and reason of each entry and never any of the message's
//! content; every text from outside (sender, subject, reason) is cut to one printable line
//! and, in the HTML part, escaped. Sent from `digest.from` with `Auto-Submitted:
//! auto-generated`, so auto-responders stay quiet.

use mail_builder::MessageBuilder;
use mail_builder::headers::raw::Raw;
use time::OffsetDateTime;
use time::macros::format_description;

/// One held message listed in a digest.
#[derive(Debug, Clone)]
pub struct DigestEntry {
    pub received_at: i64,
    /// The From header, else the envelope sender.
    pub sender: String,
    pub subject: Option<String>,
    pub reason: String,
    /// `<base>/digest/release/<token>`.
    pub link: String,
}

#[derive(Debug, Clone)]
pub struct DigestInput<'a> {
    /// `system.hostname`, for the Message-ID.
    pub hostname: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    /// The digest's queue id, for the Message-ID.
    pub digest_id: &'a str,
    pub entries: &'a [DigestEntry],
    /// Held entries not listed (beyond `digest.max_entries`).
    pub more: usize,
    pub link_valid_hours: u32,
    pub now: i64,
}

/// Longest sender / subject / reason shown.
const MAX_FIELD: usize = 120;

/// One printable line of at most [`MAX_FIELD`] characters: control characters (line breaks,
/// bidi overrides are not control characters but format ones, also removed) become spaces.
pub fn sanitise(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_control() || is_format(c) {
                ' '
            } else {
                c
            }
        })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if out.chars().count() > MAX_FIELD {
        out = out.chars().take(MAX_FIELD - 1).collect();
        out.push('…');
    }
    out
}

/// Unicode format characters that can reorder or hide text (bidi controls, zero-width).
fn is_format(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub fn date(ts: i64) -> String {
    OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| {
            t.format(format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .ok()
        })
        .unwrap_or_default()
}

/// The digest's subject line.
pub fn subject(held: usize) -> String {
    if held == 1 {
        "Quarantine digest: 1 message held for you".into()
    } else {
        format!("Quarantine digest: {held} messages held for you")
    }
}

/// Builds the digest message (CRLF line ends, ready to spool).
pub fn build(input: &DigestInput<'_>) -> Vec<u8> {
    let held = input.entries.len() + input.more;
    let hours = input.link_valid_hours;
    let mut text = format!(
        "Messages addressed to you were held by the mail gateway as suspected spam.\r\n\
         They have not been delivered. If one of them is mail you expected, release it with\r\n\
         its link: it is then delivered to your mailbox. Each link works once, for {hours}\r\n\
         hours, and only for you. Do not forward this message.\r\n\r\n"
    );
    let mut rows = String::new();
    for (i, e) in input.entries.iter().enumerate() {
        let subject = e.subject.as_deref().map(sanitise).unwrap_or_default();
        let subject = if subject.is_empty() {
            "(no subject)".to_string()
        } else {
            subject
        };
        let sender = match sanitise(&e.sender) {
            s if s.is_empty() => "(no sender)".to_string(),
            s => s,
        };
        let reason = sanitise(&e.reason);
        text.push_str(&format!(
            "{}. {subject}\r\n   From:     {sender}\r\n   Date:     {}\r\n   Reason:   {reason}\r\n   Release:  {}\r\n\r\n",
            i + 1,
            date(e.received_at),
            e.link
        ));
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td><a href=\"{}\">Release</a></td></tr>\r\n",
            escape(&date(e.received_at)),
            escape(&sender),
            escape(&subject),
            escape(&reason),
            escape(&e.link)
        ));
    }
    if input.more > 0 {
        text.push_str(&format!(
            "{} more held message(s) are not listed here; ask your IT service desk.\r\n\r\n",
            input.more
        ));
    }
    text.push_str(
        "Messages not released are deleted automatically after the retention period.\r\n",
    );
    let more = if input.more > 0 {
        format!(
            "<p>{} more held message(s) are not listed here; ask your IT service desk.</p>\r\n",
            input.more
        )
    } else {
        String::new()
    };
    let html = format!(
        "<!DOCTYPE html>\r\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\r\n\
         <body style=\"font-family:sans-serif\">\r\n\
         <p>Messages addressed to you were held by the mail gateway as suspected spam. They \
         have not been delivered. If one of them is mail you expected, release it with its \
         link: it is then delivered to your mailbox. Each link works once, for {hours} hours, \
         and only for you. Do not forward this message.</p>\r\n\
         <table border=\"1\" cellpadding=\"4\" cellspacing=\"0\">\r\n\
         <tr><th>Date</th><th>From</th><th>Subject</th><th>Reason</th><th></th></tr>\r\n\
         {rows}</table>\r\n{more}\
         <p>Messages not released are deleted automatically after the retention period.</p>\r\n\
         </body></html>\r\n",
        title = escape(&subject(held)),
    );

    MessageBuilder::new()
        .from(("Mail quarantine".to_string(), input.from.to_string()))
        .to(input.to.to_string())
        .subject(subject(held))
        .date(input.now)
        .message_id(format!("{}.digest@{}", input.digest_id, input.hostname))
        .header("Auto-Submitted", Raw::new("auto-generated"))
        .header("X-Auto-Response-Suppress", Raw::new("All"))
        .text_body(text)
        .html_body(html)
        .write_to_vec()
        .expect("writing to memory")
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MessageParser;

    fn entry(subject: &str) -> DigestEntry {
        DigestEntry {
            received_at: 1_700_000_000,
            sender: "\"Spam <King>\" <king@spam.test>".into(),
            subject: Some(subject.into()),
            reason: "rule 'spammy': sender".into(),
            link: "https://gw.test/digest/release/1.Q.61.00".into(),
        }
    }

    #[test]
    fn lists_each_entry_in_text_and_html_without_content() {
        let entries = [
            entry("Cheap <script>alert(1)</script> pills\r\nBcc: x@y"),
            entry("\u{202E}gpj.exe"),
        ];
        let raw = build(&DigestInput {
            hostname: "gw.test",
            from: "postmaster@gw.test",
            to: "alice@hospital.test",
            digest_id: "D1",
            entries: &entries,
            more: 3,
            link_valid_hours: 72,
            now: 1_700_000_100,
        });
        let m = MessageParser::new().parse(&raw).unwrap();
        assert_eq!(
            m.subject(),
            Some("Quarantine digest: 5 messages held for you")
        );
        assert_eq!(
            m.to().unwrap().first().unwrap().address(),
            Some("alice@hospital.test")
        );
        assert_eq!(
            m.header_raw("Auto-Submitted").map(str::trim),
            Some("auto-generated")
        );
        let text = m.body_text(0).unwrap();
        let html = m.body_html(0).unwrap();
        assert!(
            text.contains("Cheap <script>alert(1)</script> pills Bcc: x@y"),
            "{text}"
        );
        assert!(text.contains("Release:  https://gw.test/digest/release/1.Q.61.00"));
        assert!(text.contains("3 more held message(s)"));
        assert!(!text.contains('\u{202E}'));
        assert!(
            html.contains("Cheap &lt;script&gt;alert(1)&lt;/script&gt; pills"),
            "{html}"
        );
        assert!(!html.contains("<script>"));
        assert!(html.contains("href=\"https://gw.test/digest/release/1.Q.61.00\""));
        assert!(html.contains("&quot;Spam &lt;King&gt;&quot;"));
        // No injected header from the subject.
        assert!(m.header_raw("Bcc").is_none());
    }

    #[test]
    fn sanitise_keeps_one_short_line() {
        assert_eq!(sanitise("a\r\n\tb\u{200B}c"), "a b c");
        let long = sanitise(&"x".repeat(500));
        assert_eq!(long.chars().count(), MAX_FIELD);
        assert!(long.ends_with('…'));
    }
}
