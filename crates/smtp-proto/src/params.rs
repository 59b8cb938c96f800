//! MAIL and RCPT parameters: SIZE (RFC 1870), BODY (RFC 6152), SMTPUTF8 (RFC 6531),
//! RET/ENVID/NOTIFY/ORCPT (DSN, RFC 3461), AUTH= (RFC 4954), and xtext.

use crate::command::CommandError;

/// Longest ENVID value, xtext-encoded (RFC 3461 4.4).
pub const MAX_ENVID: usize = 100;
/// Longest ORCPT value, `addr-type ";" xtext` (RFC 3461 4.2).
pub const MAX_ORCPT: usize = 500;
/// Longest AUTH= value, xtext-encoded (RFC 4954 5 allows the mailbox plus encoding overhead).
const MAX_AUTH_PARAM: usize = 500;

/// Parameters of `MAIL FROM:`. Which of them the session accepts depends on what it offered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    pub size: Option<u64>,
    pub body: Option<Body>,
    pub smtputf8: bool,
    pub ret: Option<Ret>,
    /// Decoded xtext.
    pub envid: Option<String>,
    /// Decoded xtext: a mailbox, or `<>`.
    pub auth: Option<String>,
}

/// `BODY=` (BINARYMIME is not offered, so it is a bad value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    SevenBit,
    EightBitMime,
}

/// `RET=`: what a DSN returns of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    Full,
    Hdrs,
}

/// A parameter value that is not one of its keyword's values (`BODY=BINARYMIME`, `RET=ALL`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {param} value: {value:?}")]
pub struct BadParamValue {
    pub param: &'static str,
    pub value: String,
}

impl Body {
    /// The parameter value (without `BODY=`): `7BIT` or `8BITMIME`.
    pub fn as_param(self) -> &'static str {
        match self {
            Body::SevenBit => "7BIT",
            Body::EightBitMime => "8BITMIME",
        }
    }

    /// Parses the parameter value (without `BODY=`), case-insensitively.
    pub fn parse(s: &str) -> Option<Body> {
        if s.eq_ignore_ascii_case("7BIT") {
            Some(Body::SevenBit)
        } else if s.eq_ignore_ascii_case("8BITMIME") {
            Some(Body::EightBitMime)
        } else {
            None
        }
    }
}

impl std::str::FromStr for Body {
    type Err = BadParamValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Body::parse(s).ok_or_else(|| BadParamValue {
            param: "BODY",
            value: s.to_owned(),
        })
    }
}

impl Ret {
    /// The parameter value (without `RET=`): `FULL` or `HDRS`.
    pub fn as_param(self) -> &'static str {
        match self {
            Ret::Full => "FULL",
            Ret::Hdrs => "HDRS",
        }
    }

    /// Parses the parameter value (without `RET=`), case-insensitively.
    pub fn parse(s: &str) -> Option<Ret> {
        if s.eq_ignore_ascii_case("FULL") {
            Some(Ret::Full)
        } else if s.eq_ignore_ascii_case("HDRS") {
            Some(Ret::Hdrs)
        } else {
            None
        }
    }
}

impl std::str::FromStr for Ret {
    type Err = BadParamValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ret::parse(s).ok_or_else(|| BadParamValue {
            param: "RET",
            value: s.to_owned(),
        })
    }
}

impl std::str::FromStr for Notify {
    type Err = BadParamValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Notify::parse(s).ok_or_else(|| BadParamValue {
            param: "NOTIFY",
            value: s.to_owned(),
        })
    }
}

/// Parameters of `RCPT TO:`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptParams {
    pub notify: Option<Notify>,
    /// `addr-type ";" address` with the address xtext-decoded, e.g. `rfc822;user@example.com`.
    pub orcpt: Option<String>,
}

/// `NOTIFY=`: `NEVER`, or any non-empty set of SUCCESS, FAILURE, DELAY.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Notify {
    pub never: bool,
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

