//! The notary's durable state: which states are consumed and by which transaction, which
//! transactions are committed, and the log's agreed time, as key-value pairs the node
//! keeps in one table and replicates through the log (every replica writes the same puts).
//!
//! Layout (part of the on-disk format):
//!
//! | key | value |
//! |---|---|
//! | `0x01` ‖ tx hash (32) ‖ output index (u32 BE) | `0x01` ‖ consuming tx id (32) |
//! | `0x02` ‖ tx id (32) | `0x01` |
//! | `0x03` | agreed time, ms (u64 BE) |
//!
//! The leading `0x01` of a value is its format version. Keys of one kind sort in
//! `StateRef` order, so the consumed states of one transaction are adjacent.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;

use crate::types::{HASH_BYTES, StateRef, TxId};

const SPENT_PREFIX: u8 = 0x01;
const COMMITTED_PREFIX: u8 = 0x02;
const AGREED_TIME_KEY: [u8; 1] = [0x03];
const VALUE_VERSION: u8 = 0x01;

/// One write for the node's batch, in the notary's table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Put {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

impl Put {
    pub(crate) fn consumed(state: &StateRef, by: &TxId) -> Put {
        let mut value = Vec::with_capacity(1 + HASH_BYTES);
        value.push(VALUE_VERSION);
        value.extend_from_slice(by.as_bytes());
        Put {
            key: spent_key(state),
            value,
        }
    }

    pub(crate) fn committed(tx_id: &TxId) -> Put {
        Put {
            key: committed_key(tx_id),
            value: vec![VALUE_VERSION],
        }
    }

    pub(crate) fn agreed_time(time_ms: u64) -> Put {
        Put {
            key: AGREED_TIME_KEY.to_vec(),
            value: time_ms.to_be_bytes().to_vec(),
        }
    }
}

/// The key under which `state`'s consumption is recorded.
pub fn spent_key(state: &StateRef) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + HASH_BYTES + 4);
    key.push(SPENT_PREFIX);
    key.extend_from_slice(&state.tx_hash);
    key.extend_from_slice(&state.output_index.to_be_bytes());
    key
}

/// The key that marks `tx_id` as committed.
pub fn committed_key(tx_id: &TxId) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + HASH_BYTES);
    key.push(COMMITTED_PREFIX);
    key.extend_from_slice(tx_id.as_bytes());
    key
}

/// What the uniqueness state machine reads. Only inputs are ever recorded as consumed:
/// references are checked, never consumed (as in Corda).
pub trait SpentIndex {
    type Error;
    /// The transaction that consumed `state`, if any.
    fn consumed(&self, state: &StateRef) -> Result<Option<TxId>, Self::Error>;
    /// Whether `tx_id` was notarised (with or without inputs).
    fn committed(&self, tx_id: &TxId) -> Result<bool, Self::Error>;
    /// The agreed time persisted with the state; `None` before the first batch.
    fn agreed_time_ms(&self) -> Result<Option<u64>, Self::Error>;
}

/// Raw reads of the notary's table: all a node has to provide (e.g. over a RocksDB
/// column family); [`SpentIndex`] follows from it.
pub trait KeyValueRead {
    type Error;
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error>;
}

impl<R: KeyValueRead + ?Sized> KeyValueRead for &R {
    type Error = R::Error;
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error> {
        (**self).get(key)
    }
}

/// A failed read of the notary's table. The node must stop rather than answer: a guess
/// would let replicas diverge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexError<E> {
    Read(E),
    /// A stored value that does not have the documented layout.
    Corrupt {
        key: Vec<u8>,
        reason: &'static str,
    },
}

impl<E: fmt::Display> fmt::Display for IndexError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexError::Read(e) => write!(f, "reading the notary's table: {e}"),
            IndexError::Corrupt { key, reason } => {
                write!(f, "corrupt notary entry under key ")?;
                for byte in key {
                    write!(f, "{byte:02x}")?;
                }
                write!(f, ": {reason}")
            }
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for IndexError<E> {}

impl<R: KeyValueRead> SpentIndex for R {
    type Error = IndexError<R::Error>;

    fn consumed(&self, state: &StateRef) -> Result<Option<TxId>, Self::Error> {
        let key = spent_key(state);
        let Some(value) = self.get(&key).map_err(IndexError::Read)? else {
            return Ok(None);
        };
        match value.split_first() {
            Some((&VALUE_VERSION, id)) => {
                TxId::from_slice(id).map(Some).ok_or(IndexError::Corrupt {
                    key,
                    reason: "consuming transaction id is not 32 bytes",
                })
            }
            _ => Err(IndexError::Corrupt {
                key,
                reason: "unknown value format",
            }),
        }
    }

