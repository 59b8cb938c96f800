//! `winmail.dat` (TNEF, [MS-OXTNEF]): the body and attachments Outlook wraps for Exchange
//! recipients. Read for the detectors: the message body (attBody, or PR_BODY / the compressed
//! RTF body PR_RTF_COMPRESSED among the MAPI properties, [MS-OXRTFCP]) and every attachment's
//! content when it is text (by the same rules as any part: text, HTML, RTF). Attachments that
//! are documents (PDF, Office) are handed back as bytes for the caller's own readers; the
//! rest is reported by name. Bounded by the size of the file itself (every length is checked
//! against what is left) and a cap on attributes.

use crate::extract::rtf_text;

/// The TNEF signature 0x223E9F78, little-endian.
pub const SIGNATURE: [u8; 4] = [0x78, 0x9F, 0x3E, 0x22];

const MAX_ATTRIBUTES: usize = 10_000;

const ATT_BODY: u32 = 0x0002_800C;
const ATT_ATTACH_TITLE: u32 = 0x0001_8010;
const ATT_ATTACH_DATA: u32 = 0x0006_800F;
const ATT_ATTACH_REND_DATA: u32 = 0x0006_9002;
const ATT_MAPI_PROPS: u32 = 0x0006_9003;
const ATT_ATTACHMENT: u32 = 0x0006_9005;

const PR_BODY: u16 = 0x1000;
const PR_RTF_COMPRESSED: u16 = 0x1009;
const PR_ATTACH_LONG_FILENAME: u16 = 0x3707;

/// What one `winmail.dat` holds, as text by inner name, and what could not be read.
#[derive(Debug, Default)]
pub struct Found {
    pub texts: Vec<(String, String)>,
    pub unscannable: Vec<(String, String)>,
}

#[derive(Default)]
struct Attachment {
    name: Option<String>,
    data: Option<Vec<u8>>,
}

