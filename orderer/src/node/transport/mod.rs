//! The replica-to-replica transport: every replica serves `synod.replica.Replica/Exchange`
//! over mutual TLS and keeps one stream open to each peer, on which it sends the frames
//! the consensus loop queues for that peer.
//!
//! Each replica dials every peer it sends to, so each direction of a pair has its own
//! connection, owned by its sender: a restarted replica reconnects by itself and no two
//! tasks contend for one connection. The consensus loop never waits on the network:
//! [`ReplicaTransport::send`] appends to a bounded per-peer queue and drops when it is
//! full, since the core retransmits whatever matters. A received message is accepted
//! only if its `from` is the replica that the connection's client certificate names, so
//! one compromised or misconfigured replica cannot speak for another.

mod admission;
mod inbound;
mod outbound;
mod state;
mod tls;

pub use admission::ReplicaMembership;
pub use state::{HorizonCell, PeerClients, SNAPSHOT_CHUNK_BYTES, StateSource};

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::synod::replica as pb;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::codec::message_from_pb;
use crate::core::types::MAX_REPLICAS;
use crate::core::{Config, Message, ReplicaId};
use crate::log::Throttle;
use crate::node::runtime::{Input, Transport, offer};

/// Room for a frame's own encoding around the largest message the core produces.
const FRAME_OVERHEAD_BYTES: usize = 64;

/// How long shutdown waits for connections to close before it cuts them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// A replica this one exchanges messages with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerEndpoint {
    pub id: ReplicaId,
    /// `host:port` of the peer's replica listener.
    pub address: String,
    /// The name the peer's TLS certificate carries (DNS SAN, or CN when accepting its
    /// connections). It identifies the peer: nothing else about a connection does.
    pub tls_name: String,
}

/// PEM texts of this replica's TLS identity and of the CA that issued every replica's.
#[derive(Clone)]
pub struct TlsMaterial {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[elided]")
            .field("ca_pem", &self.ca_pem)
            .finish()
    }
}

#[derive(Clone, Debug)]
pub struct TransportConfig {
    pub id: ReplicaId,
    pub listen: SocketAddr,
    pub peers: Vec<PeerEndpoint>,
    pub tls: TlsMaterial,
    /// Largest frame sent or accepted; at least [`TransportConfig::frame_bytes_for`] of
    /// the core's configuration, or the core's largest messages never get through.
    pub max_frame_bytes: usize,
    /// Messages queued per peer while its connection is slow or down; more are dropped.
    pub queue_messages: usize,
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    /// If set, a connecting replica's certificate must also belong to a current member
    /// of this MSP in the orderer role (not revoked); without it, a certificate from
    /// the TLS CA that names a peer is enough.
    pub members: Option<ReplicaMembership>,
}

impl TransportConfig {
    /// A configuration sized for `core`, with defaults for queueing and reconnection.
    pub fn new(
        id: ReplicaId,
        listen: SocketAddr,
        peers: Vec<PeerEndpoint>,
        tls: TlsMaterial,
        core: &Config,
    ) -> Self {
        TransportConfig {
            id,
            listen,
            peers,
            tls,
            max_frame_bytes: Self::frame_bytes_for(core),
            queue_messages: 4_096,
            reconnect_min_ms: 50,
            reconnect_max_ms: 5_000,
            members: None,
        }
    }

    /// The smallest frame limit that carries every message `core` produces.
    pub fn frame_bytes_for(core: &Config) -> usize {
        core.max_message_bytes() + FRAME_OVERHEAD_BYTES
    }

