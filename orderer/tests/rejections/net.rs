//! A three-node cluster of real nodes (`start_node`: every listener with mutual TLS)
//! trusting two organisations, with one channel whose policies name only the first, and
//! a notary on every node.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ca::{Algo, CertificateAuthority, IssuedIdentity, Role};
use channel::{BatchConfig, ChannelPolicies, ChannelPolicy, MspRole, Principal};
use proto::common::{HeaderType, Status};
use proto::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use proto::prost::Message as _;
use proto::synod::notary as pb;
use proto::synod::notary::notary_client::NotaryClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use orderer::admin_client::{AdminClient, AdminTls};
use orderer::client::Signer;
use orderer::node::server::{
    ConsensusTuning, NodeConfig, NotaryConfig, PeerConfig, RunningNode, SigningPaths, TlsPaths,
    TrustedMsp, start_node,
};

use super::notary::{NOTARY_NAME, OnceConnector};

/// The organisation of the orderers, and the only one the channel's policies name.
pub const OURS: &str = "OrdererMSP";
/// Trusted by the nodes (its members pass TLS and membership) but named by no policy.
pub const OTHER: &str = "OtherMSP";
pub const CHANNEL: &str = "guarded";
const REPLICAS: usize = 3;

pub fn signer(identity: &IssuedIdentity) -> Signer {
    Signer {
        msp_id: identity.msp_id.clone(),
        cert_pem: identity.signing.cert_pem.clone(),
        key_pem: identity.signing.key_pem().to_string(),
    }
}

/// The channel's policies: clients of ours write; its clients and orderers read; its
/// admins administer.
pub fn policies() -> ChannelPolicies {
    let ours = |role| Principal::new(OURS, role);
    ChannelPolicies {
        readers: ChannelPolicy::any_of([ours(MspRole::Client), ours(MspRole::Orderer)]),
        writers: ChannelPolicy::any_of([ours(MspRole::Client)]),
        admins: ChannelPolicy::any_of([ours(MspRole::Admin)]),
    }
}

