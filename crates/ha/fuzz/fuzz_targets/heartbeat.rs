//! The heartbeat on arbitrary input. Raw bytes go through `Receiver::accept` (never a panic;
//! nothing but an exact, authentic, newer frame is taken). Then the fuzzer's bytes drive a
//! machine through any sequence of events — authentic peer frames of any content (encoded and
//! decoded with the pair key), engine and witness reports, failovers, time going forward by
//! any amount — checking: no panic; the address is added only when not held and removed only
//! when held (as the actions say), and held exactly when the state says so; the epoch never
//! goes down, and is persisted right before every add, which an announcement follows.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use palisade_ha::{Action, Event, Flags, Frame, Machine, PairKey, Receiver, Settings, State};

fn state(u: &mut Unstructured) -> Result<State> {
    Ok(State::ALL[u.choose_index(State::ALL.len())?])
}

fn run(data: &[u8]) -> Result<()> {
    let key = PairKey::new([9; 32]);
    let mut rx = Receiver::new(1);
    let mut u = Unstructured::new(data);
    // Raw datagrams.
    let raw_len = u.int_in_range(0..=200usize)?;
    let raw = u.bytes(raw_len.min(u.len()))?;
    if let Ok(f) = rx.accept(raw, &key) {
        panic!("an arbitrary datagram was taken as a heartbeat: {f:?}");
    }
    let settings = Settings {
        node_id: 1,
        priority: u.arbitrary()?,
        preempt: u.arbitrary()?,
        witness_configured: u.arbitrary()?,
        dead_time_ms: u.int_in_range(1..=10_000)?,
        interval_ms: u.int_in_range(1..=5_000)?,
    };
    let start: u64 = u.int_in_range(0..=1 << 40)?;
    let (mut m, first) = Machine::new(settings, u.int_in_range(0..=1 << 40)?, start);
    assert_eq!(first, vec![Action::RemoveAddress]);
    let mut holding = false;
    let mut now = start;
    let mut epoch = m.epoch();
    let mut seq = 0u64;
    while !u.is_empty() {
        now += u.int_in_range(0..=20_000u64)?;
        let event = match u.int_in_range(0..=5u8)? {
            0 => Event::Tick,
            1 => {
                seq += 1;
                let f = Frame {
                    state: state(&mut u)?,
                    priority: u.arbitrary()?,
                    flags: Flags {
                        witness: u.arbitrary()?,
                        engine: u.arbitrary()?,
                        stepping_down: u.arbitrary()?,
                    },
                    node_id: 2,
                    epoch: u.int_in_range(0..=1 << 41)?,
                    seq,
                    config_revision: u.arbitrary()?,
                    spool_position: u.arbitrary()?,
                    sent_at_ms: u.arbitrary()?,
                };
                let bytes = f.encode(&key);
                let taken = rx.accept(&bytes, &key).expect("an authentic newer frame is taken");
                assert_eq!(taken, f);
                assert!(rx.accept(&bytes, &key).is_err(), "a replay is refused");
                Event::Peer(f)
            }
            2 => Event::Engine { healthy: u.arbitrary()? },
            3 => Event::Witness { reachable: u.arbitrary()? },
            4 => Event::Failover,
            _ => Event::Tick,
        };
        let actions = m.handle(event, now);
        for (i, a) in actions.iter().enumerate() {
            match a {
                Action::AddAddress => {
                    assert!(!holding, "added while held: {actions:?}");
                    holding = true;
                    assert_eq!(actions.get(i.wrapping_sub(1)), Some(&Action::PersistEpoch(m.epoch())));
                    assert_eq!(actions.get(i + 1), Some(&Action::Announce));
                }
                Action::RemoveAddress => {
                    assert!(holding, "removed while not held: {actions:?}");
                    holding = false;
                }
                _ => {}
            }
        }
        assert_eq!(holding, m.state().holds_address(), "{:?} after {actions:?}", m.state());
        assert!(m.epoch() >= epoch);
        epoch = m.epoch();
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
