//! Behaviour the golden files do not show: on-demand bytes and text, tracking, configuration,
//! lying archive headers, oversized input, and speed.

use std::io::Write;

use palisade_inspect::{AnomalyKind, LimitKind, Limits, MessageView, PartKind};

fn golden(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/messages/{name}.eml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn decoded_and_text_on_demand() {
    let view = MessageView::from_bytes(&golden("nested_multipart"), &Limits::default());
    assert!(view.uninspectable().is_none());
    // quoted-printable ISO-8859-1: original bytes, and Unicode text
    assert_eq!(view.decoded(2).unwrap().as_ref(), b"R\xf6ntgen attached.");
    assert_eq!(view.text(2).unwrap(), "Röntgen attached.");
    assert!(
        view.decoded(0).is_none(),
        "a multipart has no bytes of its own"
    );
    assert!(view.text(4).is_none(), "a PDF is not text");
    assert!(view.decoded(999).is_none());
    let t = view.tracking();
    assert_eq!(t.message_id.as_deref(), Some("<golden@clinic.example>"));
    assert_eq!(t.subject.as_deref(), Some("Röntgen results"));
    assert_eq!(t.from.as_deref(), Some("ada@clinic.example"));
}

#[test]
fn archive_members_decompress_on_demand() {
    let view = MessageView::from_bytes(&golden("zip_in_zip"), &Limits::default());
    let exe = view
        .parts()
        .iter()
        .position(|p| p.path == "report.zip/inner.zip/payload.exe")
        .unwrap();
    assert!(matches!(
        view.parts()[exe].kind,
        PartKind::ArchiveMember { .. }
    ));
    assert!(view.decoded(exe).unwrap().starts_with(b"MZ"));
    let notes = view
        .parts()
        .iter()
        .position(|p| p.path.ends_with("notes.txt"))
        .unwrap();
    assert_eq!(view.text(notes).unwrap(), "see payload\n");
}

#[test]
fn zip_sent_as_text_keeps_its_bytes() {
    let view = MessageView::from_bytes(&golden("lying_content_type"), &Limits::default());
    let part = view
        .parts()
        .iter()
        .position(|p| p.section == "1.4")
        .unwrap();
    assert_eq!(
        view.parts()[part].real_type.as_ref().unwrap().mime,
        "application/zip"
    );
    assert!(view.decoded(part).unwrap().starts_with(b"PK\x03\x04"));
}

fn zip_of(name: &str, data: &[u8]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    w.start_file(name, opts).unwrap();
    w.write_all(data).unwrap();
    w.finish().unwrap().into_inner()
}

fn with_attachment(zip: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD.encode(zip);
    format!(
        "From: a@b.example\r\nContent-Type: multipart/mixed; boundary=\"x\"\r\n\r\n--x\r\n\
Content-Type: application/zip; name=\"z.zip\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{b}\r\n--x--\r\n"
    )
    .into_bytes()
}

#[test]
fn a_member_that_lies_about_its_size_is_caught_while_reading() {
    // 2 MiB of zeros that declares 1000 bytes: the declared ratio looks harmless.
    let mut zip = zip_of("small.bin", &vec![0u8; 2 * 1024 * 1024]);
    let real = (2u32 * 1024 * 1024).to_le_bytes();
    let fake = 1000u32.to_le_bytes();
    let mut i = 0;
    while i + 4 <= zip.len() {
        if zip[i..i + 4] == real {
            zip[i..i + 4].copy_from_slice(&fake);
        }
        i += 1;
    }
    let view = MessageView::from_bytes(&with_attachment(&zip), &Limits::default());
    assert!(view.uninspectable().is_some(), "{view:?}");
    let member = &view.parts()[2];
    assert!(
        member.size <= 1000 + 64 * 1024,
        "read stopped early: {}",
        member.size
    );
    assert!(view.decoded(2).is_none());
}

#[test]
fn corrupt_archive_is_uninspectable() {
    let view = MessageView::from_bytes(
        &with_attachment(b"PK\x03\x04 this is not really a zip"),
        &Limits::default(),
    );
    assert!(view.uninspectable().unwrap().contains("cannot be read"));
    assert_eq!(view.anomalies()[0].kind, AnomalyKind::CorruptArchive);
}

#[test]
fn oversized_and_unparsable_input() {
    let limits = Limits {
        max_message_bytes: 10,
        ..Limits::default()
    };
    let view = MessageView::from_bytes(b"From: a@b\r\n\r\nhello world", &limits);
    assert_eq!(view.limits_hit()[0].limit, LimitKind::MaxMessageBytes);
    assert!(view.uninspectable().is_some());
    assert!(view.parts().is_empty());

    let view = MessageView::from_bytes(b"", &Limits::default());
    assert!(view.uninspectable().is_some());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m");
    std::fs::write(&path, golden("nested_multipart")).unwrap();
    let view = MessageView::from_file(&path, &Limits::default()).unwrap();
    assert_eq!(view.parts().len(), 6);
    let view = MessageView::from_file(&path, &limits).unwrap();
    assert!(view.uninspectable().is_some());
}

#[test]
fn limits_from_configuration() {
    let l: Limits = serde_json::from_str(r#"{"max_parts": 7}"#).unwrap();
    assert_eq!(l.max_parts, 7);
    assert_eq!(l.max_depth, Limits::default().max_depth);
    assert!(serde_json::from_str::<Limits>(r#"{"max_partz": 7}"#).is_err());
    assert_eq!(
        LimitKind::MaxCompressionRatio.name(),
        "max_compression_ratio"
    );
}

/// Release: `cargo test -p palisade-inspect --release --test view -- --ignored --nocapture`.
#[test]
#[ignore = "timing; run in release"]
fn twenty_megabytes_with_attachments() {
    use base64::Engine;
    let mut body = String::from(
        "From: a@b.example\r\nSubject: big\r\nContent-Type: multipart/mixed; boundary=\"x\"\r\n\r\n\
--x\r\nContent-Type: text/plain\r\n\r\nsee attachments\r\n",
    );
    let mut seed = 1u64;
    for n in 0..4 {
        let data: Vec<u8> = (0..3_500_000)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                (seed >> 56) as u8
            })
            .collect();
        let attachment = if n % 2 == 0 {
            zip_of("data.bin", &data)
        } else {
            data
        };
        body.push_str(&format!(
            "--x\r\nContent-Type: application/octet-stream; name=\"a{n}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
            base64::engine::general_purpose::STANDARD.encode(&attachment)
        ));
    }
    body.push_str("--x--\r\n");
    let start = std::time::Instant::now();
    let view = MessageView::from_bytes(body.as_bytes(), &Limits::default());
    let elapsed = start.elapsed();
    println!(
        "{} bytes, {} parts, {elapsed:?}",
        body.len(),
        view.parts().len()
    );
    assert!(view.uninspectable().is_none(), "{:?}", view.uninspectable());
    assert!(elapsed.as_millis() < 1000);
}
