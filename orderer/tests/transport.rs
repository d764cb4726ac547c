//! The replica transport over real mutual TLS on loopback: certificates from the `ca`
//! crate, ephemeral ports, every wait bounded.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ca::{Algo, CertificateAuthority, IssuedIdentity, Role};
use orderer::core::{Ballot, Batch, Body, Command, LaneInfo, Message, ReplicaId, Tag, Value};
use orderer::node::runtime::{INBOX_CAPACITY, Input, Transport};
use orderer::node::transport::{
    PeerEndpoint, ReplicaTransport, TlsMaterial, TransportConfig, TransportError, TransportHandle,
    TransportStats, start, start_on,
};

/// Generous bound for anything that should take milliseconds on loopback.
const WAIT: Duration = Duration::from_secs(15);
/// How long "never arrives" is watched for, once something sent later has arrived.
const QUIET: Duration = Duration::from_millis(300);

fn tls_name(id: ReplicaId) -> String {
    format!("replica{id}.synod.test")
}

fn authority(msp_id: &str, algo: Algo) -> CertificateAuthority {
    CertificateAuthority::init(&format!("ca.{}", msp_id.to_lowercase()), msp_id, algo).unwrap()
}

/// A TLS identity whose CN and only DNS SAN are `name`.
fn identity(ca: &mut CertificateAuthority, name: &str) -> IssuedIdentity {
    ca.issue(Role::Orderer, name, &[name.to_owned()], 30)
        .unwrap()
}

fn material(identity: &IssuedIdentity, trusted: &CertificateAuthority) -> TlsMaterial {
    TlsMaterial {
        cert_pem: identity.tls.cert_pem.clone(),
        key_pem: identity.tls.key_pem().to_owned(),
        ca_pem: trusted.cert_pem().to_owned(),
    }
}

fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

fn peer(id: ReplicaId, address: SocketAddr) -> PeerEndpoint {
    PeerEndpoint {
        id,
        address: address.to_string(),
        tls_name: tls_name(id),
    }
}

fn config(
    id: ReplicaId,
    listen: SocketAddr,
    peers: Vec<PeerEndpoint>,
    tls: TlsMaterial,
) -> TransportConfig {
    TransportConfig {
        id,
        listen,
        peers,
        tls,
        max_frame_bytes: 1 << 20,
        queue_messages: 1_024,
        reconnect_min_ms: 10,
        reconnect_max_ms: 100,
        members: None,
    }
}

struct Node {
    transport: ReplicaTransport,
    handle: TransportHandle,
    inbox: Receiver<Input>,
    /// The inbox's sending side, to stop a thread reading it.
    feed: SyncSender<Input>,
}

impl Node {
    fn stats(&self) -> TransportStats {
        self.handle.stats()
    }

    async fn shutdown(self) {
        tokio::time::timeout(Duration::from_secs(5), self.handle.shutdown())
            .await
            .expect("shutdown finishes promptly");
    }
}

async fn launch(config: TransportConfig, listener: TcpListener) -> Node {
    let (feed, inbox) = sync_channel(INBOX_CAPACITY);
    let (transport, handle) = start_on(config, listener, feed.clone()).await.unwrap();
    Node {
        transport,
        handle,
        inbox,
        feed,
    }
}

/// Replicas `0..n`, all issued by `ca`, each a peer of every other.
async fn cluster(
    ca: &mut CertificateAuthority,
    n: ReplicaId,
    tweak: impl Fn(&mut TransportConfig),
) -> Vec<Node> {
    let listeners: Vec<TcpListener> = (0..n).map(|_| listener()).collect();
    let addresses: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let mut nodes = Vec::new();
    for (id, listener) in (0..n).zip(listeners) {
        let peers = (0..n)
            .filter(|&p| p != id)
            .map(|p| peer(p, addresses[usize::from(p)]))
            .collect();
        let tls = material(&identity(ca, &tls_name(id)), ca);
        let mut config = config(id, addresses[usize::from(id)], peers, tls);
        tweak(&mut config);
        nodes.push(launch(config, listener).await);
    }
    nodes
}

