use super::*;
use crate::{DotStuffer, MAX_TEXT_LINE};

/// Result of decoding a whole stream fed in the given chunks: content, event (with `consumed`
/// made absolute over the stream), flags.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    content: Vec<u8>,
    event: DataEvent,
    line_too_long: bool,
    saw_nul: bool,
}

fn decode_chunks(max_line: usize, chunks: &[&[u8]]) -> Decoded {
    let mut d = DataDecoder::new(max_line);
    let mut content = Vec::new();
    let mut base = 0;
    let mut event = DataEvent::NeedMore;
    for chunk in chunks {
        // A fresh buffer each call, as a caller over its size limit would pass.
        let mut out = Vec::new();
        event = d.feed(chunk, &mut out);
        content.extend_from_slice(&out);
        match event {
            DataEvent::NeedMore => base += chunk.len(),
            DataEvent::Done { consumed } => {
                assert!(consumed <= chunk.len());
                event = DataEvent::Done {
                    consumed: base + consumed,
                };
                break;
            }
            DataEvent::BareCrLf { consumed } => {
                assert!(consumed <= chunk.len());
                event = DataEvent::BareCrLf {
                    consumed: base + consumed,
                };
                break;
            }
        }
    }
    assert_eq!(d.content_len(), content.len() as u64);
    Decoded {
        content,
        event,
        line_too_long: d.line_too_long(),
        saw_nul: d.saw_nul(),
    }
}

fn decode(input: &[u8]) -> Decoded {
    decode_chunks(MAX_TEXT_LINE, &[input])
}

