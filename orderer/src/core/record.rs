//! What the core asks the runtime to make durable. Replaying the durable records in
//! order (see `Core::restore`) rebuilds every promise, acceptance and own-lane fact
//! the replica ever announced.

use super::types::{Ballot, ReplicaId, Slot, Value};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Record {
    /// Acceptor promise: no ballot below `ballot` is accepted for `lane`'s slots in
    /// `[from, to)`.
    Promise {
        lane: ReplicaId,
        from: Slot,
        to: Slot,
        ballot: Ballot,
    },
    /// Acceptor acceptance of `value` at `ballot` in `slot`.
    Accept {
        slot: Slot,
        ballot: Ballot,
        value: Value,
    },
    /// The owner proposed `value` in its own `slot`, after its previous proposal
    /// `prev_proposed`. Implies the owner's acceptor accepted it at the owner ballot.
    /// `replaces` names the own slot that was decided no-op with this same batch in it,
    /// so a restarted owner never proposes the batch a third time.
    OwnProposal {
        slot: Slot,
        prev_proposed: Option<Slot>,
        replaces: Option<Slot>,
        value: Value,
    },
    /// The owner never proposes in its own slots below `frontier` (skip point).
    Frontier { frontier: Slot },
    /// Everything below `below` is applied; records about lower slots may be dropped.
    Compact { below: Slot },
    /// This replica lost its durable state once and must never vote (promise or
    /// accept) in slots below `below`: it may have voted there before and forgotten.
    VoteFence { below: Slot },
}

impl Record {
    /// The highest slot a record is about: storage may drop it once that slot is below
    /// the latest compaction point.
    pub fn slot_bound(&self) -> Slot {
        match self {
            Record::Promise { to, .. } => to.saturating_sub(1),
            Record::Accept { slot, .. } | Record::OwnProposal { slot, .. } => *slot,
            // A frontier below the compaction point says nothing a restarted replica
            // needs: it never proposes below its log start anyway.
            Record::Frontier { frontier } => frontier.saturating_sub(1),
            // The newest compaction point must survive (restore starts from it); an
            // older one is dropped by the next compaction.
            Record::Compact { below } => *below,
            // Needed until the compaction point passes it; from then on the acceptor
            // refuses those slots as compacted anyway.
            Record::VoteFence { below } => *below,
        }
    }
}
