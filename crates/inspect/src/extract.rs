//! The text of every part, for the detectors that read what a message says (DLP): the message's
//! own text and HTML bodies in their charsets, text attachments (CSV, TXT, XML) and archive
//! members, the text of Office Open XML and OpenDocument files (their XML members, read in
//! place: a document, sheet or presentation is one location), RTF, PDF (`pdf`) and the files
//! inside `winmail.dat` (`tnef`).
//!
//! What cannot be read is never silently passed over: every part that may hold text but could
//! not be read (an encrypted archive member, a password-protected or encrypted document, an
//! S/MIME or OpenPGP encrypted part, a legacy binary Office file, a PDF that cannot be parsed,
//! text beyond the budget) is listed in [`Extracted::unscannable`] with its reason, and so is
//! the whole message when the view itself is uninspectable. Parts that hold no text (images,
//! audio, executables) are counted in `skipped`.
//!
//! Bounded: at most `max_bytes` of text in all (the view's own limits bound everything it
//! decoded); a PDF gets its own budget in `pdf`.

use std::borrow::Cow;

use serde::Serialize;

use crate::text::{decode_entities, html_to_plain};
use crate::{MessageView, PartKind, pdf, tnef};

/// One piece of text and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TextOf {
    /// `body` for the message's own text, else the part's path (`report.zip/q3.xlsx`).
    pub location: String,
    pub text: String,
}

/// A part that may hold text the detectors could not see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unscannable {
    pub location: String,
    pub reason: String,
}

/// What [`extract`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Extracted {
    pub texts: Vec<TextOf>,
    pub unscannable: Vec<Unscannable>,
    /// Parts that hold no text (images, media, programs): not read, not unscannable.
    pub skipped: usize,
    /// Bytes of text in `texts`.
    pub bytes: usize,
}

impl Extracted {
    fn push(&mut self, location: &str, text: String, max_bytes: usize) {
        if text.trim().is_empty() {
            return;
        }
        let room = max_bytes.saturating_sub(self.bytes);
        let text = if text.len() > room {
            self.unscannable(
                location,
                format!("text beyond the scanning limit of {max_bytes} bytes was not read"),
            );
            let mut end = room;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text[..end].to_string()
        } else {
            text
        };
        if text.is_empty() {
            return;
        }
        self.bytes += text.len();
        match self.texts.last_mut() {
            // The members of one document are one location: context words reach across.
            Some(last) if last.location == location => {
                last.text.push('\n');
                last.text.push_str(&text);
            }
            _ => self.texts.push(TextOf {
                location: location.to_string(),
                text,
            }),
        }
    }

    fn unscannable(&mut self, location: &str, reason: impl Into<String>) {
        let reason = reason.into();
        if !self
            .unscannable
            .iter()
            .any(|u| u.location == location && u.reason == reason)
        {
            self.unscannable.push(Unscannable {
                location: location.to_string(),
                reason,
            });
        }
    }
}

/// Which document format an archive is, when it is a document rather than an archive.
fn office_kind(view: &MessageView, archive: usize) -> Option<&'static str> {
    let p = &view.parts()[archive];
    let ext = p.real_type.as_ref().map(|t| t.extension.as_str());
    let named = p
        .filename
        .as_deref()
        .and_then(|n| n.rsplit_once('.'))
        .map(|(_, e)| e.to_ascii_lowercase());
    let by_ext = |e: &str| -> Option<&'static str> {
        Some(match e {
            "docx" | "docm" | "dotx" => "docx",
            "xlsx" | "xlsm" | "xltx" => "xlsx",
            "pptx" | "pptm" | "ppsx" => "pptx",
            "odt" | "ods" | "odp" | "odg" | "ott" => "odf",
            "epub" => "epub",
            _ => return None,
        })
    };
    if let Some(k) = ext.and_then(by_ext) {
        return Some(k);
    }
    // infer names some OOXML files only "zip"; their members say what they are.
    let members = view
        .parts()
        .iter()
        .filter(|m| matches!(m.kind, PartKind::ArchiveMember { archive: a, .. } if a == archive));
    for m in members {
        match m.filename.as_deref() {
            Some("[Content_Types].xml") => return Some("ooxml"),
            Some("mimetype") => return Some("odf"),
            _ => {}
        }
    }
    named.as_deref().and_then(by_ext)
}

