use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::*;

fn record(bound: Option<u64>, bytes: &[u8]) -> RecordBytes {
    RecordBytes {
        slot_bound: bound,
        bytes: bytes.to_vec(),
    }
}

fn scan_all(store: &Store, table: Table) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut from = Vec::new();
    loop {
        let limit = store.config().max_scan_entries.min(1000);
        let page = store.scan(table, &from, limit).expect("scan");
        out.extend(page.entries);
        match page.next_key {
            Some(next) => from = next,
            None => return out,
        }
    }
}

#[test]
fn store_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
}

#[test]
fn round_trip_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.recover().unwrap(), Recovered::default());
        store
            .commit(WriteSet {
                records: vec![record(Some(3), b"first"), record(None, b"second")],
                applied_upto: Some(7),
                puts: vec![
                    (Table::Blocks, b"ch1/0001".to_vec(), b"block one".to_vec()),
                    (Table::Blocks, b"ch1/0002".to_vec(), b"block two".to_vec()),
                    (Table::Blocks, b"ch2/0001".to_vec(), b"other".to_vec()),
                    (Table::Notary, b"state-a".to_vec(), b"spent".to_vec()),
                ],
                ..WriteSet::default()
            })
            .unwrap();
        store
            .commit(WriteSet {
                records: vec![record(Some(1), b"third")],
                applied_upto: Some(9),
                puts: vec![(Table::ChannelMeta, b"ch1".to_vec(), b"height 2".to_vec())],
                deletes: vec![(Table::Blocks, b"ch2/0001".to_vec())],
                ..WriteSet::default()
            })
            .unwrap();
        // Nothing to write: no sync, no change.
        store.commit(WriteSet::default()).unwrap();
    }

    let store = Store::open(dir.path()).unwrap();
    let recovered = store.recover().unwrap();
    assert_eq!(
        recovered.records,
        vec![b"first".to_vec(), b"second".to_vec(), b"third".to_vec()]
    );
    assert_eq!(recovered.applied_upto, 9);
    assert_eq!(
        store.get(Table::Blocks, b"ch1/0002").unwrap(),
        Some(b"block two".to_vec())
    );
    assert_eq!(store.get(Table::Blocks, b"ch2/0001").unwrap(), None);
    assert_eq!(
        store.get(Table::ChannelMeta, b"ch1").unwrap(),
        Some(b"height 2".to_vec())
    );
    // Tables are separate namespaces.
    assert_eq!(store.get(Table::Notary, b"ch1/0001").unwrap(), None);
    assert_eq!(
        store.get(Table::Notary, b"state-a").unwrap(),
        Some(b"spent".to_vec())
    );

    let page = store
        .scan_range(Table::Blocks, b"ch1/", Some(b"ch10"), 10)
        .unwrap();
    assert_eq!(
        page.entries,
        vec![
            (b"ch1/0001".to_vec(), b"block one".to_vec()),
            (b"ch1/0002".to_vec(), b"block two".to_vec()),
        ]
    );
    assert_eq!(page.next_key, None);
    let page = store.scan(Table::Blocks, b"ch1/0002", 10).unwrap();
    assert_eq!(page.entries.len(), 1);

    let stats = store.stats();
    assert_eq!(stats.next_seq, 3);
    assert_eq!(stats.live_records, 3);
    assert_eq!(stats.live_record_bytes, 5 + 6 + 5);
}

#[test]
fn later_puts_win_over_deletes_in_one_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .commit(WriteSet {
            puts: vec![(Table::Notary, b"k".to_vec(), b"new".to_vec())],
            deletes: vec![(Table::Notary, b"k".to_vec())],
            ..WriteSet::default()
        })
        .unwrap();
    assert_eq!(
        store.get(Table::Notary, b"k").unwrap(),
        Some(b"new".to_vec())
    );
}

