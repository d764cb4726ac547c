//! One orderer node assembled from its configuration file: the durable store, the
//! consensus loop on its own thread, the replica transport (mutual TLS), and Fabric's
//! AtomicBroadcast for clients (mutual TLS).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use ca::Membership;
use notary_adapter::{CheckConfig, NodeSigner};
use proto::msp::SerializedIdentity;
use proto::orderer::atomic_broadcast_server::AtomicBroadcastServer;
use proto::prost::Message as _;
use proto::synod::notary::notary_server::NotaryServer;
use serde::{Deserialize, Serialize};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;

use channel::{ChannelPolicy, Principal};

use crate::core::{Config, ReplicaId};
use crate::node::applications::Applications;
use crate::node::atomic_broadcast::{AtomicBroadcastService, ServiceLimits};
use crate::node::channels::{BlockSigner, ChannelHost};
use crate::node::client_tls;
use crate::node::directory::Directory;
use crate::node::notary::{NotaryHost, NotaryWaiters};
use crate::node::notary_service::NotaryService;
use crate::node::operations::{self, Health};
use crate::node::runtime::{INBOX_CAPACITY, Input, Runtime, StateTransferLink};
use crate::node::state_transfer::{rejoin_horizons, spawn_fetcher};
use crate::node::transport::{
    self, HorizonCell, PeerEndpoint, ReplicaMembership, StateSource, TlsMaterial, TransportConfig,
    TransportHandle, TransportStats,
};
use crate::storage::Store;

/// A node's configuration file (TOML).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NodeConfig {
    /// This replica's index, `0..replicas`.
    pub id: ReplicaId,
    pub replicas: usize,
    pub data_dir: PathBuf,
    /// Replica-to-replica listener.
    pub replica_listen: SocketAddr,
    /// AtomicBroadcast listener for peers and clients.
    pub client_listen: SocketAddr,
    /// Channel participation API listener (HTTPS, mutual TLS, admins only; Fabric's
    /// admin port is 7053).
    pub admin_listen: SocketAddr,
    /// Operations endpoint (plain HTTP: `/healthz`, `/metrics`); none if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operations_listen: Option<SocketAddr>,
    /// Every other replica.
    pub peers: Vec<PeerConfig>,
    /// This node's TLS identity and the CA its peers' and clients' TLS certificates
    /// must chain to.
    pub tls: TlsPaths,
    /// This node's signing identity (signs blocks).
    pub signing: SigningPaths,
    /// Organisations whose members may use this node: MSP id and MSP directory
    /// (`cacerts/`, `crls/`).
    pub trusted_msps: Vec<TrustedMsp>,
    #[serde(default)]
    pub consensus: ConsensusTuning,
    /// The Corda-style notary service; a node without this section serves none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notary: Option<NotaryConfig>,
}

/// The notary listener and how it answers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NotaryConfig {
    /// gRPC `synod.notary.Notary` listener (mutual TLS).
    pub listen: SocketAddr,
    /// The notary's name: requests naming another notary are refused.
    pub name: String,
    /// Sign the successes of one write with one Merkle root rather than one signature
    /// each.
    #[serde(default = "batch_signing_default")]
    pub batch_signing: bool,
    /// Who may notarise, as `MSPID:role` entries (role: member, admin, client, peer or
    /// orderer). Empty: the clients and peers of every trusted MSP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub callers: Vec<String>,
}