/// XML members of a document that hold no text a person wrote.
fn office_noise(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let base = lower.rsplit('/').next().unwrap_or(&lower);
    !(lower.ends_with(".xml") || lower.ends_with(".xhtml") || lower.ends_with(".html"))
        || lower.contains("_rels/")
        || lower.starts_with("meta-inf/")
        || lower.contains("/theme/")
        || matches!(
            base,
            "[content_types].xml"
                | "styles.xml"
                | "settings.xml"
                | "fonttable.xml"
                | "websettings.xml"
                | "numbering.xml"
                | "calcchain.xml"
                | "manifest.xml"
                | "presprops.xml"
                | "viewprops.xml"
                | "tablestyles.xml"
        )
}

/// The location a part's text is reported under: `body` for the message's own text parts,
/// the document for the members of an Office file, else the part's path.
fn location_of(view: &MessageView, i: usize) -> String {
    let parts = view.parts();
    let mut j = i;
    let mut own = !parts[i].is_attachment;
    while let Some(p) = parts[j].parent {
        if parts[p].kind != PartKind::Multipart {
            own = false;
        }
        j = p;
    }
    if own && parts[i].kind == PartKind::Leaf {
        "body".to_string()
    } else {
        parts[i].path.clone()
    }
}

/// The text of every part of `view`, at most `max_bytes` in all, and what could not be read.
pub fn extract(view: &MessageView, max_bytes: usize) -> Extracted {
    let mut out = Extracted::default();
    // Inflating PDF streams: one budget for all the PDFs of the message.
    let mut pdf_budget: u64 = 128 * 1024 * 1024;
    if let Some(reason) = view.uninspectable() {
        out.unscannable("message", reason);
    }
    // What each archive is (a document or an archive), worked out once per archive.
    let mut office: std::collections::HashMap<usize, Option<&'static str>> =
        std::collections::HashMap::new();
    let parts = view.parts();
    for (i, part) in parts.iter().enumerate() {
        if matches!(part.kind, PartKind::Multipart | PartKind::Message) {
            if part.declared_type.as_deref() == Some("multipart/encrypted") {
                out.unscannable(
                    &part.path,
                    "encrypted (OpenPGP/MIME or another multipart/encrypted)",
                );
            }
            continue;
        }
        if part
            .parent
            .is_some_and(|p| parts[p].declared_type.as_deref() == Some("multipart/encrypted"))
        {
            continue;
        }
        // The members of an Office document are read as the document.
        if let PartKind::ArchiveMember { archive, .. } = part.kind
            && let Some(kind) = *office
                .entry(archive)
                .or_insert_with(|| office_kind(view, archive))
        {
            let name = part.filename.as_deref().unwrap_or("");
            let location = parts[archive].path.clone();
            if part.encrypted {
                out.unscannable(&location, "encrypted document member");
                continue;
            }
            if office_noise(name) {
                continue;
            }
            match view.decoded(i) {
                Some(bytes) => {
                    let xml = String::from_utf8_lossy(&bytes);
                    let text = xml_text(&xml, kind != "epub" || name.ends_with(".opf"));
                    out.push(&location, text, max_bytes);
                }
                None if part.size > 0 => {
                    out.unscannable(&location, format!("{name}: not read (over a limit)"))
                }
                None => {}
            }
            continue;
        }
        let location = location_of(view, i);
        if part.encrypted {
            out.unscannable(&location, "encrypted archive member");
            continue;
        }
        let declared = part.declared_type.as_deref().unwrap_or("");
        let real = part
            .real_type
            .as_ref()
            .map(|t| t.mime.as_str())
            .unwrap_or("");
        let name = part.filename.as_deref().unwrap_or("").to_ascii_lowercase();
        if matches!(
            declared,
            "application/pkcs7-mime" | "application/x-pkcs7-mime"
        ) || name.ends_with(".p7m")
        {
            out.unscannable(
                &location,
                "S/MIME enveloped or opaque-signed content is not read",
            );
            continue;
        }
        // An archive's own bytes: its members are parts of their own.
        if real == "application/zip" || office_kind_of_type(real) {
            continue;
        }
        let Some(bytes) = view.decoded(i) else {
            if part.size > 0 && !matches!(part.kind, PartKind::Leaf) {
                out.unscannable(&location, "not read (over a limit)");
            }
            continue;
        };
        if real == "application/pdf" || bytes.starts_with(b"%PDF-") {
            match pdf::text_within(&bytes, &mut pdf_budget) {
                Ok(text) => out.push(&location, text, max_bytes),
                Err(why) => out.unscannable(&location, format!("PDF: {why}")),
            }
            continue;
        }
        if declared == "application/ms-tnef"
            || declared == "application/vnd.ms-tnef"
            || bytes.starts_with(&tnef::SIGNATURE)
        {
            match tnef::read(&bytes) {
                Ok(found) => {
                    for (inner, text) in found.texts {
                        let loc = format!("{location}/{inner}");
                        out.push(&loc, text, max_bytes);
                    }
                    for (inner, why) in found.unscannable {
                        out.unscannable(&format!("{location}/{inner}"), why);
                    }
                }
                Err(why) => out.unscannable(&location, format!("winmail.dat (TNEF): {why}")),
            }
            continue;
        }
        if real == "application/rtf" || bytes.starts_with(b"{\\rtf") {
            out.push(&location, rtf_text(&bytes), max_bytes);
            continue;
        }
        if matches!(
            real,
            "application/msword"
                | "application/vnd.ms-excel"
                | "application/vnd.ms-powerpoint"
                | "application/x-ole-storage"
        ) {
            let why = if contains_utf16(&bytes, "EncryptedPackage") {
                "password-protected Office document: its content cannot be read"
            } else {
                "legacy binary Office document (.doc/.xls/.ppt): its text is not read"
            };
            out.unscannable(&location, why);
            continue;
        }
        if let Some(kind) = unread_archive(real, &bytes) {
            out.unscannable(
                &location,
                format!("{kind} archive: its members are not read"),
            );
            continue;
        }
        if let Some(text) = text_of(view, i, &bytes, declared, real, &name) {
            if text.contains("-----BEGIN PGP MESSAGE-----") {
                out.unscannable(&location, "inline OpenPGP encrypted text is not read");
            }
            out.push(&location, text, max_bytes);
            continue;
        }
        out.skipped += 1;
    }
    out
}

