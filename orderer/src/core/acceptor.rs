//! The Paxos acceptor of every slot, pure. Promises are kept per lane as disjoint slot
//! ranges, because a revoker prepares a whole range of a silent owner's future slots
//! with one message.
//!
//! The caller persists what this returns before it answers the peer: a promise or an
//! acceptance must survive a crash, or a revoker and an owner could both get a majority.

use std::collections::BTreeMap;

use super::record::Record;
use super::types::{AcceptedValue, Ballot, ReplicaId, Slot, Value, owner_of};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct PromiseRange {
    from: Slot,
    to: Slot,
    ballot: Ballot,
}

/// Why an acceptor did not take a prepare or accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A higher ballot holds the slot; its promise covers the lane up to `promised_to`.
    Outranked { promised: Ballot, promised_to: Slot },
    /// The slot is below this acceptor's compaction point: it is decided and applied
    /// here, and the asker must catch up by snapshot.
    Compacted { log_start: Slot },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Acceptor {
    n: usize,
    log_start: Slot,
    promises: Vec<Vec<PromiseRange>>,
    accepted: BTreeMap<Slot, (Ballot, Value)>,
}

impl Acceptor {
    pub fn new(n: usize) -> Acceptor {
        Acceptor {
            n,
            log_start: 0,
            promises: vec![Vec::new(); n],
            accepted: BTreeMap::new(),
        }
    }

    pub fn log_start(&self) -> Slot {
        self.log_start
    }

    /// A slot above every slot this acceptor promised or accepted.
    pub fn horizon(&self) -> Slot {
        let accepted = self.accepted.last_key_value().map_or(0, |(s, _)| s + 1);
        let promised = self
            .promises
            .iter()
            .filter_map(|lane| lane.last().map(|r| r.to))
            .max()
            .unwrap_or(0);
        accepted.max(promised).max(self.log_start)
    }

    fn promise_covering(&self, slot: Slot) -> Option<PromiseRange> {
        let lane = &self.promises[owner_of(slot, self.n) as usize];
        let idx = lane.partition_point(|r| r.from <= slot);
        let range = lane.get(idx.checked_sub(1)?)?;
        (slot < range.to).then_some(*range)
    }

    /// The highest ballot this acceptor has promised or accepted for `slot`.
    pub fn highest_ballot(&self, slot: Slot) -> Option<Ballot> {
        let promised = self.promise_covering(slot).map(|r| r.ballot);
        let accepted = self.accepted.get(&slot).map(|(b, _)| *b);
        promised.max(accepted)
    }

    pub fn accepted(&self, slot: Slot) -> Option<&(Ballot, Value)> {
        self.accepted.get(&slot)
    }

    fn refusal_for(&self, slot: Slot, ballot: Ballot) -> Option<Refusal> {
        if slot < self.log_start {
            return Some(Refusal::Compacted {
                log_start: self.log_start,
            });
        }
        if let Some(range) = self.promise_covering(slot) {
            if range.ballot > ballot {
                return Some(Refusal::Outranked {
                    promised: range.ballot,
                    promised_to: range.to,
                });
            }
        }
        match self.accepted.get(&slot) {
            Some((accepted_ballot, _)) if *accepted_ballot > ballot => Some(Refusal::Outranked {
                promised: *accepted_ballot,
                promised_to: slot + 1,
            }),
            _ => None,
        }
    }

