//! An in-process cluster of node runtimes for tests: each node has its own RocksDB
//! store, channel host and directory; nodes talk through in-memory queues.
#![allow(dead_code)] // each test binary uses a different part

use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use proto::common::Block;
use proto::prost::Message as _;

use orderer::core::{Command, Config, Message, ReplicaId};
use orderer::node::channels::{ChannelHost, block_key};
use orderer::node::directory::Directory;
use orderer::node::runtime::{INBOX_CAPACITY, Input, Runtime, Transport, offer};
use orderer::storage::{Store, Table};

pub const NODES: usize = 3;

type Inboxes = Arc<Mutex<Vec<Option<SyncSender<Input>>>>>;

pub struct LocalTransport {
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

pub struct Node {
    pub inbox: SyncSender<Input>,
    /// Yields the core's counters when the node stops.
    thread: JoinHandle<orderer::core::Stats>,
}

pub struct Cluster {
    dirs: Vec<tempfile::TempDir>,
    inboxes: Inboxes,
    pub nodes: Vec<Option<Node>>,
    pub stores: Vec<Option<Arc<Store>>>,
    pub directories: Vec<Arc<Directory>>,
}

pub fn config() -> Config {
    let mut cfg = Config::lan(NODES);
    cfg.suspect_after_us = 200_000;
    cfg.revoke_backoff_us = 100_000;
    cfg
}

impl Cluster {
    pub fn new() -> Cluster {
        let mut cluster = Cluster {
            dirs: (0..NODES).map(|_| tempfile::tempdir().unwrap()).collect(),
            inboxes: Arc::new(Mutex::new(vec![None; NODES])),
            nodes: (0..NODES).map(|_| None).collect(),
            stores: vec![None; NODES],
            directories: (0..NODES)
                .map(|_| Arc::new(Directory::new(100_000)))
                .collect(),
        };
        for id in 0..NODES {
            cluster.start(id);
        }
        cluster
    }

    pub fn start(&mut self, id: usize) {
        let store = Arc::new(Store::open(self.dirs[id].path()).unwrap());
        let host = ChannelHost::load(store.clone(), self.directories[id].clone(), None).unwrap();
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
            None,
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
    pub fn stop(&mut self, id: usize) -> orderer::core::Stats {
        self.inboxes.lock().unwrap()[id] = None;
        let node = self.nodes[id].take().unwrap();
        node.inbox.send(Input::Stop).unwrap();
        let stats = node.thread.join().unwrap();
        self.stores[id] = None;
        stats
    }

    pub fn propose(&self, id: usize, command: Command) {
        let node = self.nodes[id].as_ref().unwrap();
        let (answer, result) = tokio::sync::oneshot::channel();
        node.inbox.send(Input::Propose { command, answer }).unwrap();
        result
            .blocking_recv()
            .unwrap()
            .expect("the core queued the command");
    }

    pub fn chain(&self, id: usize, channel: &str) -> Vec<Block> {
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
    pub fn wait_for_envelopes(&self, channel: &str, envelopes: usize, timeout: Duration) {
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
pub fn envelope_count(chain: &[Block]) -> usize {
    chain
        .iter()
        .skip(1)
        .map(|b| b.data.as_ref().map_or(0, |d| d.data.len()))
        .sum()
}
