//! Every event in every state (the table), then two machines talking over a simulated link
//! that is cut and healed, with witnesses on either side.

use super::*;

const DEAD: u64 = 3000;
const ME: u64 = 10;
const PEER: u64 = 20;

fn settings() -> Settings {
    Settings {
        node_id: ME,
        priority: 100,
        preempt: false,
        witness_configured: true,
        dead_time_ms: DEAD,
        interval_ms: 1000,
    }
}

fn peer(state: State, epoch: u64) -> Frame {
    Frame {
        state,
        priority: 100,
        flags: Flags {
            witness: true,
            engine: true,
            stepping_down: false,
        },
        node_id: PEER,
        epoch,
        seq: 1,
        config_revision: 1,
        spool_position: 0,
        sent_at_ms: 0,
    }
}

/// A machine brought into `state` the way a real one gets there; returns it and "now".
fn in_state(state: State) -> (Machine, u64) {
    let (mut m, _) = Machine::new(settings(), 5, 0);
    m.handle(Event::Witness { reachable: true }, 0);
    let now = match state {
        State::Init => 0,
        State::Passive => {
            m.handle(Event::Peer(peer(State::Active, 6)), 0);
            0
        }
        State::Active => {
            m.handle(Event::Peer(peer(State::Passive, 4)), 0);
            m.handle(Event::Peer(peer(State::Passive, 4)), DEAD);
            DEAD
        }
        State::Degraded => {
            m.handle(Event::Tick, DEAD);
            DEAD
        }
        State::Fault => {
            m.handle(Event::Engine { healthy: false }, 0);
            m.handle(Event::Tick, DEAD);
            DEAD
        }
    };
    assert_eq!(m.state(), state, "setup");
    (m, now)
}

#[derive(Debug, Clone, Copy)]
enum Ev {
    Tick,
    TickPeerGone,
    PeerActiveHigher,
    PeerActiveLower,
    PeerPassiveLower,
    PeerPassiveHigher,
    PeerFault,
    PeerInitLower,
    PeerSteppingDownHigher,
    EngineBadOnce,
    EngineBadLong,
    EngineGood,
    WitnessLost,
    WitnessLostPeerGone,
    Failover,
}

fn apply(m: &mut Machine, now: u64, ev: Ev) -> Vec<Action> {
    let t = now + 1000;
    let mut out = Vec::new();
    let mut run = |e: Event, at: u64| out.extend(m.handle(e, at));
    match ev {
        Ev::Tick => run(Event::Tick, t),
        Ev::TickPeerGone => run(Event::Tick, t + DEAD),
        Ev::PeerActiveHigher => run(Event::Peer(peer(State::Active, 100)), t),
        Ev::PeerActiveLower => run(Event::Peer(peer(State::Active, 0)), t),
        Ev::PeerPassiveLower => run(Event::Peer(peer(State::Passive, 0)), t),
        Ev::PeerPassiveHigher => run(Event::Peer(peer(State::Passive, 100)), t),
        Ev::PeerFault => run(Event::Peer(peer(State::Fault, 100)), t),
        Ev::PeerInitLower => run(Event::Peer(peer(State::Init, 0)), t),
        Ev::PeerSteppingDownHigher => {
            let mut f = peer(State::Passive, 100);
            f.flags.stepping_down = true;
            run(Event::Peer(f), t)
        }
        Ev::EngineBadOnce => run(Event::Engine { healthy: false }, t),
        Ev::EngineBadLong => {
            run(Event::Engine { healthy: false }, t);
            run(Event::Tick, t + DEAD);
        }
        Ev::EngineGood => run(Event::Engine { healthy: true }, t),
        Ev::WitnessLost => run(Event::Witness { reachable: false }, t),
        Ev::WitnessLostPeerGone => {
            run(Event::Witness { reachable: false }, t);
            run(Event::Tick, t + DEAD);
        }
        Ev::Failover => run(Event::Failover, t),
    }
    out
}

/// "+" the address was added (with epoch persisted first and an announcement), "-" removed,
/// "" neither.
fn address_effect(actions: &[Action]) -> String {
    let mut s = String::new();
    for a in actions {
        match a {
            Action::AddAddress => s.push('+'),
            Action::RemoveAddress => s.push('-'),
            _ => {}
        }
    }
    s
}

