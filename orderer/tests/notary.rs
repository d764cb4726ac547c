//! The notary hosted by a three-node cluster (`orderer dev`, in process, real mutual TLS
//! and RocksDB): double-spend races from callers on different nodes, idempotent
//! retries, time windows, a node restarted under load, and signatures that verify.
//! Throughput and latency are printed, not asserted.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use notary_adapter::{StateRef, TimeWindow, TxId, ValidatedRequest};
use proto::synod::notary as pb;
use sha2::{Digest, Sha256};

use orderer::dev::{self, NOTARY_NAME};
use orderer::notary_client::{Caller, verify_by_membership};

fn hash(label: &str, n: u64) -> [u8; 32] {
    Sha256::new()
        .chain_update(label.as_bytes())
        .chain_update(n.to_be_bytes())
        .finalize()
        .into()
}

fn tx(label: &str, n: u64) -> TxId {
    TxId(hash(label, n))
}

fn spend(tx_id: TxId, inputs: Vec<StateRef>, window: TimeWindow) -> ValidatedRequest {
    ValidatedRequest::new(tx_id, inputs, Vec::new(), window).unwrap()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn is_success(response: &pb::NotariseResponse) -> bool {
    matches!(
        response.result,
        Some(pb::notarise_response::Result::Signed(_))
    )
}

fn conflict(response: &pb::NotariseResponse) -> Option<&pb::Conflict> {
    match &response.result {
        Some(pb::notarise_response::Result::Error(pb::Error {
            kind: Some(pb::error::Kind::Conflict(conflict)),
        })) => Some(conflict),
        _ => None,
    }
}

fn membership(dir: &Path) -> ca::Membership {
    ca::Membership::from_dirs([(dev::MSP_ID.to_string(), dir.join("orderer0/msp"))]).unwrap()
}

async fn notarise(
    caller: &Caller,
    address: &str,
    request: &ValidatedRequest,
) -> pb::NotariseResponse {
    let mut client = caller.connect(address).await.unwrap();
    let signed = caller.request(request, NOTARY_NAME).unwrap();
    client.notarise(signed).await.unwrap().into_inner()
}

/// Streams `requests` to the node at `address`; answers with their latencies.
async fn notarise_stream(
    caller: &Caller,
    address: &str,
    requests: Vec<ValidatedRequest>,
) -> Vec<(pb::NotariseResponse, Duration)> {
    let mut client = caller.connect(address).await.unwrap();
    let mut sent = HashMap::new();
    let mut signed = Vec::new();
    for request in &requests {
        sent.insert(request.tx_id().as_bytes().to_vec(), Instant::now());
        signed.push(caller.request(request, NOTARY_NAME).unwrap());
    }
    let start = Instant::now();
    for at in sent.values_mut() {
        *at = start;
    }
    let mut responses = client
        .notarise_stream(tokio_stream::iter(signed))
        .await
        .unwrap()
        .into_inner();
    let mut answers = Vec::new();
    // A stream to a node that stops ends early; its unanswered requests have no outcome.
    while let Ok(Some(response)) = responses.message().await {
        let latency = sent[&response.tx_id].elapsed();
        answers.push((response, latency));
    }
    answers
}

fn percentile(latencies: &mut [Duration], p: f64) -> Duration {
    latencies.sort();
    latencies[((latencies.len() - 1) as f64 * p) as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn double_spends_retries_time_windows_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = dev::start(dir.path(), &[]).await.unwrap();
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

/// Streams `per_node` transactions spending two fresh states each to every node; all
/// must succeed with valid signatures. Returns their latencies.
async fn run_fresh_spends(
    dir: &Path,
    addresses: &[String],
    members: &ca::Membership,
    round: u64,
    per_node: u64,
) -> Vec<Duration> {
    let mut tasks = tokio::task::JoinSet::new();
    for (node, address) in addresses.iter().enumerate() {
        let requests: Vec<ValidatedRequest> = (0..per_node)
            .map(|i| {
                let n = round * 10_000_000 + node as u64 * 1_000_000 + i;
                spend(
                    tx("bench", n),
                    vec![
                        StateRef::new(hash("bench-state", n), 0),
                        StateRef::new(hash("bench-state", n), 1),
                    ],
                    TimeWindow::default(),
                )
            })
            .collect();
        let caller = Caller::from_msp_dir(&dev::client_dir(dir), "localhost").unwrap();
        let address = address.clone();
        tasks.spawn(async move { notarise_stream(&caller, &address, requests).await });
    }
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        for (response, latency) in done.unwrap() {
            assert!(is_success(&response), "fresh states: {response:?}");
            let tx_id = TxId::from_slice(&response.tx_id).unwrap();
            verify_by_membership(&response, &tx_id, members).unwrap();
            latencies.push(latency);
        }
    }
    assert_eq!(latencies.len() as u64, 3 * per_node);
    latencies
}

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
        let cluster = dev::start(dir.path(), &[]).await.unwrap();
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