    /// Phase 1 over `lane`'s slots in `[from, to)`. On success returns every value
    /// accepted in the range and the record to persist before answering.
    pub fn prepare(
        &mut self,
        ballot: Ballot,
        lane: ReplicaId,
        from: Slot,
        to: Slot,
    ) -> Result<(Vec<AcceptedValue>, Record), Refusal> {
        assert!(
            (lane as usize) < self.n && from < to,
            "malformed prepare range"
        );
        if from < self.log_start {
            return Err(Refusal::Compacted {
                log_start: self.log_start,
            });
        }
        let ranges = &self.promises[lane as usize];
        for range in ranges.iter().filter(|r| r.from < to && r.to > from) {
            if range.ballot > ballot {
                return Err(Refusal::Outranked {
                    promised: range.ballot,
                    promised_to: range.to,
                });
            }
        }
        let mut accepted = Vec::new();
        for (&slot, (accepted_ballot, value)) in self.accepted.range(from..to) {
            if owner_of(slot, self.n) != lane {
                continue;
            }
            if *accepted_ballot > ballot {
                return Err(Refusal::Outranked {
                    promised: *accepted_ballot,
                    promised_to: slot + 1,
                });
            }
            accepted.push((slot, *accepted_ballot, value.clone()));
        }
        let record = Record::Promise {
            lane,
            from,
            to,
            ballot,
        };
        self.replay(&record);
        Ok((accepted, record))
    }

    /// Phase 2 for one slot. `Ok(true)` when the acceptance is new and must be
    /// persisted before answering, `Ok(false)` when it repeats one already held.
    pub fn accept(&mut self, slot: Slot, ballot: Ballot, value: &Value) -> Result<bool, Refusal> {
        if let Some(refusal) = self.refusal_for(slot, ballot) {
            return Err(refusal);
        }
        if let Some((held_ballot, held_value)) = self.accepted.get(&slot) {
            if *held_ballot == ballot {
                // One ballot carries one value per slot; a second one is a proposer bug.
                return if held_value.same_as(value) {
                    Ok(false)
                } else {
                    Err(Refusal::Outranked {
                        promised: ballot,
                        promised_to: slot + 1,
                    })
                };
            }
        }
        self.accepted.insert(slot, (ballot, value.clone()));
        Ok(true)
    }

    /// Accepted slots at or above `from`, in slot order.
    pub fn accepted_from(&self, from: Slot) -> impl Iterator<Item = (Slot, Ballot, &Value)> {
        self.accepted.range(from..).map(|(s, (b, v))| (*s, *b, v))
    }

    /// Rebuilds state from a durable record (restart), or applies one just produced.
    pub fn replay(&mut self, record: &Record) {
        match record {
            Record::Promise {
                lane,
                from,
                to,
                ballot,
            } => {
                if *to <= self.log_start {
                    return;
                }
                let from = (*from).max(self.log_start);
                let ranges = &mut self.promises[*lane as usize];
                let mut kept = Vec::with_capacity(ranges.len() + 2);
                for range in ranges.drain(..) {
                    if range.to <= from || range.from >= *to {
                        kept.push(range);
                        continue;
                    }
                    if range.from < from {
                        kept.push(PromiseRange { to: from, ..range });
                    }
                    if range.to > *to {
                        kept.push(PromiseRange { from: *to, ..range });
                    }
                }
                kept.push(PromiseRange {
                    from,
                    to: *to,
                    ballot: *ballot,
                });
                kept.sort_by_key(|r| r.from);
                *ranges = kept;
            }
            Record::Accept {
                slot,
                ballot,
                value,
            } => {
                if *slot >= self.log_start {
                    self.accepted.insert(*slot, (*ballot, value.clone()));
                }
            }
            Record::OwnProposal { slot, value, .. } => {
                if *slot >= self.log_start {
                    let owner = Ballot::owner(owner_of(*slot, self.n));
                    self.accepted.insert(*slot, (owner, value.clone()));
                }
            }
            Record::Frontier { .. } | Record::VoteFence { .. } => {}
            Record::Compact { below } => self.compact(*below),
        }
    }

    /// Forgets every slot below `below`; asks about them are answered `Compacted`.
    pub fn compact(&mut self, below: Slot) {
        if below <= self.log_start {
            return;
        }
        self.log_start = below;
        self.accepted = self.accepted.split_off(&below);
        for ranges in &mut self.promises {
            ranges.retain(|r| r.to > below);
            for range in ranges.iter_mut() {
                range.from = range.from.max(below);
            }
        }
    }

