//! Fabric's `orderer.AtomicBroadcast` service.
//!
//! Broadcast answers one `BroadcastResponse` per envelope, in order. `SUCCESS` means the
//! envelope's slot is decided and applied here (durable on a majority), not merely
//! queued. Deliver streams the blocks a `SeekInfo` asks for, then one status.

use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use ca::Membership;
use channel::{ChannelCommand, PolicyName};
use proto::common::{Block, Envelope, HeaderType, Status};
use proto::orderer::atomic_broadcast_server::AtomicBroadcast;
use proto::orderer::seek_info::{SeekBehavior, SeekContentType};
use proto::orderer::seek_position::Type as Position;
use proto::orderer::{BroadcastResponse, DeliverResponse, SeekInfo, deliver_response};
use proto::prost::Message as _;
use std::sync::mpsc::SyncSender;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};

use crate::core::{Command, Tag};
use crate::log::Throttle;
use crate::node::channels::{block_key, tx_key};
use crate::node::directory::{Directory, Outcome};
use crate::node::envelope::{Rejection, admit_broadcast, authenticate, parse, require_policy};
use crate::node::runtime::{Input, offer};
use crate::storage::{Store, Table};

/// Limits of the client-facing service.
#[derive(Clone, Debug)]
pub struct ServiceLimits {
    /// Largest envelope accepted on any channel (each channel's AbsoluteMaxBytes applies
    /// too).
    pub max_envelope_bytes: usize,
    /// How long Broadcast waits for an envelope to be ordered before answering
    /// SERVICE_UNAVAILABLE (the envelope may still be ordered; its tx id makes a retry
    /// safe).
    pub order_timeout: Duration,
    /// Envelopes of one Broadcast stream in flight at once.
    pub broadcast_window: usize,
}

impl Default for ServiceLimits {
    fn default() -> Self {
        ServiceLimits {
            max_envelope_bytes: 10 * 1024 * 1024,
            order_timeout: Duration::from_secs(30),
            broadcast_window: 256,
        }
    }
}

#[derive(Clone)]
pub struct AtomicBroadcastService {
    inbox: SyncSender<Input>,
    directory: Arc<Directory>,
    membership: Arc<RwLock<Membership>>,
    store: Arc<Store>,
    limits: ServiceLimits,
    /// Every refusal is logged with its reason, at most once a second per reason.
    refusals: Arc<Throttle>,
}

