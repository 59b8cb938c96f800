//! The readable text of a message and the links in it, for the content filters that read words
//! (antispam, its Bayes classifier, later DLP): every text part of the message itself (not of
//! attachments or archive members) as Unicode, HTML reduced to what a reader sees, and every
//! link with the text it is shown with.
//!
//! Bounded: at most `max_bytes` of text and [`MAX_LINKS`] links are kept, whatever the message.
//! The HTML reader is a small state machine, not a browser: it drops tags, comments, `<script>`
//! and `<style>` content, decodes the common entities, and reads `href`/`src` attributes. It
//! never fails: broken markup gives less text, not an error.

use crate::{MessageView, PartKind};

/// Links kept per message.
pub const MAX_LINKS: usize = 500;

/// One link: from a `href` of an HTML part, or a URL written in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// As written (entities decoded), at most 2048 bytes.
    pub url: String,
    /// Lower case, without user info, port or trailing dot; an IP literal without brackets.
    pub host: String,
    /// For `<a href>`: the text the reader sees for it (tags removed, white space collapsed,
    /// at most 200 bytes).
    pub anchor: Option<String>,
}

/// What [`body_text`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyText {
    /// The visible text of every text part, parts separated by a blank line.
    pub text: String,
    /// Links in order of appearance (duplicates of the same URL kept once).
    pub links: Vec<Link>,
    pub plain_parts: usize,
    pub html_parts: usize,
    /// `<img>` elements in the HTML parts.
    pub images: usize,
    /// The text was cut at `max_bytes`.
    pub truncated: bool,
}

/// The visible text and links of `view`'s own text parts (attachments are not read: a
/// `text/*` part counts when it is not an attachment).
pub fn body_text(view: &MessageView, max_bytes: usize) -> BodyText {
    let mut out = BodyText::default();
    for (i, part) in view.parts().iter().enumerate() {
        if part.kind != PartKind::Leaf || part.is_attachment || inside_attachment(view, i) {
            continue;
        }
        let declared = part.declared_type.as_deref().unwrap_or("text/plain");
        if !declared.starts_with("text/") {
            continue;
        }
        let Some(text) = view.text(i) else { continue };
        if out.text.len() >= max_bytes {
            out.truncated = true;
            break;
        }
        if !out.text.is_empty() {
            out.text.push_str("\n\n");
        }
        let before = out.text.len();
        if declared == "text/html" {
            out.html_parts += 1;
            html_to_text(&text, &mut out);
        } else {
            out.plain_parts += 1;
            out.text.push_str(&text);
        }
        find_urls_in(&out.text[before..], &mut out.links);
        if out.text.len() > max_bytes {
            let mut end = max_bytes;
            while !out.text.is_char_boundary(end) {
                end -= 1;
            }
            out.text.truncate(end);
            out.truncated = true;
        }
    }
    out
}

/// A part below an attached message or an archive is the attachment's content, not the
/// message's text.
fn inside_attachment(view: &MessageView, mut i: usize) -> bool {
    let parts = view.parts();
    while let Some(p) = parts[i].parent {
        if parts[p].kind != PartKind::Multipart {
            return true;
        }
        i = p;
    }
    false
}

fn push_link(links: &mut Vec<Link>, url: &str, anchor: Option<String>) {
    if links.len() >= MAX_LINKS {
        return;
    }
    let url = url.trim();
    let Some(host) = host_of(url) else { return };
    let mut url = url.to_string();
    if url.len() > 2048 {
        let mut end = 2048;
        while !url.is_char_boundary(end) {
            end -= 1;
        }
        url.truncate(end);
    }
    if let Some(existing) = links.iter_mut().find(|l| l.url == url) {
        if existing.anchor.is_none() {
            existing.anchor = anchor;
        }
        return;
    }
    links.push(Link { url, host, anchor });
}

/// The host of an `http(s)://`, `//` or `www.` URL; `None` for anything else (mailto:, cid:, …).
pub fn host_of(url: &str) -> Option<String> {
    let lower = url.to_ascii_lowercase();
    let rest = if let Some(r) = lower.strip_prefix("https://") {
        r
    } else if let Some(r) = lower.strip_prefix("http://") {
        r
    } else if let Some(r) = lower.strip_prefix("//") {
        r
    } else if lower.starts_with("www.") {
        &lower[..]
    } else {
        return None;
    };
    let authority = rest.split(['/', '?', '#', '\\']).next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = hostport.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        hostport.split(':').next().unwrap_or("")
    };
    let host = host.trim_end_matches('.');
    let ok = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_alphanumeric() || c == '.' || c == '-' || c == ':' || c == '_');
    ok.then(|| host.to_string())
}

