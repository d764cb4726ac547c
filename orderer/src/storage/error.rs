use std::fmt;
use std::path::PathBuf;

use super::store::Table;

/// Why a storage operation failed. I/O failures and corrupt data come back as values;
/// the store never panics on them.
#[derive(Debug)]
pub enum StoreError {
    /// The store's path exists but is not a directory.
    NotADirectory { path: PathBuf },
    /// The store's directory could not be created.
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// RocksDB refused to open the database (unreadable files, corruption detected at
    /// open, another process holding the lock, ...).
    Open {
        path: PathBuf,
        source: rocksdb::Error,
    },
    /// A read failed.
    Read {
        path: PathBuf,
        what: &'static str,
        source: rocksdb::Error,
    },
    /// The synced write failed; whether it reached the disk is unknown.
    Write {
        path: PathBuf,
        source: rocksdb::Error,
    },
    /// The application tables are being replaced by a state transfer.
    TransferInProgress { path: PathBuf },
    /// The database holds data this code never writes.
    Corrupt { path: PathBuf, what: String },
    /// The database was written by an incompatible version of this store.
    UnsupportedFormat {
        path: PathBuf,
        found: u64,
        supported: u64,
    },
    /// A write set is larger than `StoreConfig::max_write_bytes`.
    WriteTooLarge { bytes: usize, max_bytes: usize },
    /// An application key is longer than `StoreConfig::max_key_bytes`.
    KeyTooLarge {
        table: Table,
        bytes: usize,
        max_bytes: usize,
    },
    /// A scan asked for more than `StoreConfig::max_scan_entries` entries.
    ScanTooLarge { limit: usize, max_entries: usize },
    /// A write tried to move the apply point backwards.
    ApplyPointRegressed { stored: u64, requested: u64 },
    /// The live records would exceed `StoreConfig::max_live_record_bytes`: the log is
    /// not being compacted.
    LogFull { live_bytes: u64, max_bytes: u64 },
    /// An earlier commit failed, so this store accepts no more writes.
    Failed { path: PathBuf },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::NotADirectory { path } => {
                write!(f, "store at {}: path is not a directory", path.display())
            }
            StoreError::CreateDir { path, source } => write!(
                f,
                "store at {}: cannot create directory: {source}",
                path.display()
            ),
            StoreError::Open { path, source } => {
                write!(f, "store at {}: cannot open: {source}", path.display())
            }
            StoreError::Read { path, what, source } => write!(
                f,
                "store at {}: cannot read {what}: {source}",
                path.display()
            ),
            StoreError::Write { path, source } => write!(
                f,
                "store at {}: synced write failed: {source}",
                path.display()
            ),
            StoreError::TransferInProgress { path } => write!(
                f,
                "store at {}: its application state is being replaced by a state transfer",
                path.display()
            ),
            StoreError::Corrupt { path, what } => {
                write!(f, "store at {}: corrupt data: {what}", path.display())
            }
            StoreError::UnsupportedFormat {
                path,
                found,
                supported,
            } => write!(
                f,
                "store at {}: format version {found} is not supported (this build reads {supported})",
                path.display()
            ),
            StoreError::WriteTooLarge { bytes, max_bytes } => write!(
                f,
                "write set of {bytes} bytes exceeds the limit of {max_bytes} bytes"
            ),
            StoreError::KeyTooLarge {
                table,
                bytes,
                max_bytes,
            } => write!(
                f,
                "key of {bytes} bytes for table {} exceeds the limit of {max_bytes} bytes",
                table.name()
            ),
            StoreError::ScanTooLarge { limit, max_entries } => write!(
                f,
                "scan of {limit} entries exceeds the limit of {max_entries} entries"
            ),
            StoreError::ApplyPointRegressed { stored, requested } => write!(
                f,
                "apply point cannot move back from {stored} to {requested}"
            ),
            StoreError::LogFull {
                live_bytes,
                max_bytes,
            } => write!(
                f,
                "live records would take {live_bytes} bytes, above the limit of {max_bytes} bytes; is the log being compacted?"
            ),
            StoreError::Failed { path } => write!(
                f,
                "store at {}: an earlier write failed; reopen the store to recover",
                path.display()
            ),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::CreateDir { source, .. } => Some(source),
            StoreError::Open { source, .. }
            | StoreError::Read { source, .. }
            | StoreError::Write { source, .. } => Some(source),
            _ => None,
        }
    }
}