pub struct Net {
    /// The nodes' files, deleted with the net.
    _dir: tempfile::TempDir,
    pub ours: CertificateAuthority,
    pub other: CertificateAuthority,
    /// Trusted by no node; it calls its organisation OURS, as an impostor would.
    pub rogue: CertificateAuthority,
    pub orderers: Vec<IssuedIdentity>,
    pub client: IssuedIdentity,
    pub admin: IssuedIdentity,
    pub nodes: Vec<RunningNode>,
    nonces: AtomicU64,
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A node's listeners: replica, client (AtomicBroadcast), admin, notary.
type Addresses = (SocketAddr, SocketAddr, SocketAddr, SocketAddr);

fn config(dir: &Path, id: usize, addresses: &[Addresses]) -> NodeConfig {
    let home = dir.join(format!("orderer{id}"));
    let (replica, client, admin, notary) = addresses[id];
    NodeConfig {
        operations_listen: None,
        id: id as u8,
        replicas: REPLICAS,
        data_dir: home.join("data"),
        replica_listen: replica,
        client_listen: client,
        admin_listen: admin,
        peers: (0..REPLICAS)
            .filter(|peer| *peer != id)
            .map(|peer| PeerConfig {
                id: peer as u8,
                address: addresses[peer].0.to_string(),
                tls_name: format!("orderer{peer}"),
            })
            .collect(),
        tls: TlsPaths {
            cert: home.join("tls/server.crt"),
            key: home.join("tls/server.key"),
            // Both organisations' CAs: their members' TLS certificates get through the
            // handshake, and what they may do is decided after it.
            ca: dir.join("tls-ca.pem"),
        },
        signing: SigningPaths {
            msp_id: OURS.into(),
            cert: home.join("msp/signcerts/cert.pem"),
            key: home.join("msp/keystore/key.pem"),
        },
        trusted_msps: vec![
            TrustedMsp {
                msp_id: OURS.into(),
                dir: dir.join("ours-ca"),
            },
            TrustedMsp {
                msp_id: OTHER.into(),
                dir: dir.join("other-ca"),
            },
        ],
        consensus: ConsensusTuning::default(),
        // Its callers are checked against both organisations: the notary has no
        // channel policies.
        notary: Some(NotaryConfig {
            listen: notary,
            name: NOTARY_NAME.into(),
            batch_signing: true,
            // Like the channel's policies, the notary names only our organisation.
            callers: vec![format!("{OURS}:client"), format!("{OURS}:peer")],
        }),
    }
}

impl Net {
    /// Starts the nodes and creates the channel through node 0's participation API.
    pub async fn start() -> Net {
        let dir = tempfile::tempdir().unwrap();
        let mut ours = CertificateAuthority::init("ca.ours", OURS, Algo::P256).unwrap();
        ours.save(&dir.path().join("ours-ca")).unwrap();
        let mut other = CertificateAuthority::init("ca.other", OTHER, Algo::P256).unwrap();
        other.save(&dir.path().join("other-ca")).unwrap();
        let rogue = CertificateAuthority::init("ca.rogue", OURS, Algo::P256).unwrap();
        std::fs::write(
            dir.path().join("tls-ca.pem"),
            format!("{}{}", ours.cert_pem(), other.cert_pem()),
        )
        .unwrap();
        let mut orderers = Vec::new();
        for id in 0..REPLICAS {
            let name = format!("orderer{id}");
            let sans = [name.clone(), "localhost".into(), "127.0.0.1".into()];
            let identity = ours.issue(Role::Orderer, &name, &sans, 30).unwrap();
            identity.write_msp(&dir.path().join(&name)).unwrap();
            orderers.push(identity);
        }
        let client = ours.issue(Role::Client, "client", &[], 30).unwrap();
        let admin = ours.issue(Role::Admin, "admin", &[], 30).unwrap();

        let addresses: Vec<_> = (0..REPLICAS)
            .map(|_| (free_port(), free_port(), free_port(), free_port()))
            .collect();
        // Started together: a node with empty storage waits to hear from every peer.
        let starting: Vec<_> = (0..REPLICAS)
            .map(|id| {
                let config = config(dir.path(), id, &addresses);
                tokio::spawn(async move { start_node(&config, None, None).await })
            })
            .collect();
        let mut nodes = Vec::new();
        for node in starting {
            nodes.push(node.await.unwrap().unwrap());
        }
        let net = Net {
            _dir: dir,
            ours,
            other,
            rogue,
            orderers,
            client,
            admin,
            nodes,
            nonces: AtomicU64::new(0),
        };
        net.create_channel().await;
        net
    }

