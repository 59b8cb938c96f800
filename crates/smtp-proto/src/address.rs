//! Paths and mailboxes: RFC 5321 4.1.2 syntax, 4.5.3.1 limits, RFC 6531 for UTF-8.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest local part in octets (RFC 5321 4.5.3.1.1).
pub const MAX_LOCAL_PART: usize = 64;
/// Longest domain in octets (RFC 5321 4.5.3.1.2).
pub const MAX_DOMAIN: usize = 255;
/// Longest reverse- or forward-path in octets, including the angle brackets (RFC 5321 4.5.3.1.3).
pub const MAX_PATH: usize = 256;
/// Longest domain label (RFC 1035 2.3.4).
const MAX_LABEL: usize = 63;

/// Why a path or mailbox was refused. Each variant is something a caller can act on or report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("address must be enclosed in <>")]
    NotBracketed,
    /// `<@a,@b:user@c>`: the server never relays source routes; the caller picks the reply.
    #[error("source routes are not accepted")]
    SourceRoute,
    #[error("empty address")]
    Empty,
    #[error("local part longer than 64 octets")]
    LocalTooLong,
    #[error("domain longer than 255 octets")]
    DomainTooLong,
    #[error("path longer than 256 octets")]
    PathTooLong,
    #[error("invalid local part")]
    BadLocal,
    #[error("missing domain")]
    MissingDomain,
    #[error("invalid domain")]
    BadDomain,
    #[error("invalid address literal")]
    BadLiteral,
    #[error("non-ASCII address without SMTPUTF8")]
    Utf8NotAllowed,
    #[error("control character in address")]
    ControlChar,
}

/// `local@domain`. The local part is kept exactly as written (a quoted local part keeps its
/// quotes and escapes) so it goes back onto the wire unchanged; compare local parts as the
/// mailbox owner defines, not here. The domain is ASCII-lowercased, or an address literal such as
/// `[192.0.2.1]` / `[IPv6:2001:db8::1]` kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mailbox {
    pub local: String,
    pub domain: String,
}

impl Mailbox {
    /// Parses an unbracketed `local@domain`. Same as [`parse_mailbox`].
    pub fn parse(s: &str, smtputf8: bool) -> Result<Mailbox, AddressError> {
        parse_mailbox(s, smtputf8)
    }

    /// True if the local part contains '%', '!' or '@' (the last only possible inside quotes):
    /// the percent hack, bang paths and friends, which the server refuses rather than relays.
    pub fn has_relay_hack(&self) -> bool {
        self.local.contains(['%', '!', '@'])
    }

    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii() && self.domain.is_ascii()
    }

    /// Whether the domain is an address literal (`[...]`).
    pub fn is_address_literal(&self) -> bool {
        self.domain.starts_with('[')
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// The argument of `MAIL FROM:`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReversePath {
    /// `<>`: bounces and other notifications.
    Null,
    Mailbox(Mailbox),
}

impl ReversePath {
    /// Parses `<>` or a bracketed path.
    pub fn parse(s: &str, smtputf8: bool) -> Result<ReversePath, AddressError> {
        if s == "<>" {
            return Ok(ReversePath::Null);
        }
        parse_path(s, smtputf8).map(ReversePath::Mailbox)
    }

    pub fn mailbox(&self) -> Option<&Mailbox> {
        match self {
            ReversePath::Null => None,
            ReversePath::Mailbox(m) => Some(m),
        }
    }
}

impl fmt::Display for ReversePath {
    /// The wire form: `<>` or `<local@domain>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReversePath::Null => f.write_str("<>"),
            ReversePath::Mailbox(m) => write!(f, "<{m}>"),
        }
    }
}

/// The argument of `RCPT TO:`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ForwardPath {
    /// `<Postmaster>` without a domain (any case), which every server must accept (RFC 5321 4.5.1).
    Postmaster,
    Mailbox(Mailbox),
}