/// Every split into two chunks, and byte by byte, gives the same result as one chunk.
fn assert_split_invariant(max_line: usize, input: &[u8]) -> Decoded {
    let whole = decode_chunks(max_line, &[input]);
    for split in 0..=input.len() {
        let (a, b) = input.split_at(split);
        assert_eq!(
            decode_chunks(max_line, &[a, b]),
            whole,
            "split at {split} of {:?}",
            String::from_utf8_lossy(input)
        );
    }
    for i in 0..input.len() {
        for j in i..=input.len() {
            let parts = [&input[..i], &input[i..j], &input[j..]];
            assert_eq!(
                decode_chunks(max_line, &parts),
                whole,
                "splits {i},{j} of {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(decode_chunks(max_line, &bytes), whole);
    whole
}

#[test]
fn content_and_end() {
    let done = |n| DataEvent::Done { consumed: n };
    let cases: &[(&[u8], &[u8], DataEvent)] = &[
        (b".\r\n", b"", done(3)),
        (b".\r\nQUIT\r\n", b"", done(3)),
        (b"A\r\n.\r\n", b"A\r\n", done(6)),
        (b"A\r\n.\r\nQUIT\r\n", b"A\r\n", done(6)),
        (b"\r\n.\r\n", b"\r\n", done(5)),
        (b"A\r\nB\r\n\r\n.\r\n", b"A\r\nB\r\n\r\n", done(11)),
        (b"..\r\n.\r\n", b".\r\n", done(7)),
        (b"...\r\n.\r\n", b"..\r\n", done(8)),
        (b"A\r\n..B\r\n.\r\n", b"A\r\n.B\r\n", done(11)),
        // An unstuffed leading dot is removed too (RFC 5321 4.5.2).
        (b".B\r\n.\r\n", b"B\r\n", done(7)),
        (b"A.\r\n.\r\n", b"A.\r\n", done(7)),
        (b"A\r\n. \r\n.\r\n", b"A\r\n \r\n", done(10)),
        (b"A\r\n.", b"A\r\n", DataEvent::NeedMore),
        (b"A\r\n.\r", b"A\r\n", DataEvent::NeedMore),
        (b"A\r", b"A", DataEvent::NeedMore),
        (b"", b"", DataEvent::NeedMore),
    ];
    for (input, content, event) in cases {
        let got = assert_split_invariant(MAX_TEXT_LINE, input);
        assert_eq!(
            got.content,
            *content,
            "{:?}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(&got.event, event, "{:?}", String::from_utf8_lossy(input));
        assert!(!got.saw_nul && !got.line_too_long);
    }
}

/// SMTP smuggling (CVE-2023-51764 and relatives): each vector is followed by a smuggled command
/// and a proper end. None of them may end the data; all but the NUL one are fatal.
#[test]
fn smuggling_vectors() {
    let vectors: &[(&[u8], Option<usize>)] = &[
        // (vector, offset in the vector of the byte that proves the bare CR/LF; None: not bare)
        (b"\n.\n", Some(0)),
        (b"\n.\r\n", Some(0)),
        (b"\r.\n", Some(1)),
        (b"\r\n.\rX", Some(4)),
        (b"\r\n.\r.\r\n", Some(4)),
        (b"\r\n.\n", Some(3)),
        (b"\r.\r\n", Some(1)),
        (b"\r\r\n.\r\n", Some(1)),
        (b"\r\n\n.\r\n", Some(2)),
        (b"\r\n\x00.\r\n", None),
    ];
    for (vector, bare_at) in vectors {
        let mut input = b"Subject: hi\r\n\r\nbody".to_vec();
        let prefix = input.len();
        input.extend_from_slice(vector);
        input.extend_from_slice(b"MAIL FROM:<evil@x>\r\n");
        input.extend_from_slice(b"\r\n.\r\n");
        let got = assert_split_invariant(MAX_TEXT_LINE, &input);
        match bare_at {
            Some(at) => {
                assert_eq!(
                    got.event,
                    DataEvent::BareCrLf {
                        consumed: prefix + at + 1
                    },
                    "{vector:?}"
                );
            }
            None => {
                assert_eq!(
                    got.event,
                    DataEvent::Done {
                        consumed: input.len()
                    },
                    "{vector:?}"
                );
                assert!(got.saw_nul);
                assert!(
                    got.content
                        .ends_with(b"\x00.\r\nMAIL FROM:<evil@x>\r\n\r\n")
                );
            }
        }
    }
    // At the very start too.
    for vector in [&b"\n.\r\n"[..], b".\n", b".\rX", b"\r.\r\n", b"\n"] {
        let got = assert_split_invariant(MAX_TEXT_LINE, vector);
        assert!(
            matches!(got.event, DataEvent::BareCrLf { .. }),
            "{vector:?}"
        );
    }
}

#[test]
fn terminal_states_are_sticky() {
    let mut d = DataDecoder::new(MAX_TEXT_LINE);
    let mut out = Vec::new();
    assert_eq!(
        d.feed(b"A\r\n.\r\nQUIT\r\n", &mut out),
        DataEvent::Done { consumed: 6 }
    );
    assert!(d.is_done());
    assert_eq!(
        d.feed(b"more\r\n", &mut out),
        DataEvent::Done { consumed: 0 }
    );
    assert_eq!(out, b"A\r\n");
    let mut d = DataDecoder::new(MAX_TEXT_LINE);
    assert_eq!(
        d.feed(b"A\nB", &mut out),
        DataEvent::BareCrLf { consumed: 2 }
    );
    assert_eq!(
        d.feed(b".\r\n", &mut out),
        DataEvent::BareCrLf { consumed: 0 }
    );
}

#[test]
fn line_length_limit() {
    // 998 octets + CRLF = 1000: fine. A stuffing dot does not count.
    for (line, too_long) in [
        (vec![b'a'; 998], false),
        (vec![b'a'; 999], true),
        ([b"..".to_vec(), vec![b'a'; 997]].concat(), false),
        ([b"..".to_vec(), vec![b'a'; 998]].concat(), true),
    ] {
        let input = [line.clone(), b"\r\nshort\r\n.\r\n".to_vec()].concat();
        let got = decode(&input);
        assert_eq!(got.line_too_long, too_long, "line of {}", line.len());
        assert!(matches!(got.event, DataEvent::Done { .. }));
        // Never truncates.
        assert_eq!(
            got.content.len(),
            input.len() - 3 - usize::from(line.starts_with(b".."))
        );
    }
    let got = assert_split_invariant(8, b"123456\r\n1234567\r\n.\r\n");
    assert!(got.line_too_long);
    let got = assert_split_invariant(8, b"123456\r\n..23456\r\n.\r\n");
    assert!(!got.line_too_long);
}

#[test]
fn nul_is_flagged_not_fatal() {
    for input in [&b"\x00\r\n.\r\n"[..], b"a\x00b\r\n.\r\n", b".\x00\r\n.\r\n"] {
        let got = assert_split_invariant(MAX_TEXT_LINE, input);
        assert!(got.saw_nul);
        assert!(matches!(got.event, DataEvent::Done { .. }));
    }
}

/// A tiny deterministic generator for the property tests (no external crates).
pub(crate) struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A message of CRLF lines made of bytes that stress stuffing: dots, CR/LF pieces, NUL.
fn random_message(rng: &mut XorShift, crlf_only: bool) -> Vec<u8> {
    let alphabet: &[u8] = if crlf_only {
        b".a.. \x00x"
    } else {
        b".a.\r\n \x00"
    };
    let mut msg = Vec::new();
    for _ in 0..rng.below(8) {
        for _ in 0..rng.below(6) {
            msg.push(alphabet[rng.below(alphabet.len())]);
        }
        msg.extend_from_slice(b"\r\n");
    }
    if rng.below(3) == 0 {
        // Unterminated last line.
        msg.push(b'.');
    }
    msg
}

fn stuff_chunked(msg: &[u8], splits: &[usize]) -> Vec<u8> {
    let mut stuffer = DotStuffer::new();
    let mut out = Vec::new();
    let mut start = 0;
    for &s in splits.iter().chain([&msg.len()]) {
        stuffer.feed(&msg[start..s], &mut out);
        start = s;
    }
    stuffer.finish(&mut out);
    out
}

/// Bare CR and bare LF become CRLF; an unterminated last line gets its CRLF.
fn normalized(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < msg.len() {
        match msg[i] {
            b'\r' if msg.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[test]
fn stuffer_and_decoder_round_trip_at_every_split() {
    let mut rng = XorShift(0x5eed_1234_abcd_0001);
    for round in 0..400 {
        let msg = random_message(&mut rng, round % 2 == 0);
        let want = normalized(&msg);
        if round % 2 == 0 && msg.ends_with(b"\r\n") {
            assert_eq!(want, msg);
        }
        let wire = stuff_chunked(&msg, &[]);
        // The wire form holds no bare CR or LF and exactly one terminator, at its end.
        for (i, &b) in wire.iter().enumerate() {
            match b {
                b'\r' => assert_eq!(wire.get(i + 1), Some(&b'\n')),
                b'\n' => assert_eq!(wire[i - 1], b'\r'),
                _ => {}
            }
        }
        for split in 0..=msg.len() {
            assert_eq!(
                stuff_chunked(&msg, &[split]),
                wire,
                "stuffer split {split} of {msg:?}"
            );
        }
        for split in 0..=wire.len() {
            let (a, b) = wire.split_at(split);
            let got = decode_chunks(MAX_TEXT_LINE, &[a, b]);
            assert_eq!(
                got.event,
                DataEvent::Done {
                    consumed: wire.len()
                },
                "{msg:?}"
            );
            assert_eq!(got.content, want, "decoder split {split} of {msg:?}");
        }
    }
}

#[test]
fn random_streams_split_invariant() {
    let mut rng = XorShift(0x0dd_ba11_cafe);
    let alphabet = b"\r\n.a\x00";
    for _ in 0..300 {
        let len = rng.below(24);
        let input: Vec<u8> = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len())])
            .collect();
        let whole = decode_chunks(6, &[&input]);
        for split in 0..=input.len() {
            let (a, b) = input.split_at(split);
            assert_eq!(decode_chunks(6, &[a, b]), whole, "{input:?}");
        }
    }
}
