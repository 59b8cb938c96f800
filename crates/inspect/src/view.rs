//! [`MessageView`]: building it from the parsed message, and reading it.

use std::borrow::Cow;
use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::Instant;

use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::{Encoding, Message, MessageParser, MimeHeaders, PartType};
use serde::Serialize;

use crate::archive;
use crate::limits::{LimitHit, LimitKind, Limits};

/// The real type of a part, from its first bytes (the `infer` crate), or `text/plain` for
/// bytes that are text without a more specific signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RealType {
    pub mime: String,
    pub extension: String,
}

/// What a part is in the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PartKind {
    /// A MIME part with content (text, image, attachment, …).
    Leaf,
    /// A `multipart/*` container; its parts follow it.
    Multipart,
    /// An attached message (`message/rfc822`); its own parts follow it.
    Message,
    /// A member of the zip archive that is part `archive` (an index into
    /// [`MessageView::parts`]); `index` is its position in that archive.
    ArchiveMember { archive: usize, index: usize },
}

/// One node of the tree: a MIME part, an attached message, or an archive member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Part {
    /// Unique position: `1` is the message, `1.2` the second part of it, `1.3.1` the root of
    /// the message attached as `1.3`, `1.2/4` the fourth entry of the archive `1.2`.
    pub section: String,
    /// For people: the file names of the containers (attached messages, archives) and of the
    /// part, joined by `/` (`report.zip/q3.xlsx`); a part without a name shows its section.
    /// Not unique (two attachments may share a name).
    pub path: String,
    /// 0 for the message itself; +1 per multipart, attached message or archive level.
    pub depth: u32,
    /// Index of the enclosing part in [`MessageView::parts`].
    pub parent: Option<usize>,
    pub kind: PartKind,
    /// Content-Type as declared (`type/subtype`, lower case); `None` if absent (and for
    /// archive members, which declare nothing).
    pub declared_type: Option<String>,
    /// The declared file name (RFC 2231 / RFC 2047 decoded), or the archive member's name.
    pub filename: Option<String>,
    /// Content-Disposition type as declared (`attachment`, `inline`).
    pub disposition: Option<String>,
    /// Disposition `attachment`, a named leaf, an attached message, or an archive member.
    pub is_attachment: bool,
    /// From the content's magic bytes; `None` for containers, empty parts and unrecognised
    /// binary content.
    pub real_type: Option<RealType>,
    /// Bytes after decoding (transfer encoding undone, archive member decompressed). For a
    /// member that was not read (encrypted, over a limit) the size its archive declares.
    pub size: u64,
    /// An encrypted archive member (its content could not be seen).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
    /// Where this MIME part's bytes are in the message the view was built from, so an edit can
    /// replace it in place (strip an attachment). `None` for archive members and for the parts
    /// of an attached message sent with a transfer encoding (those exist only decoded).
    #[serde(skip)]
    pub span: Option<Span>,
}

/// Byte offsets of one MIME part in the raw message: its first header line, its body, and the
/// end of its body. The end is before the line break that belongs to the next boundary
/// delimiter, so `raw[start..end]` can be replaced by another part with the delimiters
/// around it left intact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Span {
    pub start: u64,
    pub body: u64,
    pub end: u64,
}

/// Something mail-parser or the archive reader had to forgive, or could not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// No header block: not a message at all.
    NotAMessage,
    /// `multipart/*` without a boundary, or whose boundary never appears.
    MissingBoundary,
    /// A multipart whose closing delimiter is missing.
    UnterminatedMultipart,
    /// The transfer encoding could not be decoded.
    UndecodablePart,
    /// An attached message that could not be parsed, or nested too deep for the parser.
    AttachedMessageUnparsed,
    /// An archive (or one of its members) that cannot be read.
    CorruptArchive,
    /// An encrypted archive member.
    EncryptedArchiveMember,
    /// A member compressed with a method this build cannot decompress.
    UnsupportedCompression,
    /// A member that decompresses to more bytes than its archive declares.
    ArchiveSizeMismatch,
    /// A parser panicked (a bug there; caught).
    ParserPanic,
}

/// One anomaly and where it was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Anomaly {
    pub kind: AnomalyKind,
    /// The [`Part::section`] concerned (empty for the message as a whole).
    pub section: String,
    pub detail: String,
}

/// A mailbox from an address header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: Option<String>,
}

