//! The uniqueness state machine: applies ordered notarisation requests to the spent-state
//! index, deterministically, so every replica gives every request the same answer.
//!
//! For each request, in log order (Corda's uniqueness provider, JPA notary):
//!
//! 1. Look up every input and every reference. Each one some transaction already
//!    consumed is a conflict, reported with SHA-256 of the consuming transaction's id and
//!    whether the request names the state as an input or as a reference.
//! 2. With conflicts: if every conflicting state was consumed by this very transaction,
//!    the request is a re-send of one already notarised, and succeeds again. Otherwise a
//!    request without inputs (reference-only) succeeds if its transaction was committed
//!    before, and any other request gets the conflict.
//! 3. Without conflicts: if the agreed time is inside the time window, every input is
//!    recorded as consumed by the transaction, the transaction as committed, and the
//!    request succeeds. Outside the window, a request without inputs whose transaction was
//!    committed before succeeds, any other gets `TimeWindowInvalid`.
//!
//! References are read, never consumed: a reference state stays available to be an
//! input of a later transaction, and once consumed it fails every later transaction that
//! still refers to it. The time window is checked only when there is no conflict, so a
//! re-send after the window closed still succeeds. Nothing is written for a request
//! that was notarised before, so a re-sent reference-only transaction is not recorded
//! twice.

use std::collections::{BTreeMap, BTreeSet};

use crate::agreed_time::AgreedTime;
use crate::request::ValidatedRequest;
use crate::store::{Put, SpentIndex};
use crate::types::{HASH_BYTES, StateKind, StateRef, TimeWindow, TxId};

/// A state of the request that another transaction consumed already.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConflictEntry {
    pub state: StateRef,
    /// SHA-256 of the consuming transaction's id, never the id itself.
    pub consuming_tx_hash: [u8; HASH_BYTES],
    /// How the refused request names the state.
    pub kind: StateKind,
}

/// The answer to one applied request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Notarised now or before: the node signs the transaction id.
    Success,
    /// Inputs first, then references, each in ascending state order.
    Conflict(Vec<ConflictEntry>),
    TimeWindowInvalid {
        current_time_ms: i64,
        window: TimeWindow,
    },
}

/// What applying one batch's notary requests did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedBatch {
    /// The agreed time the batch was applied at.
    pub agreed_time_ms: u64,
    /// One per request, in the order given.
    pub outcomes: Vec<(TxId, Outcome)>,
    /// For the node's write batch, in the notary's table; includes the agreed time when
    /// it moved.
    pub puts: Vec<Put>,
}

impl AppliedBatch {
    /// The transaction ids that succeeded, in order: the leaves of the batch signature.
    pub fn successes(&self) -> Vec<TxId> {
        self.outcomes
            .iter()
            .filter(|(_, outcome)| *outcome == Outcome::Success)
            .map(|(tx_id, _)| *tx_id)
            .collect()
    }
}

/// The notary's replicated state machine. The spent-state index itself lives in the
/// node's store; this holds only the agreed time, which is also persisted there.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Uniqueness {
    agreed_time: AgreedTime,
}

impl Uniqueness {
    pub fn new(agreed_time: AgreedTime) -> Uniqueness {
        Uniqueness { agreed_time }
    }

    /// Continues from the agreed time persisted in `index` (zero when there is none).
    pub fn open<I: SpentIndex>(index: &I) -> Result<Uniqueness, I::Error> {
        let ms = index.agreed_time_ms()?.unwrap_or(0);
        Ok(Uniqueness::new(AgreedTime::from_ms(ms)))
    }

    pub fn agreed_time(&self) -> AgreedTime {
        self.agreed_time
    }

    /// Applies the notary requests of one ordered batch, stamped `batch_time_ms` by its
    /// proposer, in log order. Every replica must call it for the same batches (every
    /// decided batch, `requests` possibly empty), or their agreed times, and so their
    /// time-window answers, could differ. `index` must show everything applied before
    /// this batch (see [`Overlay`](crate::store::Overlay)); the returned puts bring it up
    /// to date. On a read error nothing changes, and the node must stop rather than
    /// answer.
    pub fn apply_batch<I: SpentIndex>(
        &mut self,
        index: &I,
        batch_time_ms: u64,
        requests: &[ValidatedRequest],
    ) -> Result<AppliedBatch, I::Error> {
        let agreed_time = self.agreed_time.advance(batch_time_ms);
        let mut view = BatchView::new(index);
        let mut outcomes = Vec::with_capacity(requests.len());
        for request in requests {
            outcomes.push((*request.tx_id(), view.apply(request, agreed_time)?));
        }
        let mut puts = view.puts;
        if agreed_time != self.agreed_time {
            puts.push(Put::agreed_time(agreed_time.ms()));
        }
        self.agreed_time = agreed_time;
        Ok(AppliedBatch {
            agreed_time_ms: agreed_time.ms(),
            outcomes,
            puts,
        })
    }
}

