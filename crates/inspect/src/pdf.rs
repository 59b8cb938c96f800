//! The text of a PDF, for the detectors: enough of PDF to read what its pages show, no more.
//!
//! Objects are found by scanning for `N G obj` (and inside compressed object streams), so a
//! broken cross-reference table does not matter; streams are inflated (FlateDecode, the filter
//! of nearly every text stream; others are not text and are left out) within a budget; every
//! content stream's text operators (`Tj`, `TJ`, `'`, `"`) are read with the font's ToUnicode
//! map when it has one (subset fonts with two-byte codes), else as single bytes (WinAnsi).
//! Not built: decryption (an encrypted PDF is unscannable: RC4/AES would be a second crypto
//! stack), LZW/ASCII85 content streams, Type 3 glyph names. A PDF whose pages have no text
//! layer (a scan) is unscannable too: its content cannot be read, so it is not clean.
//!
//! Never panics on hostile input by design (every index is checked); the caller also runs it
//! under the view's time budget.

use std::collections::HashMap;
use std::io::Read;

/// Decompressed stream bytes one PDF may make us hold in all.
const MAX_INFLATED: u64 = 64 * 1024 * 1024;
/// Objects read from one PDF.
const MAX_OBJECTS: usize = 200_000;
/// Operands kept on the content stack.
const MAX_OPERANDS: usize = 64;
/// Fonts read from one PDF, and code mappings per font (two-byte codes: 65,536 at most).
const MAX_FONTS: usize = 1000;
const MAX_CMAP_ENTRIES: usize = 65_536;
/// Code mappings made from all fonts of one PDF together.
const MAX_CMAP_TOTAL: usize = 1_000_000;

struct Object<'a> {
    /// The object's text before `stream` (its dictionary), or all of it.
    dict: &'a [u8],
    /// Decoded stream content.
    data: Option<Vec<u8>>,
}

/// A font's code → text map, and how many bytes one code takes.
#[derive(Default)]
struct CMap {
    map: HashMap<u32, String>,
    width: usize,
}

/// The text of every page of `pdf`, or why it cannot be read.
pub fn text(pdf: &[u8]) -> Result<String, String> {
    let mut budget = MAX_INFLATED;
    text_within(pdf, &mut budget)
}

/// [`text`] with the inflation budget shared by every PDF of one message (spent as used).
pub fn text_within(pdf: &[u8], shared_budget: &mut u64) -> Result<String, String> {
    let result = text_budgeted(pdf, shared_budget);
    if *shared_budget == 0 && result.is_err() {
        return Err("over the decompression budget of this message's PDFs".into());
    }
    result
}

