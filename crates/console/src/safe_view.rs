//! The safe view of a held message: what the quarantine page shows of its content, built from
//! the one MIME view (`palisade_inspect::MessageView`, a pure crate) and sanitised HTML.
//!
//! HTML never reaches the browser as the mail wrote it: `ammonia` (an html5ever-based
//! allow-list) removes scripts, event handlers, styles, forms and frames; here every URL is
//! removed as well (links, images, anything with `src`/`href`), so that showing the message
//! makes no request at all, not even to the console itself. What remains is put in an
//! `<iframe sandbox srcdoc=…>` (no script, unique origin, no forms, no navigation) whose
//! document carries its own `default-src 'none'` policy on top of the console's, which it
//! inherits. Link targets and the number of removed images are shown beside it as text.

use std::sync::{Arc, Mutex};

use palisade_inspect::{MessageView, PartKind};

use crate::view::fmt_size;

/// Decoded text beyond this is cut off in the page (the download has everything).
pub const TEXT_LIMIT: usize = 256 * 1024;
/// HTML beyond this is not rendered (sanitising is linear, but the page should stay small).
pub const HTML_LIMIT: usize = 1024 * 1024;
/// The raw source shown in the page; beyond this, only the download.
pub const RAW_LIMIT: usize = 1024 * 1024;

/// The policy of the framed document, on top of the console's own (which it inherits): nothing
/// may be loaded from anywhere.
pub const FRAME_CSP: &str = "default-src 'none'; form-action 'none'; base-uri 'none'";

/// HTML made safe to show, and what was taken out of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SafeHtml {
    /// The sanitised fragment (no script, no style, no URL).
    pub html: String,
    /// Images whose source was removed (remote, `cid:` or `data:` alike).
    pub images_removed: usize,
    /// Link targets that were removed, in order, each once; shown as text.
    pub links: Vec<String>,
}

/// Sanitises an HTML part for display: ammonia's allow-list, plus no URL of any kind.
pub fn sanitise_html(html: &str) -> SafeHtml {
    let removed: Arc<Mutex<(usize, Vec<String>)>> = Arc::default();
    let seen = removed.clone();
    let html = ammonia::Builder::default()
        // ammonia drops URLs with other schemes before the filter below sees them; the
        // filter then removes every URL that is left, unconditionally (and notes it).
        .add_url_schemes(["cid", "data"])
        .url_relative(ammonia::UrlRelative::PassThrough)
        .link_rel(None)
        .strip_comments(true)
        .attribute_filter(move |element, attribute, value| {
            let url = matches!(
                attribute,
                "href"
                    | "src"
                    | "srcset"
                    | "xlink:href"
                    | "action"
                    | "formaction"
                    | "poster"
                    | "background"
                    | "cite"
                    | "longdesc"
                    | "data"
                    | "ping"
            );
            if !url {
                return Some(value.into());
            }
            let mut r = seen.lock().unwrap_or_else(|p| p.into_inner());
            if element == "img" && attribute == "src" {
                r.0 += 1;
            } else if element == "a" && attribute == "href" {
                let target = value.trim().to_string();
                if !target.is_empty() && !r.1.contains(&target) && r.1.len() < 200 {
                    r.1.push(target);
                }
            }
            None
        })
        .clean(html)
        .to_string();
    let (images_removed, links) =
        std::mem::take(&mut *removed.lock().unwrap_or_else(|p| p.into_inner()));
    SafeHtml {
        html,
        images_removed,
        links,
    }
}

/// The document the sandboxed frame shows (its `srcdoc`; the template escapes it).
pub fn frame_document(safe: &SafeHtml) -> String {
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{FRAME_CSP}\">\
         </head><body>{}</body></html>",
        safe.html
    )
}

/// An attachment (or archive member, or attached message) as listed on the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub section: String,
    pub path: String,
    pub filename: String,
    pub declared: String,
    /// From the content's first bytes, never from the name or the declared type.
    pub real: String,
    pub size: String,
    pub note: String,
}

/// What the page shows of a message's content.
#[derive(Debug, Clone, Default)]
pub struct Rendering {
    /// The first plain-text body part (decoded), cut at [`TEXT_LIMIT`].
    pub text: Option<String>,
    /// The first HTML body part, sanitised.
    pub html: Option<SafeHtml>,
    /// Why there is no HTML rendering although there is an HTML part (too large).
    pub html_note: Option<String>,
    pub attachments: Vec<Attachment>,
    /// The MIME view's verdict on visibility (a limit hit, a parse failure).
    pub uninspectable: Option<String>,
}

fn cut(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n[… {} more; download the message to see all of it]",
        &text[..end],
        fmt_size((text.len() - end) as u64)
    )
}

