//! The node's consensus loop: one thread owns the core, the store and the
//! applications. Each iteration takes every queued input (up to a limit), lets the core
//! react, and carries out its `Ready` with exactly one synced write: the core's records
//! and the applications' changes for the slots it applies, atomically, before any
//! message leaves and before any client hears an answer (group commit).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::codec::{DecodeError, decode_record, encode_record};
use crate::core::{
    Command, Config, Core, Message, ProposeError, Record, ReplicaId, Slot, SnapshotRequest, Value,
};
use crate::node::state_transfer::SnapshotFeed;
use crate::node::transport::HorizonCell;
use crate::storage::{RecordBytes, Store, StoreError, WriteSet};

/// Inputs queued for the loop; bounded, so a flood of clients or peers cannot grow
/// memory without limit.
pub const INBOX_CAPACITY: usize = 16_384;

/// Inputs handled before one write: bounds the latency one write adds to the first.
const MAX_INPUTS_PER_WRITE: usize = 4_096;

/// Outgoing side of the replica transport. `send` must not block the loop: a full
/// queue drops messages (the core retransmits what matters).
pub trait Transport: Send {
    fn send(&mut self, to: ReplicaId, messages: Vec<Message>);
}

/// What the ordered log feeds: channels, the notary.
pub trait Application: Send {
    /// Applies one decided slot; durable changes go into `write`, which is committed
    /// atomically with the new apply point.
    fn apply(&mut self, slot: Slot, value: &Value, write: &mut WriteSet);
    /// Called once after the last `apply` of a write, before it is committed: state
    /// kept per write (rather than per slot) goes into `write` here.
    fn seal(&mut self, write: &mut WriteSet);
    /// Everything applied so far is durable: answers that waited for it may go out.
    fn committed(&mut self);
    /// Commands this replica gave up on; their clients must be told to retry.
    fn abandoned(&mut self, commands: Vec<Command>);
    /// Commands the application itself wants ordered now (e.g. Time-To-Cut).
    fn due_commands(&mut self, now_ms: u64) -> Vec<Command>;
    /// Whether a majority of replicas was heard from recently (clients get a quick
    /// "unavailable" instead of a timeout when not).
    fn majority_reachable(&mut self, reachable: bool);
    /// The store's application tables were replaced (state transfer): drop what is
    /// cached and read them again.
    fn reload(&mut self) -> Result<(), StoreError>;
}

pub enum Input {
    Peer(Message),
    /// A client command, answered once the core queued or refused it.
    Propose {
        command: Command,
        answer: tokio::sync::oneshot::Sender<Result<(), ProposeError>>,
    },
    /// A snapshot from a peer, arriving chunk by chunk.
    Snapshot(SnapshotFeed),
    Stop,
}

#[derive(Debug)]
pub enum RuntimeError {
    Store(StoreError),
    /// A stored record did not decode: the log is corrupt, refuse to run on it.
    CorruptLog(DecodeError),
}

impl std::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuntimeError::Store(e) => write!(f, "store: {e}"),
            RuntimeError::CorruptLog(e) => write!(f, "write-ahead log: {e}"),
        }
    }
}

impl std::error::Error for RuntimeError {}

impl From<StoreError> for RuntimeError {
    fn from(e: StoreError) -> Self {
        RuntimeError::Store(e)
    }
}

/// Wall-clock microseconds: batches carry the proposer's clock in milliseconds, from
/// which applications derive the log's agreed time.
pub fn wall_clock_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Counters for the operations endpoint and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuntimeStats {
    pub writes: u64,
    pub inputs: u64,
    pub applied_slots: u64,
    /// Times the core asked for a snapshot (state transfer).
    pub snapshot_requests: u64,
    pub snapshots_installed: u64,
    pub snapshots_failed: u64,
}

/// How the loop takes part in state transfer (absent in tests without a network).
pub struct StateTransferLink {
    /// Where the vote horizon is published for peers.
    pub horizon: Arc<HorizonCell>,
    /// Takes the core's snapshot requests.
    pub fetcher: tokio::sync::mpsc::Sender<SnapshotRequest>,
}

pub struct Runtime<A: Application, T: Transport> {
    core: Core,
    store: Arc<Store>,
    app: A,
    transport: T,
    inbox: Receiver<Input>,
    stats: RuntimeStats,
    state_transfer: Option<StateTransferLink>,
    /// Apply point last seen moving, and when: a node stuck with work to do says so.
    progress: (Slot, u64),
}

