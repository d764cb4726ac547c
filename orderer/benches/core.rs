//! In-process 3-replica core with zero-latency delivery and no disk wait: how many
//! 1 KiB commands per second the protocol logic itself decides and applies.

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

use orderer::core::loopback::Loopback;
use orderer::core::{Command, Config, ReplicaId, Tag};

const REPLICAS: usize = 3;
const COMMAND_BYTES: usize = 1024;

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

/// Proposes `batch` spread over the replicas and runs until all of them applied it.
fn order(cluster: &mut Loopback, batch: Vec<Command>) {
    let target = cluster.applied_commands(0) + batch.len() as u64;
    for (i, command) in batch.into_iter().enumerate() {
        let id = (i % REPLICAS) as ReplicaId;
        cluster.propose(id, command).expect("queue has room");
    }
    while (0..REPLICAS as ReplicaId).any(|id| cluster.applied_commands(id) < target) {
        cluster.run_for(100, 100);
    }
}

fn decided_commands(c: &mut Criterion) {
    let mut group = c.benchmark_group("core_3_replicas_1KiB");
    for per_round in [256usize, 4096] {
        group.throughput(Throughput::Elements(per_round as u64));
        let mut cluster = Loopback::new(Config::lan(REPLICAS), false);
        let mut next_id = 0u64;
        group.bench_function(format!("{per_round}_commands_per_round"), |b| {
            b.iter_batched(
                || {
                    next_id += per_round as u64;
                    commands(per_round, next_id)
                },
                |batch| order(&mut cluster, batch),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, decided_commands);
criterion_main!(benches);
