//! The operations endpoint of a dev cluster's nodes: `/healthz` answers 200 while the
//! node orders with a majority and 503 with the failed check once it cannot;
//! `/metrics` reports channel heights.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use orderer::dev;

/// One plain HTTP/1.1 request; the status code and the body.
fn get(address: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_string());
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn healthz_follows_the_majority_and_metrics_report_heights() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = dev::start(dir.path(), &[dev::DEMO_CHANNEL.to_string()])
        .await
        .unwrap();
    let addresses: Vec<SocketAddr> = cluster
        .nodes
        .iter()
        .map(|n| n.operations_addr.unwrap())
        .collect();
    for address in &addresses {
        let (status, body) = get(*address, "GET", "/healthz");
        assert_eq!((status, body.as_str()), (200, r#"{"status":"OK"}"#));
        let (status, metrics) = get(*address, "GET", "/metrics");
        assert_eq!(status, 200);
        assert!(
            metrics.contains("synod_channel_height{channel=\"demo\"} 1"),
            "{metrics}"
        );
        assert!(metrics.contains("synod_consensus_running 1"), "{metrics}");
    }
    assert_eq!(get(addresses[0], "POST", "/healthz").0, 405);
    assert_eq!(get(addresses[0], "GET", "/admin").0, 404);

    // Two of three nodes stop: the last one cannot order and says so.
    for node in cluster.nodes.drain(1..) {
        node.stop().await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, body) = loop {
        let (status, body) = get(addresses[0], "GET", "/healthz");
        if status != 200 || Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("no majority of orderers is reachable"),
        "{body}"
    );
    assert!(
        get(addresses[0], "GET", "/metrics")
            .1
            .contains("synod_majority_reachable 0")
    );
    cluster.stop().await;
}
