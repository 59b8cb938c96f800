//! The `attachments` check: attachments by what they really are (`[attachments]`).
//!
//! Every leaf of the MIME view and every archive member is looked at, whatever its declared
//! Content-Type says:
//!
//! - `executable`: PE (MZ with a `PE\0\0` header, or MZ on binary content), ELF, Mach-O
//!   (thin and fat), MSI (an OLE2 file with the Windows Installer class id), by magic bytes;
//! - `script`: a name whose extension is in `attachments.script_extensions` (`.js`, `.vbs`,
//!   `.ps1`, `.hta`, …). Scripts have no magic bytes, so here — and only here — the name is the
//!   signal; a part so named is a script whatever it contains (unless it is an executable,
//!   which is reported as such). Windows shortcuts (`.lnk`) and compiled help (`.chm`) are also
//!   recognised by their magic, and a named part starting with `#!`;
//! - `macro_document`: an OOXML document (a zip) with a `vbaProject.bin` member or a
//!   `macroEnabled` content type in `[Content_Types].xml`; an OLE2 document (`.doc`, `.xls`,
//!   `.ppt`) with a `_VBA_PROJECT`/`VBA`/`Macros` entry (read with the `cfb` crate). Excel 4.0
//!   (XLM) macros without a VBA project are not recognised;
//! - `disk_image`: ISO 9660 / UDF (`CD001`, `BEA01`, `NSR02/03` at 0x8001, 0x8801, 0x9001),
//!   VHD (`conectix` at the start or in the footer), VHDX (`vhdxfile`), DMG (`koly` trailer),
//!   qcow2; `.img`/`.iso`/`.vhd(x)`/`.dmg` names only when nothing recognised the content;
//! - `encrypted_archive`: a zip with an encrypted member (its content cannot be seen);
//! - `double_extension`: a harmless-looking extension followed by a dangerous one
//!   (`invoice.pdf.exe`), three or more spaces before a dangerous extension, or a name with
//!   bidirectional-override characters (`invoice\u{202E}fdp.exe`).
//!
//! Each category's action is `allow`, `block` (554 5.7.1 at DATA naming the category and the
//! part), `quarantine`, or `strip`: the nearest part that can be cut out of the message on its
//! own (the attachment itself, the zip holding a member, the attached message holding a part)
//! is replaced by a short text part ([`Edit::StripParts`]); the engine keeps the original in
//! quarantine for the recipients who get the stripped copy. A block or quarantine wins over a
//! strip (the message is refused or held whole). A part that cannot be cut out alone (the
//! message *is* the attachment) is quarantined instead.

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use palisade_inspect::{MessageView, Part, PartKind};
use palisade_policy::{Action, Decision, Explanation, Reply, Scope, StrippedPart};
use palisade_store::config::{AttachmentAction, Attachments};
use serde::Serialize;
use serde_json::json;

use super::{Check, CheckFuture, Findings, Subject};

/// What an attachment really is, for `[attachments]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Executable,
    Script,
    MacroDocument,
    DiskImage,
    EncryptedArchive,
    DoubleExtension,
}

impl Category {
    pub fn name(self) -> &'static str {
        match self {
            Category::Executable => "executable",
            Category::Script => "script",
            Category::MacroDocument => "macro_document",
            Category::DiskImage => "disk_image",
            Category::EncryptedArchive => "encrypted_archive",
            Category::DoubleExtension => "double_extension",
        }
    }

    fn action(self, cfg: &Attachments) -> AttachmentAction {
        match self {
            Category::Executable => cfg.executable,
            Category::Script => cfg.script,
            Category::MacroDocument => cfg.macro_document,
            Category::DiskImage => cfg.disk_image,
            Category::EncryptedArchive => cfg.encrypted_archive,
            Category::DoubleExtension => cfg.double_extension,
        }
    }
}

/// One finding: a part and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Index into the view's parts.
    pub part: usize,
    pub category: Category,
    /// What exactly was seen (`a PE executable`, `a member word/vbaProject.bin`).
    pub evidence: String,
}

/// Extensions that look harmless to a reader (the first of a double extension).
const HARMLESS: &[&str] = &[
    "pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "rtf", "txt", "csv", "odt", "ods", "odp",
    "jpg", "jpeg", "png", "gif", "bmp", "tif", "tiff", "heic", "mp3", "mp4", "wav", "avi", "mov",
    "zip", "rar", "7z", "htm", "html", "xml", "json", "eml", "msg", "ics", "vcf", "dcm",
];

