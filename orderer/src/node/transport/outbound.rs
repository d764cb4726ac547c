//! The sending side: one task per peer keeps a stream open to it and drains the
//! peer's queue into frames.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use proto::prost::Message as _;
use proto::synod::replica as pb;
use proto::synod::replica::replica_client::ReplicaClient;
use proto::tonic::transport::Endpoint;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::inbound::{KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT};
use super::{PeerEndpoint, Shared, TransportConfig, TransportError, bump, stopped, tls};
use crate::codec::message_to_pb;
use crate::core::{Message, ReplicaId};

/// Covers TCP and TLS: a peer that accepts but never answers is retried, not awaited.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

pub(super) struct Link {
    peer: ReplicaId,
    endpoint: Endpoint,
    max_frame_bytes: usize,
    reconnect_min: Duration,
    reconnect_max: Duration,
}

impl Link {
    pub(super) fn new(
        config: &TransportConfig,
        peer: &PeerEndpoint,
    ) -> Result<Self, TransportError> {
        let endpoint = Endpoint::from_shared(format!("https://{}", peer.address))
            .map_err(|e| {
                TransportError::Config(format!("peer {} address {:?}: {e}", peer.id, peer.address))
            })?
            .tls_config(tls::connector(&config.tls, &peer.tls_name))
            .map_err(|e| TransportError::Tls(format!("towards peer {}: {e}", peer.id)))?
            .tcp_nodelay(true)
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        Ok(Link {
            peer: peer.id,
            endpoint,
            max_frame_bytes: config.max_frame_bytes,
            reconnect_min: Duration::from_millis(config.reconnect_min_ms),
            reconnect_max: Duration::from_millis(config.reconnect_max_ms),
        })
    }

    pub(super) fn peer(&self) -> ReplicaId {
        self.peer
    }

    pub(super) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Connects, serves the stream until it breaks, and reconnects, until shutdown.
    pub(super) async fn run(
        self,
        mut queue: mpsc::Receiver<Message>,
        shared: Arc<Shared>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        // A message taken from the queue that did not fit into the last frame. It
        // survives a broken connection, like the rest of the queue.
        let mut pending = None;
        let mut backoff = self.reconnect_min;
        loop {
            let established = tokio::select! {
                _ = stopped(&mut shutdown) => return,
                established = self.session(&mut queue, &mut pending, &shared) => established,
            };
            // A stream that worked means the peer was up: if it broke, the peer is
            // likely restarting, so start again from the shortest delay.
            if established {
                backoff = self.reconnect_min;
            }
            tokio::select! {
                _ = stopped(&mut shutdown) => return,
                () = tokio::time::sleep(jittered(backoff).max(self.reconnect_min)) => {}
            }
            bump(&shared.stats.reconnects, 1);
            backoff = (backoff * 2).min(self.reconnect_max);
        }
    }

    /// One connection with one stream; returns whether the stream was established.
    async fn session(
        &self,
        queue: &mut mpsc::Receiver<Message>,
        pending: &mut Option<pb::Message>,
        shared: &Shared,
    ) -> bool {
        let Ok(channel) = self.endpoint.connect().await else {
            return false;
        };
        let mut client = ReplicaClient::new(channel)
            .max_decoding_message_size(self.max_frame_bytes)
            .max_encoding_message_size(self.max_frame_bytes);
        // One frame waits while the previous one is written: everything queued in the
        // meantime goes into the next, so batches grow exactly when the link is busy.
        let (frames, outgoing) = mpsc::channel(1);
        let Ok(response) = client.exchange(ReceiverStream::new(outgoing)).await else {
            return false;
        };
        let mut incoming = response.into_inner();
        loop {
            tokio::select! {
                frame = incoming.message() => match frame {
                    // The peer sends nothing back today; whatever it does send is its
                    // own, as the certificate it presented as a server says.
                    Ok(Some(frame)) => shared.deliver(self.peer, frame),
                    // It refused a frame, restarted, or went away.
                    Ok(None) | Err(_) => return true,
                },
                next = self.next_frame(&frames, queue, pending, shared) => {
                    let Some((permit, frame)) = next else {
                        return true;
                    };
                    bump(&shared.stats.sent, frame.messages.len() as u64);
                    permit.send(frame);
                }
            }
        }
    }

    /// Waits until the stream can take a frame and a message is queued, then fills the
    /// frame with everything queued that fits. Cancel-safe: it only awaits before it
    /// takes anything.
    async fn next_frame<'a>(
        &self,
        frames: &'a mpsc::Sender<pb::Frame>,
        queue: &mut mpsc::Receiver<Message>,
        pending: &mut Option<pb::Message>,
        shared: &Shared,
    ) -> Option<(mpsc::Permit<'a, pb::Frame>, pb::Frame)> {
        loop {
            let permit = frames.reserve().await.ok()?;
            let first = match pending.take() {
                Some(message) => message,
                None => match queue.recv().await {
                    Some(message) => message_to_pb(&message),
                    // The consensus loop is gone; keep serving the stream until
                    // shutdown.
                    None => std::future::pending().await,
                },
            };
            let frame = self.fill(first, queue, pending, shared);
            if !frame.messages.is_empty() {
                return Some((permit, frame));
            }
        }
    }

    fn fill(
        &self,
        first: pb::Message,
        queue: &mut mpsc::Receiver<Message>,
        pending: &mut Option<pb::Message>,
        shared: &Shared,
    ) -> pb::Frame {
        let mut frame = pb::Frame::default();
        let mut size = 0;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            let len = frame_entry_len(&message);
            if len > self.max_frame_bytes {
                bump(&shared.stats.dropped_oversize, 1);
            } else if size + len > self.max_frame_bytes {
                *pending = Some(message);
                break;
            } else {
                size += len;
                frame.messages.push(message);
            }
            next = queue.try_recv().ok().map(|m| message_to_pb(&m));
        }
        frame
    }
}

/// What one message adds to an encoded `Frame`: field tag, length, body.
fn frame_entry_len(message: &pb::Message) -> usize {
    let len = message.encoded_len();
    1 + proto::prost::length_delimiter_len(len) + len
}

/// Somewhere in `[delay/2, delay]`, so that replicas which lost a peer together do not
/// redial it in lockstep.
fn jittered(delay: Duration) -> Duration {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let half = delay / 2;
    half + Duration::from_nanos(random % (half.as_nanos() as u64 + 1))
}