#[test]
fn compaction_drops_records_below_the_point_and_keeps_order() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store
            .commit(WriteSet {
                records: vec![
                    record(Some(5), b"a5"),
                    record(None, b"compact-0"),
                    record(Some(12), b"b12"),
                    record(Some(9), b"c9"),
                    record(Some(10), b"d10"),
                ],
                ..WriteSet::default()
            })
            .unwrap();
        store
            .commit(WriteSet {
                records: vec![
                    record(Some(2), b"e2-same-write"),
                    record(Some(20), b"f20"),
                    record(None, b"compact-10"),
                ],
                compact_below: Some(10),
                applied_upto: Some(10),
                ..WriteSet::default()
            })
            .unwrap();
        assert_eq!(store.stats().compacted_below, 10);
        // A lower point is ignored; records below the stored point are not kept.
        store
            .commit(WriteSet {
                records: vec![record(Some(4), b"g4-late"), record(Some(11), b"h11")],
                compact_below: Some(3),
                ..WriteSet::default()
            })
            .unwrap();
    }

    let store = Store::open(dir.path()).unwrap();
    let expected: Vec<Vec<u8>> = [
        &b"compact-0"[..],
        b"b12",
        b"d10",
        b"f20",
        b"compact-10",
        b"h11",
    ]
    .iter()
    .map(|r| r.to_vec())
    .collect();
    assert_eq!(store.recover().unwrap().records, expected);
    let stats = store.stats();
    assert_eq!(stats.compacted_below, 10);
    assert_eq!(stats.live_records, 6);
    assert_eq!(
        stats.live_record_bytes,
        expected.iter().map(|r| r.len() as u64).sum::<u64>()
    );

    // Compact everything with a bound, then check sequence numbers keep growing.
    store
        .commit(WriteSet {
            compact_below: Some(100),
            ..WriteSet::default()
        })
        .unwrap();
    let next_seq = store.stats().next_seq;
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.stats().next_seq, next_seq);
    store
        .commit(WriteSet {
            records: vec![record(Some(100), b"after")],
            ..WriteSet::default()
        })
        .unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.recover().unwrap().records,
        vec![
            b"compact-0".to_vec(),
            b"compact-10".to_vec(),
            b"after".to_vec()
        ]
    );
    assert_eq!(store.stats().live_records, 3);
}

#[test]
fn opening_a_regular_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-store");
    std::fs::write(&file, b"hello").unwrap();
    let err = Store::open(&file).unwrap_err();
    assert!(matches!(err, StoreError::NotADirectory { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("not-a-store"), "{message}");
    assert!(message.contains("not a directory"), "{message}");

    // A path below a regular file cannot be created.
    let err = Store::open(&file.join("sub")).unwrap_err();
    assert!(matches!(err, StoreError::CreateDir { .. }), "{err:?}");
}

#[test]
fn damaged_or_locked_databases_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // RocksDB's lock keeps a second opener out.
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    drop(store);

    std::fs::write(dir.path().join("CURRENT"), b"MANIFEST-999999\n").unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert!(err.to_string().contains("cannot open"), "{err}");
}