fn text_budgeted(pdf: &[u8], shared_budget: &mut u64) -> Result<String, String> {
    if !pdf.starts_with(b"%PDF-")
        && memchr::memmem::find(&pdf[..pdf.len().min(1024)], b"%PDF-").is_none()
    {
        return Err("not a PDF".into());
    }
    let mut budget = MAX_INFLATED.min(*shared_budget);
    let start_budget = budget;
    let mut objects: HashMap<u32, Object<'_>> = HashMap::new();
    let mut compressed: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut encrypted = false;
    for (num, start) in object_starts(pdf) {
        if objects.len() >= MAX_OBJECTS {
            break;
        }
        let body = &pdf[start..];
        let end = memchr::memmem::find(body, b"endobj").unwrap_or(body.len());
        let body = &body[..end];
        let (dict, data) = match memchr::memmem::find(body, b"stream") {
            Some(s) if !body[..s].ends_with(b"end") => {
                let mut d = s + 6;
                if body.get(d) == Some(&b'\r') {
                    d += 1;
                }
                if body.get(d) == Some(&b'\n') {
                    d += 1;
                }
                let dict = &body[..s];
                let raw_end =
                    memchr::memmem::rfind(&body[d..], b"endstream").map_or(body.len(), |e| d + e);
                let raw = &body[d.min(raw_end)..raw_end];
                (dict, Some(decode_stream(dict, raw, &mut budget)))
            }
            _ => (body, None),
        };
        // The encryption dictionary (the standard security handler, or another).
        encrypted |= has_name(dict, b"/Encrypt")
            || (has_name(dict, b"/Filter")
                && has_name(dict, b"/Standard")
                && has_name(dict, b"/U"));
        if has_name(dict, b"/ObjStm")
            && let Some(Some(d)) = data.as_ref().map(|d| d.as_ref().ok())
        {
            compressed.push((num, d.clone()));
        }
        objects.insert(
            num,
            Object {
                dict,
                data: data.and_then(Result::ok),
            },
        );
    }
    *shared_budget -= start_budget - budget;
    if encrypted || trailer_says_encrypted(pdf) {
        return Err("encrypted: its text cannot be read".into());
    }
    // Objects inside object streams: dictionaries only (fonts, resources).
    let mut inner: HashMap<u32, Vec<u8>> = HashMap::new();
    for (_, data) in &compressed {
        for (num, bytes) in object_stream(data) {
            if inner.len() + objects.len() >= MAX_OBJECTS {
                break;
            }
            inner.entry(num).or_insert(bytes);
        }
    }
    let dict_of = |num: u32| -> Option<&[u8]> {
        objects
            .get(&num)
            .map(|o| o.dict)
            .or_else(|| inner.get(&num).map(Vec::as_slice))
    };
    // Fonts by resource name (the first definition of a name wins), with their ToUnicode maps.
    let mut fonts: HashMap<Vec<u8>, CMap> = HashMap::new();
    let mut cmap_total = 0usize;
    let all_dicts: Vec<&[u8]> = objects
        .values()
        .map(|o| o.dict)
        .chain(inner.values().map(Vec::as_slice))
        .collect();
    for dict in &all_dicts {
        let mut from = 0;
        while let Some(p) = memchr::memmem::find(&dict[from..], b"/Font") {
            let at = from + p + 5;
            from = at;
            let rest = skip_ws(&dict[at..]);
            let table: Option<&[u8]> = if rest.starts_with(b"<<") {
                Some(rest)
            } else if let Some((n, _)) = reference(rest) {
                dict_of(n)
            } else {
                None
            };
            let Some(table) = table else { continue };
            for (name, font) in name_refs(table) {
                if fonts.contains_key(&name) || fonts.len() >= MAX_FONTS {
                    continue;
                }
                let Some(fd) = dict_of(font) else { continue };
                let mut cmap = CMap {
                    width: if has_name(fd, b"/Identity-H") || has_name(fd, b"/Identity-V") {
                        2
                    } else {
                        1
                    },
                    ..CMap::default()
                };
                if let Some(tu) = value_after(fd, b"/ToUnicode").and_then(reference)
                    && let Some(Some(data)) = objects.get(&tu.0).map(|o| o.data.as_ref())
                    && cmap_total < MAX_CMAP_TOTAL
                {
                    parse_cmap(data, &mut cmap);
                    cmap_total += cmap.map.len();
                }
                fonts.insert(name, cmap);
            }
        }
    }
    let mut out = String::new();
    let mut streams: Vec<(&u32, &Object<'_>)> = objects
        .iter()
        .filter(|(_, o)| o.data.is_some() && is_content(o.dict))
        .collect();
    streams.sort_by_key(|(n, _)| **n);
    for (_, o) in streams {
        if let Some(data) = &o.data {
            content_text(data, &fonts, &mut out);
            out.push('\n');
        }
    }
    if out.chars().all(char::is_whitespace) {
        return Err("no text layer (scanned images?): its content cannot be read".into());
    }
    Ok(out)
}

fn trailer_says_encrypted(pdf: &[u8]) -> bool {
    // The trailer (or an xref stream's dictionary) names the encryption dictionary.
    let tail = &pdf[pdf.len().saturating_sub(4096)..];
    memchr::memmem::find(tail, b"/Encrypt").is_some()
        || memchr::memmem::find_iter(pdf, b"/Type/XRef")
            .chain(memchr::memmem::find_iter(pdf, b"/Type /XRef"))
            .any(|p| {
                let w = &pdf[p.saturating_sub(512)..(p + 512).min(pdf.len())];
                memchr::memmem::find(w, b"/Encrypt").is_some()
            })
}

/// Where every `N G obj` starts (the byte after `obj`), with its number.
fn object_starts(pdf: &[u8]) -> Vec<(u32, usize)> {
    let mut out = Vec::new();
    for p in memchr::memmem::find_iter(pdf, b"obj") {
        // Not "endobj", and preceded by "N G ".
        if p >= 3 && &pdf[p - 3..p] == b"end" {
            continue;
        }
        if pdf.get(p + 3).is_some_and(|c| c.is_ascii_alphanumeric()) {
            continue;
        }
        let before = &pdf[p.saturating_sub(24)..p];
        let mut tokens = before
            .split(|c| c.is_ascii_whitespace())
            .filter(|t| !t.is_empty())
            .rev();
        let (Some(generation), Some(number)) = (tokens.next(), tokens.next()) else {
            continue;
        };
        if !generation.iter().all(u8::is_ascii_digit) {
            continue;
        }
        let digits: Vec<u8> = number
            .iter()
            .rev()
            .take_while(|c| c.is_ascii_digit())
            .copied()
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if let Some(n) = std::str::from_utf8(&digits)
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
        {
            out.push((n, p + 3));
        }
    }
    out
}

fn decode_stream(dict: &[u8], raw: &[u8], budget: &mut u64) -> Result<Vec<u8>, ()> {
    let filters = value_after(dict, b"/Filter").unwrap_or(b"");
    let first = filters.iter().position(|&c| c == b'/');
    let name: &[u8] = first.map_or(b"", |f| {
        let n = &filters[f + 1..];
        let e = n
            .iter()
            .position(|c| !c.is_ascii_alphanumeric())
            .unwrap_or(n.len());
        &n[..e]
    });
    if value_after(dict, b"/Filter").is_none() {
        return Ok(raw.to_vec());
    }
    match name {
        b"FlateDecode" | b"Fl" => {
            let mut out = Vec::new();
            let mut z = flate2::read::ZlibDecoder::new(raw).take(*budget + 1);
            // A truncated or damaged stream still gives what inflated before the damage.
            let _ = z.read_to_end(&mut out);
            if out.len() as u64 > *budget {
                *budget = 0;
                return Err(());
            }
            *budget -= out.len() as u64;
            Ok(out)
        }
        _ => Err(()),
    }
}

/// The objects of an object stream: `N offset` pairs, then the objects.
fn object_stream(data: &[u8]) -> Vec<(u32, Vec<u8>)> {
    let mut nums = Vec::new();
    let mut rest = data;
    // The header is pairs of integers up to the first object (which starts with `<<` or `[`).
    loop {
        rest = skip_ws(rest);
        let Some((a, r)) = integer(rest) else { break };
        let r = skip_ws(r);
        let Some((b, r)) = integer(r) else { break };
        nums.push((a as u32, b as usize));
        rest = r;
        if nums.len() > 100_000 {
            break;
        }
    }
    let first = data.len() - rest.len();
    let mut out = Vec::new();
    for (k, &(num, off)) in nums.iter().enumerate() {
        let s = first + off;
        let e = nums.get(k + 1).map_or(data.len(), |&(_, o)| first + o);
        if s < e && e <= data.len() {
            out.push((num, data[s..e].to_vec()));
        }
    }
    out
}

fn is_content(dict: &[u8]) -> bool {
    !(has_name(dict, b"/Image")
        || has_name(dict, b"/ObjStm")
        || has_name(dict, b"/XRef")
        || has_name(dict, b"/Metadata")
        || has_name(dict, b"/Length1")
        || has_name(dict, b"/Length2")
        || has_name(dict, b"/FontFile")
        || has_name(dict, b"/EmbeddedFile")
        || has_name(dict, b"/CMapName"))
}

fn has_name(dict: &[u8], name: &[u8]) -> bool {
    memchr::memmem::find_iter(dict, name).any(|p| {
        dict.get(p + name.len())
            .is_none_or(|c| !c.is_ascii_alphanumeric())
    })
}

/// What follows key `name` in a dictionary's text.
fn value_after<'a>(dict: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    memchr::memmem::find_iter(dict, name)
        .find(|&p| {
            dict.get(p + name.len())
                .is_none_or(|c| !c.is_ascii_alphanumeric())
        })
        .map(|p| skip_ws(&dict[p + name.len()..]))
}

