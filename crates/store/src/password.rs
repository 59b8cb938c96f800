//! Password hashing (argon2id) under a fixed memory and CPU budget.
//!
//! One argon2id computation with OWASP's parameters needs 19 MiB and tens of milliseconds, and
//! a stranger can ask for one with every failed login or SMTP AUTH. Unbounded, a hundred
//! concurrent attempts took the engine to 1.7 GB (issue 8). So every hash here goes through one
//! process-wide [`Gate`]:
//!
//! - at most `slots` computations run at once (the number of cores, at most 4), plus one slot
//!   that only [`Priority::Trusted`] callers may use (a source in the management network, or one
//!   the account logged in from before), so that an attack on the login form cannot keep the
//!   owner out;
//! - a caller waits at most [`WAIT`] for a slot (about a hundred hashes' worth), and at most
//!   [`MAX_WAITING`] callers wait; anyone else gets [`Verified::Busy`] at once, which the services answer with a temporary failure
//!   (SMTP `454 4.7.0`, HTTP 503) — never a thread or a buffer per attempt;
//! - the 19 MiB working memory is allocated per computation with a capacity above glibc's
//!   largest dynamic mmap threshold (32 MiB), so it always gets its own mapping and `free`
//!   gives it back to the kernel: the process returns to its baseline size after a storm
//!   instead of keeping a buffer in every thread's malloc arena (the pages beyond the 19 MiB
//!   in use are never touched, so they never become resident).

use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

/// How long a caller waits for a free slot before being told to come back later.
pub const WAIT: Duration = Duration::from_secs(3);
/// How many callers may wait for a slot. The services bound how many attempts they check at
/// once before this (the engine 64, the console 16): a waiter is a parked thread, no memory.
pub const MAX_WAITING: usize = 64;
/// Working memory is allocated with at least this capacity (see the module comment).
const MMAP_CAPACITY_BYTES: usize = 33 * 1024 * 1024;
/// Hashes asking for more memory than this are not computed (we only ever create 19 MiB ones;
/// a planted hash with a huge `m=` must not become a way to exhaust memory).
const MAX_MEMORY_KIB: u32 = 64 * 1024;
const MAX_PASSES: u32 = 10;

/// Who is asking: decides whether the reserved slot may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// A stranger: the shared slots only.
    Normal,
    /// A trusted network or a source the account used before: may use the reserved slot.
    Trusted,
}

/// The outcome of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    Match,
    Mismatch,
    /// No slot within [`WAIT`] (or too many waiting): a temporary failure, not a wrong password.
    Busy,
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing: {0}")]
    Hash(String),
    #[error("password hashing is busy; try again shortly")]
    Busy,
}

/// A counting semaphore with a bounded queue and a reserved slot.
#[derive(Debug)]
pub struct Gate {
    slots: usize,
    max_waiting: usize,
    wait: Duration,
    state: Mutex<GateState>,
    freed: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    running: usize,
    waiting: usize,
    peak_running: usize,
}

/// A held slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Permit<'a> {
    gate: &'a Gate,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut s = self.gate.state.lock().unwrap_or_else(|p| p.into_inner());
        s.running -= 1;
        drop(s);
        self.gate.freed.notify_all();
    }
}

impl Gate {
    pub fn new(slots: usize, wait: Duration) -> Gate {
        Gate::with_queue(slots, MAX_WAITING, wait)
    }

    pub fn with_queue(slots: usize, max_waiting: usize, wait: Duration) -> Gate {
        let slots = slots.max(1);
        Gate {
            slots,
            max_waiting,
            wait,
            state: Mutex::new(GateState::default()),
            freed: Condvar::new(),
        }
    }

