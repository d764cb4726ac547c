//! Mutual TLS between replicas: which CA to trust, and which replica a certificate is.

use std::sync::Arc;

use proto::tonic::transport::{Certificate, ClientTlsConfig, Identity};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig, version};
use x509_parser::extensions::GeneralName;

use super::{PeerEndpoint, TransportError};
use crate::core::ReplicaId;

/// A TLS handshake slower than this is given up: it holds a task and a socket.
pub(super) const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn tls_error(what: &str) -> impl Fn(String) -> TransportError + '_ {
    move |detail| TransportError::Tls(format!("{what}: {detail}"))
}

fn certificates(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(what)(e.to_string()))?;
    if certs.is_empty() {
        return Err(tls_error(what)("no certificate in the PEM text".into()));
    }
    Ok(certs)
}

/// The server side, built by hand rather than through tonic so that the crypto provider
/// is pinned to ring whatever else the process links, and so that handshakes can be
/// counted and their certificates mapped to replicas before gRPC sees the connection.
pub(super) fn acceptor(material: &super::TlsMaterial) -> Result<TlsAcceptor, TransportError> {
    let provider: Arc<CryptoProvider> = Arc::new(ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in certificates(&material.ca_pem, "CA certificate")? {
        roots
            .add(ca)
            .map_err(|e| tls_error("CA certificate")(e.to_string()))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| tls_error("client verifier")(e.to_string()))?;
    let chain = certificates(&material.cert_pem, "certificate")?;
    let key = PrivateKeyDer::from_pem_slice(material.key_pem.as_bytes())
        .map_err(|e| tls_error("private key")(e.to_string()))?;
    // Both ends are Synod replicas, so nothing older than TLS 1.3 needs to be spoken.
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&version::TLS13])
        .map_err(|e| tls_error("protocol versions")(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| tls_error("certificate and key")(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The client side towards one peer: its certificate must chain to the CA and carry
/// `tls_name`, and this replica presents its own.
pub(super) fn connector(material: &super::TlsMaterial, tls_name: &str) -> ClientTlsConfig {
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&material.ca_pem))
        .identity(Identity::from_pem(&material.cert_pem, &material.key_pem))
        .domain_name(tls_name)
        .timeout(HANDSHAKE_TIMEOUT)
}

/// Maps a verified client certificate to the configured peer it names.
pub(super) struct Identities {
    /// Lowercase TLS name of each peer.
    names: Vec<(String, ReplicaId)>,
}

impl Identities {
    pub(super) fn new(peers: &[PeerEndpoint]) -> Self {
        Identities {
            names: peers
                .iter()
                .map(|p| (p.tls_name.to_ascii_lowercase(), p.id))
                .collect(),
        }
    }

    /// The one peer whose TLS name is the certificate's CN or one of its DNS SANs.
    /// Names are compared exactly (ignoring ASCII case): a wildcard certificate names
    /// no single replica. A certificate naming two peers identifies neither.
    pub(super) fn identify(&self, cert_der: &[u8]) -> Option<ReplicaId> {
        let mut found = None;
        for name in certificate_names(cert_der) {
            let name = name.to_ascii_lowercase();
            for (peer_name, id) in &self.names {
                if *peer_name == name {
                    match found {
                        None => found = Some(*id),
                        Some(other) if other != *id => return None,
                        Some(_) => {}
                    }
                }
            }
        }
        found
    }
}

/// Subject CNs and DNS SANs; nothing for a certificate that does not parse (it cannot
/// have passed verification anyway).
fn certificate_names(cert_der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert_der) else {
        return Vec::new();
    };
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .map(str::to_owned)
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                names.push((*dns).to_owned());
            }
        }
    }
    names
}
