//! Detection per category on real MIME, the decisions per action, and the strip rewrite.

use std::io::{Cursor, Write};

use base64::Engine;
use palisade_inspect::{Limits, MessageView};
use palisade_policy::{Action, Disposition, Edit};
use palisade_store::config::{AttachmentAction, Attachments};

use super::*;
use crate::pipeline::edit;

/// The smallest PE a loader would look at: MZ, e_lfanew = 0x40, "PE\0\0", a COFF header.
pub fn pe() -> Vec<u8> {
    let mut b = vec![0u8; 0x200];
    b[0..2].copy_from_slice(b"MZ");
    b[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
    b[0x40..0x44].copy_from_slice(b"PE\0\0");
    b[0x44..0x46].copy_from_slice(&0x14cu16.to_le_bytes()); // i386
    b
}

fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in files {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// Sets the "encrypted" flag of every entry, as a ZipCrypto archive has it.
fn mark_encrypted(mut zip: Vec<u8>) -> Vec<u8> {
    let mut i = 0;
    while i + 10 < zip.len() {
        if zip[i..].starts_with(b"PK\x03\x04") {
            zip[i + 6] |= 1;
        } else if zip[i..].starts_with(b"PK\x01\x02") {
            zip[i + 8] |= 1;
        }
        i += 1;
    }
    zip
}

fn docm() -> Vec<u8> {
    zip_of(&[
        (
            "[Content_Types].xml",
            b"<Types><Override PartName=\"/word/document.xml\" ContentType=\"application/vnd.ms-word.document.macroEnabled.main+xml\"/></Types>",
        ),
        ("word/document.xml", b"<w:document/>"),
        ("word/vbaProject.bin", b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1 vba"),
    ])
}

fn ole(with: &str) -> Vec<u8> {
    let mut f = cfb::CompoundFile::create(Cursor::new(Vec::new())).unwrap();
    match with {
        "vba" => {
            f.create_storage("/Macros").unwrap();
            f.create_storage("/Macros/VBA").unwrap();
            f.create_stream("/Macros/VBA/_VBA_PROJECT")
                .unwrap()
                .write_all(b"\xcc\x61")
                .unwrap();
            f.create_stream("/WordDocument")
                .unwrap()
                .write_all(b"doc")
                .unwrap();
        }
        "msi" => {
            let clsid = "000c1084-0000-0000-c000-000000000046".parse().unwrap();
            f.set_storage_clsid("/", clsid).unwrap();
            f.create_stream("/\u{4840}\u{3f3f}").unwrap();
        }
        _ => {
            f.create_stream("/WordDocument")
                .unwrap()
                .write_all(b"plain doc")
                .unwrap();
        }
    }
    f.flush().unwrap();
    f.into_inner().into_inner()
}

fn iso() -> Vec<u8> {
    let mut b = vec![0u8; 0x9000];
    b[0x8001..0x8006].copy_from_slice(b"CD001");
    b
}

fn b64(data: &[u8]) -> String {
    let s = base64::engine::general_purpose::STANDARD.encode(data);
    s.as_bytes()
        .chunks(76)
        .map(|c| format!("{}\r\n", std::str::from_utf8(c).unwrap()))
        .collect()
}

fn attachment(name: &str, ctype: &str, data: &[u8]) -> String {
    format!(
        "Content-Type: {ctype}; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
        b64(data)
    )
}

fn message(parts: &[String]) -> Vec<u8> {
    let mut s = String::from(
        "Received: from x by y; now\r\nFrom: a@example.org\r\nTo: b@example.test\r\nSubject: files\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\npreamble\r\n--outer\r\nContent-Type: text/plain\r\n\r\nSee the attachments.\r\n",
    );
    for p in parts {
        s.push_str(&format!("--outer\r\n{p}"));
    }
    s.push_str("--outer--\r\nepilogue\r\n");
    s.into_bytes()
}

fn view(raw: &[u8]) -> MessageView {
    MessageView::from_bytes(raw, &Limits::default())
}

fn found(raw: &[u8]) -> Vec<(String, &'static str)> {
    let v = view(raw);
    detect(&v, &Attachments::default())
        .into_iter()
        .map(|f| (v.parts()[f.part].path.clone(), f.category.name()))
        .collect()
}

#[test]
fn executables_by_magic_whatever_the_name_and_declared_type() {
    assert_eq!(executable_kind(&pe()), Some("a Windows (PE) executable"));
    let mut elf = b"\x7FELF\x02\x01\x01".to_vec();
    elf.resize(64, 0);
    assert_eq!(executable_kind(&elf), Some("an ELF executable"));
    assert_eq!(
        executable_kind(b"\xcf\xfa\xed\xfe\x07\x00\x00\x01"),
        Some("a Mach-O executable")
    );
    assert_eq!(
        executable_kind(b"\xca\xfe\xba\xbe\x00\x00\x00\x02"),
        Some("a Mach-O universal executable")
    );
    // A Java class shares the magic, with a version number far above an architecture count.
    assert_eq!(executable_kind(b"\xca\xfe\xba\xbe\x00\x00\x00\x37"), None);
    assert_eq!(executable_kind(b"MZ is also how this text starts"), None);

    let raw = message(&[attachment("invoice.pdf", "application/pdf", &pe())]);
    assert_eq!(found(&raw), [("invoice.pdf".to_string(), "executable")]);
    // Inside a zip inside a zip.
    let inner = zip_of(&[("setup.exe", &pe())]);
    let outer = zip_of(&[("inner.zip", &inner), ("readme.txt", b"read me")]);
    let raw = message(&[attachment("docs.zip", "application/zip", &outer)]);
    assert_eq!(
        found(&raw),
        [("docs.zip/inner.zip/setup.exe".to_string(), "executable")]
    );
    // An installer package is a compound file with the installer's class id.
    let raw = message(&[attachment("update.doc", "application/msword", &ole("msi"))]);
    assert_eq!(found(&raw), [("update.doc".to_string(), "executable")]);
}

#[test]
fn scripts_by_name_and_shortcuts_by_magic() {
    let raw = message(&[
        attachment("run.js", "text/plain", b"WScript.Echo('x')"),
        attachment("notes.txt", "text/plain", b"just notes"),
        attachment(
            "Setup.PS1",
            "application/octet-stream",
            b"Invoke-WebRequest x",
        ),
        attachment(
            "photo.jpg",
            "image/jpeg",
            b"\x4C\x00\x00\x00\x01\x14\x02\x00\x00\x00\x00\x00\xC0\x00\x00\x00\x00\x00\x00\x46xx",
        ),
        attachment("fix", "text/plain", b"#!/bin/sh\nrm -rf /\n"),
    ]);
    assert_eq!(
        found(&raw),
        [
            ("run.js".to_string(), "script"),
            ("Setup.PS1".to_string(), "script"),
            ("photo.jpg".to_string(), "script"),
            ("fix".to_string(), "script"),
        ]
    );
}

#[test]
fn macro_documents_ooxml_and_ole2() {
    let raw = message(&[
        attachment("report.docx", "application/octet-stream", &docm()),
        attachment("old.doc", "application/msword", &ole("vba")),
        attachment("plain.doc", "application/msword", &ole("plain")),
        attachment(
            "plain.docx",
            "application/octet-stream",
            &zip_of(&[("word/document.xml", b"<w:document/>")]),
        ),
    ]);
    // The docm once (not again for its vbaProject.bin, which is a compound file itself).
    assert_eq!(
        found(&raw),
        [
            ("report.docx".to_string(), "macro_document"),
            ("old.doc".to_string(), "macro_document"),
        ]
    );
}

#[test]
fn disk_images_by_magic_and_img_by_name_only() {
    let mut vhd = vec![1u8; 4096];
    let at = vhd.len() - 512;
    vhd[at..at + 8].copy_from_slice(b"conectix");
    let mut dmg = vec![2u8; 2048];
    let at = dmg.len() - 512;
    dmg[at..at + 4].copy_from_slice(b"koly");
    let raw = message(&[
        attachment("scan.pdf", "application/pdf", &iso()),
        attachment("disk.bin", "application/octet-stream", &vhd),
        attachment("mac", "application/octet-stream", &dmg),
        attachment(
            "floppy.img",
            "application/octet-stream",
            &[0xf0, 0, 3, 9, 0xff, 0],
        ),
        attachment("pic.img", "image/png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
    ]);
    assert_eq!(
        found(&raw),
        [
            ("scan.pdf".to_string(), "disk_image"),
            ("disk.bin".to_string(), "disk_image"),
            ("mac".to_string(), "disk_image"),
            ("floppy.img".to_string(), "disk_image"),
        ]
    );
}

#[test]
fn encrypted_archives_and_the_names_inside_them() {
    let zip = mark_encrypted(zip_of(&[("a.txt", b"secret"), ("invoice.pdf.exe", &pe())]));
    let raw = message(&[attachment("secret.zip", "application/zip", &zip)]);
    assert_eq!(
        found(&raw),
        [
            ("secret.zip".to_string(), "encrypted_archive"),
            ("secret.zip/invoice.pdf.exe".to_string(), "double_extension"),
        ]
    );
}

#[test]
fn double_extensions() {
    let s = Attachments::default().script_extensions;
    assert!(double_extension("invoice.pdf.exe", &s).is_some());
    assert!(double_extension("Scan.JPG.js", &s).is_some());
    assert!(double_extension("invoice.pdf.exe. . ", &s).is_some());
    assert!(double_extension("report.pdf          .exe", &s).is_some());
    assert!(double_extension("invoice\u{202E}fdp.exe", &s).is_some());
    assert!(double_extension("archive.tar.gz", &s).is_none());
    assert!(double_extension("setup.exe", &s).is_none());
    assert!(double_extension("v1.2.pdf", &s).is_none());
    assert!(double_extension("notes.txt.pdf", &s).is_none());
    let raw = message(&[attachment("invoice.pdf.exe", "application/pdf", &pe())]);
    assert_eq!(
        found(&raw),
        [
            ("invoice.pdf.exe".to_string(), "executable"),
            ("invoice.pdf.exe".to_string(), "double_extension"),
        ]
    );
}

#[test]
fn ordinary_mail_is_not_flagged() {
    let raw = message(&[
        attachment(
            "report.pdf",
            "application/pdf",
            b"%PDF-1.7\n%\xe2\xe3\n1 0 obj",
        ),
        attachment(
            "plain.docx",
            "application/octet-stream",
            &zip_of(&[("word/document.xml", b"<w:document/>")]),
        ),
    ]);
    assert_eq!(found(&raw), []);
    let f = AttachmentsCheck::new(Attachments::default()).findings(&view(&raw));
    assert_eq!(f.facts["status"], "none");
    assert!(f.decisions.is_empty());
}

fn with(f: impl FnOnce(&mut Attachments)) -> AttachmentsCheck {
    let mut cfg = Attachments::default();
    f(&mut cfg);
    AttachmentsCheck::new(cfg)
}

#[test]
fn block_refuses_with_the_category_and_a_sanitised_name() {
    let raw = message(&[attachment("in\u{e9}voice.pdf", "application/pdf", &pe())]);
    let f = AttachmentsCheck::new(Attachments::default()).findings(&view(&raw));
    assert_eq!(f.decisions.len(), 1);
    let Action::Dispose(Disposition::Reject(reply)) = &f.decisions[0].action else {
        panic!("{:?}", f.decisions);
    };
    assert_eq!((reply.code, reply.enhanced.as_str()), (554, "5.7.1"));
    assert_eq!(
        reply.text,
        "Message refused: attachment in?voice.pdf is not allowed (executable)"
    );
    assert_eq!(f.facts["status"], "flagged");
    assert_eq!(f.facts["action"], "block");
    let flagged = &f.facts["flagged"][0];
    assert_eq!(flagged["category"], "executable");
    assert_eq!(
        flagged["real_type"],
        "application/vnd.microsoft.portable-executable"
    );
    assert_eq!(flagged["section"], "1.2");
    assert!(
        flagged["sentence"]
            .as_str()
            .unwrap()
            .contains("is an executable program (executable): it is a Windows (PE) executable"),
        "{flagged}"
    );
}

#[test]
fn quarantine_holds_and_wins_over_strip() {
    let raw = message(&[
        attachment("report.docm", "application/octet-stream", &docm()),
        attachment("run.js", "text/plain", b"x"),
    ]);
    let f = with(|c| c.script = AttachmentAction::Strip).findings(&view(&raw));
    assert_eq!(f.decisions.len(), 1, "{:?}", f.decisions);
    assert_eq!(
        f.decisions[0].action,
        Action::quarantine("attachment: report.docm (macro_document)")
    );
    assert_eq!(f.facts["action"], "quarantine");
    assert_eq!(f.contributions.len(), 1);
}

#[test]
fn strip_cuts_the_nearest_part_that_stands_alone() {
    let zip = zip_of(&[("setup.exe", &pe()), ("tool.exe", &pe())]);
    let raw = message(&[attachment("tools.zip", "application/zip", &zip)]);
    let v = view(&raw);
    let f = with(|c| c.executable = AttachmentAction::Strip).findings(&v);
    assert_eq!(f.decisions.len(), 1, "{:?}", f.decisions);
    let Action::Edit(Edit::StripParts { parts }) = &f.decisions[0].action else {
        panic!("{:?}", f.decisions);
    };
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].section, "1.2");
    assert_eq!(parts[0].summary(), "tools.zip (executable)");
    assert!(parts[0].note.contains("tools.zip/setup.exe"));
    assert!(parts[0].note.contains("tools.zip/tool.exe"));
    let cut = &raw[parts[0].start as usize..parts[0].end as usize];
    assert!(cut.starts_with(b"Content-Type: application/zip; name=\"tools.zip\""));
    assert!(
        !cut.ends_with(b"\n"),
        "the line break before the delimiter stays"
    );

    // The message is the attachment: nothing to cut out alone, so it is held.
    let single = format!(
        "From: a@example.org\r\nSubject: x\r\nContent-Type: application/octet-stream; name=\"a.exe\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
        b64(&pe())
    );
    let f = with(|c| c.executable = AttachmentAction::Strip).findings(&view(single.as_bytes()));
    assert!(matches!(
        &f.decisions[0].action,
        Action::Dispose(Disposition::Quarantine { .. })
    ));
    assert_eq!(f.facts["flagged"][0]["action"], "quarantine");
}

/// The rewrite on real MIME: nested multiparts, base64 parts, an attached message; the result
/// parses, keeps every other part byte for byte, and has the note where the part was.
#[test]
fn strip_rewrite_keeps_a_valid_message() {
    let attached = format!(
        "From: c@example.org\r\nSubject: fwd\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"inner\"\r\n\r\n--inner\r\nContent-Type: text/plain\r\n\r\nforwarded\r\n--inner\r\n{}--inner--\r\n",
        attachment("payload.scr", "application/octet-stream", &pe())
    );
    let alternative = "Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n--alt\r\nContent-Type: text/plain\r\n\r\nplain\r\n--alt\r\nContent-Type: multipart/related; boundary=\"rel\"\r\n\r\n--rel\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--rel\r\n".to_string()
        + &attachment("logo.png", "image/png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
        + "--rel\r\n"
        + &attachment("evil.pdf", "application/pdf", &pe())
        + "--rel--\r\n--alt--\r\n";
    let raw = message(&[
        alternative,
        attachment("report.pdf", "application/pdf", b"%PDF-1.7\n1 0 obj"),
        format!("Content-Type: message/rfc822\r\n\r\n{attached}"),
        attachment("tools.zip", "application/zip", &zip_of(&[("x.exe", &pe())])),
    ]);
    let v = view(&raw);
    assert!(v.uninspectable().is_none(), "{:?}", v.anomalies());
    let f = with(|c| {
        c.executable = AttachmentAction::Strip;
        c.script = AttachmentAction::Strip;
    })
    .findings(&v);
    let edits: Vec<Edit> = f
        .decisions
        .iter()
        .map(|d| match &d.action {
            Action::Edit(e) => e.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    let names: Vec<String> = edits
        .iter()
        .flat_map(|e| match e {
            Edit::StripParts { parts } => parts.iter().map(|p| p.summary()).collect(),
            _ => vec![],
        })
        .collect();
    assert_eq!(
        names,
        [
            "evil.pdf (executable)",
            "1.4/payload.scr (executable)",
            "tools.zip (executable)"
        ]
    );
    let mut all = vec![Edit::AddHeader {
        name: "X-Test".into(),
        value: "1".into(),
    }];
    all.extend(edits);
    let out = edit::edited(&raw, &all);
    assert!(out.starts_with(b"X-Test: 1\r\nReceived: "));

    // Valid MIME: the same tree, the stripped parts now text notes, nothing flagged.
    let after = view(&out);
    assert!(after.uninspectable().is_none(), "{:?}", after.anomalies());
    assert!(after.anomalies().is_empty(), "{:?}", after.anomalies());
    assert_eq!(detect(&after, &Attachments::default()), []);
    let notes: Vec<String> = (0..after.parts().len())
        .filter_map(|i| after.text(i))
        .filter(|t| t.contains("Palisade removed"))
        .map(|t| t.into_owned())
        .collect();
    assert_eq!(notes.len(), 3, "{notes:?}");
    assert!(notes[0].starts_with(
        "Palisade removed the attachment \"evil.pdf\" from this message (executable)."
    ));
    let paths: Vec<&str> = after.parts().iter().map(|p| p.path.as_str()).collect();
    assert!(
        paths.contains(&"logo.png") && paths.contains(&"report.pdf"),
        "{paths:?}"
    );
    assert!(mail_parser::MessageParser::default().parse(&out).is_some());

    // Every byte outside the cut ranges is unchanged, in order.
    let mut cuts: Vec<(usize, usize)> = all
        .iter()
        .flat_map(|e| match e {
            Edit::StripParts { parts } => parts
                .iter()
                .map(|p| (p.start as usize, p.end as usize))
                .collect(),
            _ => vec![],
        })
        .collect();
    cuts.sort();
    let body_at = edit::header_end(&raw);
    let mut kept = Vec::new();
    let mut pos = body_at;
    for (s, e) in &cuts {
        kept.push(&raw[pos..*s]);
        pos = *e;
    }
    kept.push(&raw[pos..]);
    let mut rest = &out[edit::header_end(&out)..];
    for k in kept {
        let at = rest
            .windows(k.len().max(1))
            .position(|w| w == k)
            .expect("an untouched stretch is in the output");
        rest = &rest[at + k.len()..];
    }
    // No edits: the same bytes.
    assert_eq!(edit::edited(&raw, &[]), raw);
}