impl Notify {
    /// The parameter value (without `NOTIFY=`), e.g. `SUCCESS,FAILURE`. A value with nothing set
    /// asks for nothing, which is written `NEVER`.
    pub fn to_param(&self) -> String {
        let set: Vec<&str> = [
            (self.success, "SUCCESS"),
            (self.failure, "FAILURE"),
            (self.delay, "DELAY"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if self.never || set.is_empty() {
            "NEVER".to_owned()
        } else {
            set.join(",")
        }
    }

    /// Whether a failure report (DSN) is wanted: the default (no NOTIFY) asks for one too.
    pub fn wants_failure(notify: Option<Notify>) -> bool {
        notify.is_none_or(|n| n.failure && !n.never)
    }

    /// Parses the parameter value (without `NOTIFY=`), case-insensitively. `NEVER` cannot be
    /// combined with anything; empty items and repeated keywords are refused.
    pub fn parse(s: &str) -> Option<Notify> {
        if s.eq_ignore_ascii_case("NEVER") {
            return Some(Notify {
                never: true,
                ..Notify::default()
            });
        }
        let mut notify = Notify::default();
        for item in s.split(',') {
            let flag = if item.eq_ignore_ascii_case("SUCCESS") {
                &mut notify.success
            } else if item.eq_ignore_ascii_case("FAILURE") {
                &mut notify.failure
            } else if item.eq_ignore_ascii_case("DELAY") {
                &mut notify.delay
            } else {
                return None;
            };
            if *flag {
                return None;
            }
            *flag = true;
        }
        Some(notify)
    }
}

/// Decodes RFC 3461 xtext: `xchar` (printable ASCII except '+' and '=') or `"+" HEX HEX`.
///
/// `None` if malformed, or if the decoded text holds anything but printable ASCII and space:
/// decoded values end up in DSN headers, where a CR or LF would let a sender write headers.
pub fn xtext_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let decoded = match c {
            b'+' => {
                let hex = s.get(i + 1..i + 3)?;
                if !hex.bytes().all(|h| h.is_ascii_hexdigit()) {
                    return None;
                }
                i += 3;
                u8::from_str_radix(hex, 16).ok()?
            }
            b'!'..=b'~' if c != b'=' => {
                i += 1;
                c
            }
            _ => return None,
        };
        if !(b' '..=b'~').contains(&decoded) {
            return None;
        }
        out.push(char::from(decoded));
    }
    Some(out)
}

/// Encodes RFC 3461 xtext: '+', '=', space, controls and every octet of non-ASCII characters
/// become `+XX`.
pub fn xtext_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

impl MailParams {
    /// The parameters as sent on the wire after the path, separated by single spaces (empty if
    /// none), e.g. `SIZE=1024 BODY=8BITMIME`.
    pub fn to_wire(&self) -> String {
        let mut parts = Vec::new();
        if let Some(size) = self.size {
            parts.push(format!("SIZE={size}"));
        }
        if let Some(body) = self.body {
            parts.push(format!("BODY={}", body.as_param()));
        }
        if self.smtputf8 {
            parts.push("SMTPUTF8".to_owned());
        }
        if let Some(ret) = self.ret {
            parts.push(format!("RET={}", ret.as_param()));
        }
        if let Some(envid) = &self.envid {
            parts.push(format!("ENVID={}", xtext_encode(envid)));
        }
        if let Some(auth) = &self.auth {
            parts.push(format!("AUTH={}", xtext_encode(auth)));
        }
        parts.join(" ")
    }

