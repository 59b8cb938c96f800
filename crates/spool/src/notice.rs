//! The notices a sender gets about a message held for confirmation (a `confirm` rule): the
//! link to send or cancel it, and word that it was discarded when nobody answered. Plain text,
//! from the gateway, never with the message's content (its subject and recipients only, cut to
//! printable lines).

use mail_builder::MessageBuilder;
use mail_builder::headers::raw::Raw;

use crate::digest::{date, sanitise};

/// What a notice says.
#[derive(Debug, Clone)]
pub struct Notice<'a> {
    pub hostname: &'a str,
    pub from: &'a str,
    /// The sender of the held message.
    pub to: &'a str,
    pub notice_id: &'a str,
    pub subject: Option<&'a str>,
    pub recipients: &'a [String],
    /// Why it is held (the rules' sentences).
    pub reasons: &'a [String],
    pub now: i64,
    /// Unix seconds: when an unconfirmed message is discarded.
    pub expires_at: i64,
}

fn subject_of(n: &Notice<'_>) -> String {
    match n.subject.map(sanitise) {
        Some(s) if !s.is_empty() => s,
        _ => "(no subject)".into(),
    }
}

fn build(n: &Notice<'_>, subject: String, text: String) -> Vec<u8> {
    MessageBuilder::new()
        .from(("Mail gateway".to_string(), n.from.to_string()))
        .to(n.to.to_string())
        .subject(subject)
        .date(n.now)
        .message_id(format!("{}.notice@{}", n.notice_id, n.hostname))
        .header("Auto-Submitted", Raw::new("auto-generated"))
        .header("X-Auto-Response-Suppress", Raw::new("All"))
        .text_body(text)
        .write_to_vec()
        .expect("writing to memory")
}

fn listed(n: &Notice<'_>) -> (String, String) {
    let recipients: String = n
        .recipients
        .iter()
        .map(|r| format!("   {}\r\n", sanitise(r)))
        .collect();
    let reasons: String = n
        .reasons
        .iter()
        .map(|r| format!("   - {}\r\n", sanitise(r)))
        .collect();
    (recipients, reasons)
}

/// "Your message is held until you confirm it": with the link that sends or cancels it.
pub fn confirmation(n: &Notice<'_>, link: &str) -> Vec<u8> {
    let (recipients, reasons) = listed(n);
    let subject = subject_of(n);
    let text = format!(
        "Your message \"{subject}\" has not been sent yet. The mail gateway holds it until you\r\n\
         confirm that it should go to these recipients:\r\n\r\n{recipients}\r\n\
         Why it was held:\r\n{reasons}\r\n\
         Check the addresses (a look-alike of a domain you know, or a domain never written to\r\n\
         before, is the usual way mail goes to the wrong place), then open this link to send\r\n\
         it or to cancel it:\r\n\r\n   {link}\r\n\r\n\
         If you do nothing, it is discarded at {} and you will be told.\r\n\
         The link works once, only for this message. Do not forward this notice.\r\n",
        date(n.expires_at)
    );
    build(n, format!("Confirm before it is sent: {subject}"), text)
}

/// "Your message was not sent": nobody confirmed it in time.
pub fn discarded(n: &Notice<'_>) -> Vec<u8> {
    let (recipients, _) = listed(n);
    let subject = subject_of(n);
    let text = format!(
        "Your message \"{subject}\" was not sent. It was held until you confirmed it, and\r\n\
         nobody did by {}, so it was discarded. It was addressed to:\r\n\r\n{recipients}\r\n\
         If it should still go, send it again and confirm it with the link you will get.\r\n",
        date(n.expires_at)
    );
    build(n, format!("Not sent: {subject}"), text)
}

/// What a rule did, in words for its sender (`action`: the rule's action name).
fn done(action: &str) -> &'static str {
    match action {
        "quarantine" => "is held for review by the mail administrators; it has not been sent",
        "encrypt" => "is held until it can be sent encrypted; it has not been sent",
        "reject" | "tempfail" => "was refused",
        "discard" => "was not sent",
        "strip" => "was sent without some of its attachments",
        "confirm" => "waits for your confirmation",
        _ => "was delivered as usual",
    }
}

