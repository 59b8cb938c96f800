//! `Command::parse` on arbitrary bytes, both SMTPUTF8 states. Whatever parses must be written
//! back by `to_bytes` as one line that parses to the same command; every error's reply must be
//! one well-formed reply.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_smtp_proto::{Command, parse_reply};

fuzz_target!(|data: &[u8]| {
    for smtputf8 in [false, true] {
        match Command::parse(data, smtputf8) {
            Ok(command) => {
                let wire = command.to_bytes();
                assert!(wire.ends_with(b"\r\n"));
                assert_eq!(
                    wire.iter().filter(|&&b| b == b'\r' || b == b'\n').count(),
                    2
                );
                let again = Command::parse(&wire[..wire.len() - 2], smtputf8)
                    .unwrap_or_else(|e| panic!("{command:?} written as {wire:?}: {e}"));
                assert_eq!(again, command);
            }
            Err(error) => {
                for is_mail_from in [false, true] {
                    let wire = error.reply(is_mail_from).to_bytes();
                    let (reply, used) = parse_reply(&wire)
                        .expect("valid reply")
                        .expect("complete reply");
                    assert_eq!(used, wire.len());
                    assert!(reply.is_permanent());
                }
            }
        }
    }
});
