//! The heartbeat frame: exactly [`FRAME_LEN`] bytes, every field fixed-width big-endian, the last
//! 32 bytes an HMAC-SHA256 under the pair key over everything before them. A frame that is not
//! exactly that long, has another magic or version, an unknown state, non-zero reserved bytes or
//! a tag that does not verify is refused before any field is believed.

use ring::hmac;

use crate::State;

pub const FRAME_LEN: usize = 96;
const MAGIC: &[u8; 4] = b"PHA1";
const VERSION: u8 = 1;
const TAG_LEN: usize = 32;
const BODY_LEN: usize = FRAME_LEN - TAG_LEN;

/// The pair key: 32 random bytes shared by the two units (the pairing code carries it).
#[derive(Clone)]
pub struct PairKey {
    bytes: [u8; 32],
    hmac: hmac::Key,
}

impl PairKey {
    pub fn new(bytes: [u8; 32]) -> PairKey {
        PairKey {
            hmac: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
            bytes,
        }
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// A key for another purpose (the replication channel, …) derived from the pair key, so
    /// that each process can be given only the key it needs.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let tag = hmac::sign(
            &self.hmac,
            format!("palisade-ha derive {purpose}").as_bytes(),
        );
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

impl std::fmt::Debug for PairKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PairKey(…)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags {
    /// The sender's witness answers (always true when it has none configured).
    pub witness: bool,
    /// The sender's own engine is healthy.
    pub engine: bool,
    /// The sender stepped down on purpose (manual failover) and will not take over for a while.
    pub stepping_down: bool,
}

impl Flags {
    fn to_byte(self) -> u8 {
        u8::from(self.witness) | u8::from(self.engine) << 1 | u8::from(self.stepping_down) << 2
    }

    fn from_byte(b: u8) -> Option<Flags> {
        (b & !0b111 == 0).then_some(Flags {
            witness: b & 1 != 0,
            engine: b & 2 != 0,
            stepping_down: b & 4 != 0,
        })
    }
}

/// What one unit tells the other every interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub state: State,
    pub priority: u8,
    pub flags: Flags,
    pub node_id: u64,
    pub epoch: u64,
    pub seq: u64,
    pub config_revision: i64,
    pub spool_position: u64,
    pub sent_at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    Length(usize),
    Magic,
    Version(u8),
    /// The tag does not verify: not made with our pair key, or changed on the way.
    Forged,
    State(u8),
    Flags(u8),
    Reserved,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Length(n) => write!(f, "frame of {n} bytes (a heartbeat is {FRAME_LEN})"),
            FrameError::Magic => f.write_str("not a Palisade heartbeat"),
            FrameError::Version(v) => {
                write!(f, "heartbeat version {v} (this unit speaks {VERSION})")
            }
            FrameError::Forged => f.write_str("authentication tag does not verify"),
            FrameError::State(s) => write!(f, "unknown state {s}"),
            FrameError::Flags(b) => write!(f, "unknown flags {b:#04x}"),
            FrameError::Reserved => f.write_str("reserved bytes are not zero"),
        }
    }
}

impl std::error::Error for FrameError {}

impl Frame {
    pub fn encode(&self, key: &PairKey) -> [u8; FRAME_LEN] {
        let mut out = [0u8; FRAME_LEN];
        out[0..4].copy_from_slice(MAGIC);
        out[4] = VERSION;
        out[5] = self.state.code();
        out[6] = self.priority;
        out[7] = self.flags.to_byte();
        out[8..16].copy_from_slice(&self.node_id.to_be_bytes());
        out[16..24].copy_from_slice(&self.epoch.to_be_bytes());
        out[24..32].copy_from_slice(&self.seq.to_be_bytes());
        out[32..40].copy_from_slice(&self.config_revision.to_be_bytes());
        out[40..48].copy_from_slice(&self.spool_position.to_be_bytes());
        out[48..56].copy_from_slice(&self.sent_at_ms.to_be_bytes());
        // 56..64 reserved, zero
        let tag = hmac::sign(&key.hmac, &out[..BODY_LEN]);
        out[BODY_LEN..].copy_from_slice(tag.as_ref());
        out
    }

    pub fn decode(buf: &[u8], key: &PairKey) -> Result<Frame, FrameError> {
        if buf.len() != FRAME_LEN {
            return Err(FrameError::Length(buf.len()));
        }
        if &buf[0..4] != MAGIC {
            return Err(FrameError::Magic);
        }
        if buf[4] != VERSION {
            return Err(FrameError::Version(buf[4]));
        }
        hmac::verify(&key.hmac, &buf[..BODY_LEN], &buf[BODY_LEN..])
            .map_err(|_| FrameError::Forged)?;
        let u = |r: std::ops::Range<usize>| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[r]);
            u64::from_be_bytes(b)
        };
        if buf[56..64].iter().any(|&b| b != 0) {
            return Err(FrameError::Reserved);
        }
        Ok(Frame {
            state: State::from_code(buf[5]).ok_or(FrameError::State(buf[5]))?,
            priority: buf[6],
            flags: Flags::from_byte(buf[7]).ok_or(FrameError::Flags(buf[7]))?,
            node_id: u(8..16),
            epoch: u(16..24),
            seq: u(24..32),
            config_revision: u(32..40) as i64,
            spool_position: u(40..48),
            sent_at_ms: u(48..56),
        })
    }
}

