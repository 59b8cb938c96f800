//! Which messages are being worked on, and the one reservation protocol every path uses
//! (scan, dispatch, bounce, finishing orphans, finishing jobs): a message id is reserved
//! before anything reads or changes the message, and released exactly once.

use std::collections::HashMap;

use super::jobs::Dest;

#[derive(Default)]
pub(super) struct RunState {
    /// Messages reserved: id → jobs not yet finished (1 while being checked or finalized).
    inflight: HashMap<String, usize>,
    pub dests: HashMap<String, Dest>,
}

impl RunState {
    /// Reserves `id` for one piece of work; `false` if something already holds it.
    pub fn reserve(&mut self, id: &str) -> bool {
        if self.inflight.contains_key(id) {
            return false;
        }
        self.inflight.insert(id.to_string(), 1);
        true
    }

    /// A reserved message now has `jobs` jobs queued; each ends with [`RunState::job_done`].
    pub fn set_jobs(&mut self, id: &str, jobs: usize) {
        self.inflight.insert(id.to_string(), jobs);
    }

    /// One job of `id` finished; `true` when it was the last (the caller finalizes, then
    /// releases).
    pub fn job_done(&mut self, id: &str) -> bool {
        match self.inflight.get_mut(id) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            _ => true,
        }
    }

    pub fn release(&mut self, id: &str) {
        self.inflight.remove(id);
    }

    #[cfg(test)]
    pub fn is_reserved(&self, id: &str) -> bool {
        self.inflight.contains_key(id)
    }

    pub fn reserved(&self) -> impl Iterator<Item = &String> {
        self.inflight.keys()
    }

    pub fn count(&self) -> usize {
        self.inflight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_is_exclusive_and_counts_jobs() {
        let mut st = RunState::default();
        assert!(st.reserve("a"));
        assert!(!st.reserve("a"));
        st.set_jobs("a", 2);
        assert!(!st.job_done("a"));
        assert!(st.job_done("a"));
        assert!(st.is_reserved("a"));
        st.release("a");
        assert!(!st.is_reserved("a"));
        assert!(st.reserve("a"));
    }
}
