//! The client side of the channel participation API (what `orderer channel` runs):
//! HTTPS to one node with the admin's TLS identity.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::node::participation::{CHANNELS_PATH, CONFIG_BLOCK_FIELD};

/// Answers are small JSON documents; anything larger is not from a participation API.
const MAX_ANSWER_BYTES: usize = 4 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longer than the server's own wait for a join or removal to be applied.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// PEM texts: the CA the server's certificate must chain to and, normally, the admin's
/// TLS certificate and key.
pub struct AdminTls {
    pub ca_pem: String,
    pub identity: Option<(String, String)>,
}

impl AdminTls {
    /// Reads the CA, certificate and key files.
    pub fn load(
        ca_file: &std::path::Path,
        cert_file: &std::path::Path,
        key_file: &std::path::Path,
    ) -> Result<AdminTls, String> {
        let read = |path: &std::path::Path| {
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        Ok(AdminTls {
            ca_pem: read(ca_file)?,
            identity: Some((read(cert_file)?, read(key_file)?)),
        })
    }
}

/// What the server answered: the HTTP status and the body (JSON, or empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_slice(&self.body).map_err(|e| format!("unexpected answer: {e}"))
    }

    /// The `error` of a Fabric `ErrorResponse` body, or the body as text.
    pub fn error_text(&self) -> String {
        match serde_json::from_slice::<crate::node::participation::ErrorResponse>(&self.body) {
            Ok(error) => error.error,
            Err(_) => String::from_utf8_lossy(&self.body).into_owned(),
        }
    }
}

pub struct AdminClient {
    /// host:port as given, for connecting and for the Host header.
    endpoint: String,
    server_name: ServerName<'static>,
    connector: TlsConnector,
}

/// The host part of `host:port` or `[v6]:port`.
fn host_of(endpoint: &str) -> Result<&str, String> {
    let (host, port) = endpoint
        .rsplit_once(':')
        .ok_or_else(|| format!("endpoint {endpoint:?} must be HOST:PORT"))?;
    if port.parse::<u16>().is_err() || host.is_empty() {
        return Err(format!("endpoint {endpoint:?} must be HOST:PORT"));
    }
    Ok(host.trim_start_matches('[').trim_end_matches(']'))
}

impl AdminClient {
    /// A client for the API at `endpoint` (HOST:PORT). The server's certificate must
    /// name `server_name`, by default the endpoint's host.
    pub fn new(
        endpoint: &str,
        server_name: Option<&str>,
        tls: &AdminTls,
    ) -> Result<AdminClient, String> {
        let name = match server_name {
            Some(name) => name,
            None => host_of(endpoint)?,
        };
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|e| format!("server name {name:?}: {e}"))?;
        let provider: Arc<CryptoProvider> = Arc::new(ring::default_provider());
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(tls.ca_pem.as_bytes()) {
            let ca = ca.map_err(|e| format!("CA file: {e}"))?;
            roots.add(ca).map_err(|e| format!("CA file: {e}"))?;
        }
        if roots.is_empty() {
            return Err("the CA file holds no certificate".into());
        }
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots);
        let mut config = match &tls.identity {
            Some((cert_pem, key_pem)) => {
                let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("client certificate: {e}"))?;
                let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                    .map_err(|e| format!("client key: {e}"))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("client certificate and key: {e}"))?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(AdminClient {
            endpoint: endpoint.to_string(),
            server_name,
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// `GET /participation/v1/channels`.
    pub async fn list(&self) -> Result<Answer, String> {
        self.request(Method::GET, CHANNELS_PATH.to_string(), None, Vec::new())
            .await
    }

    /// `GET /participation/v1/channels/{name}`.
    pub async fn info(&self, name: &str) -> Result<Answer, String> {
        self.request(Method::GET, channel_path(name)?, None, Vec::new())
            .await
    }

    /// `POST /participation/v1/channels` with the block as form field `config-block`,
    /// as Fabric's `osnadmin channel join` sends it.
    pub async fn join(&self, block: &[u8]) -> Result<Answer, String> {
        let (content_type, body) = multipart_form(CONFIG_BLOCK_FIELD, "config.block", block);
        self.request(
            Method::POST,
            CHANNELS_PATH.to_string(),
            Some(&content_type),
            body,
        )
        .await
    }

    /// `POST /participation/v1/channels` with the block as the whole body.
    pub async fn join_raw(&self, block: &[u8]) -> Result<Answer, String> {
        self.request(
            Method::POST,
            CHANNELS_PATH.to_string(),
            Some("application/octet-stream"),
            block.to_vec(),
        )
        .await
    }

    /// `DELETE /participation/v1/channels/{name}`.
    pub async fn remove(&self, name: &str) -> Result<Answer, String> {
        self.request(Method::DELETE, channel_path(name)?, None, Vec::new())
            .await
    }

    /// One request on a fresh connection.
    pub async fn request(
        &self,
        method: Method,
        path: String,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Answer, String> {
        tokio::time::timeout(
            REQUEST_TIMEOUT,
            self.exchange(method, path, content_type, body),
        )
        .await
        .map_err(|_| format!("no answer from {} in time", self.endpoint))?
    }

    async fn exchange(
        &self,
        method: Method,
        path: String,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Answer, String> {
        let endpoint = &self.endpoint;
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect(endpoint.as_str()),
        )
        .await
        .map_err(|_| format!("cannot connect to {endpoint}: timed out"))?
        .map_err(|e| format!("cannot connect to {endpoint}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| format!("TLS with {endpoint}: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP with {endpoint}: {e}"))?;
        let driver = tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, endpoint.as_str());
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("request: {e}"))?;
        // With TLS 1.3 a refused client certificate shows up here, as an alert
        // instead of an answer.
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request to {endpoint} failed: {e}"))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the answer from {endpoint}: {e}"))?
            .to_bytes()
            .to_vec();
        driver.abort();
        Ok(Answer { status, body })
    }
}

fn channel_path(name: &str) -> Result<String, String> {
    channel::genesis::validate_channel_name(name)?;
    Ok(format!("{CHANNELS_PATH}/{name}"))
}

/// A `multipart/form-data` body with one file field; returns its Content-Type and
/// bytes. The boundary is derived from the content's hash, so it cannot occur in it.
pub fn multipart_form(field: &str, file_name: &str, content: &[u8]) -> (String, Vec<u8>) {
    let digest = Sha256::digest(content);
    let boundary: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    let boundary = format!("synod-{boundary}");
    let mut body = Vec::with_capacity(content.len() + 256);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; \
             filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::multipart::form_field;

    #[test]
    fn forms_read_back_and_endpoints_split() {
        let content = b"\r\n--binary\r\n\x00";
        let (content_type, body) = multipart_form("config-block", "config.block", content);
        let boundary = content_type.split("boundary=").nth(1).unwrap();
        assert_eq!(
            form_field(&body, boundary, "config-block"),
            Ok(&content[..])
        );
        assert_eq!(host_of("127.0.0.1:7053"), Ok("127.0.0.1"));
        assert_eq!(host_of("[::1]:7053"), Ok("::1"));
        assert_eq!(
            host_of("orderer0.example.com:7053"),
            Ok("orderer0.example.com")
        );
        assert!(host_of("orderer0").is_err());
        assert!(host_of(":7053").is_err());
        assert!(channel_path("../etc").is_err());
    }
}