impl ForwardPath {
    /// Parses `<Postmaster>` or a bracketed path. `<>` is [`AddressError::Empty`].
    pub fn parse(s: &str, smtputf8: bool) -> Result<ForwardPath, AddressError> {
        if s.len() == 12 && s.eq_ignore_ascii_case("<postmaster>") {
            return Ok(ForwardPath::Postmaster);
        }
        parse_path(s, smtputf8).map(ForwardPath::Mailbox)
    }

    pub fn mailbox(&self) -> Option<&Mailbox> {
        match self {
            ForwardPath::Postmaster => None,
            ForwardPath::Mailbox(m) => Some(m),
        }
    }
}

impl fmt::Display for ForwardPath {
    /// The wire form: `<Postmaster>` or `<local@domain>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardPath::Postmaster => f.write_str("<Postmaster>"),
            ForwardPath::Mailbox(m) => write!(f, "<{m}>"),
        }
    }
}

/// Parses an RFC 5321 `Path`: `"<" Mailbox ">"`, at most 256 octets.
///
/// `<>` is [`AddressError::Empty`] (use [`ReversePath::parse`] where it is allowed); a source
/// route `<@a,@b:u@c>` is [`AddressError::SourceRoute`]. Non-ASCII is accepted only with
/// `smtputf8` (RFC 6531); control characters never.
pub fn parse_path(s: &str, smtputf8: bool) -> Result<Mailbox, AddressError> {
    check_chars(s, smtputf8)?;
    let inner = s
        .strip_prefix('<')
        .and_then(|rest| rest.strip_suffix('>'))
        .ok_or(AddressError::NotBracketed)?;
    if inner.is_empty() {
        return Err(AddressError::Empty);
    }
    if inner.starts_with('@') {
        return Err(AddressError::SourceRoute);
    }
    let mailbox = parse_mailbox_checked(inner, smtputf8)?;
    if s.len() > MAX_PATH {
        return Err(AddressError::PathTooLong);
    }
    Ok(mailbox)
}

/// Parses an unbracketed RFC 5321 `Mailbox`: `Local-part "@" ( Domain / address-literal )`.
pub fn parse_mailbox(s: &str, smtputf8: bool) -> Result<Mailbox, AddressError> {
    check_chars(s, smtputf8)?;
    parse_mailbox_checked(s, smtputf8)
}

