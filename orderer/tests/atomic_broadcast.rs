//! Fabric's `orderer.AtomicBroadcast` over gRPC on a three-node in-process cluster:
//! signed envelopes (Ed25519 and ECDSA P-256) broadcast to different nodes come back
//! SUCCESS only once ordered, every node delivers the same verifiable chain, and each
//! kind of bad envelope gets Fabric's status with an explanation.

mod support;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use ca::{Algo, CertificateAuthority, IssuedIdentity, Membership, Role};
use channel::{BatchConfig, ChannelCommand, verify_chain};
use proto::common::{Block, Envelope, HeaderType, Status};
use proto::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use proto::orderer::atomic_broadcast_server::AtomicBroadcastServer;
use proto::orderer::seek_info::SeekBehavior;
use tokio_stream::StreamExt;

use orderer::client::Signer;
use orderer::core::{Command, Tag};
use orderer::node::atomic_broadcast::{AtomicBroadcastService, ServiceLimits};
use orderer::node::server::nodelay_incoming;
use support::Cluster;

fn signer(identity: &IssuedIdentity) -> Signer {
    Signer {
        msp_id: identity.msp_id.clone(),
        cert_pem: identity.signing.cert_pem.clone(),
        key_pem: identity.signing.key_pem().to_string(),
    }
}

fn nonce(n: u64) -> [u8; 24] {
    let mut nonce = [7u8; 24];
    nonce[..8].copy_from_slice(&n.to_le_bytes());
    nonce
}

