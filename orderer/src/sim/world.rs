//! One simulated cluster: n cores, a lossy network, disks that lose unsynced writes,
//! clients, and a fault schedule, all driven by one seeded RNG and a virtual clock.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use bytes::Bytes;

use super::SimConfig;
use super::checker::{AppState, Checker, command_id};
use super::rng::Rng;
use crate::core::{Command, Core, Message, Ready, Record, ReplicaId, Slot, Tag};

/// With tracing on, every replica's state is printed this often.
const TRACE_EVERY_US: u64 = 50_000;

#[derive(Debug)]
enum Event {
    Deliver {
        to: ReplicaId,
        message: Message,
    },
    Timer {
        replica: ReplicaId,
        generation: u64,
    },
    SyncDone {
        replica: ReplicaId,
        incarnation: u64,
    },
    SnapshotDone {
        replica: ReplicaId,
        incarnation: u64,
        from: ReplicaId,
    },
    Client,
    Fault,
    Crash {
        replica: ReplicaId,
    },
    Restart {
        replica: ReplicaId,
    },
}

struct Scheduled {
    at_us: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at_us, self.seq) == (other.at_us, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at_us, self.seq).cmp(&(other.at_us, other.seq))
    }
}

struct Node {
    core: Option<Core>,
    /// Bumped on every crash, so events for a dead incarnation are ignored.
    incarnation: u64,
    durable: Vec<Record>,
    /// Written but not yet synced; lost on crash, with everything it gates.
    syncing: Option<Ready>,
    app: AppState,
    timer_generation: u64,
    timer_at_us: u64,
    up_since_us: u64,
    last_apply_us: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Chaos,
    Calm,
}

pub struct World {
    cfg: SimConfig,
    rng: Rng,
    now_us: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    nodes: Vec<Node>,
    /// Partition side of each replica; messages only flow within a side.
    side: Vec<u8>,
    drop_probability: f64,
    duplicate_probability: f64,
    phase: Phase,
    next_command: u64,
    pub checker: Checker,
    /// Stall measurement window (fault-free, majority up).
    measure_from_us: u64,
    measure_to_us: u64,
    pub max_stall_us: u64,
    pub max_latency_us: u64,
    events: u64,
}

impl World {
    pub fn new(cfg: SimConfig, seed: u64) -> World {
        let n = cfg.core.replicas;
        let nodes = (0..n)
            .map(|id| Node {
                core: Some(Core::new(cfg.core.clone(), id as ReplicaId, 0)),
                incarnation: 0,
                durable: Vec::new(),
                syncing: None,
                app: AppState::default(),
                timer_generation: 0,
                timer_at_us: u64::MAX,
                up_since_us: 0,
                last_apply_us: 0,
            })
            .collect();
        let mut world = World {
            rng: Rng::new(seed),
            now_us: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            side: vec![0; n],
            drop_probability: 0.0,
            duplicate_probability: 0.0,
            phase: Phase::Chaos,
            next_command: 1,
            checker: Checker::new(n),
            measure_from_us: u64::MAX,
            measure_to_us: 0,
            max_stall_us: 0,
            max_latency_us: 0,
            events: 0,
            cfg,
        };
        for id in 0..n as ReplicaId {
            world.arm_timer(id);
        }
        world.schedule(0, Event::Client);
        world.schedule(0, Event::Fault);
        world
    }

    fn n(&self) -> usize {
        self.cfg.core.replicas
    }

