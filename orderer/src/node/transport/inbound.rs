//! The listening side: accepts connections, authenticates them by client certificate,
//! and serves `Replica.Exchange`, handing what peers send to the consensus loop.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use proto::synod::replica as pb;
use proto::synod::replica::replica_server::{Replica, ReplicaServer};
use proto::tonic::transport::Server;
use proto::tonic::transport::server::Connected;
use proto::tonic::{self, Code, Request, Response, Status, Streaming};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use super::tls::{HANDSHAKE_TIMEOUT, Identities};
use super::{LOG_SITE, Shared, StreamTasks, bump, stopped};
use crate::core::ReplicaId;

/// Handshakes in progress at once; connections beyond are closed unanswered, so a flood
/// of idle sockets cannot hold unbounded tasks and memory.
const MAX_HANDSHAKES: usize = 64;

/// Streams one connection may open. A replica needs one; a few allow a reconnecting
/// peer's new stream to overlap its old one.
const MAX_STREAMS_PER_CONNECTION: u32 = 4;

/// Dead peers are noticed by HTTP/2 pings, not only when the kernel gives up on TCP.
pub(super) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
pub(super) const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Pause after a failed accept (out of file descriptors, say), so the loop does not
/// spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

pub(super) struct Inbound {
    pub listener: TcpListener,
    pub acceptor: TlsAcceptor,
    pub identities: Identities,
    pub max_frame_bytes: usize,
    pub shared: Arc<Shared>,
    pub streams: StreamTasks,
}

/// Starts the accept loop and the gRPC server; both end on shutdown.
pub(super) fn spawn(inbound: Inbound, shutdown: watch::Receiver<bool>) -> [JoinHandle<()>; 2] {
    let Inbound {
        listener,
        acceptor,
        identities,
        max_frame_bytes,
        shared,
        streams,
    } = inbound;
    let (connections, incoming) = mpsc::channel(MAX_HANDSHAKES);
    let accepting = tokio::spawn(accept_loop(
        listener,
        acceptor,
        Arc::new(identities),
        shared.clone(),
        connections,
        shutdown.clone(),
    ));

    let service = ReplicaServer::new(ExchangeService {
        shared,
        streams,
        shutdown: shutdown.clone(),
    })
    .max_decoding_message_size(max_frame_bytes)
    .max_encoding_message_size(max_frame_bytes);
    // The window bounds what a connection buffers, and a frame larger than it takes
    // several round trips.
    let window = max_frame_bytes.clamp(1 << 20, 16 << 20) as u32;
    let mut builder = Server::builder()
        .initial_stream_window_size(window)
        .initial_connection_window_size(window)
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT));
    let mut signal = shutdown;
    let serving = tokio::spawn(async move {
        // Accepted connections arrive authenticated, so gRPC's own TLS stays off.
        let _ = builder
            .add_service(service)
            .serve_with_incoming_shutdown(ReceiverStream::new(incoming), async move {
                stopped(&mut signal).await
            })
            .await;
    });
    [accepting, serving]
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    identities: Arc<Identities>,
    shared: Arc<Shared>,
    connections: mpsc::Sender<io::Result<PeerStream>>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Dropping the set at shutdown aborts handshakes still in progress.
    let mut handshakes = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => return,
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, address)) => {
                    if handshakes.len() >= MAX_HANDSHAKES {
                        bump(&shared.stats.refused_handshakes, 1);
                        shared.refusals.refusal(
                            LOG_SITE,
                            address,
                            &format!("{MAX_HANDSHAKES} TLS handshakes are already in progress"),
                        );
                        continue;
                    }
                    // Replica messages are small and latency-bound; Nagle would hold
                    // each one back for the previous one's acknowledgement.
                    let _ = tcp.set_nodelay(true);
                    handshakes.spawn(handshake(
                        tcp,
                        address,
                        acceptor.clone(),
                        identities.clone(),
                        shared.clone(),
                        connections.clone(),
                    ));
                }
                Err(_) => tokio::time::sleep(ACCEPT_ERROR_PAUSE).await,
            },
        }
    }
}

