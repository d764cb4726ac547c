//! Hosts the Corda-style notary on the ordered log: applies every decided batch's
//! notary commands to the uniqueness state machine (spent-state index in the store's
//! notary table, written with the apply point), and answers the callers waiting at this
//! node once the write is durable, signing the successes of one write with one Merkle
//! root (batch signing) or one signature each.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use notary_adapter::store::Put;
use notary_adapter::{
    KeyValueRead, NodeSigner, NotaryCommand, Outcome, TxId, Uniqueness, ValidatedRequest, wire,
};
use proto::synod::notary as pb;
use tokio::sync::oneshot;

use crate::core::{Command, Slot, Tag, Value};
use crate::storage::{Store, StoreError, Table, WriteSet};

/// The notary table of the store, as the uniqueness state machine reads it.
pub struct NotaryTable<'a>(pub &'a Store);

impl KeyValueRead for NotaryTable<'_> {
    type Error = StoreError;
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get(Table::Notary, key)
    }
}

/// The notary table as the slots of the write being prepared see it: its puts so far
/// over the stored table.
struct WriteView<'a> {
    unwritten: &'a BTreeMap<Vec<u8>, Vec<u8>>,
    table: NotaryTable<'a>,
}

impl KeyValueRead for WriteView<'_> {
    type Error = StoreError;
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.unwritten.get(key) {
            Some(value) => Ok(Some(value.clone())),
            None => self.table.get(key),
        }
    }
}

/// Callers waiting at this node for their transaction's outcome, by transaction id
/// (several callers may wait for one id: retries are answered alike).
pub struct NotaryWaiters {
    waiting: Mutex<HashMap<TxId, Vec<oneshot::Sender<pb::NotariseResponse>>>>,
    count: AtomicU64,
    max_waiters: u64,
    majority_reachable: AtomicBool,
    /// Set when the node stops: nobody starts waiting any more.
    closed: AtomicBool,
}

impl NotaryWaiters {
    pub fn new(max_waiters: u64) -> NotaryWaiters {
        NotaryWaiters {
            waiting: Mutex::new(HashMap::new()),
            count: AtomicU64::new(0),
            max_waiters,
            majority_reachable: AtomicBool::new(true),
            closed: AtomicBool::new(false),
        }
    }

