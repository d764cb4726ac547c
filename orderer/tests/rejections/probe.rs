//! Raw TLS clients for the listeners: they present whatever certificate and key they
//! are given (rustls' own client refuses a certificate that does not match its key, and
//! "another member's certificate" is exactly that), from a local address known before
//! connecting, so that the node's log line about the attempt can be told apart.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::ResolvesClientCert;
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, SignatureScheme};

/// A TLS client identity: a certificate chain and a key that need not match.
#[derive(Clone)]
pub struct TlsIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key_pem: String,
}

impl TlsIdentity {
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> TlsIdentity {
        TlsIdentity {
            chain: CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap(),
            key_pem: key_pem.to_string(),
        }
    }
}

#[derive(Debug)]
struct Always(Arc<CertifiedKey>);

impl ResolvesClientCert for Always {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn connector(ca_pem: &str, identity: Option<&TlsIdentity>, alpn: &[u8]) -> TlsConnector {
    let provider: Arc<CryptoProvider> = Arc::new(ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(ca.unwrap()).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(identity) => {
            let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).unwrap();
            let key = provider.key_provider.load_private_key(key).unwrap();
            let certified = CertifiedKey::new(identity.chain.clone(), key);
            builder.with_client_cert_resolver(Arc::new(Always(Arc::new(certified))))
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    TlsConnector::from(Arc::new(config))
}

/// A TCP connection from a fresh local port, and that port.
async fn tcp(server: SocketAddr) -> (SocketAddr, std::io::Result<TcpStream>) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let local = socket.local_addr().unwrap();
    (local, socket.connect(server).await)
}

async fn connect(
    server: SocketAddr,
    ca_pem: &str,
    identity: Option<&TlsIdentity>,
    alpn: &[u8],
) -> (SocketAddr, Result<TlsStream<TcpStream>, String>) {
    let (local, tcp) = tcp(server).await;
    let tls = match tcp {
        Ok(tcp) => connector(ca_pem, identity, alpn)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .map_err(|e| format!("TLS: {e}")),
        Err(e) => Err(format!("TCP: {e}")),
    };
    (local, tls)
}

/// What a listener made of a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Probe {
    /// The server spoke first at the application level (HTTP/2 settings): it serves.
    Served,
    /// The handshake failed, or the connection closed before the server said anything.
    Refused(String),
    /// Neither within the time allowed.
    Silent,
}

/// Connects to an HTTP/2 listener (AtomicBroadcast, replicas) and waits for the server
/// to speak. Returns the local address the connection came from.
pub async fn h2(
    server: SocketAddr,
    ca_pem: &str,
    identity: Option<&TlsIdentity>,
) -> (SocketAddr, Probe) {
    let (local, tls) = connect(server, ca_pem, identity, b"h2").await;
    let mut tls = match tls {
        Ok(tls) => tls,
        Err(e) => return (local, Probe::Refused(e)),
    };
    let mut byte = [0u8; 1];
    let probe = match tokio::time::timeout(Duration::from_secs(5), tls.read(&mut byte)).await {
        Ok(Ok(0)) => Probe::Refused("closed".into()),
        Ok(Ok(_)) => Probe::Served,
        Ok(Err(e)) => Probe::Refused(e.to_string()),
        Err(_) => Probe::Silent,
    };
    (local, probe)
}

/// One HTTP/1.1 request to the participation API: the status and body, or why no
/// answer came (the TLS handshake was refused). Returns the local address too.
pub async fn http(
    server: SocketAddr,
    ca_pem: &str,
    identity: Option<&TlsIdentity>,
    method: &str,
    path: &str,
) -> (SocketAddr, Result<(u16, String), String>) {
    let (local, tls) = connect(server, ca_pem, identity, b"http/1.1").await;
    let mut tls = match tls {
        Ok(tls) => tls,
        Err(e) => return (local, Err(e)),
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if let Err(e) = tls.write_all(request.as_bytes()).await {
        return (local, Err(format!("write: {e}")));
    }
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    let error = loop {
        match tokio::time::timeout(Duration::from_secs(10), tls.read(&mut chunk)).await {
            Ok(Ok(0)) => break None,
            Ok(Ok(n)) => answer.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => break Some(e.to_string()),
            Err(_) => break Some("no answer in time".into()),
        }
    };
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok());
    match status {
        Some(status) => {
            let body = text
                .split_once("\r\n\r\n")
                .map_or("", |(_, b)| b)
                .to_string();
            (local, Ok((status, body)))
        }
        None => (
            local,
            Err(error.unwrap_or_else(|| format!("no HTTP answer: {text:?}"))),
        ),
    }
}