    fn validate(&self) -> Result<(), TransportError> {
        let fail = |what: String| Err(TransportError::Config(what));
        if usize::from(self.id) >= MAX_REPLICAS {
            return fail(format!(
                "replica id {} is not below {MAX_REPLICAS}",
                self.id
            ));
        }
        // gRPC prefixes each message with a 32-bit length.
        if self.max_frame_bytes == 0 || self.max_frame_bytes > u32::MAX as usize {
            return fail(format!(
                "max_frame_bytes {} must be 1..={}",
                self.max_frame_bytes,
                u32::MAX
            ));
        }
        if self.queue_messages == 0 {
            return fail("queue_messages must be positive".into());
        }
        if self.reconnect_min_ms == 0 || self.reconnect_min_ms > self.reconnect_max_ms {
            return fail("reconnect delays must satisfy 0 < min <= max".into());
        }
        for (i, peer) in self.peers.iter().enumerate() {
            if usize::from(peer.id) >= MAX_REPLICAS || peer.id == self.id {
                return fail(format!("peer id {} is not another replica's", peer.id));
            }
            if peer.address.is_empty() || peer.tls_name.is_empty() {
                return fail(format!("peer {} needs an address and a TLS name", peer.id));
            }
            for other in &self.peers[..i] {
                if other.id == peer.id {
                    return fail(format!("peer {} is listed twice", peer.id));
                }
                // A shared name would let one certificate speak for two replicas.
                if other.tls_name.eq_ignore_ascii_case(&peer.tls_name) {
                    return fail(format!(
                        "peers {} and {} share the TLS name {:?}",
                        other.id, peer.id, peer.tls_name
                    ));
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
pub enum TransportError {
    Config(String),
    /// The TLS material does not parse or does not fit together.
    Tls(String),
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Config(what) => write!(f, "replica transport configuration: {what}"),
            TransportError::Tls(what) => write!(f, "replica transport TLS: {what}"),
            TransportError::Bind { address, source } => {
                write!(f, "replica transport cannot listen on {address}: {source}")
            }
        }
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TransportError::Bind { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Counters since start, in messages unless named otherwise.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Handed to a peer's open stream (which may still lose them if it breaks).
    pub sent: u64,
    /// The peer's queue was full, or the transport had stopped.
    pub dropped_queue_full: u64,
    /// Larger than a frame may be.
    pub dropped_oversize: u64,
    /// Addressed to a replica that is not a configured peer.
    pub dropped_unknown_peer: u64,
    /// Decoded, authenticated and queued for the consensus loop.
    pub received: u64,
    /// Received but the consensus loop's inbox was full.
    pub dropped_inbox_full: u64,
    /// Connections whose certificate names no configured peer or belongs to no
    /// current replica member, and messages whose `from` is not the replica their
    /// connection's certificate names.
    pub refused_identity: u64,
    /// Connections that failed the TLS handshake: no client certificate, one the CA did
    /// not issue, or too slow.
    pub refused_handshakes: u64,
    /// Messages that did not decode, and frames refused as too large or malformed
    /// (which also ends their stream).
    pub decode_errors: u64,
    /// Connection attempts after a failed attempt or a broken connection.
    pub reconnects: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_oversize: AtomicU64,
    dropped_unknown_peer: AtomicU64,
    received: AtomicU64,
    dropped_inbox_full: AtomicU64,
    refused_identity: AtomicU64,
    refused_handshakes: AtomicU64,
    decode_errors: AtomicU64,
    reconnects: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

impl Counters {
    fn snapshot(&self) -> TransportStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TransportStats {
            sent: get(&self.sent),
            dropped_queue_full: get(&self.dropped_queue_full),
            dropped_oversize: get(&self.dropped_oversize),
            dropped_unknown_peer: get(&self.dropped_unknown_peer),
            received: get(&self.received),
            dropped_inbox_full: get(&self.dropped_inbox_full),
            refused_identity: get(&self.refused_identity),
            refused_handshakes: get(&self.refused_handshakes),
            decode_errors: get(&self.decode_errors),
            reconnects: get(&self.reconnects),
        }
    }
}

/// How the transport's log lines start.
const LOG_SITE: &str = "replica transport";

/// What every task of one transport shares.
struct Shared {
    stats: Counters,
    inbox: SyncSender<Input>,
    /// Served to peers for state transfer; `None` serves none (tests of the transport).
    state: Option<StateSource>,
    /// Checked after the TLS handshake, if set.
    members: Option<ReplicaMembership>,
    /// Refusals are logged with their reason and the peer's address, at most once a
    /// second per reason: anyone who can reach the port can make them.
    refusals: Throttle,
}

impl Shared {
    /// Hands a frame received from replica `peer` (as its certificate says) to the
    /// consensus loop, message by message.
    fn deliver(&self, peer: ReplicaId, frame: pb::Frame) {
        for message in frame.messages {
            match message_from_pb(message) {
                Err(_) => bump(&self.stats.decode_errors, 1),
                Ok(message) if message.from != peer => {
                    bump(&self.stats.refused_identity, 1);
                    self.refusals.refusal(
                        LOG_SITE,
                        format!("a message from replica {peer}"),
                        &format!("it claims to come from replica {}", message.from),
                    );
                }
                Ok(message) => {
                    if offer(&self.inbox, Input::Peer(message)) {
                        bump(&self.stats.received, 1);
                    } else {
                        bump(&self.stats.dropped_inbox_full, 1);
                    }
                }
            }
        }
    }
}

/// Tasks serving inbound streams. They are spawned by request handlers, which the
/// server calls with `&self`, so the set lives behind a lock.
#[derive(Clone, Default)]
struct StreamTasks(Arc<Mutex<JoinSet<()>>>);

impl StreamTasks {
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Reaping here keeps the set as large as the live streams, however many come
        // and go.
        while set.try_join_next().is_some() {}
        set.spawn(task);
    }

    fn take(&self) -> JoinSet<()> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Resolves once shutdown is asked for, or once nobody can ask any more.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// The consensus loop's side: cheap to clone, never blocks.
#[derive(Clone)]
pub struct ReplicaTransport {
    /// Indexed by replica id; `None` for replicas that are not peers.
    queues: Arc<[Option<mpsc::Sender<Message>>]>,
    shared: Arc<Shared>,
}

impl Transport for ReplicaTransport {
    fn send(&mut self, to: ReplicaId, messages: Vec<Message>) {
        let stats = &self.shared.stats;
        let Some(queue) = self.queues.get(usize::from(to)).and_then(Option::as_ref) else {
            bump(&stats.dropped_unknown_peer, messages.len() as u64);
            return;
        };
        for message in messages {
            if queue.try_send(message).is_err() {
                bump(&stats.dropped_queue_full, 1);
            }
        }
    }
}

/// Owns the transport's tasks. Dropping it stops them without waiting; `shutdown`
/// waits until they are gone.
pub struct TransportHandle {
    local_addr: SocketAddr,
    clients: PeerClients,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    streams: StreamTasks,
}

impl TransportHandle {
    /// Where the replica listener is bound (useful when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stats(&self) -> TransportStats {
        self.shared.stats.snapshot()
    }

    /// Clients for one-off calls to peers (state transfer).
    pub fn peer_clients(&self) -> PeerClients {
        self.clients.clone()
    }

    /// Closes the listener and every connection, and waits for all tasks to end.
    pub async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        for task in self.tasks.drain(..) {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
            }
        }
        // The server has stopped, so no handler spawns into the set any more.
        let mut streams = self.streams.take();
        let drained = tokio::time::timeout_at(deadline, async {
            while streams.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            streams.shutdown().await;
        }
    }
}

impl Drop for TransportHandle {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

/// Binds `config.listen` and starts the transport. Its tasks run on the Tokio runtime
/// this is awaited on, while [`ReplicaTransport`] may be used from any thread.
pub async fn start(
    config: TransportConfig,
    inbox: SyncSender<Input>,
) -> Result<(ReplicaTransport, TransportHandle), TransportError> {
    let listener =
        std::net::TcpListener::bind(config.listen).map_err(|source| TransportError::Bind {
            address: config.listen,
            source,
        })?;
    start_on(config, listener, inbox).await
}

/// Like [`start`], on a listener the caller already bound instead of `config.listen`:
/// a cluster on ephemeral ports must know every address before any replica starts.
pub async fn start_on(
    config: TransportConfig,
    listener: std::net::TcpListener,
    inbox: SyncSender<Input>,
) -> Result<(ReplicaTransport, TransportHandle), TransportError> {
    start_serving(config, listener, inbox, None).await
}

/// Like [`start_on`], also serving `state` to peers (state transfer).
pub async fn start_serving(
    config: TransportConfig,
    listener: std::net::TcpListener,
    inbox: SyncSender<Input>,
    state: Option<StateSource>,
) -> Result<(ReplicaTransport, TransportHandle), TransportError> {
    config.validate()?;
    let bind_error = |source| TransportError::Bind {
        address: config.listen,
        source,
    };
    let local_addr = listener.local_addr().map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(bind_error)?;

    // Everything that can fail is checked before any task starts, so an error leaves
    // nothing running.
    let acceptor = tls::acceptor(&config.tls)?;
    let identities = tls::Identities::new(&config.peers);
    let mut links = Vec::with_capacity(config.peers.len());
    for peer in &config.peers {
        links.push(outbound::Link::new(&config, peer)?);
    }

    let clients = PeerClients {
        endpoints: links
            .iter()
            .map(|l| (l.peer(), l.endpoint().clone()))
            .collect(),
        max_frame_bytes: config.max_frame_bytes,
    };
    let shared = Arc::new(Shared {
        stats: Counters::default(),
        inbox,
        state,
        members: config.members.clone(),
        refusals: Throttle::default(),
    });
    let (shutdown, watcher) = watch::channel(false);
    let streams = StreamTasks::default();
    let mut tasks = Vec::with_capacity(links.len() + 2);
    tasks.extend(inbound::spawn(
        inbound::Inbound {
            listener,
            acceptor,
            identities,
            max_frame_bytes: config.max_frame_bytes,
            shared: shared.clone(),
            streams: streams.clone(),
        },
        watcher.clone(),
    ));

    let mut queues: Vec<Option<mpsc::Sender<Message>>> = vec![None; MAX_REPLICAS];
    for link in links {
        let (queue, drain) = mpsc::channel(config.queue_messages);
        queues[usize::from(link.peer())] = Some(queue);
        tasks.push(tokio::spawn(link.run(
            drain,
            shared.clone(),
            watcher.clone(),
        )));
    }

    let transport = ReplicaTransport {
        queues: queues.into(),
        shared: shared.clone(),
    };
    let handle = TransportHandle {
        local_addr,
        clients,
        shared,
        shutdown,
        tasks,
        streams,
    };
    Ok((transport, handle))
}