/// An archive or compressed file whose content is not read here (only zip is): by its real
/// type, or its magic bytes when the type was not recognised. Never clean: unscannable.
fn unread_archive(real: &str, bytes: &[u8]) -> Option<&'static str> {
    let by_type = match real {
        "application/gzip" | "application/x-gzip" => Some("gzip"),
        "application/x-tar" => Some("tar"),
        "application/x-7z-compressed" => Some("7-Zip"),
        "application/vnd.rar" | "application/x-rar-compressed" => Some("RAR"),
        "application/x-bzip2" => Some("bzip2"),
        "application/x-xz" => Some("xz"),
        "application/zstd" => Some("zstd"),
        "application/vnd.ms-cab-compressed" => Some("cabinet"),
        "application/x-lzip" | "application/x-compress" => Some("compressed"),
        "application/x-iso9660-image" => Some("disk image"),
        _ => None,
    };
    // By magic only when the type was not recognised: a text starting "BZh" is text.
    let unknown = real.is_empty() || real == "application/octet-stream";
    by_type.or_else(|| {
        if !unknown {
            return None;
        }
        let magic: &[(&[u8], &str)] = &[
            (&[0x1f, 0x8b], "gzip"),
            (b"7z\xbc\xaf\x27\x1c", "7-Zip"),
            (b"Rar!\x1a\x07", "RAR"),
            (b"BZh", "bzip2"),
            (&[0xfd, b'7', b'z', b'X', b'Z', 0], "xz"),
            (&[0x28, 0xb5, 0x2f, 0xfd], "zstd"),
            (b"MSCF", "cabinet"),
        ];
        magic
            .iter()
            .find(|(m, _)| bytes.starts_with(m))
            .map(|(_, k)| *k)
            .or_else(|| (bytes.get(257..262) == Some(b"ustar")).then_some("tar"))
    })
}