    fn schedule(&mut self, at_us: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at_us,
            seq: self.seq,
            event,
        }));
    }

    fn up(&self) -> Vec<bool> {
        self.nodes.iter().map(|n| n.core.is_some()).collect()
    }

    /// Runs the fault phase for `steps` events, then the fault-free phase: heal
    /// everything, let it settle, crash and restart up to f replicas under load, drain,
    /// and check liveness.
    pub fn run(&mut self) {
        while self.events < self.cfg.steps {
            self.step_one();
        }
        self.phase = Phase::Calm;
        let calm_start = self.now_us;
        self.drop_probability = 0.0;
        self.duplicate_probability = 0.0;
        self.side = vec![0; self.n()];
        for id in 0..self.n() as ReplicaId {
            if self.nodes[id as usize].core.is_none() {
                self.schedule(calm_start, Event::Restart { replica: id });
            }
        }
        self.measure_from_us = calm_start + self.cfg.settle_us;
        self.measure_to_us = self.measure_from_us + self.cfg.measure_us;
        let f = (self.n() - 1) / 2;
        if f > 0 {
            // One crash event takes down 1..=f replicas at once (a rack, a bad deploy);
            // they restart later, one by one.
            let victims = self.rng.range(1, f as u64) as usize;
            let crash_at = self.measure_from_us + self.rng.range(50_000, 150_000);
            let mut candidates: Vec<ReplicaId> = (0..self.n() as ReplicaId).collect();
            for _ in 0..victims {
                let index = self.rng.range(0, candidates.len() as u64 - 1) as usize;
                let victim = candidates.swap_remove(index);
                let restart_at = crash_at + self.rng.range(200_000, 500_000);
                self.schedule(crash_at, Event::Crash { replica: victim });
                self.schedule(restart_at, Event::Restart { replica: victim });
            }
        }
        let end = self.measure_to_us + self.cfg.drain_us;
        while let Some(Reverse(next)) = self.queue.peek() {
            if next.at_us > end {
                break;
            }
            self.step_one();
        }
        self.now_us = end;
        // Replicas that applied nothing until the end of the window stalled that long.
        for id in 0..self.n() {
            self.close_stall(id, self.measure_to_us.min(self.now_us));
        }
        let overdue = self.checker.overdue(self.measure_to_us, &self.up());
        if let Some(first) = overdue.first() {
            self.checker.violations.push(format!(
                "liveness: {} commands submitted in the fault-free phase never applied at their \
                 origin within {} ms (first: {first})",
                overdue.len(),
                self.cfg.drain_us / 1000
            ));
        }
        self.max_latency_us = self.checker.max_latency_since_us(calm_start);
        if self.cfg.trace {
            self.trace_state();
        }
    }

    fn step_one(&mut self) {
        let Some(Reverse(next)) = self.queue.pop() else {
            panic!("event queue ran dry: timers must keep it alive");
        };
        if self.cfg.trace
            && self.now_us / TRACE_EVERY_US != next.at_us.max(self.now_us) / TRACE_EVERY_US
        {
            self.trace_state();
        }
        self.now_us = self.now_us.max(next.at_us);
        self.events += 1;
        match next.event {
            Event::Deliver { to, message } => {
                let from = message.from;
                if self.side[from as usize] != self.side[to as usize] {
                    return;
                }
                if let Some(core) = self.nodes[to as usize].core.as_mut() {
                    core.step(self.now_us, message);
                    self.drive(to);
                }
            }
            Event::Timer {
                replica,
                generation,
            } => {
                let node = &mut self.nodes[replica as usize];
                if node.timer_generation != generation {
                    return;
                }
                node.timer_at_us = u64::MAX;
                if let Some(core) = node.core.as_mut() {
                    core.tick(self.now_us);
                    self.drive(replica);
                }
            }
            Event::SyncDone {
                replica,
                incarnation,
            } => {
                if self.nodes[replica as usize].incarnation == incarnation {
                    self.finish_sync(replica);
                    self.drive(replica);
                }
            }
            Event::SnapshotDone {
                replica,
                incarnation,
                from,
            } => self.install_snapshot(replica, incarnation, from),
            Event::Client => self.client(),
            Event::Fault => self.fault(),
            Event::Crash { replica } => self.crash(replica),
            Event::Restart { replica } => self.restart(replica),
        }
    }

    fn arm_timer(&mut self, id: ReplicaId) {
        let node = &mut self.nodes[id as usize];
        let Some(core) = node.core.as_ref() else {
            return;
        };
        let deadline = core.next_deadline_us();
        if deadline < node.timer_at_us {
            node.timer_generation += 1;
            node.timer_at_us = deadline;
            let generation = node.timer_generation;
            self.schedule(
                deadline,
                Event::Timer {
                    replica: id,
                    generation,
                },
            );
        }
    }

    /// Carries out the core's output: records go to the disk first; messages and
    /// applications wait for the sync.
    fn drive(&mut self, id: ReplicaId) {
        let node = &mut self.nodes[id as usize];
        if node.syncing.is_none() {
            if let Some(core) = node.core.as_mut().filter(|c| c.has_ready()) {
                let ready = core.take_ready();
                let needs_sync = !ready.persist.is_empty();
                node.syncing = Some(ready);
                if needs_sync {
                    let at =
                        self.now_us + self.rng.range(self.cfg.min_sync_us, self.cfg.max_sync_us);
                    let incarnation = node.incarnation;
                    self.schedule(
                        at,
                        Event::SyncDone {
                            replica: id,
                            incarnation,
                        },
                    );
                } else {
                    self.finish_sync(id);
                    return self.drive(id);
                }
            }
        }
        self.arm_timer(id);
    }

    fn finish_sync(&mut self, id: ReplicaId) {
        let node = &mut self.nodes[id as usize];
        let Some(ready) = node.syncing.take() else {
            return;
        };
        for record in ready.persist {
            if let Record::Compact { below } = record {
                node.durable.retain(|r| r.slot_bound() >= below);
            }
            node.durable.push(record);
        }
        for (to, message) in ready.messages {
            self.send(id, to, message);
        }
        for (slot, value) in ready.apply {
            // The gap ends here, measured against what was waiting before this slot.
            self.note_apply(id as usize);
            let node = &mut self.nodes[id as usize];
            self.checker
                .apply(id, &mut node.app, slot, &value, self.now_us);
        }
        for command in ready.abandoned {
            if let Some(cid) = command_id(&command.payload) {
                self.checker.orphan(cid);
            }
        }
        if let Some(request) = ready.snapshot_needed {
            let incarnation = self.nodes[id as usize].incarnation;
            let at = self.now_us + self.rng.range(1_000, 5_000);
            self.schedule(
                at,
                Event::SnapshotDone {
                    replica: id,
                    incarnation,
                    from: request.peer,
                },
            );
        }
    }

    fn send(&mut self, from: ReplicaId, to: ReplicaId, message: Message) {
        if self.side[from as usize] != self.side[to as usize]
            || self.rng.chance(self.drop_probability)
        {
            return;
        }
        let copies = if self.rng.chance(self.duplicate_probability) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = self.rng.range(self.cfg.min_delay_us, self.cfg.max_delay_us);
            self.schedule(
                self.now_us + delay,
                Event::Deliver {
                    to,
                    message: message.clone(),
                },
            );
        }
    }

    fn install_snapshot(&mut self, id: ReplicaId, incarnation: u64, from: ReplicaId) {
        if self.nodes[id as usize].incarnation != incarnation
            || self.nodes[id as usize].core.is_none()
        {
            return;
        }
        if self.nodes[id as usize].syncing.is_some() {
            // State transfer waits for the write in progress, as a node runtime would.
            let at = self.now_us + self.cfg.max_sync_us;
            self.schedule(
                at,
                Event::SnapshotDone {
                    replica: id,
                    incarnation,
                    from,
                },
            );
            return;
        }
        // State transfer copies the peer's durable application state, if it is ahead.
        let source = self.nodes[from as usize].app;
        if self.nodes[from as usize].core.is_none()
            || source.applied_upto <= self.nodes[id as usize].app.applied_upto
        {
            // Nothing better there: the core asks again if it still needs one.
            if let Some(core) = self.nodes[id as usize].core.as_mut() {
                core.install_snapshot(self.now_us, 0);
            }
            return;
        }
        self.note_apply(id as usize);
        self.nodes[id as usize].app = source;
        self.checker
            .snapshot_installed(id, source.applied_upto, self.now_us);
        let node = &mut self.nodes[id as usize];
        node.core
            .as_mut()
            .expect("checked above")
            .install_snapshot(self.now_us, source.applied_upto);
        self.drive(id);
    }

    fn note_apply(&mut self, id: usize) {
        self.close_stall(id, self.now_us);
        self.nodes[id].last_apply_us = self.now_us;
    }

    /// Records the gap since replica `id` last applied, if it falls in the window.
    fn close_stall(&mut self, id: usize, at_us: u64) {
        let node = &self.nodes[id];
        if node.core.is_none() || self.measure_from_us == u64::MAX {
            return;
        }
        // A stall is time in which nothing was applied although a live client's
        // command was waiting.
        let Some(pending_since) = self.checker.pending_since(id as ReplicaId) else {
            return;
        };
        let start = node
            .last_apply_us
            .max(node.up_since_us)
            .max(self.measure_from_us)
            .max(pending_since);
        let end = at_us.min(self.measure_to_us);
        if end > start {
            if self.cfg.trace && end - start > self.cfg.core.suspect_after_us {
                eprintln!(
                    "stall at replica {id}: {} ms .. {} ms",
                    start / 1000,
                    end / 1000
                );
            }
            self.max_stall_us = self.max_stall_us.max(end - start);
        }
    }

    fn client(&mut self) {
        let up: Vec<ReplicaId> = (0..self.n() as ReplicaId)
            .filter(|id| self.nodes[*id as usize].core.is_some())
            .collect();
        let submit = self.phase == Phase::Chaos || self.now_us < self.measure_to_us;
        if let (Some(target), true) = (self.rng.pick(&up), submit) {
            let id = self.next_command;
            self.next_command += 1;
            let mut payload = id.to_le_bytes().to_vec();
            payload.resize(8 + self.rng.range(0, 32) as usize, 0xAB);
            let tag = match self.rng.range(0, 2) {
                0 => Tag::Channel("alpha".into()),
                1 => Tag::Channel("beta".into()),
                _ => Tag::Notary,
            };
            let command = Command {
                tag,
                payload: Bytes::from(payload),
            };
            self.checker.submitted(id, target, self.now_us);
            let core = self.nodes[target as usize]
                .core
                .as_mut()
                .expect("picked among live");
            if core.propose(self.now_us, command).is_err() {
                self.checker.refused(id);
            }
            self.drive(target);
        }
        let gap = self.rng.range(0, 2 * self.cfg.client_interval_us);
        self.schedule(self.now_us + gap, Event::Client);
    }

    /// Random faults while in the fault phase.
    fn fault(&mut self) {
        if self.phase != Phase::Chaos {
            return;
        }
        let n = self.n() as u64;
        let roll = self.rng.range(0, 99);
        match roll {
            0..=7 => {
                let victim = self.rng.range(0, n - 1) as ReplicaId;
                self.crash(victim);
            }
            8..=27 => {
                let down: Vec<ReplicaId> = (0..n as ReplicaId)
                    .filter(|id| self.nodes[*id as usize].core.is_none())
                    .collect();
                if let Some(id) = self.rng.pick(&down) {
                    if self.cfg.blank_restarts && self.rng.chance(0.2) {
                        self.restart_blank(id);
                    } else {
                        self.restart(id);
                    }
                }
            }
            28..=35 => {
                for id in 0..n as usize {
                    self.side[id] = self.rng.range(0, 1) as u8;
                }
            }
            36..=51 => self.side = vec![0; n as usize],
            52..=61 => {
                self.drop_probability = [0.0, 0.01, 0.05, 0.2][self.rng.range(0, 3) as usize];
                self.duplicate_probability = [0.0, 0.01, 0.05][self.rng.range(0, 2) as usize];
            }
            _ => {}
        }
        let gap = self.rng.range(5_000, 40_000);
        self.schedule(self.now_us + gap, Event::Fault);
    }

    fn crash(&mut self, id: ReplicaId) {
        if self.cfg.trace && self.nodes[id as usize].core.is_some() {
            eprintln!(
                "{} ms: replica {id} crashes ({:?} phase)",
                self.now_us / 1000,
                self.phase
            );
        }
        let node = &mut self.nodes[id as usize];
        if node.core.take().is_none() {
            return;
        }
        // Unsynced writes, and the messages and applications they gated, are lost.
        node.syncing = None;
        node.incarnation += 1;
        node.timer_generation += 1;
        node.timer_at_us = u64::MAX;
        self.checker.orphan_pending_of(id);
    }

    fn restart(&mut self, id: ReplicaId) {
        if self.cfg.trace && self.nodes[id as usize].core.is_none() {
            eprintln!(
                "{} ms: replica {id} restarts ({:?} phase)",
                self.now_us / 1000,
                self.phase
            );
        }
        let now = self.now_us;
        let cfg = self.cfg.core.clone();
        let node = &mut self.nodes[id as usize];
        if node.core.is_some() {
            return;
        }
        let applied: Slot = node.app.applied_upto;
        node.core = Some(Core::restore(cfg, id, &node.durable, applied, now));
        node.up_since_us = now;
        node.last_apply_us = now;
        self.drive(id);
    }

    /// Restarts `id` with its storage lost: it rejoins behind a vote fence computed
    /// from every other replica's vote horizon, so only while all of them are up.
    /// Messages its previous incarnation sent may still be in flight. Storage loss
    /// counts against f like a crash: a second one is simulated only once every
    /// earlier fence is settled (applied past), because slots below two fences of
    /// n = 3 can lose a value chosen by the two forgotten votes.
    fn restart_blank(&mut self, id: ReplicaId) {
        let horizons: Option<Vec<Slot>> = (0..self.n() as ReplicaId)
            .filter(|r| *r != id)
            .map(|r| {
                let core = self.nodes[r as usize].core.as_ref()?;
                (core.applied() >= core.vote_fence()).then(|| core.vote_horizon())
            })
            .collect();
        let Some(horizons) = horizons else {
            return;
        };
        if self.nodes[id as usize].core.is_some() {
            return;
        }
        if self.cfg.trace {
            eprintln!(
                "{} ms: replica {id} restarts with blank storage, peer horizons {horizons:?}",
                self.now_us / 1000
            );
        }
        let now = self.now_us;
        let cfg = self.cfg.core.clone();
        let node = &mut self.nodes[id as usize];
        node.durable.clear();
        node.app = AppState::default();
        node.core = Some(Core::rejoin(cfg, id, &horizons, now));
        node.up_since_us = now;
        node.last_apply_us = now;
        self.drive(id);
    }

    fn trace_state(&self) {
        for (id, node) in self.nodes.iter().enumerate() {
            match &node.core {
                Some(core) => eprintln!("{} ms: {}", self.now_us / 1000, core.describe()),
                None => eprintln!("{} ms: replica {id} is down", self.now_us / 1000),
            }
        }
    }

    pub fn malformed_messages(&self) -> u64 {
        self.nodes
            .iter()
            .filter_map(|n| n.core.as_ref())
            .map(|c| c.stats().malformed_messages)
            .sum()
    }
}