/// "A policy applied to your message" (a rule with `notify_sender`): what happened and why.
pub fn policy_sender(n: &Notice<'_>, action: &str) -> Vec<u8> {
    let (recipients, reasons) = listed(n);
    let subject = subject_of(n);
    let text = format!(
        "Your message \"{subject}\" {}, by the organisation's data protection policy.\r\n\r\n\
         It was addressed to:\r\n{recipients}\r\n\
         Why:\r\n{reasons}\r\n\
         If you think this is wrong, or the message must go, contact the mail administrators\r\n\
         and quote this notice.\r\n",
        done(action)
    );
    build(n, format!("Mail policy applied: {subject}"), text)
}

/// "A rule matched" for the people a rule names in `notify`: the rule, what it did, who sent
/// what to whom, and what was found (masked snippets only, as the dlp check gives them).
pub fn policy_admin(
    n: &Notice<'_>,
    sender: &str,
    rule: &str,
    action: &str,
    queue_id: &str,
    found: &[String],
) -> Vec<u8> {
    let (recipients, reasons) = listed(n);
    let subject = subject_of(n);
    let found: String = if found.is_empty() {
        "   (no DLP detections)\r\n".into()
    } else {
        found
            .iter()
            .map(|f| format!("   {}\r\n", sanitise(f)))
            .collect()
    };
    let text = format!(
        "Rule \"{}\" ({}) matched a message.\r\n\r\n\
         From: {}\r\nSubject: {subject}\r\nQueue id: {}\r\nTo:\r\n{recipients}\r\n\
         Why:\r\n{reasons}\r\nFound:\r\n{found}\r\n\
         Look the message up in the console's message tracking and DLP incidents.\r\n",
        sanitise(rule),
        sanitise(action),
        if sender.is_empty() {
            "<>".to_string()
        } else {
            sanitise(sender)
        },
        sanitise(queue_id),
    );
    build(
        n,
        format!("DLP rule matched: {} ({subject})", sanitise(rule)),
        text,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MessageParser;

    #[test]
    fn the_notice_names_the_recipients_and_the_link_and_no_content() {
        let rcpts = vec!["partner@nhs.nte".to_string()];
        let reasons = vec!["Rule \"look-alikes\" matched (nhs.nte looks like nhs.net)".to_string()];
        let n = Notice {
            hostname: "gw.example",
            from: "postmaster@gw.example",
            to: "ada@hospital.example",
            notice_id: "ABC",
            subject: Some("Ward list\r\nBcc: x@evil.example"),
            recipients: &rcpts,
            reasons: &reasons,
            now: 1_767_225_600,
            expires_at: 1_767_312_000,
        };
        let raw = confirmation(&n, "https://gw.example/confirm/TOKEN");
        let m = MessageParser::new().parse(&raw).unwrap();
        assert_eq!(
            m.subject(),
            Some("Confirm before it is sent: Ward list Bcc: x@evil.example")
        );
        assert!(m.header("Bcc").is_none());
        let body = m.body_text(0).unwrap();
        assert!(
            body.contains("partner@nhs.nte") && body.contains("looks like nhs.net"),
            "{body}"
        );
        assert!(body.contains("https://gw.example/confirm/TOKEN"), "{body}");
        let told = policy_sender(&n, "quarantine");
        let m = MessageParser::new().parse(&told).unwrap();
        assert!(
            m.subject()
                .unwrap()
                .starts_with("Mail policy applied: Ward list")
        );
        let body = m.body_text(0).unwrap();
        assert!(
            body.contains("is held for review") && body.contains("partner@nhs.nte"),
            "{body}"
        );
        let admin = policy_admin(
            &n,
            "ada@hospital.example",
            "r\r\nBcc: x@y",
            "encrypt",
            "Q1",
            &["nhs_number ×5 (*******919)".into()],
        );
        let m = MessageParser::new().parse(&admin).unwrap();
        assert!(m.header("Bcc").is_none());
        let body = m.body_text(0).unwrap();
        assert!(
            body.contains("From: ada@hospital.example") && body.contains("*******919"),
            "{body}"
        );
        let gone = discarded(&n);
        let m = MessageParser::new().parse(&gone).unwrap();
        assert!(m.subject().unwrap().starts_with("Not sent: "));
    }
}