/// How long the apply point may stand still, with work waiting, before the loop logs
/// the core's state (and again after as long).
const STUCK_LOG_AFTER_US: u64 = 5_000_000;

impl<A: Application, T: Transport> Runtime<A, T> {
    /// Rebuilds the core from the store (empty for a new node). `rejoin_horizons`,
    /// the vote horizons of every other replica, must be given for a store that holds
    /// nothing (`Store::is_blank`): the replica then rejoins behind a vote fence.
    pub fn open(
        cfg: Config,
        id: ReplicaId,
        store: Arc<Store>,
        mut app: A,
        transport: T,
        inbox: Receiver<Input>,
        rejoin_horizons: Option<&[Slot]>,
    ) -> Result<Self, RuntimeError> {
        let now = wall_clock_us();
        let mut core = match rejoin_horizons {
            Some(horizons) => Core::rejoin(cfg, id, horizons, now),
            None => {
                let recovered = store.recover()?;
                let records = recovered
                    .records
                    .iter()
                    .map(|bytes| decode_record(bytes))
                    .collect::<Result<Vec<Record>, DecodeError>>()
                    .map_err(RuntimeError::CorruptLog)?;
                Core::restore(cfg, id, &records, recovered.applied_upto, now)
            }
        };
        if store.transfer_in_progress()? {
            // The application tables are partial: empty them and apply nothing until a
            // complete snapshot replaced them.
            eprintln!("orderer{id}: an interrupted state transfer is started again");
            store.begin_transfer()?;
            app.reload()?;
            core.hold_apply_until_snapshot(now);
        }
        Ok(Runtime {
            core,
            store,
            app,
            transport,
            inbox,
            stats: RuntimeStats::default(),
            state_transfer: None,
            progress: (0, now),
        })
    }

    pub fn with_state_transfer(mut self, link: StateTransferLink) -> Self {
        link.horizon.publish(self.core.vote_horizon());
        self.state_transfer = Some(link);
        self
    }

    pub fn stats(&self) -> &RuntimeStats {
        &self.stats
    }

    pub fn core(&self) -> &Core {
        &self.core
    }

    /// Runs until `Input::Stop`, the inbox closing, or a store failure (after which the
    /// node must stop: it can no longer promise durability).
    pub fn run(mut self) -> Result<(Self, RuntimeStats), RuntimeError> {
        // Whatever restore left to do (retransmissions, own-lane noops) goes out first.
        self.flush()?;
        loop {
            let now = wall_clock_us();
            let wait = Duration::from_micros(self.core.next_deadline_us().saturating_sub(now));
            let mut stop = false;
            match self.inbox.recv_timeout(wait) {
                Ok(input) => stop |= self.handle(input)?,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => stop = true,
            }
            for _ in 0..MAX_INPUTS_PER_WRITE {
                match self.inbox.try_recv() {
                    Ok(input) => stop |= self.handle(input)?,
                    Err(_) => break,
                }
            }
            let now = wall_clock_us();
            for command in self.app.due_commands(now / 1000) {
                // A full queue refuses it; the application asks again after its timeout.
                let _ = self.core.propose(now, command);
            }
            self.core.tick(now);
            self.log_if_stuck(now);
            let reachable = self.core.reachable_replicas() >= self.core.config().majority();
            self.app.majority_reachable(reachable);
            self.flush()?;
            if stop {
                let stats = self.stats.clone();
                return Ok((self, stats));
            }
        }
    }

    fn log_if_stuck(&mut self, now_us: u64) {
        let applied = self.core.applied();
        let (pending, inflight) = self.core.backlog();
        if applied != self.progress.0 || (pending == 0 && inflight == 0) {
            self.progress = (applied, now_us);
        } else if now_us >= self.progress.1 + STUCK_LOG_AFTER_US {
            eprintln!(
                "orderer{}: nothing applied for {} s with work waiting: {}",
                self.core.id(),
                (now_us - self.progress.1) / 1_000_000,
                self.core.describe()
            );
            self.progress.1 = now_us;
        }
    }