fn skip_ws(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .position(|c| !(c.is_ascii_whitespace() || *c == 0))
        .unwrap_or(s.len());
    &s[n..]
}

fn integer(s: &[u8]) -> Option<(u64, &[u8])> {
    let n = s.iter().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 || n > 12 {
        return None;
    }
    let v = std::str::from_utf8(&s[..n]).ok()?.parse().ok()?;
    Some((v, &s[n..]))
}

/// `N G R` at the start of `s`.
fn reference(s: &[u8]) -> Option<(u32, &[u8])> {
    let (n, r) = integer(skip_ws(s))?;
    let (_, r) = integer(skip_ws(r))?;
    let r = skip_ws(r);
    let r = r.strip_prefix(b"R")?;
    Some((n as u32, r))
}

/// `/Name N G R` pairs of the first dictionary in `s`.
fn name_refs(s: &[u8]) -> Vec<(Vec<u8>, u32)> {
    let mut out = Vec::new();
    let Some(open) = memchr::memmem::find(s, b"<<") else {
        return out;
    };
    let end = memchr::memmem::find(&s[open + 2..], b">>").map_or(s.len(), |e| open + 2 + e);
    let mut rest = &s[open + 2..end];
    while let Some(slash) = rest.iter().position(|&c| c == b'/') {
        let after = &rest[slash + 1..];
        let n = after
            .iter()
            .position(|c| c.is_ascii_whitespace() || b"/<[(".contains(c))
            .unwrap_or(after.len());
        let name = after[..n].to_vec();
        match reference(&after[n..]) {
            Some((num, r)) => {
                out.push((name, num));
                rest = r;
            }
            None => rest = &after[n..],
        }
    }
    out
}