/// A header field as it was sent: name and raw (unfolded, undecoded) value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeaderField {
    pub name: String,
    pub value: String,
}

/// The message's top-level header fields (not those of attached messages, which are parts).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Headers {
    pub from: Vec<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub reply_to: Vec<Mailbox>,
    /// RFC 2047 decoded.
    pub subject: Option<String>,
    /// Without the angle brackets.
    pub message_id: Option<String>,
    /// RFC 3339, as parsed from the Date field.
    pub date: Option<String>,
    /// Every field in order, raw (lossy UTF-8, leading/trailing white space trimmed).
    pub all: Vec<HeaderField>,
}

/// What message tracking stores about a message (same shape and bounds as the engine's
/// tracking headers: each value cut at 998 bytes on a character boundary).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tracking {
    /// With angle brackets: `<id@host>`.
    pub message_id: Option<String>,
    pub subject: Option<String>,
    /// The first From address.
    pub from: Option<String>,
}

/// Where a part's bytes are.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    /// Containers; parts never decoded.
    None,
    Bytes(Vec<u8>),
    /// Decompressed again on demand from the archive part.
    Member {
        archive: usize,
        index: usize,
    },
}

/// The bounded, parse-once view of one message. See the crate documentation.
#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    headers: Headers,
    parts: Vec<Part>,
    #[serde(rename = "limits")]
    limits_hit: Vec<LimitHit>,
    anomalies: Vec<Anomaly>,
    uninspectable: Option<String>,
    #[serde(skip)]
    bodies: Vec<Body>,
    #[serde(skip)]
    charsets: Vec<Option<String>>,
    #[serde(skip)]
    limits: Limits,
}

impl MessageView {
    /// Builds the view of `raw` (a whole RFC 5322 message). Never fails and never panics:
    /// what cannot be parsed or exceeds `limits` is reported in the view.
    pub fn from_bytes(raw: &[u8], limits: &Limits) -> MessageView {
        let mut b = Builder::new(limits);
        if raw.len() as u64 > limits.max_message_bytes {
            b.hit(
                LimitKind::MaxMessageBytes,
                format!(
                    "message is {} bytes, limit {}",
                    raw.len(),
                    limits.max_message_bytes
                ),
            );
            return b.finish(Headers::default());
        }
        let parsed = catch_unwind(|| MessageParser::default().parse(raw));
        let headers = match parsed {
            Err(_) => {
                b.anomaly(
                    AnomalyKind::ParserPanic,
                    "",
                    "mail-parser panicked on this message",
                    true,
                );
                Headers::default()
            }
            Ok(None) => {
                b.anomaly(
                    AnomalyKind::NotAMessage,
                    "",
                    "no header block could be parsed",
                    true,
                );
                Headers::default()
            }
            Ok(Some(message)) => {
                let headers = headers_of(&message);
                b.check_time();
                if catch_unwind(AssertUnwindSafe(|| b.walk(&message))).is_err() {
                    b.anomaly(
                        AnomalyKind::ParserPanic,
                        "",
                        "a parser panicked while walking this message",
                        true,
                    );
                }
                headers
            }
        };
        b.finish(headers)
    }

    /// Reads the spool file at `path` (at most `limits.max_message_bytes`; a longer file is
    /// not read and comes back uninspectable) and builds its view. Errors are I/O errors only.
    pub fn from_file(path: &Path, limits: &Limits) -> std::io::Result<MessageView> {
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        if len > limits.max_message_bytes {
            let mut b = Builder::new(limits);
            b.hit(
                LimitKind::MaxMessageBytes,
                format!("message is {len} bytes, limit {}", limits.max_message_bytes),
            );
            return Ok(b.finish(Headers::default()));
        }
        let mut raw = Vec::with_capacity(len as usize);
        file.take(limits.max_message_bytes.saturating_add(1))
            .read_to_end(&mut raw)?;
        Ok(MessageView::from_bytes(&raw, limits))
    }

    /// `Some(reason)` when the filters cannot see the whole message (a limit was hit, it could
    /// not be parsed, an archive is encrypted or corrupt, …): treat the message as suspect.
    /// `None` means only that everything was visible, not that anything is harmless.
    pub fn uninspectable(&self) -> Option<&str> {
        self.uninspectable.as_deref()
    }

    /// The limits that were hit (the first hit of each kind).
    pub fn limits_hit(&self) -> &[LimitHit] {
        &self.limits_hit
    }

