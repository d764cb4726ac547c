//! Three node runtimes in one process, each with its own RocksDB store, connected by
//! in-memory queues: channels get identical, verifiable chains on every node, and a
//! node stopped abruptly resumes from its store and catches up.

mod support;

use std::time::Duration;

use bytes::Bytes;
use channel::{BatchConfig, ChannelCommand, verify_chain};
use proto::common::Block;

use orderer::core::{Command, Tag};
use support::{Cluster, NODES};

fn create(channel: &str) -> Command {
    Command {
        tag: Tag::Channel(channel.into()),
        payload: ChannelCommand::Create {
            config: BatchConfig {
                max_message_count: 10,
                absolute_max_bytes: 1 << 20,
                preferred_max_bytes: 1 << 19,
                batch_timeout_ms: 50,
            },
        }
        .encode(),
    }
}

fn envelope(channel: &str, id: u32) -> Command {
    Command {
        tag: Tag::Channel(channel.into()),
        payload: ChannelCommand::Envelope {
            bytes: Bytes::from(format!("envelope-{id}").into_bytes()),
            tx_id: format!("tx-{id}"),
            is_config: false,
        }
        .encode(),
    }
}

fn assert_identical_chains(cluster: &Cluster, channel: &str, envelopes: usize) {
    let reference = cluster.chain(0, channel);
    verify_chain(&reference).unwrap();
    let mut seen: Vec<Vec<u8>> = reference
        .iter()
        .skip(1)
        .flat_map(|b| b.data.clone().unwrap().data)
        .collect();
    assert_eq!(seen.len(), envelopes);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), envelopes, "an envelope is in two blocks");
    for id in 1..NODES {
        let chain = cluster.chain(id, channel);
        let headers = |c: &[Block]| c.iter().map(|b| b.header.clone()).collect::<Vec<_>>();
        assert_eq!(
            headers(&chain),
            headers(&reference),
            "node {id} has another chain"
        );
    }
}

#[test]
fn nodes_cut_identical_chains_and_a_stopped_node_resumes_from_its_store() {
    let mut cluster = Cluster::new();
    cluster.propose(0, create("demo"));
    for id in 0..300u32 {
        cluster.propose(id as usize % NODES, envelope("demo", id));
    }
    // Blocks of 10 plus a Time-To-Cut for the tail.
    cluster.wait_for_envelopes("demo", 300, Duration::from_secs(20));
    assert_identical_chains(&cluster, "demo", 300);

    // Node 2 stops; the others keep ordering (after revoking its lane).
    cluster.stop(2);
    for id in 300..400u32 {
        cluster.propose(id as usize % 2, envelope("demo", id));
    }
    cluster.wait_for_envelopes("demo", 400, Duration::from_secs(20));

    // It restarts from its store and catches up.
    cluster.start(2);
    for id in 400..450u32 {
        cluster.propose(id as usize % NODES, envelope("demo", id));
    }
    cluster.wait_for_envelopes("demo", 450, Duration::from_secs(30));
    assert_identical_chains(&cluster, "demo", 450);
    let revocations: u64 = (0..2).map(|id| cluster.stop(id).revocations_started).sum();
    assert!(
        revocations >= 1,
        "the stopped node's lane was never revoked"
    );
}
