//! Edits (`policy::Edit`) applied to stored content: a new file is the edited header section
//! followed by the original body, byte for byte — except for the parts an
//! `Edit::StripParts` removes, each replaced in place by a short `text/plain` part (the
//! boundary delimiters around it and every other byte stay as they were).
//!
//! The header section is the run of field lines (`name:` and their continuation lines) at the
//! start, up to and including the empty line that ends it. Content that has no such section
//! (not a message) gets the added fields in front of it. Header fields we add are one line
//! each (the values are checked for control characters where they are made).

use std::path::Path;
use std::sync::Arc;

use palisade_policy::Edit;
use palisade_spool::IncomingFile;
use tokio::io::AsyncReadExt;

/// At most this much of the start is read as the header section; the rest is body.
pub(crate) const MAX_HEADER: usize = 1024 * 1024;

/// Where the header section of `raw` ends (the index after the empty line, or after the last
/// field line when no empty line follows it).
pub fn header_end(raw: &[u8]) -> usize {
    let mut pos = 0;
    let mut in_field = false;
    while pos < raw.len() {
        let line_end = memchr_nl(&raw[pos..])
            .map(|i| pos + i + 1)
            .unwrap_or(raw.len());
        let line = &raw[pos..line_end];
        let content = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        if content.is_empty() {
            return line_end;
        }
        let continuation = matches!(content[0], b' ' | b'\t');
        let field = !continuation
            && content
                .iter()
                .position(|&b| b == b':')
                .is_some_and(|c| c > 0 && content[..c].iter().all(|&b| (33..=126).contains(&b)));
        if field || (continuation && in_field) {
            in_field = true;
            pos = line_end;
        } else {
            return pos;
        }
    }
    pos
}

fn memchr_nl(s: &[u8]) -> Option<usize> {
    s.iter().position(|&b| b == b'\n')
}

/// One field: its name and every line of it, as sent.
struct Field {
    name: String,
    raw: Vec<u8>,
    /// Added by an `Edit::AddHeader` (not with the message).
    added: bool,
}

fn split_fields(header: &[u8]) -> (Vec<Field>, Vec<u8>) {
    let mut fields: Vec<Field> = Vec::new();
    let mut tail = Vec::new();
    let mut pos = 0;
    while pos < header.len() {
        let line_end = memchr_nl(&header[pos..])
            .map(|i| pos + i + 1)
            .unwrap_or(header.len());
        let line = &header[pos..line_end];
        if line == b"\r\n" || line == b"\n" {
            tail = line.to_vec();
        } else if matches!(line[0], b' ' | b'\t') && !fields.is_empty() {
            fields
                .last_mut()
                .expect("checked")
                .raw
                .extend_from_slice(line);
        } else {
            let name = line
                .iter()
                .position(|&b| b == b':')
                .map(|c| String::from_utf8_lossy(&line[..c]).trim().to_string())
                .unwrap_or_default();
            fields.push(Field {
                name,
                raw: line.to_vec(),
                added: false,
            });
        }
        pos = line_end;
    }
    (fields, tail)
}

pub const AUTHENTICATION_RESULTS: &str = "Authentication-Results";

/// The authserv-id an `Authentication-Results` field claims (RFC 8601 §2.2: the first
/// `value` after the colon, past folding white space and comments), from the whole raw
/// field (`Name: value…`, folded or not). `None` when there is no such token.
pub fn claimed_authserv_id(raw_field: &[u8]) -> Option<String> {
    let colon = raw_field.iter().position(|&b| b == b':')?;
    let value = &raw_field[colon + 1..];
    let mut i = 0;
    // Skip CFWS: white space, line breaks and (nested) comments.
    let mut depth = 0usize;
    while i < value.len() {
        match value[i] {
            b'(' => depth += 1,
            b')' if depth > 0 => depth -= 1,
            b'\\' if depth > 0 => i += 1,
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ if depth > 0 => {}
            _ => break,
        }
        i += 1;
    }
    let rest = value.get(i..)?;
    let id: Vec<u8> = if rest.first() == Some(&b'"') {
        rest[1..]
            .iter()
            .take_while(|&&b| b != b'"')
            .copied()
            .collect()
    } else {
        rest.iter()
            .take_while(|&&b| !matches!(b, b';' | b' ' | b'\t' | b'\r' | b'\n' | b'('))
            .copied()
            .collect()
    };
    if id.is_empty() {
        return None;
    }
    Some(String::from_utf8_lossy(&id).into_owned())
}

