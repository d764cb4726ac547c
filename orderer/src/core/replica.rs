//! One replica of the lanes protocol: owner of its lane, acceptor and learner of every
//! slot, and revoker of silent owners. Pure: the caller supplies the clock and carries
//! out the `Ready`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::acceptor::{Acceptor, Refusal};
use super::config::Config;
use super::learner::Learner;
use super::message::{Body, LaneInfo, Message};
use super::record::Record;
use super::types::{
    AcceptedValue, Ballot, Batch, Command, LaneNoopRange, ReplicaId, Slot, Value,
    first_lane_slot_at_or_after, owner_of,
};

/// Everything a replica asks of its runtime after some inputs.
///
/// Order matters: `persist` must be durable (one synced write) before any of
/// `messages` is sent and before any of `apply` is applied.
#[derive(Debug, Default)]
pub struct Ready {
    pub persist: Vec<Record>,
    pub messages: Vec<(ReplicaId, Message)>,
    /// Decided slots, consecutive and in order, to apply to the applications.
    pub apply: Vec<(Slot, Value)>,
    /// This replica fell behind every peer's log: fetch a snapshot of the applications'
    /// state at or after `min_slot` (from `peer`, who reported it) and call
    /// `install_snapshot`.
    pub snapshot_needed: Option<SnapshotRequest>,
    /// Commands this replica gave up on (their slot was passed by a snapshot before
    /// their outcome was known); their clients must retry.
    pub abandoned: Vec<Command>,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.persist.is_empty()
            && self.messages.is_empty()
            && self.apply.is_empty()
            && self.snapshot_needed.is_none()
            && self.abandoned.is_empty()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotRequest {
    pub peer: ReplicaId,
    pub min_slot: Slot,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProposeError {
    CommandTooLarge { bytes: usize, max_bytes: usize },
    QueueFull { commands: usize, bytes: usize },
}

/// Counters for operators and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub proposals: u64,
    pub reproposals: u64,
    pub revocations_started: u64,
    pub snapshots_installed: u64,
    /// Peer messages that broke the protocol's shape and were dropped.
    pub malformed_messages: u64,
}

#[derive(Clone, Debug)]
struct Inflight {
    value: Value,
    prev_proposed: Option<Slot>,
    last_sent_us: u64,
    /// Since when an acceptor refuses this slot at our owner ballot.
    refused_since_us: Option<u64>,
}

#[derive(Clone, Debug)]
enum RevokePhase {
    Preparing {
        promised: u64,
        /// Highest-ballot value reported accepted, per slot.
        accepted: BTreeMap<Slot, (Ballot, Value)>,
    },
    Accepting {
        slots: Vec<Slot>,
        /// The Accept messages, kept for retransmission.
        bodies: Vec<Body>,
    },
}

#[derive(Clone, Debug)]
struct Revocation {
    ballot: Ballot,
    from: Slot,
    to: Slot,
    phase: RevokePhase,
    last_sent_us: u64,
}

#[derive(Clone, Debug)]
struct PeerView {
    last_heard_us: u64,
    last_sent_us: u64,
    applied: Slot,
    frontier: Slot,
}

pub struct Core {
    cfg: Config,
    id: ReplicaId,
    acceptor: Acceptor,
    learner: Learner,
    /// Own slots below this are proposed or no-op; never propose below it.
    frontier: Slot,
    last_proposed: Option<Slot>,
    /// Own slots in `[noop_from, frontier)` are no-ops (announced to peers).
    noop_from: Slot,
    own_inflight: BTreeMap<Slot, Inflight>,
    pending: VecDeque<Command>,
    pending_bytes: usize,
    revocations: BTreeMap<ReplicaId, Revocation>,
    /// Earliest time this replica may (re)start revoking each lane, after losing a duel.
    revoke_not_before_us: Vec<u64>,
    max_round_seen: u32,
    peers: Vec<PeerView>,
    now_us: u64,
    last_periodic_us: u64,
    /// When the apply point last moved (or the replica started).
    last_progress_us: u64,
    snapshot_requested_us: Option<u64>,
    /// Never promise or accept below this slot (see `Record::VoteFence`).
    vote_fence: Slot,
    /// The applications' state is incomplete (an interrupted state transfer): hand
    /// out nothing until a snapshot is installed.
    apply_held: bool,
    fetch_turn: usize,
    ready: Ready,
    stats: Stats,
}

impl Core {
    /// A replica with empty storage.
    pub fn new(cfg: Config, id: ReplicaId, now_us: u64) -> Core {
        cfg.validate().expect("invalid core configuration");
        assert!((id as usize) < cfg.replicas, "replica id out of range");
        let n = cfg.replicas;
        Core {
            acceptor: Acceptor::new(n),
            learner: Learner::new(n, cfg.max_log_slots),
            frontier: 0,
            last_proposed: None,
            noop_from: 0,
            own_inflight: BTreeMap::new(),
            pending: VecDeque::new(),
            pending_bytes: 0,
            revocations: BTreeMap::new(),
            revoke_not_before_us: vec![0; n],
            max_round_seen: 0,
            peers: vec![
                PeerView {
                    last_heard_us: now_us,
                    last_sent_us: 0,
                    applied: 0,
                    frontier: 0,
                };
                n
            ],
            now_us,
            last_periodic_us: now_us,
            last_progress_us: now_us,
            snapshot_requested_us: None,
            vote_fence: 0,
            apply_held: false,
            fetch_turn: 0,
            ready: Ready::default(),
            stats: Stats::default(),
            cfg,
            id,
        }
    }

