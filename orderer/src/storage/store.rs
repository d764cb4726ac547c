use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType, DBRecoveryMode, Direction,
    IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions,
};

use super::error::StoreError;

/// Bumped whenever the on-disk layout changes incompatibly.
const FORMAT_VERSION: u64 = 1;

const CF_DEFAULT: &str = "default";
const CF_RECORDS: &str = "records";
const CF_BOUNDS: &str = "record_bounds";
const CF_META: &str = "meta";

const META_FORMAT: &[u8] = b"format";
const META_APPLIED: &[u8] = b"applied_upto";
const META_COMPACTED: &[u8] = b"compacted_below";
/// Sequence numbers are never reused, even once compaction has deleted every record
/// (the last record key alone would then no longer tell where the sequence stood).
const META_SEQ_FLOOR: &[u8] = b"seq_floor";
const META_LIVE: &[u8] = b"live_records";
/// Present while the application tables are being replaced by a state transfer: they
/// are incomplete until it is gone.
const META_TRANSFER: &[u8] = b"transfer_in_progress";

/// What each write-set entry costs beyond its payload when checking the write limit,
/// so many tiny entries cannot slip past a limit stated in bytes.
const ENTRY_OVERHEAD: usize = 16;

/// An application table, stored in its own column family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Channel blocks, keyed by the application (e.g. channel and block number).
    Blocks,
    /// Per-channel metadata (heights, configuration).
    ChannelMeta,
    /// The notary's spent-state index.
    Notary,
}

impl Table {
    pub const ALL: [Table; 3] = [Table::Blocks, Table::ChannelMeta, Table::Notary];

    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The column family name; part of the on-disk format.
    pub fn name(self) -> &'static str {
        match self {
            Table::Blocks => "blocks",
            Table::ChannelMeta => "channel_meta",
            Table::Notary => "notary",
        }
    }
}

/// Limits on everything a caller can make the store hold in memory or on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// Largest accepted write set: record bytes, keys and values, plus a small
    /// per-entry overhead. Deletions caused by compaction are not counted: the number
    /// of live records bounds them.
    pub max_write_bytes: usize,
    /// Longest accepted application key.
    pub max_key_bytes: usize,
    /// Largest `limit` a scan accepts.
    pub max_scan_entries: usize,
    /// A scan stops once it has gathered this many key and value bytes (it may exceed
    /// it by one entry, so it always makes progress).
    pub max_scan_bytes: usize,
    /// Writes that would grow the live records beyond this are refused: a log that is
    /// never compacted must stop the node rather than fill the disk and make recovery
    /// read it all into memory.
    pub max_live_record_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_write_bytes: 64 << 20,
            max_key_bytes: 1 << 10,
            max_scan_entries: 100_000,
            max_scan_bytes: 64 << 20,
            max_live_record_bytes: 1 << 30,
        }
    }
}

/// One encoded core record and the slot bound its compaction depends on
/// (`Record::slot_bound()`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordBytes {
    pub slot_bound: Option<u64>,
    pub bytes: Vec<u8>,
}

/// Everything one loop iteration makes durable, in one synced, atomic write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteSet {
    /// Appended in order after every record already stored.
    pub records: Vec<RecordBytes>,
    /// Drop every record whose slot bound is below this, both stored ones and those in
    /// `records` (the record contract allows dropping them whenever the compaction
    /// point passes them). Records without a bound are kept. Never moves backwards: a
    /// lower value than the stored one is ignored.
    pub compact_below: Option<u64>,
    /// The applications' new apply point; must not be below the stored one.
    pub applied_upto: Option<u64>,
    /// Applied after `deletes`, so a key both deleted and put ends up put.
    pub puts: Vec<(Table, Vec<u8>, Vec<u8>)>,
    pub deletes: Vec<(Table, Vec<u8>)>,
}

impl WriteSet {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
            && self.compact_below.is_none()
            && self.applied_upto.is_none()
            && self.puts.is_empty()
            && self.deletes.is_empty()
    }

    /// The size checked against `StoreConfig::max_write_bytes`.
    pub fn size_bytes(&self) -> usize {
        let records: usize = self
            .records
            .iter()
            .map(|r| r.bytes.len() + ENTRY_OVERHEAD)
            .sum();
        let puts: usize = self
            .puts
            .iter()
            .map(|(_, k, v)| k.len() + v.len() + ENTRY_OVERHEAD)
            .sum();
        let deletes: usize = self
            .deletes
            .iter()
            .map(|(_, k)| k.len() + ENTRY_OVERHEAD)
            .sum();
        records + puts + deletes
    }
}

