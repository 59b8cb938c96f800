//! Arbitrary bytes as one attachment of a chosen kind (the first byte picks PDF, winmail.dat,
//! RTF, HTML, XML, an Office document's zip, or none): text extraction for the DLP detectors
//! must not panic, must stay within its text budget, and must never call a part it could not
//! read clean (every PDF/TNEF failure is listed as unscannable).
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_inspect::{Limits, MessageView, extract};

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (n, chunk) in data.chunks(3).enumerate() {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let v = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(A[(v >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
        if n % 19 == 18 {
            out.push_str("\r\n");
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let (ctype, name, prefix): (&str, &str, &[u8]) = match kind % 7 {
        0 => ("application/pdf", "a.pdf", b"%PDF-1.4\n"),
        1 => ("application/ms-tnef", "winmail.dat", b"\x78\x9f\x3e\x22\x01\x00"),
        2 => ("application/rtf", "a.rtf", b"{\\rtf1 "),
        3 => ("text/html", "a.html", b""),
        4 => ("text/xml", "a.xml", b""),
        5 => (
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "a.docx",
            b"",
        ),
        _ => ("application/octet-stream", "a.bin", b""),
    };
    let mut content = prefix.to_vec();
    content.extend_from_slice(body);
    let message = format!(
        "From: a@b.example\r\nSubject: fuzz\r\nContent-Type: multipart/mixed; boundary=\"zz\"\r\n\r\n\
--zz\r\nContent-Type: text/plain\r\n\r\nbody\r\n\
--zz\r\nContent-Type: {ctype}; name=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
{}\r\n--zz--\r\n",
        base64(&content)
    );
    let limits = Limits {
        max_time_ms: 60_000,
        max_decoded_bytes: 64 * 1024 * 1024,
        ..Limits::default()
    };
    let view = MessageView::from_bytes(message.as_bytes(), &limits);
    let budget = 256 * 1024;
    let found = extract(&view, budget);
    assert!(found.bytes <= budget, "{} > {budget}", found.bytes);
    assert_eq!(found.bytes, found.texts.iter().map(|t| t.text.len()).sum::<usize>());
    for u in &found.unscannable {
        assert!(!u.reason.is_empty() && !u.location.is_empty(), "{u:?}");
    }
});