/// `beginbfchar` / `beginbfrange` entries of a ToUnicode CMap.
fn parse_cmap(data: &[u8], cmap: &mut CMap) {
    let hexes = |s: &[u8]| -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut rest = s;
        while let Some(o) = rest.iter().position(|&c| c == b'<' || c == b'[') {
            if rest[o] == b'[' {
                // An array of destinations: only its first is used.
                rest = &rest[o + 1..];
                continue;
            }
            let Some(c) = rest[o..].iter().position(|&c| c == b'>') else {
                break;
            };
            out.push(hex_bytes(&rest[o + 1..o + c]));
            rest = &rest[o + c + 1..];
            if rest.first() == Some(&b']') {
                rest = &rest[1..];
            }
        }
        out
    };
    for block in sections(data, b"beginbfchar", b"endbfchar") {
        let h = hexes(block);
        for pair in h.chunks_exact(2) {
            if cmap.map.len() >= MAX_CMAP_ENTRIES {
                break;
            }
            if pair[0].len() > 1 {
                cmap.width = 2;
            }
            cmap.map.insert(code(&pair[0]), utf16be(&pair[1]));
        }
    }
    for block in sections(data, b"beginbfrange", b"endbfrange") {
        let h = hexes(block);
        for triple in h.chunks_exact(3) {
            if triple[0].len() > 1 {
                cmap.width = 2;
            }
            let (lo, hi) = (code(&triple[0]), code(&triple[1]));
            if hi < lo || (hi - lo) as usize + cmap.map.len() > MAX_CMAP_ENTRIES {
                continue;
            }
            let base = triple[2].clone();
            for (k, c) in (lo..=hi).enumerate() {
                let mut dst = base.clone();
                if let Some(last) = dst.last_mut() {
                    *last = last.wrapping_add(k as u8);
                }
                cmap.map.insert(c, utf16be(&dst));
            }
        }
    }
}

