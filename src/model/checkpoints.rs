//! Checkpoints of a sequence's recurrent state, the bookkeeping both backends share
//! ([`crate::cpu::KvCache`] with host copies, `gpu::GpuModel` with device buffers).
//!
//! Attention can resume from any cached position, but a recurrent state holds only the end of
//! what it has seen: a sequence that shares a prefix with what the cache saw goes on from where
//! the state stands, or from a checkpoint (a copy of the state at a position, taken e.g. before
//! a prompt's last token), or from 0. The backends supply the copies; this type keeps the
//! positions, the limit and the lookup.

use crate::Error;

/// Saved states `S` by position, oldest first, at most [`Checkpoints::MAX`].
#[derive(Debug)]
pub struct Checkpoints<S> {
    saved: Vec<(usize, S)>,
}

impl<S> Default for Checkpoints<S> {
    fn default() -> Self {
        Checkpoints { saved: Vec::new() }
    }
}

impl<S> Checkpoints<S> {
    /// Checkpoints kept; the oldest goes first.
    pub const MAX: usize = 4;

    /// The largest position ≤ `p` from which a step can go on when the state stands at
    /// `stands_at`: `p` itself there, else the latest checkpoint ≤ `p`, else 0 (start again).
    pub fn resume_point(&self, p: usize, stands_at: usize) -> usize {
        if p == stands_at {
            return p;
        }
        self.saved
            .iter()
            .map(|&(at, _)| at)
            .filter(|&at| at <= p)
            .max()
            .unwrap_or(0)
    }

    /// The state saved at `to`, or the error that names where the state stands instead.
    pub fn at(&self, to: usize, stands_at: usize) -> crate::Result<&S> {
        self.saved
            .iter()
            .find(|(at, _)| *at == to)
            .map(|(_, s)| s)
            .ok_or_else(|| {
                Error::InvalidRequest(format!(
                    "the recurrent state stands at position {stands_at} and has no checkpoint \
                     at {to}"
                ))
            })
    }

    /// Make room for a checkpoint at `at`: the one already there, or the oldest when
    /// [`Checkpoints::MAX`] are kept, leaves, and its storage comes back for reuse.
    pub fn make_room(&mut self, at: usize) -> Option<S> {
        match self.saved.iter().position(|(p, _)| *p == at) {
            Some(i) => Some(self.saved.remove(i).1),
            None if self.saved.len() >= Self::MAX => Some(self.saved.remove(0).1),
            None => None,
        }
    }

    /// Keep `state` as the checkpoint at `at` (after [`Checkpoints::make_room`]).
    pub fn push(&mut self, at: usize, state: S) {
        self.saved.push((at, state));
    }

    pub fn clear(&mut self) {
        self.saved.clear();
    }

    pub fn len(&self) -> usize {
        self.saved.len()
    }

    pub fn is_empty(&self) -> bool {
        self.saved.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_limit_and_replacement() {
        let mut c = Checkpoints::<u32>::default();
        assert_eq!(c.resume_point(7, 3), 0, "no checkpoint: start again");
        assert_eq!(c.resume_point(3, 3), 3, "where the state stands");
        for at in [2, 5, 9, 11] {
            assert!(c.make_room(at).is_none());
            c.push(at, at as u32 * 10);
        }
        assert_eq!(c.resume_point(10, 20), 9);
        assert_eq!(c.resume_point(1, 20), 0);
        assert_eq!(*c.at(5, 20).unwrap(), 50);
        assert!(c
            .at(6, 20)
            .unwrap_err()
            .to_string()
            .contains("no checkpoint at 6"));
        // A fifth position pushes out the oldest (2); the same position replaces its own.
        assert_eq!(c.make_room(13), Some(20));
        c.push(13, 130);
        assert_eq!(c.make_room(9), Some(90));
        c.push(9, 91);
        assert_eq!(c.len(), 4);
        assert_eq!(c.resume_point(4, 20), 0);
        assert_eq!(*c.at(9, 20).unwrap(), 91);
    }
}
