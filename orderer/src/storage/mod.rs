//! The orderer's durable store: the consensus core's records and the applications'
//! tables in one RocksDB database, so that one synced write covers both.
//!
//! The store is byte-oriented: it never decodes records or application values. Callers
//! hand it each record's `slot_bound` alongside the encoded bytes, which is all that
//! compaction needs.
//!
//! # Layout
//!
//! Column families (RocksDB applies a write batch atomically across all of them):
//!
//! * `records`: `seq (u64 BE)` → record bytes. Big-endian keys make iteration order
//!   equal write order; `seq` only grows, also across restarts and compactions.
//! * `record_bounds`: `slot_bound (u64 BE) ++ seq (u64 BE)` → record length. A
//!   secondary index so compaction finds its victims without scanning the log.
//!   Records without a bound are not indexed and are never compacted.
//! * `meta`: format version, apply point, compaction point, sequence floor and the
//!   live-record counters.
//! * one column family per [`Table`] for the applications.
//!
//! # Compaction cost
//!
//! Advancing the compaction point from `old` to `new` seeks the index once and visits
//! exactly the index entries in `[old, new)` (everything below `old` was deleted by
//! earlier compactions and new records below the compaction point are never stored),
//! so each record is visited once over its lifetime. The resulting deletions travel in
//! the same synced batch as the rest of the write, so a crash cannot separate them
//! from the compaction point. The batch grows with the number of records compacted at
//! once, which the core's log window bounds. Deleted records leave tombstones that
//! RocksDB drops in background compactions; until then `recover` steps over them.
//!
//! # Failure model
//!
//! Every non-empty [`Store::commit`] is one RocksDB write batch with `sync = true`:
//! after it returns `Ok`, the write survives `kill -9` and power loss; after a crash
//! during it, either all of it or none of it is visible. After a failed commit the
//! store refuses further writes ([`StoreError::Failed`]): whether the failed batch
//! reached the disk is unknown, and retrying a failed fsync can silently lose data, so
//! the node must restart and recover.

mod error;
mod store;

#[cfg(test)]
mod tests;

pub use error::StoreError;
pub use store::{
    RecordBytes, Recovered, ScanPage, Store, StoreConfig, StoreStats, Table, WriteSet,
};
