//! The uniqueness state machine against a deliberately simple sequential model, over
//! random request sequences with conflicts, re-sends, reference-only transactions, time
//! windows and non-monotonic batch times, applied the way a node applies them (several
//! batches per write through an overlay, restarts from the stored state).

mod common;

use std::collections::BTreeMap;

use common::Rng;
use notary_adapter::{
    ConflictEntry, MemoryStore, Outcome, Overlay, SpentIndex, StateKind, StateRef, TimeWindow,
    TxId, Uniqueness, ValidatedRequest,
};

/// Corda's rules read straight off a list of the requests notarised so far: no index,
/// no overlay, nothing clever.
#[derive(Default)]
struct Model {
    notarised: Vec<ValidatedRequest>,
    agreed_time_ms: u64,
}

impl Model {
    fn consumer(&self, state: &StateRef) -> Option<TxId> {
        self.notarised
            .iter()
            .find(|r| r.inputs().contains(state))
            .map(|r| *r.tx_id())
    }

    fn was_notarised(&self, tx_id: &TxId) -> bool {
        self.notarised.iter().any(|r| r.tx_id() == tx_id)
    }

    fn notarise(&mut self, request: &ValidatedRequest) -> Outcome {
        let mut conflicts = Vec::new();
        for (states, kind) in [
            (request.inputs(), StateKind::Input),
            (request.references(), StateKind::Reference),
        ] {
            for state in states {
                if let Some(consumer) = self.consumer(state) {
                    conflicts.push(ConflictEntry {
                        state: *state,
                        consuming_tx_hash: consumer.hash(),
                        kind,
                    });
                }
            }
        }
        let own_hash = request.tx_id().hash();
        let retry_of_reference_only =
            request.inputs().is_empty() && self.was_notarised(request.tx_id());
        if !conflicts.is_empty() {
            if conflicts.iter().all(|c| c.consuming_tx_hash == own_hash) || retry_of_reference_only
            {
                return Outcome::Success;
            }
            return Outcome::Conflict(conflicts);
        }
        let now = self.agreed_time_ms as i64;
        if request.time_window().contains(now) {
            self.notarised.push(request.clone());
            Outcome::Success
        } else if retry_of_reference_only {
            Outcome::Success
        } else {
            Outcome::TimeWindowInvalid {
                current_time_ms: now,
                window: *request.time_window(),
            }
        }
    }
}

const STATES: u8 = 14;
const TXS: u8 = 12;

fn random_state(rng: &mut Rng) -> StateRef {
    let n = rng.below(u64::from(STATES)) as u8;
    StateRef::new([n % 5; 32], u32::from(n))
}

fn random_window(rng: &mut Rng) -> TimeWindow {
    let kind = rng.below(4);
    let (a, b) = (rng.below(1_000) as i64, rng.below(1_000) as i64);
    match kind {
        0 => TimeWindow::default(),
        1 => TimeWindow {
            from_ms: Some(a),
            until_ms: None,
        },
        2 => TimeWindow {
            from_ms: None,
            until_ms: Some(a),
        },
        _ => TimeWindow {
            from_ms: Some(a.min(b)),
            until_ms: Some(a.max(b) + 1),
        },
    }
}

/// A transaction's content; drawn until the shape is valid.
fn random_request(rng: &mut Rng, tx_id: TxId) -> ValidatedRequest {
    loop {
        let inputs: Vec<StateRef> = if rng.chance(30) {
            Vec::new() // reference-only (or nothing but a time window)
        } else {
            (0..1 + rng.below(3)).map(|_| random_state(rng)).collect()
        };
        let references: Vec<StateRef> = (0..rng.below(3)).map(|_| random_state(rng)).collect();
        if let Ok(request) = ValidatedRequest::new(tx_id, inputs, references, random_window(rng)) {
            return request;
        }
    }
}

/// How often each rule decided, so the test shows it exercised every one.
#[derive(Default)]
struct Coverage {
    fresh: usize,
    conflict: usize,
    own_conflicts: usize,
    reference_only_retry: usize,
    time_window: usize,
}

impl Coverage {
    /// Notarises `request` in `model`, noting which rule decided.
    fn notarise(&mut self, model: &mut Model, request: &ValidatedRequest) -> Outcome {
        let any_consumed = request
            .inputs()
            .iter()
            .chain(request.references())
            .any(|s| model.consumer(s).is_some());
        let outcome = model.notarise(request);
        match &outcome {
            Outcome::Conflict(_) => self.conflict += 1,
            Outcome::TimeWindowInvalid { .. } => self.time_window += 1,
            Outcome::Success if !any_consumed => self.fresh += 1,
            Outcome::Success if request.inputs().is_empty() => self.reference_only_retry += 1,
            Outcome::Success => self.own_conflicts += 1,
        }
        outcome
    }
}

