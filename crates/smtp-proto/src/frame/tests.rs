use super::*;

/// What a session sees, independent of how the input was chunked.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Line(Vec<u8>),
    TooLong,
    Fatal(usize),
}

/// Drives the framer like a session does: append each chunk to a buffer, take frames until
/// `Incomplete`. Fatal offsets are reported relative to the whole stream.
fn drive(max: usize, chunks: &[&[u8]]) -> Vec<Seen> {
    let mut framer = CommandFramer::new(max);
    let mut buf: Vec<u8> = Vec::new();
    let mut base = 0;
    let mut seen = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match framer.next(&buf) {
                Frame::Incomplete => break,
                Frame::Line { consumed } => {
                    assert!(consumed <= max && consumed <= buf.len());
                    seen.push(Seen::Line(buf[..consumed - 2].to_vec()));
                    buf.drain(..consumed);
                    base += consumed;
                }
                Frame::TooLong { consumed, complete } => {
                    assert!(consumed > 0 && consumed <= buf.len());
                    if complete {
                        seen.push(Seen::TooLong);
                    }
                    buf.drain(..consumed);
                    base += consumed;
                }
                Frame::BareLf { at } | Frame::BareCr { at } => {
                    seen.push(Seen::Fatal(base + at));
                    return seen;
                }
            }
        }
    }
    seen
}

#[test]
fn single_frames() {
    let cases: &[(usize, &[u8], Frame)] = &[
        (512, b"", Frame::Incomplete),
        (512, b"QUIT", Frame::Incomplete),
        (512, b"QUIT\r", Frame::Incomplete),
        (512, b"QUIT\r\n", Frame::Line { consumed: 6 }),
        (512, b"QUIT\r\nNOOP\r\n", Frame::Line { consumed: 6 }),
        (512, b"\r\n", Frame::Line { consumed: 2 }),
        (512, b"QUIT\n", Frame::BareLf { at: 4 }),
        (512, b"\n", Frame::BareLf { at: 0 }),
        (512, b"QU\rIT\r\n", Frame::BareCr { at: 2 }),
        (512, b"QUIT\r\r\n", Frame::BareCr { at: 4 }),
        (8, b"NOOP12\r\n", Frame::Line { consumed: 8 }),
        (
            8,
            b"NOOP123\r\n",
            Frame::TooLong {
                consumed: 9,
                complete: true,
            },
        ),
        (8, b"NOOP12", Frame::Incomplete),
        (8, b"NOOP12\r", Frame::Incomplete),
        (
            8,
            b"NOOP123",
            Frame::TooLong {
                consumed: 7,
                complete: false,
            },
        ),
        (
            8,
            b"NOOP123\r",
            Frame::TooLong {
                consumed: 7,
                complete: false,
            },
        ),
        (8, b"NOOP12345\n", Frame::BareLf { at: 9 }),
        (8, b"NOOP12345\rX", Frame::BareCr { at: 9 }),
        (0, b"\r\n", Frame::Line { consumed: 2 }),
        (
            0,
            b"x",
            Frame::TooLong {
                consumed: 1,
                complete: false,
            },
        ),
    ];
    for (max, input, want) in cases {
        let got = CommandFramer::new(*max).next(input);
        assert_eq!(
            &got,
            want,
            "max {max} input {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn exact_limit_boundary() {
    let ok = [vec![b'a'; MAX_COMMAND_LINE - 2], b"\r\n".to_vec()].concat();
    assert_eq!(
        CommandFramer::new(MAX_COMMAND_LINE).next(&ok),
        Frame::Line { consumed: 512 }
    );
    let long = [vec![b'a'; MAX_COMMAND_LINE - 1], b"\r\n".to_vec()].concat();
    assert_eq!(
        CommandFramer::new(MAX_COMMAND_LINE).next(&long),
        Frame::TooLong {
            consumed: 513,
            complete: true
        }
    );
}

#[test]
fn discard_mode_reports_one_complete_too_long_per_line() {
    let mut f = CommandFramer::new(8);
    assert_eq!(
        f.next(b"ABCDEFGHIJ"),
        Frame::TooLong {
            consumed: 10,
            complete: false
        }
    );
    assert!(f.is_discarding());
    assert_eq!(f.next(b""), Frame::Incomplete);
    assert_eq!(f.next(b"\r"), Frame::Incomplete);
    assert_eq!(
        f.next(b"KLM\r"),
        Frame::TooLong {
            consumed: 3,
            complete: false
        }
    );
    assert_eq!(
        f.next(b"\r\nNOOP\r\n"),
        Frame::TooLong {
            consumed: 2,
            complete: true
        }
    );
    assert!(!f.is_discarding());
    assert_eq!(f.next(b"NOOP\r\n"), Frame::Line { consumed: 6 });
    // A short line in discard mode is still part of the over-long line.
    let mut f = CommandFramer::new(8);
    assert_eq!(
        f.next(b"ABCDEFGHIJ"),
        Frame::TooLong {
            consumed: 10,
            complete: false
        }
    );
    assert_eq!(
        f.next(b"K\r\nNOOP\r\n"),
        Frame::TooLong {
            consumed: 3,
            complete: true
        }
    );
    // Bare LF while discarding is still fatal.
    let mut f = CommandFramer::new(8);
    assert_eq!(
        f.next(b"ABCDEFGHIJ"),
        Frame::TooLong {
            consumed: 10,
            complete: false
        }
    );
    assert_eq!(f.next(b"xx\nQUIT\r\n"), Frame::BareLf { at: 2 });
}

#[test]
fn every_chunking_gives_the_same_session_view() {
    let streams: &[&[u8]] = &[
        b"EHLO a\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n",
        b"0123456789012345\r\nNOOP\r\n01234567\r\n01234567890123456789012\r\nQUIT\r\n",
        b"NOOP\r\n0123456789012345678\n",
        b"NOOP\r\n01234567890\r0123\r\n",
        b"NOOP\r\nQUIT\r",
        b"\r\n\r\n0123456789\r\n",
    ];
    for stream in streams {
        let whole = drive(10, &[stream]);
        for split in 0..=stream.len() {
            let (a, b) = stream.split_at(split);
            assert_eq!(drive(10, &[a, b]), whole, "split {split} of {:?}", stream);
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(drive(10, &bytes), whole, "byte by byte {:?}", stream);
    }
    assert_eq!(
        drive(10, &[streams[1]]),
        vec![
            Seen::TooLong,
            Seen::Line(b"NOOP".to_vec()),
            Seen::Line(b"01234567".to_vec()),
            Seen::TooLong,
            Seen::Line(b"QUIT".to_vec()),
        ]
    );
    assert_eq!(
        drive(10, &[streams[2]]),
        vec![Seen::Line(b"NOOP".to_vec()), Seen::Fatal(25)]
    );
    assert_eq!(
        drive(10, &[streams[3]]),
        vec![Seen::Line(b"NOOP".to_vec()), Seen::Fatal(17)]
    );
}
