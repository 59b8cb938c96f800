//! The DATA phase, client side: dot-stuffing and the terminator.

/// Dot-stuffs message content for sending after a 354 (RFC 5321 4.5.2), chunk by chunk.
///
/// Content is expected to be CRLF-terminated lines (the spool guarantees it). As a last line of
/// defence against relaying a smuggling payload, a bare CR or bare LF that still reaches this
/// point is sent as CRLF: the output never contains a bare CR or LF, so no next hop can
/// disagree with us about where the message ends.
#[derive(Debug, Clone)]
pub struct DotStuffer {
    /// The next byte starts a line (nothing sent yet, or the last thing sent was CRLF).
    at_line_start: bool,
    /// The last input byte was a CR whose CRLF has not been written yet.
    pending_cr: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl DotStuffer {
    pub fn new() -> Self {
        Self {
            at_line_start: true,
            pending_cr: false,
        }
    }

    /// Appends the stuffed form of `chunk` to `out`: a '.' at the start of a line becomes "..".
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        out.reserve(chunk.len() + 2);
        let mut i = 0;
        while i < chunk.len() {
            if self.pending_cr {
                self.pending_cr = false;
                self.end_line(out);
                if chunk[i] == b'\n' {
                    i += 1;
                    continue;
                }
            }
            match chunk[i] {
                b'\r' => self.pending_cr = true,
                b'\n' => self.end_line(out),
                b => {
                    if self.at_line_start && b == b'.' {
                        out.push(b'.');
                    }
                    // Copy the rest of the line in one go.
                    let run = chunk[i..]
                        .iter()
                        .position(|&c| c == b'\r' || c == b'\n')
                        .unwrap_or(chunk.len() - i);
                    out.extend_from_slice(&chunk[i..i + run]);
                    self.at_line_start = false;
                    i += run;
                    continue;
                }
            }
            i += 1;
        }
    }

    /// Appends the terminator: "\r\n.\r\n" if the content did not end with CRLF, else ".\r\n"
    /// (empty content gives ".\r\n").
    pub fn finish(mut self, out: &mut Vec<u8>) {
        if self.pending_cr {
            self.end_line(out);
        }
        if !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }

    fn end_line(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"\r\n");
        self.at_line_start = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stuff(chunks: &[&[u8]]) -> Vec<u8> {
        let mut s = DotStuffer::new();
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, &mut out);
        }
        s.finish(&mut out);
        out
    }

    #[test]
    fn stuffing_table() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b".\r\n"),
            (b"A\r\n", b"A\r\n.\r\n"),
            (b"A", b"A\r\n.\r\n"),
            (b".\r\n", b"..\r\n.\r\n"),
            (b".", b"..\r\n.\r\n"),
            (b"A\r\n.B\r\n..\r\n", b"A\r\n..B\r\n...\r\n.\r\n"),
            (b"A.B\r\n", b"A.B\r\n.\r\n"),
            (b"\r\n\r\n", b"\r\n\r\n.\r\n"),
            // Bare CR and LF are never passed on.
            (b"A\nB\n", b"A\r\nB\r\n.\r\n"),
            (b"A\rB\r", b"A\r\nB\r\n.\r\n"),
            (b"A\r\r\n.\n", b"A\r\n\r\n..\r\n.\r\n"),
            (b"A\n.\n", b"A\r\n..\r\n.\r\n"),
        ];
        for (input, want) in cases {
            assert_eq!(
                stuff(&[input]),
                *want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
            for split in 0..=input.len() {
                let (a, b) = input.split_at(split);
                assert_eq!(stuff(&[a, b]), *want, "split {split} of {input:?}");
            }
        }
    }
}
