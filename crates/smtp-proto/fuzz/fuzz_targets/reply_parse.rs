//! `parse_reply` on arbitrary bytes. Invariants: no panic, `0 < consumed <= len`, the result
//! does not depend on bytes after the reply, a parsed reply written back parses to the same
//! code and number of lines, and writing settles after two rounds (the first may turn control
//! characters into spaces, which can reveal an enhanced code; the second then cuts lines to fit
//! that code's prefix).
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_smtp_proto::{Capabilities, parse_reply};

fuzz_target!(|data: &[u8]| {
    let Ok(Some((reply, used))) = parse_reply(data) else {
        return;
    };
    assert!(used > 0 && used <= data.len());
    assert_eq!(parse_reply(&data[..used]), Ok(Some((reply.clone(), used))));
    let _ = Capabilities::from_ehlo(&reply);
    let _ = (reply.to_string(), reply.text());

    let wire = reply.to_bytes();
    let (again, again_used) = parse_reply(&wire)
        .expect("written reply parses")
        .expect("complete");
    assert_eq!(again_used, wire.len());
    assert_eq!(again.code, reply.code);
    assert_eq!(again.lines.len(), reply.lines.len());
    let round = |r: &palisade_smtp_proto::Reply| {
        let wire = r.to_bytes();
        let (next, used) = parse_reply(&wire)
            .expect("written reply parses")
            .expect("complete");
        assert_eq!(used, wire.len());
        next
    };
    let twice = round(&again);
    assert_eq!(round(&twice), twice);
});
