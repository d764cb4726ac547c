//! In-process 3-replica core with zero-latency delivery and no disk: how many 1 KiB
//! commands per second the protocol logic itself decides and applies.

use std::collections::VecDeque;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

use orderer::core::{Command, Config, Core, Message, ReplicaId, Tag};

const REPLICAS: usize = 3;
const COMMAND_BYTES: usize = 1024;

struct Cluster {
    cores: Vec<Core>,
    wire: VecDeque<(ReplicaId, Message)>,
    now_us: u64,
    applied_commands: Vec<usize>,
}

impl Cluster {
    fn new() -> Cluster {
        let cfg = Config::lan(REPLICAS);
        Cluster {
            cores: (0..REPLICAS)
                .map(|id| Core::new(cfg.clone(), id as ReplicaId, 0))
                .collect(),
            wire: VecDeque::new(),
            now_us: 0,
            applied_commands: vec![0; REPLICAS],
        }
    }

    fn collect(&mut self, id: usize) {
        // Zero-latency, no disk: records are dropped, messages delivered at once.
        let ready = self.cores[id].take_ready();
        self.wire.extend(ready.messages);
        for (_, value) in ready.apply {
            if let orderer::core::Value::Batch(batch) = value {
                self.applied_commands[id] += batch.commands.len();
            }
        }
    }

    /// Proposes `commands` spread over the replicas and runs until every replica has
    /// applied them.
    fn run(&mut self, commands: Vec<Command>) {
        let target: Vec<usize> = self
            .applied_commands
            .iter()
            .map(|a| a + commands.len())
            .collect();
        for (i, command) in commands.into_iter().enumerate() {
            let id = i % REPLICAS;
            self.cores[id]
                .propose(self.now_us, command)
                .expect("queue has room");
        }
        while self.applied_commands != target {
            for id in 0..REPLICAS {
                self.collect(id);
            }
            while let Some((to, message)) = self.wire.pop_front() {
                self.cores[to as usize].step(self.now_us, message);
                self.collect(to as usize);
            }
            self.now_us += 100;
            for id in 0..REPLICAS {
                self.cores[id].tick(self.now_us);
            }
        }
    }
}

fn commands(count: usize, first_id: u64) -> Vec<Command> {
    (0..count)
        .map(|i| {
            let mut payload = vec![0x5A; COMMAND_BYTES];
            payload[..8].copy_from_slice(&(first_id + i as u64).to_le_bytes());
            Command {
                tag: Tag::Channel("bench".into()),
                payload: Bytes::from(payload),
            }
        })
        .collect()
}

fn decided_commands(c: &mut Criterion) {
    let mut group = c.benchmark_group("core_3_replicas_1KiB");
    for per_round in [256usize, 4096] {
        group.throughput(Throughput::Elements(per_round as u64));
        let mut cluster = Cluster::new();
        let mut next_id = 0u64;
        group.bench_function(format!("{per_round}_commands_per_round"), |b| {
            b.iter_batched(
                || {
                    next_id += per_round as u64;
                    commands(per_round, next_id)
                },
                |batch| cluster.run(batch),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, decided_commands);
criterion_main!(benches);
