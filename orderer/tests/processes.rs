//! Whole-system test with real `orderer` processes on loopback, real mutual TLS and
//! real RocksDB: clients connected to different nodes broadcast over 10,000 signed
//! envelopes on three channels, one node is killed with SIGKILL under load and
//! restarted, and afterwards every node delivers, per channel, the same hash chain
//! holding every acknowledged envelope exactly once. Throughput and latency are
//! printed, not asserted.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use channel::verify_chain;
use proto::common::{Block, HeaderType, Status};
use proto::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use proto::orderer::seek_info::SeekBehavior;
use tokio_stream::StreamExt;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use orderer::client::Signer;
use orderer::dev::{MSP_ID, REPLICAS};
use orderer::node::server::NodeConfig;

mod notary_support;

const BIN: &str = env!("CARGO_BIN_EXE_orderer");

/// The tests of this file each run a cluster of processes and measure it; on a small
/// machine two at once starve each other's heartbeats. One at a time.
static ONE_CLUSTER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_cluster_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    // A failed test poisons the lock; the next one may still run.
    ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// A child process killed when dropped, so a failing test leaves nothing behind.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `orderer` with `args` and waits (bounded) until its stdout printed a line
/// containing `ready`.
fn spawn(args: &[&str], ready: &str) -> Process {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("orderer binary runs");
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines_rx.recv_timeout(left) {
            Ok(line) if line.contains(ready) => return Process(child),
            Ok(_) => {}
            Err(_) => panic!("orderer {args:?} did not print {ready:?} within 60 s"),
        }
    }
}

fn start_node(dir: &Path, id: usize) -> Process {
    let config = dir.join(format!("orderer{id}/orderer.toml"));
    spawn(&["start", "--config", config.to_str().unwrap()], "serving")
}

const CHANNELS: [&str; 3] = ["alpha", "beta", "gamma"];

/// Times an envelope answered SERVICE_UNAVAILABLE is sent again.
const BROADCAST_RETRIES: usize = 3;

#[derive(Clone)]
struct Client {
    signer: Signer,
    tls: ClientTlsConfig,
}

