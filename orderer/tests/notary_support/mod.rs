//! What the notary tests share: deterministic ids and states, and calls to a dev
//! cluster's notary.
#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use notary_adapter::{StateRef, TimeWindow, TxId, ValidatedRequest};
use proto::synod::notary as pb;
use sha2::{Digest, Sha256};

use orderer::dev::{self, NOTARY_NAME};
use orderer::notary_client::{Caller, verify_by_membership};

pub fn hash(label: &str, n: u64) -> [u8; 32] {
    Sha256::new()
        .chain_update(label.as_bytes())
        .chain_update(n.to_be_bytes())
        .finalize()
        .into()
}

pub fn tx(label: &str, n: u64) -> TxId {
    TxId(hash(label, n))
}

pub fn spend(tx_id: TxId, inputs: Vec<StateRef>, window: TimeWindow) -> ValidatedRequest {
    ValidatedRequest::new(tx_id, inputs, Vec::new(), window).unwrap()
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub fn is_success(response: &pb::NotariseResponse) -> bool {
    matches!(
        response.result,
        Some(pb::notarise_response::Result::Signed(_))
    )
}

pub fn conflict(response: &pb::NotariseResponse) -> Option<&pb::Conflict> {
    match &response.result {
        Some(pb::notarise_response::Result::Error(pb::Error {
            kind: Some(pb::error::Kind::Conflict(conflict)),
        })) => Some(conflict),
        _ => None,
    }
}

pub fn membership(dir: &Path) -> ca::Membership {
    ca::Membership::from_dirs([(dev::MSP_ID.to_string(), dir.join("orderer0/msp"))]).unwrap()
}

pub async fn notarise(
    caller: &Caller,
    address: &str,
    request: &ValidatedRequest,
) -> pb::NotariseResponse {
    let mut client = caller.connect(address).await.unwrap();
    let signed = caller.request(request, NOTARY_NAME).unwrap();
    client.notarise(signed).await.unwrap().into_inner()
}

/// Streams `requests` to the node at `address`; answers with their latencies.
pub async fn notarise_stream(
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

pub fn percentile(latencies: &mut [Duration], p: f64) -> Duration {
    latencies.sort();
    latencies[((latencies.len() - 1) as f64 * p) as usize]
}

/// Streams `per_node` transactions spending two fresh states each to every node; all
/// must succeed with valid signatures. Returns their latencies.
pub async fn run_fresh_spends(
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
