//! S/MIME throughput of `palisade_crypto::protect` (used by `scripts/bench-smime.sh`):
//!
//!   bench_smime MESSAGE RECIPIENT_CERT SIGNER_CERT SIGNER_KEY COUNT
//!
//! Prints one JSON line: messages/s encrypting only, and signing + encrypting.

use std::time::Instant;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 6 {
        eprintln!("usage: bench_smime MESSAGE RECIPIENT_CERT SIGNER_CERT SIGNER_KEY COUNT");
        std::process::exit(64);
    }
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{p}: {e}"));
    let message = std::fs::read(&a[1]).expect("message");
    let recipients = palisade_crypto::pem_certificates(&read(&a[2])).expect("recipient");
    let signer = palisade_crypto::GatewayKey::from_pem(&read(&a[3]), &read(&a[4])).expect("signer");
    let count: u32 = a[5].parse().expect("count");
    let run = |signer: Option<&palisade_crypto::GatewayKey>| {
        let t = Instant::now();
        let mut bytes = 0usize;
        for _ in 0..count {
            bytes += palisade_crypto::protect(&message, &recipients, signer)
                .expect("protect")
                .len();
        }
        (f64::from(count) / t.elapsed().as_secs_f64(), bytes)
    };
    let (encrypt, _) = run(None);
    let (sign_encrypt, _) = run(Some(&signer));
    println!(
        "{{\"messages\": {count}, \"size\": {}, \"encrypt_per_s\": {encrypt:.1}, \"sign_encrypt_per_s\": {sign_encrypt:.1}}}",
        message.len()
    );
}