impl NotaryConfig {
    /// The allowed callers as a policy; `None` for the default.
    pub fn callers_policy(&self) -> Result<Option<ChannelPolicy>, NodeError> {
        if self.callers.is_empty() {
            return Ok(None);
        }
        let principals = self
            .callers
            .iter()
            .map(|text| {
                text.parse::<Principal>()
                    .map_err(|why| NodeError(format!("[notary] callers: {why}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(ChannelPolicy::any_of(principals)))
    }
}

fn batch_signing_default() -> bool {
    true
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PeerConfig {
    pub id: ReplicaId,
    /// host:port of its replica listener.
    pub address: String,
    /// The name its TLS certificate carries.
    pub tls_name: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TlsPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SigningPaths {
    pub msp_id: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrustedMsp {
    pub msp_id: String,
    pub dir: PathBuf,
}

/// Consensus timing; defaults suit a LAN.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ConsensusTuning {
    pub tick_ms: u64,
    pub suspect_after_ms: u64,
    /// Decided slots kept for lagging peers; one further behind takes a snapshot.
    #[serde(default = "default_max_log_slots")]
    pub max_log_slots: u64,
}

fn default_max_log_slots() -> u64 {
    Config::lan(3).max_log_slots
}

impl Default for ConsensusTuning {
    fn default() -> Self {
        let lan = Config::lan(3);
        ConsensusTuning {
            tick_ms: lan.tick_us / 1000,
            suspect_after_ms: lan.suspect_after_us / 1000,
            max_log_slots: lan.max_log_slots,
        }
    }
}

#[derive(Debug)]
pub struct NodeError(pub String);

impl std::fmt::Display for NodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NodeError {}

fn read(path: &Path, what: &str) -> Result<String, NodeError> {
    std::fs::read_to_string(path)
        .map_err(|e| NodeError(format!("cannot read {what} {}: {e}", path.display())))
}

impl NodeConfig {
    pub fn load(path: &Path) -> Result<NodeConfig, NodeError> {
        let text = read(path, "configuration")?;
        NodeConfig::parse(&text)
            .map_err(|NodeError(why)| NodeError(format!("{}: {why}", path.display())))
    }

    /// Parses and checks a configuration (TOML).
    pub fn parse(text: &str) -> Result<NodeConfig, NodeError> {
        let config: NodeConfig = toml::from_str(text).map_err(|e| NodeError(e.to_string()))?;
        config.core()?;
        if let Some(notary) = &config.notary {
            notary.callers_policy()?;
        }
        Ok(config)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a node configuration always serialises")
    }

    /// The consensus core's configuration.
    pub fn core(&self) -> Result<Config, NodeError> {
        let mut core = Config::lan(self.replicas);
        core.tick_us = self.consensus.tick_ms * 1000;
        core.suspect_after_us = self.consensus.suspect_after_ms * 1000;
        core.max_log_slots = self.consensus.max_log_slots;
        core.compact_step_slots = core.compact_step_slots.min(core.max_log_slots / 4).max(1);
        core.revoke_backoff_us = core.suspect_after_us / 2;
        core.stuck_after_us = core.stuck_after_us.max(core.suspect_after_us * 2);
        core.validate().map_err(NodeError)?;
        if (self.id as usize) >= self.replicas || self.peers.len() + 1 != self.replicas {
            return Err(NodeError(format!(
                "node {} of {} replicas must list the other {} as peers",
                self.id,
                self.replicas,
                self.replicas.saturating_sub(1)
            )));
        }
        Ok(core)
    }
}

/// How often a node re-reads its trusted MSP folders, so that a new CRL or CA takes
/// effect without a restart.
pub const MEMBERSHIP_RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// Re-reads the trusted MSP folders every `every`. On a read error the previous trust
/// stays in force (a botched edit must neither lock members out nor let revoked ones in).
async fn reload_membership(membership: Arc<RwLock<Membership>>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let mut fresh = membership.read().expect("membership lock").clone();
        match fresh.reload() {
            Ok(()) => *membership.write().expect("membership lock") = fresh,
            Err(e) => eprintln!("trusted MSPs not reloaded, keeping the previous ones: {e}"),
        }
    }
}

/// Accepted connections of `listener` with TCP_NODELAY set: tonic's
/// `serve_with_incoming` does not set it, and Nagle would hold every small response
/// about 40 ms.
pub fn nodelay_incoming(
    listener: tokio::net::TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    TcpListenerStream::new(listener).map(|socket| {
        let socket = socket?;
        socket.set_nodelay(true)?;
        Ok(socket)
    })
}

/// A running node; `stop` shuts it down.
pub struct RunningNode {
    pub replica_addr: SocketAddr,
    pub client_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// Where the notary listens, if this node serves one.
    pub notary_addr: Option<SocketAddr>,
    /// Where the operations endpoint listens, if configured.
    pub operations_addr: Option<SocketAddr>,
    pub directory: Arc<Directory>,
    pub store: Arc<Store>,
    inbox: SyncSender<Input>,
    runtime: Option<JoinHandle<()>>,
    transport: Option<TransportHandle>,
    server: tokio::task::JoinHandle<()>,
    admin: tokio::task::JoinHandle<()>,
    notary: Option<tokio::task::JoinHandle<()>>,
    notary_waiters: Arc<NotaryWaiters>,
    operations: Option<tokio::task::JoinHandle<()>>,
    reloader: tokio::task::JoinHandle<()>,
}

impl RunningNode {
    pub fn inbox(&self) -> &SyncSender<Input> {
        &self.inbox
    }

    /// The replica transport's counters (refused connections among them).
    pub fn transport_stats(&self) -> Option<TransportStats> {
        self.transport.as_ref().map(TransportHandle::stats)
    }

    pub async fn stop(mut self) {
        self.reloader.abort();
        self.server.abort();
        self.admin.abort();
        if let Some(notary) = &self.notary {
            notary.abort();
        }
        self.notary_waiters.close();
        if let Some(operations) = &self.operations {
            operations.abort();
        }
        if let Some(transport) = self.transport.take() {
            transport.shutdown().await;
        }
        let _ = self.inbox.send(Input::Stop);
        if let Some(runtime) = self.runtime.take() {
            let _ = tokio::task::spawn_blocking(move || runtime.join()).await;
        }
    }
}

/// Starts a node on the current Tokio runtime. Listeners may be passed pre-bound (a
/// cluster on ephemeral ports must know every address before any node starts).
pub async fn start_node(
    config: &NodeConfig,
    replica_listener: Option<std::net::TcpListener>,
    client_listener: Option<std::net::TcpListener>,
) -> Result<RunningNode, NodeError> {
    let core = config.core()?;
    // Bound first: a node whose admin port is taken must not start without its API.
    let admin_listener = std::net::TcpListener::bind(config.admin_listen)
        .map_err(|e| NodeError(format!("admin listener {}: {e}", config.admin_listen)))?;
    let tls = TlsMaterial {
        cert_pem: read(&config.tls.cert, "TLS certificate")?,
        key_pem: read(&config.tls.key, "TLS key")?,
        ca_pem: read(&config.tls.ca, "TLS CA certificate")?,
    };
    let membership = Membership::from_dirs(
        config
            .trusted_msps
            .iter()
            .map(|m| (m.msp_id.clone(), m.dir.clone())),
    )
    .map_err(|e| NodeError(format!("trusted MSPs: {e}")))?;
    let membership = Arc::new(RwLock::new(membership));
    let signer = BlockSigner {
        key_pem: read(&config.signing.key, "signing key")?,
        creator: SerializedIdentity {
            mspid: config.signing.msp_id.clone(),
            id_bytes: read(&config.signing.cert, "signing certificate")?.into_bytes(),
        }
        .encode_to_vec(),
    };
    let store = Arc::new(
        Store::open(&config.data_dir)
            .map_err(|e| NodeError(format!("store {}: {e}", config.data_dir.display())))?,
    );
    let directory = Arc::new(Directory::new(100_000));
    let channels = ChannelHost::load(store.clone(), directory.clone(), Some(signer))
        .map_err(|e| NodeError(format!("channels: {e}")))?;
    let notary_waiters = Arc::new(NotaryWaiters::new(100_000));
    let notary_signer = match &config.notary {
        Some(_) => Some(
            NodeSigner::new(
                read(&config.signing.cert, "signing certificate")?.as_bytes(),
                &read(&config.signing.key, "signing key")?,
            )
            .map_err(|e| NodeError(format!("notary signing identity: {e}")))?,
        ),
        None => None,
    };
    let notary = NotaryHost::load(
        store.clone(),
        notary_waiters.clone(),
        notary_signer,
        config.notary.as_ref().is_none_or(|n| n.batch_signing),
    )
    .map_err(|e| NodeError(format!("notary: {e}")))?;
    let host = Applications { channels, notary };
    let (inbox, receiver) = sync_channel(INBOX_CAPACITY);

    let peers = config
        .peers
        .iter()
        .map(|p| PeerEndpoint {
            id: p.id,
            address: p.address.clone(),
            tls_name: p.tls_name.clone(),
        })
        .collect();
    let mut transport_config =
        TransportConfig::new(config.id, config.replica_listen, peers, tls.clone(), &core);
    // Replicas are orderers of this node's own organisation, checked against the CRLs too.
    transport_config.members = Some(ReplicaMembership {
        membership: membership.clone(),
        msp_id: config.signing.msp_id.clone(),
    });
    let replica_listener = match replica_listener {
        Some(listener) => listener,
        None => std::net::TcpListener::bind(config.replica_listen)
            .map_err(|e| NodeError(format!("replica listener {}: {e}", config.replica_listen)))?,
    };
    let horizon = Arc::new(HorizonCell::default());
    let stats = store.stats();
    let blank = stats.live_records == 0
        && stats.applied_upto == 0
        && !store
            .transfer_in_progress()
            .map_err(|e| NodeError(format!("store: {e}")))?;
    if blank {
        // Answer peers that rejoin at the same time (a new cluster) with "knows nothing"
        // instead of keeping them waiting for this replica.
        horizon.set_rejoining(0);
    }
    let state = StateSource {
        store: store.clone(),
        horizon: horizon.clone(),
    };
    let (replica_transport, transport_handle) = transport::start_serving(
        transport_config,
        replica_listener,
        inbox.clone(),
        Some(state),
    )
    .await
    .map_err(|e| NodeError(format!("replica transport: {e}")))?;
    let replica_addr = transport_handle.local_addr();
    let clients = transport_handle.peer_clients();
    let rejoin_horizons = if blank {
        // Empty storage: a new node, or one that lost its data directory. Either way it
        // must not vote where it may have voted before.
        Some(rejoin_horizons(&clients, &horizon, config.id).await)
    } else {
        None
    };
    let fetcher = spawn_fetcher(clients, inbox.clone(), config.id);

    let runtime = Runtime::open(
        core,
        config.id,
        store.clone(),
        host,
        replica_transport,
        receiver,
        rejoin_horizons.as_deref(),
    )
    .map_err(|e| NodeError(format!("consensus loop: {e}")))?
    .with_state_transfer(StateTransferLink { horizon, fetcher });
    let consensus_running = Arc::new(AtomicBool::new(true));
    let running = consensus_running.clone();
    let runtime = std::thread::Builder::new()
        .name(format!("consensus-{}", config.id))
        .spawn(move || {
            // Cleared however the loop ends, a panic included.
            let _running = ClearOnDrop(running);
            if let Err(e) = runtime.run() {
                // The node can no longer promise durability: stop ordering, loudly.
                crate::log_line!("consensus loop stopped: {e}");
            }
        })
        .map_err(|e| NodeError(format!("cannot start the consensus thread: {e}")))?;

    let client_listener = match client_listener {
        Some(listener) => listener,
        None => std::net::TcpListener::bind(config.client_listen)
            .map_err(|e| NodeError(format!("client listener {}: {e}", config.client_listen)))?,
    };
    let client_addr = client_listener
        .local_addr()
        .map_err(|e| NodeError(format!("client listener: {e}")))?;
    client_listener
        .set_nonblocking(true)
        .map_err(|e| NodeError(format!("client listener: {e}")))?;
    let client_listener = tokio::net::TcpListener::from_std(client_listener)
        .map_err(|e| NodeError(format!("client listener: {e}")))?;
    let reloaded = membership.clone();
    let admin_api = crate::node::participation::ParticipationApi::new(
        inbox.clone(),
        directory.clone(),
        membership.clone(),
        store.clone(),
        crate::node::participation::ParticipationLimits::default(),
    );
    let (admin_addr, admin) = crate::node::participation::start(admin_listener, &tls, admin_api)
        .map_err(|e| NodeError(format!("participation API: {e}")))?;
    let service = AtomicBroadcastService::new(
        inbox.clone(),
        directory.clone(),
        membership,
        store.clone(),
        ServiceLimits::default(),
    );
    // TLS is ours rather than tonic's, so that refused handshakes are logged.
    let client_acceptor =
        client_tls::acceptor(&tls, &[b"h2"]).map_err(|e| NodeError(format!("client TLS: {e}")))?;
    let incoming = client_tls::incoming(client_listener, client_acceptor, "AtomicBroadcast");
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(
            AtomicBroadcastServer::new(service)
                .max_decoding_message_size(ServiceLimits::default().max_envelope_bytes + 1024),
        );
    let server = tokio::spawn(async move {
        if let Err(e) = server.serve_with_incoming(incoming).await {
            eprintln!("AtomicBroadcast server stopped: {e}");
        }
    });
    let (notary_addr, notary) = match &config.notary {
        Some(notary) => {
            let (addr, task) = start_notary(
                notary,
                None,
                &tls,
                NotaryService::new(
                    inbox.clone(),
                    notary_waiters.clone(),
                    reloaded.clone(),
                    CheckConfig::new(notary.name.clone()),
                    notary.callers_policy()?,
                ),
            )?;
            (Some(addr), Some(task))
        }
        None => (None, None),
    };
    let (operations_addr, operations) = match config.operations_listen {
        Some(address) => {
            let listener = std::net::TcpListener::bind(address)
                .map_err(|e| NodeError(format!("operations listener {address}: {e}")))?;
            let health = Health {
                directory: directory.clone(),
                consensus_running,
            };
            let (addr, task) = operations::start(listener, health)
                .map_err(|e| NodeError(format!("operations endpoint: {e}")))?;
            (Some(addr), Some(task))
        }
        None => (None, None),
    };
    let reloader = tokio::spawn(reload_membership(reloaded, MEMBERSHIP_RELOAD_INTERVAL));
    Ok(RunningNode {
        replica_addr,
        client_addr,
        directory,
        store,
        inbox,
        runtime: Some(runtime),
        transport: Some(transport_handle),
        server,
        reloader,
        admin_addr,
        admin,
        notary_addr,
        notary,
        notary_waiters,
        operations_addr,
        operations,
    })
}

/// Clears its flag when dropped.
struct ClearOnDrop(Arc<AtomicBool>);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Serves `synod.notary.Notary` with mutual TLS on `listener` (or `config.listen`).
fn start_notary(
    config: &NotaryConfig,
    listener: Option<std::net::TcpListener>,
    tls: &TlsMaterial,
    service: NotaryService,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), NodeError> {
    let fail = |e: std::io::Error| NodeError(format!("notary listener {}: {e}", config.listen));
    let listener = match listener {
        Some(listener) => listener,
        None => std::net::TcpListener::bind(config.listen).map_err(fail)?,
    };
    let addr = listener.local_addr().map_err(fail)?;
    listener.set_nonblocking(true).map_err(fail)?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(fail)?;
    let acceptor =
        client_tls::acceptor(tls, &[b"h2"]).map_err(|e| NodeError(format!("notary TLS: {e}")))?;
    let incoming = client_tls::incoming(listener, acceptor, "notary");
    let max_request_bytes = CheckConfig::new("").max_request_bytes;
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(NotaryServer::new(service).max_decoding_message_size(max_request_bytes));
    let task = tokio::spawn(async move {
        if let Err(e) = server.serve_with_incoming(incoming).await {
            crate::log_line!("notary server stopped: {e}");
        }
    });
    Ok((addr, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample in `deploy/` is what operators copy: it must stay valid.
    #[test]
    fn the_deploy_sample_parses_and_describes_three_replicas() {
        let sample = include_str!("../../../deploy/orderer0.toml");
        let config = NodeConfig::parse(sample).unwrap();
        assert_eq!((config.id, config.replicas, config.peers.len()), (0, 3, 2));
        assert_eq!(config.core().unwrap().suspect_after_us, 300_000);
        let round_trip = NodeConfig::parse(&config.to_toml()).unwrap();
        assert_eq!(round_trip, config);
    }

    #[test]
    fn inconsistent_configurations_are_refused_with_a_reason() {
        let sample = include_str!("../../../deploy/orderer0.toml");
        let wrong_size = sample.replace("replicas = 3", "replicas = 5");
        let error = NodeConfig::parse(&wrong_size).unwrap_err();
        assert!(error.0.contains("peers"), "{error}");
        let missing = sample.replace("[signing]", "[signing_typo]");
        assert!(NodeConfig::parse(&missing).is_err());
    }
}
