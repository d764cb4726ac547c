//! The notary hosted by a three-node cluster (`orderer dev`, in process, real mutual TLS
//! and RocksDB): double-spend races from callers on different nodes, idempotent
//! retries, f + 1 signatures, time windows, and a node restarted under load, with
//! signatures that verify.

mod notary_support;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use notary_adapter::{StateRef, TimeWindow, TxId, ValidatedRequest};
use proto::synod::notary as pb;

use notary_support::*;
use orderer::dev::{self, NOTARY_NAME};
use orderer::notary_client::{Caller, verify_by_membership};

// The clusters below start with a channel: `dev::start` returns once every node has
// applied its creation, so every node is ordering (and hears a majority) from then on.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn double_spends_retries_time_windows_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = dev::start(dir.path(), &[dev::DEMO_CHANNEL.to_string()])
        .await
        .unwrap();
    let addresses: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| n.notary_addr.unwrap().to_string())
        .collect();
    let caller = Caller::from_msp_dir(&dev::client_dir(dir.path()), "localhost").unwrap();
    let members = membership(dir.path());

    // Races: three transactions spend the same two states through three nodes at once.
    for round in 0..20u64 {
        let states = vec![
            StateRef::new(hash("race-state", round), 0),
            StateRef::new(hash("race-state", round), 1),
        ];
        let contenders: Vec<TxId> = (0..3).map(|c| tx("race", round * 10 + c)).collect();
        let mut answers = Vec::new();
        let mut tasks = tokio::task::JoinSet::new();
        for (node, tx_id) in contenders.iter().enumerate() {
            let request = spend(*tx_id, states.clone(), TimeWindow::default());
            let caller = Caller::from_msp_dir(&dev::client_dir(dir.path()), "localhost").unwrap();
            let address = addresses[node].clone();
            tasks.spawn(
                async move { (request.clone(), notarise(&caller, &address, &request).await) },
            );
        }
        while let Some(done) = tasks.join_next().await {
            answers.push(done.unwrap());
        }
        let winners: Vec<_> = answers.iter().filter(|(_, r)| is_success(r)).collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one spend succeeds"
        );
        let (winner, response) = winners[0];
        verify_by_membership(response, winner.tx_id(), &members).unwrap();
        let winner_hash = winner.tx_id().hash().to_vec();
        for (request, response) in &answers {
            if request.tx_id() == winner.tx_id() {
                continue;
            }
            let conflict = conflict(response)
                .unwrap_or_else(|| panic!("round {round}: a loser gets a conflict: {response:?}"));
            assert_eq!(conflict.entries.len(), 2);
            for entry in &conflict.entries {
                assert_eq!(
                    entry.consuming_tx_hash, winner_hash,
                    "hash of the winner's id"
                );
            }
        }
        // The winner retries on another node: notarised again, with a valid signature.
        let retry = notarise(&caller, &addresses[(round as usize + 1) % 3], winner).await;
        assert!(
            is_success(&retry),
            "round {round}: an idempotent retry succeeds"
        );
        verify_by_membership(&retry, winner.tx_id(), &members).unwrap();
    }

    // A caller that trusts no single node gathers f + 1 = 2 signatures.
    let quorum = spend(
        tx("quorum", 1),
        vec![StateRef::new(hash("quorum-state", 1), 0)],
        TimeWindow::default(),
    );
    let answer = orderer::notary_client::notarise_with_signatures(
        &caller,
        &addresses,
        &quorum,
        NOTARY_NAME,
        2,
    )
    .await
    .unwrap();
    let trust = notary_adapter::NotaryTrust::Members {
        membership: &members,
        now: SystemTime::now(),
    };
    notary_adapter::verify_response(&answer, quorum.tx_id(), &trust, 2).unwrap();
    assert!(
        notary_adapter::verify_response(&answer, quorum.tx_id(), &trust, 3).is_err(),
        "two signatures are not three"
    );

    // Time windows against the log's agreed time: until is exclusive, from inclusive.
    let past = spend(
        tx("window", 1),
        vec![StateRef::new(hash("window-state", 1), 0)],
        TimeWindow {
            from_ms: None,
            until_ms: Some(now_ms() - 60_000),
        },
    );
    let answer = notarise(&caller, &addresses[0], &past).await;
    assert!(
        matches!(
            &answer.result,
            Some(pb::notarise_response::Result::Error(pb::Error {
                kind: Some(pb::error::Kind::TimeWindowInvalid(_))
            }))
        ),
        "a window that closed is refused: {answer:?}"
    );
    let future = spend(
        tx("window", 2),
        vec![StateRef::new(hash("window-state", 2), 0)],
        TimeWindow {
            from_ms: Some(now_ms() + 600_000),
            until_ms: None,
        },
    );
    assert!(!is_success(
        &notarise(&caller, &addresses[1], &future).await
    ));
    let open = spend(
        tx("window", 3),
        vec![StateRef::new(hash("window-state", 3), 0)],
        TimeWindow {
            from_ms: Some(now_ms() - 60_000),
            until_ms: Some(now_ms() + 600_000),
        },
    );
    assert!(is_success(&notarise(&caller, &addresses[2], &open).await));

    // Load with two inputs per transaction, through all three nodes at once; node 2 is
    // stopped and restarted in the middle. Every state is consumed by one transaction.
    let mut cluster = cluster;
    let per_node = 3_000u64;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (node, address) in addresses.iter().enumerate() {
        let requests: Vec<ValidatedRequest> = (0..per_node)
            .map(|i| {
                let n = node as u64 * 1_000_000 + i;
                // Neighbouring transactions share a state: half of them must conflict.
                spend(
                    tx("load", n),
                    vec![
                        StateRef::new(hash("load-state", n / 2), 0),
                        StateRef::new(hash("load-state", n / 2), 1),
                    ],
                    TimeWindow::default(),
                )
            })
            .collect();
        let caller = Caller::from_msp_dir(&dev::client_dir(dir.path()), "localhost").unwrap();
        let address = address.clone();
        tasks.spawn(async move { notarise_stream(&caller, &address, requests).await });
    }
    let restarted = cluster.nodes.remove(2);
    let config = cluster.configs[2].clone();
    tokio::time::sleep(Duration::from_millis(500)).await;
    restarted.stop().await;
    let node = orderer::node::server::start_node(&config, None, None)
        .await
        .unwrap();
    cluster.nodes.push(node);
    let numbers: HashMap<[u8; 32], u64> = (0..3u64)
        .flat_map(|node| (0..per_node).map(move |i| node * 1_000_000 + i))
        .map(|n| (*tx("load", n).as_bytes(), n))
        .collect();
    let mut successes = 0u64;
    let mut latencies = Vec::new();
    let mut winners_per_pair: HashMap<u64, Vec<u64>> = HashMap::new();
    while let Some(done) = tasks.join_next().await {
        for (response, latency) in done.unwrap() {
            if !is_success(&response) {
                continue;
            }
            let tx_id = TxId::from_slice(&response.tx_id).unwrap();
            verify_by_membership(&response, &tx_id, &members).unwrap();
            successes += 1;
            latencies.push(latency);
            let n = numbers[tx_id.as_bytes()];
            winners_per_pair.entry(n / 2).or_default().push(n);
        }
    }
    let elapsed = started.elapsed();
    for (pair, winners) in &winners_per_pair {
        assert_eq!(
            winners.len(),
            1,
            "states of pair {pair} notarised to {winners:?}"
        );
    }
    assert!(
        successes >= per_node / 2,
        "only {successes} notarised: the nodes that stayed up serve their callers"
    );
    println!(
        "notary under a restart: {successes} of {} requests notarised in {:.2} s, no state twice; \
         latency p50 {:?} p99 {:?}",
        3 * per_node,
        elapsed.as_secs_f64(),
        percentile(&mut latencies, 0.5),
        percentile(&mut latencies, 0.99),
    );
    cluster.stop().await;
}