/// Extensions that run something when opened (the second of a double extension), besides the
/// configured script extensions.
const DANGEROUS: &[&str] = &[
    "exe", "scr", "com", "pif", "cpl", "msi", "msp", "mst", "dll", "sys", "bat", "cmd", "js",
    "jse", "vbs", "vbe", "wsf", "wsh", "ps1", "hta", "lnk", "jar", "iso", "img", "vhd", "vhdx",
    "dmg",
];

const DISK_IMAGE_NAMES: &[&str] = &["img", "iso", "vhd", "vhdx", "dmg"];

const OLE2: &[u8] = b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1";
/// Windows Installer package, patch and transform class ids.
const MSI_CLSIDS: &[&str] = &[
    "000c1084-0000-0000-c000-000000000046",
    "000c1086-0000-0000-c000-000000000046",
    "000c1082-0000-0000-c000-000000000046",
];
const LNK: &[u8] =
    b"\x4C\x00\x00\x00\x01\x14\x02\x00\x00\x00\x00\x00\xC0\x00\x00\x00\x00\x00\x00\x46";

fn extension(name: &str) -> Option<String> {
    let name = name.trim_end_matches([' ', '.']);
    let (_, ext) = name.rsplit_once('.')?;
    (!ext.is_empty()).then(|| ext.to_ascii_lowercase())
}

fn is_texty(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(8192)];
    head.iter()
        .all(|&c| c >= 0x20 || matches!(c, b'\t' | b'\n' | b'\r' | 0x0c | 0x1b))
}

/// An executable by its magic bytes, and which kind.
pub fn executable_kind(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"MZ") {
        let pe = bytes
            .get(0x3c..0x40)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .and_then(|off| bytes.get(off..off.checked_add(4)?))
            .is_some_and(|sig| sig == b"PE\0\0");
        if pe {
            return Some("a Windows (PE) executable");
        }
        if !is_texty(bytes) {
            return Some("a DOS/Windows (MZ) executable");
        }
    }
    if bytes.starts_with(b"\x7FELF") {
        return Some("an ELF executable");
    }
    match bytes.get(..4) {
        Some([0xfe, 0xed, 0xfa, 0xce | 0xcf]) | Some([0xce | 0xcf, 0xfa, 0xed, 0xfe]) => {
            return Some("a Mach-O executable");
        }
        // Fat Mach-O shares CAFEBABE with Java classes; a fat binary has few architectures.
        Some([0xca, 0xfe, 0xba, 0xbe]) => {
            let n = bytes
                .get(4..8)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            if n.is_some_and(|n| (1..30).contains(&n)) {
                return Some("a Mach-O universal executable");
            }
        }
        _ => {}
    }
    None
}

/// What an OLE2 (compound file) holds: an installer package, or a VBA project.
#[derive(Debug, PartialEq, Eq)]
enum Ole {
    Installer,
    Vba(String),
    Other,
}

fn ole(bytes: &[u8]) -> Ole {
    let look = || -> Ole {
        let Ok(file) = cfb::CompoundFile::open(Cursor::new(bytes)) else {
            return Ole::Other;
        };
        let clsid = file.root_entry().clsid().to_string();
        if MSI_CLSIDS.contains(&clsid.as_str()) {
            return Ole::Installer;
        }
        for entry in file.walk() {
            let name = entry.name();
            if name.eq_ignore_ascii_case("_VBA_PROJECT")
                || name.eq_ignore_ascii_case("_VBA_PROJECT_CUR")
                || (entry.is_storage()
                    && (name.eq_ignore_ascii_case("VBA") || name.eq_ignore_ascii_case("Macros")))
            {
                return Ole::Vba(super::printable_line(
                    &entry.path().display().to_string(),
                    150,
                ));
            }
        }
        Ole::Other
    };
    // A hostile compound file must not take the check down with it.
    catch_unwind(AssertUnwindSafe(look)).unwrap_or(Ole::Other)
}

/// A disk image by its magic bytes.
pub fn disk_image_kind(bytes: &[u8]) -> Option<&'static str> {
    for off in [0x8001usize, 0x8801, 0x9001] {
        match bytes.get(off..off + 5) {
            Some(b"CD001") => return Some("an ISO 9660 disk image"),
            Some(b"BEA01") | Some(b"NSR02") | Some(b"NSR03") => {
                return Some("a UDF disk image");
            }
            _ => {}
        }
    }
    if bytes.starts_with(b"vhdxfile") {
        return Some("a VHDX disk image");
    }
    let tail = |n: usize| bytes.len().checked_sub(n).and_then(|s| bytes.get(s..));
    if bytes.starts_with(b"conectix")
        || tail(512).is_some_and(|t| t.starts_with(b"conectix"))
        || tail(511).is_some_and(|t| t.starts_with(b"conectix"))
    {
        return Some("a VHD disk image");
    }
    if tail(512).is_some_and(|t| t.starts_with(b"koly")) {
        return Some("an Apple disk image (DMG)");
    }
    if bytes.starts_with(b"QFI\xFB") {
        return Some("a QEMU (qcow) disk image");
    }
    None
}

