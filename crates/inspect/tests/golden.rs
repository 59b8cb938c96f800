//! Golden tests: every `tests/messages/NAME.eml` (written for this project) is viewed with the
//! default limits, or with those of `NAME.limits.json` if present, and the view's JSON (what
//! `palisade check --json` prints) must equal `NAME.expected.json`.
//!
//! `UPDATE_GOLDEN=1 cargo test -p palisade-inspect --test golden` regenerates the messages
//! (from the builders below: archives are made with the `zip` writer and base64-embedded) and
//! rewrites the expected files; review the diff before committing.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use palisade_inspect::{Limits, MessageView};
use zip::write::SimpleFileOptions;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/messages")
}

fn b64(bytes: &[u8]) -> String {
    let s = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = String::new();
    for line in s.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push_str("\r\n");
    }
    out
}

fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in files {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// Sets the "encrypted" flag of every entry (local and central headers), as a ZipCrypto
/// archive has it.
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

const HEAD: &str = "From: \"Dr Ada\" <ada@clinic.example>\r\nTo: ward@hospital.example\r\n\
Subject: =?utf-8?q?R=C3=B6ntgen_results?=\r\nMessage-ID: <golden@clinic.example>\r\n\
Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMIME-Version: 1.0\r\n";

fn attachment(ctype: &str, name: &str, data: &[u8]) -> String {
    format!(
        "Content-Type: {ctype}; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\n{}",
        b64(data)
    )
}

fn mixed(boundary: &str, parts: &[String]) -> String {
    let mut s = format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n");
    for p in parts {
        s.push_str(&format!("--{boundary}\r\n{p}\r\n"));
    }
    s.push_str(&format!("--{boundary}--\r\n"));
    s
}

fn text(body: &str) -> String {
    format!("Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n")
}

const PDF: &[u8] =
    b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";
const PNG: &[u8] =
    b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
fn exe() -> Vec<u8> {
    let mut v = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00".to_vec();
    v.resize(256, 0);
    v
}
fn elf() -> Vec<u8> {
    let mut v = b"\x7fELF\x02\x01\x01\x00".to_vec();
    v.resize(128, 0);
    v
}

/// The messages: name → (message, limits overrides as JSON).
fn build() -> BTreeMap<&'static str, (String, Option<&'static str>)> {
    let mut m = BTreeMap::new();
    m.insert(
        "nested_multipart",
        (
            format!(
                "{HEAD}{}",
                mixed(
                    "outer",
                    &[
                        "Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n\
--alt\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
R=F6ntgen attached.\r\n--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
<html><body><p>R&ouml;ntgen attached.</p></body></html>\r\n--alt--\r\n"
                            .to_string(),
                        attachment("application/pdf", "results.pdf", PDF),
                        format!(
                            "Content-Type: image/png\r\nContent-Disposition: inline; filename*=utf-8''r%C3%B6ntgen.png\r\n\
Content-Transfer-Encoding: base64\r\n\r\n{}",
                            b64(PNG)
                        ),
                    ]
                )
            ),
            None,
        ),
    );
    let inner = zip_of(&[("payload.exe", &exe()), ("notes.txt", b"see payload\n")]);
    let outer = zip_of(&[("inner.zip", &inner), ("readme.txt", b"hello\n")]);
    m.insert(
        "zip_in_zip",
        (
            format!(
                "{HEAD}{}",
                mixed(
                    "b1",
                    &[
                        text("Archive attached."),
                        attachment("application/zip", "report.zip", &outer),
                    ]
                )
            ),
            None,
        ),
    );
    let forwarded = format!(
        "From: lab@lab.example\r\nSubject: Lab report\r\nMessage-ID: <inner@lab.example>\r\nMIME-Version: 1.0\r\n{}",
        mixed(
            "inner",
            &[
                text("Report attached."),
                attachment("image/png", "scan.png", PNG)
            ]
        )
    );
    m.insert(
        "attached_message",
        (
            format!(
                "{HEAD}{}",
                mixed(
                    "b2",
                    &[
                        text("Forwarding the lab's mail."),
                        format!(
                            "Content-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"lab.eml\"\r\n\r\n{forwarded}"
                        ),
                    ]
                )
            ),
            None,
        ),
    );
    m.insert(
        "lying_content_type",
        (
            format!(
                "{HEAD}{}",
                mixed(
                    "b3",
                    &[
                        text("Please pay the invoice."),
                        attachment("application/pdf", "invoice.pdf", &exe()),
                        attachment("image/jpeg", "photo.jpg", &elf()),
                        // A zip sent as base64 text: still decoded byte-exact and walked.
                        format!(
                            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
                            b64(&zip_of(&[("run.exe", &exe())]))
                        ),
                    ]
                )
            ),
            None,
        ),
    );
    m.insert(
        "broken_boundary",
        (
            format!(
                "{HEAD}Content-Type: multipart/mixed; boundary=\"declared\"\r\n\r\n\
--actual\r\nContent-Type: text/plain\r\n\r\nhello\r\n--actual\r\n{}--actual--\r\n",
                attachment("application/pdf", "x.pdf", &exe())
            ),
            None,
        ),
    );
    m.insert(
        "unterminated_multipart",
        (
            format!(
                "{HEAD}Content-Type: multipart/mixed; boundary=\"b4\"\r\n\r\n\
--b4\r\n{}--b4\r\n{}",
                text("first"),
                attachment("application/pdf", "results.pdf", PDF)
            ),
            None,
        ),
    );
    let mut deep = text("bottom");
    for level in (0..25).rev() {
        deep = format!(
            "Content-Type: multipart/mixed; boundary=\"d{level}\"\r\n\r\n--d{level}\r\n{deep}\r\n--d{level}--\r\n"
        );
    }
    m.insert("bomb_depth", (format!("{HEAD}{deep}"), None));
    let many: Vec<String> = (0..600).map(|i| text(&format!("part {i}"))).collect();
    m.insert(
        "bomb_parts",
        (format!("{HEAD}{}", mixed("many", &many)), None),
    );
    let zeros = vec![0u8; 4 * 1024 * 1024];
    m.insert(
        "bomb_zip_ratio",
        (
            format!(
                "{HEAD}{}",
                mixed(
                    "b5",
                    &[attachment(
                        "application/zip",
                        "zeros.zip",
                        &zip_of(&[("zeros.bin", &zeros)])
                    )]
                )
            ),
            None,
        ),
    );
    let names: Vec<String> = (0..30).map(|i| format!("f{i:02}.txt")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x\n"[..])).collect();
    m.insert(
        "bomb_archive_members",
        (
            format!(
                "{HEAD}{}",
                mixed(
                    "b6",
                    &[attachment("application/zip", "many.zip", &zip_of(&files))]
                )
            ),
            Some(r#"{"max_archive_members": 20}"#),
        ),
    );
    m.insert(
        "bomb_decoded_size",
        (
            format!(
                "{HEAD}{}",
                mixed(
                    "b7",
                    &[
                        attachment("application/pdf", "a.pdf", &[PDF, &[b' '; 60_000]].concat()),
                        attachment("application/pdf", "b.pdf", &[PDF, &[b' '; 60_000]].concat()),
                    ]
                )
            ),
            Some(r#"{"max_decoded_bytes": 100000}"#),
        ),
    );
    m.insert(
        "bomb_time",
        (
            format!("{HEAD}{}", mixed("b8", &[text("slow")])),
            Some(r#"{"max_time_ms": 0}"#),
        ),
    );
    let mut archives = zip_of(&[("deepest.txt", b"bottom\n")]);
    for level in (0..7).rev() {
        archives = zip_of(&[(&format!("level{level}.zip"), &archives)]);
    }
    m.insert(
        "bomb_archive_depth",
        (
            format!(
                "{HEAD}{}",
                mixed(
                    "b9",
                    &[attachment("application/zip", "nest.zip", &archives)]
                )
            ),
            None,
        ),
    );
    m.insert(
        "encrypted_zip",
        (
            format!(
                "{HEAD}{}",
                mixed(
                    "b10",
                    &[attachment(
                        "application/zip",
                        "secret.zip",
                        &mark_encrypted(zip_of(&[("secret.docx", PDF)]))
                    )]
                )
            ),
            None,
        ),
    );
    m
}

fn limits_for(name: &str) -> Limits {
    let path = dir().join(format!("{name}.limits.json"));
    match std::fs::read_to_string(&path) {
        Ok(s) => serde_json::from_str(&s).unwrap(),
        Err(_) => Limits::default(),
    }
}

fn view_json(name: &str, raw: &[u8]) -> String {
    let view = MessageView::from_bytes(raw, &limits_for(name));
    // Every decodable part can be read back, with the size listed.
    for (i, part) in view.parts().iter().enumerate() {
        if let Some(bytes) = view.decoded(i) {
            assert_eq!(
                bytes.len() as u64,
                part.size,
                "{name}: part {}",
                part.section
            );
        }
    }
    let mut s = serde_json::to_string_pretty(&view).unwrap();
    s.push('\n');
    s
}

#[test]
fn golden_messages() {
    let dir = dir();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        for (name, (message, limits)) in build() {
            std::fs::write(dir.join(format!("{name}.eml")), &message).unwrap();
            let lpath = dir.join(format!("{name}.limits.json"));
            match limits {
                Some(l) => std::fs::write(&lpath, format!("{l}\n")).unwrap(),
                None => {
                    let _ = std::fs::remove_file(&lpath);
                }
            }
            let json = view_json(name, message.as_bytes());
            std::fs::write(dir.join(format!("{name}.expected.json")), json).unwrap();
        }
    }
    let mut seen = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("eml") {
            continue;
        }
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        let raw = std::fs::read(&path).unwrap();
        let got = view_json(&name, &raw);
        let want =
            std::fs::read_to_string(dir.join(format!("{name}.expected.json"))).unwrap_or_default();
        if got != want {
            failures.push(format!("{name}:\n{got}"));
        }
        seen += 1;
    }
    assert!(seen >= 14, "only {seen} golden messages");
    assert!(
        failures.is_empty(),
        "golden mismatch:\n{}",
        failures.join("\n")
    );
}