/// The header section `header` with `edits` applied, in order.
pub fn edit_header(header: &[u8], edits: &[Edit]) -> Vec<u8> {
    let (mut fields, tail) = split_fields(header);
    for edit in edits {
        match edit {
            Edit::AddHeader { name, value } => fields.insert(
                0,
                Field {
                    name: name.clone(),
                    raw: format!("{name}: {value}\r\n").into_bytes(),
                    added: true,
                },
            ),
            Edit::RemoveHeader { name } => fields.retain(|f| !f.name.eq_ignore_ascii_case(name)),
            Edit::RemoveAuthenticationResults { authserv_id } => fields.retain(|f| {
                f.added
                    || !(f.name.eq_ignore_ascii_case(AUTHENTICATION_RESULTS)
                        && claimed_authserv_id(&f.raw)
                            .is_some_and(|id| id.eq_ignore_ascii_case(authserv_id)))
            }),
            Edit::TagSubject { tag } => {
                match fields
                    .iter_mut()
                    .find(|f| f.name.eq_ignore_ascii_case("subject"))
                {
                    Some(f) => {
                        let colon = f.raw.iter().position(|&b| b == b':').unwrap_or(0) + 1;
                        let rest = &f.raw[colon..];
                        let ws = rest
                            .iter()
                            .take_while(|&&b| b == b' ' || b == b'\t')
                            .count();
                        if !rest[ws..].starts_with(tag.as_bytes()) {
                            let mut raw = f.raw[..colon].to_vec();
                            raw.push(b' ');
                            raw.extend_from_slice(tag.as_bytes());
                            raw.push(b' ');
                            raw.extend_from_slice(&rest[ws..]);
                            f.raw = raw;
                        }
                    }
                    None => fields.push(Field {
                        name: "Subject".into(),
                        raw: format!("Subject: {tag}\r\n").into_bytes(),
                        added: true,
                    }),
                }
            }
            // The body's business (see `strip_parts`); signing comes last (`signed`).
            Edit::UntagSubject { tag } => {
                if let Some(f) = fields
                    .iter_mut()
                    .find(|f| f.name.eq_ignore_ascii_case("subject"))
                {
                    let colon = f.raw.iter().position(|&b| b == b':').unwrap_or(0) + 1;
                    let lower = f.raw.to_ascii_lowercase();
                    let needle = tag.to_ascii_lowercase();
                    if !needle.is_empty()
                        && let Some(at) = lower[colon..]
                            .windows(needle.len())
                            .position(|w| w == needle.as_bytes())
                    {
                        let start = colon + at;
                        let mut end = start + needle.len();
                        if f.raw.get(end) == Some(&b' ') {
                            end += 1;
                        }
                        let mut raw = f.raw[..start].to_vec();
                        raw.extend_from_slice(&f.raw[end..]);
                        f.raw = raw;
                    }
                }
            }
            Edit::StripParts { .. }
            | Edit::DkimSign { .. }
            | Edit::ArcSeal { .. }
            | Edit::SmimeEncrypt { .. }
            | Edit::PgpEncrypt { .. } => {}
        }
    }
    let mut out = Vec::with_capacity(header.len() + 256);
    for f in fields {
        out.extend_from_slice(&f.raw);
        if !f.raw.ends_with(b"\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(&tail);
    out
}

/// The `text/plain` part that takes a stripped part's place. `note` is printable ASCII from
/// the check; a line that could be read as a boundary delimiter is indented.
fn note_part(note: &str) -> Vec<u8> {
    let mut out = b"Content-Type: text/plain; charset=us-ascii\r\n\
Content-Disposition: inline\r\n\
Content-Transfer-Encoding: 7bit\r\n\
X-Palisade-Stripped: yes\r\n\r\n"
        .to_vec();
    let lines: Vec<String> = note
        .lines()
        .map(|l| {
            let l: String = l
                .chars()
                .map(|c| {
                    if c.is_ascii() && !c.is_ascii_control() {
                        c
                    } else {
                        '?'
                    }
                })
                .take(900)
                .collect();
            if l.starts_with('-') {
                format!(" {l}")
            } else {
                l
            }
        })
        .collect();
    out.extend_from_slice(lines.join("\r\n").as_bytes());
    // No final line break: the one before the next delimiter belongs to the delimiter.
    out
}

/// `body` (the message after its header section, which starts at `offset` in the message)
/// with the parts of every `StripParts` edit replaced by their notes. Ranges outside the
/// body, overlapping an earlier one or repeated are skipped (the first wins).
pub fn strip_parts(body: &[u8], offset: u64, edits: &[Edit]) -> Vec<u8> {
    let mut cuts: Vec<(u64, u64, &str)> = edits
        .iter()
        .flat_map(|e| match e {
            Edit::StripParts { parts } => parts.as_slice(),
            _ => &[],
        })
        .map(|p| (p.start, p.end, p.note.as_str()))
        .collect();
    cuts.sort_by_key(|c| c.0);
    let mut out = Vec::with_capacity(body.len());
    let mut pos = 0usize;
    for (start, end, note) in cuts {
        let (Some(s), Some(e)) = (start.checked_sub(offset), end.checked_sub(offset)) else {
            continue;
        };
        let (s, e) = (s as usize, e as usize);
        if s < pos || e < s || e > body.len() {
            continue;
        }
        out.extend_from_slice(&body[pos..s]);
        out.extend_from_slice(&note_part(note));
        pos = e;
    }
    out.extend_from_slice(&body[pos..]);
    out
}

/// The whole message `raw` with `edits` applied (what `write_edited` writes).
pub fn edited(raw: &[u8], edits: &[Edit]) -> Vec<u8> {
    let end = header_end(&raw[..raw.len().min(MAX_HEADER)]);
    let mut out = edit_header(&raw[..end], edits);
    out.extend_from_slice(&strip_parts(&raw[end..], end as u64, edits));
    out
}

/// What applies [`Edit::DkimSign`] and [`Edit::ArcSeal`]: the engine's DKIM keys
/// (`super::dkim::DkimKeys`).
pub trait Signer: Send + Sync {
    /// The `DKIM-Signature` field, with its CRLF, of `message` for `domain` and `selector`.
    fn dkim_signature(
        &self,
        domain: &str,
        selector: &str,
        message: &[u8],
    ) -> Result<String, String>;

    /// The three fields of a new ARC set (each with its CRLF) for `message`, sealed as
    /// `domain` with the key of `selector`; `chain` and `results` as in [`Edit::ArcSeal`].
    fn arc_set(
        &self,
        domain: &str,
        selector: &str,
        chain: &str,
        results: &str,
        message: &[u8],
    ) -> Result<String, String>;

    /// `message` encrypted (and signed) for `partner` ([`Edit::SmimeEncrypt`]).
    fn smime_protect(&self, partner: &str, message: &[u8]) -> Result<Vec<u8>, String> {
        let _ = (partner, message);
        Err("no S/MIME here".into())
    }

    /// `message` encrypted (and signed) with OpenPGP for `partner` ([`Edit::PgpEncrypt`]).
    fn pgp_protect(&self, partner: &str, message: &[u8]) -> Result<Vec<u8>, String> {
        let _ = (partner, message);
        Err("no OpenPGP here".into())
    }
}

/// Whether `edits` ask for a signature, a seal or encryption: the copy is then made in memory.
pub fn signs(edits: &[Edit]) -> bool {
    edits.iter().any(|e| {
        matches!(
            e,
            Edit::DkimSign { .. }
                | Edit::ArcSeal { .. }
                | Edit::SmimeEncrypt { .. }
                | Edit::PgpEncrypt { .. }
        )
    })
}

/// `message` with the [`Edit::SmimeEncrypt`] or [`Edit::PgpEncrypt`] of `edits` applied
/// (unchanged without one).
pub fn encrypted(
    message: Vec<u8>,
    edits: &[Edit],
    signer: Option<&dyn Signer>,
) -> Result<Vec<u8>, String> {
    for e in edits {
        match e {
            Edit::SmimeEncrypt { partner } => {
                return signer
                    .ok_or_else(|| "no encryption keys here".to_string())?
                    .smime_protect(partner, &message);
            }
            Edit::PgpEncrypt { partner } => {
                return signer
                    .ok_or_else(|| "no encryption keys here".to_string())?
                    .pgp_protect(partner, &message);
            }
            _ => {}
        }
    }
    Ok(message)
}

/// The `DKIM-Signature` fields (each with its CRLF) of `message` (every other edit already
/// applied), one per `DkimSign` edit, then above them the ARC set of an `ArcSeal` edit, which
/// covers the signatures too. A signature or seal that cannot be made is logged and left
/// out: the copy still leaves.
pub fn signatures(message: &[u8], edits: &[Edit], signer: Option<&dyn Signer>) -> Vec<u8> {
    let mut fields = String::new();
    for e in edits {
        let Edit::DkimSign { domain, selector } = e else {
            continue;
        };
        match signer.map(|s| s.dkim_signature(domain, selector, message)) {
            Some(Ok(f)) => fields.push_str(&f),
            Some(Err(err)) => {
                tracing::error!(event = "dkim.sign_failed", domain = %domain, selector = %selector, error = %err);
            }
            None => {
                tracing::error!(event = "dkim.sign_failed", domain = %domain, selector = %selector,
                    error = "no signing keys here");
            }
        }
    }
    let seal = edits.iter().find_map(|e| match e {
        Edit::ArcSeal {
            domain,
            selector,
            chain,
            results,
        } => Some((domain, selector, chain, results)),
        _ => None,
    });
    if let Some((domain, selector, chain, results)) = seal {
        let sealed = signer
            .ok_or_else(|| "no signing keys here".to_string())
            .and_then(|s| {
                let mut whole = Vec::with_capacity(fields.len() + message.len());
                whole.extend_from_slice(fields.as_bytes());
                whole.extend_from_slice(message);
                s.arc_set(domain, selector, chain, results, &whole)
            });
        match sealed {
            Ok(set) => fields.insert_str(0, &set),
            Err(err) => {
                tracing::error!(event = "arc.seal_failed", domain = %domain, selector = %selector, error = %err);
            }
        }
    }
    fields.into_bytes()
}

/// Writes the content at `src` with `edits` applied into `out` (not finished: the caller
/// calls `finish`, which fsyncs). `DkimSign` edits are applied last, with `signer`.
pub async fn write_edited(
    src: &Path,
    edits: &[Edit],
    signer: Option<Arc<dyn Signer>>,
    out: &mut IncomingFile,
) -> std::io::Result<()> {
    if signs(edits) {
        // The signature covers the whole copy: it is made in memory (bounded by the message
        // size, as the MIME view was), hashed and signed off the async workers.
        let raw = tokio::fs::read(src).await?;
        let edits = edits.to_vec();
        let (fields, message) = tokio::task::spawn_blocking(move || {
            let message = edited(&raw, &edits);
            drop(raw);
            // Encryption failing means no copy at all (the caller answers 4xx): never the
            // clear text in its place.
            let message = encrypted(message, &edits, signer.as_deref()).map_err(|e| {
                tracing::error!(event = "encryption.failed", error = %e);
                std::io::Error::other(format!("encryption failed: {e}"))
            })?;
            let fields = signatures(&message, &edits, signer.as_deref());
            Ok::<_, std::io::Error>((fields, message))
        })
        .await
        .map_err(std::io::Error::other)??;
        out.write(&fields).await?;
        return out.write(&message).await;
    }
    if edits.iter().any(|e| matches!(e, Edit::StripParts { .. })) {
        // Rare, and bounded by the message size (the MIME view held it whole too).
        let raw = tokio::fs::read(src).await?;
        return out.write(&edited(&raw, edits)).await;
    }
    let mut file = tokio::fs::File::open(src).await?;
    let mut head = Vec::with_capacity(64 * 1024);
    (&mut file)
        .take(MAX_HEADER as u64)
        .read_to_end(&mut head)
        .await?;
    let end = header_end(&head);
    // A header section cut by MAX_HEADER keeps its first part as fields; the rest is body.
    out.write(&edit_header(&head[..end], edits)).await?;
    out.write(&head[end..]).await?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        out.write(&buf[..n]).await?;
    }
    Ok(())
}

/// Copies `src` unchanged into `out`.
pub async fn write_copy(src: &Path, out: &mut IncomingFile) -> std::io::Result<()> {
    write_edited(src, &[], None, out).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"Received: from x\r\n\tby y; now\r\nSubject: hello\r\n world\r\nX-Old: 1\r\nFrom: a@b\r\n\r\nbody\r\nX-Old: not a header\r\n";

    #[test]
    fn header_section_ends_at_the_empty_line() {
        let end = header_end(MSG);
        assert!(MSG[..end].ends_with(b"a@b\r\n\r\n"));
        assert_eq!(header_end(b"no header here\r\n\r\nx"), 0);
        assert_eq!(header_end(b"A: b\r\n"), 6);
        assert_eq!(header_end(b"A: b\r\nnot a field\r\n"), 6);
    }

    #[test]
    fn no_edits_is_identity() {
        let end = header_end(MSG);
        assert_eq!(edit_header(&MSG[..end], &[]), &MSG[..end]);
    }

    #[test]
    fn forged_authentication_results_of_our_id_are_removed() {
        let msg = b"Authentication-Results: (forged) MX.example.org;\r\n\tspf=pass smtp.mailfrom=a@b\r\nAuthentication-Results: mx.example.org 1; dkim=pass\r\nAuthentication-Results: other.example; dmarc=pass\r\nAuthentication-Results: \"mx.example.org\"; none\r\nAuthentication-Results: mx.example.org.evil; none\r\nFrom: a@b\r\n\r\n";
        let out = edit_header(
            msg,
            &[
                Edit::RemoveAuthenticationResults {
                    authserv_id: "mx.example.org".into(),
                },
                Edit::AddHeader {
                    name: AUTHENTICATION_RESULTS.into(),
                    value: "mx.example.org; spf=none".into(),
                },
            ],
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Authentication-Results: mx.example.org; spf=none\r\nAuthentication-Results: other.example; dmarc=pass\r\nAuthentication-Results: mx.example.org.evil; none\r\nFrom: a@b\r\n\r\n"
        );
        assert_eq!(claimed_authserv_id(b"Authentication-Results:;x"), None);
        assert_eq!(
            claimed_authserv_id(b"Authentication-Results: (a (nested) comment)\r\n x.example;"),
            Some("x.example".into())
        );
    }

    #[test]
    fn edits_in_order() {
        let end = header_end(MSG);
        let edits = vec![
            Edit::AddHeader {
                name: "X-Palisade-Test".into(),
                value: "yes".into(),
            },
            Edit::RemoveHeader {
                name: "x-old".into(),
            },
            Edit::TagSubject {
                tag: "[SPAM]".into(),
            },
            Edit::TagSubject {
                tag: "[SPAM]".into(),
            },
        ];
        let out = edit_header(&MSG[..end], &edits);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "X-Palisade-Test: yes\r\nReceived: from x\r\n\tby y; now\r\nSubject: [SPAM] hello\r\n world\r\nFrom: a@b\r\n\r\n"
        );
        // Removing an added field removes it too.
        let out = edit_header(
            &MSG[..end],
            &[
                Edit::AddHeader {
                    name: "X-A".into(),
                    value: "1".into(),
                },
                Edit::RemoveHeader { name: "X-A".into() },
            ],
        );
        assert_eq!(out, &MSG[..end]);
        // No Subject: one is added.
        let out = edit_header(
            b"From: a@b\r\n\r\n",
            &[Edit::TagSubject { tag: "[X]".into() }],
        );
        assert_eq!(out, b"From: a@b\r\nSubject: [X]\r\n\r\n");
        // The sender's [secure] goes, whatever its case, once; a Subject without it stays.
        let untag = [Edit::UntagSubject {
            tag: "[secure]".into(),
        }];
        assert_eq!(
            edit_header(b"Subject: Re: [SECURE] Results [secure]\r\n\r\n", &untag),
            b"Subject: Re: Results [secure]\r\n\r\n"
        );
        assert_eq!(
            edit_header(b"Subject: Results\r\n\r\n", &untag),
            b"Subject: Results\r\n\r\n"
        );
    }
    #[test]
    fn strip_parts_replaces_ranges_and_skips_bad_ones() {
        use palisade_policy::StrippedPart;
        let raw = b"From: a@b\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nA: 1\r\n\r\none\r\n--x\r\nB: 2\r\n\r\ntwo\r\n--x--\r\n";
        let find =
            |needle: &[u8]| raw.windows(needle.len()).position(|w| w == needle).unwrap() as u64;
        let part = |start: u64, end: u64, note: &str| StrippedPart {
            section: "1.2".into(),
            name: "two".into(),
            reason: "test".into(),
            start,
            end,
            note: note.into(),
        };
        let (s, e) = (find(b"B: 2"), find(b"two") + 3);
        let edits = vec![Edit::StripParts {
            parts: vec![
                part(s, e, "gone\r\n--x--\r\nx\u{e9}"),
                part(s, e, "again"),          // the same range: first wins
                part(s + 1, e - 1, "inside"), // overlaps: skipped
                part(3, 8, "in the header"),  // before the body: skipped
                part(e, raw.len() as u64 + 10, "beyond"), // past the end: skipped
            ],
        }];
        let out = edited(raw, &edits);
        let want = "From: a@b\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nA: 1\r\n\r\none\r\n--x\r\n\
Content-Type: text/plain; charset=us-ascii\r\nContent-Disposition: inline\r\nContent-Transfer-Encoding: 7bit\r\nX-Palisade-Stripped: yes\r\n\r\n\
gone\r\n --x--\r\nx?\r\n--x--\r\n";
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }
}