    /// The highest round seen in any promise or acceptance (a restarted revoker must
    /// pick a higher one).
    pub fn max_round(&self) -> u32 {
        let promised = self.promises.iter().flatten().map(|r| r.ballot.round);
        let accepted = self.accepted.values().map(|(b, _)| b.round);
        promised.chain(accepted).max().unwrap_or(0)
    }

    /// Number of promise ranges and accepted slots held (for limits and tests).
    pub fn footprint(&self) -> (usize, usize) {
        (
            self.promises.iter().map(Vec::len).sum(),
            self.accepted.len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::Batch;
    use std::sync::Arc;

    fn batch(tag: u8) -> Value {
        Value::Batch(Arc::new(Batch {
            time_ms: tag as u64,
            commands: vec![],
        }))
    }

    const B1: Ballot = Ballot {
        round: 1,
        replica: 1,
    };
    const B2: Ballot = Ballot {
        round: 2,
        replica: 2,
    };

    #[test]
    fn promise_blocks_lower_ballots_and_reports_accepted_values() {
        let mut acceptor = Acceptor::new(3);
        assert_eq!(acceptor.accept(0, Ballot::owner(0), &batch(1)), Ok(true));
        assert_eq!(acceptor.accept(0, Ballot::owner(0), &batch(1)), Ok(false));
        let (accepted, _) = acceptor.prepare(B1, 0, 0, 30).unwrap();
        assert_eq!(accepted, vec![(0, Ballot::owner(0), batch(1))]);
        // The owner's own ballot is now outranked on every slot of the range.
        assert_eq!(
            acceptor.accept(3, Ballot::owner(0), &batch(2)),
            Err(Refusal::Outranked {
                promised: B1,
                promised_to: 30
            })
        );
        // Other lanes are untouched.
        assert_eq!(acceptor.accept(4, Ballot::owner(1), &batch(3)), Ok(true));
        // A lower ballot's prepare over an overlapping range is refused.
        assert!(
            acceptor
                .prepare(
                    Ballot {
                        round: 1,
                        replica: 0
                    },
                    0,
                    27,
                    60
                )
                .is_err()
        );
        // A higher one splits the older promise.
        acceptor.prepare(B2, 0, 12, 18).unwrap();
        assert_eq!(acceptor.highest_ballot(3), Some(B1));
        assert_eq!(acceptor.highest_ballot(12), Some(B2));
        assert_eq!(acceptor.highest_ballot(21), Some(B1));
        assert_eq!(acceptor.accept(21, B2, &Value::Noop), Ok(true));
        assert!(acceptor.prepare(B1, 0, 21, 22).is_err());
    }

    #[test]
    fn same_ballot_different_value_is_refused() {
        let mut acceptor = Acceptor::new(3);
        acceptor.accept(1, Ballot::owner(1), &batch(1)).unwrap();
        assert!(acceptor.accept(1, Ballot::owner(1), &batch(2)).is_err());
    }

    #[test]
    fn compaction_refuses_old_slots_and_replay_restores_state() {
        let mut acceptor = Acceptor::new(3);
        let (_, promise) = acceptor.prepare(B1, 2, 2, 20).unwrap();
        acceptor.accept(5, B1, &Value::Noop).unwrap();
        let mut restored = Acceptor::new(3);
        restored.replay(&promise);
        restored.replay(&Record::Accept {
            slot: 5,
            ballot: B1,
            value: Value::Noop,
        });
        assert_eq!(restored, acceptor);
        acceptor.compact(8);
        assert_eq!(
            acceptor.accept(5, B2, &Value::Noop),
            Err(Refusal::Compacted { log_start: 8 })
        );
        assert_eq!(acceptor.highest_ballot(11), Some(B1));
        assert_eq!(acceptor.max_round(), 1);
    }
}
