//! Fabric's channel participation API (`/participation/v1/channels`, what `osnadmin
//! channel` talks to), served over HTTPS with mutual TLS to members in the admin role.
//!
//! Synod orders every channel on one log, so joining and removing are cluster-wide:
//! a join proposes the genesis block as an ordered command and every replica starts the
//! channel from exactly that block; a removal is ordered the same way. Posting the
//! genesis block of an existing channel again answers 200 when it is the same block, so
//! that Fabric's "join every orderer" runbook succeeds on every node, and 409 when it
//! differs.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ca::{Membership, Role, VerifiedIdentity, require_role};
use channel::genesis::{MAX_JOIN_BLOCK_BYTES, parse_join_block, validate_channel_name};
use channel::{ChannelCommand, PolicyName};
use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::core::{Command, Tag};
use crate::log::Throttle;
use crate::node::access;
use crate::node::channels::{MAX_REMOVE_BYTES, block_key, block_purge_bytes, stored_tx_keys};
use crate::node::client_tls::{self, HANDSHAKE_TIMEOUT};
use crate::node::directory::Directory;
use crate::node::multipart;
use crate::node::runtime::{Input, offer};
use crate::node::transport::TlsMaterial;
use crate::storage::{Store, Table};

/// The collection every endpoint lives under.
pub const CHANNELS_PATH: &str = "/participation/v1/channels";

/// The form field Fabric's `osnadmin channel join` puts the config block in.
pub const CONFIG_BLOCK_FIELD: &str = "config-block";

/// Every channel is ordered by every node of the cluster.
const CONSENSUS_RELATION: &str = "consenter";
const STATUS_ACTIVE: &str = "active";

/// A connection is closed after this long whatever it does, so that kept-alive
/// connections cannot hold every connection slot.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);

/// Fabric's `ChannelList`. Synod has no system channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelList {
    pub system_channel: Option<ChannelInfoShort>,
    pub channels: Vec<ChannelInfoShort>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelInfoShort {
    pub name: String,
    pub url: String,
}

/// Fabric's `ChannelInfo`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelInfo {
    pub name: String,
    pub url: String,
    pub consensus_relation: String,
    pub status: String,
    pub height: u64,
}

/// Fabric's `ErrorResponse`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: String,
}

/// Bounds on what one client can make the API hold or wait for.
#[derive(Clone, Debug)]
pub struct ParticipationLimits {
    /// Largest request body (Fabric's admin endpoint allows 1 MB as well).
    pub max_body_bytes: usize,
    /// Largest request head (start line and headers).
    pub max_header_bytes: usize,
    /// Time a client gets to send a request head, and then its body.
    pub read_timeout: Duration,
    /// How long a join or removal may take to be ordered and applied before the
    /// answer is 503 (it may still take effect; repeating the request is safe).
    pub apply_timeout: Duration,
    /// Connections served at once; more are closed on accept.
    pub max_connections: usize,
}

impl Default for ParticipationLimits {
    fn default() -> Self {
        ParticipationLimits {
            max_body_bytes: 1 << 20,
            max_header_bytes: 16 * 1024,
            read_timeout: Duration::from_secs(10),
            apply_timeout: Duration::from_secs(30),
            max_connections: 64,
        }
    }
}

/// What a handler answers: a status and an optional JSON body.
struct Reply {
    status: StatusCode,
    json: Option<String>,
    allow: Option<&'static str>,
    location: Option<String>,
}

impl Reply {
    fn json(status: StatusCode, value: &impl Serialize) -> Reply {
        Reply {
            status,
            json: Some(serde_json::to_string(value).unwrap_or_else(|_| "{}".into())),
            allow: None,
            location: None,
        }
    }

    fn error(status: StatusCode, reason: impl Into<String>) -> Reply {
        Reply::json(
            status,
            &ErrorResponse {
                error: reason.into(),
            },
        )
    }