fn sections<'a>(data: &'a [u8], begin: &[u8], end: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(b) = memchr::memmem::find(rest, begin) {
        let after = &rest[b + begin.len()..];
        let e = memchr::memmem::find(after, end).unwrap_or(after.len());
        out.push(&after[..e]);
        rest = &after[e..];
    }
    out
}

fn code(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .take(4)
        .fold(0, |a, &b| (a << 8) | u32::from(b))
}

fn utf16be(bytes: &[u8]) -> String {
    let units = bytes.chunks(2).map(|c| {
        if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from(c[0])
        }
    });
    char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

fn hex_bytes(s: &[u8]) -> Vec<u8> {
    let digits: Vec<u8> = s
        .iter()
        .filter_map(|&c| (c as char).to_digit(16).map(|d| d as u8))
        .collect();
    digits
        .chunks(2)
        .map(|p| (p[0] << 4) | p.get(1).copied().unwrap_or(0))
        .collect()
}

#[derive(Debug)]
enum Operand {
    Str(Vec<u8>),
    Array(Vec<Operand>),
    Num(f64),
    Name(Vec<u8>),
}

/// Reads a content stream's text operators into `out`.
fn content_text(data: &[u8], fonts: &HashMap<Vec<u8>, CMap>, out: &mut String) {
    let mut stack: Vec<Operand> = Vec::new();
    let mut font: Option<&CMap> = None;
    let mut i = 0;
    while i < data.len() {
        let c = data[i];
        match c {
            b'%' => {
                while i < data.len() && data[i] != b'\n' && data[i] != b'\r' {
                    i += 1;
                }
            }
            b'(' => {
                let (s, n) = literal_string(&data[i..]);
                push(&mut stack, Operand::Str(s));
                i += n;
            }
            b'<' if data.get(i + 1) == Some(&b'<') => {
                // An inline dictionary (marked content properties): skipped whole.
                let e = memchr::memmem::find(&data[i..], b">>").map_or(data.len(), |e| i + e + 2);
                i = e;
            }
            b'<' => {
                let e = data[i..]
                    .iter()
                    .position(|&c| c == b'>')
                    .map_or(data.len(), |e| i + e);
                push(&mut stack, Operand::Str(hex_bytes(&data[i + 1..e])));
                i = e + 1;
            }
            b'[' => {
                let (arr, n) = array(&data[i..]);
                push(&mut stack, Operand::Array(arr));
                i += n;
            }
            b'/' => {
                let s = i + 1;
                let mut e = s;
                while e < data.len() && !is_delim(data[e]) {
                    e += 1;
                }
                push(&mut stack, Operand::Name(data[s..e].to_vec()));
                i = e;
            }
            b'0'..=b'9' | b'-' | b'+' | b'.' => {
                let s = i;
                let mut e = i + 1;
                while e < data.len() && (data[e].is_ascii_digit() || data[e] == b'.') {
                    e += 1;
                }
                let v = std::str::from_utf8(&data[s..e])
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0.0);
                push(&mut stack, Operand::Num(v));
                i = e;
            }
            c if c.is_ascii_alphabetic() || c == b'\'' || c == b'"' || c == b'*' => {
                let s = i;
                let mut e = i + 1;
                while e < data.len() && !is_delim(data[e]) {
                    e += 1;
                }
                let op = &data[s..e];
                i = e;
                match op {
                    b"BI" => {
                        // Inline image data: skip to EI.
                        i = memchr::memmem::find(&data[i..], b"EI")
                            .map_or(data.len(), |e| i + e + 2);
                    }
                    b"Tf" => {
                        if let Some(Operand::Name(n)) =
                            stack.iter().rev().find(|o| matches!(o, Operand::Name(_)))
                        {
                            font = fonts.get(n);
                        }
                    }
                    b"Tj" => {
                        if let Some(Operand::Str(s)) = stack.last() {
                            show(s, font, out);
                        }
                    }
                    b"'" | b"\"" => {
                        out.push('\n');
                        if let Some(Operand::Str(s)) = stack.last() {
                            show(s, font, out);
                        }
                    }
                    b"TJ" => {
                        if let Some(Operand::Array(a)) = stack.last() {
                            for o in a {
                                match o {
                                    Operand::Str(s) => show(s, font, out),
                                    // A wide gap between glyphs is a space.
                                    Operand::Num(n) if *n < -180.0 => out.push(' '),
                                    _ => {}
                                }
                            }
                        }
                    }
                    b"Td" | b"TD" => {
                        let ty = match stack.last() {
                            Some(Operand::Num(y)) => *y,
                            _ => 0.0,
                        };
                        out.push(if ty.abs() > 0.01 { '\n' } else { ' ' });
                    }
                    b"T*" | b"ET" | b"Tm" => out.push('\n'),
                    _ => {}
                }
                stack.clear();
            }
            _ => i += 1,
        }
    }
}