/// Why a name is a disguise, if it is one.
pub fn double_extension(name: &str, scripts: &[String]) -> Option<String> {
    const BIDI: &[char] = &[
        '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}',
        '\u{2068}', '\u{2069}', '\u{200E}', '\u{200F}',
    ];
    if name.contains(BIDI) {
        return Some(
            "its name contains a text-direction override that hides its real extension".into(),
        );
    }
    let trimmed = name.trim_end_matches([' ', '.']);
    let (stem, last) = trimmed.rsplit_once('.')?;
    let last = last.to_ascii_lowercase();
    let dangerous =
        DANGEROUS.contains(&last.as_str()) || scripts.iter().any(|s| s.eq_ignore_ascii_case(&last));
    if !dangerous {
        return None;
    }
    let spaces = stem.chars().rev().take_while(|c| c.is_whitespace()).count();
    if spaces >= 3 {
        return Some(format!("{spaces} spaces hide its real extension .{last}"));
    }
    let (_, before) = stem.trim_end().rsplit_once('.')?;
    let before = before.trim().to_ascii_lowercase();
    HARMLESS
        .contains(&before.as_str())
        .then(|| format!("it looks like a .{before} file but its real extension is .{last}"))
}

/// Every finding in the view, in part order.
pub fn detect(view: &MessageView, cfg: &Attachments) -> Vec<Finding> {
    let parts = view.parts();
    let mut out = Vec::new();
    // OOXML documents with macros: found from their members (the view lists zips).
    let mut macro_zips: Vec<(usize, Vec<String>)> = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let PartKind::ArchiveMember { archive, .. } = p.kind else {
            continue;
        };
        let name = p.filename.as_deref().unwrap_or("");
        let lower = name.to_ascii_lowercase();
        let evidence = if lower.ends_with("vbaproject.bin") {
            Some(format!(
                "it contains a VBA project ({})",
                super::printable_line(name, 150)
            ))
        } else if lower == "[content_types].xml"
            && view.decoded(i).is_some_and(|b| {
                // The declarations are at its start; a huge one is not read whole.
                b[..b.len().min(1024 * 1024)]
                    .to_ascii_lowercase()
                    .windows(12)
                    .any(|w| w == b"macroenabled")
            })
        {
            Some("its [Content_Types].xml declares a macro-enabled document".to_string())
        } else {
            None
        };
        if let Some(evidence) = evidence {
            match macro_zips.iter_mut().find(|(a, _)| *a == archive) {
                Some((_, all)) => all.push(evidence),
                None => macro_zips.push((archive, vec![evidence])),
            }
        }
    }
    for (archive, mut evidence) in macro_zips.iter().cloned() {
        evidence.sort(); // "it contains …" before "its …"
        out.push(Finding {
            part: archive,
            category: Category::MacroDocument,
            evidence: evidence.join("; "),
        });
    }
    let mut encrypted_zips: Vec<usize> = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let is_member = matches!(p.kind, PartKind::ArchiveMember { .. });
        if !matches!(p.kind, PartKind::Leaf) && !is_member {
            continue;
        }
        let name = p.filename.as_deref();
        if p.encrypted
            && let PartKind::ArchiveMember { archive, .. } = p.kind
            && !encrypted_zips.contains(&archive)
        {
            encrypted_zips.push(archive);
            out.push(Finding {
                part: archive,
                category: Category::EncryptedArchive,
                evidence: format!(
                    "its member {} is encrypted and cannot be inspected",
                    super::printable_line(name.unwrap_or("?"), 150)
                ),
            });
        }
        let bytes = if p.encrypted { None } else { view.decoded(i) };
        let bytes: &[u8] = bytes.as_deref().unwrap_or(&[]);
        let mut found = |category, evidence: String| {
            out.push(Finding {
                part: i,
                category,
                evidence,
            })
        };
        let exe = executable_kind(bytes);
        let ole_kind = if bytes.starts_with(OLE2) {
            ole(bytes)
        } else {
            Ole::Other
        };
        if let Some(kind) = exe {
            found(Category::Executable, format!("it is {kind}"));
        } else if ole_kind == Ole::Installer {
            found(
                Category::Executable,
                "it is a Windows Installer package (MSI)".into(),
            );
        }
        let in_macro_zip = match p.kind {
            PartKind::ArchiveMember { archive, .. } => {
                macro_zips.iter().any(|(a, _)| *a == archive)
            }
            _ => false,
        };
        if let Ole::Vba(entry) = &ole_kind
            && !in_macro_zip
        {
            found(
                Category::MacroDocument,
                format!("it is an OLE2 Office document with a VBA project ({entry})"),
            );
        }
        let ext = name.and_then(extension);
        if exe.is_none() {
            let by_name = ext.as_deref().filter(|e| {
                cfg.script_extensions
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(e))
            });
            if bytes.starts_with(LNK) {
                found(Category::Script, "it is a Windows shortcut (.lnk)".into());
            } else if bytes.starts_with(b"ITSF") {
                found(
                    Category::Script,
                    "it is compiled HTML help (.chm), which runs scripts".into(),
                );
            } else if let Some(e) = by_name {
                found(Category::Script, format!("its name ends in .{e}, a script"));
            } else if name.is_some() && bytes.starts_with(b"#!") && is_texty(bytes) {
                found(
                    Category::Script,
                    "it is a script (it starts with #!)".into(),
                );
            }
        }
        if let Some(kind) = disk_image_kind(bytes) {
            found(Category::DiskImage, format!("it is {kind}"));
        } else if let Some(e) = ext.as_deref().filter(|e| DISK_IMAGE_NAMES.contains(e))
            && p.real_type.is_none()
            && !p.encrypted
            && !bytes.is_empty()
        {
            found(
                Category::DiskImage,
                format!("its name ends in .{e} and its content is not recognised"),
            );
        }
        if let Some(why) = name.and_then(|n| double_extension(n, &cfg.script_extensions)) {
            found(Category::DoubleExtension, why);
        }
    }
    out.sort_by_key(|f| (f.part, f.category));
    out.dedup_by_key(|f| (f.part, f.category));
    out
}