/// What a restarting node needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The stored core records, in write order.
    pub records: Vec<Vec<u8>>,
    /// The applications' apply point (0 for a new store).
    pub applied_upto: u64,
}

/// One page of a scan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanPage {
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// The first key not returned, if the range holds more: pass it as the next
    /// `from_key`. `None` means the scan reached the end of the range.
    pub next_key: Option<Vec<u8>>,
}

/// Counters for operators and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub next_seq: u64,
    pub applied_upto: u64,
    pub compacted_below: u64,
    pub live_records: u64,
    pub live_record_bytes: u64,
}

#[derive(Clone, Copy, Debug)]
struct State {
    stats: StoreStats,
    /// Set when a commit failed: see the module's failure model.
    failed: bool,
}

/// The orderer's durable store. `Send + Sync`: reads may run on any thread while one
/// runtime loop commits; commits are serialised internally.
pub struct Store {
    db: DB,
    path: PathBuf,
    cfg: StoreConfig,
    /// Held for the whole of a commit, so that compaction's index reads see every
    /// earlier commit and sequence numbers are handed out in write order.
    state: Mutex<State>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            // Debug output must not wait on (or deadlock against) a running commit.
            .field("stats", &self.state.try_lock().ok().map(|s| s.stats))
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store in `dir` with default limits, creating the directory and the
    /// database if missing.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(dir, StoreConfig::default())
    }

    pub fn open_with(dir: &Path, cfg: StoreConfig) -> Result<Store, StoreError> {
        let path = dir.to_path_buf();
        match std::fs::metadata(dir) {
            Ok(meta) if !meta.is_dir() => return Err(StoreError::NotADirectory { path }),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                    path: path.clone(),
                    source,
                })?;
            }
            Err(source) => return Err(StoreError::CreateDir { path, source }),
        }

        let opts = db_options();
        let mut names: Vec<String> = [CF_DEFAULT, CF_RECORDS, CF_BOUNDS, CF_META]
            .into_iter()
            .chain(Table::ALL.iter().map(|t| t.name()))
            .map(String::from)
            .collect();
        // RocksDB refuses to open a database without naming all its column families;
        // keep any a newer version added so a downgrade still opens. A failure here
        // (new or unreadable database) is left for the open itself to report.
        if let Ok(existing) = DB::list_cf(&opts, dir) {
            for name in existing {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        let descriptors = names
            .into_iter()
            .map(|name| ColumnFamilyDescriptor::new(name, db_options()));
        let db = DB::open_cf_descriptors(&opts, dir, descriptors).map_err(|source| {
            StoreError::Open {
                path: path.clone(),
                source,
            }
        })?;

        let store = Store {
            db,
            path,
            cfg,
            state: Mutex::new(State {
                stats: StoreStats::default(),
                failed: false,
            }),
        };
        let stats = store.load_stats()?;
        store.lock().stats = stats;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    pub fn stats(&self) -> StoreStats {
        self.lock().stats
    }

    /// The stored core records in write order and the apply point, read from one
    /// consistent snapshot. Costs one pass over the live records (plus any deletion
    /// tombstones RocksDB has not yet compacted away).
    pub fn recover(&self) -> Result<Recovered, StoreError> {
        let records_cf = self.cf(CF_RECORDS)?;
        let meta_cf = self.cf(CF_META)?;
        let snapshot = self.db.snapshot();
        let applied = snapshot
            .get_cf(meta_cf, META_APPLIED)
            .map_err(|source| self.read_error("apply point", source))?;
        let applied_upto = match applied {
            Some(bytes) => self.decode_u64(&bytes, "apply point")?,
            None => 0,
        };
        let mut records = Vec::new();
        for item in snapshot.iterator_cf(records_cf, IteratorMode::Start) {
            let (key, value) = item.map_err(|source| self.read_error("records", source))?;
            self.decode_u64(&key, "record key")?;
            records.push(value.into_vec());
        }
        Ok(Recovered {
            records,
            applied_upto,
        })
    }

    /// Makes `write` durable with one atomic, synced write; an empty write set costs
    /// nothing. On error nothing of `write` is guaranteed durable, and after a failed
    /// RocksDB write the store refuses further commits.
    pub fn commit(&self, write: WriteSet) -> Result<(), StoreError> {
        self.check_limits(&write)?;
        if write.is_empty() {
            return Ok(());
        }
        let mut state = self.lock();
        if state.failed {
            return Err(StoreError::Failed {
                path: self.path.clone(),
            });
        }
        let old = state.stats;
        let mut new = old;
        if let Some(applied) = write.applied_upto {
            if applied < old.applied_upto {
                return Err(StoreError::ApplyPointRegressed {
                    stored: old.applied_upto,
                    requested: applied,
                });
            }
            new.applied_upto = applied;
        }

        let records_cf = self.cf(CF_RECORDS)?;
        let bounds_cf = self.cf(CF_BOUNDS)?;
        let meta_cf = self.cf(CF_META)?;
        let mut batch = WriteBatch::default();

        new.compacted_below = old.compacted_below.max(write.compact_below.unwrap_or(0));
        if new.compacted_below > old.compacted_below {
            self.compact_into(&mut batch, old.compacted_below, &mut new)?;
            batch.put_cf(meta_cf, META_COMPACTED, new.compacted_below.to_be_bytes());
        }

        for record in &write.records {
            if record.slot_bound.is_some_and(|b| b < new.compacted_below) {
                continue;
            }
            let seq = new.next_seq;
            new.next_seq = seq
                .checked_add(1)
                .ok_or_else(|| self.corrupt("record sequence number exhausted".to_string()))?;
            let len = record.bytes.len() as u64;
            batch.put_cf(records_cf, seq.to_be_bytes(), &record.bytes);
            if let Some(bound) = record.slot_bound {
                batch.put_cf(bounds_cf, bound_key(bound, seq), len.to_be_bytes());
            }
            // Saturating: counters read from a damaged store must not panic; saturated
            // bytes trip the live-record limit instead.
            new.live_records = new.live_records.saturating_add(1);
            new.live_record_bytes = new.live_record_bytes.saturating_add(len);
        }
        if new.live_record_bytes > self.cfg.max_live_record_bytes
            && new.live_record_bytes > old.live_record_bytes
        {
            return Err(StoreError::LogFull {
                live_bytes: new.live_record_bytes,
                max_bytes: self.cfg.max_live_record_bytes,
            });
        }
        if (new.live_records, new.live_record_bytes) != (old.live_records, old.live_record_bytes) {
            batch.put_cf(
                meta_cf,
                META_LIVE,
                encode_live(new.live_records, new.live_record_bytes),
            );
        }
        if new.compacted_below > old.compacted_below {
            batch.put_cf(meta_cf, META_SEQ_FLOOR, new.next_seq.to_be_bytes());
        }
        if write.applied_upto.is_some() {
            batch.put_cf(meta_cf, META_APPLIED, new.applied_upto.to_be_bytes());
        }
        for (table, key) in &write.deletes {
            batch.delete_cf(self.cf(table.name())?, key);
        }
        for (table, key, value) in &write.puts {
            batch.put_cf(self.cf(table.name())?, key, value);
        }

        if batch.is_empty() {
            return Ok(());
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        if let Err(source) = self.db.write_opt(batch, &opts) {
            state.failed = true;
            return Err(StoreError::Write {
                path: self.path.clone(),
                source,
            });
        }
        state.stats = new;
        Ok(())
    }

    /// Streams a consistent copy of every application table and the apply point it
    /// matches (read from one RocksDB snapshot), in chunks of about `chunk_bytes`.
    /// `emit(applied_upto, entries, last)` returns false to stop early. Refused while
    /// this store's own tables are being replaced.
    pub fn export_applications(
        &self,
        chunk_bytes: usize,
        mut emit: impl FnMut(u64, Vec<(Table, Vec<u8>, Vec<u8>)>, bool) -> bool,
    ) -> Result<(), StoreError> {
        let meta_cf = self.cf(CF_META)?;
        let snapshot = self.db.snapshot();
        let read_meta = |key: &[u8], what: &'static str| {
            snapshot
                .get_cf(meta_cf, key)
                .map_err(|source| self.read_error(what, source))
        };
        if read_meta(META_TRANSFER, "transfer marker")?.is_some() {
            return Err(StoreError::TransferInProgress {
                path: self.path.clone(),
            });
        }
        let applied_upto = match read_meta(META_APPLIED, "apply point")? {
            Some(bytes) => self.decode_u64(&bytes, "apply point")?,
            None => 0,
        };
        let mut chunk = Vec::new();
        let mut bytes = 0usize;
        for table in Table::ALL {
            for item in snapshot.iterator_cf(self.cf(table.name())?, IteratorMode::Start) {
                let (key, value) = item.map_err(|source| self.read_error(table.name(), source))?;
                bytes += key.len() + value.len();
                chunk.push((table, key.into_vec(), value.into_vec()));
                if bytes >= chunk_bytes {
                    if !emit(applied_upto, std::mem::take(&mut chunk), false) {
                        return Ok(());
                    }
                    bytes = 0;
                }
            }
        }
        emit(applied_upto, chunk, true);
        Ok(())
    }

    /// Whether a state transfer was interrupted: the application tables are then
    /// incomplete and must be replaced again before anything is applied.
    pub fn transfer_in_progress(&self) -> Result<bool, StoreError> {
        let value = self
            .db
            .get_cf(self.cf(CF_META)?, META_TRANSFER)
            .map_err(|source| self.read_error("transfer marker", source))?;
        Ok(value.is_some())
    }

    /// Starts replacing the application tables: marks the transfer and empties every
    /// table, in one synced write. The core's records and the apply point stay.
    pub fn begin_transfer(&self) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_META)?, META_TRANSFER, []);
        // Keys are at most `max_key_bytes` long, so this bound is above every key.
        let end = vec![0xff; self.cfg.max_key_bytes + 1];
        for table in Table::ALL {
            batch.delete_range_cf(self.cf(table.name())?, b"".as_slice(), end.as_slice());
        }
        self.write_transfer(batch, true)
    }

    /// Adds entries of a snapshot being transferred. Not synced on its own: the synced
    /// `finish_transfer` makes every earlier write durable, and a crash before it
    /// leaves the marker, which makes the next start discard them.
    pub fn ingest_transfer(&self, entries: &[(Table, Vec<u8>, Vec<u8>)]) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        for (table, key, value) in entries {
            if key.len() > self.cfg.max_key_bytes {
                return Err(StoreError::KeyTooLarge {
                    table: *table,
                    bytes: key.len(),
                    max_bytes: self.cfg.max_key_bytes,
                });
            }
            batch.put_cf(self.cf(table.name())?, key, value);
        }
        self.write_transfer(batch, false)
    }

    /// Completes a transfer: the application tables now match `applied_upto`.
    pub fn finish_transfer(&self, applied_upto: u64) -> Result<(), StoreError> {
        let meta_cf = self.cf(CF_META)?;
        let mut batch = WriteBatch::default();
        batch.delete_cf(meta_cf, META_TRANSFER);
        batch.put_cf(meta_cf, META_APPLIED, applied_upto.to_be_bytes());
        {
            let state = self.lock();
            if applied_upto < state.stats.applied_upto {
                return Err(StoreError::ApplyPointRegressed {
                    stored: state.stats.applied_upto,
                    requested: applied_upto,
                });
            }
        }
        self.write_transfer(batch, true)?;
        self.lock().stats.applied_upto = applied_upto;
        Ok(())
    }

    fn write_transfer(&self, batch: WriteBatch, sync: bool) -> Result<(), StoreError> {
        let mut state = self.lock();
        if state.failed {
            return Err(StoreError::Failed {
                path: self.path.clone(),
            });
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        if let Err(source) = self.db.write_opt(batch, &opts) {
            state.failed = true;
            return Err(StoreError::Write {
                path: self.path.clone(),
                source,
            });
        }
        Ok(())
    }

    /// Point read of an application table.
    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let value = self
            .db
            .get_pinned_cf(self.cf(table.name())?, key)
            .map_err(|source| self.read_error(table.name(), source))?;
        Ok(value.map(|v| v.to_vec()))
    }

    /// Up to `limit` entries of `table` with keys at or after `from_key`, in key order.
    pub fn scan(
        &self,
        table: Table,
        from_key: &[u8],
        limit: usize,
    ) -> Result<ScanPage, StoreError> {
        self.scan_range(table, from_key, None, limit)
    }

    /// Like [`Store::scan`], stopping before `end_key` (exclusive) if given. A prefix
    /// scan is a range scan up to the prefix's successor.
    pub fn scan_range(
        &self,
        table: Table,
        from_key: &[u8],
        end_key: Option<&[u8]>,
        limit: usize,
    ) -> Result<ScanPage, StoreError> {
        if limit > self.cfg.max_scan_entries {
            return Err(StoreError::ScanTooLarge {
                limit,
                max_entries: self.cfg.max_scan_entries,
            });
        }
        let mut opts = ReadOptions::default();
        if let Some(end) = end_key {
            opts.set_iterate_upper_bound(end);
        }
        let iter = self.db.iterator_cf_opt(
            self.cf(table.name())?,
            opts,
            IteratorMode::From(from_key, Direction::Forward),
        );
        let mut page = ScanPage::default();
        let mut bytes = 0usize;
        for item in iter {
            let (key, value) = item.map_err(|source| self.read_error(table.name(), source))?;
            if page.entries.len() >= limit || bytes >= self.cfg.max_scan_bytes {
                page.next_key = Some(key.into_vec());
                break;
            }
            bytes += key.len() + value.len();
            page.entries.push((key.into_vec(), value.into_vec()));
        }
        Ok(page)
    }

    fn check_limits(&self, write: &WriteSet) -> Result<(), StoreError> {
        let bytes = write.size_bytes();
        if bytes > self.cfg.max_write_bytes {
            return Err(StoreError::WriteTooLarge {
                bytes,
                max_bytes: self.cfg.max_write_bytes,
            });
        }
        let keys = write
            .puts
            .iter()
            .map(|(t, k, _)| (t, k))
            .chain(write.deletes.iter().map(|(t, k)| (t, k)));
        for (table, key) in keys {
            if key.len() > self.cfg.max_key_bytes {
                return Err(StoreError::KeyTooLarge {
                    table: *table,
                    bytes: key.len(),
                    max_bytes: self.cfg.max_key_bytes,
                });
            }
        }
        Ok(())
    }

    /// Adds to `batch` the deletion of every record with a slot bound in
    /// `[from, new.compacted_below)`, and accounts for them in `new`. Nothing below
    /// `from` is left to delete, so the index is read only where there is work.
    fn compact_into(
        &self,
        batch: &mut WriteBatch,
        from: u64,
        new: &mut StoreStats,
    ) -> Result<(), StoreError> {
        let records_cf = self.cf(CF_RECORDS)?;
        let bounds_cf = self.cf(CF_BOUNDS)?;
        let lower = bound_key(from, 0);
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(bound_key(new.compacted_below, 0));
        let iter = self.db.iterator_cf_opt(
            bounds_cf,
            opts,
            IteratorMode::From(&lower, Direction::Forward),
        );
        for item in iter {
            let (key, value) = item.map_err(|source| self.read_error("record index", source))?;
            if key.len() != 16 {
                return Err(self.corrupt(format!(
                    "record index key of {} bytes, expected 16",
                    key.len()
                )));
            }
            let seq = &key[8..];
            let len = self.decode_u64(&value, "record index entry")?;
            batch.delete_cf(records_cf, seq);
            batch.delete_cf(bounds_cf, &key);
            match (
                new.live_records.checked_sub(1),
                new.live_record_bytes.checked_sub(len),
            ) {
                (Some(records), Some(bytes)) => {
                    new.live_records = records;
                    new.live_record_bytes = bytes;
                }
                _ => {
                    return Err(self.corrupt(
                        "record index lists more records than the live counters".to_string(),
                    ));
                }
            }
        }
        Ok(())
    }

    fn load_stats(&self) -> Result<StoreStats, StoreError> {
        let meta_cf = self.cf(CF_META)?;
        let records_cf = self.cf(CF_RECORDS)?;
        let read = |key: &[u8], what: &'static str| -> Result<Option<Vec<u8>>, StoreError> {
            self.db
                .get_cf(meta_cf, key)
                .map_err(|source| self.read_error(what, source))
        };
        let last_key = match self.db.iterator_cf(records_cf, IteratorMode::End).next() {
            Some(item) => {
                let (key, _) = item.map_err(|source| self.read_error("records", source))?;
                Some(self.decode_u64(&key, "record key")?)
            }
            None => None,
        };

        match read(META_FORMAT, "format version")? {
            Some(bytes) => {
                let found = self.decode_u64(&bytes, "format version")?;
                if found != FORMAT_VERSION {
                    return Err(StoreError::UnsupportedFormat {
                        path: self.path.clone(),
                        found,
                        supported: FORMAT_VERSION,
                    });
                }
            }
            None => {
                if last_key.is_some() {
                    return Err(self.corrupt("records stored without a format version".into()));
                }
                let mut batch = WriteBatch::default();
                batch.put_cf(meta_cf, META_FORMAT, FORMAT_VERSION.to_be_bytes());
                let mut opts = WriteOptions::default();
                opts.set_sync(true);
                self.db
                    .write_opt(batch, &opts)
                    .map_err(|source| StoreError::Write {
                        path: self.path.clone(),
                        source,
                    })?;
            }
        }

        let u64_or_zero = |key: &[u8], what: &'static str| -> Result<u64, StoreError> {
            match read(key, what)? {
                Some(bytes) => self.decode_u64(&bytes, what),
                None => Ok(0),
            }
        };
        let applied_upto = u64_or_zero(META_APPLIED, "apply point")?;
        let compacted_below = u64_or_zero(META_COMPACTED, "compaction point")?;
        let seq_floor = u64_or_zero(META_SEQ_FLOOR, "sequence floor")?;
        let (live_records, live_record_bytes) = match read(META_LIVE, "live record counters")? {
            Some(bytes) => match bytes.as_slice().try_into() {
                Ok(raw) => decode_live(raw),
                Err(_) => {
                    return Err(self.corrupt(format!(
                        "live record counters of {} bytes, expected 16",
                        bytes.len()
                    )));
                }
            },
            None => (0, 0),
        };
        let after_last = match last_key {
            Some(seq) => seq
                .checked_add(1)
                .ok_or_else(|| self.corrupt("record sequence number at its maximum".to_string()))?,
            None => 0,
        };
        Ok(StoreStats {
            next_seq: after_last.max(seq_floor),
            applied_upto,
            compacted_below,
            live_records,
            live_record_bytes,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is replaced whole, only after a successful write, so a panic
        // elsewhere while the lock was held cannot have left it inconsistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cf(&self, name: &str) -> Result<&ColumnFamily, StoreError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| self.corrupt(format!("column family {name} missing")))
    }

    fn decode_u64(&self, bytes: &[u8], what: &str) -> Result<u64, StoreError> {
        match bytes.try_into() {
            Ok(raw) => Ok(u64::from_be_bytes(raw)),
            Err(_) => Err(self.corrupt(format!("{what} of {} bytes, expected 8", bytes.len()))),
        }
    }

    fn read_error(&self, what: &'static str, source: rocksdb::Error) -> StoreError {
        StoreError::Read {
            path: self.path.clone(),
            what,
            source,
        }
    }

    fn corrupt(&self, what: String) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            what,
        }
    }
}

