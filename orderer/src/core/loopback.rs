//! An in-process cluster with zero-latency delivery and a disk that syncs instantly:
//! the smallest driver of the core, for scenario tests and the micro-benchmark. Faults
//! are explicit (isolate, crash, restart) rather than random; the simulator covers the
//! random ones.

use std::collections::VecDeque;

use super::config::Config;
use super::message::Message;
use super::record::Record;
use super::replica::{Core, ProposeError};
use super::types::{Command, ReplicaId, Slot, Value};

pub struct Loopback {
    cfg: Config,
    cores: Vec<Option<Core>>,
    durable: Vec<Vec<Record>>,
    /// Every slot each replica applied, in order (kept only if `keep_applied`).
    applied: Vec<Vec<(Slot, Value)>>,
    applied_upto: Vec<Slot>,
    applied_commands: Vec<u64>,
    keep_applied: bool,
    isolated: Vec<bool>,
    wire: VecDeque<(ReplicaId, ReplicaId, Message)>,
    now_us: u64,
}

impl Loopback {
    /// `keep_applied`: remember every applied slot (tests) or only count (benchmarks).
    pub fn new(cfg: Config, keep_applied: bool) -> Loopback {
        let n = cfg.replicas;
        Loopback {
            cores: (0..n)
                .map(|id| Some(Core::new(cfg.clone(), id as ReplicaId, 0)))
                .collect(),
            durable: vec![Vec::new(); n],
            applied: vec![Vec::new(); n],
            applied_upto: vec![0; n],
            applied_commands: vec![0; n],
            keep_applied,
            isolated: vec![false; n],
            wire: VecDeque::new(),
            now_us: 0,
            cfg,
        }
    }

    pub fn now_us(&self) -> u64 {
        self.now_us
    }

    pub fn core(&self, id: ReplicaId) -> Option<&Core> {
        self.cores[id as usize].as_ref()
    }

    pub fn applied(&self, id: ReplicaId) -> &[(Slot, Value)] {
        &self.applied[id as usize]
    }

    pub fn applied_commands(&self, id: ReplicaId) -> u64 {
        self.applied_commands[id as usize]
    }

    /// Commands applied by `id`, in order.
    pub fn applied_command_list(&self, id: ReplicaId) -> Vec<Command> {
        self.applied[id as usize]
            .iter()
            .filter_map(|(_, v)| match v {
                Value::Batch(batch) => Some(batch.commands.iter().cloned()),
                Value::Noop => None,
            })
            .flatten()
            .collect()
    }

    pub fn propose(&mut self, id: ReplicaId, command: Command) -> Result<(), ProposeError> {
        let now = self.now_us;
        let core = self.cores[id as usize].as_mut().expect("replica is up");
        let result = core.propose(now, command);
        self.collect(id);
        result
    }

    /// Cuts `id` off the network (both directions) or reconnects it.
    pub fn isolate(&mut self, id: ReplicaId, isolated: bool) {
        self.isolated[id as usize] = isolated;
    }

    /// Kills `id`: its memory is gone, its durable records stay.
    pub fn crash(&mut self, id: ReplicaId) {
        self.cores[id as usize] = None;
    }

    pub fn restart(&mut self, id: ReplicaId) {
        let core = Core::restore(
            self.cfg.clone(),
            id,
            &self.durable[id as usize],
            self.applied_upto[id as usize],
            self.now_us,
        );
        self.cores[id as usize] = Some(core);
        self.collect(id);
    }

    fn collect(&mut self, id: ReplicaId) {
        let Some(core) = self.cores[id as usize].as_mut() else {
            return;
        };
        let ready = core.take_ready();
        let durable = &mut self.durable[id as usize];
        for record in ready.persist {
            if let Record::Compact { below } = record {
                durable.retain(|r| r.slot_bound() >= below);
            }
            durable.push(record);
        }
        for (to, message) in ready.messages {
            self.wire.push_back((id, to, message));
        }
        for (slot, value) in ready.apply {
            assert_eq!(slot, self.applied_upto[id as usize], "applied out of order");
            self.applied_upto[id as usize] = slot + 1;
            if let Value::Batch(batch) = &value {
                self.applied_commands[id as usize] += batch.commands.len() as u64;
            }
            if self.keep_applied {
                self.applied[id as usize].push((slot, value));
            }
        }
        assert!(
            ready.snapshot_needed.is_none(),
            "the loopback cluster never lets a replica fall behind compaction"
        );
    }

    /// Delivers messages until none is left.
    pub fn flush(&mut self) {
        while let Some((from, to, message)) = self.wire.pop_front() {
            if self.isolated[from as usize] || self.isolated[to as usize] {
                continue;
            }
            let now = self.now_us;
            if let Some(core) = self.cores[to as usize].as_mut() {
                core.step(now, message);
                self.collect(to);
            }
        }
    }

    /// Lets `duration_us` pass in steps of `step_us`, ticking every replica and
    /// delivering everything after each step.
    pub fn run_for(&mut self, duration_us: u64, step_us: u64) {
        let end = self.now_us + duration_us;
        self.flush();
        while self.now_us < end {
            self.now_us = (self.now_us + step_us).min(end);
            for id in 0..self.cores.len() as ReplicaId {
                let now = self.now_us;
                if let Some(core) = self.cores[id as usize].as_mut() {
                    core.tick(now);
                    self.collect(id);
                }
            }
            self.flush();
        }
    }
}
