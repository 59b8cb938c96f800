//! Replies: writing them (server side), reading them and EHLO capabilities (client side).

use std::fmt;

/// Longest reply line this client accepts, in octets including the CRLF. RFC 5321 4.5.3.1.5
/// says 512, but real servers exceed it; beyond this the peer is treated as broken.
pub const MAX_REPLY_LINE: usize = 4096;
/// Most lines in one multi-line reply this client accepts (bounds memory per reply).
pub const MAX_REPLY_LINES: usize = 512;
/// Longest reply line this server writes, including code and CRLF (RFC 5321 4.5.3.1.5).
const MAX_WRITTEN_LINE: usize = 512;

/// An SMTP reply: a code, an optional enhanced status code (RFC 3463) and one or more lines of
/// text (without codes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: Option<(u8, u16, u16)>,
    pub lines: Vec<String>,
}

/// Why bytes from a server are not a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("reply line does not start with a valid reply code")]
    BadCode,
    #[error("reply code not followed by space, hyphen or end of line")]
    BadSeparator,
    #[error("lines of a multi-line reply carry different codes")]
    MixedCodes,
    #[error("reply line longer than 4096 octets")]
    LineTooLong,
    #[error("reply has too many lines")]
    TooManyLines,
    #[error("bare LF in reply")]
    BareLf,
    #[error("bare CR in reply")]
    BareCr,
}

impl Reply {
    /// A one-line reply. `enhanced` is "X.Y.Z" or "" for none.
    pub fn new(code: u16, enhanced: &str, text: impl Into<String>) -> Reply {
        let parsed = parse_enhanced(enhanced);
        debug_assert!(
            enhanced.is_empty() || parsed.is_some(),
            "bad enhanced status code {enhanced:?}"
        );
        debug_assert!((200..=599).contains(&code), "bad reply code {code}");
        Reply {
            code,
            enhanced: parsed,
            lines: vec![text.into()],
        }
    }

    /// A multi-line reply without an enhanced code, e.g. the EHLO response.
    pub fn multi(code: u16, lines: Vec<String>) -> Reply {
        debug_assert!((200..=599).contains(&code), "bad reply code {code}");
        Reply {
            code,
            enhanced: None,
            lines,
        }
    }

