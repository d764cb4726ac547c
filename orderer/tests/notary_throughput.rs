//! Notary throughput and latency of a three-node dev cluster, with and without batch
//! signing; printed, not asserted. A test binary of its own, so that no other test
//! shares the machine while it measures.

mod notary_support;

use std::time::Instant;

use notary_support::*;
use orderer::dev;

/// Three nodes, three callers streaming 1,000 transactions of two fresh inputs each:
/// with one Merkle-root signature per write, then with one signature per transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn throughput_with_and_without_batch_signing() {
    let dir = tempfile::tempdir().unwrap();
    for (round, batch_signing) in [(0u64, true), (1, false)] {
        if round > 0 {
            for id in 0..3 {
                let path = dir.path().join(format!("orderer{id}/orderer.toml"));
                let config = std::fs::read_to_string(&path).unwrap();
                let changed = config.replace("batch_signing = true", "batch_signing = false");
                assert_ne!(config, changed);
                std::fs::write(&path, changed).unwrap();
            }
        }
        let cluster = dev::start(dir.path(), &[dev::DEMO_CHANNEL.to_string()])
            .await
            .unwrap();
        let members = membership(dir.path());
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| n.notary_addr.unwrap().to_string())
            .collect();
        // A warm-up round first, so both measurements start from a running cluster.
        run_fresh_spends(dir.path(), &addresses, &members, round * 2, 200).await;
        let per_node = 1_000u64;
        let started = Instant::now();
        let mut latencies =
            run_fresh_spends(dir.path(), &addresses, &members, round * 2 + 1, per_node).await;
        let elapsed = started.elapsed().as_secs_f64();
        assert_eq!(latencies.len() as u64, 3 * per_node);
        println!(
            "notary, batch signing {}: {} notarisations (2 inputs each) through 3 nodes in {elapsed:.2} s \
             ({:.0}/s); latency p50 {:?} p99 {:?} (streams of {} in flight)",
            if batch_signing { "on" } else { "off" },
            3 * per_node,
            (3 * per_node) as f64 / elapsed,
            percentile(&mut latencies, 0.5),
            percentile(&mut latencies, 0.99),
            orderer::node::notary_service::STREAM_WINDOW,
        );
        cluster.stop().await;
    }
}
