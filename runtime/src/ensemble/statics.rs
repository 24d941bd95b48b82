//! The static-session cache: members asked for repeatedly (a grid ensemble, a snapshot set,
//! the grid of randomised queries) materialised once into sessions of their own, within a
//! budget of bytes of weights.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::Result;
use crate::bundle::Member;
use crate::session::SessionPool;

/// A member as a hashable key (t by its bit pattern).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum MemberKey {
    T(u64),
    Index(usize),
}

impl From<Member> for MemberKey {
    fn from(m: Member) -> Self {
        match m {
            Member::T(t) => MemberKey::T(t.to_bits()),
            Member::Index(i) => MemberKey::Index(i),
        }
    }
}

/// Static sessions by member, and the bytes of weights they hold.
pub(super) struct StaticCache {
    /// Bytes of weights the cache may hold.
    budget: usize,
    /// Bytes of weights one member costs.
    member_bytes: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    pools: HashMap<MemberKey, Arc<SessionPool>>,
    bytes: usize,
}

impl StaticCache {
    pub(super) fn new(budget: usize, member_bytes: usize) -> Self {
        StaticCache {
            budget,
            member_bytes,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while the lock is held; recover from poisoning regardless.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The static session of `member`: cached, or built now by `build` when the member belongs
    /// to a fixed set (`fixed`) and the budget allows; `None` sends it to the dynamic graph.
    ///
    /// `build` runs outside the lock, so other threads keep predicting meanwhile. Two threads
    /// may build the same member at once; the first to finish is kept, and a member built
    /// while the budget ran out answers this query without being kept.
    pub(super) fn get_or_build(
        &self,
        member: Member,
        fixed: bool,
        build: impl FnOnce() -> Result<SessionPool>,
    ) -> Result<Option<Arc<SessionPool>>> {
        let key = MemberKey::from(member);
        {
            let state = self.lock();
            if let Some(p) = state.pools.get(&key) {
                return Ok(Some(Arc::clone(p)));
            }
            if !fixed || !self.fits(&state) {
                return Ok(None);
            }
        }
        let pool = Arc::new(build()?);
        let mut state = self.lock();
        if let Some(p) = state.pools.get(&key) {
            return Ok(Some(Arc::clone(p)));
        }
        if self.fits(&state) {
            state.bytes += self.member_bytes;
            state.pools.insert(key, Arc::clone(&pool));
        }
        Ok(Some(pool))
    }

    fn fits(&self, state: &State) -> bool {
        state.bytes.saturating_add(self.member_bytes) <= self.budget
    }

    /// Number of members held.
    pub(super) fn len(&self) -> usize {
        self.lock().pools.len()
    }
}
