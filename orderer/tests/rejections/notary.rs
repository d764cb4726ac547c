//! The notary row's pieces: the states each case tries to spend, signed requests, what
//! the notary answered, and a connection from a local address known before connecting
//! (the notary logs a refusal with the caller's address).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use notary_adapter::{StateRef, TimeWindow, TxId, ValidatedRequest, sign_request};
use proto::synod::notary as pb;
use sha2::{Digest, Sha256};
use tokio::net::{TcpSocket, TcpStream};

use orderer::client::Signer;

use super::net::corrupt;

/// The name the cluster's notary answers to; every request names it.
pub const NOTARY_NAME: &str = "guarded-notary";

fn hash(label: &str) -> [u8; 32] {
    Sha256::digest(label.as_bytes()).into()
}

/// Two states per `label` (a case's name for its attempt): fresh in every net, and
/// spent by nothing but the attempt until a valid client checks that they are still
/// unconsumed.
pub fn states(label: &str) -> Vec<StateRef> {
    let created_by = hash(&format!("rejections: states of {label}"));
    vec![StateRef::new(created_by, 0), StateRef::new(created_by, 1)]
}

/// A transaction id per `label`.
pub fn tx(label: &str) -> TxId {
    TxId(hash(&format!("rejections: transaction {label}")))
}

/// A request spending `inputs` in `tx_id`, signed by `signer` (its certificate and
/// key, whether or not they match), its signature corrupted if `tamper`.
pub fn request(
    signer: &Signer,
    tx_id: TxId,
    inputs: Vec<StateRef>,
    tamper: bool,
) -> pb::NotariseRequest {
    let request = ValidatedRequest::new(tx_id, inputs, Vec::new(), TimeWindow::default()).unwrap();
    let mut signed = sign_request(
        &request,
        NOTARY_NAME,
        signer.cert_pem.as_bytes(),
        &signer.key_pem,
        1,
    )
    .unwrap();
    if tamper {
        corrupt(&mut signed.signature);
    }
    signed
}

/// The kind of a notary's typed error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Conflict,
    RequestSignatureInvalid,
    TransactionInvalid,
    TimeWindowInvalid,
    NotAMember,
    Revoked,
    WrongRole,
    Unavailable,
    Unspecified,
}

/// What the notary answered: `Ok(())` for signatures, the kind of its error otherwise.
pub fn answer(response: &pb::NotariseResponse) -> Result<(), Refusal> {
    use pb::error::Kind;
    let error = match &response.result {
        Some(pb::notarise_response::Result::Signed(_)) => return Ok(()),
        Some(pb::notarise_response::Result::Error(error)) => error,
        None => return Err(Refusal::Unspecified),
    };
    Err(match &error.kind {
        Some(Kind::Conflict(_)) => Refusal::Conflict,
        Some(Kind::RequestSignatureInvalid(_)) => Refusal::RequestSignatureInvalid,
        Some(Kind::TransactionInvalid(_)) => Refusal::TransactionInvalid,
        Some(Kind::TimeWindowInvalid(_)) => Refusal::TimeWindowInvalid,
        Some(Kind::NotAMember(_)) => Refusal::NotAMember,
        Some(Kind::Revoked(_)) => Refusal::Revoked,
        Some(Kind::WrongRole(_)) => Refusal::WrongRole,
        Some(Kind::Unavailable(_)) => Refusal::Unavailable,
        None => Refusal::Unspecified,
    })
}

/// One TCP connection to `server` from a socket bound beforehand, for tonic's
/// `connect_with_connector` (which runs TLS over it).
pub struct OnceConnector {
    socket: Option<TcpSocket>,
    server: SocketAddr,
}

impl OnceConnector {
    /// The connector and the local address its connection will come from.
    pub fn new(server: SocketAddr) -> (OnceConnector, SocketAddr) {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let local = socket.local_addr().unwrap();
        let connector = OnceConnector {
            socket: Some(socket),
            server,
        };
        (connector, local)
    }
}

impl tonic::codegen::Service<http::Uri> for OnceConnector {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<TcpStream>>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let socket = self.socket.take();
        let server = self.server;
        Box::pin(async move {
            // A reconnection would come from another address: the attempt's log line
            // could no longer be told apart.
            let socket = socket.ok_or_else(|| io::Error::other("one connection per attempt"))?;
            let tcp = socket.connect(server).await?;
            tcp.set_nodelay(true)?;
            Ok(TokioIo::new(tcp))
        })
    }
}