    /// `None` when too many callers wait already, or the node stops.
    pub fn wait_for(&self, tx_id: TxId) -> Option<oneshot::Receiver<pb::NotariseResponse>> {
        if self.closed.load(Ordering::SeqCst) {
            return None;
        }
        if self.count.fetch_add(1, Ordering::SeqCst) >= self.max_waiters {
            self.count.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        let (answer, waiting) = oneshot::channel();
        self.lock().entry(tx_id).or_default().push(answer);
        Some(waiting)
    }

    /// Drops the callers of `tx_id` that gave up (timeout, went away).
    pub fn forget_closed(&self, tx_id: &TxId) {
        let mut waiting = self.lock();
        if let Some(answers) = waiting.get_mut(tx_id) {
            let before = answers.len();
            answers.retain(|a| !a.is_closed());
            self.count
                .fetch_sub((before - answers.len()) as u64, Ordering::SeqCst);
            if answers.is_empty() {
                waiting.remove(tx_id);
            }
        }
    }

    fn take(&self, tx_id: &TxId) -> Vec<oneshot::Sender<pb::NotariseResponse>> {
        let answers = self.lock().remove(tx_id).unwrap_or_default();
        self.count.fetch_sub(answers.len() as u64, Ordering::SeqCst);
        answers
    }

    fn has_waiters(&self, tx_id: &TxId) -> bool {
        self.lock().contains_key(tx_id)
    }

    pub fn majority_reachable(&self) -> bool {
        self.majority_reachable.load(Ordering::SeqCst)
    }

    /// The node stops: every caller still waiting hears so now rather than at its
    /// timeout.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let closed = std::mem::take(&mut *self.lock());
        let count: usize = closed.values().map(Vec::len).sum();
        self.count.fetch_sub(count as u64, Ordering::SeqCst);
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<TxId, Vec<oneshot::Sender<pb::NotariseResponse>>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Counters for operators and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotaryStats {
    pub requests: u64,
    pub successes: u64,
    pub refusals: u64,
    /// Ordered commands that did not decode (cannot come from a correct node).
    pub malformed_commands: u64,
    pub signatures: u64,
}

pub struct NotaryHost {
    store: Arc<Store>,
    uniqueness: Uniqueness,
    waiters: Arc<NotaryWaiters>,
    signer: Option<NodeSigner>,
    batch_signing: bool,
    /// Notary puts of the write being prepared, visible to later slots of the write.
    unwritten: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Outcomes of the write being prepared, answered once it is durable.
    outcomes: Vec<(TxId, Outcome)>,
    stats: NotaryStats,
}

impl NotaryHost {
    pub fn load(
        store: Arc<Store>,
        waiters: Arc<NotaryWaiters>,
        signer: Option<NodeSigner>,
        batch_signing: bool,
    ) -> Result<NotaryHost, StoreError> {
        let uniqueness = open_uniqueness(&store)?;
        Ok(NotaryHost {
            store,
            uniqueness,
            waiters,
            signer,
            batch_signing,
            unwritten: BTreeMap::new(),
            outcomes: Vec::new(),
            stats: NotaryStats::default(),
        })
    }

    pub fn stats(&self) -> &NotaryStats {
        &self.stats
    }

    pub fn apply(&mut self, _slot: Slot, value: &Value, write: &mut WriteSet) {
        let Value::Batch(batch) = value else {
            return;
        };
        let mut requests: Vec<ValidatedRequest> = Vec::new();
        for command in batch.commands.iter().filter(|c| c.tag == Tag::Notary) {
            match NotaryCommand::decode(&command.payload) {
                Ok(NotaryCommand::Notarise(request)) => requests.push(request),
                Err(_) => self.stats.malformed_commands += 1,
            }
        }
        // Every batch moves the agreed time, notary requests or not, on every replica.
        let view = WriteView {
            unwritten: &self.unwritten,
            table: NotaryTable(&self.store),
        };
        let applied = match self.uniqueness.apply_batch(&view, batch.time_ms, &requests) {
            Ok(applied) => applied,
            // Answering from a guess would let replicas diverge: stop the node.
            Err(e) => panic!("notary index unreadable, the node stops: {e}"),
        };
        for Put { key, value } in applied.puts {
            write.puts.push((Table::Notary, key.clone(), value.clone()));
            self.unwritten.insert(key, value);
        }
        self.stats.requests += applied.outcomes.len() as u64;
        self.outcomes.extend(applied.outcomes);
    }

    /// The write is durable: answer the callers waiting here.
    pub fn committed(&mut self) {
        self.unwritten.clear();
        let outcomes = std::mem::take(&mut self.outcomes);
        let mut signed_here = Vec::new();
        for (tx_id, outcome) in outcomes {
            match outcome {
                Outcome::Success => {
                    self.stats.successes += 1;
                    if self.waiters.has_waiters(&tx_id) && !signed_here.contains(&tx_id) {
                        signed_here.push(tx_id);
                    }
                }
                refused => {
                    self.stats.refusals += 1;
                    let error = wire::outcome_error(&refused)
                        .unwrap_or_else(|| wire::unavailable("no answer for this outcome"));
                    for answer in self.waiters.take(&tx_id) {
                        let _ = answer.send(wire::error_response(tx_id.as_bytes(), error.clone()));
                    }
                }
            }
        }
        if signed_here.is_empty() {
            return;
        }
        let signatures = self.sign(&signed_here);
        for (tx_id, signature) in signed_here.iter().zip(signatures) {
            let response = match signature {
                Ok(signature) => wire::signed_response(tx_id, vec![signature]),
                Err(why) => wire::error_response(tx_id.as_bytes(), wire::unavailable(why)),
            };
            for answer in self.waiters.take(tx_id) {
                let _ = answer.send(response.clone());
            }
        }
    }

    /// One signature per transaction, or one Merkle root for all of them.
    fn sign(&mut self, tx_ids: &[TxId]) -> Vec<Result<pb::NodeSignature, String>> {
        let Some(signer) = &self.signer else {
            let why = "this node has no notary signing identity".to_string();
            return tx_ids.iter().map(|_| Err(why.clone())).collect();
        };
        if self.batch_signing && tx_ids.len() > 1 {
            self.stats.signatures += 1;
            return match signer.sign_batch(tx_ids) {
                Ok(signatures) => signatures.into_iter().map(Ok).collect(),
                Err(e) => tx_ids.iter().map(|_| Err(e.to_string())).collect(),
            };
        }
        self.stats.signatures += tx_ids.len() as u64;
        tx_ids
            .iter()
            .map(|tx_id| signer.sign_one(tx_id).map_err(|e| e.to_string()))
            .collect()
    }

    /// Callers of commands this node gave up on are told to retry (the tx id makes a
    /// retry safe: a notarised transaction is notarised again).
    pub fn abandoned(&mut self, commands: &[Command]) {
        for command in commands.iter().filter(|c| c.tag == Tag::Notary) {
            if let Ok(NotaryCommand::Notarise(request)) = NotaryCommand::decode(&command.payload) {
                let tx_id = *request.tx_id();
                let error = wire::unavailable("this node lost track of the request; retry it");
                for answer in self.waiters.take(&tx_id) {
                    let _ = answer.send(wire::error_response(tx_id.as_bytes(), error.clone()));
                }
            }
        }
    }

    pub fn majority_reachable(&mut self, reachable: bool) {
        self.waiters
            .majority_reachable
            .store(reachable, Ordering::SeqCst);
    }

    /// The notary table was replaced (state transfer).
    pub fn reload(&mut self) -> Result<(), StoreError> {
        self.uniqueness = open_uniqueness(&self.store)?;
        self.unwritten.clear();
        self.outcomes.clear();
        Ok(())
    }
}

fn open_uniqueness(store: &Store) -> Result<Uniqueness, StoreError> {
    Uniqueness::open(&NotaryTable(store)).map_err(|e| match e {
        notary_adapter::IndexError::Read(e) => e,
        corrupt => StoreError::Corrupt {
            path: store.path().to_path_buf(),
            what: format!("notary table: {corrupt}"),
        },
    })
}