fn office_kind_of_type(mime: &str) -> bool {
    mime.starts_with("application/vnd.openxmlformats-officedocument.")
        || mime.starts_with("application/vnd.oasis.opendocument.")
        || mime == "application/epub+zip"
}

/// The part as Unicode text when it is text: declared `text/*` in its charset, or text by its
/// content (UTF-8, or UTF-16 with a byte-order mark); HTML reduced to what a reader sees, XML
/// to its character data.
fn text_of(
    view: &MessageView,
    i: usize,
    bytes: &[u8],
    declared: &str,
    real: &str,
    name: &str,
) -> Option<String> {
    let utf16 = if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        Some(utf16(rest, u16::from_le_bytes))
    } else {
        bytes
            .strip_prefix(&[0xFE, 0xFF])
            .map(|rest| utf16(rest, u16::from_be_bytes))
    };
    let text: Cow<'_, str> = match utf16 {
        Some(t) => Cow::Owned(t),
        None => match view.text(i) {
            Some(t) => t,
            None if real.starts_with("text/") => String::from_utf8_lossy(bytes),
            None => return None,
        },
    };
    let html = declared == "text/html"
        || real == "text/html"
        || name.ends_with(".html")
        || name.ends_with(".htm");
    let xml = !html && (real == "text/xml" || declared.ends_with("/xml") || name.ends_with(".xml"));
    Some(if html {
        html_to_plain(&text)
    } else if xml {
        xml_text(&text, false)
    } else {
        text.into_owned()
    })
}

fn utf16(bytes: &[u8], word: fn([u8; 2]) -> u16) -> String {
    let units = bytes.chunks_exact(2).map(|c| word([c[0], c[1]]));
    char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

fn contains_utf16(bytes: &[u8], needle: &str) -> bool {
    let n: Vec<u8> = needle.encode_utf16().flat_map(u16::to_le_bytes).collect();
    memchr::memmem::find(bytes, &n).is_some()
}

/// The character data of an XML document. `office`: the layout of Office Open XML and
/// OpenDocument (runs of one paragraph joined as they are shown — Word splits a number across
/// runs —, paragraphs and rows on lines of their own, cells and tabs as tabs, a spreadsheet
/// cell's shared-string index left out); otherwise every tag separates.
pub(crate) fn xml_text(xml: &str, office: bool) -> String {
    let mut out = String::with_capacity(xml.len() / 4);
    let mut rest = xml;
    // Inside an XLSX cell whose value is an index into the shared strings.
    let mut shared_index = false;
    let mut in_value = false;
    // Inside an element whose content is not text (<w:instrText>, <f> formulas are kept).
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            out.push_str(&decode_entities(rest));
            break;
        };
        if !(shared_index && in_value) {
            out.push_str(&decode_entities(&rest[..lt]));
        }
        rest = &rest[lt..];
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |e| &after[e + 3..]);
            continue;
        }
        if let Some(after) = rest.strip_prefix("<![CDATA[") {
            let end = after.find("]]>").unwrap_or(after.len());
            out.push_str(&after[..end]);
            rest = after.get(end + 3..).unwrap_or("");
            continue;
        }
        let Some(gt) = rest.find('>') else { break };
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        let closing = tag.starts_with('/');
        let body = tag.trim_start_matches('/');
        let qname = body
            .split(|c: char| c.is_whitespace() || c == '/')
            .next()
            .unwrap_or("");
        let local = qname.rsplit(':').next().unwrap_or(qname);
        if !office {
            out.push('\n');
            continue;
        }
        match local {
            "p" | "si" | "row" | "br" | "cr" | "tr" | "h" | "list-item" | "line-break" => {
                out.push('\n')
            }
            "tab" | "c" | "table-cell" | "tc" | "td" => out.push('\t'),
            "s" if qname.starts_with("text:") => out.push(' '),
            _ => {}
        }
        if local == "c" && !closing {
            shared_index = body.contains("t=\"s\"") || body.contains("t='s'");
        } else if local == "c" && closing {
            shared_index = false;
        }
        if local == "v" {
            in_value = !closing && !body.ends_with('/');
        }
    }
    out
}