#[test]
fn every_event_in_every_state() {
    use Ev::*;
    use State::*;
    // (state, event, next state, address effect, epoch after)
    let table: &[(State, Ev, State, &str, u64)] = &[
        (Init, Tick, Init, "", 5),
        (Init, TickPeerGone, Degraded, "+", 6),
        (Init, PeerActiveHigher, Passive, "", 5),
        (Init, PeerActiveLower, Passive, "", 5),
        (Init, PeerPassiveLower, Init, "", 5),
        (Init, PeerPassiveHigher, Init, "", 5),
        (Init, PeerFault, Init, "", 5),
        (Init, PeerInitLower, Init, "", 5),
        (Init, PeerSteppingDownHigher, Init, "", 5),
        (Init, EngineBadOnce, Init, "", 5),
        (Init, EngineBadLong, Fault, "", 5),
        (Init, EngineGood, Init, "", 5),
        (Init, WitnessLost, Init, "", 5),
        (Init, WitnessLostPeerGone, Passive, "", 5),
        (Init, Failover, Init, "", 5),
        //
        (Passive, Tick, Passive, "", 5),
        (Passive, TickPeerGone, Degraded, "+", 7),
        (Passive, PeerActiveHigher, Passive, "", 5),
        (Passive, PeerActiveLower, Passive, "", 5),
        (Passive, PeerPassiveLower, Active, "+", 6),
        (Passive, PeerPassiveHigher, Passive, "", 5),
        (Passive, PeerFault, Active, "+", 101),
        (Passive, PeerInitLower, Active, "+", 6),
        (Passive, PeerSteppingDownHigher, Active, "+", 101),
        (Passive, EngineBadOnce, Passive, "", 5),
        (Passive, EngineBadLong, Fault, "", 5),
        (Passive, EngineGood, Passive, "", 5),
        (Passive, WitnessLost, Passive, "", 5),
        (Passive, WitnessLostPeerGone, Passive, "", 5),
        (Passive, Failover, Active, "+", 7),
        //
        (Active, Tick, Active, "", 6),
        (Active, TickPeerGone, Degraded, "", 6),
        (Active, PeerActiveHigher, Passive, "-", 6),
        (Active, PeerActiveLower, Active, "", 6),
        (Active, PeerPassiveLower, Active, "", 6),
        (Active, PeerPassiveHigher, Active, "", 6),
        (Active, PeerFault, Active, "", 6),
        (Active, PeerInitLower, Active, "", 6),
        (Active, PeerSteppingDownHigher, Active, "", 6),
        (Active, EngineBadOnce, Active, "", 6),
        (Active, EngineBadLong, Fault, "-", 6),
        (Active, EngineGood, Active, "", 6),
        (Active, WitnessLost, Passive, "-", 6),
        (Active, WitnessLostPeerGone, Passive, "-", 6),
        (Active, Failover, Passive, "-", 6),
        //
        (Degraded, Tick, Degraded, "", 6),
        (Degraded, TickPeerGone, Degraded, "", 6),
        (Degraded, PeerActiveHigher, Passive, "-", 6),
        (Degraded, PeerActiveLower, Active, "", 6),
        (Degraded, PeerPassiveLower, Active, "", 6),
        (Degraded, PeerPassiveHigher, Active, "", 6),
        (Degraded, PeerFault, Active, "", 6),
        (Degraded, PeerInitLower, Active, "", 6),
        (Degraded, PeerSteppingDownHigher, Active, "", 6),
        (Degraded, EngineBadOnce, Degraded, "", 6),
        (Degraded, EngineBadLong, Fault, "-", 6),
        (Degraded, EngineGood, Degraded, "", 6),
        (Degraded, WitnessLost, Fault, "-", 6),
        (Degraded, WitnessLostPeerGone, Fault, "-", 6),
        (Degraded, Failover, Passive, "-", 6),
        //
        (Fault, Tick, Fault, "", 5),
        (Fault, TickPeerGone, Fault, "", 5),
        (Fault, PeerActiveHigher, Fault, "", 5),
        (Fault, PeerActiveLower, Fault, "", 5),
        (Fault, PeerPassiveLower, Fault, "", 5),
        (Fault, PeerPassiveHigher, Fault, "", 5),
        (Fault, PeerFault, Fault, "", 5),
        (Fault, PeerInitLower, Fault, "", 5),
        (Fault, PeerSteppingDownHigher, Fault, "", 5),
        (Fault, EngineBadOnce, Fault, "", 5),
        (Fault, EngineBadLong, Fault, "", 5),
        (Fault, EngineGood, Init, "", 5),
        (Fault, WitnessLost, Fault, "", 5),
        (Fault, WitnessLostPeerGone, Fault, "", 5),
        (Fault, Failover, Fault, "", 5),
    ];
    // The table covers every pair exactly once.
    assert_eq!(table.len(), State::ALL.len() * 15);
    for &(state, ev, next, effect, epoch) in table {
        let (mut m, now) = in_state(state);
        let actions = apply(&mut m, now, ev);
        let case = format!("{state} + {ev:?}: {actions:?}");
        assert_eq!(m.state(), next, "{case}");
        assert_eq!(address_effect(&actions), effect, "{case}");
        assert_eq!(m.epoch(), epoch, "{case}");
        // The epoch is written before the address is added; an announcement follows it.
        if let Some(add) = actions.iter().position(|a| *a == Action::AddAddress) {
            assert_eq!(actions[add - 1], Action::PersistEpoch(epoch), "{case}");
            assert_eq!(actions[add + 1], Action::Announce, "{case}");
        }
        // A state change is reported once, with the states it joins.
        let changes: Vec<_> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Changed { from, to, .. } => Some((*from, *to)),
                _ => None,
            })
            .collect();
        let mut reached = state;
        for (from, to) in &changes {
            assert_eq!(*from, reached, "{case}");
            reached = *to;
        }
        assert_eq!(reached, next, "{case}");
    }
}

