//! Mutual TLS for the listeners clients and admins use: a server configuration that
//! requires a client certificate chained to the node's TLS CA before anything is read,
//! and an accept loop that runs handshakes side by side and logs every refused one with
//! its reason and the client's address.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig, version};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use crate::log::Throttle;
use crate::node::transport::TlsMaterial;

/// A handshake slower than this is given up: it holds a task and a socket.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Handshakes in progress at once; connections beyond are closed, so that idle sockets
/// cannot hold unbounded tasks.
const MAX_HANDSHAKES: usize = 256;

/// Pause after a failed accept (out of descriptors), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// This node's TLS identity; TLS 1.3 or 1.2 (Fabric's SDKs and admin tools are not all
/// recent); a client certificate chained to the node's TLS CA is required. Ring is
/// pinned as the provider, whatever else the process links.
pub fn acceptor(material: &TlsMaterial, alpn: &[&[u8]]) -> Result<TlsAcceptor, String> {
    let provider: Arc<CryptoProvider> = Arc::new(ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(material.ca_pem.as_bytes()) {
        let ca = ca.map_err(|e| format!("CA certificate: {e}"))?;
        roots.add(ca).map_err(|e| format!("CA certificate: {e}"))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("client verifier: {e}"))?;
    let chain = CertificateDer::pem_slice_iter(material.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(material.key_pem.as_bytes())
        .map_err(|e| format!("private key: {e}"))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])
        .map_err(|e| format!("protocol versions: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| format!("certificate and key: {e}"))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The authenticated connections of `listener`, for `serve_with_incoming`. Refused
/// handshakes are logged under `site`. Accepting stops when the stream is dropped.
pub fn incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    site: &'static str,
) -> ReceiverStream<io::Result<TlsStream<TcpStream>>> {
    let (connections, stream) = mpsc::channel(64);
    tokio::spawn(accept_loop(listener, acceptor, site, connections));
    ReceiverStream::new(stream)
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    site: &'static str,
    connections: mpsc::Sender<io::Result<TlsStream<TcpStream>>>,
) {
    let refusals = Arc::new(Throttle::default());
    // Dropped when the server goes away, which aborts handshakes in progress.
    let mut handshakes = JoinSet::new();
    loop {
        tokio::select! {
            _ = connections.closed() => return,
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, address)) => {
                    if handshakes.len() >= MAX_HANDSHAKES {
                        refusals.refusal(
                            site,
                            address,
                            &format!("{MAX_HANDSHAKES} TLS handshakes are already in progress"),
                        );
                        continue;
                    }
                    // Answers are small; Nagle would hold each one back ~40 ms.
                    let _ = tcp.set_nodelay(true);
                    handshakes.spawn(handshake(
                        tcp,
                        address,
                        acceptor.clone(),
                        site,
                        refusals.clone(),
                        connections.clone(),
                    ));
                }
                Err(_) => tokio::time::sleep(ACCEPT_ERROR_PAUSE).await,
            },
        }
    }
}

async fn handshake(
    tcp: TcpStream,
    address: SocketAddr,
    acceptor: TlsAcceptor,
    site: &'static str,
    refusals: Arc<Throttle>,
    connections: mpsc::Sender<io::Result<TlsStream<TcpStream>>>,
) {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => {
            let _ = connections.send(Ok(tls)).await;
        }
        Ok(Err(e)) => refusals.refusal(site, address, &format!("TLS handshake failed: {e}")),
        Err(_) => refusals.refusal(
            site,
            address,
            &format!(
                "TLS handshake not done within {} s",
                HANDSHAKE_TIMEOUT.as_secs()
            ),
        ),
    }
}