    fn empty(status: StatusCode) -> Reply {
        Reply {
            status,
            json: None,
            allow: None,
            location: None,
        }
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let mut builder = Response::builder().status(self.status);
        if let Some(allow) = self.allow {
            builder = builder.header(ALLOW, allow);
        }
        if let Some(location) = self.location {
            builder = builder.header(LOCATION, location);
        }
        let body = match self.json {
            Some(json) => {
                builder = builder.header(CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(json))
            }
            None => Full::new(Bytes::new()),
        };
        builder.body(body).unwrap_or_else(|_| {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response
        })
    }
}

fn channel_url(name: &str) -> String {
    format!("{CHANNELS_PATH}/{name}")
}

/// The API's view of one node: where to propose, what is hosted, who may ask.
#[derive(Clone)]
pub struct ParticipationApi {
    inbox: SyncSender<Input>,
    directory: Arc<Directory>,
    membership: Arc<RwLock<Membership>>,
    store: Arc<Store>,
    limits: ParticipationLimits,
    /// Every refusal is logged with its reason, at most once a second per reason.
    refusals: Arc<Throttle>,
}

/// How the API's log lines start.
const LOG_SITE: &str = "participation API";

impl ParticipationApi {
    pub fn new(
        inbox: SyncSender<Input>,
        directory: Arc<Directory>,
        membership: Arc<RwLock<Membership>>,
        store: Arc<Store>,
        limits: ParticipationLimits,
    ) -> ParticipationApi {
        ParticipationApi {
            inbox,
            directory,
            membership,
            store,
            limits,
            refusals: Arc::new(Throttle::default()),
        }
    }

    /// The TLS client must be a current member in the admin role. Checked on every
    /// request, so that a revocation also ends kept-alive connections' rights.
    fn authorize(&self, client_cert_der: &[u8]) -> Result<VerifiedIdentity, String> {
        let membership = self.membership.read().expect("membership lock");
        let identity = membership
            .verify_tls_client(client_cert_der, SystemTime::now())
            .map_err(|e| format!("client certificate refused: {e}"))?;
        require_role(&identity, &[Role::Admin]).map_err(|e| {
            format!(
                "{} of {} may not manage channels: {e}",
                identity.common_name, identity.msp_id
            )
        })?;
        Ok(identity)
    }

    /// Operations on one existing channel also need its Admins policy.
    fn require_channel_admin(
        &self,
        name: &str,
        identity: &VerifiedIdentity,
        peer: SocketAddr,
    ) -> Result<(), Reply> {
        let Some(view) = self.directory.channel(name) else {
            return Ok(());
        };
        access::check(&view.policies, PolicyName::Admins, name, identity).map_err(|reason| {
            self.refusals.refusal(LOG_SITE, peer, &reason);
            Reply::error(StatusCode::FORBIDDEN, reason)
        })
    }

