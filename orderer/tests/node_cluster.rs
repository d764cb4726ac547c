//! Three node runtimes in one process, each with its own RocksDB store, connected by
//! in-memory queues: channels get identical, verifiable chains on every node, and a
//! node stopped abruptly resumes from its store and catches up.

use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use channel::{BatchConfig, ChannelCommand, verify_chain};
use proto::common::Block;
use proto::prost::Message as _;

use orderer::core::{Command, Config, Message, ReplicaId, Tag};
use orderer::node::channels::{ChannelHost, block_key};
use orderer::node::runtime::{INBOX_CAPACITY, Input, Runtime, Transport, offer};
use orderer::storage::{Store, Table};

const NODES: usize = 3;

type Inboxes = Arc<Mutex<Vec<Option<SyncSender<Input>>>>>;

struct LocalTransport {
    inboxes: Inboxes,
}

impl Transport for LocalTransport {
    fn send(&mut self, to: ReplicaId, messages: Vec<Message>) {
        let inboxes = self.inboxes.lock().unwrap();
        if let Some(inbox) = &inboxes[to as usize] {
            for message in messages {
                // A full or closed queue drops, like a congested network.
                offer(inbox, Input::Peer(message));
            }
        }
    }
}

struct Node {
    inbox: SyncSender<Input>,
    /// Yields the core's counters when the node stops.
    thread: JoinHandle<orderer::core::Stats>,
}

struct Cluster {
    dirs: Vec<tempfile::TempDir>,
    inboxes: Inboxes,
    nodes: Vec<Option<Node>>,
    stores: Vec<Option<Arc<Store>>>,
}

fn config() -> Config {
    let mut cfg = Config::lan(NODES);
    cfg.suspect_after_us = 200_000;
    cfg.revoke_backoff_us = 100_000;
    cfg
}

impl Cluster {
    fn new() -> Cluster {
        let mut cluster = Cluster {
            dirs: (0..NODES).map(|_| tempfile::tempdir().unwrap()).collect(),
            inboxes: Arc::new(Mutex::new(vec![None; NODES])),
            nodes: (0..NODES).map(|_| None).collect(),
            stores: vec![None; NODES],
        };
        for id in 0..NODES {
            cluster.start(id);
        }
        cluster
    }

    fn start(&mut self, id: usize) {
        let store = Arc::new(Store::open(self.dirs[id].path()).unwrap());
        let host = ChannelHost::load(store.clone()).unwrap();
        let (inbox, receiver) = sync_channel(INBOX_CAPACITY);
        let transport = LocalTransport {
            inboxes: self.inboxes.clone(),
        };
        let runtime = Runtime::open(
            config(),
            id as ReplicaId,
            store.clone(),
            host,
            transport,
            receiver,
        )
        .unwrap();
        let thread = std::thread::spawn(move || {
            let (runtime, _) = runtime.run().unwrap();
            runtime.core().stats().clone()
        });
        self.inboxes.lock().unwrap()[id] = Some(inbox.clone());
        self.stores[id] = Some(store);
        self.nodes[id] = Some(Node { inbox, thread });
    }

    /// Stops node `id` without any shutdown work beyond dropping its memory (its
    /// store holds exactly what was synced).
    fn stop(&mut self, id: usize) -> orderer::core::Stats {
        self.inboxes.lock().unwrap()[id] = None;
        let node = self.nodes[id].take().unwrap();
        node.inbox.send(Input::Stop).unwrap();
        let stats = node.thread.join().unwrap();
        self.stores[id] = None;
        stats
    }

    fn propose(&self, id: usize, command: Command) {
        let node = self.nodes[id].as_ref().unwrap();
        let (answer, result) = sync_channel(1);
        node.inbox.send(Input::Propose { command, answer }).unwrap();
        result
            .recv_timeout(Duration::from_secs(5))
            .unwrap()
            .expect("the core queued the command");
    }

    fn chain(&self, id: usize, channel: &str) -> Vec<Block> {
        let store = self.stores[id].as_ref().unwrap();
        let mut blocks = Vec::new();
        let mut from = block_key(channel, 0);
        let end = block_key(channel, u64::MAX);
        loop {
            let page = store.scan(Table::Blocks, &from, 1_000).unwrap();
            for (key, value) in &page.entries {
                if key.as_slice() > end.as_slice() {
                    return blocks;
                }
                blocks.push(Block::decode(&value[..]).unwrap());
            }
            match page.next_key {
                Some(next) => from = next,
                None => return blocks,
            }
        }
    }

    /// Waits until every running node holds `envelopes` envelopes in `channel`.
    fn wait_for_envelopes(&self, channel: &str, envelopes: usize, timeout: Duration) {
        let started = Instant::now();
        loop {
            let counts: Vec<usize> = (0..NODES)
                .filter(|id| self.nodes[*id].is_some())
                .map(|id| envelope_count(&self.chain(id, channel)))
                .collect();
            if counts.iter().all(|c| *c == envelopes) {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "envelopes per node {counts:?}, want {envelopes}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for id in 0..NODES {
            if self.nodes[id].is_some() {
                self.stop(id);
            }
        }
    }
}

/// Envelopes in all blocks but the genesis block.
fn envelope_count(chain: &[Block]) -> usize {
    chain
        .iter()
        .skip(1)
        .map(|b| b.data.as_ref().map_or(0, |d| d.data.len()))
        .sum()
}

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