/// Index just past the '>' closing the path that starts `s` (which must start with '<'),
/// skipping over quoted strings; `None` if there is no such '>'.
pub(crate) fn path_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.first() != Some(&b'<') {
        return None;
    }
    let mut in_quotes = false;
    let mut i = 1;
    while let Some(&c) = b.get(i) {
        match c {
            b'\\' if in_quotes => i += 1,
            b'"' => in_quotes = !in_quotes,
            b'>' if !in_quotes => return Some(i + 1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Control characters first (they are the more serious finding), then non-ASCII.
fn check_chars(s: &str, smtputf8: bool) -> Result<(), AddressError> {
    if s.chars().any(char::is_control) {
        return Err(AddressError::ControlChar);
    }
    if !smtputf8 && !s.is_ascii() {
        return Err(AddressError::Utf8NotAllowed);
    }
    Ok(())
}

fn parse_mailbox_checked(s: &str, smtputf8: bool) -> Result<Mailbox, AddressError> {
    if s.is_empty() {
        return Err(AddressError::Empty);
    }
    let (local, rest) = split_local(s)?;
    let domain = match rest.strip_prefix('@') {
        Some(domain) => domain,
        None if rest.is_empty() => return Err(AddressError::MissingDomain),
        None => return Err(AddressError::BadLocal),
    };
    check_local(local, smtputf8)?;
    let domain = check_domain(domain, smtputf8)?;
    Ok(Mailbox {
        local: local.to_owned(),
        domain,
    })
}

/// Splits at the '@' after the local part; a quoted local part may itself contain '@'.
fn split_local(s: &str) -> Result<(&str, &str), AddressError> {
    let b = s.as_bytes();
    if b.first() != Some(&b'"') {
        return Ok(match s.find('@') {
            Some(at) => s.split_at(at),
            None => (s, ""),
        });
    }
    let mut i = 1;
    loop {
        match b.get(i) {
            None => return Err(AddressError::BadLocal),
            // quoted-pairSMTP = "\" %d32-126: only printable ASCII may be escaped, which also
            // keeps `i` on a character boundary.
            Some(b'\\') => match b.get(i + 1) {
                Some(32..=126) => i += 2,
                _ => return Err(AddressError::BadLocal),
            },
            Some(b'"') => return Ok(s.split_at(i + 1)),
            Some(_) => i += 1,
        }
    }
}

/// RFC 5322 atext, plus UTF8-non-ascii under SMTPUTF8 (RFC 6531 3.3; `check_chars` has
/// already refused non-ASCII without it).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || is_allowed_non_ascii(c)
}

/// Non-ASCII characters allowed in addresses: anything but whitespace (U+2028 and U+2029 are
/// line breaks to some software), invisible characters and bidirectional overrides, which
/// serve only to make two different addresses look alike.
fn is_allowed_non_ascii(c: char) -> bool {
    !c.is_ascii()
        && !c.is_whitespace()
        && !matches!(
            c,
            '\u{00AD}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

fn check_local(local: &str, smtputf8: bool) -> Result<(), AddressError> {
    if local.len() > MAX_LOCAL_PART {
        return Err(AddressError::LocalTooLong);
    }
    if let Some(quoted) = local.strip_prefix('"') {
        // split_local guarantees the closing quote and well-formed escapes.
        let inner = quoted.strip_suffix('"').ok_or(AddressError::BadLocal)?;
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            let ok = match c {
                '\\' => matches!(chars.next(), Some(' '..='~')),
                // qtextSMTP = %d32-33 / %d35-91 / %d93-126, plus UTF8-non-ascii
                ' '..='~' => c != '"',
                _ => smtputf8 && is_allowed_non_ascii(c),
            };
            if !ok {
                return Err(AddressError::BadLocal);
            }
        }
        return Ok(());
    }
    // Dot-string = Atom *("." Atom)
    if local
        .split('.')
        .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
    {
        Ok(())
    } else {
        Err(AddressError::BadLocal)
    }
}

/// Validates a domain or address literal; returns it in its stored form.
fn check_domain(domain: &str, smtputf8: bool) -> Result<String, AddressError> {
    if domain.is_empty() {
        return Err(AddressError::MissingDomain);
    }
    if domain.len() > MAX_DOMAIN {
        return Err(AddressError::DomainTooLong);
    }
    if let Some(literal) = domain.strip_prefix('[') {
        let inner = literal.strip_suffix(']').ok_or(AddressError::BadLiteral)?;
        check_address_literal(inner)?;
        return Ok(domain.to_owned());
    }
    for label in domain.split('.') {
        check_label(label, smtputf8)?;
    }
    Ok(domain.to_ascii_lowercase())
}

/// IPv4-address-literal or IPv6-address-literal (RFC 5321 4.1.3). General-address-literals
/// (other tags) are refused: nothing here could route to them.
fn check_address_literal(inner: &str) -> Result<(), AddressError> {
    let valid = match inner.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => inner[5..].parse::<Ipv6Addr>().is_ok(),
        // std refuses leading zeros, which some stacks would read as octal.
        _ => inner.parse::<Ipv4Addr>().is_ok(),
    };
    if valid {
        Ok(())
    } else {
        Err(AddressError::BadLiteral)
    }
}

/// An LDH label (RFC 5321 sub-domain), or under SMTPUTF8 a label that may also hold non-ASCII
/// characters (a U-label; IDNA validity is the resolver's business). Length is counted in
/// characters for U-labels, since their A-label form is what DNS limits.
fn check_label(label: &str, smtputf8: bool) -> Result<(), AddressError> {
    let length = if label.is_ascii() {
        label.len()
    } else {
        label.chars().count()
    };
    let ok = (1..=MAX_LABEL).contains(&length)
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label.chars().all(|c| {
            c.is_ascii_alphanumeric() || c == '-' || (smtputf8 && is_allowed_non_ascii(c))
        });
    if ok {
        Ok(())
    } else {
        Err(AddressError::BadDomain)
    }
}

#[cfg(test)]
mod tests;