#[test]
fn limits_are_enforced_with_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        max_write_bytes: 1000,
        max_key_bytes: 8,
        max_scan_entries: 5,
        max_scan_bytes: 30,
        max_live_record_bytes: 1500,
    };
    let store = Store::open_with(dir.path(), cfg).unwrap();

    let err = store
        .commit(WriteSet {
            records: vec![record(Some(1), &[0; 990])],
            ..WriteSet::default()
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::WriteTooLarge { .. }), "{err}");

    let err = store
        .commit(WriteSet {
            deletes: vec![(Table::Blocks, vec![0; 9])],
            ..WriteSet::default()
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::KeyTooLarge { .. }), "{err}");

    let err = store.scan(Table::Blocks, b"", 6).unwrap_err();
    assert!(matches!(err, StoreError::ScanTooLarge { .. }), "{err}");

    store
        .commit(WriteSet {
            records: vec![record(Some(1), &[0; 900])],
            applied_upto: Some(5),
            ..WriteSet::default()
        })
        .unwrap();
    let err = store
        .commit(WriteSet {
            applied_upto: Some(4),
            ..WriteSet::default()
        })
        .unwrap_err();
    assert!(
        matches!(err, StoreError::ApplyPointRegressed { .. }),
        "{err}"
    );

    let err = store
        .commit(WriteSet {
            records: vec![record(Some(2), &[0; 700])],
            ..WriteSet::default()
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::LogFull { .. }), "{err}");
    // Compacting in the same write makes room.
    store
        .commit(WriteSet {
            records: vec![record(Some(2), &[0; 700])],
            compact_below: Some(2),
            ..WriteSet::default()
        })
        .unwrap();
    assert_eq!(store.stats().live_record_bytes, 700);

    // Scans page by entries and by bytes.
    let puts = (0u8..7)
        .map(|i| (Table::Notary, vec![b'k', i], vec![i; 10]))
        .collect();
    store
        .commit(WriteSet {
            puts,
            ..WriteSet::default()
        })
        .unwrap();
    let page = store.scan(Table::Notary, b"", 5).unwrap();
    assert_eq!(
        page.entries.len(),
        3,
        "byte budget of 30 holds three entries"
    );
    assert_eq!(page.next_key, Some(vec![b'k', 3]));
    assert_eq!(scan_all(&store, Table::Notary).len(), 7);
    let page = store.scan(Table::Notary, b"", 0).unwrap();
    assert!(page.entries.is_empty());
    assert_eq!(page.next_key, Some(vec![b'k', 0]));
}

const WRITER_DIR_ENV: &str = "SYNOD_STORAGE_KILL9_WRITER_DIR";
const WRITER_TEST: &str = "storage::tests::kill9_writer_child";
const COMPACT_EVERY: u64 = 64;
const COMPACT_LAG: u64 = 32;

/// Write number `n`: one record, the apply point, and one entry in each of two tables,
/// all of which must land together. Every `COMPACT_EVERY`th write also compacts.
fn numbered_write(n: u64) -> WriteSet {
    let mut record_bytes = n.to_be_bytes().to_vec();
    record_bytes.resize(128, 0xa5);
    let value: Vec<u8> = n.to_be_bytes().iter().cycle().take(1024).copied().collect();
    WriteSet {
        records: vec![RecordBytes {
            slot_bound: Some(n),
            bytes: record_bytes,
        }],
        compact_below: (n % COMPACT_EVERY == 0).then(|| n - COMPACT_LAG),
        applied_upto: Some(n),
        puts: vec![
            (Table::Notary, n.to_be_bytes().to_vec(), value.clone()),
            (Table::Blocks, n.to_be_bytes().to_vec(), value),
        ],
        deletes: Vec::new(),
    }
}

/// Not a test by itself: the body of the child process that
/// `kill9_keeps_every_acknowledged_write_whole` kills. Without the environment variable
/// it does nothing.
#[test]
fn kill9_writer_child() {
    let Some(dir) = std::env::var_os(WRITER_DIR_ENV) else {
        return;
    };
    let store = Store::open(Path::new(&dir)).expect("writer: open");
    let first = store.recover().expect("writer: recover").applied_upto + 1;
    // Stops by itself should the parent never kill it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = std::io::stdout().lock();
    for n in first.. {
        if Instant::now() > deadline {
            break;
        }
        store.commit(numbered_write(n)).expect("writer: commit");
        writeln!(out, "ack {n}").expect("writer: stdout");
        out.flush().expect("writer: stdout");
    }
}