impl Client {
    fn load(dir: &Path) -> Client {
        let home = dir.join("client");
        let read = |p: &str| std::fs::read_to_string(home.join(p)).unwrap();
        Client {
            signer: Signer {
                msp_id: MSP_ID.into(),
                cert_pem: read("msp/signcerts/cert.pem"),
                key_pem: read("msp/keystore/key.pem"),
            },
            tls: ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(read("tls/ca.crt")))
                .identity(Identity::from_pem(
                    read("tls/server.crt"),
                    read("tls/server.key"),
                ))
                .domain_name("localhost"),
        }
    }

    async fn connect(&self, address: &str) -> AtomicBroadcastClient<Channel> {
        for _ in 0..100 {
            let endpoint = Channel::from_shared(format!("https://{address}"))
                .unwrap()
                .tls_config(self.tls.clone())
                .unwrap();
            if let Ok(channel) = endpoint.connect().await {
                return AtomicBroadcastClient::new(channel);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("cannot connect to {address}");
    }

    /// Broadcasts envelopes `ids` on `channel`, in streams of 100; returns per answered
    /// envelope its channel, id, status, when it was sent, and the time to its answer.
    /// Connection failures count as unacknowledged.
    async fn broadcast(self, address: String, channel: &'static str, ids: Vec<u64>) -> Vec<Answer> {
        let mut client = self.connect(&address).await;
        let mut results = Vec::new();
        for chunk in ids.chunks(100) {
            let sent = Instant::now();
            let mut pending: Vec<u64> = chunk.to_vec();
            // SERVICE_UNAVAILABLE says "retry": a node that caught up by snapshot gives up
            // on what it proposed before. A retry carries the same tx id, so an envelope
            // ordered meanwhile is answered as a duplicate: ordered once, as the chains'
            // check confirms.
            for attempt in 0..=BROADCAST_RETRIES {
                let mut retry = Vec::new();
                for (id, status) in self.broadcast_once(&mut client, channel, &pending).await {
                    let duplicate = attempt > 0 && status == Status::BadRequest;
                    match status {
                        Status::ServiceUnavailable if attempt < BROADCAST_RETRIES => retry.push(id),
                        _ if duplicate => {
                            results.push((channel, id, Status::Success, sent, sent.elapsed()))
                        }
                        _ => results.push((channel, id, status, sent, sent.elapsed())),
                    }
                }
                if retry.is_empty() {
                    break;
                }
                pending = retry;
            }
        }
        results
    }

    /// One Broadcast stream of envelopes `ids`; the status of each answered one.
    async fn broadcast_once(
        &self,
        client: &mut AtomicBroadcastClient<Channel>,
        channel: &'static str,
        ids: &[u64],
    ) -> Vec<(u64, Status)> {
        let envelopes: Vec<_> = ids
            .iter()
            .map(|id| {
                self.signer
                    .envelope(
                        channel,
                        HeaderType::EndorserTransaction,
                        data(*id),
                        nonce(*id),
                    )
                    .unwrap()
            })
            .collect();
        let Ok(responses) = client.broadcast(tokio_stream::iter(envelopes)).await else {
            return Vec::new();
        };
        let mut responses = responses.into_inner();
        let mut answers = Vec::new();
        for id in ids {
            match responses.next().await {
                Some(Ok(response)) => {
                    answers.push((*id, Status::try_from(response.status).unwrap()))
                }
                _ => break,
            }
        }
        answers
    }

    async fn chain(&self, address: &str, channel: &str) -> Vec<Block> {
        let mut client = self.connect(address).await;
        let seek = self
            .signer
            .seek(
                channel,
                Some(0),
                None,
                SeekBehavior::FailIfNotReady,
                nonce(u64::MAX),
            )
            .unwrap();
        let (blocks, status) = orderer::client::deliver(&mut client, seek).await.unwrap();
        assert_eq!(status, Status::Success);
        blocks
    }

    /// Waits until the node at `address` holds every channel at least as high as the
    /// node at `reference` did when called: a node that catches up by snapshot gives
    /// up (answers SERVICE_UNAVAILABLE, "retry") on what it proposed before installing
    /// it, so load goes to it once it has caught up.
    async fn wait_caught_up(&self, address: &str, reference: &str) {
        for channel in CHANNELS {
            let target = self.chain(reference, channel).await.len();
            for _ in 0..300 {
                if self.serves(address, channel).await
                    && self.chain(address, channel).await.len() >= target
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Whether the node at `address` serves `channel` yet.
    async fn serves(&self, address: &str, channel: &str) -> bool {
        let mut client = self.connect(address).await;
        let seek = self
            .signer
            .seek(
                channel,
                Some(0),
                Some(0),
                SeekBehavior::FailIfNotReady,
                nonce(u64::MAX - 1),
            )
            .unwrap();
        let (_, status) = orderer::client::deliver(&mut client, seek).await.unwrap();
        status == Status::Success
    }
}

fn data(id: u64) -> Vec<u8> {
    format!("system-test envelope {id}").into_bytes()
}

fn nonce(id: u64) -> [u8; 24] {
    let mut nonce = [0x5Au8; 24];
    nonce[..8].copy_from_slice(&id.to_le_bytes());
    nonce
}

fn client_addresses(dir: &Path) -> Vec<String> {
    (0..REPLICAS)
        .map(|id| {
            let config = NodeConfig::load(&dir.join(format!("orderer{id}/orderer.toml"))).unwrap();
            config.client_listen.to_string()
        })
        .collect()
}

/// The transactions' data of a chain, the genesis block left out.
fn payloads(chain: &[Block]) -> Vec<Vec<u8>> {
    chain.iter().skip(1).flat_map(block_payloads).collect()
}

fn block_payloads(block: &Block) -> Vec<Vec<u8>> {
    use proto::prost::Message as _;
    block
        .data
        .clone()
        .unwrap()
        .data
        .iter()
        .map(|envelope| {
            let envelope = proto::common::Envelope::decode(&envelope[..]).unwrap();
            proto::common::Payload::decode(&envelope.payload[..])
                .unwrap()
                .data
        })
        .collect()
}

fn percentile(latencies: &mut [Duration], p: f64) -> Duration {
    latencies.sort();
    latencies[((latencies.len() - 1) as f64 * p) as usize]
}

/// One Broadcast answer: channel, envelope id, status, sent at, time to the answer.
type Answer = (&'static str, u64, Status, Instant, Duration);

/// Follows `channel` on the node at `address` from block `from` on and notes when each
/// envelope's block arrived, until `expected` envelopes were seen or `timeout` passed.
async fn watch_blocks(
    client: Client,
    address: String,
    channel: &'static str,
    from: u64,
    expected: usize,
    timeout: Duration,
) -> std::collections::HashMap<Vec<u8>, Instant> {
    let mut arrivals = std::collections::HashMap::new();
    let mut grpc = client.connect(&address).await;
    let seek = client
        .signer
        .seek(
            channel,
            Some(from),
            Some(u64::MAX),
            SeekBehavior::BlockUntilReady,
            nonce(u64::MAX - 2),
        )
        .unwrap();
    let Ok(responses) = grpc.deliver(tokio_stream::iter(vec![seek])).await else {
        return arrivals;
    };
    let mut responses = responses.into_inner();
    let deadline = tokio::time::Instant::now() + timeout;
    while arrivals.len() < expected {
        let next = tokio::time::timeout_at(deadline, responses.message()).await;
        let Ok(Ok(Some(response))) = next else {
            break;
        };
        if let Some(proto::orderer::deliver_response::Type::Block(block)) = response.r#type {
            let now = Instant::now();
            for payload in block_payloads(&block) {
                arrivals.entry(payload).or_insert(now);
            }
        }
    }
    arrivals
}

/// Runs one broadcast task per (node, channel, ids) concurrently.
async fn load(
    client: &Client,
    addresses: &[String],
    work: Vec<(usize, &'static str, Vec<u64>)>,
) -> Vec<Answer> {
    let mut tasks = tokio::task::JoinSet::new();
    for (node, channel, ids) in work {
        tasks.spawn(
            client
                .clone()
                .broadcast(addresses[node].clone(), channel, ids),
        );
    }
    let mut results = Vec::new();
    while let Some(done) = tasks.join_next().await {
        results.extend(done.unwrap());
    }
    results
}

fn ids(first: u64, count: u64) -> Vec<u64> {
    (first..first + count).collect()
}

#[test]
fn three_processes_survive_a_kill_and_agree_on_the_chains() {
    let _serial = one_cluster_at_a_time();
    let dir: PathBuf = tempfile::tempdir().unwrap().keep();
    let dir_arg = dir.to_str().unwrap().to_string();
    // `orderer dev` creates the cluster (CA, identities, configs, channels); then it is
    // killed outright and the nodes run as separate processes from its files.
    let mut args = vec!["dev", "--dir", &dir_arg];
    for channel in CHANNELS {
        args.extend(["--channel", channel]);
    }
    drop(spawn(&args, "client identity"));
    for id in 0..REPLICAS {
        // A short retained log, so that a node that lost its data must take a snapshot.
        let path = dir.join(format!("orderer{id}/orderer.toml"));
        let config = std::fs::read_to_string(&path).unwrap();
        let shorter = config.replace("max_log_slots = 100000", "max_log_slots = 1024");
        assert_ne!(config, shorter, "the dev configuration names max_log_slots");
        std::fs::write(&path, shorter).unwrap();
    }
    let mut nodes: Vec<Option<Process>> =
        (0..REPLICAS).map(|id| Some(start_node(&dir, id))).collect();
    let addresses = client_addresses(&dir);
    let client = Client::load(&dir);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut acknowledged: Vec<(&str, u64)> = Vec::new();

    // Phase 1: every node, every channel, concurrently; node 0 is followed by a Deliver
    // client per channel, to time each envelope from Broadcast to its delivered block.
    let heights: Vec<u64> = runtime.block_on(async {
        let mut heights = Vec::new();
        for channel in CHANNELS {
            heights.push(client.chain(&addresses[0], channel).await.len() as u64);
        }
        heights
    });
    let watchers: Vec<_> = CHANNELS
        .iter()
        .zip(&heights)
        .map(|(channel, height)| {
            runtime.spawn(watch_blocks(
                client.clone(),
                addresses[0].clone(),
                channel,
                *height,
                2_400,
                Duration::from_secs(120),
            ))
        })
        .collect();
    let started = Instant::now();
    let work = (0..REPLICAS)
        .flat_map(|node| {
            CHANNELS.iter().enumerate().map(move |(c, channel)| {
                (node, *channel, ids((node * 10 + c) as u64 * 100_000, 800))
            })
        })
        .collect();
    let phase1 = runtime.block_on(load(&client, &addresses, work));
    let phase1_secs = started.elapsed().as_secs_f64();
    let mut latencies = Vec::new();
    let mut sent_at = std::collections::HashMap::new();
    for (channel, id, status, sent, latency) in phase1 {
        assert_eq!(
            status,
            Status::Success,
            "all nodes up: envelope {id} on {channel}"
        );
        acknowledged.push((channel, id));
        latencies.push(latency);
        sent_at.insert(data(id), sent);
    }
    assert_eq!(acknowledged.len(), 7_200);
    let mut block_latencies = Vec::new();
    for watcher in watchers {
        for (payload, arrived) in runtime.block_on(watcher).unwrap() {
            if let Some(sent) = sent_at.get(&payload) {
                block_latencies.push(arrived.duration_since(*sent));
            }
        }
    }
    assert_eq!(
        block_latencies.len(),
        7_200,
        "node 0 delivered every acknowledged envelope of phase 1 in a block"
    );

    // Phase 2: node 2 is killed while nodes 0 and 1 take load; then it restarts.
    nodes[2] = None;
    let work = (0..2usize)
        .flat_map(|node| {
            CHANNELS.iter().enumerate().map(move |(c, channel)| {
                (
                    node,
                    *channel,
                    ids(5_000_000 + (node * 10 + c) as u64 * 100_000, 300),
                )
            })
        })
        .collect();
    for (channel, id, status, _, _) in runtime.block_on(load(&client, &addresses, work)) {
        if status == Status::Success {
            acknowledged.push((channel, id));
        }
    }
    let restarted = Instant::now();
    nodes[2] = Some(start_node(&dir, 2));
    runtime.block_on(client.wait_caught_up(&addresses[2], &addresses[0]));

    // Phase 3: load on the restarted node, which must catch up to serve it.
    let all_ordered = |node: usize, first: u64, per_channel: u64, what: &str| {
        let work = CHANNELS
            .iter()
            .enumerate()
            .map(|(c, channel)| (node, *channel, ids(first + c as u64 * 100_000, per_channel)))
            .collect();
        let answers = runtime.block_on(load(&client, &addresses, work));
        answers
            .into_iter()
            .map(|(channel, id, status, _, _)| {
                assert_eq!(
                    status,
                    Status::Success,
                    "{what} orders again ({channel} {id})"
                );
                (channel, id)
            })
            .collect::<Vec<_>>()
    };
    acknowledged.extend(all_ordered(2, 9_000_000, 400, "the restarted node"));
    let rejoin = restarted.elapsed();
    assert!(
        acknowledged.len() >= 10_000,
        "{} acknowledged",
        acknowledged.len()
    );

    // Phase 4: node 1 loses its data directory; it rejoins behind a vote fence and
    // catches up by state transfer, then orders again.
    nodes[1] = None;
    std::fs::remove_dir_all(dir.join("orderer1/data")).unwrap();
    let wiped = Instant::now();
    nodes[1] = Some(start_node(&dir, 1));
    runtime.block_on(client.wait_caught_up(&addresses[1], &addresses[0]));
    acknowledged.extend(all_ordered(
        1,
        12_000_000,
        100,
        "the node that lost its data",
    ));
    let blank_rejoin = wiped.elapsed();

    runtime.block_on(async {
        for channel in CHANNELS {
            let expected: Vec<u64> = acknowledged
                .iter()
                .filter(|(c, _)| *c == channel)
                .map(|(_, id)| *id)
                .collect();
            let mut chains = Vec::new();
            for address in &addresses {
                // Time-To-Cut closes the last batch within the batch timeout.
                let mut chain = Vec::new();
                for _ in 0..100 {
                    chain = client.chain(address, channel).await;
                    if payloads(&chain).len() >= expected.len() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                verify_chain(&chain).unwrap();
                chains.push(chain);
            }
            let headers = |c: &[Block]| c.iter().map(|b| b.header.clone()).collect::<Vec<_>>();
            assert_eq!(
                headers(&chains[0]),
                headers(&chains[1]),
                "{channel}: nodes 0 and 1 differ"
            );
            assert_eq!(
                headers(&chains[0]),
                headers(&chains[2]),
                "{channel}: node 2 differs"
            );
            let mut ordered = payloads(&chains[0]);
            let total = ordered.len();
            ordered.sort();
            ordered.dedup();
            assert_eq!(
                ordered.len(),
                total,
                "{channel}: an envelope is in two blocks"
            );
            for id in &expected {
                assert!(
                    ordered.binary_search(&data(*id)).is_ok(),
                    "{channel}: acknowledged {id} lost"
                );
            }
        }
    });
    println!(
        "system test: phase 1 ordered 7200 envelopes on 3 channels via 3 nodes in {phase1_secs:.2} s ({:.0}/s); \
         Broadcast-to-SUCCESS latency p50 {:?} p99 {:?}, Broadcast-to-delivered-block latency \
         p50 {:?} p99 {:?} (streams of 100 in flight); {} acknowledged in all; \
         the killed node was back and ordering {:?} after its restart; the node that lost its \
         data directory ordered again {:?} after its restart",
        7_200.0 / phase1_secs,
        percentile(&mut latencies, 0.5),
        percentile(&mut latencies, 0.99),
        percentile(&mut block_latencies, 0.5),
        percentile(&mut block_latencies, 0.99),
        acknowledged.len(),
        rejoin,
        blank_rejoin,
    );
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Revoking a client and dropping the new CRL into the nodes' MSP folders takes effect
/// without restarting them.
#[test]
fn a_revoked_client_is_refused_without_a_restart() {
    let _serial = one_cluster_at_a_time();
    let dir: PathBuf = tempfile::tempdir().unwrap().keep();
    let dir_arg = dir.to_str().unwrap().to_string();
    let _cluster = spawn(&["dev", "--dir", &dir_arg], "client identity");
    let client = Client::load(&dir);
    let address = client_addresses(&dir)[0].clone();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let before = runtime.block_on(client.clone().broadcast(address.clone(), "demo", vec![1]));
    assert_eq!(before[0].2, Status::Success);

    let mut ca = ca::CertificateAuthority::load(&dir.join("ca")).unwrap();
    let serials: Vec<ca::Serial> = ca
        .certificates()
        .iter()
        .filter(|record| record.common_name == "client")
        .map(|record| record.serial.clone())
        .collect();
    assert!(!serials.is_empty());
    for serial in &serials {
        ca.revoke(serial, ca::RevocationReason::KeyCompromise)
            .unwrap();
    }
    let crl = ca.crl().unwrap();
    for id in 0..REPLICAS {
        let crls = dir.join(format!("orderer{id}/msp/crls"));
        std::fs::create_dir_all(&crls).unwrap();
        std::fs::write(crls.join("crl.pem"), &crl).unwrap();
    }
    // Nodes re-read their MSP folders every MEMBERSHIP_RELOAD_INTERVAL.
    let deadline = Instant::now() + Duration::from_secs(20);
    for attempt in 2.. {
        let after = runtime.block_on(client.clone().broadcast(
            address.clone(),
            "demo",
            vec![attempt],
        ));
        if after.first().map(|a| a.2) == Some(Status::Forbidden) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the revoked client is still served: {after:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Notary requests through three processes while one is killed with SIGKILL and
/// restarted: no state is ever notarised to two different transactions, and every node
/// answers a conflicting spend of a notarised state with the winner's hash.
#[test]
fn notarised_states_stay_with_one_transaction_across_a_kill() {
    let _serial = one_cluster_at_a_time();
    use notary_adapter::{StateRef, TimeWindow, TxId, ValidatedRequest};
    use notary_support::hash;
    use orderer::notary_client::Caller;
    use proto::synod::notary as pb;
    use sha2::{Digest, Sha256};

    let dir: PathBuf = tempfile::tempdir().unwrap().keep();
    let dir_arg = dir.to_str().unwrap().to_string();
    drop(spawn(&["dev", "--dir", &dir_arg], "client identity"));
    let mut nodes: Vec<Option<Process>> =
        (0..REPLICAS).map(|id| Some(start_node(&dir, id))).collect();
    let addresses: Vec<String> = (0..REPLICAS)
        .map(|id| {
            let config = NodeConfig::load(&dir.join(format!("orderer{id}/orderer.toml"))).unwrap();
            config.notary.unwrap().listen.to_string()
        })
        .collect();
    // Transaction n spends pair n / 3: three contenders per pair, on three nodes.
    let request = |n: u64| {
        ValidatedRequest::new(
            TxId(hash("kill-tx", n)),
            vec![
                StateRef::new(hash("kill-state", n / 3), 0),
                StateRef::new(hash("kill-state", n / 3), 1),
            ],
            Vec::new(),
            TimeWindow::default(),
        )
        .unwrap()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let send = |node: usize, numbers: Vec<u64>| {
        let caller = Caller::from_msp_dir(&dir.join("client"), "localhost").unwrap();
        let address = addresses[node].clone();
        let requests: Vec<_> = numbers
            .iter()
            .map(|n| {
                caller
                    .request(&request(*n), orderer::dev::NOTARY_NAME)
                    .unwrap()
            })
            .collect();
        async move {
            let Ok(mut client) = caller.connect(&address).await else {
                return Vec::new();
            };
            let Ok(responses) = client.notarise_stream(tokio_stream::iter(requests)).await else {
                return Vec::new();
            };
            let mut responses = responses.into_inner();
            let mut answers = Vec::new();
            while let Ok(Some(response)) = responses.message().await {
                answers.push(response);
            }
            answers
        }
    };
    let signed = |r: &pb::NotariseResponse| {
        matches!(r.result, Some(pb::notarise_response::Result::Signed(_)))
    };
    let numbers: std::collections::HashMap<Vec<u8>, u64> = (0..9_000u64)
        .map(|n| (hash("kill-tx", n).to_vec(), n))
        .collect();
    let mut winners: std::collections::HashMap<u64, Vec<Vec<u8>>> = Default::default();
    let mut record = |answers: Vec<pb::NotariseResponse>| {
        for answer in answers.iter().filter(|a| signed(a)) {
            let n = numbers[&answer.tx_id];
            let entry = winners.entry(n / 3).or_default();
            if !entry.contains(&answer.tx_id) {
                entry.push(answer.tx_id.clone());
            }
        }
    };
    // Every node gets one contender of each pair, at once; node 2 is killed meanwhile.
    let round = |first_pair: u64, pairs: u64, nodes_up: &[usize]| {
        runtime.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for &node in nodes_up {
                let numbers: Vec<u64> = (first_pair..first_pair + pairs)
                    .map(|pair| pair * 3 + node as u64)
                    .collect();
                tasks.spawn(send(node, numbers));
            }
            let mut all = Vec::new();
            while let Some(done) = tasks.join_next().await {
                all.extend(done.unwrap());
            }
            all
        })
    };
    let killer = std::thread::spawn({
        let process = nodes[2].take();
        move || {
            std::thread::sleep(Duration::from_millis(400));
            drop(process);
        }
    });
    record(round(0, 2_000, &[0, 1, 2]));
    killer.join().unwrap();
    record(round(2_000, 500, &[0, 1]));
    nodes[2] = Some(start_node(&dir, 2));
    record(round(2_500, 500, &[0, 1, 2]));

    for (pair, txs) in &winners {
        assert_eq!(
            txs.len(),
            1,
            "pair {pair} notarised to {} transactions",
            txs.len()
        );
    }
    assert!(
        winners.len() > 1_000,
        "only {} pairs notarised",
        winners.len()
    );
    // Every node, asked to spend a notarised pair again with a new transaction,
    // answers with the winner's hash.
    let sample: Vec<(u64, Vec<u8>)> = winners
        .iter()
        .take(50)
        .map(|(pair, txs)| (*pair, txs[0].clone()))
        .collect();
    runtime.block_on(async {
        for (node, address) in addresses.iter().enumerate() {
            let caller = Caller::from_msp_dir(&dir.join("client"), "localhost").unwrap();
            let mut client = caller.connect(address).await.unwrap();
            for (pair, winner) in &sample {
                let late = ValidatedRequest::new(
                    TxId(hash("late-tx", pair * 10 + node as u64)),
                    vec![StateRef::new(hash("kill-state", *pair), 0)],
                    Vec::new(),
                    TimeWindow::default(),
                )
                .unwrap();
                let signed_request = caller.request(&late, orderer::dev::NOTARY_NAME).unwrap();
                let answer = client.notarise(signed_request).await.unwrap().into_inner();
                let Some(pb::notarise_response::Result::Error(pb::Error {
                    kind: Some(pb::error::Kind::Conflict(conflict)),
                })) = answer.result
                else {
                    panic!("node {node}: pair {pair} spent again: {answer:?}");
                };
                let winner_hash: [u8; 32] = Sha256::digest(winner).into();
                assert_eq!(conflict.entries[0].consuming_tx_hash, winner_hash.to_vec());
            }
        }
    });
    println!(
        "notary across a kill: {} pairs notarised, each to exactly one transaction on every node",
        winners.len()
    );
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir);
}
