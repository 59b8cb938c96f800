//! The DATA phase, server side: dot-unstuffing and end-of-data detection.
//!
//! Only `<CRLF>.<CRLF>` (or `.<CRLF>` as the very first line) ends the data. A CR not followed
//! by LF, or an LF not preceded by CR, is fatal wherever it appears: accepting either would let
//! a sender hide a second message behind an end-of-data that this server and the next hop
//! disagree about (SMTP smuggling, CVE-2023-51764).

/// What [`DataDecoder::feed`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataEvent {
    /// All of `input` was consumed; feed more.
    NeedMore,
    /// End of data found; `consumed` bytes of this input were used, including the terminating
    /// `.<CRLF>`. Bytes after it belong to the next command (e.g. a pipelined QUIT).
    Done { consumed: usize },
    /// Bare CR or bare LF in the data: fatal, reply an error and close. `consumed` counts the
    /// bytes examined, up to and including the one that proved the CR or LF bare.
    BareCrLf { consumed: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the beginning of a line (initially, and after each CRLF).
    LineStart,
    /// A '.' at the beginning of a line, not yet known to be stuffing or the terminator.
    Dot,
    /// ".\r" at the beginning of a line: only LF may follow.
    DotCr,
    /// Inside a line.
    Text,
    /// A CR inside a line (or an empty line): only LF may follow.
    Cr,
    Done,
    Failed,
}

/// Decodes the DATA byte stream into message content, chunk by chunk.
///
/// After [`DataEvent::Done`] further calls return `Done { consumed: 0 }`; after
/// [`DataEvent::BareCrLf`] they return `BareCrLf { consumed: 0 }`.
#[derive(Debug, Clone)]
pub struct DataDecoder {
    max_line: usize,
    state: State,
    /// Unstuffed octets on the current line, without the CRLF.
    line_len: usize,
    line_too_long: bool,
    saw_nul: bool,
    content_len: u64,
}

impl DataDecoder {
    /// `max_line` counts the CRLF ([`crate::MAX_TEXT_LINE`] normally).
    pub fn new(max_line: usize) -> Self {
        Self {
            max_line: max_line.max(2),
            state: State::LineStart,
            line_len: 0,
            line_too_long: false,
            saw_nul: false,
            content_len: 0,
        }
    }

    /// Decodes `input`, appending the unstuffed content to `out`: CRLF line ends kept, the
    /// leading dot of stuffed lines removed, the terminating `.<CRLF>` not included. The
    /// message "A\r\n" arrives as "A\r\n.\r\n" and yields "A\r\n"; ".\r\n" right after the 354
    /// yields nothing. `out` is only appended to, so a caller that stops keeping content (over
    /// its size limit) may pass a cleared buffer each time. The result does not depend on how
    /// the stream is split into calls.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> DataEvent {
        if let Some(event) = self.finished() {
            return event;
        }
        let mut i = 0;
        while let Some(&b) = input.get(i) {
            match self.state {
                State::LineStart => match b {
                    b'.' => self.state = State::Dot,
                    b'\r' => self.state = State::Cr,
                    b'\n' => return self.fail(i),
                    _ => self.text_byte(b, out),
                },
                // Any other byte after a leading dot: the dot was stuffing (RFC 5321 4.5.2).
                State::Dot => match b {
                    b'\r' => self.state = State::DotCr,
                    b'\n' => return self.fail(i),
                    _ => self.text_byte(b, out),
                },
                State::DotCr => {
                    if b != b'\n' {
                        return self.fail(i);
                    }
                    self.state = State::Done;
                    return DataEvent::Done { consumed: i + 1 };
                }
                State::Text => {
                    let run = input[i..]
                        .iter()
                        .position(|&c| matches!(c, b'\r' | b'\n' | 0))
                        .unwrap_or(input.len() - i);
                    if run > 0 {
                        self.text_run(&input[i..i + run], out);
                        i += run;
                        continue;
                    }
                    match b {
                        b'\r' => self.state = State::Cr,
                        b'\n' => return self.fail(i),
                        _ => self.text_byte(b, out),
                    }
                }
                State::Cr => {
                    if b != b'\n' {
                        return self.fail(i);
                    }
                    out.extend_from_slice(b"\r\n");
                    self.content_len += 2;
                    self.line_len = 0;
                    self.state = State::LineStart;
                }
                State::Done | State::Failed => {
                    return self.finished().unwrap_or(DataEvent::NeedMore);
                }
            }
            i += 1;
        }
        DataEvent::NeedMore
    }

    /// Set once any line longer than `max_line` (with its CRLF, without a stuffing dot) was seen.
    /// Content keeps flowing; the caller rejects the message after the end, never truncates.
    pub fn line_too_long(&self) -> bool {
        self.line_too_long
    }

    /// Set once a NUL byte was seen in the content.
    pub fn saw_nul(&self) -> bool {
        self.saw_nul
    }

    /// Total content octets produced so far (after unstuffing), for SIZE enforcement.
    pub fn content_len(&self) -> u64 {
        self.content_len
    }

    /// Whether the end of data has been found.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The sticky event of a terminal state: nothing more is consumed.
    fn finished(&self) -> Option<DataEvent> {
        match self.state {
            State::Done => Some(DataEvent::Done { consumed: 0 }),
            State::Failed => Some(DataEvent::BareCrLf { consumed: 0 }),
            _ => None,
        }
    }

    fn fail(&mut self, at: usize) -> DataEvent {
        self.state = State::Failed;
        DataEvent::BareCrLf { consumed: at + 1 }
    }

    fn text_byte(&mut self, b: u8, out: &mut Vec<u8>) {
        self.text_run(&[b], out);
    }

    fn text_run(&mut self, run: &[u8], out: &mut Vec<u8>) {
        if run.contains(&0) {
            self.saw_nul = true;
        }
        out.extend_from_slice(run);
        self.content_len += run.len() as u64;
        self.line_len = self.line_len.saturating_add(run.len());
        if self.line_len.saturating_add(2) > self.max_line {
            self.line_too_long = true;
        }
        self.state = State::Text;
    }
}

#[cfg(test)]
mod tests;