fn check_after_crash(dir: &Path, acked: &BTreeSet<u64>) {
    let store = Store::open(dir).expect("reopen after kill");
    let recovered = store.recover().unwrap();
    let applied = recovered.applied_upto;
    let last_acked = *acked.last().unwrap();
    // The write in flight at the kill may or may not have landed, as a whole.
    assert!(
        applied == last_acked || applied == last_acked + 1,
        "apply point {applied}, last acknowledged write {last_acked}"
    );

    for &n in acked {
        let expected = numbered_write(n).puts;
        for (table, key, value) in expected {
            assert_eq!(
                store.get(table, &key).unwrap().as_ref(),
                Some(&value),
                "acknowledged write {n} lost in {table:?}"
            );
        }
    }
    // Nothing torn: both tables hold exactly the writes up to the apply point.
    let all: BTreeSet<u64> = (1..=applied).collect();
    for table in [Table::Notary, Table::Blocks] {
        let keys: BTreeSet<u64> = scan_all(&store, table)
            .into_iter()
            .map(|(k, _)| u64::from_be_bytes(k.try_into().unwrap()))
            .collect();
        assert_eq!(keys, all, "{table:?} disagrees with the apply point");
    }
    // The records are exactly those the compactions up to the apply point left.
    let first_kept = (1..=applied)
        .filter(|n| n % COMPACT_EVERY == 0)
        .map(|n| n - COMPACT_LAG)
        .max()
        .unwrap_or(1);
    let records: Vec<u64> = recovered
        .records
        .iter()
        .map(|r| u64::from_be_bytes(r[..8].try_into().unwrap()))
        .collect();
    assert_eq!(records, (first_kept..=applied).collect::<Vec<_>>());
    assert_eq!(store.stats().live_records, records.len() as u64);
}

#[test]
fn kill9_keeps_every_acknowledged_write_whole() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked = BTreeSet::new();
    // The second round restarts from what the first kill left behind.
    for round in 0..2 {
        let wanted = 250 + 100 * round;
        let mut child = Command::new(&exe)
            .args([WRITER_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(WRITER_DIR_ENV, dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn writer");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("ack ") {
                    if tx.send(n.parse::<u64>().unwrap()).is_err() {
                        break;
                    }
                }
            }
        });

        let deadline = Instant::now() + Duration::from_secs(30);
        let mut got = 0;
        while got < wanted {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(n) => {
                    acked.insert(n);
                    got += 1;
                }
                Err(_) => break,
            }
        }
        child.kill().expect("kill writer");
        child.wait().expect("reap writer");
        reader.join().unwrap();
        // Acknowledgements already in the pipe when the writer died count too.
        acked.extend(rx.try_iter());
        assert!(
            got >= wanted,
            "round {round}: the writer acknowledged only {got} writes"
        );
        check_after_crash(dir.path(), &acked);
    }
}

#[test]
fn commit_latency_of_4k_write_sets() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let write = |n: u64| WriteSet {
        records: (0..4)
            .map(|i| RecordBytes {
                slot_bound: Some(4 * n + i),
                bytes: vec![i as u8; 256],
            })
            .collect(),
        compact_below: (n % 100 == 0).then(|| (4 * n).saturating_sub(400)),
        applied_upto: Some(n),
        puts: vec![
            (Table::Blocks, n.to_be_bytes().to_vec(), vec![1; 1500]),
            (Table::Notary, n.to_be_bytes().to_vec(), vec![2; 1500]),
        ],
        deletes: Vec::new(),
    };
    let size = write(1).size_bytes();
    for n in 0..50 {
        store.commit(write(n)).unwrap();
    }
    let mut times: Vec<Duration> = (50..1050)
        .map(|n| {
            let w = write(n);
            let start = Instant::now();
            store.commit(w).unwrap();
            start.elapsed()
        })
        .collect();
    times.sort();
    println!(
        "storage commit latency, {size}-byte write sets, {} synced commits: median {:?}, p99 {:?}, max {:?}",
        times.len(),
        times[times.len() / 2],
        times[times.len() * 99 / 100],
        times[times.len() - 1],
    );
}