/// The part to cut out of the message to remove part `i`: itself if it is a MIME part of a
/// multipart with known offsets, else the nearest container that is (the zip of a member, the
/// attached message of a part). `None` when only the whole message would do.
pub fn strippable(parts: &[Part], i: usize) -> Option<usize> {
    let mut j = i;
    loop {
        let p = parts.get(j)?;
        let parent = p.parent?;
        let in_multipart = matches!(parts.get(parent)?.kind, PartKind::Multipart);
        let cut = p.span.is_some_and(|s| s.start > 0 && s.start < s.end);
        if in_multipart && cut && !matches!(p.kind, PartKind::ArchiveMember { .. }) {
            return Some(j);
        }
        j = parent;
    }
}

fn describe(c: Category) -> &'static str {
    match c {
        Category::Executable => "an executable program",
        Category::Script => "a script",
        Category::MacroDocument => "an Office document with macros",
        Category::DiskImage => "a disk image",
        Category::EncryptedArchive => "an encrypted archive that cannot be inspected",
        Category::DoubleExtension => "a file with a disguised name",
    }
}

/// A finding to strip: its part, category and sentence.
type StripItem = (usize, Category, String);

/// One flagged part, for the facts.
#[derive(Debug, Serialize)]
struct Flagged {
    section: String,
    path: String,
    name: Option<String>,
    real_type: Option<String>,
    category: Category,
    action: AttachmentAction,
    sentence: String,
}

pub struct AttachmentsCheck {
    cfg: Arc<Attachments>,
}

impl AttachmentsCheck {
    pub fn new(cfg: Attachments) -> AttachmentsCheck {
        AttachmentsCheck { cfg: Arc::new(cfg) }
    }