/// Serves AtomicBroadcast for node `id` on a free loopback port; returns its URL.
async fn serve(cluster: &Cluster, id: usize, membership: Arc<RwLock<Membership>>) -> String {
    let service = AtomicBroadcastService::new(
        cluster.nodes[id].as_ref().unwrap().inbox.clone(),
        cluster.directories[id].clone(),
        membership,
        cluster.stores[id].clone().unwrap(),
        ServiceLimits {
            max_envelope_bytes: 64 * 1024,
            order_timeout: Duration::from_secs(20),
            broadcast_window: 64,
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let incoming = nodelay_incoming(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AtomicBroadcastServer::new(service))
            .serve_with_incoming(incoming),
    );
    format!("http://{address}")
}

async fn broadcast(url: &str, envelopes: Vec<Envelope>) -> Vec<(Status, String)> {
    let mut client = AtomicBroadcastClient::connect(url.to_string())
        .await
        .unwrap();
    let count = envelopes.len();
    let responses = client
        .broadcast(tokio_stream::iter(envelopes))
        .await
        .unwrap()
        .into_inner();
    let answers: Vec<_> = responses
        .take(count)
        .map(|r| {
            let r = r.unwrap();
            (Status::try_from(r.status).unwrap(), r.info)
        })
        .collect()
        .await;
    assert_eq!(answers.len(), count, "one response per envelope");
    answers
}

/// Delivers what `seek` asks for from the node at `url`.
async fn deliver(url: &str, seek: Envelope) -> (Vec<Block>, Status) {
    let mut client = AtomicBroadcastClient::connect(url.to_string())
        .await
        .unwrap();
    orderer::client::deliver(&mut client, seek).await.unwrap()
}

#[test]
fn broadcast_and_deliver_like_fabric() {
    let cluster = Cluster::new();
    let mut org = CertificateAuthority::init("ca.org1", "Org1MSP", Algo::Ed25519).unwrap();
    let ed25519_client = org.issue(Role::Client, "alice", &[], 30).unwrap();
    let mut p256_org = CertificateAuthority::init("ca.org2", "Org2MSP", Algo::P256).unwrap();
    let p256_client = p256_org.issue(Role::Client, "bob", &[], 30).unwrap();
    let orderer_role = org.issue(Role::Orderer, "orderer9", &[], 30).unwrap();
    let mut stranger_ca = CertificateAuthority::init("ca.evil", "Org1MSP", Algo::Ed25519).unwrap();
    let stranger = stranger_ca.issue(Role::Client, "mallory", &[], 30).unwrap();
    let mut membership = Membership::new();
    membership.add_ca(org.msp_id(), org.cert_der()).unwrap();
    membership
        .add_ca(p256_org.msp_id(), p256_org.cert_der())
        .unwrap();
    let membership = Arc::new(RwLock::new(membership));

    cluster.propose(
        0,
        Command {
            tag: Tag::Channel("demo".into()),
            payload: ChannelCommand::Create {
                config: BatchConfig {
                    max_message_count: 25,
                    absolute_max_bytes: 16 * 1024,
                    preferred_max_bytes: 8 * 1024,
                    batch_timeout_ms: 100,
                },
            }
            .encode(),
        },
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        for _ in 0..200 {
            if cluster
                .directories
                .iter()
                .all(|d| d.channel("demo").is_some())
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let url0 = serve(&cluster, 0, membership.clone()).await;
        let url1 = serve(&cluster, 1, membership.clone()).await;
        let alice = signer(&ed25519_client);
        let bob = signer(&p256_client);

        // 100 envelopes from each client, to different nodes, concurrently.
        let batch = |who: &Signer, first: u64| -> Vec<Envelope> {
            (first..first + 100)
                .map(|n| {
                    who.envelope(
                        "demo",
                        HeaderType::EndorserTransaction,
                        format!("tx {n}").into_bytes(),
                        nonce(n),
                    )
                    .unwrap()
                })
                .collect()
        };
        let (a, b) = tokio::join!(
            broadcast(&url0, batch(&alice, 0)),
            broadcast(&url1, batch(&bob, 1_000))
        );
        for (status, info) in a.iter().chain(b.iter()) {
            assert_eq!(*status, Status::Success, "{info}");
        }

        // Rejections, each with its status and a reason.
        let good = alice
            .envelope(
                "demo",
                HeaderType::EndorserTransaction,
                b"x".to_vec(),
                nonce(5_000),
            )
            .unwrap();
        let mut tampered = good.clone();
        tampered.signature[10] ^= 1;
        let mut tx_id_mismatch = alice
            .envelope(
                "demo",
                HeaderType::EndorserTransaction,
                b"y".to_vec(),
                nonce(5_001),
            )
            .unwrap();
        tx_id_mismatch = {
            use proto::common::{ChannelHeader, Payload};
            use proto::prost::Message as _;
            let mut payload = Payload::decode(&tx_id_mismatch.payload[..]).unwrap();
            let header = payload.header.as_mut().unwrap();
            let mut channel_header = ChannelHeader::decode(&header.channel_header[..]).unwrap();
            channel_header.tx_id = "0".repeat(64);
            header.channel_header = channel_header.encode_to_vec();
            let payload = payload.encode_to_vec();
            let signature = ca::signature::sign(&alice.key_pem, &payload).unwrap();
            Envelope { payload, signature }
        };
        let cases = vec![
            (good.clone(), Status::Success),
            (good.clone(), Status::BadRequest), // same tx id again
            (tampered, Status::Forbidden),
            (
                alice
                    .envelope(
                        "nope",
                        HeaderType::EndorserTransaction,
                        b"x".to_vec(),
                        nonce(5_002),
                    )
                    .unwrap(),
                Status::NotFound,
            ),
            (
                alice
                    .envelope(
                        "demo",
                        HeaderType::EndorserTransaction,
                        vec![0; 20 * 1024],
                        nonce(5_003),
                    )
                    .unwrap(),
                Status::RequestEntityTooLarge,
            ),
            (
                alice
                    .envelope("demo", HeaderType::Config, b"x".to_vec(), nonce(5_004))
                    .unwrap(),
                Status::BadRequest,
            ),
            (
                signer(&stranger)
                    .envelope(
                        "demo",
                        HeaderType::EndorserTransaction,
                        b"x".to_vec(),
                        nonce(5_005),
                    )
                    .unwrap(),
                Status::Forbidden,
            ),
            (
                signer(&orderer_role)
                    .envelope(
                        "demo",
                        HeaderType::EndorserTransaction,
                        b"x".to_vec(),
                        nonce(5_006),
                    )
                    .unwrap(),
                Status::Forbidden,
            ),
            (tx_id_mismatch, Status::BadRequest),
            (
                Envelope {
                    payload: vec![1, 2, 3],
                    signature: vec![],
                },
                Status::BadRequest,
            ),
        ];
        let expected: Vec<Status> = cases.iter().map(|(_, s)| *s).collect();
        let mut answers = broadcast(&url0, cases.into_iter().map(|(e, _)| e).collect()).await;
        // The envelopes of one stream are checked concurrently and answered in order:
        // either copy of the same tx id may be the one ordered, the other a duplicate.
        if answers.len() >= 2 && answers[0].0 == Status::BadRequest {
            answers.swap(0, 1);
        }
        for ((status, info), want) in answers.iter().zip(&expected) {
            assert_eq!(status, want, "{info}");
            if *want != Status::Success {
                assert!(!info.is_empty(), "a rejection must say why");
            }
        }

        // Every node delivers the same chain holding all 201 envelopes once.
        let mut chains = Vec::new();
        for url in [&url0, &url1] {
            // Wait for the tail to be cut by Time-To-Cut, then read the whole chain.
            let mut chain = Vec::new();
            for _ in 0..100 {
                let seek = alice
                    .seek(
                        "demo",
                        Some(0),
                        None,
                        SeekBehavior::FailIfNotReady,
                        nonce(9_000),
                    )
                    .unwrap();
                let (blocks, status) = deliver(url, seek).await;
                assert_eq!(status, Status::Success);
                chain = blocks;
                let envelopes: usize = chain
                    .iter()
                    .skip(1)
                    .map(|b| b.data.as_ref().unwrap().data.len())
                    .sum();
                if envelopes == 201 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            verify_chain(&chain).unwrap();
            let mut data: Vec<Vec<u8>> = chain
                .iter()
                .skip(1)
                .flat_map(|b| b.data.clone().unwrap().data)
                .collect();
            assert_eq!(data.len(), 201);
            data.sort();
            data.dedup();
            assert_eq!(data.len(), 201, "an envelope is in two blocks");
            chains.push(chain);
        }
        let headers = |c: &[Block]| c.iter().map(|b| b.header.clone()).collect::<Vec<_>>();
        assert_eq!(headers(&chains[0]), headers(&chains[1]));

        // Deliver errors: unknown channel, a block that does not exist yet.
        let seek = alice
            .seek(
                "nope",
                Some(0),
                Some(0),
                SeekBehavior::FailIfNotReady,
                nonce(9_001),
            )
            .unwrap();
        assert_eq!(deliver(&url0, seek).await.1, Status::NotFound);
        let seek = alice
            .seek(
                "demo",
                Some(10_000),
                Some(10_000),
                SeekBehavior::FailIfNotReady,
                nonce(9_002),
            )
            .unwrap();
        assert_eq!(deliver(&url0, seek).await.1, Status::NotFound);
        let seek = signer(&stranger)
            .seek(
                "demo",
                Some(0),
                Some(0),
                SeekBehavior::FailIfNotReady,
                nonce(9_003),
            )
            .unwrap();
        assert_eq!(deliver(&url0, seek).await.1, Status::Forbidden);
    });
}