/// The text of an RTF document: control words dropped (paragraphs and cells kept as line
/// breaks and tabs), `\'hh` escapes as Windows-1252, `\uN` as Unicode, and the groups that
/// hold no text (font and colour tables, style sheets, pictures, embedded objects, `\*`
/// destinations) skipped.
pub(crate) fn rtf_text(bytes: &[u8]) -> String {
    const SKIP: &[&str] = &[
        "fonttbl",
        "colortbl",
        "stylesheet",
        "info",
        "pict",
        "object",
        "themedata",
        "colorschememapping",
        "datastore",
        "latentstyles",
        "listtable",
        "listoverridetable",
        "rsidtbl",
        "generator",
        "xmlnstbl",
        "mmathpr",
        "filetbl",
        "revtbl",
    ];
    let decode_1252 = mail_parser::decoders::charsets::map::charset_decoder(b"windows-1252");
    let mut out = String::new();
    let mut pending: Vec<u8> = Vec::new();
    let flush = |pending: &mut Vec<u8>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        match decode_1252 {
            Some(d) => out.push_str(&d(pending)),
            None => out.push_str(&String::from_utf8_lossy(pending)),
        }
        pending.clear();
    };
    // Per group: skipping its text.
    let mut stack: Vec<bool> = vec![false];
    let mut skip_chars = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let skipping = *stack.last().unwrap_or(&false);
        let c = bytes[i];
        match c {
            b'{' => {
                stack.push(skipping);
                if stack.len() > 1000 {
                    break;
                }
                i += 1;
            }
            b'}' => {
                if stack.len() > 1 {
                    stack.pop();
                }
                i += 1;
            }
            b'\\' => {
                let Some(&n) = bytes.get(i + 1) else { break };
                if n.is_ascii_alphabetic() {
                    let start = i + 1;
                    let mut j = start;
                    while j < bytes.len() && bytes[j].is_ascii_alphabetic() && j - start < 32 {
                        j += 1;
                    }
                    let word = std::str::from_utf8(&bytes[start..j]).unwrap_or("");
                    let num_start = j;
                    if j < bytes.len() && bytes[j] == b'-' {
                        j += 1;
                    }
                    while j < bytes.len() && bytes[j].is_ascii_digit() && j - num_start < 10 {
                        j += 1;
                    }
                    let num: Option<i64> = std::str::from_utf8(&bytes[num_start..j])
                        .ok()
                        .and_then(|s| s.parse().ok());
                    if j < bytes.len() && bytes[j] == b' ' {
                        j += 1;
                    }
                    i = j;
                    if SKIP.contains(&word) {
                        if let Some(top) = stack.last_mut() {
                            *top = true;
                        }
                        continue;
                    }
                    if skipping {
                        if word == "bin" {
                            i += num.unwrap_or(0).max(0) as usize;
                        }
                        continue;
                    }
                    match word {
                        "par" | "line" | "row" | "sect" | "page" => {
                            flush(&mut pending, &mut out);
                            out.push('\n');
                        }
                        "tab" | "cell" => {
                            flush(&mut pending, &mut out);
                            out.push('\t');
                        }
                        "u" => {
                            flush(&mut pending, &mut out);
                            let n = num.unwrap_or(0);
                            let n = if n < 0 { n + 65536 } else { n };
                            if let Some(ch) = char::from_u32(n as u32) {
                                out.push(ch);
                            }
                            skip_chars = 1;
                        }
                        "bin" => i += num.unwrap_or(0).max(0) as usize,
                        _ => {}
                    }
                } else {
                    i += 2;
                    match n {
                        b'*' => {
                            if let Some(top) = stack.last_mut() {
                                *top = true;
                            }
                        }
                        b'\'' => {
                            let hex = bytes
                                .get(i..i + 2)
                                .and_then(|h| std::str::from_utf8(h).ok());
                            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                                if skip_chars > 0 {
                                    skip_chars -= 1;
                                } else if !skipping {
                                    pending.push(b);
                                }
                            }
                            i += 2;
                        }
                        b'~' if !skipping => pending.push(b' '),
                        b'\\' | b'{' | b'}' if !skipping => pending.push(n),
                        b'\n' | b'\r' if !skipping => {
                            flush(&mut pending, &mut out);
                            out.push('\n');
                        }
                        _ => {}
                    }
                }
            }
            b'\r' | b'\n' => i += 1,
            _ => {
                if skip_chars > 0 {
                    skip_chars -= 1;
                } else if !skipping {
                    pending.push(c);
                }
                i += 1;
            }
        }
    }
    flush(&mut pending, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn office_xml_joins_runs_and_separates_cells() {
        let docx = r#"<w:document><w:body><w:p><w:r><w:t>NHS 943 476</w:t></w:r><w:r><w:t xml:space="preserve"> 5919</w:t></w:r></w:p><w:p><w:r><w:t>next &amp; last</w:t></w:r></w:p></w:body></w:document>"#;
        let t = xml_text(docx, true);
        assert!(t.contains("NHS 943 476 5919\n"), "{t:?}");
        assert!(t.contains("next & last"), "{t:?}");
        let sheet = r#"<sheetData><row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1"><v>9434765919</v></c></row><row r="2"><c r="A2"><v>4010232137</v></c></row></sheetData>"#;
        let t = xml_text(sheet, true);
        assert!(
            t.contains("\t9434765919\t") && t.contains("4010232137"),
            "{t:?}"
        );
        assert!(
            !t.contains("\t0\t"),
            "a shared-string index is no text: {t:?}"
        );
    }

    #[test]
    fn archives_not_read_are_named_never_clean() {
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        for (bytes, kind) in [
            (&[0x1f, 0x8b, 8, 0][..], "gzip"),
            (&b"7z\xbc\xaf\x27\x1c\0\x04"[..], "7-Zip"),
            (&b"Rar!\x1a\x07\x01\0"[..], "RAR"),
            (&b"BZh91AY&SY"[..], "bzip2"),
            (&tar[..], "tar"),
        ] {
            assert_eq!(unread_archive("", bytes), Some(kind));
        }
        assert_eq!(unread_archive("application/gzip", b""), Some("gzip"));
        assert_eq!(unread_archive("text/plain", b"BZh is text here"), None);
        assert_eq!(unread_archive("", b"NHS 943 476 5919"), None);

        // In a message: the part is unscannable, with its kind.
        let gz = {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(b"NHS 943 476 5919").unwrap();
            e.finish().unwrap()
        };
        let b64 = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(&gz)
        };
        let raw = format!(
            "From: a@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\nContent-Type: application/octet-stream; name=list.csv.gz\r\nContent-Disposition: attachment; filename=list.csv.gz\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--b--\r\n"
        );
        let view = crate::MessageView::from_bytes(raw.as_bytes(), &crate::Limits::default());
        let out = extract(&view, 1 << 20);
        assert!(
            out.unscannable
                .iter()
                .any(|u| u.location.contains("list.csv.gz") && u.reason.contains("gzip")),
            "{:?}",
            out.unscannable
        );
    }

    #[test]
    fn rtf_keeps_the_text_and_drops_the_tables() {
        let rtf = br"{\rtf1\ansi{\fonttbl{\f0 Arial;}}{\colortbl;\red0\green0\blue0;}{\*\generator Riched20;}\f0 Patient NHS 943 476 5919\par Caf\'e9 \u8364? end}";
        let t = rtf_text(rtf);
        assert!(t.contains("Patient NHS 943 476 5919\n"), "{t:?}");
        assert!(t.contains("Café €"), "{t:?}");
        assert!(!t.contains("Arial") && !t.contains("Riched"), "{t:?}");
    }
}