async fn shutdown(nodes: Vec<Node>) {
    for node in nodes {
        node.shutdown().await;
    }
}

/// The next peer message, blocking this thread (the transport runs on the runtime's
/// workers).
fn next_message(inbox: &Receiver<Input>, within: Duration) -> Option<Message> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match inbox.recv_timeout(left) {
            Ok(Input::Peer(message)) => return Some(message),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn batch(seed: u64, payload_bytes: usize) -> Value {
    Value::Batch(Arc::new(Batch {
        time_ms: 1_700_000_000_000 + seed,
        commands: vec![
            Command {
                tag: Tag::Channel("mychannel".into()),
                payload: Bytes::from(vec![seed as u8; payload_bytes]),
            },
            Command {
                tag: Tag::Notary,
                payload: Bytes::from_static(b"notarise this"),
            },
        ],
    }))
}

fn heartbeat(from: ReplicaId, applied: u64) -> Message {
    Message {
        from,
        lane: LaneInfo::default(),
        applied,
        body: Body::Heartbeat,
    }
}

/// One message of every kind, with contents derived from `seed`.
fn every_kind(from: ReplicaId, seed: u64) -> Vec<Message> {
    let ballot = Ballot {
        round: 2,
        replica: from,
    };
    let bodies = vec![
        Body::Heartbeat,
        Body::Accept {
            ballot: Ballot::owner(from),
            entries: vec![(seed * 3 + u64::from(from), batch(seed, 200))],
            prev_proposed: Some(seed),
        },
        Body::Accepted {
            ballot,
            slots: vec![seed, seed + 3],
            noop: seed % 2 == 0,
        },
        Body::Prepare {
            ballot,
            lane: 1,
            from: seed,
            to: seed + 30,
        },
        Body::Promise {
            ballot,
            lane: 1,
            from: seed,
            to: seed + 30,
            accepted: vec![
                (seed + 1, Ballot::owner(1), batch(seed + 1, 10)),
                (seed + 4, ballot, Value::Noop),
            ],
        },
        Body::Nack {
            ballot,
            lane: 2,
            promised: Ballot {
                round: 3,
                replica: 2,
            },
            promised_to: seed + 99,
        },
        Body::Fetch { from: seed },
        Body::Decided {
            from: seed,
            to: seed + 3,
            values: vec![(seed, Value::Noop), (seed + 1, batch(seed, 50))],
            lane_noops: vec![(2, seed, seed + 6)],
        },
        Body::Compacted { log_start: seed },
    ];
    bodies
        .into_iter()
        .map(|body| Message {
            from,
            lane: LaneInfo {
                noop_from: seed,
                frontier: seed + 7,
            },
            applied: seed,
            body,
        })
        .collect()
}

async fn all_directions(algo: Algo) {
    const ROUNDS: u64 = 20;
    let mut ca = authority("OrdererOrg", algo);
    let mut nodes = cluster(&mut ca, 3, |_| {}).await;
    let expected = |from: ReplicaId| -> Vec<Message> {
        (0..ROUNDS)
            .flat_map(|seed| every_kind(from, seed))
            .collect()
    };
    for (id, node) in (0..).zip(nodes.iter_mut()) {
        for to in (0..3).filter(|&to| to != id) {
            for seed in 0..ROUNDS {
                node.transport.send(to, every_kind(id, seed));
            }
        }
    }
    let per_sender = expected(0).len();
    for (id, node) in (0..3).zip(&nodes) {
        let mut got: Vec<Vec<Message>> = vec![Vec::new(); 3];
        for _ in 0..2 * per_sender {
            let message = next_message(&node.inbox, WAIT).expect("every message arrives");
            got[usize::from(message.from)].push(message);
        }
        for from in (0..3).filter(|&from| from != id) {
            // One stream per direction: each sender's messages arrive intact and in order.
            assert_eq!(got[usize::from(from)], expected(from), "{from} -> {id}");
        }
        assert!(got[usize::from(id)].is_empty());
    }
    std::thread::sleep(QUIET);
    for node in &nodes {
        assert!(node.inbox.try_recv().is_err(), "nothing more than was sent");
    }
    for node in &nodes {
        let stats = node.stats();
        let total = 2 * per_sender as u64;
        assert_eq!(stats.sent, total, "{stats:?}");
        assert_eq!(stats.received, total, "{stats:?}");
        assert_eq!(
            stats.dropped_queue_full
                + stats.dropped_oversize
                + stats.dropped_inbox_full
                + stats.refused_identity
                + stats.refused_handshakes
                + stats.decode_errors,
            0,
            "{stats:?}"
        );
    }
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_exchange_in_all_directions_ed25519() {
    all_directions(Algo::Ed25519).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_exchange_in_all_directions_p256() {
    all_directions(Algo::P256).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_from_another_ca_or_of_no_peer_are_refused() {
    let mut ca = authority("OrdererOrg", Algo::Ed25519);
    let mut rogue_ca = authority("RogueOrg", Algo::Ed25519);
    let (l0, l2, l_foreign, l_stranger) = (listener(), listener(), listener(), listener());
    let [a0, a2, a_foreign, a_stranger] =
        [&l0, &l2, &l_foreign, &l_stranger].map(|l| l.local_addr().unwrap());

    // Replica 0 expects replicas 1 and 2; only 2 is genuine.
    let victim = launch(
        config(
            0,
            a0,
            vec![peer(1, a_stranger), peer(2, a2)],
            material(&identity(&mut ca, &tls_name(0)), &ca),
        ),
        l0,
    )
    .await;
    let genuine = launch(
        config(
            2,
            a2,
            vec![peer(0, a0)],
            material(&identity(&mut ca, &tls_name(2)), &ca),
        ),
        l2,
    )
    .await;
    // Replica 1's name, from a CA replica 0 does not trust (while it trusts replica 0's
    // CA, so that only the victim's side can refuse).
    let foreign = launch(
        config(
            1,
            a_foreign,
            vec![peer(0, a0)],
            material(&identity(&mut rogue_ca, &tls_name(1)), &ca),
        ),
        l_foreign,
    )
    .await;
    // The trusted CA, but a name no configured peer has.
    let stranger = launch(
        config(
            1,
            a_stranger,
            vec![peer(0, a0)],
            material(&identity(&mut ca, "intruder.synod.test"), &ca),
        ),
        l_stranger,
    )
    .await;

    let mut nodes = vec![victim, genuine, foreign, stranger];
    for node in &mut nodes[2..] {
        node.transport.send(0, vec![heartbeat(1, 1)]);
    }
    wait_until("both impostors were turned away", || {
        let stats = nodes[0].stats();
        stats.refused_handshakes >= 1 && stats.refused_identity >= 1
    })
    .await;
    wait_until("both impostors tried again", || {
        nodes[2].stats().reconnects >= 1 && nodes[3].stats().reconnects >= 1
    })
    .await;

    nodes[1].transport.send(0, vec![heartbeat(2, 7)]);
    assert_eq!(next_message(&nodes[0].inbox, WAIT), Some(heartbeat(2, 7)));
    assert_eq!(next_message(&nodes[0].inbox, QUIET), None);
    let stats = nodes[0].stats();
    assert_eq!(stats.received, 1, "{stats:?}");
    for impostor in &nodes[2..] {
        assert_eq!(impostor.stats().sent, 0, "no stream was ever opened");
    }
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_claiming_another_sender_are_dropped() {
    let mut ca = authority("OrdererOrg", Algo::Ed25519);
    let mut nodes = cluster(&mut ca, 3, |_| {}).await;
    nodes[0].transport.send(
        1,
        vec![
            heartbeat(2, 1),
            heartbeat(0, 2),
            // Not even a replica id: fails to decode.
            heartbeat(200, 3),
            heartbeat(0, 4),
        ],
    );
    assert_eq!(next_message(&nodes[1].inbox, WAIT), Some(heartbeat(0, 2)));
    assert_eq!(next_message(&nodes[1].inbox, WAIT), Some(heartbeat(0, 4)));
    assert_eq!(next_message(&nodes[1].inbox, QUIET), None);
    let stats = nodes[1].stats();
    assert_eq!(stats.received, 2, "{stats:?}");
    assert_eq!(stats.refused_identity, 1, "{stats:?}");
    assert_eq!(stats.decode_errors, 1, "{stats:?}");
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_peer_never_blocks_and_traffic_resumes_when_it_starts() {
    const QUEUE: usize = 64;
    const SENT: u64 = 20_000;
    let mut ca = authority("OrdererOrg", Algo::Ed25519);
    let l0 = listener();
    let a0 = l0.local_addr().unwrap();
    // Nothing listens there until replica 1 starts.
    let a1 = listener().local_addr().unwrap();
    let mut sender = config(
        0,
        a0,
        vec![peer(1, a1)],
        material(&identity(&mut ca, &tls_name(0)), &ca),
    );
    sender.queue_messages = QUEUE;
    let mut sender = launch(sender, l0).await;

    let began = Instant::now();
    for applied in 0..SENT {
        sender.transport.send(1, vec![heartbeat(0, applied)]);
    }
    let took = began.elapsed();
    println!("{SENT} sends to a dead peer took {took:?}");
    assert!(took < Duration::from_secs(2), "send blocked: {took:?}");
    let stats = sender.stats();
    assert_eq!(stats.dropped_queue_full, SENT - QUEUE as u64, "{stats:?}");
    assert_eq!(stats.sent, 0);
    wait_until("the sender retried", || sender.stats().reconnects >= 2).await;

    let (feed, inbox) = sync_channel(INBOX_CAPACITY);
    let receiver = config(
        1,
        a1,
        vec![peer(0, a0)],
        material(&identity(&mut ca, &tls_name(1)), &ca),
    );
    let (receiver_transport, receiver_handle) = start(receiver, feed.clone()).await.unwrap();
    let receiver = Node {
        transport: receiver_transport,
        handle: receiver_handle,
        inbox,
        feed,
    };

    // What the queue held arrives first, in order; everything else was dropped.
    for applied in 0..QUEUE as u64 {
        assert_eq!(
            next_message(&receiver.inbox, WAIT),
            Some(heartbeat(0, applied))
        );
    }
    sender.transport.send(1, vec![heartbeat(0, SENT)]);
    assert_eq!(
        next_message(&receiver.inbox, WAIT),
        Some(heartbeat(0, SENT))
    );
    let stats = sender.stats();
    assert_eq!(stats.sent, QUEUE as u64 + 1, "{stats:?}");
    assert!(stats.reconnects >= 2, "{stats:?}");
    shutdown(vec![sender, receiver]).await;
}

fn big(from: ReplicaId, payload_bytes: usize) -> Message {
    Message {
        from,
        lane: LaneInfo::default(),
        applied: 0,
        body: Body::Accept {
            ballot: Ballot::owner(from),
            entries: vec![(3, batch(1, payload_bytes))],
            prev_proposed: None,
        },
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_messages_are_refused() {
    let mut ca = authority("OrdererOrg", Algo::Ed25519);
    // Replica 0 sends frames up to 1 MiB, replica 1 up to 64 KiB; replica 2 accepts
    // only 16 KiB.
    let mut nodes = cluster(&mut ca, 3, |c| {
        c.max_frame_bytes = match c.id {
            0 => 1 << 20,
            1 => 64 << 10,
            _ => 16 << 10,
        }
    })
    .await;

    // Larger than the sender's own limit: dropped before it leaves.
    nodes[1]
        .transport
        .send(0, vec![big(1, 100 << 10), heartbeat(1, 1)]);
    assert_eq!(next_message(&nodes[0].inbox, WAIT), Some(heartbeat(1, 1)));
    assert_eq!(next_message(&nodes[0].inbox, QUIET), None);
    assert_eq!(nodes[1].stats().dropped_oversize, 1);

    // Within the sender's limit, beyond the receiver's: the receiver refuses the frame
    // and ends the stream, and the sender dials again.
    let redials = nodes[0].stats().reconnects;
    nodes[0].transport.send(2, vec![big(0, 32 << 10)]);
    wait_until("the receiver refused the frame", || {
        nodes[2].stats().decode_errors >= 1
    })
    .await;
    wait_until("the sender redialled", || {
        nodes[0].stats().reconnects > redials
    })
    .await;
    nodes[0].transport.send(2, vec![heartbeat(0, 2)]);
    assert_eq!(next_message(&nodes[2].inbox, WAIT), Some(heartbeat(0, 2)));
    assert_eq!(next_message(&nodes[2].inbox, QUIET), None);
    let stats = nodes[2].stats();
    assert_eq!(stats.received, 1, "{stats:?}");
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_configurations_are_refused_before_anything_starts() {
    let mut ca = authority("OrdererOrg", Algo::Ed25519);
    let tls = material(&identity(&mut ca, &tls_name(0)), &ca);
    let here = listener().local_addr().unwrap();
    let good = config(0, here, vec![peer(1, here), peer(2, here)], tls.clone());
    let mut broken = Vec::new();
    let mut twice = good.clone();
    twice.peers[1].id = 1;
    broken.push(twice);
    let mut shared_name = good.clone();
    shared_name.peers[1].tls_name = tls_name(1).to_uppercase();
    broken.push(shared_name);
    let mut itself = good.clone();
    itself.peers[0].id = 0;
    broken.push(itself);
    let mut no_queue = good.clone();
    no_queue.queue_messages = 0;
    broken.push(no_queue);
    for config in broken {
        let (feed, _inbox) = sync_channel(1);
        let listener = listener();
        assert!(matches!(
            start_on(config, listener, feed).await,
            Err(TransportError::Config(_))
        ));
    }
    let mut bad_key = good.clone();
    bad_key.tls.key_pem = "not a key".into();
    let (feed, _inbox) = sync_channel(1);
    assert!(matches!(
        start_on(bad_key, listener(), feed).await,
        Err(TransportError::Tls(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn round_trip_latency_on_loopback() {
    const WARMUP: u64 = 100;
    const PINGS: u64 = 1_000;
    let mut ca = authority("OrdererOrg", Algo::Ed25519);
    let mut nodes = cluster(&mut ca, 2, |_| {}).await;
    let echo_node = nodes.pop().unwrap();
    let mut echo = echo_node.transport.clone();
    let echo_inbox = echo_node.inbox;
    let echo_thread = std::thread::spawn(move || {
        while let Ok(Input::Peer(ping)) = echo_inbox.recv_timeout(WAIT) {
            echo.send(0, vec![heartbeat(1, ping.applied)]);
        }
    });

    let pinger = &mut nodes[0];
    let mut samples = Vec::with_capacity(PINGS as usize);
    for i in 0..WARMUP + PINGS {
        let began = Instant::now();
        pinger.transport.send(1, vec![heartbeat(0, i)]);
        let pong = next_message(&pinger.inbox, WAIT).expect("pong");
        assert_eq!(pong, heartbeat(1, i));
        if i >= WARMUP {
            samples.push(began.elapsed());
        }
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    println!(
        "replica round trip over mutual TLS on loopback, {PINGS} pings: \
         median {:?}, p90 {:?}, p99 {:?}, max {:?}",
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );

    echo_node.feed.send(Input::Stop).unwrap();
    echo_thread.join().unwrap();
    tokio::time::timeout(Duration::from_secs(5), echo_node.handle.shutdown())
        .await
        .expect("shutdown finishes promptly");
    shutdown(nodes).await;
}
