//! The failover state machine. Events in (time passing, an authentic peer frame, the engine's
//! health, the witness, an operator's failover), actions out (persist the epoch, add or remove
//! the floating address, announce it). It never reads a clock: every event carries `now_ms`.
//!
//! The rules (ARCHITECTURE.md, "High availability"): rank = (epoch, priority, node id); a unit
//! holding the address steps down at once when a live peer holding it too ranks higher; a unit
//! takes over only with a healthy engine and — when a witness is configured — a witness that
//! answers; a unit holding the address alone that loses its witness too gives the address up.

use crate::{Flags, Frame, State};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub node_id: u64,
    pub priority: u8,
    /// Take the address back from a live active peer of lower priority.
    pub preempt: bool,
    pub witness_configured: bool,
    /// Without a valid frame for this long the peer is dead; an unhealthy engine for this long
    /// is a fault; init lasts this long.
    pub dead_time_ms: u64,
    /// The heartbeat interval: a holder cut off from peer and witness gives the address up two
    /// intervals before the peer may take it, so the two never hold it at once.
    pub interval_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Time passed (the heartbeat interval).
    Tick,
    /// An authentic, fresh frame from the peer (already through [`crate::Receiver`]).
    Peer(Frame),
    /// The own engine answered its health check (or did not).
    Engine { healthy: bool },
    /// The witness answered (or did not).
    Witness { reachable: bool },
    /// An operator asked for a failover on this unit.
    Failover,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write the new epoch to disk before anything else (a restart must not reuse it).
    PersistEpoch(u64),
    AddAddress,
    RemoveAddress,
    /// Gratuitous ARP / unsolicited neighbour advertisement for the address.
    Announce,
    /// The state changed: (from, to, why) for the log and the audit.
    Changed {
        from: State,
        to: State,
        why: &'static str,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    pub frame: Frame,
    pub last_seen_ms: u64,
}

#[derive(Debug, Clone)]
pub struct Machine {
    settings: Settings,
    state: State,
    epoch: u64,
    since_ms: u64,
    peer: Option<PeerInfo>,
    engine_healthy: bool,
    engine_bad_since: Option<u64>,
    witness_reachable: bool,
    /// Since when the witness has answered again after it was lost (None: not lost since start).
    witness_back_since_ms: Option<u64>,
    witness_reported: bool,
    hold_until_ms: u64,
    now_ms: u64,
}