    async fn handle(
        &self,
        request: Request<Incoming>,
        client_cert_der: &[u8],
        peer: SocketAddr,
    ) -> Reply {
        let identity = match self.authorize(client_cert_der) {
            Ok(identity) => identity,
            Err(reason) => {
                self.refusals.refusal(LOG_SITE, peer, &reason);
                return Reply::error(StatusCode::FORBIDDEN, reason);
            }
        };
        let path = request.uri().path().to_string();
        let method = request.method().clone();
        let rest = match path.strip_prefix(CHANNELS_PATH) {
            Some("" | "/") => None,
            Some(rest) => match rest.strip_prefix('/') {
                Some(name) if !name.contains('/') => Some(name.to_string()),
                _ => return Reply::error(StatusCode::NOT_FOUND, format!("no such path {path}")),
            },
            None => return Reply::error(StatusCode::NOT_FOUND, format!("no such path {path}")),
        };
        match (rest, method) {
            (None, Method::GET) => self.list(),
            (None, Method::POST) => self.join(request).await,
            (None, method) => Reply {
                allow: Some("GET, POST"),
                ..Reply::error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("{method} is not allowed on {CHANNELS_PATH}"),
                )
            },
            (Some(name), Method::GET) => self.info(&name, &identity, peer),
            (Some(name), Method::DELETE) => self.remove(&name, &identity, peer).await,
            (Some(name), method) => Reply {
                allow: Some("GET, DELETE"),
                ..Reply::error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("{method} is not allowed on {}", channel_url(&name)),
                )
            },
        }
    }

    fn list(&self) -> Reply {
        let channels = self
            .directory
            .channel_names()
            .into_iter()
            .map(|(name, _)| ChannelInfoShort {
                url: channel_url(&name),
                name,
            })
            .collect();
        Reply::json(
            StatusCode::OK,
            &ChannelList {
                system_channel: None,
                channels,
            },
        )
    }

    fn channel_info(&self, name: &str) -> Option<ChannelInfo> {
        let view = self.directory.channel(name)?;
        let height = *view.height.borrow();
        Some(ChannelInfo {
            name: name.to_string(),
            url: channel_url(name),
            consensus_relation: CONSENSUS_RELATION.into(),
            status: STATUS_ACTIVE.into(),
            height,
        })
    }

    fn info(&self, name: &str, identity: &VerifiedIdentity, peer: SocketAddr) -> Reply {
        if let Err(reason) = validate_channel_name(name) {
            return Reply::error(StatusCode::BAD_REQUEST, reason);
        }
        if let Err(reply) = self.require_channel_admin(name, identity, peer) {
            return reply;
        }
        match self.channel_info(name) {
            Some(info) => Reply::json(StatusCode::OK, &info),
            None => Reply::error(
                StatusCode::NOT_FOUND,
                format!("channel {name} does not exist"),
            ),
        }
    }

    /// Block 0 of `name` as stored, if the channel exists here.
    fn stored_genesis(&self, name: &str) -> Result<Option<Vec<u8>>, Reply> {
        if self.directory.channel(name).is_none() {
            return Ok(None);
        }
        self.store
            .get(Table::Blocks, &block_key(name, 0))
            .map_err(|e| Reply::error(StatusCode::INTERNAL_SERVER_ERROR, format!("store: {e}")))
    }

    /// The answer to joining `name` with `block` when the channel exists: the same
    /// genesis block is a repeat, another one a conflict.
    fn existing(&self, name: &str, block: &[u8], status_if_same: StatusCode) -> Option<Reply> {
        let stored = match self.stored_genesis(name) {
            Ok(stored) => stored?,
            Err(reply) => return Some(reply),
        };
        if stored != block {
            return Some(Reply::error(
                StatusCode::CONFLICT,
                format!("channel {name} exists with a different genesis block"),
            ));
        }
        let info = self.channel_info(name)?;
        Some(Reply {
            location: Some(info.url.clone()),
            ..Reply::json(status_if_same, &info)
        })
    }

    async fn join(&self, request: Request<Incoming>) -> Reply {
        let content_type = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = match self.read_body(request).await {
            Ok(body) => body,
            Err(reply) => return reply,
        };
        let block = match multipart::form_or_raw(&content_type, &body, CONFIG_BLOCK_FIELD) {
            Ok(block) => block,
            Err(reason) => return Reply::error(StatusCode::BAD_REQUEST, reason),
        };
        if block.len() > MAX_JOIN_BLOCK_BYTES {
            return Reply::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the config block has {} bytes; at most {MAX_JOIN_BLOCK_BYTES} are accepted",
                    block.len()
                ),
            );
        }
        let joined = match parse_join_block(block) {
            Ok(joined) => joined,
            Err(reason) => {
                return Reply::error(
                    StatusCode::BAD_REQUEST,
                    format!("not a usable genesis block: {reason}"),
                );
            }
        };
        let name = joined.channel_id;
        if let Some(reply) = self.existing(&name, block, StatusCode::OK) {
            return reply;
        }
        let command = ChannelCommand::Join {
            block: Bytes::copy_from_slice(block),
        };
        let mut changes = self.directory.subscribe_channel_set();
        if let Err(reply) = self.propose(&name, command).await {
            return reply;
        }
        let appeared = self
            .wait_for(&mut changes, || self.directory.channel(&name).is_some())
            .await;
        if !appeared {
            return Reply::error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the join of {name} was not applied within {} s; it may still be: \
                     posting the same block again is safe",
                    self.limits.apply_timeout.as_secs()
                ),
            );
        }
        // Another join of the same name may have been ordered first.
        self.existing(&name, block, StatusCode::CREATED)
            .unwrap_or_else(|| {
                Reply::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("channel {name} was removed again while joining"),
                )
            })
    }

    async fn remove(&self, name: &str, identity: &VerifiedIdentity, peer: SocketAddr) -> Reply {
        if let Err(reason) = validate_channel_name(name) {
            return Reply::error(StatusCode::BAD_REQUEST, reason);
        }
        if let Err(reply) = self.require_channel_admin(name, identity, peer) {
            return reply;
        }
        let Some(view) = self.directory.channel(name) else {
            return Reply::error(
                StatusCode::NOT_FOUND,
                format!("channel {name} does not exist"),
            );
        };
        let height = *view.height.borrow();
        if let Err(reply) = self.check_purge_size(name, height).await {
            return reply;
        }
        let mut changes = self.directory.subscribe_channel_set();
        if let Err(reply) = self.propose(name, ChannelCommand::Remove).await {
            return reply;
        }
        let gone = self
            .wait_for(&mut changes, || self.directory.channel(name).is_none())
            .await;
        if gone {
            Reply::empty(StatusCode::NO_CONTENT)
        } else {
            Reply::error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the removal of {name} was not applied within {} s; it may still be",
                    self.limits.apply_timeout.as_secs()
                ),
            )
        }
    }

    /// Refuses, before ordering anything, a removal the replicas would refuse as too
    /// large for one write.
    async fn check_purge_size(&self, name: &str, height: u64) -> Result<(), Reply> {
        let too_large = || {
            Reply::error(
                StatusCode::CONFLICT,
                format!(
                    "channel {name} holds too many blocks and transactions to remove at once \
                     (more than {MAX_REMOVE_BYTES} bytes of keys)"
                ),
            )
        };
        let Some(budget) = MAX_REMOVE_BYTES.checked_sub(block_purge_bytes(name, height)) else {
            return Err(too_large());
        };
        let store = self.store.clone();
        let channel = name.to_string();
        let scanned =
            tokio::task::spawn_blocking(move || stored_tx_keys(&store, &channel, budget)).await;
        match scanned {
            Ok(Ok(Some(_))) => Ok(()),
            Ok(Ok(None)) => Err(too_large()),
            Ok(Err(e)) => Err(Reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("store: {e}"),
            )),
            Err(_) => Err(Reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the store scan failed",
            )),
        }
    }

    async fn propose(&self, name: &str, command: ChannelCommand) -> Result<(), Reply> {
        let unavailable = |reason: String| Reply::error(StatusCode::SERVICE_UNAVAILABLE, reason);
        if !self.directory.majority_reachable() {
            return Err(unavailable("no majority of orderers is reachable".into()));
        }
        let command = Command {
            tag: Tag::Channel(name.to_string()),
            payload: command.encode(),
        };
        let (answer, queued) = oneshot::channel();
        if !offer(&self.inbox, Input::Propose { command, answer }) {
            return Err(unavailable("the orderer is overloaded".into()));
        }
        match queued.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(refused)) => Err(unavailable(format!("not queued: {refused:?}"))),
            Err(_) => Err(unavailable("the orderer is shutting down".into())),
        }
    }

    /// Waits (bounded by the apply timeout) until `done` holds, re-checking whenever a
    /// channel is added or removed.
    async fn wait_for(
        &self,
        changes: &mut tokio::sync::watch::Receiver<u64>,
        done: impl Fn() -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + self.limits.apply_timeout;
        loop {
            if done() {
                return true;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return done(),
            }
        }
    }

    /// Reads the body, up to `max_body_bytes`. A body somewhat over the limit is read to
    /// its end and thrown away, so that the client can read the 413 instead of a reset
    /// connection; beyond that the connection is dropped after the answer.
    async fn read_body(&self, request: Request<Incoming>) -> Result<Bytes, Reply> {
        let max = self.limits.max_body_bytes;
        let discard_at_most = max.saturating_mul(4);
        let too_large = || {
            Reply::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body exceeds {max} bytes"),
            )
        };
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > discard_at_most as u64) {
            return Err(too_large());
        }
        let mut body = request.into_body();
        let read = async {
            let mut collected = Vec::new();
            let mut total = 0usize;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| {
                    Reply::error(
                        StatusCode::BAD_REQUEST,
                        format!("cannot read the request body: {e}"),
                    )
                })?;
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                total = total.saturating_add(data.len());
                if total > discard_at_most {
                    break;
                }
                if total <= max {
                    collected.extend_from_slice(&data);
                }
            }
            if total > max {
                Err(too_large())
            } else {
                Ok(Bytes::from(collected))
            }
        };
        match tokio::time::timeout(self.limits.read_timeout, read).await {
            Ok(result) => result,
            Err(_) => Err(Reply::error(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time",
            )),
        }
    }

    /// Serves one accepted connection: TLS handshake (client certificate required),
    /// then HTTP/1.1 requests until the client closes or stalls.
    async fn serve_connection(
        self,
        socket: tokio::net::TcpStream,
        peer: SocketAddr,
        acceptor: TlsAcceptor,
    ) {
        let refused = |reason: &str| self.refusals.refusal(LOG_SITE, peer, reason);
        let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => return refused(&format!("TLS handshake failed: {e}")),
            Err(_) => {
                return refused(&format!(
                    "TLS handshake not done within {} s",
                    HANDSHAKE_TIMEOUT.as_secs()
                ));
            }
        };
        let client_cert: Arc<[u8]> = match tls.get_ref().1.peer_certificates() {
            Some([first, ..]) => Arc::from(first.as_ref()),
            // The verifier requires a certificate; without one there is nobody to serve.
            _ => return refused("no client certificate"),
        };
        let limits = self.limits.clone();
        let api = self;
        let service = service_fn(move |request| {
            let api = api.clone();
            let client_cert = client_cert.clone();
            async move {
                let reply = api.handle(request, &client_cert, peer).await;
                Ok::<_, Infallible>(reply.into_response())
            }
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.read_timeout)
            .max_header_size(limits.max_header_bytes)
            .max_headers(64)
            // hyper's minimum; the header limit above is what binds.
            .max_buf_size(limits.max_header_bytes.max(8192))
            .serve_connection(TokioIo::new(tls), service);
        // Errors here are the client's (a reset, a malformed request already answered).
        let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
    }
}

/// The server side of the API's TLS: this node's TLS identity, TLS 1.3 or 1.2, and a
/// client certificate chained to the node's TLS CA before any request is read.
pub fn acceptor(material: &TlsMaterial) -> Result<TlsAcceptor, String> {
    client_tls::acceptor(material, &[b"http/1.1"])
}

/// Accepts connections on `listener` until the task is aborted; aborting it also ends
/// every connection it serves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: TlsAcceptor,
    api: ParticipationApi,
) {
    let slots = Arc::new(Semaphore::new(api.limits.max_connections.max(1)));
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors and the like: back off rather than spin.
                eprintln!("participation API: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let _ = socket.set_nodelay(true);
        let api = api.clone();
        let acceptor = acceptor.clone();
        connections.spawn(async move {
            api.serve_connection(socket, peer, acceptor).await;
            drop(slot);
        });
    }
}

/// Starts the API on `listener` (bound by the caller, so that a node fails to start
/// rather than run without it); returns its address and the serving task.
pub fn start(
    listener: std::net::TcpListener,
    material: &TlsMaterial,
    api: ParticipationApi,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), String> {
    let acceptor = acceptor(material)?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
    Ok((address, tokio::spawn(serve(listener, acceptor, api))))
}