    /// The process-wide gate every hash goes through.
    pub fn global() -> &'static Gate {
        static GATE: OnceLock<Gate> = OnceLock::new();
        GATE.get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            Gate::new(cores.clamp(1, 4), WAIT)
        })
    }

    fn limit(&self, priority: Priority) -> usize {
        match priority {
            Priority::Normal => self.slots,
            Priority::Trusted => self.slots + 1,
        }
    }

    /// A slot, or `None` when none frees up within the wait (or the queue is full).
    pub fn acquire(&self, priority: Priority) -> Option<Permit<'_>> {
        let limit = self.limit(priority);
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.running < limit {
            s.running += 1;
            s.peak_running = s.peak_running.max(s.running);
            return Some(Permit { gate: self });
        }
        if s.waiting >= self.max_waiting {
            return None;
        }
        let deadline = Instant::now() + self.wait;
        s.waiting += 1;
        let got = loop {
            if s.running < limit {
                s.running += 1;
                s.peak_running = s.peak_running.max(s.running);
                break true;
            }
            let now = Instant::now();
            if now >= deadline {
                break false;
            }
            s = self
                .freed
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        };
        s.waiting -= 1;
        drop(s);
        // Not `then_some`: that would build (and drop) a Permit, freeing a slot never taken.
        if got {
            Some(Permit { gate: self })
        } else {
            None
        }
    }

    /// The most computations that ever ran at once (for tests and status).
    pub fn peak_running(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .peak_running
    }

    /// Checks `password` against a PHC-format argon2 hash within this gate.
    pub fn verify(&self, hash: &str, password: &str, priority: Priority) -> Verified {
        let Ok(parsed) = PasswordHash::new(hash) else {
            return Verified::Mismatch;
        };
        let Some(expected) = parsed.hash else {
            return Verified::Mismatch;
        };
        let Some(argon) = hasher_for(&parsed, expected.len()) else {
            return Verified::Mismatch;
        };
        let mut salt = [0u8; 64];
        let Some(salt) = parsed.salt.and_then(|s| s.decode_b64(&mut salt).ok()) else {
            return Verified::Mismatch;
        };
        let Some(_permit) = self.acquire(priority) else {
            return Verified::Busy;
        };
        let mut out = vec![0u8; expected.len()];
        if compute(&argon, password.as_bytes(), salt, &mut out).is_err() {
            return Verified::Mismatch;
        }
        if bool::from(out.as_slice().ct_eq(expected.as_bytes())) {
            Verified::Match
        } else {
            Verified::Mismatch
        }
    }

    /// A new argon2id hash (OWASP parameters: 19 MiB, 2 passes) in PHC format.
    pub fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let mut salt = [0u8; 16];
        SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| PasswordError::Hash("no system random source".into()))?;
        let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
        let params = Params::default();
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let mut raw = [0u8; Params::DEFAULT_OUTPUT_LEN];
        let mut salt_bytes = [0u8; 64];
        let salt_bytes = salt
            .decode_b64(&mut salt_bytes)
            .map_err(|e| PasswordError::Hash(e.to_string()))?;
        // Authenticated callers only (setting or resetting a password): they may use the
        // reserved slot.
        let _permit = self.acquire(Priority::Trusted).ok_or(PasswordError::Busy)?;
        compute(&argon, password.as_bytes(), salt_bytes, &mut raw)?;
        let output = Output::new(&raw).map_err(|e| PasswordError::Hash(e.to_string()))?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params)
                .map_err(|e| PasswordError::Hash(e.to_string()))?,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        };
        Ok(phc.to_string())
    }
}