    async fn create_channel(&self) {
        let batch = BatchConfig {
            batch_timeout_ms: 100,
            ..BatchConfig::default()
        };
        let block = channel::genesis_block_with_policies(CHANNEL, &batch, &policies())
            .unwrap()
            .0
            .encode_to_vec();
        let admin = AdminClient::new(
            &self.nodes[0].admin_addr.to_string(),
            Some("localhost"),
            &AdminTls {
                ca_pem: self.ours.cert_pem().to_string(),
                identity: Some((
                    self.admin.tls.cert_pem.clone(),
                    self.admin.tls.key_pem().to_string(),
                )),
            },
        )
        .unwrap();
        // The nodes may not reach one another yet: the API answers 503 without
        // ordering anything. Posting the same block again is safe (200 once a join
        // answered 503 took effect after all).
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut retried = false;
        loop {
            let answer = admin.join(&block).await.unwrap();
            if answer.status == 503 && Instant::now() < deadline {
                retried = true;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let joined = answer.status == 201 || (retried && answer.status == 200);
            assert!(joined, "{}: {}", answer.status, answer.error_text());
            break;
        }
        self.wait_for_height(1).await;
    }

    pub fn heights(&self) -> Vec<Option<u64>> {
        self.nodes
            .iter()
            .map(|node| node.directory.channel(CHANNEL).map(|c| *c.height.borrow()))
            .collect()
    }

    pub async fn wait_for_height(&self, height: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.heights() != vec![Some(height); REPLICAS] {
            assert!(
                Instant::now() < deadline,
                "heights {:?}, want {height}",
                self.heights()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn nonce(&self) -> [u8; 24] {
        let n = self.nonces.fetch_add(1, Ordering::Relaxed);
        let mut nonce = [9u8; 24];
        nonce[..8].copy_from_slice(&n.to_le_bytes());
        nonce
    }

    /// An AtomicBroadcast client of node `id` over TLS with the valid client's TLS
    /// identity (the envelopes carry the identity under test).
    pub async fn broadcast_client(&self, id: usize) -> AtomicBroadcastClient<Channel> {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(self.ours.cert_pem()))
            .identity(Identity::from_pem(
                &self.client.tls.cert_pem,
                self.client.tls.key_pem(),
            ))
            .domain_name("localhost");
        let channel = Channel::from_shared(format!("https://{}", self.nodes[id].client_addr))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        AtomicBroadcastClient::new(channel)
    }

    /// Broadcasts one envelope signed by `signer` (its signature corrupted if
    /// `tamper`) to node 0; the status and info of the answer.
    pub async fn broadcast(&self, signer: &Signer, tamper: bool) -> (Status, String) {
        let nonce = self.nonce();
        let mut envelope = signer
            .envelope(
                CHANNEL,
                HeaderType::EndorserTransaction,
                nonce.to_vec(),
                nonce,
            )
            .unwrap();
        if tamper {
            corrupt(&mut envelope.signature);
        }
        let mut client = self.broadcast_client(0).await;
        let mut answers = client
            .broadcast(tokio_stream::iter(vec![envelope]))
            .await
            .unwrap()
            .into_inner();
        let answer = answers.message().await.unwrap().unwrap();
        (Status::try_from(answer.status).unwrap(), answer.info)
    }

    /// Asks node 1 for block 0 as `signer`; the closing status.
    pub async fn deliver(&self, signer: &Signer, tamper: bool) -> (usize, Status) {
        let nonce = self.nonce();
        let mut seek = signer
            .seek(
                CHANNEL,
                Some(0),
                Some(0),
                proto::orderer::seek_info::SeekBehavior::FailIfNotReady,
                nonce,
            )
            .unwrap();
        if tamper {
            corrupt(&mut seek.signature);
        }
        let mut client = self.broadcast_client(1).await;
        let (blocks, status) = orderer::client::deliver(&mut client, seek).await.unwrap();
        (blocks.len(), status)
    }

    /// Sends `request` to node `id`'s notary over TLS with the valid client's TLS
    /// identity (the request carries the identity under test). Returns the local
    /// address the connection came from, and the answer or why there was none.
    pub async fn notarise(
        &self,
        id: usize,
        request: pb::NotariseRequest,
    ) -> (SocketAddr, Result<pb::NotariseResponse, String>) {
        let server = self.nodes[id]
            .notary_addr
            .expect("every node serves the notary");
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(self.ours.cert_pem()))
            .identity(Identity::from_pem(
                &self.client.tls.cert_pem,
                self.client.tls.key_pem(),
            ))
            .domain_name("localhost");
        let endpoint = Endpoint::from_shared(format!("https://{server}"))
            .unwrap()
            .tls_config(tls)
            .unwrap();
        let (connector, local) = OnceConnector::new(server);
        let channel = match endpoint.connect_with_connector(connector).await {
            Ok(channel) => channel,
            Err(e) => return (local, Err(format!("connect: {e:?}"))),
        };
        let answer = NotaryClient::new(channel)
            .notarise(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| format!("gRPC: {status}"));
        (local, answer)
    }

    pub async fn stop(self) {
        for node in self.nodes {
            node.stop().await;
        }
    }
}

/// Flips bits in the last byte: a signature (of an envelope, or of a certificate at the
/// end of its DER) that no longer verifies but still parses.
pub fn corrupt(bytes: &mut [u8]) {
    if let Some(last) = bytes.last_mut() {
        *last ^= 0x5a;
    }
}