#[test]
fn init_decides_after_listening_for_a_dead_time() {
    for (frame, next, epoch) in [
        (peer(State::Passive, 0), State::Active, 6),
        (peer(State::Init, 0), State::Active, 6),
        (peer(State::Passive, 100), State::Passive, 5),
        (peer(State::Fault, 100), State::Active, 101),
    ] {
        let (mut m, _) = Machine::new(settings(), 5, 0);
        m.handle(Event::Witness { reachable: true }, 0);
        m.handle(Event::Peer(frame), 1000);
        assert_eq!(m.state(), State::Init);
        let mut later = frame;
        later.seq += 1;
        m.handle(Event::Peer(later), DEAD);
        assert_eq!((m.state(), m.epoch()), (next, epoch), "{frame:?}");
    }
}

#[test]
fn a_crashed_unit_starts_by_removing_a_left_over_address() {
    let (_, actions) = Machine::new(settings(), 3, 0);
    assert_eq!(actions, vec![Action::RemoveAddress]);
}

#[test]
fn preemption_is_off_by_default_and_takes_back_from_lower_priority_when_on() {
    let (mut m, _) = in_state(State::Passive);
    let mut low = peer(State::Active, 6);
    low.priority = 50;
    m.handle(Event::Peer(low), 100);
    assert_eq!(m.state(), State::Passive);
    let (mut m, _) = Machine::new(
        Settings {
            preempt: true,
            ..settings()
        },
        5,
        0,
    );
    m.handle(Event::Witness { reachable: true }, 0);
    m.handle(Event::Peer(low), 0);
    assert_eq!(m.state(), State::Passive);
    m.handle(Event::Peer(low), 100);
    assert_eq!(m.state(), State::Active);
    assert_eq!(m.epoch(), 7);
}

/// Two units over a simulated link, one step per second.
struct Pair {
    units: [Machine; 2],
    holding: [bool; 2],
    now: u64,
}

impl Pair {
    fn new(witness: bool) -> Pair {
        let mk = |node, priority| {
            let (mut m, _) = Machine::new(
                Settings {
                    node_id: node,
                    priority,
                    preempt: false,
                    witness_configured: witness,
                    dead_time_ms: DEAD,
                    interval_ms: 1000,
                },
                0,
                0,
            );
            m.handle(Event::Witness { reachable: true }, 0);
            m
        };
        Pair {
            units: [mk(1, 200), mk(2, 100)],
            holding: [false, false],
            now: 0,
        }
    }

