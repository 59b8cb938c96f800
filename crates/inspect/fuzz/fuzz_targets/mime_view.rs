//! `MessageView::from_bytes` on arbitrary bytes with the default limits, then every part's
//! decoded bytes and text. Invariants: no panic; a decoded part has the size it is listed with;
//! a limit hit always makes the message uninspectable; members come after their archive.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_inspect::{Limits, MessageView, PartKind};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_time_ms: 60_000,
        ..Limits::default()
    };
    let view = MessageView::from_bytes(data, &limits);
    if !view.limits_hit().is_empty() {
        assert!(view.uninspectable().is_some());
    }
    for (i, part) in view.parts().iter().enumerate() {
        if let PartKind::ArchiveMember { archive, .. } = part.kind {
            assert!(archive < i);
        }
        if let Some(bytes) = view.decoded(i) {
            assert_eq!(bytes.len() as u64, part.size, "part {}", part.section);
        }
        let _ = view.text(i);
    }
    let _ = view.tracking();
});
