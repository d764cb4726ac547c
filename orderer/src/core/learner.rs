//! Learns decisions from votes, owners' skips and peers' reports, and releases decided
//! slots strictly in slot order.

use std::collections::BTreeMap;

use super::range_set::RangeSet;
use super::types::{
    Ballot, LaneNoopRange, ReplicaId, Slot, Value, first_lane_slot_at_or_after, owner_of,
};

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct SlotVotes {
    /// The value proposed at each ballot seen for this slot.
    proposals: Vec<(Ballot, Value)>,
    /// Which replicas accepted at each ballot, as a bit set.
    votes: Vec<(Ballot, u64)>,
    /// A majority accepted at this ballot; waiting for its value.
    chosen: Option<Ballot>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Learner {
    n: usize,
    majority: usize,
    /// Every slot below this one has been released for application.
    next_apply: Slot,
    /// Nothing below this is remembered.
    log_start: Slot,
    /// Decided slots (including revoked no-ops), kept until compaction so that lagging
    /// peers can fetch them.
    decided: BTreeMap<Slot, Value>,
    /// Per lane, slots its owner declared no-op (skips); only that lane's slots count.
    lane_noops: Vec<RangeSet>,
    undecided: BTreeMap<Slot, SlotVotes>,
    /// Votes and values further than this above the apply point are not kept: a
    /// replica that far behind catches up by fetching, not by remembering votes.
    max_ahead_slots: u64,
}

impl Learner {
    pub fn new(n: usize, max_ahead_slots: u64) -> Learner {
        Learner {
            max_ahead_slots,
            n,
            majority: n / 2 + 1,
            next_apply: 0,
            log_start: 0,
            decided: BTreeMap::new(),
            lane_noops: vec![RangeSet::default(); n],
            undecided: BTreeMap::new(),
        }
    }

    pub fn next_apply(&self) -> Slot {
        self.next_apply
    }

    pub fn log_start(&self) -> Slot {
        self.log_start
    }

    /// The highest slot this learner holds a decision or a vote for.
    pub fn highest_known(&self) -> Option<Slot> {
        let decided = self.decided.last_key_value().map(|(s, _)| *s);
        let undecided = self.undecided.last_key_value().map(|(s, _)| *s);
        decided.max(undecided)
    }

    pub fn decided_value(&self, slot: Slot) -> Option<Value> {
        if let Some(value) = self.decided.get(&slot) {
            return Some(value.clone());
        }
        self.lane_noops[owner_of(slot, self.n) as usize]
            .contains(slot)
            .then_some(Value::Noop)
    }

    pub fn is_decided(&self, slot: Slot) -> bool {
        self.decided.contains_key(&slot)
            || self.lane_noops[owner_of(slot, self.n) as usize].contains(slot)
    }

    /// The lowest slot of `lane` at or after `from` that is not known to be decided.
    pub fn first_undecided_in_lane(&self, lane: ReplicaId, from: Slot) -> Slot {
        let mut slot = first_lane_slot_at_or_after(lane, from, self.n);
        loop {
            if let Some(end) = self.lane_noops[lane as usize].range_end_containing(slot) {
                slot = first_lane_slot_at_or_after(lane, end, self.n);
            } else if self.decided.contains_key(&slot) {
                slot += self.n as u64;
            } else {
                return slot;
            }
        }
    }

    /// Whether anything above the apply point is known to be in flight: a stall with
    /// nothing in flight is just an idle cluster.
    pub fn has_work_above_apply_point(&self) -> bool {
        self.undecided.range(self.next_apply..).next().is_some()
            || self.decided.range(self.next_apply..).next().is_some()
    }

    /// Whether the apply point's slot has a chosen ballot whose value is missing here.
    pub fn missing_value_at_apply_point(&self) -> bool {
        self.undecided
            .get(&self.next_apply)
            .is_some_and(|votes| votes.chosen.is_some())
    }

    fn ignores(&self, slot: Slot) -> bool {
        slot < self.next_apply
            || slot < self.log_start
            || slot >= self.next_apply.saturating_add(self.max_ahead_slots)
            || self.is_decided(slot)
    }

    /// The value a ballot carries in a slot (from an Accept, or a no-op Accepted).
    pub fn note_proposal(&mut self, slot: Slot, ballot: Ballot, value: &Value) {
        if self.ignores(slot) {
            return;
        }
        let entry = self.undecided.entry(slot).or_default();
        match entry.proposals.iter().find(|(b, _)| *b == ballot) {
            Some((_, held)) => assert!(
                held.same_as(value),
                "two values for slot {slot} at ballot {ballot:?}"
            ),
            None => entry.proposals.push((ballot, value.clone())),
        }
        if entry.chosen == Some(ballot) {
            self.decide(slot, value.clone());
        }
    }

    /// `voter` accepted `ballot` in `slot`.
    pub fn note_vote(&mut self, slot: Slot, ballot: Ballot, voter: ReplicaId) {
        if self.ignores(slot) {
            return;
        }
        let majority = self.majority;
        let entry = self.undecided.entry(slot).or_default();
        let mask = match entry.votes.iter_mut().find(|(b, _)| *b == ballot) {
            Some((_, mask)) => mask,
            None => {
                entry.votes.push((ballot, 0));
                &mut entry.votes.last_mut().expect("just pushed").1
            }
        };
        *mask |= 1 << voter;
        if mask.count_ones() as usize >= majority {
            entry.chosen = Some(ballot);
            let value = entry
                .proposals
                .iter()
                .find(|(b, _)| *b == ballot)
                .map(|(_, v)| v.clone());
            if let Some(value) = value {
                self.decide(slot, value);
            }
        }
    }

    /// The owner of `lane` declared its slots in `[from, to)` no-op (or a peer reports
    /// them decided no-op).
    pub fn note_lane_noops(&mut self, lane: ReplicaId, from: Slot, to: Slot) {
        let mut from = from.max(self.next_apply).max(self.log_start);
        if let Some(end) = self.lane_noops[lane as usize].range_end_containing(from) {
            from = end;
        }
        if from >= to {
            return;
        }
        for (slot, value) in self.decided.range(from..to) {
            assert!(
                owner_of(*slot, self.n) != lane || value.is_noop(),
                "slot {slot} decided to a batch and declared no-op by its owner"
            );
        }
        let undecided_in_lane: Vec<Slot> = self
            .undecided
            .range(from..to)
            .map(|(slot, _)| *slot)
            .filter(|slot| owner_of(*slot, self.n) == lane)
            .collect();
        for slot in undecided_in_lane {
            self.undecided.remove(&slot);
        }
        self.lane_noops[lane as usize].insert(from, to);
    }

    /// A decision reported by a peer, or reached here.
    pub fn decide(&mut self, slot: Slot, value: Value) {
        if slot < self.next_apply
            || slot < self.log_start
            || slot >= self.next_apply.saturating_add(self.max_ahead_slots)
        {
            return;
        }
        if let Some(held) = self.decided_value(slot) {
            assert!(
                held.same_as(&value),
                "slot {slot} decided twice: {held:?} then {value:?}"
            );
            return;
        }
        self.undecided.remove(&slot);
        self.decided.insert(slot, value);
    }

    /// Moves every decided slot at the apply point, in order, into `out`.
    pub fn take_applicable(&mut self, out: &mut Vec<(Slot, Value)>) {
        while let Some(value) = self.decided_value(self.next_apply) {
            out.push((self.next_apply, value));
            self.undecided.remove(&self.next_apply);
            self.next_apply += 1;
        }
    }

    /// Decisions known in `[from, to)`, at most about `max_bytes` of values: the range
    /// actually covered, its values, and its lane no-op ranges.
    pub fn known_in(
        &self,
        from: Slot,
        to: Slot,
        max_bytes: usize,
    ) -> (Slot, Vec<(Slot, Value)>, Vec<LaneNoopRange>) {
        let mut covered_to = to;
        let mut values = Vec::new();
        let mut bytes = 0;
        for (slot, value) in self.decided.range(from..to) {
            bytes += value.size_bytes();
            if bytes > max_bytes && !values.is_empty() {
                covered_to = *slot;
                break;
            }
            values.push((*slot, value.clone()));
        }
        let mut lane_noops = Vec::new();
        for (lane, ranges) in self.lane_noops.iter().enumerate() {
            for (a, b) in ranges.clipped(from, covered_to) {
                lane_noops.push((lane as ReplicaId, a, b));
            }
        }
        (covered_to, values, lane_noops)
    }

    /// Forgets everything below `below` (already applied here).
    pub fn compact(&mut self, below: Slot) {
        assert!(below <= self.next_apply, "compacting unapplied slots");
        if below <= self.log_start {
            return;
        }
        self.log_start = below;
        self.decided = self.decided.split_off(&below);
        self.undecided = self.undecided.split_off(&below);
        for ranges in &mut self.lane_noops {
            ranges.remove_below(below);
        }
    }

    /// Jumps the apply point to `applied_upto` after a snapshot brought the
    /// application's state there.
    pub fn install_snapshot(&mut self, applied_upto: Slot) {
        if applied_upto <= self.next_apply {
            return;
        }
        self.next_apply = applied_upto;
        self.compact(applied_upto);
    }

    /// Sets the apply point of a restarted replica. Decisions below it were not
    /// persisted, so it is also where this learner's memory starts.
    pub fn restore(&mut self, applied_upto: Slot) {
        self.next_apply = applied_upto;
        self.log_start = applied_upto;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::Batch;
    use std::sync::Arc;

    fn batch(tag: u64) -> Value {
        Value::Batch(Arc::new(Batch {
            time_ms: tag,
            commands: vec![],
        }))
    }

    #[test]
    fn decides_on_majority_and_applies_in_order() {
        let mut learner = Learner::new(3, 1_000);
        let b0 = Ballot::owner(1);
        learner.note_proposal(1, b0, &batch(1));
        learner.note_vote(1, b0, 1);
        assert!(!learner.is_decided(1));
        learner.note_vote(1, b0, 2);
        assert!(learner.is_decided(1));
        let mut out = Vec::new();
        learner.take_applicable(&mut out);
        assert!(out.is_empty(), "slot 0 is not decided yet");
        learner.note_lane_noops(0, 0, 10);
        learner.take_applicable(&mut out);
        assert_eq!(out, vec![(0, Value::Noop), (1, batch(1))]);
        assert_eq!(learner.next_apply(), 2);
        assert_eq!(learner.first_undecided_in_lane(0, 2), 12);
        assert_eq!(learner.first_undecided_in_lane(2, 2), 2);
    }

    #[test]
    fn votes_before_value_wait_for_it() {
        let mut learner = Learner::new(3, 1_000);
        let b = Ballot {
            round: 1,
            replica: 2,
        };
        learner.note_vote(0, b, 0);
        learner.note_vote(0, b, 2);
        assert!(learner.missing_value_at_apply_point());
        learner.note_proposal(0, b, &Value::Noop);
        assert_eq!(learner.decided_value(0), Some(Value::Noop));
    }

    #[test]
    fn votes_far_ahead_of_the_apply_point_are_not_kept() {
        let mut learner = Learner::new(3, 10);
        let b0 = Ballot::owner(2);
        learner.note_proposal(11, b0, &batch(1));
        learner.note_vote(11, b0, 1);
        learner.note_vote(11, b0, 2);
        assert!(!learner.is_decided(11));
        learner.note_proposal(8, b0, &batch(2));
        learner.note_vote(8, b0, 1);
        learner.note_vote(8, b0, 2);
        assert!(learner.is_decided(8));
    }

    #[test]
    #[should_panic(expected = "decided twice")]
    fn conflicting_decisions_are_caught() {
        let mut learner = Learner::new(3, 1_000);
        learner.decide(4, batch(1));
        learner.decide(4, batch(2));
    }

    #[test]
    fn fetch_window_respects_byte_limit() {
        let mut learner = Learner::new(3, 1_000);
        for slot in 0..10 {
            learner.decide(slot, batch(slot));
        }
        let (to, values, _) = learner.known_in(0, 10, 100);
        assert!(to < 10 && !values.is_empty());
        assert_eq!(values.last().unwrap().0 + 1, to);
    }
}
