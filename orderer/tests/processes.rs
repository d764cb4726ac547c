//! Whole-system test with real `orderer` processes on loopback, real mutual TLS and
//! real RocksDB: clients connected to different nodes broadcast signed envelopes, one
//! node is killed with SIGKILL under load and restarted, and afterwards every node
//! delivers the same hash chain holding every acknowledged envelope exactly once.
//! Throughput and latency are printed, not asserted.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use channel::verify_chain;
use proto::common::{Block, HeaderType, Status};
use proto::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use proto::orderer::deliver_response::Type as Delivered;
use proto::orderer::seek_info::SeekBehavior;
use tokio_stream::StreamExt;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use orderer::client::Signer;
use orderer::dev::{DEMO_CHANNEL, MSP_ID, REPLICAS};
use orderer::node::server::NodeConfig;

const BIN: &str = env!("CARGO_BIN_EXE_orderer");

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

    /// Broadcasts envelopes `ids` one stream each, returns (id, status, latency) per
    /// envelope. Connection failures count as unacknowledged.
    async fn broadcast(&self, address: &str, ids: Vec<u64>) -> Vec<(u64, Status, Duration)> {
        let mut client = self.connect(address).await;
        let mut results = Vec::new();
        for chunk in ids.chunks(20) {
            let envelopes: Vec<_> = chunk
                .iter()
                .map(|id| {
                    self.signer
                        .envelope(
                            DEMO_CHANNEL,
                            HeaderType::EndorserTransaction,
                            data(*id),
                            nonce(*id),
                        )
                        .unwrap()
                })
                .collect();
            let sent = Instant::now();
            let Ok(responses) = client.broadcast(tokio_stream::iter(envelopes)).await else {
                continue;
            };
            let mut responses = responses.into_inner();
            for id in chunk {
                match responses.next().await {
                    Some(Ok(response)) => {
                        let status = Status::try_from(response.status).unwrap();
                        results.push((*id, status, sent.elapsed()));
                    }
                    _ => break,
                }
            }
        }
        results
    }

    async fn chain(&self, address: &str) -> Vec<Block> {
        let mut client = self.connect(address).await;
        let seek = self
            .signer
            .seek(
                DEMO_CHANNEL,
                Some(0),
                None,
                SeekBehavior::FailIfNotReady,
                nonce(u64::MAX),
            )
            .unwrap();
        let mut responses = client
            .deliver(tokio_stream::iter(vec![seek]))
            .await
            .unwrap()
            .into_inner();
        let mut blocks = Vec::new();
        while let Some(response) = responses.next().await {
            match response.unwrap().r#type.unwrap() {
                Delivered::Block(block) => blocks.push(block),
                Delivered::Status(status) => {
                    assert_eq!(status, Status::Success as i32);
                    return blocks;
                }
            }
        }
        panic!("deliver ended without status");
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

fn payloads(chain: &[Block]) -> Vec<Vec<u8>> {
    chain
        .iter()
        .skip(1)
        .flat_map(|b| b.data.clone().unwrap().data)
        .map(|envelope| {
            use proto::prost::Message as _;
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

#[test]
fn three_processes_survive_a_kill_and_agree_on_the_chain() {
    let dir: PathBuf = tempfile::tempdir().unwrap().keep();
    // `orderer dev` creates the cluster (CA, identities, configs, channel demo); then
    // it is killed outright and the nodes run as separate processes from its files.
    drop(spawn(
        &["dev", "--dir", dir.to_str().unwrap()],
        "client identity",
    ));
    let mut nodes: Vec<Option<Process>> =
        (0..REPLICAS).map(|id| Some(start_node(&dir, id))).collect();
    let addresses = client_addresses(&dir);
    let client = Client::load(&dir);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    let mut acknowledged = Vec::new();
    let mut latencies = Vec::new();

    runtime.block_on(async {
        // Phase 1: three clients on three nodes, concurrently.
        let ids = |n: u64| (n * 10_000..n * 10_000 + 400).collect::<Vec<_>>();
        let (a, b, c) = tokio::join!(
            client.broadcast(&addresses[0], ids(0)),
            client.broadcast(&addresses[1], ids(1)),
            client.broadcast(&addresses[2], ids(2)),
        );
        for (id, status, latency) in a.into_iter().chain(b).chain(c) {
            if status == Status::Success {
                acknowledged.push(id);
                latencies.push(latency);
            }
        }
    });
    assert_eq!(
        acknowledged.len(),
        1_200,
        "every envelope acknowledged with all nodes up"
    );

    // Phase 2: node 2 is killed during load on nodes 0 and 1, then restarted.
    let kill_at = Instant::now();
    nodes[2] = None;
    let (a, b) = runtime.block_on(async {
        let ids = |n: u64| (100_000 + n * 10_000..100_000 + n * 10_000 + 200).collect::<Vec<_>>();
        tokio::join!(
            client.broadcast(&addresses[0], ids(0)),
            client.broadcast(&addresses[1], ids(1)),
        )
    });
    for (id, status, _) in a.into_iter().chain(b) {
        if status == Status::Success {
            acknowledged.push(id);
        }
    }
    nodes[2] = Some(start_node(&dir, 2));
    let restarted = Instant::now();

    runtime.block_on(async {
        // Phase 3: everyone again, so the restarted node must catch up to serve.
        let results = client.broadcast(&addresses[2], (200_000..200_200).collect()).await;
        for (id, status, _) in results {
            assert_eq!(status, Status::Success, "the restarted node orders again");
            acknowledged.push(id);
        }
        let rejoin = restarted.elapsed();
        // Let Time-To-Cut close the last batch, then compare the chains.
        let mut chains = Vec::new();
        for address in &addresses {
            let mut chain = Vec::new();
            for _ in 0..100 {
                chain = client.chain(address).await;
                if payloads(&chain).len() >= acknowledged.len() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            verify_chain(&chain).unwrap();
            chains.push(chain);
        }
        let headers = |c: &[Block]| c.iter().map(|b| b.header.clone()).collect::<Vec<_>>();
        assert_eq!(headers(&chains[0]), headers(&chains[1]), "nodes 0 and 1 differ");
        assert_eq!(headers(&chains[0]), headers(&chains[2]), "node 2 differs");
        let mut ordered = payloads(&chains[0]);
        let total = ordered.len();
        ordered.sort();
        ordered.dedup();
        assert_eq!(ordered.len(), total, "an envelope is in two blocks");
        for id in &acknowledged {
            assert!(ordered.binary_search(&data(*id)).is_ok(), "acknowledged envelope {id} lost");
        }
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "system test: {} envelopes acknowledged in {elapsed:.1} s ({:.0}/s); phase-1 latency p50 {:?} p99 {:?} (batches of 20 per stream); node 2 killed {:?} after phase 1 start, back and ordering {:?} after restart",
            acknowledged.len(),
            acknowledged.len() as f64 / elapsed,
            percentile(&mut latencies, 0.5),
            percentile(&mut latencies, 0.99),
            kill_at.duration_since(started),
            rejoin,
        );
    });
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir);
}
