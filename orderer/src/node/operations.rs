//! The operations endpoint (Fabric's vocabulary): `GET /healthz` for load balancers and
//! orchestrators, `GET /metrics` in Prometheus' text format. Plain HTTP without client
//! certificates, the one listener that needs none: it tells whether the node is well
//! and how far its channels are, nothing a member could not see.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;

use crate::node::directory::Directory;

/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 32;
/// A client gets this long to send its request head, and a connection this long in all.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

/// What the endpoint reports on.
#[derive(Clone)]
pub struct Health {
    pub directory: Arc<Directory>,
    /// Cleared when the consensus loop stops (a store failure): the node can no longer
    /// order and must be restarted.
    pub consensus_running: Arc<AtomicBool>,
}

impl Health {
    /// The failed checks, each with its reason; empty when healthy.
    fn failed_checks(&self) -> Vec<(&'static str, &'static str)> {
        let mut failed = Vec::new();
        if !self.consensus_running.load(Ordering::SeqCst) {
            failed.push(("consensus", "the consensus loop has stopped"));
        }
        if !self.directory.majority_reachable() {
            failed.push(("cluster", "no majority of orderers is reachable"));
        }
        failed
    }

    fn healthz(&self) -> (StatusCode, String) {
        let failed = self.failed_checks();
        if failed.is_empty() {
            return (StatusCode::OK, r#"{"status":"OK"}"#.to_string());
        }
        let checks: Vec<serde_json::Value> = failed
            .iter()
            .map(
                |(component, reason)| serde_json::json!({"component": component, "reason": reason}),
            )
            .collect();
        let body = serde_json::json!({"status": "Service Unavailable", "failed_checks": checks});
        (StatusCode::SERVICE_UNAVAILABLE, body.to_string())
    }

    fn metrics(&self) -> String {
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        };
        gauge(
            &mut out,
            "synod_consensus_running",
            "1 while the consensus loop runs.",
        );
        let running = self.consensus_running.load(Ordering::SeqCst);
        let _ = writeln!(out, "synod_consensus_running {}", u8::from(running));
        gauge(
            &mut out,
            "synod_majority_reachable",
            "1 while a majority of orderers was heard from recently.",
        );
        let reachable = self.directory.majority_reachable();
        let _ = writeln!(out, "synod_majority_reachable {}", u8::from(reachable));
        gauge(
            &mut out,
            "synod_channel_height",
            "Blocks in each channel's chain.",
        );
        for (name, height) in self.directory.channel_names() {
            // Channel names are lowercase letters, digits, '.' and '-': nothing to escape.
            let _ = writeln!(out, "synod_channel_height{{channel=\"{name}\"}} {height}");
        }
        out
    }

    fn answer(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        let (status, content_type, body) = match (request.method(), request.uri().path()) {
            (&Method::GET, "/healthz") => {
                let (status, body) = self.healthz();
                (status, "application/json", body)
            }
            (&Method::GET, "/metrics") => {
                (StatusCode::OK, "text/plain; version=0.0.4", self.metrics())
            }
            (_, "/healthz" | "/metrics") => (
                StatusCode::METHOD_NOT_ALLOWED,
                "application/json",
                r#"{"error":"only GET"}"#.to_string(),
            ),
            _ => (
                StatusCode::NOT_FOUND,
                "application/json",
                r#"{"error":"not found: the operations endpoint serves /healthz and /metrics"}"#
                    .to_string(),
            ),
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(value) = content_type.parse() {
            response
                .headers_mut()
                .insert(hyper::header::CONTENT_TYPE, value);
        }
        response
    }
}

/// Starts the endpoint on `listener`; returns its address and the serving task.
pub fn start(
    listener: std::net::TcpListener,
    health: Health,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), String> {
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
    Ok((address, tokio::spawn(serve(listener, health))))
}

async fn serve(listener: tokio::net::TcpListener, health: Health) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let socket = match listener.accept().await {
            Ok((socket, _)) => socket,
            Err(e) => {
                crate::log_line!("operations endpoint: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let health = health.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let response = health.answer(&request);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(READ_TIMEOUT)
                .max_headers(32)
                .serve_connection(TokioIo::new(socket), service);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
            drop(slot);
        });
    }
}