/// Why an authentic frame was still not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Bad(FrameError),
    /// Our own frame coming back (a reflection, or a loop on the link).
    OwnFrame,
    /// Older than the newest frame already taken: a replay, or reordered on the way.
    Stale {
        seq: u64,
        newest: u64,
    },
    /// The newest frame again: the same heartbeat over the second path (LAN and HA link).
    Duplicate,
}

/// The receiving side: decodes, authenticates, and lets through only frames newer than every
/// frame taken before. Sequence numbers start at the sender's wall-clock microseconds when it
/// starts and count up, so a restarted peer is still newer and a recorded frame never is.
#[derive(Debug)]
pub struct Receiver {
    own_node: u64,
    newest: Option<u64>,
}

impl Receiver {
    pub fn new(own_node: u64) -> Receiver {
        Receiver {
            own_node,
            newest: None,
        }
    }

    pub fn accept(&mut self, buf: &[u8], key: &PairKey) -> Result<Frame, Refused> {
        let f = Frame::decode(buf, key).map_err(Refused::Bad)?;
        if f.node_id == self.own_node {
            return Err(Refused::OwnFrame);
        }
        if let Some(newest) = self.newest {
            if f.seq == newest {
                return Err(Refused::Duplicate);
            }
            if f.seq < newest {
                return Err(Refused::Stale { seq: f.seq, newest });
            }
        }
        self.newest = Some(f.seq);
        Ok(f)
    }
}

/// The sending side's sequence: starts at `start_us` (wall-clock microseconds at start).
#[derive(Debug)]
pub struct Sequence(u64);

impl Sequence {
    pub fn starting_at(start_us: u64) -> Sequence {
        Sequence(start_us)
    }

    pub fn advance(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> PairKey {
        PairKey::new([b; 32])
    }

    fn frame() -> Frame {
        Frame {
            state: State::Active,
            priority: 200,
            flags: Flags {
                witness: true,
                engine: true,
                stepping_down: false,
            },
            node_id: 0x0102_0304_0506_0708,
            epoch: 7,
            seq: 1_700_000_000_000_001,
            config_revision: 42,
            spool_position: 99,
            sent_at_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn round_trip_and_layout() {
        let bytes = frame().encode(&key(1));
        assert_eq!(bytes.len(), FRAME_LEN);
        assert_eq!(&bytes[..4], b"PHA1");
        assert_eq!(bytes[5], State::Active.code());
        assert_eq!(bytes[7], 0b011);
        assert_eq!(Frame::decode(&bytes, &key(1)), Ok(frame()));
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let bytes = frame().encode(&key(1));
        for i in 0..FRAME_LEN {
            for bit in 0..8 {
                let mut b = bytes;
                b[i] ^= 1 << bit;
                assert!(Frame::decode(&b, &key(1)).is_err(), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn wrong_key_truncated_and_extended_frames_are_refused() {
        let bytes = frame().encode(&key(1));
        assert_eq!(Frame::decode(&bytes, &key(2)), Err(FrameError::Forged));
        assert_eq!(
            Frame::decode(&bytes[..FRAME_LEN - 1], &key(1)),
            Err(FrameError::Length(95))
        );
        let mut long = bytes.to_vec();
        long.push(0);
        assert_eq!(Frame::decode(&long, &key(1)), Err(FrameError::Length(97)));
        assert_eq!(Frame::decode(&[], &key(1)), Err(FrameError::Length(0)));
    }

    #[test]
    fn replays_reflections_and_reordering_are_refused() {
        let k = key(1);
        let mut rx = Receiver::new(1);
        let mut f = frame();
        let first = f.encode(&k);
        f.seq += 1;
        let second = f.encode(&k);
        assert!(rx.accept(&first, &k).is_ok());
        assert_eq!(rx.accept(&first, &k), Err(Refused::Duplicate));
        assert!(rx.accept(&second, &k).is_ok());
        assert!(matches!(rx.accept(&first, &k), Err(Refused::Stale { .. })));
        // Our own node id: dropped even with a good tag and a new sequence number.
        f.node_id = 1;
        f.seq += 1;
        assert_eq!(rx.accept(&f.encode(&k), &k), Err(Refused::OwnFrame));
        // A restarted peer (new node id or not) starts from its clock: newer.
        f.node_id = 5;
        f.seq = frame().seq + 1_000_000;
        assert!(rx.accept(&f.encode(&k), &k).is_ok());
    }

    #[test]
    fn derived_keys_differ_by_purpose_and_pair() {
        assert_ne!(key(1).derive("replication"), key(1).derive("other"));
        assert_ne!(key(1).derive("replication"), key(2).derive("replication"));
        assert_eq!(key(1).derive("replication"), key(1).derive("replication"));
    }
}
