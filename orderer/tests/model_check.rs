//! Exhaustive model check of the lanes protocol (Mencius family) with stateright.
//!
//! Three replicas, six slots (two per lane). Owners 0 and 1 each propose one batch at
//! their implicit round-0 ballot, without phase 1; an owner that sees another owner
//! propose in a later slot skips its own unproposed slots below it (owner 2 only ever
//! skips). A replica that suspects an owner revokes its lane: phase 1 over the lane's
//! slots, then phase 2 with the highest-ballot value reported in each slot, or a no-op.
//! One replica may crash and restart from what it persisted. Two configurations are
//! searched exhaustively: one revocation of any lane by any replica, and two competing
//! revocations of one lane. Each is also run with an injected bug (`Bug`) that the
//! checker must catch, so that a clean run is known not to be vacuous.
//!
//! Every promise and acceptance is decided by the production `Acceptor`, and a restart
//! rebuilds the acceptor from the records the replica persisted, so the check covers the
//! real code for the part of the protocol where a mistake loses agreement.
//!
//! Learners are not modelled one by one. A learner decides `v` in a slot when it counts
//! a majority of acceptances of one (slot, ballot) whose Accept carried `v` (the
//! proposer's own acceptance included), or when the slot's owner declared the slot
//! skipped. Whatever the learner and however late the Accepted and Skip messages reach
//! it, before or after its own restart, it can only decide what the model records
//! globally: every acceptance ever made (a ghost that survives crashes) and every skip
//! ever announced. And every learner may in some run decide any of it. Checking
//! agreement on that record therefore covers every learner, its restarts and every
//! delivery order of Accepted and Skip messages, without enumerating those orders, which
//! would multiply the space beyond what an exhaustive search can cover.
//!
//! Values travel in messages under small names (`Val`) because the network is kept as
//! an ordered set, so that sending in a different order reaches the same state, and
//! `Value` is not `Ord`. They become real `Value`s whenever the acceptor sees them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use orderer::core::types::owner_of;
use orderer::core::{Acceptor, Ballot, Batch, Record, ReplicaId, Slot, Value};
use stateright::{Checker, HasDiscoveries, Model, Property};

const N: usize = 3;
const MAJORITY: u32 = (N / 2 + 1) as u32;
const SLOTS: Slot = 6;
/// Offset of the batch clock readings, so that each owner's value is distinct.
const TIME_BASE_MS: u64 = 1_000;

fn lane_slots(lane: ReplicaId) -> impl Iterator<Item = Slot> {
    (lane as Slot..SLOTS).step_by(N)
}

/// A value as named in the model: the no-op, or the `seq`-th batch `owner` proposes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Val {
    Noop,
    Batch { owner: ReplicaId, seq: u8 },
}

impl Val {
    fn value(self) -> Value {
        match self {
            Val::Noop => Value::Noop,
            Val::Batch { owner, seq } => Value::Batch(Arc::new(Batch {
                time_ms: TIME_BASE_MS + 16 * owner as u64 + seq as u64,
                commands: vec![],
            })),
        }
    }