    fn apply(&mut self, i: usize, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::AddAddress => {
                    assert!(!self.holding[i], "unit {i} added the address twice");
                    self.holding[i] = true
                }
                Action::RemoveAddress => self.holding[i] = false,
                _ => {}
            }
        }
        assert_eq!(self.holding[i], self.units[i].state().holds_address());
    }

    /// One second: each unit ticks, then (link up) hears the other's frame.
    fn step(&mut self, link: bool, witness: [bool; 2]) {
        self.now += 1000;
        let frames: Vec<Frame> = self
            .units
            .iter()
            .map(|m| m.frame(self.now, 1, 0, self.now))
            .collect();
        for i in 0..2 {
            let a = self.units[i].handle(
                Event::Witness {
                    reachable: witness[i],
                },
                self.now,
            );
            self.apply(i, a);
            if link {
                let a = self.units[i].handle(Event::Peer(frames[1 - i]), self.now);
                self.apply(i, a);
            }
            let a = self.units[i].handle(Event::Tick, self.now);
            self.apply(i, a);
        }
    }

    fn holders(&self) -> usize {
        self.holding.iter().filter(|h| **h).count()
    }
}

#[test]
fn simultaneous_start_elects_exactly_one() {
    let mut p = Pair::new(true);
    for _ in 0..5 {
        p.step(true, [true, true]);
    }
    assert_eq!(p.holders(), 1);
    assert!(p.holding[0], "the higher priority wins at start");
    assert_eq!(p.units[1].state(), State::Passive);
}

#[test]
fn a_cut_link_with_the_witness_on_one_side_leaves_exactly_that_side_holding() {
    for witness_side in 0..2 {
        let mut p = Pair::new(true);
        for _ in 0..5 {
            p.step(true, [true, true]);
        }
        let mut w = [false, false];
        w[witness_side] = true;
        for _ in 0..10 {
            p.step(false, w);
        }
        assert_eq!(p.holders(), 1, "witness on {witness_side}");
        assert!(p.holding[witness_side]);
        // Healed: still exactly one, and both agree.
        for _ in 0..5 {
            p.step(true, [true, true]);
        }
        assert_eq!(p.holders(), 1);
        let states: Vec<State> = p.units.iter().map(|m| m.state()).collect();
        assert!(
            states.contains(&State::Active) && states.contains(&State::Passive),
            "{states:?}"
        );
    }
}

#[test]
fn a_cut_link_without_witnesses_splits_and_heals_to_the_higher_epoch() {
    let mut p = Pair::new(false);
    for _ in 0..5 {
        p.step(true, [true, true]);
    }
    for _ in 0..10 {
        p.step(false, [true, true]);
    }
    assert_eq!(p.holders(), 2, "no witness: both sides serve (documented)");
    p.step(true, [true, true]);
    p.step(true, [true, true]);
    assert_eq!(p.holders(), 1);
    assert!(
        p.holding[1],
        "the unit that took over last has the higher epoch"
    );
}

#[test]
fn manual_failover_hands_over_and_back() {
    let mut p = Pair::new(true);
    for _ in 0..5 {
        p.step(true, [true, true]);
    }
    assert!(p.holding[0]);
    let a = p.units[0].handle(Event::Failover, p.now);
    p.apply(0, a);
    for _ in 0..3 {
        p.step(true, [true, true]);
    }
    assert_eq!(p.holders(), 1);
    assert!(p.holding[1], "the passive took over");
    // Failover asked on the passive: it takes over, the active steps down.
    let a = p.units[0].handle(Event::Failover, p.now + 7000);
    p.now += 7000;
    p.apply(0, a);
    p.step(true, [true, true]);
    p.step(true, [true, true]);
    assert_eq!(p.holders(), 1);
    assert!(p.holding[0]);
}

#[test]
fn a_flapping_link_never_leaves_two_holders_with_a_witness() {
    for (seed, witness_side) in [
        (0x9e37_79b9_7f4a_7c15u64, 0usize),
        (0x1234_5678_9abc_def1, 1),
        (7, 0),
        (99, 1),
    ] {
        let mut p = Pair::new(true);
        let mut x = seed;
        let mut holders_seen = 0;
        for _ in 0..600 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let link = x % 3 != 0;
            // During a cut the witness answers on one side only.
            let mut w = [true, true];
            if !link {
                w[1 - witness_side] = false;
            }
            p.step(link, w);
            assert!(p.holders() <= 1, "two holders at {} (seed {seed})", p.now);
            holders_seen += p.holders();
        }
        assert!(
            holders_seen > 500,
            "someone held the address most of the time: {holders_seen}/600"
        );
    }
}
