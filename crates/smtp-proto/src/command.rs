//! Command lines: parsing (server side) and writing (client side).

use crate::address::{AddressError, ForwardPath, ReversePath, path_end};
use crate::params::{MailParams, RcptParams};
use crate::reply::Reply;

/// One SMTP command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    Mail {
        from: ReversePath,
        params: MailParams,
    },
    Rcpt {
        to: ForwardPath,
        params: RcptParams,
    },
    Data,
    Rset,
    /// The optional argument is ignored.
    Noop,
    Quit,
    StartTls,
    Vrfy(String),
    Expn(String),
    /// The optional argument is ignored.
    Help,
    /// `mechanism` is uppercased; `initial` is the initial response as sent (base64 or "=").
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
    /// Recognised (arguments ignored) so the server can answer 502: CHUNKING is not offered.
    /// The chunk data that follows would be read as commands, so closing is the safe answer.
    Bdat,
}

/// Why a command line was refused; [`CommandError::reply`] gives the reply to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// 500 5.5.1
    #[error("unrecognized command")]
    Unrecognized,
    /// 501 5.5.4
    #[error("syntax error: {0}")]
    Syntax(&'static str),
    /// 501 5.1.7 (sender) / 501 5.1.3 (recipient); 553 for source routes and for non-ASCII
    /// without SMTPUTF8 (5.6.7, RFC 6531 3.7.4).
    #[error("bad address: {0}")]
    BadAddress(#[from] AddressError),
    /// 555 5.5.4; holds the uppercased keyword.
    #[error("unknown parameter {0}")]
    UnknownParam(String),
    /// 501 5.5.4; holds the uppercased keyword.
    #[error("bad parameter value {0}")]
    BadParam(String),
}

impl CommandError {
    /// The reply to send. `is_mail_from` picks the sender (X.1.7) or recipient (X.1.3) enhanced
    /// code for address errors.
    pub fn reply(&self, is_mail_from: bool) -> Reply {
        let (who, address_code) = if is_mail_from {
            ("sender", "5.1.7")
        } else {
            ("recipient", "5.1.3")
        };
        match self {
            CommandError::Unrecognized => Reply::new(500, "5.5.1", "Command unrecognized"),
            CommandError::Syntax(what) => Reply::new(501, "5.5.4", format!("Syntax error: {what}")),
            CommandError::BadAddress(AddressError::SourceRoute) => {
                Reply::new(553, address_code, "Source routes are not accepted")
            }
            CommandError::BadAddress(AddressError::Utf8NotAllowed) => Reply::new(
                553,
                "5.6.7",
                format!("Non-ASCII {who} address requires SMTPUTF8"),
            ),
            CommandError::BadAddress(e) => {
                Reply::new(501, address_code, format!("Bad {who} address syntax: {e}"))
            }
            CommandError::UnknownParam(p) => {
                Reply::new(555, "5.5.4", format!("Unsupported parameter {p}"))
            }
            CommandError::BadParam(p) => {
                Reply::new(501, "5.5.4", format!("Bad value for parameter {p}"))
            }
        }
    }
}

fn is_sep(c: char) -> bool {
    c == ' ' || c == '\t'
}

impl Command {
    /// Parses one command line, without its CRLF.
    ///
    /// Verbs are case-insensitive; SP or HT separate words, and trailing blanks are ignored.
    /// `MAIL FROM:` and `RCPT TO:` take the path right after the colon or, leniently (like
    /// Postfix), after one space. Control characters (other than HT) and invalid UTF-8 anywhere
    /// are a syntax error, as is non-ASCII outside the path of MAIL and RCPT. Non-ASCII in a
    /// path needs SMTPUTF8: for RCPT, `smtputf8` says whether this transaction's MAIL had it;
    /// for MAIL, only the SMTPUTF8 parameter on the same line counts (`smtputf8` is ignored).
    pub fn parse(line: &[u8], smtputf8: bool) -> Result<Command, CommandError> {
        if line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(CommandError::Syntax("control character in command"));
        }
        let line = std::str::from_utf8(line).map_err(|_| CommandError::Syntax("invalid UTF-8"))?;
        let line = line.trim_end_matches(is_sep);
        let (verb, arg) = match line.find(is_sep) {
            Some(i) => (&line[..i], Some(&line[i + 1..])),
            None => (line, None),
        };
        let verb = verb.to_ascii_uppercase();
        match verb.as_str() {
            "MAIL" => return parse_mail(arg.unwrap_or("")),
            "RCPT" => return parse_rcpt(arg.unwrap_or(""), smtputf8),
            _ => {}
        }
        if !line.is_ascii() {
            return Err(CommandError::Syntax("non-ASCII characters in command"));
        }
        let arg = arg
            .map(|a| a.trim_start_matches(is_sep))
            .filter(|a| !a.is_empty());
        let no_arg = |command: Command| match arg {
            None => Ok(command),
            Some(_) => Err(CommandError::Syntax("unexpected argument")),
        };
        match verb.as_str() {
            "EHLO" => Ok(Command::Ehlo(hello_arg(arg)?)),
            "HELO" => Ok(Command::Helo(hello_arg(arg)?)),
            "DATA" => no_arg(Command::Data),
            "RSET" => no_arg(Command::Rset),
            "QUIT" => no_arg(Command::Quit),
            "STARTTLS" => no_arg(Command::StartTls),
            "NOOP" => Ok(Command::Noop),
            "HELP" => Ok(Command::Help),
            "BDAT" => Ok(Command::Bdat),
            "VRFY" => Ok(Command::Vrfy(
                arg.ok_or(CommandError::Syntax("VRFY needs an argument"))?
                    .to_owned(),
            )),
            "EXPN" => Ok(Command::Expn(
                arg.ok_or(CommandError::Syntax("EXPN needs an argument"))?
                    .to_owned(),
            )),
            "AUTH" => parse_auth(arg),
            _ => Err(CommandError::Unrecognized),
        }
    }

    /// The command as sent by a client, with its CRLF. Any control character but HT in a field
    /// (which only a caller-built value can hold) is written as a space, so the output is always
    /// exactly one line.
    pub fn to_bytes(&self) -> Vec<u8> {
        let with_params = |head: String, params: String| {
            if params.is_empty() {
                head
            } else {
                format!("{head} {params}")
            }
        };
        let line = match self {
            Command::Ehlo(domain) => format!("EHLO {domain}"),
            Command::Helo(domain) => format!("HELO {domain}"),
            Command::Mail { from, params } => {
                with_params(format!("MAIL FROM:{from}"), params.to_wire())
            }
            Command::Rcpt { to, params } => with_params(format!("RCPT TO:{to}"), params.to_wire()),
            Command::Data => "DATA".to_owned(),
            Command::Rset => "RSET".to_owned(),
            Command::Noop => "NOOP".to_owned(),
            Command::Quit => "QUIT".to_owned(),
            Command::StartTls => "STARTTLS".to_owned(),
            Command::Vrfy(s) => format!("VRFY {s}"),
            Command::Expn(s) => format!("EXPN {s}"),
            Command::Help => "HELP".to_owned(),
            Command::Auth {
                mechanism,
                initial: None,
            } => format!("AUTH {mechanism}"),
            Command::Auth {
                mechanism,
                initial: Some(initial),
            } => format!("AUTH {mechanism} {initial}"),
            Command::Bdat => "BDAT".to_owned(),
        };
        let mut out: Vec<u8> = line
            .chars()
            .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
            .collect::<String>()
            .into_bytes();
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// EHLO/HELO take a domain or address literal. Clients are sloppy about what they put there, so
/// any single printable token is accepted; the session may judge it further.
fn hello_arg(arg: Option<&str>) -> Result<String, CommandError> {
    let arg = arg.ok_or(CommandError::Syntax(
        "a domain or address literal is required",
    ))?;
    if arg.contains(is_sep) {
        return Err(CommandError::Syntax(
            "one domain or address literal expected",
        ));
    }
    Ok(arg.to_owned())
}

/// Strips `FROM:` / `TO:` and the optional single space, and splits the path from the
/// parameters.
fn split_path_and_params<'a>(
    arg: &'a str,
    keyword: &str,
) -> Result<(&'a str, Vec<&'a str>), CommandError> {
    let rest = match arg.get(..keyword.len()) {
        Some(k) if k.eq_ignore_ascii_case(keyword) => &arg[keyword.len()..],
        _ => {
            return Err(CommandError::Syntax(if keyword == "FROM:" {
                "MAIL FROM:<address> expected"
            } else {
                "RCPT TO:<address> expected"
            }));
        }
    };
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    if rest.is_empty() {
        return Err(CommandError::Syntax("missing address"));
    }
    if rest.starts_with(is_sep) {
        return Err(CommandError::Syntax("unexpected blanks before address"));
    }
    let end = path_end(rest).ok_or(AddressError::NotBracketed)?;
    let (path, params) = rest.split_at(end);
    if !params.is_empty() && !params.starts_with(is_sep) {
        return Err(CommandError::Syntax("garbage after address"));
    }
    let params: Vec<&str> = params.split(is_sep).filter(|t| !t.is_empty()).collect();
    if params.iter().any(|t| !t.is_ascii()) {
        return Err(CommandError::Syntax("non-ASCII characters in parameters"));
    }
    Ok((path, params))
}

fn parse_mail(arg: &str) -> Result<Command, CommandError> {
    let (path, params) = split_path_and_params(arg, "FROM:")?;
    // The address is judged before the parameters, but whether it may hold UTF-8 depends on
    // the SMTPUTF8 parameter, so look for that first.
    let smtputf8 = params.iter().any(|t| {
        t.eq_ignore_ascii_case("SMTPUTF8")
            || t.get(..9)
                .is_some_and(|k| k.eq_ignore_ascii_case("SMTPUTF8="))
    });
    let from = ReversePath::parse(path, smtputf8)?;
    let params = MailParams::parse(&params)?;
    Ok(Command::Mail { from, params })
}

fn parse_rcpt(arg: &str, smtputf8: bool) -> Result<Command, CommandError> {
    let (path, params) = split_path_and_params(arg, "TO:")?;
    let to = ForwardPath::parse(path, smtputf8)?;
    let params = RcptParams::parse(&params)?;
    Ok(Command::Rcpt { to, params })
}

/// `AUTH mechanism [initial-response]` (RFC 4954 4).
fn parse_auth(arg: Option<&str>) -> Result<Command, CommandError> {
    let arg = arg.ok_or(CommandError::Syntax("AUTH needs a mechanism"))?;
    let mut words = arg.split(is_sep).filter(|w| !w.is_empty());
    let mechanism = words.next().unwrap_or("");
    let initial = words.next();
    if words.next().is_some() {
        return Err(CommandError::Syntax("too many arguments to AUTH"));
    }
    // sasl-mech = 1*20mech-char; mech-char = UPPER-ALPHA / DIGIT / HYPHEN / UNDERSCORE
    let mech_ok = (1..=20).contains(&mechanism.len())
        && mechanism
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !mech_ok {
        return Err(CommandError::Syntax("bad SASL mechanism name"));
    }
    if let Some(initial) = initial {
        let base64 = initial
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
        if !base64 {
            return Err(CommandError::Syntax("initial response is not base64"));
        }
    }
    Ok(Command::Auth {
        mechanism: mechanism.to_ascii_uppercase(),
        initial: initial.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests;