    /// Parses the space-separated parameters after `MAIL FROM:<...>`.
    pub(crate) fn parse(tokens: &[&str]) -> Result<MailParams, CommandError> {
        let mut p = MailParams::default();
        let mut seen = Vec::new();
        for token in tokens {
            let (keyword, value) = split_param(token, &mut seen)?;
            let bad = || CommandError::BadParam(keyword.clone());
            match keyword.as_str() {
                "SIZE" => {
                    let v = value.ok_or_else(bad)?;
                    if v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(bad());
                    }
                    p.size = Some(v.parse().map_err(|_| bad())?);
                }
                "BODY" => {
                    let v = value.ok_or_else(bad)?;
                    p.body = Some(Body::parse(v).ok_or_else(bad)?);
                }
                "SMTPUTF8" => {
                    if value.is_some() {
                        return Err(bad());
                    }
                    p.smtputf8 = true;
                }
                "RET" => {
                    let v = value.ok_or_else(bad)?;
                    p.ret = Some(Ret::parse(v).ok_or_else(bad)?);
                }
                "ENVID" => {
                    let v = value.filter(|v| v.len() <= MAX_ENVID).ok_or_else(bad)?;
                    p.envid = Some(xtext_decode(v).ok_or_else(bad)?);
                }
                "AUTH" => {
                    let v = value
                        .filter(|v| v.len() <= MAX_AUTH_PARAM)
                        .ok_or_else(bad)?;
                    p.auth = Some(xtext_decode(v).ok_or_else(bad)?);
                }
                _ => return Err(CommandError::UnknownParam(keyword)),
            }
        }
        Ok(p)
    }
}

impl RcptParams {
    /// The parameters as sent on the wire after the path (empty if none).
    pub fn to_wire(&self) -> String {
        let mut parts = Vec::new();
        if let Some(notify) = &self.notify {
            parts.push(format!("NOTIFY={}", notify.to_param()));
        }
        if let Some(orcpt) = &self.orcpt {
            let (addr_type, addr) = orcpt.split_once(';').unwrap_or(("rfc822", orcpt));
            parts.push(format!("ORCPT={addr_type};{}", xtext_encode(addr)));
        }
        parts.join(" ")
    }

    /// Parses the space-separated parameters after `RCPT TO:<...>`.
    pub(crate) fn parse(tokens: &[&str]) -> Result<RcptParams, CommandError> {
        let mut p = RcptParams::default();
        let mut seen = Vec::new();
        for token in tokens {
            let (keyword, value) = split_param(token, &mut seen)?;
            let bad = || CommandError::BadParam(keyword.clone());
            match keyword.as_str() {
                "NOTIFY" => p.notify = Some(value.and_then(Notify::parse).ok_or_else(bad)?),
                "ORCPT" => {
                    // orcpt-parameter = "ORCPT=" addr-type ";" xtext
                    let v = value.filter(|v| v.len() <= MAX_ORCPT).ok_or_else(bad)?;
                    let (addr_type, xtext) = v.split_once(';').ok_or_else(bad)?;
                    let atom =
                        |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
                    if addr_type.is_empty() || !addr_type.chars().all(atom) {
                        return Err(bad());
                    }
                    let addr = xtext_decode(xtext)
                        .filter(|a| !a.is_empty())
                        .ok_or_else(bad)?;
                    p.orcpt = Some(format!("{addr_type};{addr}"));
                }
                _ => return Err(CommandError::UnknownParam(keyword)),
            }
        }
        Ok(p)
    }
}

/// Splits `keyword[=value]` (RFC 5321 4.1.2 esmtp-param), uppercasing the keyword and refusing
/// repeats.
fn split_param<'a>(
    token: &'a str,
    seen: &mut Vec<String>,
) -> Result<(String, Option<&'a str>), CommandError> {
    let (keyword, value) = match token.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (token, None),
    };
    // esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
    let well_formed = keyword
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && keyword
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !well_formed {
        return Err(CommandError::Syntax("malformed parameter"));
    }
    let keyword = keyword.to_ascii_uppercase();
    // esmtp-value = 1*(%d33-60 / %d62-126)
    if let Some(v) = value
        && (v.is_empty() || !v.bytes().all(|b| (33..=126).contains(&b) && b != b'='))
    {
        return Err(CommandError::BadParam(keyword));
    }
    if seen.contains(&keyword) {
        return Err(CommandError::BadParam(keyword));
    }
    seen.push(keyword.clone());
    Ok((keyword, value))
}

#[cfg(test)]
mod tests;