impl Machine {
    /// A unit starting: init, holding nothing (an address left behind by a crash is removed).
    pub fn new(settings: Settings, epoch: u64, now_ms: u64) -> (Machine, Vec<Action>) {
        let m = Machine {
            settings,
            state: State::Init,
            epoch,
            since_ms: now_ms,
            peer: None,
            engine_healthy: true,
            engine_bad_since: None,
            witness_reachable: !settings.witness_configured,
            witness_back_since_ms: None,
            witness_reported: false,
            hold_until_ms: 0,
            now_ms,
        };
        (m, vec![Action::RemoveAddress])
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn peer(&self) -> Option<&PeerInfo> {
        self.peer.as_ref()
    }

    pub fn engine_healthy(&self) -> bool {
        self.engine_healthy
    }

    pub fn witness_reachable(&self) -> bool {
        self.witness_reachable
    }

    /// Cut off: a witness is configured and does not answer, and the peer has been silent for
    /// a dead time less two intervals.
    fn isolated(&self) -> bool {
        // Two intervals early: the two sides time silence from frames sent up to an interval
        // apart, and the witness probe takes up to half an interval to fail.
        let early = self
            .settings
            .dead_time_ms
            .saturating_sub(2 * self.settings.interval_ms);
        let silent = self
            .peer
            .is_none_or(|p| self.now_ms.saturating_sub(p.last_seen_ms) > early);
        self.settings.witness_configured && !self.witness_reachable && silent
    }

    pub fn peer_alive(&self) -> bool {
        self.peer.is_some_and(|p| {
            self.now_ms.saturating_sub(p.last_seen_ms) <= self.settings.dead_time_ms
        })
    }

    /// Our frame for this moment (the caller fills in seq, config revision, spool position).
    pub fn frame(
        &self,
        seq: u64,
        config_revision: i64,
        spool_position: u64,
        sent_at_ms: u64,
    ) -> Frame {
        Frame {
            state: self.state,
            priority: self.settings.priority,
            flags: Flags {
                witness: self.witness_reachable,
                engine: self.engine_healthy,
                stepping_down: self.now_ms < self.hold_until_ms,
            },
            node_id: self.settings.node_id,
            epoch: self.epoch,
            seq,
            config_revision,
            spool_position,
            sent_at_ms,
        }
    }

    fn rank(&self) -> (u64, u8, u64) {
        (self.epoch, self.settings.priority, self.settings.node_id)
    }

    fn engine_ok(&self) -> bool {
        self.engine_healthy
            || self
                .engine_bad_since
                .is_some_and(|t| self.now_ms.saturating_sub(t) < self.settings.dead_time_ms)
    }

    pub fn handle(&mut self, event: Event, now_ms: u64) -> Vec<Action> {
        self.now_ms = self.now_ms.max(now_ms);
        let mut out = Vec::new();
        match event {
            Event::Tick => {}
            Event::Peer(frame) => {
                self.peer = Some(PeerInfo {
                    frame,
                    last_seen_ms: self.now_ms,
                });
            }
            Event::Engine { healthy } => {
                self.engine_healthy = healthy;
                self.engine_bad_since = match (healthy, self.engine_bad_since) {
                    (true, _) => None,
                    (false, None) => Some(self.now_ms),
                    (false, since) => since,
                };
            }
            Event::Witness { reachable } => {
                let reachable = reachable || !self.settings.witness_configured;
                // The first answer at start counts from long ago (init waits a dead time anyway).
                if reachable && !self.witness_reachable && self.witness_reported {
                    self.witness_back_since_ms = Some(self.now_ms);
                }
                self.witness_reported = true;
                self.witness_reachable = reachable;
            }
            Event::Failover => {
                if self.state.holds_address() {
                    self.hold_until_ms = self.now_ms + 2 * self.settings.dead_time_ms;
                    self.step_down(
                        State::Passive,
                        "failover requested: stepping down",
                        &mut out,
                    );
                } else if self.state == State::Passive && self.engine_ok() {
                    self.take_over("failover requested: taking over", &mut out);
                }
                return out;
            }
        }
        self.evaluate(&mut out);
        out
    }

    fn go(&mut self, to: State, why: &'static str, out: &mut Vec<Action>) {
        if to != self.state {
            out.push(Action::Changed {
                from: self.state,
                to,
                why,
            });
            self.state = to;
            self.since_ms = self.now_ms;
        }
    }

    fn step_down(&mut self, to: State, why: &'static str, out: &mut Vec<Action>) {
        if self.state.holds_address() {
            out.push(Action::RemoveAddress);
        }
        self.go(to, why, out);
    }

    fn take_over(&mut self, why: &'static str, out: &mut Vec<Action>) {
        let peer_epoch = self.peer.map(|p| p.frame.epoch).unwrap_or(0);
        self.epoch = self.epoch.max(peer_epoch) + 1;
        out.push(Action::PersistEpoch(self.epoch));
        out.push(Action::AddAddress);
        out.push(Action::Announce);
        let to = if self.peer_alive() {
            State::Active
        } else {
            State::Degraded
        };
        self.go(to, why, out);
    }

    /// May this unit take the address now (peer gone or unfit)? A witness that has just come
    /// back must first answer for a dead time: the cut that hid it may have hidden the peer's
    /// heartbeats too, and those get that long to arrive.
    fn may_take_over(&self) -> bool {
        let witness = !self.settings.witness_configured
            || (self.witness_reachable
                && self
                    .witness_back_since_ms
                    .is_none_or(|t| self.now_ms.saturating_sub(t) >= self.settings.dead_time_ms));
        self.engine_ok() && witness && self.now_ms >= self.hold_until_ms
    }

    fn evaluate(&mut self, out: &mut Vec<Action>) {
        if self.state != State::Fault && !self.engine_ok() {
            self.step_down(State::Fault, "own engine not healthy", out);
            return;
        }
        let alive = self.peer_alive();
        // The peer's word is fresh when it came within the last interval (and a bit).
        let fresh = self.peer.is_some_and(|p| {
            self.now_ms.saturating_sub(p.last_seen_ms) <= self.settings.interval_ms * 3 / 2
        });
        let peer = self.peer.map(|p| p.frame);
        let peer_holds = alive && peer.is_some_and(|f| f.state.holds_address());
        let peer_outranks = peer.is_some_and(|f| (f.epoch, f.priority, f.node_id) > self.rank());
        match self.state {
            State::Fault => {
                if self.engine_healthy && !self.isolated() {
                    self.go(State::Init, "fit to serve again", out);
                }
            }
            State::Init => {
                // A peer that holds the address is followed at once; anything else waits until
                // init has listened for a dead time, so that frames that crossed a change on
                // the way are not acted on.
                if peer_holds {
                    self.go(State::Passive, "the peer holds the address", out);
                } else if self.now_ms.saturating_sub(self.since_ms) >= self.settings.dead_time_ms {
                    match peer.filter(|_| alive) {
                        // Heard lately but not this interval: wait for a fresh word.
                        Some(_) if !fresh => {}
                        Some(p) if p.state == State::Fault => {
                            if self.may_take_over() {
                                self.take_over("the peer is in fault", out)
                            } else {
                                self.go(
                                    State::Passive,
                                    "the peer is in fault, and this unit may not take over",
                                    out,
                                )
                            }
                        }
                        Some(_) if peer_outranks => {
                            self.go(State::Passive, "the peer ranks higher", out)
                        }
                        Some(_) => self.take_over("this unit ranks higher", out),
                        None if self.may_take_over() => self.take_over("no peer answered", out),
                        None => self.go(
                            State::Passive,
                            "no peer, and the witness does not answer: not taking over",
                            out,
                        ),
                    }
                }
            }
            State::Passive => match peer.filter(|_| alive) {
                None => {
                    if self.may_take_over() {
                        self.take_over("the peer is gone", out);
                    }
                }
                // Heard lately but not this interval: wait for a fresh word.
                Some(_) if !fresh => {}
                Some(p) => match p.state {
                    State::Fault => {
                        if self.may_take_over() {
                            self.take_over("the peer is in fault", out);
                        }
                    }
                    State::Active | State::Degraded => {
                        if self.settings.preempt
                            && self.settings.priority > p.priority
                            && self.may_take_over()
                        {
                            self.take_over("preempting a peer of lower priority", out);
                        }
                    }
                    State::Init | State::Passive => {
                        let willing = self.may_take_over();
                        if willing && (p.flags.stepping_down || !peer_outranks) {
                            self.take_over("nobody holds the address", out);
                        }
                    }
                },
            },
            State::Active | State::Degraded => {
                if peer_holds && peer_outranks {
                    self.step_down(
                        State::Passive,
                        "the peer holds the address and ranks higher",
                        out,
                    );
                } else if self.isolated() {
                    self.step_down(State::Fault, "cut off from both peer and witness", out);
                } else if self.settings.witness_configured
                    && !self.witness_reachable
                    && alive
                    && fresh
                    && peer.is_some_and(|f| {
                        f.flags.witness && f.flags.engine && f.state != State::Fault
                    })
                {
                    // Our LAN side is cut (the witness is gone) while the peer still reaches
                    // it: hand over, and do not take the address back while the hold lasts.
                    self.hold_until_ms = self.now_ms + 2 * self.settings.dead_time_ms;
                    self.step_down(
                        State::Passive,
                        "this unit lost the witness, the peer has it",
                        out,
                    );
                } else if alive {
                    self.go(State::Active, "the peer is back", out);
                } else {
                    self.go(State::Degraded, "the peer is gone", out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