/// Where a request came from, for the log.
fn peer_of<T>(request: &tonic::Request<T>) -> String {
    request
        .remote_addr()
        .map_or_else(|| "a client".to_string(), |address| address.to_string())
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, tonic::Status>> + Send>>;

fn response(status: Status, info: impl Into<String>) -> BroadcastResponse {
    BroadcastResponse {
        status: status as i32,
        info: info.into(),
    }
}

fn rejected(rejection: Rejection) -> BroadcastResponse {
    response(rejection.status, rejection.info)
}

fn deliver_status(status: Status) -> DeliverResponse {
    DeliverResponse {
        r#type: Some(deliver_response::Type::Status(status as i32)),
    }
}

impl AtomicBroadcastService {
    pub fn new(
        inbox: SyncSender<Input>,
        directory: Arc<Directory>,
        membership: Arc<RwLock<Membership>>,
        store: Arc<Store>,
        limits: ServiceLimits,
    ) -> AtomicBroadcastService {
        AtomicBroadcastService {
            inbox,
            directory,
            membership,
            store,
            limits,
            refusals: Arc::new(Throttle::default()),
        }
    }

    /// Validates, orders and waits for one envelope, and logs why if it is refused.
    async fn broadcast_logged(&self, envelope: Envelope, peer: &str) -> BroadcastResponse {
        let answer = self.broadcast_one(envelope).await;
        if answer.status != Status::Success as i32 {
            let status = Status::try_from(answer.status).unwrap_or(Status::Unknown);
            self.refusals.refusal(
                "broadcast",
                peer,
                &format!("{}: {}", status.as_str_name(), answer.info),
            );
        }
        answer
    }

    /// Validates, orders and waits for one envelope.
    async fn broadcast_one(&self, envelope: Envelope) -> BroadcastResponse {
        let bytes = envelope.encode_to_vec();
        let admitted = {
            let membership = self.membership.read().expect("membership lock");
            admit_broadcast(
                &bytes,
                self.limits.max_envelope_bytes,
                |name| self.directory.channel(name),
                &membership,
                SystemTime::now(),
            )
        };
        let admitted = match admitted {
            Ok(admitted) => admitted,
            Err(rejection) => return rejected(rejection),
        };
        let (channel, tx_id) = (admitted.channel_id, admitted.tx_id);
        if !self.directory.majority_reachable() {
            return response(
                Status::ServiceUnavailable,
                "no majority of orderers is reachable",
            );
        }
        let duplicate = || response(Status::BadRequest, format!("duplicate transaction {tx_id}"));
        if let Ok(Some(_)) = self
            .store
            .get(Table::ChannelMeta, &tx_key(&channel, &tx_id))
        {
            return duplicate();
        }
        let Some(ordered) = self.directory.wait_for(&channel, &tx_id) else {
            return duplicate();
        };
        let command = Command {
            tag: Tag::Channel(channel.clone()),
            payload: ChannelCommand::Envelope {
                bytes: bytes.into(),
                tx_id: tx_id.clone(),
                is_config: false,
            }
            .encode(),
        };
        let (answer, queued) = oneshot::channel();
        if !offer(&self.inbox, Input::Propose { command, answer }) {
            self.directory.forget(&channel, &tx_id);
            return response(Status::ServiceUnavailable, "the orderer is overloaded");
        }
        match queued.await {
            Ok(Ok(())) => {}
            Ok(Err(refused)) => {
                self.directory.forget(&channel, &tx_id);
                return response(
                    Status::ServiceUnavailable,
                    format!("not queued: {refused:?}"),
                );
            }
            Err(_) => {
                self.directory.forget(&channel, &tx_id);
                return response(Status::ServiceUnavailable, "the orderer is shutting down");
            }
        }
        match tokio::time::timeout(self.limits.order_timeout, ordered).await {
            Ok(Ok(Outcome::Ordered)) => response(Status::Success, ""),
            Ok(Ok(Outcome::Duplicate)) => duplicate(),
            Ok(Ok(Outcome::Abandoned)) | Ok(Err(_)) => response(
                Status::ServiceUnavailable,
                "this orderer lost track of the envelope; retry",
            ),
            Err(_) => {
                self.directory.forget(&channel, &tx_id);
                response(
                    Status::ServiceUnavailable,
                    "not ordered in time; retrying with the same tx id is safe",
                )
            }
        }
    }

    /// Checks a Deliver request; the channel and the seek it asks for.
    fn admit_deliver(&self, envelope: &Envelope) -> Result<(String, SeekInfo), Rejection> {
        let parsed = parse(&envelope.encode_to_vec())?;
        if parsed.header_type() != Some(HeaderType::DeliverSeekInfo) {
            return Err(Rejection::new(
                Status::BadRequest,
                "a Deliver request must have header type DELIVER_SEEK_INFO",
            ));
        }
        let channel = parsed.channel_header.channel_id.clone();
        let Some(view) = self.directory.channel(&channel) else {
            return Err(Rejection::new(
                Status::NotFound,
                format!("channel {channel:?} does not exist"),
            ));
        };
        let identity = {
            let membership = self.membership.read().expect("membership lock");
            authenticate(&parsed, &membership, SystemTime::now())?
        };
        require_policy(&view, PolicyName::Readers, &channel, &identity)?;
        let seek = SeekInfo::decode(&parsed.payload.data[..])
            .map_err(|e| Rejection::new(Status::BadRequest, format!("malformed SeekInfo: {e}")))?;
        Ok((channel, seek))
    }

    fn read_block(&self, channel: &str, number: u64) -> Option<Block> {
        let bytes = self
            .store
            .get(Table::Blocks, &block_key(channel, number))
            .ok()??;
        Block::decode(&bytes[..]).ok()
    }

    /// Streams what one SeekInfo asks for into `out`; returns false if the client left.
    async fn serve_seek(
        &self,
        channel: &str,
        seek: SeekInfo,
        out: &mpsc::Sender<Result<DeliverResponse, tonic::Status>>,
    ) -> bool {
        let send = |response: DeliverResponse| out.send(Ok(response));
        let Some(view) = self.directory.channel(channel) else {
            return send(deliver_status(Status::NotFound)).await.is_ok();
        };
        let mut height = view.height;
        let current = *height.borrow();
        let newest = current.saturating_sub(1);
        let position =
            |p: Option<&proto::orderer::SeekPosition>| match p.and_then(|p| p.r#type.as_ref()) {
                Some(Position::Oldest(_)) => Some(0),
                Some(Position::Newest(_)) | None => Some(newest),
                Some(Position::Specified(s)) => Some(s.number),
                Some(Position::NextCommit(_)) => Some(current),
            };
        let (Some(start), Some(stop)) =
            (position(seek.start.as_ref()), position(seek.stop.as_ref()))
        else {
            return send(deliver_status(Status::BadRequest)).await.is_ok();
        };
        if start > stop {
            return send(deliver_status(Status::BadRequest)).await.is_ok();
        }
        let fail_if_not_ready = seek.behavior == SeekBehavior::FailIfNotReady as i32;
        let headers_only = seek.content_type == SeekContentType::HeaderWithSig as i32;
        let mut number = start;
        loop {
            while *height.borrow() <= number {
                if fail_if_not_ready {
                    return send(deliver_status(Status::NotFound)).await.is_ok();
                }
                tokio::select! {
                    changed = height.changed() => if changed.is_err() {
                        return send(deliver_status(Status::ServiceUnavailable)).await.is_ok();
                    },
                    _ = out.closed() => return false,
                }
            }
            let Some(mut block) = self.read_block(channel, number) else {
                return send(deliver_status(Status::InternalServerError))
                    .await
                    .is_ok();
            };
            if headers_only {
                block.data = None;
            }
            let response = DeliverResponse {
                r#type: Some(deliver_response::Type::Block(block)),
            };
            if send(response).await.is_err() {
                return false;
            }
            if number == stop {
                return send(deliver_status(Status::Success)).await.is_ok();
            }
            number += 1;
        }
    }
}

#[tonic::async_trait]
impl AtomicBroadcast for AtomicBroadcastService {
    type BroadcastStream = ResponseStream<BroadcastResponse>;
    type DeliverStream = ResponseStream<DeliverResponse>;

    async fn broadcast(
        &self,
        request: tonic::Request<tonic::Streaming<Envelope>>,
    ) -> Result<tonic::Response<Self::BroadcastStream>, tonic::Status> {
        let peer: Arc<str> = peer_of(&request).into();
        let mut envelopes = request.into_inner();
        let service = self.clone();
        let window = self.limits.broadcast_window.max(1);
        let (out, responses) = mpsc::channel(window);
        // Envelopes are handled concurrently (up to the window) but answered in order.
        let (pending_tx, mut pending_rx) =
            mpsc::channel::<tokio::task::JoinHandle<BroadcastResponse>>(window);
        tokio::spawn(async move {
            while let Some(handle) = pending_rx.recv().await {
                let answer = handle.await.unwrap_or_else(|_| {
                    response(Status::InternalServerError, "broadcast handler failed")
                });
                if out.send(Ok(answer)).await.is_err() {
                    return;
                }
            }
        });
        tokio::spawn(async move {
            while let Some(next) = envelopes.next().await {
                let Ok(envelope) = next else {
                    return;
                };
                let service = service.clone();
                let peer = peer.clone();
                let handle =
                    tokio::spawn(async move { service.broadcast_logged(envelope, &peer).await });
                if pending_tx.send(handle).await.is_err() {
                    return;
                }
            }
        });
        Ok(tonic::Response::new(Box::pin(ReceiverStream::new(
            responses,
        ))))
    }

    async fn deliver(
        &self,
        request: tonic::Request<tonic::Streaming<Envelope>>,
    ) -> Result<tonic::Response<Self::DeliverStream>, tonic::Status> {
        let peer = peer_of(&request);
        let mut requests = request.into_inner();
        let service = self.clone();
        let (out, responses) = mpsc::channel(16);
        tokio::spawn(async move {
            while let Some(next) = requests.next().await {
                let Ok(envelope) = next else {
                    return;
                };
                let keep_going = match service.admit_deliver(&envelope) {
                    Ok((channel, seek)) => service.serve_seek(&channel, seek, &out).await,
                    Err(rejection) => {
                        service.refusals.refusal(
                            "deliver",
                            &peer,
                            &format!("{}: {}", rejection.status.as_str_name(), rejection.info),
                        );
                        out.send(Ok(deliver_status(rejection.status))).await.is_ok()
                    }
                };
                if !keep_going {
                    return;
                }
            }
        });
        Ok(tonic::Response::new(Box::pin(ReceiverStream::new(
            responses,
        ))))
    }
}