fn push(stack: &mut Vec<Operand>, o: Operand) {
    if stack.len() < MAX_OPERANDS {
        stack.push(o);
    }
}

fn is_delim(c: u8) -> bool {
    c.is_ascii_whitespace() || b"()<>[]{}/%".contains(&c)
}

/// A `( … )` string with its escapes and balanced parentheses; returns it and the bytes used.
fn literal_string(s: &[u8]) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'\\' => {
                i += 1;
                let Some(&c) = s.get(i) else { break };
                match c {
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'b' | b'f' => {}
                    b'0'..=b'7' => {
                        let mut v: u32 = 0;
                        let mut k = 0;
                        while k < 3 && s.get(i).is_some_and(|d| (b'0'..=b'7').contains(d)) {
                            v = v * 8 + u32::from(s[i] - b'0');
                            i += 1;
                            k += 1;
                        }
                        out.push(v as u8);
                        continue;
                    }
                    b'\r' | b'\n' => {}
                    other => out.push(other),
                }
                i += 1;
            }
            b'(' => {
                depth += 1;
                out.push(b'(');
                i += 1;
            }
            b')' => {
                if depth == 0 {
                    return (out, i + 1);
                }
                depth -= 1;
                out.push(b')');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    (out, s.len())
}

/// A `[ … ]` array of strings and numbers (what `TJ` takes); nested arrays are flattened away.
fn array(s: &[u8]) -> (Vec<Operand>, usize) {
    let mut out = Vec::new();
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b']' => return (out, i + 1),
            b'(' => {
                let (v, n) = literal_string(&s[i..]);
                if out.len() < 4096 {
                    out.push(Operand::Str(v));
                }
                i += n;
            }
            b'<' => {
                let e = s[i..]
                    .iter()
                    .position(|&c| c == b'>')
                    .map_or(s.len(), |e| i + e);
                if out.len() < 4096 {
                    out.push(Operand::Str(hex_bytes(&s[i + 1..e])));
                }
                i = e + 1;
            }
            b'0'..=b'9' | b'-' | b'+' | b'.' => {
                let st = i;
                let mut e = i + 1;
                while e < s.len() && (s[e].is_ascii_digit() || s[e] == b'.') {
                    e += 1;
                }
                let v = std::str::from_utf8(&s[st..e])
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0.0);
                if out.len() < 4096 {
                    out.push(Operand::Num(v));
                }
                i = e;
            }
            _ => i += 1,
        }
    }
    (out, s.len())
}