/// Reads `bytes` (a whole TNEF stream).
pub fn read(bytes: &[u8]) -> Result<Found, String> {
    if !bytes.starts_with(&SIGNATURE) || bytes.len() < 6 {
        return Err("not a TNEF stream".into());
    }
    let mut found = Found::default();
    let mut at = 6;
    let mut attachments: Vec<Attachment> = Vec::new();
    let mut count = 0;
    while at + 9 <= bytes.len() {
        count += 1;
        if count > MAX_ATTRIBUTES {
            return Err("too many attributes".into());
        }
        let level = bytes[at];
        let id = u32::from_le_bytes(bytes[at + 1..at + 5].try_into().expect("4 bytes"));
        let len = u32::from_le_bytes(bytes[at + 5..at + 9].try_into().expect("4 bytes")) as usize;
        let start = at + 9;
        let Some(data) = start.checked_add(len).and_then(|e| bytes.get(start..e)) else {
            return Err(format!("attribute {id:#010x} runs past the end"));
        };
        at = start + len + 2; // the checksum
        match (level, id) {
            (_, ATT_ATTACH_REND_DATA) => attachments.push(Attachment::default()),
            (2, ATT_ATTACH_TITLE) => {
                if let Some(a) = attachments.last_mut() {
                    a.name = Some(c_string(data));
                }
            }
            (2, ATT_ATTACH_DATA) => {
                if let Some(a) = attachments.last_mut() {
                    a.data = Some(data.to_vec());
                }
            }
            (2, ATT_ATTACHMENT) => {
                if let Some(a) = attachments.last_mut() {
                    for (tag, value) in mapi_props(data)? {
                        if tag == PR_ATTACH_LONG_FILENAME {
                            a.name = Some(string_value(&value));
                        }
                    }
                }
            }
            (1, ATT_BODY) => found.texts.push(("body".into(), c_string(data))),
            (1, ATT_MAPI_PROPS) => {
                for (tag, value) in mapi_props(data)? {
                    match tag {
                        PR_BODY => found.texts.push(("body".into(), string_value(&value))),
                        PR_RTF_COMPRESSED => match decompress_rtf(&value) {
                            Ok(rtf) => found.texts.push(("body".into(), rtf_text(&rtf))),
                            Err(why) => found
                                .unscannable
                                .push(("body".into(), format!("compressed RTF body: {why}"))),
                        },
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    for (k, a) in attachments.into_iter().enumerate() {
        let name = a
            .name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| format!("attachment {}", k + 1));
        let Some(data) = a.data else { continue };
        let lower = name.to_ascii_lowercase();
        if data.starts_with(b"%PDF-") {
            match crate::pdf::text(&data) {
                Ok(t) => found.texts.push((name, t)),
                Err(why) => found.unscannable.push((name, format!("PDF: {why}"))),
            }
        } else if data.starts_with(b"{\\rtf") {
            found.texts.push((name, rtf_text(&data)));
        } else if data.starts_with(b"PK\x03\x04") {
            found.unscannable.push((
                name,
                "an archive or Office document inside winmail.dat is not read".into(),
            ));
        } else if std::str::from_utf8(&data).is_ok()
            || lower.ends_with(".txt")
            || lower.ends_with(".csv")
        {
            found
                .texts
                .push((name, String::from_utf8_lossy(&data).into_owned()));
        }
    }
    Ok(found)
}

fn c_string(data: &[u8]) -> String {
    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    String::from_utf8_lossy(&data[..end]).into_owned()
}

/// A PT_STRING8 or PT_UNICODE value (the type is told by the caller's tag table; here: UTF-16
/// when it looks like it).
fn string_value(v: &Value) -> String {
    match v {
        Value::Unicode(s) => s.clone(),
        Value::Bytes(b) => c_string(b),
    }
}

enum Value {
    Unicode(String),
    Bytes(Vec<u8>),
}

/// The MAPI properties of an attMAPIProps / attAttachment attribute: (property id, value) of
/// the string and binary ones; the rest are walked over.
fn mapi_props(data: &[u8]) -> Result<Vec<(u16, Value)>, String> {
    let mut r = Reader { data, at: 0 };
    let count = r.u32()? as usize;
    let mut out = Vec::new();
    for _ in 0..count.min(100_000) {
        let ptype = r.u16()?;
        let id = r.u16()?;
        if id >= 0x8000 {
            // A named property: GUID, kind, then an id or a name.
            r.skip(16)?;
            match r.u32()? {
                0 => r.skip(4)?,
                _ => {
                    let n = r.u32()? as usize;
                    r.skip(padded(n))?;
                }
            }
        }
        let multi = ptype & 0x1000 != 0;
        let base = ptype & 0x0FFF;
        let values = match base {
            0x001E | 0x001F | 0x000D | 0x0102 => r.u32()? as usize,
            _ if multi => r.u32()? as usize,
            _ => 1,
        };
        for _ in 0..values.min(100_000) {
            match base {
                0x0002 | 0x0003 | 0x0004 | 0x000A | 0x000B => r.skip(4)?,
                0x0005 | 0x0006 | 0x0007 | 0x0014 | 0x0040 => r.skip(8)?,
                0x0048 => r.skip(16)?,
                0x001E | 0x001F | 0x000D | 0x0102 => {
                    let n = r.u32()? as usize;
                    let bytes = r.take(n)?;
                    r.skip(padded(n) - n)?;
                    let v = if base == 0x001F {
                        let units = bytes
                            .chunks_exact(2)
                            .map(|c| u16::from_le_bytes([c[0], c[1]]))
                            .take_while(|&u| u != 0);
                        Value::Unicode(
                            char::decode_utf16(units)
                                .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                                .collect(),
                        )
                    } else {
                        Value::Bytes(bytes.to_vec())
                    };
                    out.push((id, v));
                }
                other => return Err(format!("MAPI property type {other:#06x} not understood")),
            }
        }
    }
    Ok(out)
}

fn padded(n: usize) -> usize {
    n.div_ceil(4) * 4
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let s = self
            .at
            .checked_add(n)
            .and_then(|e| self.data.get(self.at..e))
            .ok_or("MAPI properties run past the end")?;
        self.at += n;
        Ok(s)
    }
    fn skip(&mut self, n: usize) -> Result<(), String> {
        self.take(n).map(|_| ())
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
}

/// The dictionary every compressed RTF stream starts with ([MS-OXRTFCP] 3.1.3.1).
const RTF_PREBUF: &[u8] = b"{\\rtf1\\ansi\\mac\\deff0\\deftab720{\\fonttbl;}{\\f0\\fnil \\froman \\fswiss \\fmodern \\fscript \\fdecor MS Sans SerifSymbolArialTimes New RomanCourier{\\colortbl\\red0\\green0\\blue0\r\n\\par \\pard\\plain\\f0\\fs20\\b\\i\\u\\tab\\tx";

/// PR_RTF_COMPRESSED: `LZFu` (compressed) or `MELA` (stored).
fn decompress_rtf(v: &Value) -> Result<Vec<u8>, String> {
    let Value::Bytes(data) = v else {
        return Err("not binary".into());
    };
    if data.len() < 16 {
        return Err("too short".into());
    }
    let raw_size = u32::from_le_bytes(data[4..8].try_into().expect("4")) as usize;
    let magic = &data[8..12];
    let body = &data[16..];
    if magic == b"MELA" {
        return Ok(body[..body.len().min(raw_size)].to_vec());
    }
    if magic != b"LZFu" {
        return Err("unknown compression".into());
    }
    let cap = raw_size.min(64 * 1024 * 1024);
    let mut dict = [0u8; 4096];
    dict[..RTF_PREBUF.len()].copy_from_slice(RTF_PREBUF);
    let mut write = RTF_PREBUF.len();
    let mut out = Vec::with_capacity(cap.min(1 << 20));
    let mut i = 0;
    'outer: while i < body.len() {
        let flags = body[i];
        i += 1;
        for bit in 0..8 {
            if out.len() >= cap || i >= body.len() {
                break 'outer;
            }
            if flags & (1 << bit) == 0 {
                let b = body[i];
                i += 1;
                out.push(b);
                dict[write % 4096] = b;
                write += 1;
            } else {
                let Some(pair) = body.get(i..i + 2) else {
                    break 'outer;
                };
                i += 2;
                let v = u16::from_be_bytes([pair[0], pair[1]]) as usize;
                let offset = v >> 4;
                let len = (v & 0xF) + 2;
                if offset == write % 4096 {
                    break 'outer; // the end marker
                }
                for k in 0..len {
                    let b = dict[(offset + k) % 4096];
                    out.push(b);
                    dict[write % 4096] = b;
                    write += 1;
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(level: u8, id: u32, data: &[u8]) -> Vec<u8> {
        let mut v = vec![level];
        v.extend_from_slice(&id.to_le_bytes());
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
        let sum: u32 = data.iter().map(|&b| u32::from(b)).sum();
        v.extend_from_slice(&((sum & 0xFFFF) as u16).to_le_bytes());
        v
    }

    #[test]
    fn body_and_attachments_are_read() {
        let mut t = SIGNATURE.to_vec();
        t.extend_from_slice(&[0x01, 0x00]);
        t.extend(attr(1, ATT_BODY, b"Patient NHS 943 476 5919\0"));
        t.extend(attr(2, ATT_ATTACH_REND_DATA, &[0; 14]));
        t.extend(attr(2, ATT_ATTACH_TITLE, b"list.csv\0"));
        t.extend(attr(2, ATT_ATTACH_DATA, b"name,nhs\nA,4010232137\n"));
        let f = read(&t).unwrap();
        assert_eq!(
            f.texts[0],
            ("body".to_string(), "Patient NHS 943 476 5919".to_string())
        );
        assert_eq!(f.texts[1].0, "list.csv");
        assert!(f.texts[1].1.contains("4010232137"));
        // Truncated: an error, never a silent pass.
        assert!(read(&t[..t.len() - 10]).is_err());
    }

    #[test]
    fn compressed_rtf_from_the_specification() {
        // [MS-OXRTFCP] 3.1.3.1 example 1: "{\rtf1\ansi\ansicpg1252\pard hello world}\r\n".
        let data: Vec<u8> = vec![
            0x2d, 0x00, 0x00, 0x00, 0x2b, 0x00, 0x00, 0x00, 0x4c, 0x5a, 0x46, 0x75, 0xf1, 0xc5,
            0xc7, 0xa7, 0x03, 0x00, 0x0a, 0x00, 0x72, 0x63, 0x70, 0x67, 0x31, 0x32, 0x35, 0x42,
            0x32, 0x0a, 0xf3, 0x20, 0x68, 0x65, 0x6c, 0x09, 0x00, 0x20, 0x62, 0x77, 0x05, 0xb0,
            0x6c, 0x64, 0x7d, 0x0a, 0x80, 0x0f, 0xa0,
        ];
        let out = decompress_rtf(&Value::Bytes(data)).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out),
            "{\\rtf1\\ansi\\ansicpg1252\\pard hello world}\r\n"
        );
    }
}