    fn named(value: &Value) -> Val {
        match value {
            Value::Noop => Val::Noop,
            Value::Batch(batch) => {
                let tag = batch.time_ms - TIME_BASE_MS;
                Val::Batch {
                    owner: (tag / 16) as ReplicaId,
                    seq: (tag % 16) as u8,
                }
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Msg {
    /// Phase 2: one own slot from an owner, every slot of the revoked range from a revoker.
    Accept {
        ballot: Ballot,
        entries: Vec<(Slot, Val)>,
    },
    Prepare {
        ballot: Ballot,
        lane: ReplicaId,
        from: Slot,
        to: Slot,
    },
    Promise {
        ballot: Ballot,
        accepted: Vec<(Slot, Ballot, Val)>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Envelope {
    src: ReplicaId,
    dst: ReplicaId,
    msg: Msg,
}

/// A revoker's phase 1 in progress.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Revocation {
    ballot: Ballot,
    lane: ReplicaId,
    promised: u8,
    /// Highest-ballot value reported per slot by the promises so far.
    reported: BTreeMap<Slot, (Ballot, Val)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Replica {
    acceptor: Acceptor,
    /// The acceptor that replaying this replica's durable records rebuilds: every
    /// persisted record is replayed into it as it is written, as a restart would.
    durable: Acceptor,
    /// The owner never proposes in its own slots below this one.
    frontier: Slot,
    durable_frontier: Slot,
    /// The owner's proposals; durable, as `OwnProposal` records.
    proposed: Vec<(Slot, Val)>,
    revocation: Option<Revocation>,
}

impl Replica {
    fn new() -> Replica {
        Replica {
            acceptor: Acceptor::new(N),
            durable: Acceptor::new(N),
            frontier: 0,
            durable_frontier: 0,
            proposed: Vec::new(),
            revocation: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    replicas: Vec<Arc<Replica>>,
    /// Every message ever sent: each stays deliverable, any number of times. That
    /// allows every run of a network that delivers each message at most once, late or
    /// never, and leaves fewer distinct states, since the set only grows.
    network: BTreeSet<Envelope>,
    /// Ghost: who ever accepted each (slot, ballot, value), crashes notwithstanding.
    votes: BTreeMap<(Slot, Ballot, Val), u8>,
    /// Ghost: every slot whose owner ever announced it skipped.
    skipped: BTreeSet<Slot>,
    crashes: u8,
    revocations: u8,
}

impl State {
    fn replica(&mut self, id: ReplicaId) -> &mut Replica {
        Arc::make_mut(&mut self.replicas[id as usize])
    }

    fn send(&mut self, src: ReplicaId, dst: ReplicaId, msg: Msg) {
        self.network.insert(Envelope { src, dst, msg });
    }

    fn broadcast(&mut self, src: ReplicaId, msg: Msg) {
        for dst in (0..N as ReplicaId).filter(|&dst| dst != src) {
            self.send(src, dst, msg.clone());
        }
    }

    fn vote(&mut self, slot: Slot, ballot: Ballot, val: Val, voter: ReplicaId) {
        *self.votes.entry((slot, ballot, val)).or_insert(0) |= 1 << voter;
    }

    /// Every (slot, value, ballot) some learner may decide; skips come with no ballot.
    fn decisions(&self) -> impl Iterator<Item = (Slot, Val, Option<Ballot>)> + '_ {
        let chosen = self
            .votes
            .iter()
            .filter(|(_, voters)| voters.count_ones() >= MAJORITY)
            .map(|(&(slot, ballot, val), _)| (slot, val, Some(ballot)));
        let skipped = self.skipped.iter().map(|&slot| (slot, Val::Noop, None));
        chosen.chain(skipped)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Action {
    /// An owner proposes its value in its next own slot.
    Propose(ReplicaId),
    /// `revoker` suspects the owner of `lane` and starts phase 1 on its slots.
    Suspect {
        revoker: ReplicaId,
        lane: ReplicaId,
    },
    /// The replica crashes and restarts at once. Staying down for a while adds
    /// nothing: a live replica may also take no step for a while.
    Crash(ReplicaId),
    Deliver(Envelope),
}

struct Lanes {
    proposers: Vec<ReplicaId>,
    /// Batches each proposer proposes, in its next own slots.
    proposals: u8,
    /// (revoker, lane) pairs that may start a revocation.
    revocations: Vec<(ReplicaId, ReplicaId)>,
    max_revocations: u8,
    max_crashes: u8,
    bug: Option<Bug>,
}

/// Mistakes the checker must catch, injected in the model only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bug {
    /// Acceptors do not persist promises: after a restart they take lower ballots again.
    ForgottenPromise,
    /// Owners do not persist skips: after a restart they propose in a skipped slot.
    ForgottenSkip,
    /// Revokers re-propose the lowest-ballot value reported instead of the highest.
    RevokerTakesLowestBallot,
}

impl Lanes {
    /// Owners 0 and 1 propose one batch each, owner 2 only skips; any replica may
    /// revoke any other's lane once; any replica may crash once.
    fn one_revocation() -> Lanes {
        let mut revocations = Vec::new();
        for revoker in 0..N as ReplicaId {
            for lane in (0..N as ReplicaId).filter(|&lane| lane != revoker) {
                revocations.push((revoker, lane));
            }
        }
        Lanes {
            proposers: vec![0, 1],
            proposals: 1,
            revocations,
            max_revocations: 1,
            max_crashes: 1,
            bug: None,
        }
    }

    /// Two revocations of lane 0, by replicas 1 and 2 or one of them twice: the
    /// second revoker must find, and re-propose, what the first one may have chosen.
    fn competing_revocations() -> Lanes {
        Lanes {
            revocations: vec![(1, 0), (2, 0)],
            max_revocations: 2,
            ..Lanes::one_revocation()
        }
    }

    fn persist(&self, replica: &mut Replica, record: Record) {
        if matches!(record, Record::Promise { .. }) && self.bug == Some(Bug::ForgottenPromise) {
            return;
        }
        replica.durable.replay(&record);
    }

    fn propose(&self, state: &mut State, owner: ReplicaId) -> bool {
        let replica = state.replica(owner);
        if replica.proposed.len() >= self.proposals as usize {
            return false;
        }
        let Some(slot) = lane_slots(owner).find(|&slot| slot >= replica.frontier) else {
            return false;
        };
        let ballot = Ballot::owner(owner);
        let val = Val::Batch {
            owner,
            seq: replica.proposed.len() as u8,
        };
        // Refused means the slot was revoked: the owner never proposes there.
        if replica.acceptor.accept(slot, ballot, &val.value()) != Ok(true) {
            return false;
        }
        self.persist(
            replica,
            Record::OwnProposal {
                slot,
                prev_proposed: replica.proposed.last().map(|&(slot, _)| slot),
                replaces: None,
                value: val.value(),
            },
        );
        replica.proposed.push((slot, val));
        replica.frontier = slot + 1;
        replica.durable_frontier = slot + 1;
        state.vote(slot, ballot, val, owner);
        state.broadcast(
            owner,
            Msg::Accept {
                ballot,
                entries: vec![(slot, val)],
            },
        );
        true
    }

    fn suspect(&self, state: &mut State, revoker: ReplicaId, lane: ReplicaId) -> bool {
        let replica = state.replica(revoker);
        let ballot = Ballot {
            round: replica.acceptor.max_round() + 1,
            replica: revoker,
        };
        let Ok((accepted, record)) = replica.acceptor.prepare(ballot, lane, 0, SLOTS) else {
            return false;
        };
        self.persist(replica, record);
        let mut revocation = Revocation {
            ballot,
            lane,
            promised: 0,
            reported: BTreeMap::new(),
        };
        self.add_promise(&mut revocation, revoker, &named(&accepted));
        replica.revocation = Some(revocation);
        state.revocations += 1;
        state.broadcast(
            revoker,
            Msg::Prepare {
                ballot,
                lane,
                from: 0,
                to: SLOTS,
            },
        );
        true
    }

    fn add_promise(
        &self,
        revocation: &mut Revocation,
        from: ReplicaId,
        accepted: &[(Slot, Ballot, Val)],
    ) {
        if revocation.promised & (1 << from) != 0 {
            return;
        }
        revocation.promised |= 1 << from;
        let lowest_wins = self.bug == Some(Bug::RevokerTakesLowestBallot);
        for &(slot, ballot, val) in accepted {
            let best = revocation.reported.entry(slot).or_insert((ballot, val));
            let better = if lowest_wins {
                ballot < best.0
            } else {
                ballot > best.0
            };
            if better {
                *best = (ballot, val);
            }
        }
    }

    fn crash(&self, state: &mut State, id: ReplicaId) {
        let replica = state.replica(id);
        replica.acceptor = replica.durable.clone();
        replica.frontier = replica.durable_frontier;
        replica.revocation = None;
        state.crashes += 1;
    }

    fn deliver(&self, state: &mut State, Envelope { src, dst, msg }: Envelope) {
        match msg {
            Msg::Accept { ballot, entries } => {
                for &(slot, val) in &entries {
                    self.accept(state, dst, slot, ballot, val);
                }
                if ballot.is_owner_ballot() {
                    let seen = entries.iter().map(|&(slot, _)| slot).max();
                    if let Some(seen) = seen {
                        self.skip_below(state, dst, seen);
                    }
                }
            }
            Msg::Prepare {
                ballot,
                lane,
                from,
                to,
            } => {
                let replica = state.replica(dst);
                // A refusal would be a Nack, which only makes the revoker give up sooner.
                if let Ok((accepted, record)) = replica.acceptor.prepare(ballot, lane, from, to) {
                    self.persist(replica, record);
                    let accepted = named(&accepted);
                    state.send(dst, src, Msg::Promise { ballot, accepted });
                }
            }
            Msg::Promise { ballot, accepted } => {
                let replica = state.replica(dst);
                let Some(revocation) = replica.revocation.as_mut() else {
                    return;
                };
                if revocation.ballot != ballot {
                    return;
                }
                self.add_promise(revocation, src, &accepted);
                if revocation.promised.count_ones() >= MAJORITY {
                    self.phase_two(state, dst);
                }
            }
        }
    }

    /// Phase 2 at one acceptor; what it takes is what its Accepted tells learners. A
    /// refusal would be a Nack, which only tells the proposer what it can no longer do.
    fn accept(
        &self,
        state: &mut State,
        id: ReplicaId,
        slot: Slot,
        ballot: Ballot,
        val: Val,
    ) -> bool {
        let replica = state.replica(id);
        let Ok(new) = replica.acceptor.accept(slot, ballot, &val.value()) else {
            return false;
        };
        if new {
            let value = val.value();
            self.persist(
                replica,
                Record::Accept {
                    slot,
                    ballot,
                    value,
                },
            );
        }
        state.vote(slot, ballot, val, id);
        true
    }

    /// With a majority of promises, proposes in every slot of the lane the
    /// highest-ballot value reported, or a no-op where none was.
    fn phase_two(&self, state: &mut State, revoker: ReplicaId) {
        let Some(revocation) = state.replica(revoker).revocation.take() else {
            return;
        };
        let ballot = revocation.ballot;
        let entries: Vec<(Slot, Val)> = lane_slots(revocation.lane)
            .map(|slot| {
                let val = revocation
                    .reported
                    .get(&slot)
                    .map_or(Val::Noop, |&(_, val)| val);
                (slot, val)
            })
            .collect();
        // Learners count the proposer's own acceptance from its Accept, so a revoker
        // outranked here meanwhile must send nothing: it leaves the lane to the higher
        // ballot (keeping what it already accepted, as the real revoker does).
        for &(slot, val) in &entries {
            if !self.accept(state, revoker, slot, ballot, val) {
                return;
            }
        }
        state.broadcast(revoker, Msg::Accept { ballot, entries });
    }

    /// An owner that saw another owner propose in `seen` gives up its own unproposed
    /// slots below it, so the log is not held up by an idle lane.
    fn skip_below(&self, state: &mut State, owner: ReplicaId, seen: Slot) {
        let replica = state.replica(owner);
        let noops: Vec<Slot> = lane_slots(owner)
            .filter(|&slot| slot >= replica.frontier && slot < seen)
            .collect();
        let Some(&last) = noops.last() else {
            return;
        };
        replica.frontier = last + 1;
        if self.bug != Some(Bug::ForgottenSkip) {
            replica.durable_frontier = last + 1;
        }
        state.skipped.extend(noops);
    }
}

fn named(accepted: &[(Slot, Ballot, Value)]) -> Vec<(Slot, Ballot, Val)> {
    accepted
        .iter()
        .map(|(slot, ballot, value)| (*slot, *ballot, Val::named(value)))
        .collect()
}

impl Model for Lanes {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        vec![State {
            replicas: (0..N).map(|_| Arc::new(Replica::new())).collect(),
            network: BTreeSet::new(),
            votes: BTreeMap::new(),
            skipped: BTreeSet::new(),
            crashes: 0,
            revocations: 0,
        }]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        for &owner in &self.proposers {
            actions.push(Action::Propose(owner));
        }
        if state.revocations < self.max_revocations {
            for &(revoker, lane) in &self.revocations {
                actions.push(Action::Suspect { revoker, lane });
            }
        }
        if state.crashes < self.max_crashes {
            for id in 0..N as ReplicaId {
                actions.push(Action::Crash(id));
            }
        }
        for envelope in &state.network {
            actions.push(Action::Deliver(envelope.clone()));
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut state = last.clone();
        match action {
            Action::Propose(owner) => {
                if !self.propose(&mut state, owner) {
                    return None;
                }
            }
            Action::Suspect { revoker, lane } => {
                if !self.suspect(&mut state, revoker, lane) {
                    return None;
                }
            }
            Action::Crash(id) => self.crash(&mut state, id),
            Action::Deliver(envelope) => self.deliver(&mut state, envelope),
        }
        Some(state)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("agreement", |_, state: &State| {
                let mut seen = BTreeMap::new();
                state
                    .decisions()
                    .all(|(slot, val, _)| *seen.entry(slot).or_insert(val) == val)
            }),
            Property::always("validity", |_, state: &State| {
                state.decisions().all(|(slot, val, _)| match val {
                    Val::Noop => true,
                    Val::Batch { owner, .. } => {
                        owner == owner_of(slot, N)
                            && state.replicas[owner as usize]
                                .proposed
                                .contains(&(slot, val))
                    }
                })
            }),
            Property::sometimes("a revocation decides a slot", |_, state: &State| {
                state
                    .decisions()
                    .any(|(_, _, ballot)| ballot.is_some_and(|b| !b.is_owner_ballot()))
            }),
            Property::sometimes(
                "a revocation decides a value the owner proposed",
                |_, state: &State| {
                    state.decisions().any(|(_, val, ballot)| {
                        val != Val::Noop && ballot.is_some_and(|b| !b.is_owner_ballot())
                    })
                },
            ),
            Property::sometimes("an owner's skip decides a no-op", |_, state: &State| {
                !state.skipped.is_empty()
            }),
        ]
    }
}

fn check_safe(name: &str, model: Lanes) {
    let started = Instant::now();
    let checker = model.checker().threads(2).spawn_bfs().join();
    println!(
        "{name}: {} unique states ({} generated), max depth {}, {:.1?}",
        checker.unique_state_count(),
        checker.state_count(),
        checker.max_depth(),
        started.elapsed()
    );
    assert!(checker.is_done());
    checker.assert_properties();
}

/// Runs the model with an injected bug until agreement breaks; returns the steps.
fn find_violation(name: &str, model: Lanes) -> Vec<Action> {
    let started = Instant::now();
    // One thread, so breadth-first order yields a shortest counterexample.
    let checker = model
        .checker()
        .finish_when(HasDiscoveries::AnyFailures)
        .spawn_bfs()
        .join();
    let path = checker
        .discovery("agreement")
        .unwrap_or_else(|| panic!("the checker missed the injected bug: {name}"));
    let actions = path.into_actions();
    println!(
        "{name}: agreement broken after {} steps ({} unique states explored, {:.1?}):",
        actions.len(),
        checker.unique_state_count(),
        started.elapsed(),
    );
    for action in &actions {
        println!("  {action:?}");
    }
    actions
}

#[test]
fn lanes_model_is_safe_under_crash_and_revocation() {
    check_safe("one revocation", Lanes::one_revocation());
}

#[test]
fn lanes_model_is_safe_under_competing_revocations() {
    check_safe("competing revocations", Lanes::competing_revocations());
}

#[test]
fn model_checker_finds_forgotten_promise() {
    let actions = find_violation(
        "forgotten promise",
        Lanes {
            bug: Some(Bug::ForgottenPromise),
            ..Lanes::one_revocation()
        },
    );
    // Only a restart that drops a promise lets the owner's lower ballot in again.
    assert!(actions.iter().any(|a| matches!(a, Action::Crash(_))));
    assert!(actions.iter().any(|a| matches!(a, Action::Suspect { .. })));
}

#[test]
fn model_checker_finds_forgotten_skip() {
    let actions = find_violation(
        "forgotten skip",
        Lanes {
            bug: Some(Bug::ForgottenSkip),
            ..Lanes::one_revocation()
        },
    );
    assert!(actions.iter().any(|a| matches!(a, Action::Crash(_))));
}

#[test]
fn model_checker_finds_revoker_taking_lowest_ballot() {
    let actions = find_violation(
        "revoker takes lowest ballot",
        Lanes {
            bug: Some(Bug::RevokerTakesLowestBallot),
            ..Lanes::competing_revocations()
        },
    );
    let revocations = actions
        .iter()
        .filter(|a| matches!(a, Action::Suspect { .. }))
        .count();
    assert_eq!(revocations, 2);
}