/// The argon2 instance a stored hash was made with, if it is one we are willing to compute.
fn hasher_for(parsed: &PasswordHash<'_>, out_len: usize) -> Option<Argon2<'static>> {
    let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
    let version = parsed
        .version
        .map_or(Ok(Version::V0x13), Version::try_from)
        .ok()?;
    let p = Params::try_from(parsed).ok()?;
    if p.m_cost() > MAX_MEMORY_KIB || p.t_cost() > MAX_PASSES {
        return None;
    }
    let p = Params::new(p.m_cost(), p.t_cost(), p.p_cost(), Some(out_len)).ok()?;
    Some(Argon2::new(algorithm, version, p))
}

/// Runs argon2 with its working memory in a mapping of its own (see the module comment).
fn compute(
    argon: &Argon2<'_>,
    pwd: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), PasswordError> {
    let blocks = argon.params().block_count();
    let capacity = (MMAP_CAPACITY_BYTES / std::mem::size_of::<Block>()).max(blocks);
    let mut memory: Vec<Block> = Vec::with_capacity(capacity);
    memory.resize(blocks, Block::default());
    argon
        .hash_password_into_with_memory(pwd, salt, out, &mut memory)
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// [`Gate::hash`] on the process-wide gate.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    Gate::global().hash(password)
}

/// [`Gate::verify`] on the process-wide gate.
pub fn verify_password(hash: &str, password: &str, priority: Priority) -> Verified {
    Gate::global().verify(hash, password, priority)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn hashes_verify_and_interoperate_with_the_argon2_crate() {
        let gate = Gate::new(2, WAIT);
        let h = gate.hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert_eq!(
            gate.verify(&h, "correct horse battery", Priority::Normal),
            Verified::Match
        );
        assert_eq!(
            gate.verify(&h, "wrong", Priority::Normal),
            Verified::Mismatch
        );
        // Our hashes verify with the crate's own verifier, and the crate's with ours.
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let parsed = PasswordHash::new(&h).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse battery", &parsed)
                .is_ok()
        );
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let theirs = Argon2::default()
            .hash_password(b"pw", &salt)
            .unwrap()
            .to_string();
        assert_eq!(
            gate.verify(&theirs, "pw", Priority::Normal),
            Verified::Match
        );
        assert_eq!(
            gate.verify("not a hash", "pw", Priority::Normal),
            Verified::Mismatch
        );
    }

    #[test]
    fn planted_hashes_with_huge_costs_are_not_computed() {
        let gate = Gate::new(1, WAIT);
        let h = "$argon2id$v=19$m=4194304,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$\
                 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert_eq!(gate.verify(h, "pw", Priority::Normal), Verified::Mismatch);
    }

    #[test]
    fn at_most_slots_run_and_the_reserved_slot_is_for_trusted_callers() {
        let gate = Gate::new(2, Duration::from_millis(200));
        let a = gate.acquire(Priority::Normal).unwrap();
        let b = gate.acquire(Priority::Normal).unwrap();
        // Full for strangers: they wait out the deadline and are told "busy".
        let t = Instant::now();
        assert!(gate.acquire(Priority::Normal).is_none());
        assert!(t.elapsed() >= Duration::from_millis(200));
        // The owner still gets in.
        let c = gate.acquire(Priority::Trusted).unwrap();
        assert!(gate.acquire(Priority::Trusted).is_none());
        drop((a, b, c));
        assert_eq!(gate.peak_running(), 3);
        assert!(gate.acquire(Priority::Normal).is_some());
    }

    #[test]
    fn a_storm_of_verifications_never_exceeds_the_budget() {
        let gate = Arc::new(Gate::with_queue(2, 4, Duration::from_secs(30)));
        let h = gate.hash("right").unwrap();
        let busy = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..12)
            .map(|_| {
                let (gate, h, busy) = (gate.clone(), h.clone(), busy.clone());
                std::thread::spawn(move || match gate.verify(&h, "wrong", Priority::Normal) {
                    Verified::Busy => {
                        busy.fetch_add(1, Ordering::Relaxed);
                    }
                    v => assert_eq!(v, Verified::Mismatch),
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // 2 run, 4 may wait; the rest are refused at once rather than queued without bound.
        assert!(gate.peak_running() <= 2, "{}", gate.peak_running());
        assert!(busy.load(Ordering::Relaxed) >= 1);
    }
}
