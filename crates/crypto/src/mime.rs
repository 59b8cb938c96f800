//! The little MIME the S/MIME layer needs: splitting a message into the fields that stay
//! outside and the entity that is protected, CRLF canonical form, base64 lines.

use base64::Engine as _;

/// Line endings to CRLF (RFC 8551 §3.1.1: the canonical form signed and encrypted).
pub fn to_crlf(d: &[u8]) -> Vec<u8> {
    let mut o = Vec::with_capacity(d.len() + d.len() / 40);
    let mut prev = 0u8;
    for &b in d {
        if b == b'\n' && prev != b'\r' {
            o.push(b'\r');
        }
        o.push(b);
        prev = b;
    }
    o
}

/// The end of the header block: the index of the body's first byte and of the blank line.
fn header_end(m: &[u8]) -> (usize, usize) {
    if m.starts_with(b"\r\n") {
        return (0, 2);
    }
    match m.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (i + 2, i + 4),
        None => (m.len(), m.len()),
    }
}

/// The header fields of a CRLF message, each with its continuation lines and final CRLF.
fn fields(header: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < header.len() {
        let end = match header[i..].windows(2).position(|w| w == b"\r\n") {
            Some(p) => i + p + 2,
            None => header.len(),
        };
        let next_continues = header.get(end).is_some_and(|b| *b == b' ' || *b == b'\t');
        if !next_continues {
            out.push(&header[start..end]);
            start = end;
        }
        i = end;
    }
    out
}

fn field_name(f: &[u8]) -> String {
    let colon = f.iter().position(|b| *b == b':').unwrap_or(f.len());
    String::from_utf8_lossy(&f[..colon])
        .trim()
        .to_ascii_lowercase()
}

/// A message (any line endings) → (the fields that stay outside, the entity to protect: its
/// `Content-*` fields — `Content-Type: text/plain; charset=us-ascii` when it has none — a
/// blank line and the body), both CRLF. `MIME-Version` is dropped from both: the caller
/// writes the new one.
pub fn content_split(message: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let m = to_crlf(message);
    let (end, body_at) = header_end(&m);
    let mut outer = Vec::new();
    let mut inner = Vec::new();
    for f in fields(&m[..end]) {
        let name = field_name(f);
        if name == "mime-version" {
            continue;
        }
        if name.starts_with("content-") {
            inner.extend_from_slice(f);
        } else {
            outer.extend_from_slice(f);
        }
    }
    if !inner
        .split(|b| *b == b'\n')
        .any(|l| l.to_ascii_lowercase().starts_with(b"content-type:"))
    {
        inner.extend_from_slice(b"Content-Type: text/plain; charset=us-ascii\r\n");
    }
    inner.extend_from_slice(b"\r\n");
    inner.extend_from_slice(&m[body_at.min(m.len())..]);
    (outer, inner)
}

/// Base64 in 76-character CRLF lines, as MIME wants it.
pub(crate) fn b64_lines(der: &[u8]) -> String {
    let s = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(s.len() + s.len() / 38 + 2);
    for chunk in s.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push_str("\r\n");
    }
    out
}

pub(crate) fn b64_decode_loose(body: &[u8]) -> Option<Vec<u8>> {
    let clean: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(clean).ok()
}

/// An entity (CRLF or LF) → (its header block, its body).
pub(crate) fn split_entity(data: &[u8]) -> (&[u8], &[u8]) {
    let crlf = find(data, b"\r\n\r\n").map(|i| (i, i + 2, i + 4));
    let lf = find(data, b"\n\n").map(|i| (i, i + 1, i + 2));
    let pick = match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    };
    match pick {
        Some((_, h, b)) => (&data[..h], &data[b..]),
        None => (data, &[]),
    }
}

pub(crate) fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// The unfolded value of header field `name` (case-insensitive).
pub(crate) fn header(headers: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(headers).replace("\r\n", "\n");
    let unfolded = text.replace("\n ", " ").replace("\n\t", " ");
    unfolded.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// A parameter of a structured field value (`boundary`, `smime-type`).
pub(crate) fn param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}
