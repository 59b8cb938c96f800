//! `CommandFramer::next` driven like a session (append a chunk, take frames until Incomplete)
//! over arbitrary bytes in arbitrary chunk splits. Invariants: no panic, lines within the limit
//! and free of CR/LF, TooLong always makes progress, and what the session sees (lines, one 500
//! per over-long line, the offset of a fatal bare CR/LF) does not depend on the split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_smtp_proto::{CommandFramer, Frame};

#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Line(Vec<u8>),
    TooLong,
    Fatal(usize),
}

fn drive(max: usize, input: &[u8], cuts: &mut dyn Iterator<Item = usize>) -> Vec<Seen> {
    let mut framer = CommandFramer::new(max);
    let mut buf = Vec::new();
    let mut base = 0;
    let mut seen = Vec::new();
    let mut pos = 0;
    while pos < input.len() {
        let len = cuts
            .next()
            .unwrap_or(input.len())
            .clamp(1, input.len() - pos);
        buf.extend_from_slice(&input[pos..pos + len]);
        pos += len;
        loop {
            match framer.next(&buf) {
                Frame::Incomplete => break,
                Frame::Line { consumed } => {
                    assert!(consumed >= 2 && consumed <= max.max(2) && consumed <= buf.len());
                    assert_eq!(&buf[consumed - 2..consumed], b"\r\n");
                    let line = buf[..consumed - 2].to_vec();
                    assert!(!line.contains(&b'\r') && !line.contains(&b'\n'));
                    seen.push(Seen::Line(line));
                    buf.drain(..consumed);
                    base += consumed;
                }
                Frame::TooLong { consumed, complete } => {
                    assert!(consumed > 0 && consumed <= buf.len());
                    if complete {
                        assert_eq!(&buf[consumed - 2..consumed], b"\r\n");
                        seen.push(Seen::TooLong);
                    }
                    buf.drain(..consumed);
                    base += consumed;
                }
                Frame::BareLf { at } => {
                    assert_eq!(buf[at], b'\n');
                    seen.push(Seen::Fatal(base + at));
                    return seen;
                }
                Frame::BareCr { at } => {
                    assert_eq!(buf[at], b'\r');
                    seen.push(Seen::Fatal(base + at));
                    return seen;
                }
            }
        }
        // The session's buffer stays bounded by the limit (between reads).
        assert!(buf.len() <= max.max(2));
    }
    seen
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (control, input) = data.split_at(2);
    let max = usize::from(control[0] % 40);
    let mut seed = u32::from(control[1]) | 1;
    let whole = drive(max, input, &mut std::iter::empty());
    let mut cuts = std::iter::from_fn(|| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        Some((seed % 8) as usize)
    });
    assert_eq!(drive(max, input, &mut cuts), whole);
    assert_eq!(drive(max, input, &mut std::iter::repeat(1)), whole);
});