    /// What the parsers had to forgive or could not.
    pub fn anomalies(&self) -> &[Anomaly] {
        &self.anomalies
    }

    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// Every part, attached-message part and archive member, in tree order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The limits the view was built with.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// What message tracking stores.
    pub fn tracking(&self) -> Tracking {
        Tracking {
            message_id: self
                .headers
                .message_id
                .as_ref()
                .map(|id| bounded(&format!("<{id}>"))),
            subject: self.headers.subject.as_deref().map(bounded),
            from: self
                .headers
                .from
                .iter()
                .find_map(|m| m.address.as_deref())
                .map(bounded),
        }
    }

    /// The part's content, decoded: a MIME leaf with its transfer encoding undone (text in its
    /// original charset), an attached message as its raw bytes, an archive member decompressed
    /// (again, with the same bounds as when it was listed). `None` for containers, for a
    /// member that was not read (encrypted, over a limit, unreadable), and for a bad index.
    pub fn decoded(&self, part: usize) -> Option<Cow<'_, [u8]>> {
        match self.bodies.get(part)? {
            Body::None => None,
            Body::Bytes(bytes) => Some(Cow::Borrowed(bytes)),
            Body::Member { archive, index } => {
                if *archive >= part {
                    return None; // cannot happen (archives come before their members)
                }
                let container = self.decoded(*archive)?;
                let expected = self.parts[part].size;
                archive::read_member(&container, *index, expected).map(Cow::Owned)
            }
        }
    }

    /// A text part's content as Unicode: declared `text/*` parts decoded from their declared
    /// charset (unknown or absent: UTF-8, invalid sequences replaced); other parts whose real
    /// type is `text/*` as UTF-8. `None` for everything else.
    pub fn text(&self, part: usize) -> Option<Cow<'_, str>> {
        let p = self.parts.get(part)?;
        let declared_text = p
            .declared_type
            .as_deref()
            .is_some_and(|t| t.starts_with("text/"));
        let real_text = p
            .real_type
            .as_ref()
            .is_some_and(|t| t.mime.starts_with("text/"));
        if !declared_text && !real_text {
            return None;
        }
        let bytes = self.decoded(part)?;
        let decoder = self
            .charsets
            .get(part)?
            .as_deref()
            .and_then(|c| charset_decoder(c.as_bytes()));
        Some(match (decoder, bytes) {
            (Some(decode), bytes) => Cow::Owned(decode(&bytes)),
            (None, Cow::Borrowed(b)) => String::from_utf8_lossy(b),
            (None, Cow::Owned(b)) => Cow::Owned(String::from_utf8_lossy(&b).into_owned()),
        })
    }
}

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

