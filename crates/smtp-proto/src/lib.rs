//! SMTP wire format (RFC 5321 and its extensions): commands, replies, strict line discipline,
//! DATA dot-unstuffing and dot-stuffing. Shared by the inbound SMTP server and the outbound
//! delivery client.
//!
//! **Owns:** the byte-level rules — what a command line is ([`CommandFramer`]), what ends DATA
//! ([`DataDecoder`]: only `<CRLF>.<CRLF>`; a bare CR or bare LF anywhere is fatal, which closes
//! the SMTP smuggling class of CVE-2023-51764), the syntax of paths and parameters
//! ([`Command::parse`], [`parse_path`]), and how replies are written and read ([`Reply`],
//! [`parse_reply`], [`Capabilities`]).
//!
//! **Must not:** do I/O, read clocks, allocate more than the caller's input requires, depend on
//! anything but `thiserror`, or make policy decisions (which recipients are accepted, which
//! extensions are offered, what size is too big). It reports facts — "this line is too long",
//! "this message contained a NUL", "this path carries a source route" — and the session decides.
//! Every function here is total on arbitrary bytes (fuzzed in `fuzz/`): no input panics.

#![forbid(unsafe_code)]

mod address;
mod command;
mod data;
mod frame;
mod params;
mod reply;
mod stuff;

pub use address::{
    AddressError, ForwardPath, MAX_DOMAIN, MAX_LOCAL_PART, MAX_PATH, Mailbox, ReversePath,
    parse_mailbox, parse_path,
};
pub use command::{Command, CommandError};
pub use data::{DataDecoder, DataEvent};
pub use frame::{CommandFramer, Frame, MAX_COMMAND_LINE, MAX_TEXT_LINE};
pub use params::{
    BadParamValue, Body, MAX_ENVID, MAX_ORCPT, MailParams, Notify, RcptParams, Ret, xtext_decode,
    xtext_encode,
};
pub use reply::{Capabilities, MAX_REPLY_LINE, MAX_REPLY_LINES, Reply, ReplyError, parse_reply};
pub use stuff::DotStuffer;