/// Builds the rendering of a message from its MIME view.
pub fn render(view: &MessageView) -> Rendering {
    let mut r = Rendering {
        uninspectable: view.uninspectable().map(str::to_string),
        ..Default::default()
    };
    for (i, p) in view.parts().iter().enumerate() {
        let body_leaf = p.kind == PartKind::Leaf && !p.is_attachment;
        let declared = p.declared_type.as_deref().unwrap_or("");
        // A message without Content-Type is text/plain (RFC 2045).
        let plain = declared == "text/plain" || (declared.is_empty() && p.depth == 0);
        if body_leaf
            && plain
            && r.text.is_none()
            && let Some(t) = view.text(i)
        {
            r.text = Some(cut(&t, TEXT_LIMIT));
            continue;
        }
        if body_leaf
            && declared == "text/html"
            && r.html.is_none()
            && r.html_note.is_none()
            && let Some(t) = view.text(i)
        {
            if t.len() > HTML_LIMIT {
                r.html_note = Some(format!(
                    "The HTML part is {}: too large to show here; download the message.",
                    fmt_size(t.len() as u64)
                ));
            } else {
                r.html = Some(sanitise_html(&t));
            }
            continue;
        }
        let listed = p.is_attachment
            || matches!(p.kind, PartKind::ArchiveMember { .. })
            || (p.kind == PartKind::Leaf && !declared.starts_with("text/"));
        if listed {
            let mut note = Vec::new();
            if p.encrypted {
                note.push("encrypted");
            }
            if let (Some(rt), false) = (&p.real_type, declared.is_empty())
                && rt.mime != declared
                && !(rt.mime.starts_with("text/") && declared.starts_with("text/"))
            {
                note.push("real type differs from the declared one");
            }
            r.attachments.push(Attachment {
                section: p.section.clone(),
                path: p.path.clone(),
                filename: p.filename.clone().unwrap_or_default(),
                declared: p.declared_type.clone().unwrap_or_else(|| "—".into()),
                real: p
                    .real_type
                    .as_ref()
                    .map(|t| format!("{} (.{})", t.mime, t.extension))
                    .unwrap_or_else(|| match p.kind {
                        PartKind::Message => "message/rfc822".into(),
                        _ => "unknown".into(),
                    }),
                size: fmt_size(p.size),
                note: note.join("; "),
            });
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_handlers_styles_and_every_url_are_removed() {
        let s = sanitise_html(
            r#"<p onclick="steal()">Hello <b>you</b></p>
            <script>document.title = "PWNED"</script>
            <img src="http://127.0.0.1:9/x.png" alt="logo" onerror="alert(1)">
            <img src="cid:part1" alt="inline">
            <img src="/logout">
            <a href="https://phish.example/login?x=1">Log in</a>
            <a href="javascript:alert(1)">js</a>
            <a href="https://phish.example/login?x=1">again</a>
            <style>body{background:url(http://127.0.0.1:9/bg)}</style>
            <div style="background:url(http://127.0.0.1:9/s)">styled</div>
            <iframe src="http://127.0.0.1:9/f"></iframe>
            <form action="http://127.0.0.1:9/post"><input name="p"></form>
            <svg><image href="http://127.0.0.1:9/svg"/></svg>
            <link rel="stylesheet" href="http://127.0.0.1:9/css">
            <base href="http://127.0.0.1:9/">
            <!-- a comment with http://127.0.0.1:9/c -->"#,
        );
        let h = s.html.to_lowercase();
        for bad in [
            "<script",
            "pwned",
            "onclick",
            "onerror",
            "<style",
            "style=",
            "<iframe",
            "<form",
            "<input",
            "<link",
            "<base",
            "<svg",
            "<image",
            "href",
            "src",
            "http",
            "javascript",
            "127.0.0.1",
            "<!--",
        ] {
            assert!(!h.contains(bad), "{bad} left in {}", s.html);
        }
        assert!(s.html.contains("Hello <b>you</b>"), "{}", s.html);
        assert!(s.html.contains("alt=\"logo\""), "{}", s.html);
        assert!(s.html.contains("Log in") && s.html.contains("styled"));
        assert_eq!(s.images_removed, 3);
        // javascript: is not a scheme ammonia lets through at all; the rest is listed once.
        assert_eq!(s.links, ["https://phish.example/login?x=1"]);
    }

    #[test]
    fn the_frame_document_forbids_every_load() {
        let d = frame_document(&sanitise_html("<p>x</p>"));
        assert!(d.contains("default-src 'none'"));
        assert!(d.ends_with("<body><p>x</p></body></html>"));
    }

    fn view(raw: &str) -> MessageView {
        MessageView::from_bytes(raw.as_bytes(), &palisade_inspect::Limits::default())
    }

    #[test]
    fn text_html_and_attachments_with_their_real_types() {
        let raw = "From: a@example.org\r\nTo: b@example.test\r\nSubject: s\r\n\
            MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
            --b1\r\nContent-Type: multipart/alternative; boundary=\"b2\"\r\n\r\n\
            --b2\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlain words\r\n\
            --b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
            <p>Rich <script>x()</script><img src=\"http://h/x.png\"></p>\r\n--b2--\r\n\
            --b1\r\nContent-Type: application/pdf; name=\"invoice.pdf\"\r\n\
            Content-Disposition: attachment; filename=\"invoice.pdf\"\r\n\
            Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAA\r\n--b1--\r\n";
        let r = render(&view(raw));
        assert_eq!(r.text.as_deref().map(str::trim), Some("Plain words"));
        let html = r.html.expect("html part");
        assert!(html.html.contains("Rich") && !html.html.contains("script"));
        assert_eq!(html.images_removed, 1);
        assert_eq!(r.attachments.len(), 1, "{:?}", r.attachments);
        let a = &r.attachments[0];
        assert_eq!(a.filename, "invoice.pdf");
        assert_eq!(a.declared, "application/pdf");
        // An executable named .pdf: the listing says what it really is.
        assert!(
            a.real.contains("x-msdownload") || a.real.contains("exe"),
            "{a:?}"
        );
        assert!(a.note.contains("differs"), "{a:?}");
        assert!(r.uninspectable.is_none());
    }

    #[test]
    fn a_plain_message_and_long_text() {
        let body = "x".repeat(TEXT_LIMIT + 10);
        let r = render(&view(&format!("Subject: s\r\n\r\n{body}\r\n")));
        let t = r.text.unwrap();
        assert!(t.len() < TEXT_LIMIT + 100 && t.contains("download the message"));
        assert!(r.html.is_none() && r.attachments.is_empty());
    }
}