/// URLs written in text: `http://…`, `https://…`, `www.…`, up to white space or a delimiter,
/// trailing punctuation left out.
fn find_urls_in(text: &str, links: &mut Vec<Link>) {
    let lower = text.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut i = 0;
    while i < bytes.len() && links.len() < MAX_LINKS {
        let rest = &lower[i..];
        let starts = rest.starts_with("http://")
            || rest.starts_with("https://")
            || (rest.starts_with("www.") && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric()));
        if !starts {
            i += 1;
            while i < bytes.len() && !lower.is_char_boundary(i) {
                i += 1;
            }
            continue;
        }
        let end = rest
            .find(|c: char| c.is_whitespace() || "<>\"'()[]{}|^`".contains(c))
            .unwrap_or(rest.len());
        let url = text[i..i + end].trim_end_matches(['.', ',', ';', ':', '!', '?']);
        push_link(links, url, None);
        i += end.max(1);
        while i < bytes.len() && !lower.is_char_boundary(i) {
            i += 1;
        }
    }
}

/// The visible text of `html` alone (line breaks where blocks end).
pub(crate) fn html_to_plain(html: &str) -> String {
    let mut out = BodyText::default();
    html_to_text(html, &mut out);
    out.text
}

/// Appends the visible text of `html` to `out.text` and its links to `out.links`.
fn html_to_text(html: &str, out: &mut BodyText) {
    let mut rest = html;
    // Inside <a href>: the link and the text shown so far.
    let mut anchor: Option<(String, String)> = None;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            text_run(rest, out, &mut anchor);
            break;
        };
        text_run(&rest[..lt], out, &mut anchor);
        rest = &rest[lt..];
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |e| &after[e + 3..]);
            continue;
        }
        let Some(gt) = tag_end(rest) else {
            // Not a tag after all (an unbalanced quote, a lone '<'): it is text.
            text_run("<", out, &mut anchor);
            rest = &rest[1..];
            continue;
        };
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        let (closing, body) = match tag.strip_prefix('/') {
            Some(b) => (true, b),
            None => (false, tag),
        };
        let name: String = body
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        match (closing, name.as_str()) {
            (false, "script" | "style") => {
                let close = format!("</{name}");
                let lower = rest.to_ascii_lowercase();
                rest = lower.find(&close).map_or("", |e| &rest[e..]);
            }
            (false, "a") => {
                out.text.push(' ');
                if let Some((url, text)) = anchor.take() {
                    push_link(&mut out.links, &url, Some(collapse(&text)));
                }
                if let Some(href) = attribute(body, "href") {
                    anchor = Some((href, String::new()));
                }
            }
            (true, "a") => {
                out.text.push(' ');
                if let Some((url, text)) = anchor.take() {
                    push_link(&mut out.links, &url, Some(collapse(&text)));
                }
            }
            (false, "img") => {
                out.images += 1;
                if let Some(src) = attribute(body, "src") {
                    push_link(&mut out.links, &src, None);
                }
            }
            (_, "br" | "p" | "div" | "tr" | "li" | "h1" | "h2" | "h3" | "table") => {
                out.text.push('\n');
                if let Some((_, t)) = anchor.as_mut() {
                    t.push(' ');
                }
            }
            (_, "td" | "th") => {
                out.text.push('\t');
                if let Some((_, t)) = anchor.as_mut() {
                    t.push(' ');
                }
            }
            _ => {}
        }
    }
    if let Some((url, text)) = anchor.take() {
        push_link(&mut out.links, &url, Some(collapse(&text)));
    }
}

/// The `>` that ends the tag starting at `s[0] == '<'`, outside quoted attribute values.
fn tag_end(s: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices().skip(1) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '>') => return Some(i),
            _ => {}
        }
    }
    None
}

fn text_run(raw: &str, out: &mut BodyText, anchor: &mut Option<(String, String)>) {
    if raw.is_empty() {
        return;
    }
    let text = decode_entities(raw);
    out.text.push_str(&text);
    if let Some((_, t)) = anchor.as_mut()
        && t.len() < 400
    {
        t.push_str(&text);
    }
}