fn bound_key(bound: u64, seq: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&bound.to_be_bytes());
    key[8..].copy_from_slice(&seq.to_be_bytes());
    key
}

fn encode_live(records: u64, bytes: u64) -> [u8; 16] {
    let mut raw = [0; 16];
    raw[..8].copy_from_slice(&records.to_be_bytes());
    raw[8..].copy_from_slice(&bytes.to_be_bytes());
    raw
}

fn decode_live(raw: [u8; 16]) -> (u64, u64) {
    let mut records = [0; 8];
    let mut bytes = [0; 8];
    records.copy_from_slice(&raw[..8]);
    bytes.copy_from_slice(&raw[8..]);
    (u64::from_be_bytes(records), u64::from_be_bytes(bytes))
}

fn db_options() -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    // Built without compression libraries: records and blocks are small or already
    // dense, and this keeps the native build small.
    opts.set_compression_type(DBCompressionType::None);
    // Every write is synced, so a damaged WAL tail can only hold writes that were
    // never acknowledged: recover up to it instead of refusing to open.
    opts.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
    opts.set_paranoid_checks(true);
    // Bound memory and disk beyond the data itself: memtables across all column
    // families, WAL kept alive by rarely written column families, open files, and
    // RocksDB's own info logs and manifest.
    opts.set_write_buffer_size(16 << 20);
    opts.set_db_write_buffer_size(64 << 20);
    opts.set_max_total_wal_size(128 << 20);
    opts.set_max_open_files(512);
    opts.set_keep_log_file_num(4);
    opts.set_max_log_file_size(8 << 20);
    opts.set_max_manifest_file_size(64 << 20);
    opts
}
