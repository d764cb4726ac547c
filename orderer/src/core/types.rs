//! The vocabulary of the consensus core: replicas, slots, ballots, commands and values.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

/// Index of a replica in the current configuration, `0..n`.
pub type ReplicaId = u8;

/// Position in the replicated log. Slot `s` is owned by replica `s mod n`.
pub type Slot = u64;

/// A value an acceptor holds for a slot, with the ballot it accepted it at.
pub type AcceptedValue = (Slot, Ballot, Value);

/// Slots of lane `.0` in `[.1, .2)` are no-ops.
pub type LaneNoopRange = (ReplicaId, Slot, Slot);

/// Votes are kept as bit sets, so a configuration has at most this many replicas.
pub const MAX_REPLICAS: usize = 63;

/// The replica that owns `slot` in a cluster of `n`.
pub fn owner_of(slot: Slot, n: usize) -> ReplicaId {
    (slot % n as u64) as ReplicaId
}

/// The first slot `>= from` owned by `lane`.
pub fn first_lane_slot_at_or_after(lane: ReplicaId, from: Slot, n: usize) -> Slot {
    let n = n as u64;
    let lane = lane as u64;
    let base = from - from % n;
    let candidate = base + lane;
    if candidate >= from {
        candidate
    } else {
        candidate + n
    }
}

/// A Paxos ballot. Ordered by round first, then replica, so ballots of different
/// replicas never tie. Round 0 is the owner's implicit ballot for its own slots:
/// the owner skips phase 1 there. Revokers use rounds >= 1.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ballot {
    pub round: u32,
    pub replica: ReplicaId,
}

impl Ballot {
    /// The implicit ballot an owner holds on its own slots.
    pub fn owner(replica: ReplicaId) -> Ballot {
        Ballot { round: 0, replica }
    }

    pub fn is_owner_ballot(self) -> bool {
        self.round == 0
    }
}

impl fmt::Debug for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b{}.{}", self.round, self.replica)
    }
}

/// Which application a command is for: one of the Fabric-style channels, or the notary.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tag {
    Channel(String),
    Notary,
}

/// One client command. The core never looks inside the payload.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Command {
    pub tag: Tag,
    pub payload: Bytes,
}

impl Command {
    /// Bytes this command counts against batch and queue limits.
    pub fn size_bytes(&self) -> usize {
        let tag_bytes = match &self.tag {
            Tag::Channel(name) => name.len(),
            Tag::Notary => 0,
        };
        self.payload.len() + tag_bytes + COMMAND_OVERHEAD_BYTES
    }
}

/// Accounting overhead per command (tag discriminant, lengths), so that many tiny
/// commands still fill a batch.
pub const COMMAND_OVERHEAD_BYTES: usize = 16;

/// The commands one owner put into one of its slots, with the owner's clock reading.
/// Applications derive the log's agreed time from `time_ms` (made monotonic by them).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Batch {
    pub time_ms: u64,
    pub commands: Vec<Command>,
}

impl Batch {
    pub fn size_bytes(&self) -> usize {
        self.commands.iter().map(Command::size_bytes).sum::<usize>() + 16
    }
}

/// What a slot can be decided to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    /// The slot carries nothing: its owner skipped it, or it was revoked empty.
    Noop,
    Batch(Arc<Batch>),
}

impl Value {
    pub fn is_noop(&self) -> bool {
        matches!(self, Value::Noop)
    }

    pub fn size_bytes(&self) -> usize {
        match self {
            Value::Noop => 8,
            Value::Batch(batch) => batch.size_bytes(),
        }
    }

    /// Equality that is cheap when both sides share one allocation.
    pub fn same_as(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Noop, Value::Noop) => true,
            (Value::Batch(a), Value::Batch(b)) => Arc::ptr_eq(a, b) || a == b,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_slots() {
        assert_eq!(owner_of(7, 3), 1);
        assert_eq!(first_lane_slot_at_or_after(1, 7, 3), 7);
        assert_eq!(first_lane_slot_at_or_after(2, 7, 3), 8);
        assert_eq!(first_lane_slot_at_or_after(0, 7, 3), 9);
        assert_eq!(first_lane_slot_at_or_after(0, 0, 5), 0);
        assert_eq!(first_lane_slot_at_or_after(4, 0, 5), 4);
    }

    #[test]
    fn ballots_order_by_round_then_replica() {
        assert!(
            Ballot::owner(2)
                < Ballot {
                    round: 1,
                    replica: 0
                }
        );
        assert!(
            Ballot {
                round: 1,
                replica: 0
            } < Ballot {
                round: 1,
                replica: 1
            }
        );
        assert!(Ballot::owner(1).is_owner_ballot());
    }
}