    pub fn findings(&self, view: &MessageView) -> Findings {
        let cfg = &self.cfg;
        let parts = view.parts();
        let found = detect(view, cfg);
        let mut flagged = Vec::new();
        let mut decisions = Vec::new();
        // Strip: by the part that is cut out, so one zip with two programs is one note.
        let mut strips: Vec<(usize, Vec<StripItem>)> = Vec::new();
        let mut worst = AttachmentAction::Allow;
        for f in &found {
            let p = &parts[f.part];
            let action = f.category.action(cfg);
            let label = super::printable_line(&p.path, 150);
            let sentence = format!(
                "The attachment {label} is {} ({}): {}.",
                describe(f.category),
                f.category.name(),
                f.evidence
            );
            let explanation = Explanation::new("attachments", f.category.name(), sentence.clone());
            let mut effective = action;
            let mut sentence_out = sentence.clone();
            match action {
                AttachmentAction::Allow => {
                    sentence_out = format!(
                        "{sentence} Allowed (attachments.{} = \"allow\").",
                        f.category.name()
                    );
                }
                AttachmentAction::Block => decisions.push(Decision::new(
                    Scope::Message,
                    Action::reject(Reply::new(
                        554,
                        "5.7.1",
                        format!(
                            "Message refused: attachment {} is not allowed ({})",
                            super::printable_line(&p.path, 120),
                            f.category.name()
                        ),
                    )),
                    explanation,
                )),
                AttachmentAction::Quarantine => decisions.push(Decision::new(
                    Scope::Message,
                    Action::quarantine(format!(
                        "attachment: {} ({})",
                        super::printable_line(&p.path, 150),
                        f.category.name()
                    )),
                    explanation,
                )),
                AttachmentAction::Strip => match strippable(parts, f.part) {
                    Some(cut) => match strips.iter_mut().find(|(c, _)| *c == cut) {
                        Some((_, items)) => items.push((f.part, f.category, sentence.clone())),
                        None => strips.push((cut, vec![(f.part, f.category, sentence.clone())])),
                    },
                    None => {
                        effective = AttachmentAction::Quarantine;
                        sentence_out = format!(
                            "{sentence} It cannot be removed on its own (it is the whole message), so the message is held."
                        );
                        decisions.push(Decision::new(
                            Scope::Message,
                            Action::quarantine(format!(
                                "attachment: {} ({})",
                                super::printable_line(&p.path, 150),
                                f.category.name()
                            )),
                            Explanation::new(
                                "attachments",
                                f.category.name(),
                                sentence_out.clone(),
                            ),
                        ));
                    }
                },
            }
            worst = worst.max(effective);
            flagged.push(Flagged {
                section: p.section.clone(),
                path: p.path.clone(),
                name: p.filename.clone(),
                real_type: p.real_type.as_ref().map(|t| t.mime.clone()),
                category: f.category,
                action: effective,
                sentence: sentence_out,
            });
        }
        // A refusal or a hold concerns the whole message: nothing is stripped then.
        let mut contributions = Vec::new();
        if worst <= AttachmentAction::Strip {
            for (cut, items) in &strips {
                let p = &parts[*cut];
                let Some(span) = p.span else { continue };
                let name = super::printable_line(&p.path, 150);
                let mut cats: Vec<Category> = items.iter().map(|(_, c, _)| *c).collect();
                cats.sort();
                cats.dedup();
                let cats: Vec<&str> = cats.into_iter().map(Category::name).collect();
                let reason = cats.join(", ");
                let mut note = format!(
                    "Palisade removed the attachment \"{name}\" from this message ({reason}).\r\n"
                );
                for (i, c, _) in items {
                    if *i != *cut {
                        note.push_str(&format!(
                            "It contains {}: {}.\r\n",
                            super::printable_line(&parts[*i].path, 150),
                            describe(*c)
                        ));
                    } else {
                        note.push_str(&format!("It is {}.\r\n", describe(*c)));
                    }
                }
                note.push_str(
                    "The original message is kept in quarantine; ask your mail administrator if you need it released.",
                );
                let sentences: Vec<&str> = items.iter().map(|(_, _, s)| s.as_str()).collect();
                decisions.push(Decision::new(
                    Scope::Message,
                    Action::strip_parts(vec![StrippedPart {
                        section: p.section.clone(),
                        name: name.clone(),
                        reason: reason.clone(),
                        start: span.start,
                        end: span.end,
                        note,
                    }]),
                    Explanation::new(
                        "attachments",
                        cats[0],
                        format!(
                            "{} Removed from the delivered copy ({name} replaced by a note); the original is kept in quarantine.",
                            sentences.join(" ")
                        ),
                    ),
                ));
            }
        } else {
            for (_, items) in &strips {
                for (_, c, s) in items {
                    contributions.push(Explanation::new(
                        "attachments",
                        c.name(),
                        format!("{s} Not stripped: the whole message is refused or held."),
                    ));
                }
            }
        }
        Findings {
            facts: json!({
                "status": if flagged.is_empty() { "none" } else { "flagged" },
                "action": worst.name(),
                "flagged": flagged,
            }),
            contributions,
            decisions,
            ..Default::default()
        }
    }
}

impl Check for AttachmentsCheck {
    fn name(&self) -> &str {
        "attachments"
    }

    fn run(&self, subject: Subject) -> CheckFuture {
        let check = AttachmentsCheck {
            cfg: self.cfg.clone(),
        };
        Box::pin(async move {
            // Decompressing members again and reading compound files is CPU work.
            tokio::task::spawn_blocking(move || check.findings(&subject.view))
                .await
                .map_err(|e| format!("the attachments check stopped: {e}"))
        })
    }
}

#[cfg(test)]
mod tests;