    fn committed(&self, tx_id: &TxId) -> Result<bool, Self::Error> {
        let key = committed_key(tx_id);
        match self.get(&key).map_err(IndexError::Read)? {
            None => Ok(false),
            Some(value) if value == [VALUE_VERSION] => Ok(true),
            Some(_) => Err(IndexError::Corrupt {
                key,
                reason: "unknown value format",
            }),
        }
    }

    fn agreed_time_ms(&self) -> Result<Option<u64>, Self::Error> {
        match self.get(&AGREED_TIME_KEY).map_err(IndexError::Read)? {
            None => Ok(None),
            Some(value) => match <[u8; 8]>::try_from(value.as_slice()) {
                Ok(bytes) => Ok(Some(u64::from_be_bytes(bytes))),
                Err(_) => Err(IndexError::Corrupt {
                    key: AGREED_TIME_KEY.to_vec(),
                    reason: "agreed time is not 8 bytes",
                }),
            },
        }
    }
}

/// Puts not yet committed, read before the table under them: a node that applies several
/// slots before one write wraps its table in this so each slot sees the ones before it.
/// It holds every put recorded since [`new`](Self::new), so it lives for one write only.
#[derive(Debug)]
pub struct Overlay<R> {
    base: R,
    pending: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl<R> Overlay<R> {
    pub fn new(base: R) -> Overlay<R> {
        Overlay {
            base,
            pending: BTreeMap::new(),
        }
    }

    /// Makes `puts` visible to later reads (a later put of one key wins).
    pub fn record(&mut self, puts: &[Put]) {
        for put in puts {
            self.pending.insert(put.key.clone(), put.value.clone());
        }
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    pub fn into_base(self) -> R {
        self.base
    }
}

impl<R: KeyValueRead> KeyValueRead for Overlay<R> {
    type Error = R::Error;
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error> {
        match self.pending.get(key) {
            Some(value) => Ok(Some(value.clone())),
            None => self.base.get(key),
        }
    }
}

/// The notary's table in memory, for tests and tools. Nothing bounds it but what is put in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryStore {
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    pub fn apply(&mut self, puts: impl IntoIterator<Item = Put>) {
        for put in puts {
            self.entries.insert(put.key, put.value);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry, in key order (what a state transfer would ship).
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries
            .iter()
            .map(|(key, value)| (key.as_slice(), value.as_slice()))
    }
}

impl KeyValueRead for MemoryStore {
    type Error = Infallible;
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Infallible> {
        Ok(self.entries.get(key).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn puts_read_back_through_the_typed_view() {
        let state = StateRef::new([4; 32], 2);
        let tx = TxId([8; 32]);
        let mut store = MemoryStore::new();
        assert_eq!(store.consumed(&state), Ok(None));
        assert_eq!(store.committed(&tx), Ok(false));
        assert_eq!(store.agreed_time_ms(), Ok(None));
        store.apply([
            Put::consumed(&state, &tx),
            Put::committed(&tx),
            Put::agreed_time(77),
        ]);
        assert_eq!(store.consumed(&state), Ok(Some(tx)));
        assert_eq!(store.committed(&tx), Ok(true));
        assert_eq!(store.agreed_time_ms(), Ok(Some(77)));
        assert_eq!(spent_key(&state).len(), 37);
        assert_eq!(spent_key(&state)[0], SPENT_PREFIX);
    }

    #[test]
    fn overlay_reads_pending_puts_first() {
        let mut store = MemoryStore::new();
        store.apply([Put::agreed_time(5)]);
        let mut overlay = Overlay::new(&store);
        assert_eq!(overlay.agreed_time_ms(), Ok(Some(5)));
        overlay.record(&[Put::agreed_time(9), Put::committed(&TxId([1; 32]))]);
        assert_eq!(overlay.agreed_time_ms(), Ok(Some(9)));
        assert_eq!(overlay.committed(&TxId([1; 32])), Ok(true));
        assert_eq!(overlay.pending_len(), 2);
        assert_eq!(store.agreed_time_ms(), Ok(Some(5)));
    }

    #[test]
    fn corrupt_values_are_errors_not_guesses() {
        let state = StateRef::new([4; 32], 2);
        let mut store = MemoryStore::new();
        store.apply([
            Put {
                key: spent_key(&state),
                value: vec![VALUE_VERSION, 1, 2],
            },
            Put {
                key: committed_key(&TxId([3; 32])),
                value: vec![9],
            },
            Put {
                key: AGREED_TIME_KEY.to_vec(),
                value: vec![1],
            },
        ]);
        assert!(matches!(
            store.consumed(&state),
            Err(IndexError::Corrupt { .. })
        ));
        assert!(matches!(
            store.committed(&TxId([3; 32])),
            Err(IndexError::Corrupt { .. })
        ));
        let error = store.agreed_time_ms().unwrap_err();
        assert_eq!(
            error.to_string(),
            "corrupt notary entry under key 03: agreed time is not 8 bytes"
        );
    }
}