/// Authenticates one connection: the TLS handshake (a client certificate chained to the
/// CA), then the replica its certificate names, then, if configured, that replica's
/// membership. Anything else is closed before a request is read, and logged.
async fn handshake(
    tcp: TcpStream,
    address: SocketAddr,
    acceptor: TlsAcceptor,
    identities: Arc<Identities>,
    shared: Arc<Shared>,
    connections: mpsc::Sender<io::Result<PeerStream>>,
) {
    let refused = |reason: &str| shared.refusals.refusal(LOG_SITE, address, reason);
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            bump(&shared.stats.refused_handshakes, 1);
            return refused(&format!("TLS handshake failed: {e}"));
        }
        Err(_) => {
            bump(&shared.stats.refused_handshakes, 1);
            return refused(&format!(
                "TLS handshake not done within {} s",
                HANDSHAKE_TIMEOUT.as_secs()
            ));
        }
    };
    let Some(leaf) = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
    else {
        bump(&shared.stats.refused_handshakes, 1);
        return refused("no client certificate");
    };
    let Some(replica) = identities.identify(leaf) else {
        // Trusted CA, but not a replica of this configuration: close before any
        // request is read.
        bump(&shared.stats.refused_identity, 1);
        return refused("the certificate names no replica of this cluster");
    };
    if let Some(members) = &shared.members {
        if let Err(why) = members.admit(leaf) {
            bump(&shared.stats.refused_identity, 1);
            return refused(&format!("certificate naming replica {replica}: {why}"));
        }
    }
    let _ = connections
        .send(Ok(PeerStream {
            tls,
            info: PeerInfo { replica },
        }))
        .await;
}

/// Which replica a connection belongs to, as its client certificate says; tonic puts
/// it into every request's extensions.
#[derive(Clone, Copy, Debug)]
struct PeerInfo {
    replica: ReplicaId,
}

/// An authenticated connection.
struct PeerStream {
    tls: TlsStream<TcpStream>,
    info: PeerInfo,
}

impl Connected for PeerStream {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tls).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tls).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tls).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tls.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tls).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tls).poll_shutdown(cx)
    }
}

struct ExchangeService {
    shared: Arc<Shared>,
    streams: StreamTasks,
    shutdown: watch::Receiver<bool>,
}

impl ExchangeService {
    /// State is served to replicas of the configuration only, and only if this
    /// transport serves any.
    fn state_for<T>(&self, request: &Request<T>) -> Result<(), Status> {
        if request.extensions().get::<PeerInfo>().is_none() {
            bump(&self.shared.stats.refused_identity, 1);
            return Err(Status::unauthenticated("no replica certificate"));
        }
        if self.shared.state.is_none() {
            return Err(Status::unimplemented(
                "this replica serves no state transfer",
            ));
        }
        Ok(())
    }
}

/// A frame the codec refused (too large, malformed), as opposed to a stream that broke.
pub(super) fn is_refused_frame(status: &Status) -> bool {
    matches!(status.code(), Code::OutOfRange | Code::Internal)
}

#[tonic::async_trait]
impl Replica for ExchangeService {
    /// Nothing is sent back on it: it stays open while the peer's stream is served, and
    /// ends (with the reason, if a frame was refused) when serving stops.
    type ExchangeStream = ReceiverStream<Result<pb::Frame, Status>>;
    type SnapshotStream = ReceiverStream<Result<pb::SnapshotChunk, Status>>;

    async fn horizon(
        &self,
        request: Request<pb::HorizonRequest>,
    ) -> Result<Response<pb::HorizonReply>, Status> {
        self.state_for(&request)?;
        let state = self.shared.state.as_ref().expect("checked by state_for");
        state
            .horizon_reply(request.get_ref().attempt)
            .map(Response::new)
    }

    async fn snapshot(
        &self,
        request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        self.state_for(&request)?;
        let state = self.shared.state.as_ref().expect("checked by state_for");
        let chunks = state.snapshot(request.get_ref().min_slot);
        Ok(Response::new(ReceiverStream::new(chunks)))
    }

    async fn exchange(
        &self,
        request: Request<Streaming<pb::Frame>>,
    ) -> Result<Response<Self::ExchangeStream>, Status> {
        let Some(PeerInfo { replica }) = request.extensions().get::<PeerInfo>().copied() else {
            bump(&self.shared.stats.refused_identity, 1);
            return Err(Status::unauthenticated("no replica certificate"));
        };
        let mut frames = request.into_inner();
        let (reply, replies) = mpsc::channel(1);
        let shared = self.shared.clone();
        let mut shutdown = self.shutdown.clone();
        self.streams.spawn(async move {
            loop {
                tokio::select! {
                    _ = stopped(&mut shutdown) => break,
                    frame = frames.message() => match frame {
                        Ok(Some(frame)) => shared.deliver(replica, frame),
                        Ok(None) => break,
                        Err(status) => {
                            if is_refused_frame(&status) {
                                bump(&shared.stats.decode_errors, 1);
                                let _ = reply.try_send(Err(status));
                            }
                            break;
                        }
                    },
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(replies)))
    }
}
