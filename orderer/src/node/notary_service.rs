//! The notary's gRPC service (`synod.notary.Notary`): checks each request before it is
//! ordered (size, shape, caller membership and role, signature), orders it, and answers
//! with the outcome once this node has applied it durably.

use std::pin::Pin;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use ca::{Membership, Role};
use channel::{ChannelPolicy, MspRole};
use notary_adapter::{CheckConfig, TxId, check_request, wire};
use proto::synod::notary as pb;
use proto::synod::notary::notary_server::Notary;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};

use crate::core::{Command, Tag};
use crate::log::Throttle;
use crate::node::access;
use crate::node::notary::NotaryWaiters;
use crate::node::runtime::{Input, offer};

/// How long a caller waits for its request to be ordered and applied.
pub const ORDER_TIMEOUT: Duration = Duration::from_secs(30);

/// Requests of one `NotariseStream` in flight at once.
pub const STREAM_WINDOW: usize = 256;

#[derive(Clone)]
pub struct NotaryService {
    inbox: SyncSender<Input>,
    waiters: Arc<NotaryWaiters>,
    membership: Arc<RwLock<Membership>>,
    check: Arc<CheckConfig>,
    /// Who may notarise, beyond being a member: `None` lets every trusted MSP's
    /// members in the check's roles.
    callers: Option<Arc<ChannelPolicy>>,
    refusals: Arc<Throttle>,
}

impl NotaryService {
    pub fn new(
        inbox: SyncSender<Input>,
        waiters: Arc<NotaryWaiters>,
        membership: Arc<RwLock<Membership>>,
        mut check: CheckConfig,
        callers: Option<ChannelPolicy>,
    ) -> NotaryService {
        if let Some(callers) = &callers {
            // The callers' roles are the roles the checks let through; the policy then
            // decides per MSP.
            check.allowed_roles = [Role::Client, Role::Peer, Role::Admin, Role::Orderer]
                .into_iter()
                .filter(|role| {
                    callers
                        .principals()
                        .iter()
                        .any(|p| p.role == MspRole::Member || p.role == access::msp_role(*role))
                })
                .collect();
        }
        NotaryService {
            inbox,
            waiters,
            membership,
            check: Arc::new(check),
            callers: callers.map(Arc::new),
            refusals: Arc::new(Throttle::default()),
        }
    }

    /// Handles one request and logs why it was refused, if it was.
    async fn notarise_logged(
        &self,
        request: pb::NotariseRequest,
        peer: &str,
    ) -> pb::NotariseResponse {
        let response = self.notarise_one(request).await;
        if let Some(pb::notarise_response::Result::Error(error)) = &response.result {
            self.refusals
                .refusal("notary", peer, &wire::describe_error(error));
        }
        response
    }

    async fn notarise_one(&self, request: pb::NotariseRequest) -> pb::NotariseResponse {
        let checked = {
            let membership = self.membership.read().expect("membership lock");
            check_request(&request, &membership, SystemTime::now(), &self.check)
        };
        let checked = match checked {
            Ok(checked) => checked,
            Err(e) => return wire::error_response(&request.tx_id, wire::check_error(&e)),
        };
        if let Some(callers) = &self.callers {
            let caller = &checked.caller;
            if !callers.admits(&caller.msp_id, access::msp_role(caller.role)) {
                let reason = format!(
                    "{}.{} {:?} is not an allowed caller of this notary ({callers})",
                    caller.msp_id, caller.role, caller.common_name
                );
                return wire::error_response(
                    &request.tx_id,
                    pb::Error {
                        kind: Some(pb::error::Kind::NotAMember(pb::NotAMember { reason })),
                    },
                );
            }
        }
        let tx_id: TxId = *checked.request.tx_id();
        if !self.waiters.majority_reachable() {
            return unavailable(&tx_id, "no majority of orderers is reachable");
        }
        let Some(outcome) = self.waiters.wait_for(tx_id) else {
            return unavailable(
                &tx_id,
                "too many requests waiting at this node, or it stops",
            );
        };
        let command = Command {
            tag: Tag::Notary,
            payload: checked.command().encode().into(),
        };
        let (answer, queued) = oneshot::channel();
        if !offer(&self.inbox, Input::Propose { command, answer }) {
            drop(outcome);
            self.waiters.forget_closed(&tx_id);
            return unavailable(&tx_id, "the orderer is overloaded");
        }
        match queued.await {
            Ok(Ok(())) => {}
            Ok(Err(refused)) => {
                drop(outcome);
                self.waiters.forget_closed(&tx_id);
                return unavailable(&tx_id, &format!("not queued: {refused:?}"));
            }
            Err(_) => return unavailable(&tx_id, "the orderer is shutting down"),
        }
        match tokio::time::timeout(ORDER_TIMEOUT, outcome).await {
            Ok(Ok(response)) => response,
            Ok(Err(_)) => unavailable(&tx_id, "the orderer is shutting down"),
            Err(_) => {
                self.waiters.forget_closed(&tx_id);
                unavailable(
                    &tx_id,
                    "not notarised in time; retrying with the same transaction is safe",
                )
            }
        }
    }
}

fn unavailable(tx_id: &TxId, why: &str) -> pb::NotariseResponse {
    wire::error_response(tx_id.as_bytes(), wire::unavailable(why))
}

fn peer_of<T>(request: &tonic::Request<T>) -> String {
    request
        .remote_addr()
        .map_or_else(|| "unknown peer".to_string(), |a| a.to_string())
}

type ResponseStream =
    Pin<Box<dyn Stream<Item = Result<pb::NotariseResponse, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl Notary for NotaryService {
    type NotariseStreamStream = ResponseStream;

    async fn notarise(
        &self,
        request: tonic::Request<pb::NotariseRequest>,
    ) -> Result<tonic::Response<pb::NotariseResponse>, tonic::Status> {
        let peer = peer_of(&request);
        let response = self.notarise_logged(request.into_inner(), &peer).await;
        Ok(tonic::Response::new(response))
    }

    /// Requests are handled concurrently (up to `STREAM_WINDOW`) and answered as they
    /// complete; each answer names its transaction.
    async fn notarise_stream(
        &self,
        request: tonic::Request<tonic::Streaming<pb::NotariseRequest>>,
    ) -> Result<tonic::Response<Self::NotariseStreamStream>, tonic::Status> {
        let peer = peer_of(&request);
        let mut requests = request.into_inner();
        let service = self.clone();
        let (out, responses) = mpsc::channel(STREAM_WINDOW);
        tokio::spawn(async move {
            let mut in_flight = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    next = requests.next(), if in_flight.len() < STREAM_WINDOW => match next {
                        Some(Ok(request)) => {
                            let service = service.clone();
                            let peer = peer.clone();
                            in_flight.spawn(async move {
                                service.notarise_logged(request, &peer).await
                            });
                        }
                        // The caller is done sending (or the stream broke): finish the
                        // requests in flight.
                        _ => break,
                    },
                    Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                        let Ok(response) = done else { continue };
                        if out.send(Ok(response)).await.is_err() {
                            return;
                        }
                    }
                }
            }
            while let Some(done) = in_flight.join_next().await {
                let Ok(response) = done else { continue };
                if out.send(Ok(response)).await.is_err() {
                    return;
                }
            }
        });
        Ok(tonic::Response::new(Box::pin(ReceiverStream::new(
            responses,
        ))))
    }
}