/// The text a shown string stands for in `font`.
fn show(s: &[u8], font: Option<&CMap>, out: &mut String) {
    match font {
        Some(f) if !f.map.is_empty() => {
            let w = f.width.max(1);
            for c in s.chunks(w) {
                let k = code(c);
                match f.map.get(&k) {
                    Some(t) => out.push_str(t),
                    None if w == 1 => out.push(char::from(c[0])),
                    None => {}
                }
            }
        }
        Some(f) if f.width == 2 => {} // glyph ids without a map: nothing readable
        _ => {
            for &b in s {
                out.push(winansi(b));
            }
        }
    }
}

/// Single-byte text (WinAnsi, the usual encoding of the standard fonts).
fn winansi(b: u8) -> char {
    match b {
        0x80 => '€',
        0x91 | 0x92 => '\'',
        0x93 | 0x94 => '"',
        0x96 | 0x97 => '-',
        b => char::from(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(data).unwrap();
        z.finish().unwrap()
    }

    #[test]
    fn reads_plain_and_compressed_text_with_a_tounicode_map() {
        let content =
            b"BT /F1 12 Tf 72 720 Td (Patient NHS) Tj 0 -14 Td [(943 4)-20(76 5919)] TJ ET";
        let cmap = b"/CIDInit begincmap 1 begincodespacerange <0000> <FFFF> endcodespacerange 2 beginbfchar <0001> <0034> <0002> <0030> endbfchar 1 beginbfrange <0010> <0019> <0030> endbfrange endcmap";
        let c2 = b"BT /F2 10 Tf <00140013> Tj ET";
        let z = deflate(content);
        let mut pdf = Vec::new();
        pdf.extend_from_slice(b"%PDF-1.5\n1 0 obj << /Type /Page /Resources << /Font << /F1 3 0 R /F2 5 0 R >> >> >> endobj\n");
        pdf.extend_from_slice(
            format!(
                "2 0 obj << /Length {} /Filter /FlateDecode >> stream\n",
                z.len()
            )
            .as_bytes(),
        );
        pdf.extend_from_slice(&z);
        pdf.extend_from_slice(
            b"\nendstream endobj\n3 0 obj << /Type /Font /BaseFont /Helvetica >> endobj\n",
        );
        pdf.extend_from_slice(b"4 0 obj << /Length 10 >> stream\n");
        pdf.extend_from_slice(cmap);
        pdf.extend_from_slice(b"\nendstream endobj\n5 0 obj << /Type /Font /Encoding /Identity-H /ToUnicode 4 0 R >> endobj\n");
        pdf.extend_from_slice(b"6 0 obj << /Length 10 >> stream\n");
        pdf.extend_from_slice(c2);
        pdf.extend_from_slice(b"\nendstream endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n");
        let t = text(&pdf).unwrap();
        assert!(t.contains("Patient NHS\n943 476 5919"), "{t:?}");
        assert!(t.contains("43"), "mapped through ToUnicode: {t:?}");
    }

    #[test]
    fn encrypted_and_imageonly_pdfs_are_not_read() {
        let enc = b"%PDF-1.4\n1 0 obj << /Filter /Standard /V 2 /O (x) /U (y) >> endobj\ntrailer << /Encrypt 1 0 R >>\n";
        assert!(text(enc).unwrap_err().contains("encrypted"));
        let img =
            b"%PDF-1.4\n1 0 obj << /Subtype /Image /Length 3 >> stream\nabc\nendstream endobj\n";
        assert!(text(img).unwrap_err().contains("no text layer"));
        assert!(text(b"hello").is_err());
    }
}