fn mailboxes(address: Option<&mail_parser::Address<'_>>) -> Vec<Mailbox> {
    address
        .map(|a| {
            a.iter()
                .map(|m| Mailbox {
                    name: m.name().map(str::to_string),
                    address: m.address().map(str::to_string),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn headers_of(message: &Message<'_>) -> Headers {
    let raw = message.raw_message();
    let all = message
        .root_part()
        .headers
        .iter()
        .map(|h| HeaderField {
            name: h.name.as_str().to_string(),
            value: raw
                .get(h.offset_start as usize..h.offset_end as usize)
                .map(|v| String::from_utf8_lossy(v).trim().to_string())
                .unwrap_or_default(),
        })
        .collect();
    Headers {
        from: mailboxes(message.from()),
        to: mailboxes(message.to()),
        cc: mailboxes(message.cc()),
        reply_to: mailboxes(message.reply_to()),
        subject: message.subject().map(str::to_string),
        message_id: message.message_id().map(str::to_string),
        date: message.date().map(|d| d.to_rfc3339()),
        all,
    }
}

/// The real type of `bytes` (at least its first 64 KiB).
pub(crate) fn sniff(bytes: &[u8]) -> Option<RealType> {
    if bytes.is_empty() {
        return None;
    }
    if let Some(t) = infer::get(bytes) {
        return Some(RealType {
            mime: t.mime_type().to_string(),
            extension: t.extension().to_string(),
        });
    }
    let head = &bytes[..bytes.len().min(8192)];
    let texty = head
        .iter()
        .all(|&c| c >= 0x20 || matches!(c, b'\t' | b'\n' | b'\r' | 0x0c | 0x1b));
    texty.then(|| RealType {
        mime: "text/plain".to_string(),
        extension: "txt".to_string(),
    })
}

/// Zip local-file or end-of-central-directory signature (an empty zip has only the latter).
pub(crate) fn looks_like_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06")
}

/// One MIME part waiting to be walked.
struct Item<'m, 'x> {
    message: &'m Message<'x>,
    id: u32,
    depth: u32,
    parent: Option<usize>,
    section: String,
    container: Option<String>,
    /// The parser's offsets of this part are offsets in the message the view was built from
    /// (false inside an attached message that had a transfer encoding).
    in_raw: bool,
}

pub(crate) struct Builder<'l> {
    pub(crate) limits: &'l Limits,
    start: Instant,
    pub(crate) parts: Vec<Part>,
    pub(crate) bodies: Vec<Body>,
    charsets: Vec<Option<String>>,
    limits_hit: Vec<LimitHit>,
    anomalies: Vec<Anomaly>,
    uninspectable: Option<String>,
    /// Decoded MIME leaves plus decompressed archive members so far.
    pub(crate) decoded_total: u64,
    pub(crate) archive_members: u64,
    /// A limit that ends the whole walk (parts, time, decoded bytes) was hit.
    pub(crate) stopped: bool,
}

impl<'l> Builder<'l> {
    fn new(limits: &'l Limits) -> Self {
        Builder {
            limits,
            start: Instant::now(),
            parts: Vec::new(),
            bodies: Vec::new(),
            charsets: Vec::new(),
            limits_hit: Vec::new(),
            anomalies: Vec::new(),
            uninspectable: None,
            decoded_total: 0,
            archive_members: 0,
            stopped: false,
        }
    }

    fn finish(self, headers: Headers) -> MessageView {
        MessageView {
            headers,
            parts: self.parts,
            limits_hit: self.limits_hit,
            anomalies: self.anomalies,
            uninspectable: self.uninspectable,
            bodies: self.bodies,
            charsets: self.charsets,
            limits: self.limits.clone(),
        }
    }

    fn mark(&mut self, reason: String) {
        if self.uninspectable.is_none() {
            self.uninspectable = Some(reason);
        }
    }

    /// Records a limit hit (the first of each kind) and marks the message uninspectable.
    pub(crate) fn hit(&mut self, limit: LimitKind, detail: String) {
        self.mark(format!("limit {}: {detail}", limit.name()));
        if !self.limits_hit.iter().any(|h| h.limit == limit) {
            self.limits_hit.push(LimitHit { limit, detail });
        }
    }

    pub(crate) fn anomaly(
        &mut self,
        kind: AnomalyKind,
        section: &str,
        detail: impl Into<String>,
        uninspectable: bool,
    ) {
        let detail = detail.into();
        if uninspectable {
            let place = if section.is_empty() {
                String::new()
            } else {
                format!("part {section}: ")
            };
            self.mark(format!("{place}{detail}"));
        }
        // Bounded: a crafted message could otherwise produce one per part.
        if self.anomalies.len() < 100 {
            self.anomalies.push(Anomaly {
                kind,
                section: section.to_string(),
                detail,
            });
        }
    }

    /// Checks the time limit; on a hit stops the walk.
    pub(crate) fn check_time(&mut self) -> bool {
        let elapsed = self.start.elapsed();
        if elapsed.as_millis() >= u128::from(self.limits.max_time_ms) {
            self.hit(
                LimitKind::MaxTimeMs,
                format!(
                    "inspection took more than {} ms (stopped after {} parts)",
                    self.limits.max_time_ms,
                    self.parts.len()
                ),
            );
            self.stopped = true;
        }
        !self.stopped
    }

    /// Room for one more part? Otherwise records the hit and stops the walk.
    pub(crate) fn room_for_part(&mut self) -> bool {
        if self.parts.len() as u64 >= u64::from(self.limits.max_parts) {
            self.hit(
                LimitKind::MaxParts,
                format!("more than {} parts", self.limits.max_parts),
            );
            self.stopped = true;
        }
        !self.stopped
    }

    pub(crate) fn push(&mut self, part: Part, body: Body, charset: Option<String>) -> usize {
        self.parts.push(part);
        self.bodies.push(body);
        self.charsets.push(charset);
        self.parts.len() - 1
    }

    /// Adds `n` decoded bytes to the budget; false (and stops the walk) if over it.
    pub(crate) fn spend_decoded(&mut self, n: u64, what: &str) -> bool {
        self.decoded_total = self.decoded_total.saturating_add(n);
        if self.decoded_total > self.limits.max_decoded_bytes {
            self.hit(
                LimitKind::MaxDecodedBytes,
                format!(
                    "more than {} decoded bytes (at {what})",
                    self.limits.max_decoded_bytes
                ),
            );
            self.stopped = true;
        }
        !self.stopped
    }

    fn walk(&mut self, message: &Message<'_>) {
        let mut stack = vec![Item {
            message,
            id: 0,
            depth: 0,
            parent: None,
            section: "1".to_string(),
            container: None,
            in_raw: true,
        }];
        while let Some(item) = stack.pop() {
            if !self.check_time() || !self.room_for_part() {
                return;
            }
            if item.depth > self.limits.max_depth {
                self.hit(
                    LimitKind::MaxDepth,
                    format!(
                        "part {} is nested {} deep, limit {}",
                        item.section, item.depth, self.limits.max_depth
                    ),
                );
                continue;
            }
            self.walk_part(item, &mut stack);
            if self.stopped {
                return;
            }
        }
    }

    fn walk_part<'m, 'x>(&mut self, item: Item<'m, 'x>, stack: &mut Vec<Item<'m, 'x>>) {
        let msg = item.message;
        let Some(part) = msg.parts.get(item.id as usize) else {
            self.anomaly(
                AnomalyKind::CorruptArchive,
                &item.section,
                "the parser referred to a part that does not exist",
                true,
            );
            return;
        };
        let raw: &[u8] = &msg.raw_message;
        let ct = part.content_type();
        let declared_type = ct.map(|c| match c.subtype() {
            Some(sub) => format!("{}/{}", c.ctype(), sub).to_ascii_lowercase(),
            None => c.ctype().to_ascii_lowercase(),
        });
        let charset = ct.and_then(|c| c.attribute("charset")).map(str::to_string);
        let filename = part.attachment_name().map(str::to_string);
        let disposition = part
            .content_disposition()
            .map(|d| d.ctype().to_ascii_lowercase());
        let kind = match &part.body {
            PartType::Multipart(_) => PartKind::Multipart,
            PartType::Message(_) => PartKind::Message,
            _ => PartKind::Leaf,
        };
        let is_attachment = disposition.as_deref() == Some("attachment")
            || kind == PartKind::Message
            || (kind == PartKind::Leaf && filename.is_some());
        let label = filename.clone().unwrap_or_else(|| item.section.clone());
        let path = match &item.container {
            Some(c) => format!("{c}/{label}"),
            None => label,
        };
        let section = item.section;
        let declared_multipart = declared_type
            .as_deref()
            .is_some_and(|t| t.starts_with("multipart/"));
        let declared_message = declared_type
            .as_deref()
            .is_some_and(|t| t == "message/rfc822" || t == "message/global");

        let span = (item.in_raw
            && part.offset_header <= part.offset_body
            && part.offset_body <= part.offset_end
            && part.offset_end as usize <= raw.len())
        .then(|| Span {
            start: u64::from(part.offset_header),
            body: u64::from(part.offset_body),
            end: u64::from(part.offset_end),
        });
        let mut new = Part {
            section: section.clone(),
            path: path.clone(),
            depth: item.depth,
            parent: item.parent,
            kind,
            declared_type,
            filename,
            disposition,
            is_attachment,
            real_type: None,
            size: 0,
            encrypted: false,
            span,
        };

        match &part.body {
            PartType::Multipart(children) => {
                let boundary = ct.and_then(|c| c.attribute("boundary")).unwrap_or("");
                if !boundary.is_empty() && !closed(raw, part, boundary) {
                    self.anomaly(
                        AnomalyKind::UnterminatedMultipart,
                        &section,
                        format!("multipart boundary \"{boundary}\" is never closed"),
                        false,
                    );
                }
                let index = self.push(new, Body::None, None);
                for (n, &child) in children.iter().enumerate().rev() {
                    if child <= item.id {
                        continue; // never walk backwards: the walk must end
                    }
                    stack.push(Item {
                        message: msg,
                        id: child,
                        depth: item.depth + 1,
                        parent: Some(index),
                        section: format!("{section}.{}", n + 1),
                        container: item.container.clone(),
                        in_raw: item.in_raw,
                    });
                }
            }
            PartType::Message(nested) => {
                let bytes = if part.encoding == Encoding::None {
                    raw.get(part.offset_body as usize..part.offset_end as usize)
                        .unwrap_or_default()
                        .to_vec()
                } else {
                    nested.raw_message.to_vec()
                };
                new.size = bytes.len() as u64;
                new.real_type = Some(RealType {
                    mime: "message/rfc822".to_string(),
                    extension: "eml".to_string(),
                });
                let index = self.push(new, Body::Bytes(bytes), None);
                stack.push(Item {
                    message: nested,
                    id: 0,
                    depth: item.depth + 1,
                    parent: Some(index),
                    section: format!("{section}.1"),
                    container: Some(path),
                    // mail-parser parses an unencoded attached message in place (its offsets
                    // are the outer message's); an encoded one from its decoded bytes.
                    in_raw: item.in_raw && part.encoding == Encoding::None,
                });
            }
            body => {
                if part.is_encoding_problem {
                    if declared_message {
                        self.anomaly(
                            AnomalyKind::AttachedMessageUnparsed,
                            &section,
                            "attached message could not be parsed (or is nested deeper than the parser walks)",
                            true,
                        );
                    } else {
                        self.anomaly(
                            AnomalyKind::UndecodablePart,
                            &section,
                            "content transfer encoding could not be decoded",
                            true,
                        );
                    }
                } else if declared_multipart {
                    self.anomaly(
                        AnomalyKind::MissingBoundary,
                        &section,
                        "multipart without a boundary that appears in it: its parts cannot be separated",
                        true,
                    );
                }
                let bytes = leaf_bytes(raw, part, body);
                new.size = bytes.len() as u64;
                new.real_type = sniff(&bytes);
                let depth = item.depth;
                let index = self.push(new, Body::None, charset);
                if !self.spend_decoded(bytes.len() as u64, &path) {
                    return;
                }
                if looks_like_zip(&bytes) {
                    self.walk_archive(index, &bytes, 1, depth + 1);
                }
                self.bodies[index] = Body::Bytes(bytes);
            }
        }
    }
}

/// Whether a multipart's closing delimiter (`--boundary--`) appears in its body. The search
/// runs over the part's own bytes only when the parser knows where it ends (closed parts),
/// otherwise over the rest of the message.
fn closed(raw: &[u8], part: &mail_parser::MessagePart<'_>, boundary: &str) -> bool {
    let start = part.offset_body as usize;
    let end = part.offset_end as usize;
    let Some(body) = raw.get(start..).map(|rest| {
        if end > start {
            &rest[..(end - start).min(rest.len())]
        } else {
            rest
        }
    }) else {
        return false;
    };
    let mut delimiter = Vec::with_capacity(boundary.len() + 4);
    delimiter.extend_from_slice(b"--");
    delimiter.extend_from_slice(boundary.as_bytes());
    delimiter.extend_from_slice(b"--");
    memchr::memmem::rfind(body, &delimiter).is_some()
}

/// A leaf's bytes with the transfer encoding undone. Binary parts: as mail-parser decoded
/// them. Text parts: mail-parser has already converted them to UTF-8 (lossily, so a binary
/// file sent as `text/plain` would be damaged); their bytes are decoded again from the raw
/// message with mail-parser's own decoders, keeping the original bytes.
fn leaf_bytes(raw: &[u8], part: &mail_parser::MessagePart<'_>, body: &PartType<'_>) -> Vec<u8> {
    match body {
        PartType::Text(text) | PartType::Html(text) => {
            let Some(slice) = raw.get(part.offset_body as usize..part.offset_end as usize) else {
                return text.as_bytes().to_vec();
            };
            let mut stream = mail_parser::parsers::MessageStream::new(slice);
            let (end, bytes) = match part.encoding {
                Encoding::Base64 => stream.decode_base64_mime(b""),
                Encoding::QuotedPrintable => stream.decode_quoted_printable_mime(b""),
                Encoding::None => return slice.to_vec(),
            };
            if end == usize::MAX {
                text.as_bytes().to_vec()
            } else {
                bytes.into_owned()
            }
        }
        PartType::Binary(bytes) | PartType::InlineBinary(bytes) => bytes.to_vec(),
        PartType::Message(_) | PartType::Multipart(_) => Vec::new(),
    }
}
