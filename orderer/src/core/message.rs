//! Replica-to-replica messages. Every message carries a header with the sender's lane
//! state (so skips travel on every message) and its applied position (for compaction).

use super::types::{AcceptedValue, Ballot, LaneNoopRange, ReplicaId, Slot, Value};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Message {
    pub from: ReplicaId,
    pub lane: LaneInfo,
    /// Every slot below this one has been applied by the sender.
    pub applied: Slot,
    pub body: Body,
}

/// The sender's own lane: its own slots in `[noop_from, frontier)` are no-ops (it
/// proposed in none of them and never will), and it never proposes below `frontier`.
/// Both facts are durable before any message carries them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct LaneInfo {
    pub noop_from: Slot,
    pub frontier: Slot,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Body {
    /// Nothing but the header: keeps the failure detector and skips fresh when idle.
    Heartbeat,
    /// Phase 2. From an owner (owner ballot) it carries exactly one own slot, and
    /// `prev_proposed`: the owner's previous proposal, so every own slot strictly between
    /// the two is a no-op. From a revoker it carries the values chosen after phase 1.
    Accept {
        ballot: Ballot,
        entries: Vec<(Slot, Value)>,
        prev_proposed: Option<Slot>,
    },
    /// Sent to every replica, so each learns decisions one hop after the proposer's
    /// message. `noop` says every listed slot was accepted as a no-op (the learner may
    /// not have seen the Accept).
    Accepted {
        ballot: Ballot,
        slots: Vec<Slot>,
        noop: bool,
    },
    /// Phase 1 over the slots of `lane` in `[from, to)`.
    Prepare {
        ballot: Ballot,
        lane: ReplicaId,
        from: Slot,
        to: Slot,
    },
    Promise {
        ballot: Ballot,
        lane: ReplicaId,
        from: Slot,
        to: Slot,
        /// Every value this acceptor accepted in the range, with its ballot.
        accepted: Vec<AcceptedValue>,
    },
    /// `ballot` was refused on `lane`: the acceptor holds `promised`, which covers the
    /// lane up to (not including) `promised_to`.
    Nack {
        ballot: Ballot,
        lane: ReplicaId,
        promised: Ballot,
        promised_to: Slot,
    },
    /// Asks for decided slots from `from` on.
    Fetch { from: Slot },
    /// Decisions known to the sender in `[from, to)`: values, and per lane the no-op
    /// ranges (slots of that lane in each range are no-ops).
    Decided {
        from: Slot,
        to: Slot,
        values: Vec<(Slot, Value)>,
        lane_noops: Vec<LaneNoopRange>,
    },
    /// The sender dropped its log below `log_start`; the receiver needs a snapshot.
    Compacted { log_start: Slot },
}

impl Body {
    /// Rough wire size, for message size limits.
    pub fn size_bytes(&self) -> usize {
        const HEADER: usize = 48;
        HEADER
            + match self {
                Body::Heartbeat | Body::Fetch { .. } | Body::Compacted { .. } => 0,
                Body::Accept { entries, .. } => {
                    entries.iter().map(|(_, v)| 8 + v.size_bytes()).sum()
                }
                Body::Accepted { slots, .. } => 8 * slots.len(),
                Body::Prepare { .. } | Body::Nack { .. } => 32,
                Body::Promise { accepted, .. } => {
                    accepted.iter().map(|(_, _, v)| 16 + v.size_bytes()).sum()
                }
                Body::Decided {
                    values, lane_noops, ..
                } => {
                    values
                        .iter()
                        .map(|(_, v)| 8 + v.size_bytes())
                        .sum::<usize>()
                        + 24 * lane_noops.len()
                }
            }
    }
}
