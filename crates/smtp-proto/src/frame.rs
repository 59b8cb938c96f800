//! Line framing for the command phase: where one command line ends, and what to do with lines
//! that are too long or carry a bare CR or LF.

/// Longest command line in octets, including the CRLF (RFC 5321 4.5.3.1.4).
///
/// Extensions raise it: DSN adds up to 100 octets to MAIL (ENVID) and 500 to RCPT (ORCPT,
/// RFC 3461 5), AUTH= adds 500 (RFC 4954 5), and an AUTH command with an initial response may
/// be up to 12288 octets (RFC 4954 4). A server offering those should frame with a larger limit.
pub const MAX_COMMAND_LINE: usize = 512;
/// Longest text line of message content in octets, including the CRLF and not counting a
/// stuffing dot (RFC 5321 4.5.3.1.6).
pub const MAX_TEXT_LINE: usize = 1000;

/// What [`CommandFramer::next`] found at the start of the unconsumed input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Not enough bytes for a complete line yet: read more and call again (nothing consumed).
    Incomplete,
    /// A complete line occupies `buf[..consumed]`; the line without CRLF is
    /// `buf[..consumed - 2]`. Never longer than the framer's `max`.
    Line { consumed: usize },
    /// The line (so far) is longer than `max`. Drop `consumed` bytes (always at least one).
    ///
    /// `complete == false`: the CRLF ending the over-long line has not arrived yet; the framer is
    /// now discarding, so keep reading and calling [`CommandFramer::next`]. `complete == true`:
    /// the CRLF was seen and is included in `consumed`; the over-long line is gone. **Reply 500
    /// exactly when `complete == true`**: every over-long line yields exactly one
    /// `TooLong { complete: true }`, possibly preceded by several `TooLong { complete: false }`.
    TooLong { consumed: usize, complete: bool },
    /// A bare LF (LF not preceded by CR) at this offset of `buf`. Fatal: close the session.
    BareLf { at: usize },
    /// A bare CR (CR not followed by LF) at this offset of `buf`. Fatal: close the session.
    /// A CR as the very last byte of `buf` is not yet bare: that is [`Frame::Incomplete`].
    BareCr { at: usize },
}

/// Splits the command-phase byte stream into CRLF-terminated lines of at most `max` octets.
///
/// Stateless except for one bit: whether it is discarding the rest of an over-long line.
///
/// A session's read loop:
/// ```
/// use palisade_smtp_proto::{Command, CommandFramer, Frame, MAX_COMMAND_LINE};
///
/// let mut framer = CommandFramer::new(MAX_COMMAND_LINE);
/// let mut buf = b"EHLO client.example\r\nNOOP".to_vec(); // what has been read so far
/// loop {
///     match framer.next(&buf) {
///         Frame::Incomplete => break, // read more into `buf`, then loop again
///         Frame::Line { consumed } => {
///             let command = Command::parse(&buf[..consumed - 2], false);
///             assert!(command.is_ok()); // ... act on it
///             buf.drain(..consumed);
///         }
///         Frame::TooLong { consumed, complete } => {
///             buf.drain(..consumed);
///             if complete { /* reply "500 5.5.6 Line too long" */ }
///         }
///         Frame::BareLf { .. } | Frame::BareCr { .. } => { /* reply 500, close */ break }
///     }
/// }
/// assert_eq!(buf, b"NOOP");
/// ```
#[derive(Debug, Clone)]
pub struct CommandFramer {
    max: usize,
    discarding: bool,
}

impl CommandFramer {
    /// `max` counts the CRLF, so it is at least 2 (smaller values are raised to 2).
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(2),
            discarding: false,
        }
    }

    /// Whether the framer is in the middle of discarding an over-long line.
    pub fn is_discarding(&self) -> bool {
        self.discarding
    }

    /// Looks at the start of `buf` (the unconsumed input) and says what is there.
    ///
    /// Bare CR and bare LF are detected (and fatal) in discard mode too. In discard mode, input
    /// that cannot be dropped yet (empty, or a lone CR that may start the CRLF) gives
    /// [`Frame::Incomplete`], so `TooLong` always makes progress.
    pub fn next(&mut self, buf: &[u8]) -> Frame {
        // Index of the first CR or LF, classified. `content` = bytes before it.
        let mut content = 0;
        let crlf_at = loop {
            match buf.get(content) {
                None => break None,
                Some(b'\n') => return Frame::BareLf { at: content },
                Some(b'\r') => match buf.get(content + 1) {
                    None => break None,
                    Some(b'\n') => break Some(content),
                    Some(_) => return Frame::BareCr { at: content },
                },
                Some(_) => content += 1,
            }
        };
        match crlf_at {
            Some(at) => {
                let consumed = at + 2;
                if self.discarding || consumed > self.max {
                    self.discarding = false;
                    Frame::TooLong {
                        consumed,
                        complete: true,
                    }
                } else {
                    Frame::Line { consumed }
                }
            }
            // `content` bytes are known not to end the line (a trailing CR is left in place).
            None if self.discarding => {
                if content == 0 {
                    Frame::Incomplete
                } else {
                    Frame::TooLong {
                        consumed: content,
                        complete: false,
                    }
                }
            }
            // Even if CRLF came next, the line would exceed `max` (and `content >= 1`).
            None if content + 2 > self.max => {
                self.discarding = true;
                Frame::TooLong {
                    consumed: content,
                    complete: false,
                }
            }
            None => Frame::Incomplete,
        }
    }
}

#[cfg(test)]
mod tests;
