//! Arbitrary bytes as a zip attachment (base64 in a multipart message): the archive listing and
//! on-demand decompression must not panic, must respect the limits, and must read back each
//! member with the size it was listed with.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_inspect::{Limits, MessageView};

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
    let message = format!(
        "From: a@b.example\r\nSubject: fuzz\r\nContent-Type: multipart/mixed; boundary=\"zz\"\r\n\r\n\
--zz\r\nContent-Type: application/zip; name=\"f.zip\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
{}\r\n--zz--\r\n",
        base64(data)
    );
    let limits = Limits {
        max_time_ms: 60_000,
        max_decoded_bytes: 64 * 1024 * 1024,
        ..Limits::default()
    };
    let view = MessageView::from_bytes(message.as_bytes(), &limits);
    let mut total = 0u64;
    for (i, part) in view.parts().iter().enumerate() {
        if let Some(bytes) = view.decoded(i) {
            assert_eq!(bytes.len() as u64, part.size, "part {}", part.section);
            total += part.size;
        }
    }
    // Archives kept for walking are counted once as members; the bound holds with slack.
    assert!(total <= 2 * limits.max_decoded_bytes);
});