fn collapse(s: &str) -> String {
    let mut out = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.len() > 200 {
        let mut end = 200;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

/// The value of attribute `name` in a tag body (`a href="…" class=x`), entities decoded.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let mut from = 0;
    while let Some(pos) = lower[from..].find(name) {
        let at = from + pos;
        from = at + name.len();
        let before_ok = at > 0 && lower.as_bytes()[at - 1].is_ascii_whitespace();
        let after = lower[from..].trim_start();
        if !before_ok || !after.starts_with('=') {
            continue;
        }
        let value_start = tag.len() - after.len() + 1;
        let v = tag[value_start..].trim_start();
        let value = match v.chars().next() {
            Some(q @ ('"' | '\'')) => v[1..].split(q).next().unwrap_or(""),
            _ => v
                .split(|c: char| c.is_whitespace() || c == '>')
                .next()
                .unwrap_or(""),
        };
        return Some(decode_entities(value).trim().to_string());
    }
    None
}

/// `&amp;`, `&lt;`, `&gt;`, `&quot;`, `&apos;`, `&nbsp;` and numeric references; anything else
/// is left as written.
pub(crate) fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let end = rest[1..].find(';').filter(|&e| e <= 10).map(|e| e + 1);
        let decoded = end.and_then(|e| {
            let name = &rest[1..e];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some(' '),
                _ => {
                    let num = name.strip_prefix('#')?;
                    let n = match num.strip_prefix(['x', 'X']) {
                        Some(h) => u32::from_str_radix(h, 16).ok()?,
                        None => num.parse().ok()?,
                    };
                    char::from_u32(n)
                }
            }?;
            Some((c, e + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Limits;

    fn body(raw: &str) -> BodyText {
        let view = MessageView::from_bytes(raw.as_bytes(), &Limits::default());
        body_text(&view, 1 << 20)
    }

    #[test]
    fn html_is_read_as_a_reader_sees_it_with_its_links() {
        let b = body(concat!(
            "From: a@example.org\r\nSubject: x\r\nContent-Type: text/html\r\n\r\n",
            "<html><head><style>p{color:red}</style><script>var spam='hidden';</script></head>",
            "<body><p>Your &amp; account</p><!-- hidden comment -->",
            "<a class=x href=\"http://Evil.Example:8080/login?a=1&amp;b=2\">https://www.bank.example</a>",
            "<img src='https://tracker.example/p.gif'><a href=mailto:x@y>mail</a></body></html>"
        ));
        assert!(b.text.contains("Your & account"), "{:?}", b.text);
        assert!(!b.text.contains("hidden"), "{:?}", b.text);
        assert!(!b.text.contains("color"), "{:?}", b.text);
        assert_eq!(b.html_parts, 1);
        assert_eq!(b.images, 1);
        assert_eq!(b.links.len(), 3, "{:?}", b.links);
        assert_eq!(b.links[0].host, "evil.example");
        assert_eq!(b.links[0].url, "http://Evil.Example:8080/login?a=1&b=2");
        assert_eq!(
            b.links[0].anchor.as_deref(),
            Some("https://www.bank.example")
        );
        // The anchor text, as text, is also a URL of the message.
        assert!(b.links.iter().any(|l| l.host == "www.bank.example"));
        assert!(b.links.iter().any(|l| l.host == "tracker.example"));
    }

    #[test]
    fn urls_in_plain_text_stop_at_delimiters_and_attachments_are_not_read() {
        let b = body(concat!(
            "From: a@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\n",
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n",
            "--b\r\nContent-Type: text/plain\r\n\r\n",
            "See www.example.com/a, and (https://user@192.0.2.7/x).\r\n",
            "--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=a.txt\r\n\r\n",
            "secret http://attached.example/\r\n--b--\r\n"
        ));
        let hosts: Vec<&str> = b.links.iter().map(|l| l.host.as_str()).collect();
        assert_eq!(hosts, ["www.example.com", "192.0.2.7"]);
        assert_eq!(b.links[0].url, "www.example.com/a");
        assert!(!b.text.contains("secret"));
        assert_eq!(b.plain_parts, 1);
    }

    #[test]
    fn text_and_links_are_bounded() {
        let mut raw = String::from("From: a@example.org\r\nSubject: x\r\n\r\n");
        for i in 0..2000 {
            raw.push_str(&format!("http://h{i}.example/ "));
        }
        let view = MessageView::from_bytes(raw.as_bytes(), &Limits::default());
        let b = body_text(&view, 1000);
        assert!(b.text.len() <= 1000);
        assert!(b.truncated);
        let b = body_text(&view, 1 << 20);
        assert_eq!(b.links.len(), MAX_LINKS);
        // Broken markup never panics.
        for html in [
            "<a href=\"x",
            "<",
            "&#xFFFFFFFF;",
            "<a href='http://a.example'>",
            "&",
        ] {
            let raw = format!("Content-Type: text/html\r\n\r\n{html}");
            let v = MessageView::from_bytes(raw.as_bytes(), &Limits::default());
            let _ = body_text(&v, 100);
        }
    }
}
