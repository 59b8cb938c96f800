//! Palisade's high-availability protocol, pure: the heartbeat frame and its authentication
//! ([`frame`]), the failover state machine ([`machine`]) and the pairing code ([`code`]). The
//! `palisade ha` process (engine crate, `ha` module) does the I/O: UDP, netlink, ARP, the witness.
//! The design is in ARCHITECTURE.md, "High availability".

#![forbid(unsafe_code)]

pub mod code;
pub mod frame;
pub mod machine;
pub mod pair;

pub use frame::{FRAME_LEN, Flags, Frame, FrameError, PairKey, Receiver, Refused, Sequence};
pub use machine::{Action, Event, Machine, Settings};

/// A unit's state in the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Just started: listening for the peer, holding nothing.
    Init,
    /// The peer is active; this unit holds nothing and is ready to take over.
    Passive,
    /// Holding the floating address, the peer alive and passive.
    Active,
    /// Holding the floating address with the peer gone.
    Degraded,
    /// Not fit to serve (own engine unhealthy, or cut off from peer and witness): holds nothing.
    Fault,
}

impl State {
    pub const ALL: [State; 5] = [
        State::Init,
        State::Passive,
        State::Active,
        State::Degraded,
        State::Fault,
    ];

    pub fn code(self) -> u8 {
        match self {
            State::Init => 0,
            State::Passive => 1,
            State::Active => 2,
            State::Degraded => 3,
            State::Fault => 4,
        }
    }

    pub fn from_code(c: u8) -> Option<State> {
        State::ALL.into_iter().find(|s| s.code() == c)
    }

    pub fn name(self) -> &'static str {
        match self {
            State::Init => "init",
            State::Passive => "passive",
            State::Active => "active",
            State::Degraded => "degraded",
            State::Fault => "fault",
        }
    }

    /// Whether a unit in this state holds the floating address.
    pub fn holds_address(self) -> bool {
        matches!(self, State::Active | State::Degraded)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