    /// Returns true on `Stop`.
    fn handle(&mut self, input: Input) -> Result<bool, RuntimeError> {
        self.stats.inputs += 1;
        match input {
            Input::Peer(message) => self.core.step(wall_clock_us(), message),
            Input::Propose { command, answer } => {
                let result = self.core.propose(wall_clock_us(), command);
                // The client may have gone away; nothing to do then.
                let _ = answer.send(result);
            }
            Input::Snapshot(feed) => {
                // The core installs a snapshot only between two carried-out `Ready`s.
                self.flush()?;
                self.install_snapshot(feed)?;
            }
            Input::Stop => return Ok(true),
        }
        Ok(false)
    }

    /// Replaces the applications' state by a peer's snapshot, if it is newer. Blocks
    /// the loop while the chunks arrive: this replica is behind every peer anyway, and
    /// the others keep deciding without its votes.
    fn install_snapshot(&mut self, mut feed: SnapshotFeed) -> Result<(), RuntimeError> {
        let id = self.core.id();
        let next = self.core.applied();
        let held = self.core.apply_held();
        if feed.applied_upto < next || (feed.applied_upto == next && !held) {
            // Nothing newer there; the core asks again if it still needs one.
            if !held {
                self.core.install_snapshot(wall_clock_us(), 0);
            }
            return Ok(());
        }
        self.store.begin_transfer()?;
        let mut entries = 0u64;
        let outcome = loop {
            match feed.chunks.blocking_recv() {
                Some(Ok((chunk, last))) => {
                    self.store.ingest_transfer(&chunk)?;
                    entries += chunk.len() as u64;
                    if last {
                        break Ok(());
                    }
                }
                Some(Err(why)) => break Err(why),
                None => break Err("the stream ended early".to_string()),
            }
        };
        match outcome {
            Ok(()) => {
                self.store.finish_transfer(feed.applied_upto)?;
                self.app.reload()?;
                self.core
                    .install_snapshot(wall_clock_us(), feed.applied_upto);
                self.stats.snapshots_installed += 1;
                eprintln!(
                    "orderer{id}: installed a snapshot from replica {} covering slots below {} ({entries} entries)",
                    feed.peer, feed.applied_upto
                );
            }
            Err(why) => {
                // The tables are partial now: nothing may be applied onto them.
                self.app.reload()?;
                self.core.hold_apply_until_snapshot(wall_clock_us());
                self.stats.snapshots_failed += 1;
                eprintln!(
                    "orderer{id}: snapshot from replica {} failed, asking again: {why}",
                    feed.peer
                );
            }
        }
        Ok(())
    }

    /// Carries out the core's `Ready`: one synced write, then messages and answers.
    fn flush(&mut self) -> Result<(), RuntimeError> {
        if !self.core.has_ready() {
            return Ok(());
        }
        let ready = self.core.take_ready();
        let mut write = WriteSet::default();
        for record in &ready.persist {
            if let Record::Compact { below } = record {
                write.compact_below = Some(*below);
            }
            write.records.push(RecordBytes {
                slot_bound: Some(record.slot_bound()),
                bytes: encode_record(record),
            });
        }
        for (slot, value) in &ready.apply {
            self.app.apply(*slot, value, &mut write);
        }
        self.app.seal(&mut write);
        if let Some((last, _)) = ready.apply.last() {
            write.applied_upto = Some(last + 1);
            self.stats.applied_slots += ready.apply.len() as u64;
        }
        if !write.is_empty() {
            self.store.commit(write)?;
            self.stats.writes += 1;
        }
        if let Some(link) = &self.state_transfer {
            // Before this write's messages leave: no peer hears of a vote the
            // published horizon does not cover.
            link.horizon.publish(self.core.vote_horizon());
        }
        let mut by_peer: BTreeMap<ReplicaId, Vec<Message>> = BTreeMap::new();
        for (to, message) in ready.messages {
            by_peer.entry(to).or_default().push(message);
        }
        for (to, messages) in by_peer {
            self.transport.send(to, messages);
        }
        self.app.committed();
        if !ready.abandoned.is_empty() {
            self.app.abandoned(ready.abandoned);
        }
        if let Some(request) = ready.snapshot_needed {
            self.stats.snapshot_requests += 1;
            if let Some(link) = &self.state_transfer {
                // Busy with one already: the core asks again if it still needs one.
                let _ = link.fetcher.try_send(request);
            }
        }
        Ok(())
    }
}

/// Queues `input` without blocking; `false` if the loop is overloaded or gone.
pub fn offer(inbox: &SyncSender<Input>, input: Input) -> bool {
    match inbox.try_send(input) {
        Ok(()) => true,
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
    }
}