/// The index as seen by one batch: the store plus what earlier requests of the batch
/// wrote, so two requests of one batch cannot both consume a state.
struct BatchView<'a, I> {
    base: &'a I,
    consumed: BTreeMap<StateRef, TxId>,
    committed: BTreeSet<TxId>,
    puts: Vec<Put>,
}

impl<'a, I: SpentIndex> BatchView<'a, I> {
    fn new(base: &'a I) -> Self {
        BatchView {
            base,
            consumed: BTreeMap::new(),
            committed: BTreeSet::new(),
            puts: Vec::new(),
        }
    }

    fn consumed(&self, state: &StateRef) -> Result<Option<TxId>, I::Error> {
        match self.consumed.get(state) {
            Some(tx_id) => Ok(Some(*tx_id)),
            None => self.base.consumed(state),
        }
    }

    fn committed(&self, tx_id: &TxId) -> Result<bool, I::Error> {
        if self.committed.contains(tx_id) {
            return Ok(true);
        }
        self.base.committed(tx_id)
    }

    fn apply(
        &mut self,
        request: &ValidatedRequest,
        agreed_time: AgreedTime,
    ) -> Result<Outcome, I::Error> {
        let tx_id = request.tx_id();
        let reference_only = request.inputs().is_empty();

        let mut conflicts = Vec::new();
        let mut all_by_this_tx = true;
        let named = request
            .inputs()
            .iter()
            .map(|state| (state, StateKind::Input))
            .chain(
                request
                    .references()
                    .iter()
                    .map(|state| (state, StateKind::Reference)),
            );
        for (state, kind) in named {
            if let Some(consumer) = self.consumed(state)? {
                all_by_this_tx &= consumer == *tx_id;
                conflicts.push(ConflictEntry {
                    state: *state,
                    consuming_tx_hash: consumer.hash(),
                    kind,
                });
            }
        }

        if !conflicts.is_empty() {
            if all_by_this_tx || (reference_only && self.committed(tx_id)?) {
                return Ok(Outcome::Success);
            }
            return Ok(Outcome::Conflict(conflicts));
        }

        let now_ms = agreed_time.as_window_ms();
        if !request.time_window().contains(now_ms) {
            if reference_only && self.committed(tx_id)? {
                return Ok(Outcome::Success);
            }
            return Ok(Outcome::TimeWindowInvalid {
                current_time_ms: now_ms,
                window: *request.time_window(),
            });
        }

        for state in request.inputs() {
            self.consumed.insert(*state, *tx_id);
            self.puts.push(Put::consumed(state, tx_id));
        }
        if !self.committed(tx_id)? {
            self.committed.insert(*tx_id);
            self.puts.push(Put::committed(tx_id));
        }
        Ok(Outcome::Success)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn state(n: u8) -> StateRef {
        StateRef::new([n; 32], u32::from(n))
    }

    fn request(tx: u8, inputs: &[u8], references: &[u8], window: TimeWindow) -> ValidatedRequest {
        ValidatedRequest::new(
            TxId([tx; 32]),
            inputs.iter().map(|&n| state(n)).collect(),
            references.iter().map(|&n| state(n)).collect(),
            window,
        )
        .unwrap()
    }

    fn open() -> TimeWindow {
        TimeWindow::default()
    }

    /// Applies one batch to `store` and returns its outcomes.
    fn apply(
        machine: &mut Uniqueness,
        store: &mut MemoryStore,
        time_ms: u64,
        requests: &[ValidatedRequest],
    ) -> Vec<Outcome> {
        let applied = machine.apply_batch(&*store, time_ms, requests).unwrap();
        store.apply(applied.puts);
        applied.outcomes.into_iter().map(|(_, o)| o).collect()
    }

    #[test]
    fn double_spend_conflicts_and_retry_succeeds() {
        let mut machine = Uniqueness::default();
        let mut store = MemoryStore::new();
        let first = request(1, &[10, 11], &[], open());
        assert_eq!(
            apply(&mut machine, &mut store, 5, std::slice::from_ref(&first)),
            [Outcome::Success]
        );
        // Re-sent: success again, nothing new written.
        let before = store.clone();
        let applied = machine
            .apply_batch(&store, 5, std::slice::from_ref(&first))
            .unwrap();
        assert_eq!(applied.outcomes, [(TxId([1; 32]), Outcome::Success)]);
        assert!(applied.puts.is_empty());
        assert_eq!(store, before);

        let thief = request(2, &[11, 12], &[10], open());
        assert_eq!(
            apply(&mut machine, &mut store, 6, &[thief]),
            [Outcome::Conflict(vec![
                ConflictEntry {
                    state: state(11),
                    consuming_tx_hash: TxId([1; 32]).hash(),
                    kind: StateKind::Input,
                },
                ConflictEntry {
                    state: state(10),
                    consuming_tx_hash: TxId([1; 32]).hash(),
                    kind: StateKind::Reference,
                },
            ])]
        );
        // The refused transaction consumed nothing.
        assert_eq!(
            apply(
                &mut machine,
                &mut store,
                7,
                &[request(3, &[12], &[], open())]
            ),
            [Outcome::Success]
        );
    }

    #[test]
    fn two_spends_in_one_batch_only_the_first_wins() {
        let mut machine = Uniqueness::default();
        let mut store = MemoryStore::new();
        let outcomes = apply(
            &mut machine,
            &mut store,
            1,
            &[
                request(1, &[10], &[], open()),
                request(2, &[10], &[], open()),
                request(1, &[10], &[], open()),
            ],
        );
        assert_eq!(outcomes[0], Outcome::Success);
        assert!(matches!(outcomes[1], Outcome::Conflict(_)));
        assert_eq!(outcomes[2], Outcome::Success);
    }

    #[test]
    fn references_are_checked_not_consumed() {
        let mut machine = Uniqueness::default();
        let mut store = MemoryStore::new();
        let reader = request(1, &[], &[10], open());
        assert_eq!(
            apply(&mut machine, &mut store, 1, std::slice::from_ref(&reader)),
            [Outcome::Success]
        );
        // Another transaction may read it too, and one may consume it.
        assert_eq!(
            apply(
                &mut machine,
                &mut store,
                1,
                &[
                    request(2, &[20], &[10], open()),
                    request(3, &[10], &[], open())
                ]
            ),
            [Outcome::Success, Outcome::Success]
        );
        // The reference-only transaction was committed before: its re-send succeeds
        // although its reference is now consumed by another transaction.
        assert_eq!(
            apply(&mut machine, &mut store, 1, &[reader]),
            [Outcome::Success]
        );
        // A new reference-only transaction reading the consumed state conflicts.
        assert!(matches!(
            apply(
                &mut machine,
                &mut store,
                1,
                &[request(4, &[], &[10], open())]
            )[..],
            [Outcome::Conflict(_)]
        ));
        // So does a re-send of a transaction with inputs whose reference was consumed
        // since: Corda checks every conflict against the transaction's own id.
        assert!(matches!(
            apply(
                &mut machine,
                &mut store,
                1,
                &[request(2, &[20], &[10], open())]
            )[..],
            [Outcome::Conflict(_)]
        ));
    }

    #[test]
    fn time_window_is_checked_against_agreed_time_only_without_conflict() {
        let mut machine = Uniqueness::default();
        let mut store = MemoryStore::new();
        let window = TimeWindow {
            from_ms: Some(100),
            until_ms: Some(200),
        };
        let early = request(1, &[10], &[], window);
        assert_eq!(
            apply(&mut machine, &mut store, 99, std::slice::from_ref(&early)),
            [Outcome::TimeWindowInvalid {
                current_time_ms: 99,
                window
            }]
        );
        assert_eq!(
            apply(&mut machine, &mut store, 100, std::slice::from_ref(&early)),
            [Outcome::Success]
        );
        // A proposer with a slow clock does not move the agreed time back.
        let late = request(2, &[11], &[], window);
        assert_eq!(
            apply(&mut machine, &mut store, 200, std::slice::from_ref(&late)),
            [Outcome::TimeWindowInvalid {
                current_time_ms: 200,
                window
            }]
        );
        assert_eq!(
            apply(&mut machine, &mut store, 150, &[late]),
            [Outcome::TimeWindowInvalid {
                current_time_ms: 200,
                window
            }]
        );
        // Re-sending a notarised transaction after its window closed still succeeds.
        assert_eq!(
            apply(&mut machine, &mut store, 500, &[early]),
            [Outcome::Success]
        );
        // So does a reference-only one committed before.
        let reader = request(
            3,
            &[],
            &[],
            TimeWindow {
                from_ms: None,
                until_ms: Some(600),
            },
        );
        assert_eq!(
            apply(&mut machine, &mut store, 550, std::slice::from_ref(&reader)),
            [Outcome::Success]
        );
        assert_eq!(
            apply(&mut machine, &mut store, 700, &[reader]),
            [Outcome::Success]
        );
    }

    #[test]
    fn agreed_time_is_persisted_and_restored() {
        let mut machine = Uniqueness::default();
        let mut store = MemoryStore::new();
        apply(&mut machine, &mut store, 1_000, &[]);
        apply(&mut machine, &mut store, 900, &[]);
        let restored = Uniqueness::open(&store).unwrap();
        assert_eq!(restored.agreed_time().ms(), 1_000);
        assert_eq!(restored, machine);
        // An unchanged agreed time is not written again.
        let applied = machine.apply_batch(&store, 1_000, &[]).unwrap();
        assert!(applied.puts.is_empty());
    }
}