    /// The wire form: `250-first\r\n250 last\r\n`, the enhanced code after `NNN ` on every line.
    /// Control characters in the text (CR and LF above all) become spaces, and a line is cut to
    /// 512 octets, so no text can break the framing.
    pub fn to_bytes(&self) -> Vec<u8> {
        let prefix_len = 4 + self.enhanced.map_or(0, |e| enhanced_str(e).len() + 1);
        let enhanced = self.enhanced.map(enhanced_str);
        let mut out = Vec::new();
        let empty = [String::new()];
        let lines: &[String] = if self.lines.is_empty() {
            &empty
        } else {
            &self.lines
        };
        for (i, text) in lines.iter().enumerate() {
            let last = i + 1 == lines.len();
            out.extend_from_slice(format!("{:03}", self.code.min(999)).as_bytes());
            let mut rest = String::new();
            if let Some(e) = &enhanced {
                rest.push_str(e);
            }
            let text = sanitize(text, MAX_WRITTEN_LINE - 2 - prefix_len);
            if !text.is_empty() {
                if !rest.is_empty() {
                    rest.push(' ');
                }
                rest.push_str(&text);
            }
            if !last {
                out.push(b'-');
            } else if !rest.is_empty() {
                out.push(b' ');
            }
            out.extend_from_slice(rest.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// 2xx or 3xx.
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// 4xx.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// All lines joined with " / ", without codes: for logs and DSNs.
    pub fn text(&self) -> String {
        self.lines.join(" / ")
    }
}

impl fmt::Display for Reply {
    /// The first line with its codes, e.g. `250 2.0.0 Ok`: a one-line summary for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03}", self.code)?;
        if let Some(e) = self.enhanced {
            write!(f, " {}", enhanced_str(e))?;
        }
        match self.lines.first() {
            Some(text) if !text.is_empty() => write!(f, " {text}"),
            _ => Ok(()),
        }
    }
}

fn enhanced_str((class, subject, detail): (u8, u16, u16)) -> String {
    format!("{class}.{subject}.{detail}")
}

/// Replaces control characters with spaces and cuts to at most `max` octets on a character
/// boundary.
fn sanitize(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.chars() {
        let c = if c.is_control() && c != '\t' { ' ' } else { c };
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

/// `class "." subject "." detail` (RFC 3463): class 2, 4 or 5, subject and detail 1 to 3 digits.
fn parse_enhanced(s: &str) -> Option<(u8, u16, u16)> {
    let mut parts = s.split('.');
    let (class, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let number = |p: &str, max_len: usize| {
        if (1..=max_len).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()) {
            p.parse::<u16>().ok()
        } else {
            None
        }
    };
    let class = number(class, 1)?;
    if !matches!(class, 2 | 4 | 5) {
        return None;
    }
    Some((class as u8, number(subject, 3)?, number(detail, 3)?))
}

/// Checks the start of a reply line, complete or not, so garbage is refused without waiting for
/// a line end.
fn check_line_start(line: &[u8], code: Option<&[u8]>) -> Result<(), ReplyError> {
    for (i, &b) in line.iter().take(3).enumerate() {
        let ok = match i {
            0 => (b'2'..=b'5').contains(&b),
            _ => b.is_ascii_digit(),
        };
        if !ok {
            return Err(ReplyError::BadCode);
        }
    }
    if let Some(&sep) = line.get(3)
        && !matches!(sep, b' ' | b'-' | b'\r')
    {
        return Err(ReplyError::BadSeparator);
    }
    if let Some(code) = code {
        let n = line.len().min(3);
        if line[..n] != code[..n] {
            return Err(ReplyError::MixedCodes);
        }
    }
    Ok(())
}

/// Client side: parses one complete, possibly multi-line reply from the start of `buf`.
///
/// `Ok(None)`: incomplete, read more. Errors on anything that is not a reply (see
/// [`ReplyError`]); lines are limited to [`MAX_REPLY_LINE`] octets and [`MAX_REPLY_LINES`] in
/// number. An enhanced status code at the start of the text (whose class matches the reply
/// code) is taken out of the text of every line and kept, from the first line, in
/// [`Reply::enhanced`]. Text that is not UTF-8 is decoded lossily.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut pos = 0;
    let mut code: Option<[u8; 3]> = None;
    let mut enhanced = None;
    let mut lines = Vec::new();
    loop {
        let rest = &buf[pos..];
        let mut lf = None;
        for (i, &b) in rest.iter().enumerate() {
            if i >= MAX_REPLY_LINE {
                return Err(ReplyError::LineTooLong);
            }
            match b {
                b'\n' if i > 0 && rest[i - 1] == b'\r' => {
                    lf = Some(i);
                    break;
                }
                b'\n' => return Err(ReplyError::BareLf),
                b'\r' if rest.get(i + 1).is_some_and(|&n| n != b'\n') => {
                    return Err(ReplyError::BareCr);
                }
                _ => {}
            }
        }
        check_line_start(rest, code.as_ref().map(|c| &c[..]))?;
        let Some(lf) = lf else {
            return Ok(None);
        };
        let line = &rest[..lf - 1];
        if line.len() < 3 {
            return Err(ReplyError::BadCode);
        }
        let this_code = [line[0], line[1], line[2]];
        code = Some(this_code);
        let reply_code = this_code
            .iter()
            .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        let last = line.get(3) != Some(&b'-');
        let mut text = String::from_utf8_lossy(line.get(4..).unwrap_or(&[])).into_owned();
        let word = text.split(' ').next().unwrap_or("");
        if let Some(e) = parse_enhanced(word).filter(|e| u16::from(e.0) == reply_code / 100) {
            text.drain(..(word.len() + 1).min(text.len()));
            enhanced.get_or_insert(e);
        }
        lines.push(text);
        pos += lf + 1;
        if last {
            return Ok(Some((
                Reply {
                    code: reply_code,
                    enhanced,
                    lines,
                },
                pos,
            )));
        }
        if lines.len() >= MAX_REPLY_LINES {
            return Err(ReplyError::TooManyLines);
        }
    }
}

/// What a server offered in its EHLO reply (keywords matched case-insensitively).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub pipelining: bool,
    /// `SIZE` was offered: `Some(limit)`, where 0 (or no number) means no fixed limit.
    pub size: Option<u64>,
    pub eightbitmime: bool,
    pub smtputf8: bool,
    pub starttls: bool,
    pub enhanced_status_codes: bool,
    pub dsn: bool,
    pub chunking: bool,
    /// SASL mechanisms, uppercased, without duplicates.
    pub auth: Vec<String>,
}

impl Capabilities {
    /// The capabilities in a 250 reply to EHLO (anything else offers nothing). The first line is
    /// the greeting; each further line is a keyword and its parameters. The old `AUTH=MECH ...`
    /// form is understood too.
    pub fn from_ehlo(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities::default();
        if reply.code != 250 {
            return caps;
        }
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            let keyword = keyword.to_ascii_uppercase();
            match keyword.as_str() {
                "PIPELINING" => caps.pipelining = true,
                "SIZE" => caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "8BITMIME" => caps.eightbitmime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "STARTTLS" => caps.starttls = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                "DSN" => caps.dsn = true,
                "CHUNKING" => caps.chunking = true,
                _ => {
                    let first = match keyword.strip_prefix("AUTH=") {
                        Some(mechanism) => Some(mechanism),
                        None if keyword == "AUTH" => None,
                        None => continue,
                    };
                    for mechanism in first.into_iter().chain(words).filter(|m| !m.is_empty()) {
                        let mechanism = mechanism.to_ascii_uppercase();
                        if !caps.auth.contains(&mechanism) {
                            caps.auth.push(mechanism);
                        }
                    }
                }
            }
        }
        caps
    }
}

#[cfg(test)]
mod tests;
