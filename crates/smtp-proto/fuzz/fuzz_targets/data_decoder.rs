//! `DataDecoder::feed` on arbitrary bytes in arbitrary chunk splits. Invariants: no panic,
//! `consumed <= input.len()`, `content_len()` equals the bytes pushed, and the result (content,
//! where it ended, flags) does not depend on the split. Also: whatever the decoder accepted,
//! the `DotStuffer` sends so that the decoder reads it back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_smtp_proto::{DataDecoder, DataEvent, DotStuffer};

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    content: Vec<u8>,
    event: DataEvent,
    line_too_long: bool,
    saw_nul: bool,
}

fn run(max_line: usize, input: &[u8], cuts: &mut dyn Iterator<Item = usize>) -> Outcome {
    let mut decoder = DataDecoder::new(max_line);
    let mut content = Vec::new();
    let mut event = DataEvent::NeedMore;
    let mut pos = 0;
    while pos < input.len() || pos == 0 {
        let len = cuts.next().unwrap_or(input.len()).min(input.len() - pos);
        let chunk = &input[pos..pos + len];
        let mut out = Vec::new();
        event = decoder.feed(chunk, &mut out);
        content.extend_from_slice(&out);
        assert_eq!(decoder.content_len(), content.len() as u64);
        match event {
            DataEvent::NeedMore => pos += len,
            DataEvent::Done { consumed } | DataEvent::BareCrLf { consumed } => {
                assert!(consumed <= chunk.len());
                let absolute = pos + consumed;
                event = match event {
                    DataEvent::Done { .. } => DataEvent::Done { consumed: absolute },
                    _ => DataEvent::BareCrLf { consumed: absolute },
                };
                // Terminal states stay put and consume nothing.
                let mut more = Vec::new();
                let again = decoder.feed(&input[absolute..], &mut more);
                assert!(more.is_empty());
                assert!(matches!(
                    again,
                    DataEvent::Done { consumed: 0 } | DataEvent::BareCrLf { consumed: 0 }
                ));
                break;
            }
        }
        if input.is_empty() {
            break;
        }
    }
    Outcome {
        content,
        event,
        line_too_long: decoder.line_too_long(),
        saw_nul: decoder.saw_nul(),
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (control, input) = data.split_at(2);
    let max_line = 2 + usize::from(control[0] % 32);
    let mut seed = u32::from(control[1]) | 1;
    let whole = run(max_line, input, &mut std::iter::empty());
    let mut cuts = std::iter::from_fn(|| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        Some((seed % 8) as usize)
    });
    assert_eq!(run(max_line, input, &mut cuts), whole);
    let mut bytes = std::iter::repeat(1);
    assert_eq!(run(max_line, input, &mut bytes), whole);

    if let DataEvent::Done { .. } = whole.event {
        let mut stuffer = DotStuffer::new();
        let mut wire = Vec::new();
        stuffer.feed(&whole.content, &mut wire);
        stuffer.finish(&mut wire);
        let back = run(max_line, &wire, &mut std::iter::empty());
        assert_eq!(
            back.event,
            DataEvent::Done {
                consumed: wire.len()
            }
        );
        assert_eq!(back.content, whole.content);
        assert_eq!(back.saw_nul, whole.saw_nul);
    }
});