fn run(seed: u64, coverage: &mut Coverage) {
    let mut rng = Rng::new(seed);
    // Each transaction has one true content, re-sent as it is; now and then a client
    // sends other content under a known id, which the rules must handle too.
    let contents: BTreeMap<u8, ValidatedRequest> = (0..TXS)
        .map(|n| (n, random_request(&mut rng, TxId([n; 32]))))
        .collect();

    let mut model = Model::default();
    let mut store = MemoryStore::new();
    let mut machine = Uniqueness::default();
    let mut consumed_so_far: BTreeMap<StateRef, TxId> = BTreeMap::new();

    for write in 0..25 {
        // One node write: a few batches applied through an overlay, then committed.
        let mut overlay = Overlay::new(&store);
        let mut puts = Vec::new();
        for batch in 0..1 + rng.below(3) {
            let time_ms = rng.below(1_100);
            let requests: Vec<ValidatedRequest> = (0..rng.below(6))
                .map(|_| {
                    let n = rng.below(u64::from(TXS)) as u8;
                    if rng.chance(10) {
                        random_request(&mut rng, TxId([n; 32]))
                    } else {
                        contents[&n].clone()
                    }
                })
                .collect();
            model.agreed_time_ms = model.agreed_time_ms.max(time_ms);
            let expected: Vec<Outcome> = requests
                .iter()
                .map(|request| coverage.notarise(&mut model, request))
                .collect();
            let applied = machine.apply_batch(&overlay, time_ms, &requests).unwrap();
            let outcomes: Vec<Outcome> = applied.outcomes.iter().map(|(_, o)| o.clone()).collect();
            assert_eq!(
                outcomes, expected,
                "seed {seed}, write {write}, batch {batch}: {requests:?}"
            );
            assert_eq!(applied.agreed_time_ms, model.agreed_time_ms, "seed {seed}");
            overlay.record(&applied.puts);
            puts.extend(applied.puts);
        }
        drop(overlay);
        store.apply(puts);

        // The stored index is the model's, and no consumed state ever changes hands.
        for n in 0..STATES {
            let state = StateRef::new([n % 5; 32], u32::from(n));
            let stored = store.consumed(&state).unwrap();
            assert_eq!(stored, model.consumer(&state), "seed {seed}, state {state}");
            if let Some(before) = consumed_so_far.get(&state) {
                assert_eq!(stored, Some(*before), "seed {seed}: {state} consumed twice");
            }
            if let Some(tx_id) = stored {
                consumed_so_far.insert(state, tx_id);
            }
        }
        for n in 0..TXS {
            assert_eq!(
                store.committed(&TxId([n; 32])).unwrap(),
                model.was_notarised(&TxId([n; 32])),
                "seed {seed}, tx {n}"
            );
        }

        // Now and then the node restarts from what it stored.
        if rng.chance(20) {
            machine = Uniqueness::open(&store).unwrap();
            assert_eq!(machine.agreed_time().ms(), model.agreed_time_ms);
        }
    }
}

#[test]
fn uniqueness_matches_the_sequential_model_over_random_sequences() {
    let mut coverage = Coverage::default();
    for seed in 0..600 {
        run(seed, &mut coverage);
    }
    for (rule, count) in [
        ("fresh success", coverage.fresh),
        ("conflict", coverage.conflict),
        (
            "re-send whose conflicts are its own",
            coverage.own_conflicts,
        ),
        ("reference-only re-send", coverage.reference_only_retry),
        ("time window", coverage.time_window),
    ] {
        assert!(
            count >= 100,
            "only {count} requests decided by the {rule} rule"
        );
    }
}

#[test]
fn same_requests_same_answers_and_same_writes() {
    let replay = |seed: u64| {
        let mut rng = Rng::new(seed);
        let mut store = MemoryStore::new();
        let mut machine = Uniqueness::default();
        let mut log = Vec::new();
        for _ in 0..40 {
            let time_ms = rng.below(1_000);
            let requests: Vec<ValidatedRequest> = (0..rng.below(5))
                .map(|_| {
                    let n = rng.below(u64::from(TXS)) as u8;
                    random_request(&mut rng, TxId([n; 32]))
                })
                .collect();
            let applied = machine.apply_batch(&store, time_ms, &requests).unwrap();
            store.apply(applied.puts.clone());
            log.push(applied);
        }
        (log, store)
    };
    for seed in [1, 2, 3] {
        assert_eq!(replay(seed), replay(seed));
    }
}