    /// A replica restarted from its durable records (in the order they were written)
    /// and the applications' durable apply point.
    pub fn restore(
        cfg: Config,
        id: ReplicaId,
        records: &[Record],
        applied_upto: Slot,
        now_us: u64,
    ) -> Core {
        let mut core = Core::new(cfg, id, now_us);
        let n = core.n();
        let log_start = records
            .iter()
            .filter_map(|r| match r {
                Record::Compact { below } => Some(*below),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        assert!(
            applied_upto >= log_start,
            "application at {applied_upto} is behind the log start {log_start}"
        );
        core.acceptor.compact(log_start);
        // Decided values are not persisted, so after a restart this replica can serve
        // fetches only from its apply point on; a peer further behind takes a snapshot.
        core.learner.restore(applied_upto);
        let mut own: BTreeMap<Slot, (Value, Option<Slot>)> = BTreeMap::new();
        let mut frontier = log_start.max(applied_upto);
        for record in records {
            core.acceptor.replay(record);
            match record {
                Record::OwnProposal {
                    slot,
                    prev_proposed,
                    replaces,
                    value,
                } => {
                    core.last_proposed = core.last_proposed.max(Some(*slot));
                    frontier = frontier.max(slot + 1);
                    if let Some(replaced) = replaces {
                        own.remove(replaced);
                    }
                    if *slot >= applied_upto {
                        own.insert(*slot, (value.clone(), *prev_proposed));
                    }
                }
                Record::Frontier { frontier: f } => frontier = frontier.max(*f),
                Record::VoteFence { below } => {
                    core.vote_fence = core.vote_fence.max(*below);
                    frontier = frontier.max(*below);
                }
                Record::Promise { lane, to, .. } if *lane == id => frontier = frontier.max(*to),
                Record::Accept { slot, .. } if owner_of(*slot, n) == id => {
                    frontier = frontier.max(slot + 1)
                }
                _ => {}
            }
        }
        core.frontier = frontier;
        // Below the vote fence this replica may have proposed and forgotten: it claims
        // nothing about those own slots (peers recover them as stuck slots).
        core.noop_from = match core.last_proposed {
            Some(p) => p + 1,
            None => log_start,
        }
        .max(core.vote_fence);
        core.learner.note_lane_noops(id, core.noop_from, frontier);
        let own_ballot = Ballot::owner(id);
        for (slot, (value, prev)) in own {
            core.learner
                .note_lane_noops(id, prev.map_or(0, |p| p + 1), slot);
            core.learner.note_proposal(slot, own_ballot, &value);
            core.learner.note_vote(slot, own_ballot, id);
            core.own_inflight.insert(
                slot,
                Inflight {
                    value,
                    prev_proposed: prev,
                    last_sent_us: 0,
                    refused_since_us: None,
                },
            );
        }
        // Our own past acceptances are votes too; they let a restarted cluster
        // re-learn decisions whose Accepted messages died with it.
        let accepted: Vec<AcceptedValue> = core
            .acceptor
            .accepted_from(applied_upto)
            .map(|(s, b, v)| (s, b, v.clone()))
            .collect();
        for (slot, ballot, value) in accepted {
            core.learner.note_proposal(slot, ballot, &value);
            core.learner.note_vote(slot, ballot, id);
        }
        core.max_round_seen = core.acceptor.max_round();
        core.after_input();
        core
    }

    /// A replica that lost its durable state (or starts for the first time: it cannot
    /// tell the difference) rejoining the cluster. `peer_horizons` are the
    /// `vote_horizon`s of **every** other replica, asked after this one restarted: any
    /// slot it may have voted or proposed in before lies below their maximum plus the
    /// slots its own lane could have had in flight unseen, and it never votes there.
    /// The fence is persisted with the first `Ready`. Applications start empty; the
    /// replica catches up by fetching or by state transfer.
    pub fn rejoin(cfg: Config, id: ReplicaId, peer_horizons: &[Slot], now_us: u64) -> Core {
        assert_eq!(
            peer_horizons.len() + 1,
            cfg.replicas,
            "a rejoin fence needs the horizon of every other replica"
        );
        let seen = peer_horizons.iter().copied().max().unwrap_or(0);
        let fence = if seen == 0 {
            // Nobody ever proposed, promised or accepted anything: a new cluster.
            0
        } else {
            let unseen_own = (cfg.max_inflight_proposals as u64 + 1) * cfg.replicas as u64;
            seen.saturating_add(unseen_own)
        };
        let mut core = Core::new(cfg, id, now_us);
        core.vote_fence = fence;
        core.frontier = fence;
        core.noop_from = fence;
        core.push_record(Record::VoteFence { below: fence });
        core
    }

    /// A slot bound above every slot this replica knows to be in use: proposed,
    /// promised, accepted or decided anywhere it has heard of. Published for peers
    /// that rejoin after losing their state (`Core::rejoin`).
    pub fn vote_horizon(&self) -> Slot {
        let peers = self.peers.iter().map(|p| p.frontier.max(p.applied));
        let revocations = self.revocations.values().map(|r| r.to);
        peers
            .chain(revocations)
            .chain([
                self.frontier,
                self.vote_fence,
                self.last_proposed.map_or(0, |p| p + 1),
                self.learner.next_apply(),
                self.learner.highest_known().map_or(0, |s| s + 1),
                self.acceptor.horizon(),
            ])
            .max()
            .unwrap_or(0)
    }

    /// Hand out no decided slot until `install_snapshot`: the applications' state is
    /// incomplete (a state transfer was interrupted). Asks for a snapshot now.
    pub fn hold_apply_until_snapshot(&mut self, now_us: u64) {
        self.advance_clock(now_us);
        self.apply_held = true;
        self.request_snapshot(self.learner.next_apply());
    }

    /// Slots below this are never voted in by this replica (see `Record::VoteFence`).
    pub fn vote_fence(&self) -> Slot {
        self.vote_fence
    }

    pub fn apply_held(&self) -> bool {
        self.apply_held
    }

    fn n(&self) -> usize {
        self.cfg.replicas
    }

    pub fn id(&self) -> ReplicaId {
        self.id
    }

    /// Every slot below this has been released for application.
    pub fn applied(&self) -> Slot {
        self.learner.next_apply()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Commands waiting for a slot plus own proposals not yet decided.
    pub fn backlog(&self) -> (usize, usize) {
        (self.pending.len(), self.own_inflight.len())
    }

    /// One line of internal state, for diagnosing a failing simulation seed.
    pub fn describe(&self) -> String {
        let next = self.learner.next_apply();
        let lanes: Vec<Slot> = (0..self.n() as ReplicaId)
            .map(|lane| self.learner.first_undecided_in_lane(lane, next))
            .collect();
        format!(
            "replica {} applied<{next} log_start={} frontier={} pending={} inflight={:?} \
             first_open_per_lane={lanes:?} revoking={:?} peers_heard={:?} missing_value={} work_above={}",
            self.id,
            self.learner.log_start(),
            self.frontier,
            self.pending.len(),
            self.own_inflight.keys().collect::<Vec<_>>(),
            self.revocations
                .iter()
                .map(|(l, r)| (*l, r.ballot, r.from, r.to))
                .collect::<Vec<_>>(),
            self.peers
                .iter()
                .map(|p| self.now_us.saturating_sub(p.last_heard_us) / 1000)
                .collect::<Vec<_>>(),
            self.learner.missing_value_at_apply_point(),
            self.learner.has_work_above_apply_point(),
        )
    }

    /// Replicas (this one included) heard from within `suspect_after`: below a
    /// majority nothing new can be decided.
    pub fn reachable_replicas(&self) -> usize {
        (0..self.n() as ReplicaId)
            .filter(|r| *r == self.id || !self.is_silent(*r))
            .count()
    }

    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    pub fn take_ready(&mut self) -> Ready {
        std::mem::take(&mut self.ready)
    }

    // ----- inputs -------------------------------------------------------------------

    /// A client command for the next own slot.
    pub fn propose(&mut self, now_us: u64, command: Command) -> Result<(), ProposeError> {
        self.advance_clock(now_us);
        let bytes = command.size_bytes();
        if bytes > self.cfg.max_command_bytes {
            return Err(ProposeError::CommandTooLarge {
                bytes,
                max_bytes: self.cfg.max_command_bytes,
            });
        }
        if self.pending.len() >= self.cfg.max_pending_commands
            || self.pending_bytes + bytes > self.cfg.max_pending_bytes
        {
            return Err(ProposeError::QueueFull {
                commands: self.pending.len(),
                bytes: self.pending_bytes,
            });
        }
        self.pending.push_back(command);
        self.pending_bytes += bytes;
        self.after_input();
        Ok(())
    }

    /// A message from a peer.
    pub fn step(&mut self, now_us: u64, message: Message) {
        self.advance_clock(now_us);
        let from = message.from;
        if from as usize >= self.n() || from == self.id {
            self.stats.malformed_messages += 1;
            return;
        }
        let peer = &mut self.peers[from as usize];
        peer.last_heard_us = now_us;
        peer.applied = peer.applied.max(message.applied);
        peer.frontier = peer.frontier.max(message.lane.frontier);
        self.learn_lane(from, message.lane);
        match message.body {
            Body::Heartbeat => {}
            Body::Accept {
                ballot,
                entries,
                prev_proposed,
            } => self.on_accept(from, ballot, entries, prev_proposed),
            Body::Accepted {
                ballot,
                slots,
                noop,
            } => self.on_accepted(from, ballot, &slots, noop),
            Body::Prepare {
                ballot,
                lane,
                from: first,
                to,
            } => self.on_prepare(from, ballot, lane, first, to),
            Body::Promise {
                ballot,
                lane,
                from: first,
                to,
                accepted,
            } => self.on_promise(from, ballot, lane, first, to, accepted),
            Body::Nack {
                ballot,
                lane,
                promised,
                promised_to,
            } => self.on_nack(ballot, lane, promised, promised_to),
            Body::Fetch { from: first } => self.on_fetch(from, first),
            Body::Decided {
                from: first,
                to,
                values,
                lane_noops,
            } => self.on_decided(first, to, values, lane_noops),
            Body::Compacted { log_start } => self.on_compacted(from, log_start),
        }
        self.after_input();
    }

    /// The clock moved: heartbeats, retransmissions, suspicion, fetches, compaction.
    pub fn tick(&mut self, now_us: u64) {
        self.advance_clock(now_us);
        if now_us >= self.last_periodic_us + self.cfg.tick_us {
            self.last_periodic_us = now_us;
            self.periodic();
        }
        self.check_revocations();
        self.after_input();
    }

    /// The applications' state was replaced by a snapshot covering every slot below
    /// `applied_upto`. Call it between two `Ready`s, after the previous one was
    /// carried out in full.
    pub fn install_snapshot(&mut self, now_us: u64, applied_upto: Slot) {
        self.advance_clock(now_us);
        self.snapshot_requested_us = None;
        if self.apply_held {
            // A held replica's applications were rebuilt from a snapshot at its apply
            // point or later; an older one would lose slots it already applied.
            assert!(
                applied_upto >= self.learner.next_apply(),
                "snapshot at {applied_upto} below the held apply point {}",
                self.learner.next_apply()
            );
            self.apply_held = false;
        }
        if applied_upto <= self.learner.next_apply() {
            self.after_input();
            return;
        }
        // Slots released but not yet handed out are inside the snapshot already.
        self.ready.apply.clear();
        self.stats.snapshots_installed += 1;
        // Own proposals below the snapshot point have an outcome we cannot know here.
        let kept = self.own_inflight.split_off(&applied_upto);
        for (_, inflight) in std::mem::replace(&mut self.own_inflight, kept) {
            if let Value::Batch(batch) = inflight.value {
                self.ready.abandoned.extend(batch.commands.iter().cloned());
            }
        }
        self.learner.install_snapshot(applied_upto);
        self.acceptor.compact(applied_upto);
        self.push_record(Record::Compact {
            below: applied_upto,
        });
        self.skip_to(applied_upto);
        self.revocations.retain(|_, r| r.to > applied_upto);
        self.last_progress_us = now_us;
        self.after_input();
    }

    /// When the caller should call `tick` next, at the latest.
    pub fn next_deadline_us(&self) -> u64 {
        let mut deadline = self.last_periodic_us + self.cfg.tick_us;
        for lane in 0..self.n() as ReplicaId {
            if lane == self.id || self.revocations.contains_key(&lane) {
                continue;
            }
            let due = self.suspicion_due_us(lane);
            if due > self.now_us {
                deadline = deadline.min(due);
            }
        }
        deadline.max(self.now_us + 1)
    }

    fn advance_clock(&mut self, now_us: u64) {
        // The caller's clock may stall but never runs backwards for us.
        self.now_us = self.now_us.max(now_us);
    }

    // ----- output helpers -----------------------------------------------------------

    fn lane_info(&self) -> LaneInfo {
        LaneInfo {
            noop_from: self.noop_from,
            frontier: self.frontier,
        }
    }

    fn send(&mut self, to: ReplicaId, body: Body) {
        debug_assert_ne!(to, self.id);
        let message = Message {
            from: self.id,
            lane: self.lane_info(),
            applied: self.learner.next_apply(),
            body,
        };
        self.peers[to as usize].last_sent_us = self.now_us;
        self.ready.messages.push((to, message));
    }

    fn broadcast(&mut self, body: Body) {
        for peer in 0..self.n() as ReplicaId {
            if peer != self.id {
                self.send(peer, body.clone());
            }
        }
    }

    fn push_record(&mut self, record: Record) {
        // Only the newest frontier matters; keep one per write.
        if let (Record::Frontier { .. }, Some(Record::Frontier { .. })) =
            (&record, self.ready.persist.last())
        {
            self.ready.persist.pop();
        }
        self.ready.persist.push(record);
    }

    // ----- own lane -----------------------------------------------------------------

    /// Declares every own slot below `slot` that is not proposed a no-op.
    fn skip_to(&mut self, slot: Slot) {
        if slot <= self.frontier {
            return;
        }
        self.learner.note_lane_noops(self.id, self.frontier, slot);
        self.frontier = slot;
        self.push_record(Record::Frontier { frontier: slot });
    }

    fn learn_lane(&mut self, from: ReplicaId, lane: LaneInfo) {
        if lane.noop_from < lane.frontier {
            self.learner
                .note_lane_noops(from, lane.noop_from, lane.frontier);
        }
    }

    fn try_propose(&mut self) {
        while !self.pending.is_empty() && self.own_inflight.len() < self.cfg.max_inflight_proposals
        {
            let mut commands = Vec::new();
            let mut bytes = 0;
            while let Some(command) = self.pending.front() {
                let size = command.size_bytes();
                if !commands.is_empty()
                    && (commands.len() >= self.cfg.max_batch_commands
                        || bytes + size > self.cfg.max_batch_bytes)
                {
                    break;
                }
                bytes += size;
                commands.push(self.pending.pop_front().expect("front exists"));
            }
            self.pending_bytes -= bytes;
            let batch = Batch {
                time_ms: self.now_us / 1000,
                commands,
            };
            self.propose_value(Value::Batch(Arc::new(batch)), None);
        }
    }

    fn propose_value(&mut self, value: Value, replaces: Option<Slot>) {
        // Own slots below the apply point are decided (no-op, since we never proposed
        // there) and may be compacted: never propose below it.
        self.skip_to(self.learner.next_apply());
        let slot = first_lane_slot_at_or_after(self.id, self.frontier, self.n());
        let ballot = Ballot::owner(self.id);
        let taken = self.acceptor.accept(slot, ballot, &value);
        assert_eq!(
            taken,
            Ok(true),
            "own slot {slot} at or above the frontier must be free"
        );
        // Peers read `prev_proposed` as "my own slots in between are no-ops". Behind a
        // vote fence this replica knows nothing of its slots below the fence, so it
        // points at its last slot below the fence rather than claiming them all.
        let prev_proposed = self.last_proposed.or_else(|| {
            let fence_own = first_lane_slot_at_or_after(self.id, self.vote_fence, self.n());
            fence_own.checked_sub(self.n() as u64)
        });
        self.push_record(Record::OwnProposal {
            slot,
            prev_proposed,
            replaces,
            value: value.clone(),
        });
        self.learner.note_proposal(slot, ballot, &value);
        self.learner.note_vote(slot, ballot, self.id);
        self.frontier = slot + 1;
        self.last_proposed = Some(slot);
        self.noop_from = slot + 1;
        self.own_inflight.insert(
            slot,
            Inflight {
                value: value.clone(),
                prev_proposed,
                last_sent_us: self.now_us,
                refused_since_us: None,
            },
        );
        self.stats.proposals += 1;
        self.broadcast(Body::Accept {
            ballot,
            entries: vec![(slot, value)],
            prev_proposed,
        });
    }

    /// Settles own proposals whose slot is decided: done if our batch won, proposed
    /// again in a fresh own slot if the slot was revoked empty.
    fn settle_own_proposals(&mut self) {
        let decided: Vec<(Slot, Value)> = self
            .own_inflight
            .keys()
            .filter_map(|slot| self.learner.decided_value(*slot).map(|v| (*slot, v)))
            .collect();
        for (slot, value) in decided {
            let inflight = self.own_inflight.remove(&slot).expect("listed above");
            if value.same_as(&inflight.value) {
                continue;
            }
            assert!(
                value.is_noop(),
                "own slot {slot} decided to a value this owner never proposed"
            );
            // The re-proposal is in this write, so it is durable before the no-op
            // is applied: a crash cannot lose the batch.
            self.stats.reproposals += 1;
            self.propose_value(inflight.value, Some(slot));
        }
    }

    // ----- message handlers ---------------------------------------------------------

    fn on_accept(
        &mut self,
        from: ReplicaId,
        ballot: Ballot,
        entries: Vec<(Slot, Value)>,
        prev_proposed: Option<Slot>,
    ) {
        let n = self.n();
        let well_formed = ballot.replica == from
            && !entries.is_empty()
            && entries.len() as u64 <= self.cfg.max_revoke_slots
            && if ballot.is_owner_ballot() {
                entries.len() == 1
                    && owner_of(entries[0].0, n) == from
                    && prev_proposed.is_none_or(|p| p < entries[0].0 && owner_of(p, n) == from)
            } else {
                prev_proposed.is_none()
            };
        if !well_formed {
            self.stats.malformed_messages += 1;
            return;
        }
        self.max_round_seen = self.max_round_seen.max(ballot.round);
        let mut highest_slot = 0;
        for (slot, value) in &entries {
            self.learner.note_proposal(*slot, ballot, value);
            self.learner.note_vote(*slot, ballot, from);
            highest_slot = highest_slot.max(*slot);
        }
        if ballot.is_owner_ballot() {
            let slot = entries[0].0;
            self.learner
                .note_lane_noops(from, prev_proposed.map_or(0, |p| p + 1), slot);
            // Mencius skip: an owner ahead of us means our unproposed slots below it
            // will never carry anything.
            self.skip_to(slot);
        } else if entries
            .iter()
            .any(|(slot, _)| owner_of(*slot, n) == self.id)
        {
            // Someone runs Paxos on our own slots: never propose there again.
            self.skip_to(highest_slot + 1);
        }
        let mut accepted = Vec::new();
        let mut all_noop = true;
        let mut refusal = None;
        for (slot, value) in entries {
            if slot < self.vote_fence {
                continue;
            }
            match self.acceptor.accept(slot, ballot, &value) {
                Ok(new) => {
                    all_noop &= value.is_noop();
                    self.learner.note_vote(slot, ballot, self.id);
                    if new {
                        self.push_record(Record::Accept {
                            slot,
                            ballot,
                            value,
                        });
                    }
                    accepted.push(slot);
                }
                Err(r) => refusal = refusal.or(Some((slot, r))),
            }
        }
        if !accepted.is_empty() {
            self.broadcast(Body::Accepted {
                ballot,
                slots: accepted,
                noop: all_noop,
            });
        }
        if let Some((slot, r)) = refusal {
            self.answer_refusal(from, ballot, owner_of(slot, n), r);
        }
    }

    fn answer_refusal(&mut self, to: ReplicaId, ballot: Ballot, lane: ReplicaId, refusal: Refusal) {
        let body = match refusal {
            Refusal::Outranked {
                promised,
                promised_to,
            } => Body::Nack {
                ballot,
                lane,
                promised,
                promised_to,
            },
            Refusal::Compacted { log_start } => Body::Compacted { log_start },
        };
        self.send(to, body);
    }

    fn on_accepted(&mut self, from: ReplicaId, ballot: Ballot, slots: &[Slot], noop: bool) {
        if slots.len() as u64 > self.cfg.max_revoke_slots {
            self.stats.malformed_messages += 1;
            return;
        }
        for slot in slots {
            if noop {
                self.learner.note_proposal(*slot, ballot, &Value::Noop);
            }
            self.learner.note_vote(*slot, ballot, from);
        }
    }

    fn on_prepare(
        &mut self,
        from: ReplicaId,
        ballot: Ballot,
        lane: ReplicaId,
        first: Slot,
        to: Slot,
    ) {
        let well_formed = ballot.replica == from
            && !ballot.is_owner_ballot()
            && (lane as usize) < self.n()
            && first < to
            && to - first <= self.cfg.max_revoke_slots;
        if !well_formed {
            self.stats.malformed_messages += 1;
            return;
        }
        self.max_round_seen = self.max_round_seen.max(ballot.round);
        if first < self.vote_fence {
            // It may have promised there before losing its state: stay silent, like a
            // crashed acceptor.
            return;
        }
        match self.acceptor.prepare(ballot, lane, first, to) {
            Ok((accepted, record)) => {
                self.push_record(record);
                if lane == self.id {
                    self.skip_to(to);
                }
                self.send(
                    from,
                    Body::Promise {
                        ballot,
                        lane,
                        from: first,
                        to,
                        accepted,
                    },
                );
            }
            Err(refusal) => self.answer_refusal(from, ballot, lane, refusal),
        }
    }

    fn on_promise(
        &mut self,
        from: ReplicaId,
        ballot: Ballot,
        lane: ReplicaId,
        first: Slot,
        to: Slot,
        accepted: Vec<AcceptedValue>,
    ) {
        let Some(revocation) = self.revocations.get_mut(&lane) else {
            return;
        };
        if revocation.ballot != ballot || revocation.from != first || revocation.to != to {
            return;
        }
        let RevokePhase::Preparing {
            promised,
            accepted: adopted,
        } = &mut revocation.phase
        else {
            return;
        };
        *promised |= 1 << from;
        for (slot, accepted_ballot, value) in accepted {
            if slot < first || slot >= to || owner_of(slot, self.cfg.replicas) != lane {
                self.stats.malformed_messages += 1;
                continue;
            }
            let better = adopted.get(&slot).is_none_or(|(b, _)| *b < accepted_ballot);
            if better {
                adopted.insert(slot, (accepted_ballot, value));
            }
        }
        if promised.count_ones() as usize >= self.cfg.majority() {
            self.start_revocation_phase2(lane);
        }
    }

    fn on_nack(&mut self, ballot: Ballot, lane: ReplicaId, promised: Ballot, promised_to: Slot) {
        if (lane as usize) >= self.n() {
            self.stats.malformed_messages += 1;
            return;
        }
        self.max_round_seen = self.max_round_seen.max(promised.round);
        if ballot == Ballot::owner(self.id) && lane == self.id {
            // Our lane was revoked up to `promised_to`: move past it. The batches in the
            // refused slots wait for those slots' decisions (see settle_own_proposals).
            self.skip_to(promised_to);
            let now = self.now_us;
            for inflight in self.own_inflight.range_mut(..promised_to).map(|(_, f)| f) {
                inflight.refused_since_us.get_or_insert(now);
            }
        }
        if self
            .revocations
            .get(&lane)
            .is_some_and(|r| r.ballot == ballot && promised > ballot)
        {
            // Lost a duel: back off before trying again with a higher round.
            self.revocations.remove(&lane);
            self.revoke_not_before_us[lane as usize] =
                self.now_us + self.cfg.revoke_backoff_us + self.jitter_us(lane);
        }
    }

    fn on_fetch(&mut self, from: ReplicaId, first: Slot) {
        if first < self.learner.log_start() {
            let log_start = self.learner.log_start();
            self.send(from, Body::Compacted { log_start });
            return;
        }
        let to = first.saturating_add(self.cfg.fetch_window_slots);
        let budget = self.cfg.max_batch_bytes * 2;
        let (to, values, lane_noops) = self.learner.known_in(first, to, budget);
        if values.is_empty() && lane_noops.is_empty() {
            return;
        }
        self.send(
            from,
            Body::Decided {
                from: first,
                to,
                values,
                lane_noops,
            },
        );
    }

    fn on_decided(
        &mut self,
        first: Slot,
        to: Slot,
        values: Vec<(Slot, Value)>,
        lane_noops: Vec<LaneNoopRange>,
    ) {
        let n = self.n();
        let in_range = |slot: Slot| slot >= first && slot < to;
        if values.iter().any(|(slot, _)| !in_range(*slot))
            || lane_noops
                .iter()
                .any(|(lane, a, b)| *lane as usize >= n || a > b || *a < first || *b > to)
        {
            self.stats.malformed_messages += 1;
            return;
        }
        for (slot, value) in values {
            self.learner.decide(slot, value);
        }
        for (lane, a, b) in lane_noops {
            self.learner.note_lane_noops(lane, a, b);
        }
    }

    fn on_compacted(&mut self, from: ReplicaId, log_start: Slot) {
        if log_start <= self.learner.next_apply() {
            return;
        }
        let waiting = self
            .snapshot_requested_us
            .is_some_and(|t| self.now_us < t + self.cfg.stuck_after_us);
        if !waiting {
            self.snapshot_requested_us = Some(self.now_us);
            self.ready.snapshot_needed = Some(SnapshotRequest {
                peer: from,
                min_slot: log_start,
            });
        }
    }

    /// Asks for a snapshot at or after `min_slot` from the next peer in turn.
    fn request_snapshot(&mut self, min_slot: Slot) {
        self.fetch_turn = (self.fetch_turn + 1) % self.n();
        let mut peer = self.fetch_turn as ReplicaId;
        if peer == self.id {
            peer = (peer + 1) % self.n() as ReplicaId;
        }
        self.snapshot_requested_us = Some(self.now_us);
        self.ready.snapshot_needed = Some(SnapshotRequest { peer, min_slot });
    }

    // ----- revocation ---------------------------------------------------------------

    fn is_silent(&self, replica: ReplicaId) -> bool {
        replica != self.id
            && self.now_us >= self.peers[replica as usize].last_heard_us + self.cfg.suspect_after_us
    }

    /// Our place in the order in which replicas take over `lane`: its owner first if
    /// `owner_first` (recovering a stuck slot of a live owner), then the live replicas
    /// after it in ring order.
    fn revoker_rank(&self, lane: ReplicaId, owner_first: bool) -> u64 {
        let n = self.n() as ReplicaId;
        let mut rank = 0;
        for step in 0..n {
            let candidate = (lane + step) % n;
            if candidate == self.id {
                return rank;
            }
            let counts = if step == 0 {
                owner_first
            } else {
                !self.is_silent(candidate)
            };
            if counts {
                rank += 1;
            }
        }
        rank
    }

    fn jitter_us(&self, lane: ReplicaId) -> u64 {
        // Deterministic spread so that duelling revokers retry at different times.
        let seed = (self.now_us ^ ((self.id as u64) << 32) ^ lane as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (seed >> 33) % self.cfg.revoke_backoff_us.max(1)
    }

    fn suspicion_due_us(&self, lane: ReplicaId) -> u64 {
        let base = self.peers[lane as usize].last_heard_us + self.cfg.suspect_after_us;
        // Computed ahead of the silence too (for the timer): the owner has no place.
        let ranked = base + self.revoker_rank(lane, false) * self.cfg.revoke_backoff_us;
        ranked.max(self.revoke_not_before_us[lane as usize])
    }

    /// Whether anything waits above the apply point: what the learner holds, or a live
    /// owner more than a round of slots ahead (the learner keeps nothing beyond its
    /// window, and a rejoined replica's fence can put every frontier beyond it).
    fn has_work_above(&self) -> bool {
        self.learner.has_work_above_apply_point()
            || self.horizon() >= self.learner.next_apply() + self.n() as Slot
    }

    /// The highest slot live replicas have reached: their owners' frontiers.
    fn horizon(&self) -> Slot {
        (0..self.n() as ReplicaId)
            .filter(|r| *r != self.id && !self.is_silent(*r))
            .map(|r| self.peers[r as usize].frontier)
            .fold(self.frontier, Slot::max)
    }

    fn check_revocations(&mut self) {
        let next_apply = self.learner.next_apply();
        let stuck =
            self.has_work_above() && self.now_us >= self.last_progress_us + self.cfg.stuck_after_us;
        for lane in 0..self.n() as ReplicaId {
            if self.revocations.contains_key(&lane)
                || self.now_us < self.revoke_not_before_us[lane as usize]
            {
                continue;
            }
            let first_open = self.learner.first_undecided_in_lane(lane, next_apply);
            if self.is_silent(lane) {
                // Revoke the silent owner's slots from the first open one to well past
                // where the live replicas are, and again before they get there.
                let horizon = self.horizon();
                if first_open < horizon + self.cfg.revoke_lookahead_slots / 2
                    && self.now_us >= self.suspicion_due_us(lane)
                {
                    let to = (first_open.max(horizon) + self.cfg.revoke_lookahead_slots)
                        .min(first_open + self.cfg.max_revoke_slots);
                    self.start_revocation(lane, first_open, to);
                }
            }
            if lane == self.id {
                // Our proposals refused under a higher ballot whose revoker went quiet:
                // settle them ourselves rather than wait for the stuck timer.
                let retransmit_us = self.cfg.retransmit_us;
                let now = self.now_us;
                let refused: Vec<Slot> = self
                    .own_inflight
                    .iter()
                    .filter(|(_, f)| f.refused_since_us.is_some_and(|t| now >= t + retransmit_us))
                    .map(|(slot, _)| *slot)
                    .collect();
                if let (Some(first), Some(last)) = (refused.first(), refused.last()) {
                    let to = (last + 1).min(first + self.cfg.max_revoke_slots);
                    self.start_revocation(lane, *first, to);
                    continue;
                }
            }
            if !self.is_silent(lane)
                && stuck
                && owner_of(next_apply, self.n()) == lane
                && first_open == next_apply
            {
                let due = self.last_progress_us
                    + self.cfg.stuck_after_us
                    + self.revoker_rank(lane, true) * self.cfg.revoke_backoff_us;
                if self.now_us >= due {
                    // Every open slot of the lane below the horizon is likely stuck too.
                    let to = self
                        .horizon()
                        .min(next_apply + self.cfg.max_revoke_slots)
                        .max(next_apply + 1);
                    self.start_revocation(lane, next_apply, to);
                }
            }
        }
    }

    fn start_revocation(&mut self, lane: ReplicaId, first: Slot, to: Slot) {
        let round = self.max_round_seen.max(self.acceptor.max_round()) + 1;
        let ballot = Ballot {
            round,
            replica: self.id,
        };
        // Behind its vote fence a replica's own promise could contradict one it gave
        // and forgot: it revokes with promises from a majority of its peers alone.
        let fenced = first < self.vote_fence;
        let accepted = if fenced {
            Vec::new()
        } else {
            match self.acceptor.prepare(ballot, lane, first, to) {
                Ok((accepted, record)) => {
                    self.push_record(record);
                    accepted
                }
                Err(_) => return,
            }
        };
        self.max_round_seen = round;
        if lane == self.id {
            self.skip_to(to);
        }
        self.stats.revocations_started += 1;
        let adopted = accepted
            .into_iter()
            .map(|(slot, b, v)| (slot, (b, v)))
            .collect();
        self.revocations.insert(
            lane,
            Revocation {
                ballot,
                from: first,
                to,
                phase: RevokePhase::Preparing {
                    promised: if fenced { 0 } else { 1 << self.id },
                    accepted: adopted,
                },
                last_sent_us: self.now_us,
            },
        );
        self.broadcast(Body::Prepare {
            ballot,
            lane,
            from: first,
            to,
        });
        if self.cfg.majority() == 1 {
            self.start_revocation_phase2(lane);
        }
    }

    fn start_revocation_phase2(&mut self, lane: ReplicaId) {
        let revocation = self
            .revocations
            .get(&lane)
            .expect("revocation in progress")
            .clone();
        let RevokePhase::Preparing { accepted, .. } = revocation.phase else {
            return;
        };
        let ballot = revocation.ballot;
        let n = self.n() as u64;
        let mut noop_slots = Vec::new();
        let mut bodies = Vec::new();
        let mut slots = Vec::new();
        let mut slot = first_lane_slot_at_or_after(lane, revocation.from, self.n());
        while slot < revocation.to {
            // Paxos: the highest-ballot value any promiser accepted, else nothing can
            // have been chosen and the slot becomes a no-op.
            let value = accepted.get(&slot).map_or(Value::Noop, |(_, v)| v.clone());
            self.learner.note_proposal(slot, ballot, &value);
            // Behind its vote fence the revoker only proposes; peers vote.
            if slot >= self.vote_fence {
                match self.acceptor.accept(slot, ballot, &value) {
                    Ok(new) => {
                        if new {
                            self.push_record(Record::Accept {
                                slot,
                                ballot,
                                value: value.clone(),
                            });
                        }
                    }
                    Err(_) => {
                        // A higher ballot got here first; let it finish.
                        self.revocations.remove(&lane);
                        return;
                    }
                }
                self.learner.note_vote(slot, ballot, self.id);
            }
            slots.push(slot);
            if value.is_noop() {
                noop_slots.push((slot, value));
            } else {
                bodies.push(Body::Accept {
                    ballot,
                    entries: vec![(slot, value)],
                    prev_proposed: None,
                });
            }
            slot += n;
        }
        if !noop_slots.is_empty() {
            bodies.push(Body::Accept {
                ballot,
                entries: noop_slots,
                prev_proposed: None,
            });
        }
        for body in &bodies {
            self.broadcast(body.clone());
        }
        let revocation = self.revocations.get_mut(&lane).expect("still in progress");
        revocation.phase = RevokePhase::Accepting { slots, bodies };
        revocation.last_sent_us = self.now_us;
    }

    fn retire_finished_revocations(&mut self) {
        let learner = &self.learner;
        self.revocations.retain(|_, r| match &r.phase {
            RevokePhase::Preparing { .. } => true,
            RevokePhase::Accepting { slots, .. } => slots
                .iter()
                .any(|s| !learner.is_decided(*s) && *s >= learner.next_apply()),
        });
    }

    // ----- housekeeping -------------------------------------------------------------

    fn periodic(&mut self) {
        let now = self.now_us;
        // Retransmit own proposals nobody confirmed yet.
        let due: Vec<(Slot, Value, Option<Slot>)> = self
            .own_inflight
            .iter()
            .filter(|(_, f)| now >= f.last_sent_us + self.cfg.retransmit_us)
            .map(|(slot, f)| (*slot, f.value.clone(), f.prev_proposed))
            .collect();
        for (slot, value, prev_proposed) in due {
            self.own_inflight
                .get_mut(&slot)
                .expect("listed")
                .last_sent_us = now;
            self.broadcast(Body::Accept {
                ballot: Ballot::owner(self.id),
                entries: vec![(slot, value)],
                prev_proposed,
            });
        }
        // Retransmit revocation steps.
        let lanes: Vec<ReplicaId> = self
            .revocations
            .iter()
            .filter(|(_, r)| now >= r.last_sent_us + self.cfg.retransmit_us)
            .map(|(lane, _)| *lane)
            .collect();
        for lane in lanes {
            let revocation = self.revocations.get_mut(&lane).expect("listed");
            revocation.last_sent_us = now;
            let bodies = match &revocation.phase {
                RevokePhase::Preparing { .. } => vec![Body::Prepare {
                    ballot: revocation.ballot,
                    lane,
                    from: revocation.from,
                    to: revocation.to,
                }],
                RevokePhase::Accepting { bodies, .. } => bodies.clone(),
            };
            for body in bodies {
                self.broadcast(body);
            }
        }
        self.maybe_fetch();
        // Heartbeats keep the failure detector and lane frontiers fresh when idle.
        for peer in 0..self.n() as ReplicaId {
            if peer != self.id && now >= self.peers[peer as usize].last_sent_us + self.cfg.tick_us {
                self.send(peer, Body::Heartbeat);
            }
        }
        self.maybe_compact();
    }

    fn maybe_fetch(&mut self) {
        let next_apply = self.learner.next_apply();
        let behind = (0..self.n())
            .filter(|p| *p != self.id as usize)
            .any(|p| self.peers[p].applied > next_apply);
        let waiting = self.learner.missing_value_at_apply_point()
            || (self.learner.has_work_above_apply_point()
                && self.now_us >= self.last_progress_us + self.cfg.retransmit_us);
        if !behind && !waiting {
            return;
        }
        // Ask the most advanced live peer; rotate among equals.
        let n = self.n();
        let mut best: Option<(Slot, ReplicaId)> = None;
        for offset in 0..n {
            let peer = ((self.fetch_turn + offset) % n) as ReplicaId;
            if peer == self.id || self.is_silent(peer) {
                continue;
            }
            let applied = self.peers[peer as usize].applied;
            if best.is_none_or(|(a, _)| applied > a) {
                best = Some((applied, peer));
            }
        }
        self.fetch_turn = (self.fetch_turn + 1) % n;
        if let Some((_, peer)) = best {
            self.send(peer, Body::Fetch { from: next_apply });
        }
    }

    fn maybe_compact(&mut self) {
        let next_apply = self.learner.next_apply();
        let slowest_peer = (0..self.n())
            .filter(|p| *p != self.id as usize)
            .map(|p| self.peers[p].applied)
            .min()
            .unwrap_or(next_apply);
        let target =
            next_apply.min(slowest_peer.max(next_apply.saturating_sub(self.cfg.max_log_slots)));
        if target < self.learner.log_start() + self.cfg.compact_step_slots {
            return;
        }
        assert!(
            self.own_inflight.range(..target).next().is_none(),
            "own proposal below the apply point left unsettled"
        );
        self.learner.compact(target);
        self.acceptor.compact(target);
        self.revocations.retain(|_, r| r.to > target);
        self.push_record(Record::Compact { below: target });
    }

    fn after_input(&mut self) {
        let before = self.learner.next_apply();
        self.settle_own_proposals();
        if !self.apply_held {
            self.learner.take_applicable(&mut self.ready.apply);
        } else if self
            .snapshot_requested_us
            .is_none_or(|t| self.now_us >= t + self.cfg.stuck_after_us)
        {
            // The last transfer failed or its peer had nothing newer: try the next.
            self.request_snapshot(self.learner.next_apply());
        }
        if self.learner.next_apply() != before {
            self.last_progress_us = self.now_us;
        } else if !self.has_work_above() && self.own_inflight.is_empty() {
            // Idle is not stuck.
            self.last_progress_us = self.now_us;
        }
        self.retire_finished_revocations();
        self.try_propose();
    }
}
