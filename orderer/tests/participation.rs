//! The channel participation API on a three-node in-process cluster, over real HTTPS
//! with client certificates: a join on one node creates the channel on every node from
//! exactly the posted block, repeats and conflicts are told apart, bad requests get a
//! reason, removal is cluster-wide, and only admins get in. The last test drives the
//! `orderer channel` CLI against it.

mod support;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command as Process, Output};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ca::{Algo, CertificateAuthority, IssuedIdentity, Membership, Role};
use channel::{BatchConfig, ChannelCommand, genesis_block, verify_chain};
use http::Method;
use proto::common::Block;
use proto::prost::Message as _;

use orderer::admin_client::{AdminClient, AdminTls, Answer};
use orderer::core::{Command, Tag};
use orderer::node::participation::{
    self, ChannelInfo, ChannelList, ParticipationApi, ParticipationLimits,
};
use orderer::node::transport::TlsMaterial;
use support::{Cluster, NODES};

const BIN: &str = env!("CARGO_BIN_EXE_orderer");
const MSP_ID: &str = "OrdererMSP";
/// Generous bound for what takes milliseconds on loopback.
const WAIT: Duration = Duration::from_secs(20);

/// The in-process cluster with the participation API served for each node.
struct Fixture {
    cluster: Cluster,
    runtime: tokio::runtime::Runtime,
    ca: CertificateAuthority,
    endpoints: Vec<SocketAddr>,
}

fn tls_of(identity: &IssuedIdentity, ca: &CertificateAuthority) -> AdminTls {
    AdminTls {
        ca_pem: ca.cert_pem().to_string(),
        identity: Some((
            identity.tls.cert_pem.clone(),
            identity.tls.key_pem().to_string(),
        )),
    }
}

impl Fixture {
    fn new() -> Fixture {
        let cluster = Cluster::new();
        let mut ca = CertificateAuthority::init("ca.orderers", MSP_ID, Algo::P256).unwrap();
        let mut membership = Membership::new();
        membership.add_ca(MSP_ID, ca.cert_der()).unwrap();
        let membership = Arc::new(RwLock::new(membership));
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let mut endpoints = Vec::new();
        for id in 0..NODES {
            let node = ca
                .issue(
                    Role::Orderer,
                    &format!("orderer{id}"),
                    &["localhost".into(), "127.0.0.1".into()],
                    30,
                )
                .unwrap();
            let material = TlsMaterial {
                cert_pem: node.tls.cert_pem.clone(),
                key_pem: node.tls.key_pem().to_string(),
                ca_pem: ca.cert_pem().to_string(),
            };
            let api = ParticipationApi::new(
                cluster.nodes[id].as_ref().unwrap().inbox.clone(),
                cluster.directories[id].clone(),
                membership.clone(),
                cluster.stores[id].clone().unwrap(),
                ParticipationLimits::default(),
            );
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let _guard = runtime.enter();
            let (address, _serving) = participation::start(listener, &material, api).unwrap();
            endpoints.push(address);
        }
        Fixture {
            cluster,
            runtime,
            ca,
            endpoints,
        }
    }

    fn issue(&mut self, role: Role, name: &str) -> IssuedIdentity {
        self.ca.issue(role, name, &[], 30).unwrap()
    }

    fn client(&self, node: usize, tls: &AdminTls) -> AdminClient {
        AdminClient::new(&self.endpoints[node].to_string(), None, tls).unwrap()
    }

    fn call<F: std::future::Future<Output = Result<Answer, String>>>(&self, call: F) -> Answer {
        self.runtime.block_on(call).unwrap()
    }

    /// Block 0 of `channel` as node `id` stores it (empty if it has none).
    fn stored_genesis(&self, id: usize, channel: &str) -> Vec<u8> {
        self.cluster
            .chain(id, channel)
            .first()
            .map(|b| b.encode_to_vec())
            .unwrap_or_default()
    }
}

fn block(channel: &str, max_message_count: u32) -> Vec<u8> {
    let config = BatchConfig {
        max_message_count,
        absolute_max_bytes: 1 << 20,
        preferred_max_bytes: 1 << 19,
        batch_timeout_ms: 100,
    };
    genesis_block(channel, &config).0.encode_to_vec()
}

/// `block` with Writers "2 out of 2" of two client roles in its channel group.
fn with_writers_needing_two_signatures(block: &[u8]) -> Vec<u8> {
    use channel::{ChannelPolicies, ChannelPolicy, MspRole, Principal};
    use proto::common::{
        ConfigEnvelope, Envelope, Payload, SignaturePolicy, SignaturePolicyEnvelope,
        signature_policy,
    };
    let mut block = Block::decode(block).unwrap();
    let data = &mut block.data.as_mut().unwrap().data;
    let mut envelope = Envelope::decode(&data[0][..]).unwrap();
    let mut payload = Payload::decode(&envelope.payload[..]).unwrap();
    let mut config = ConfigEnvelope::decode(&payload.data[..]).unwrap();
    let writers = ChannelPolicy::any_of([
        Principal::new(MSP_ID, MspRole::Client),
        Principal::new("Org1MSP", MspRole::Client),
    ]);
    let mut policies = channel::policy::config_policies(&ChannelPolicies {
        writers,
        ..ChannelPolicies::for_msp(MSP_ID)
    })
    .unwrap();
    let policy = policies
        .get_mut("Writers")
        .unwrap()
        .policy
        .as_mut()
        .unwrap();
    let mut rule = SignaturePolicyEnvelope::decode(&policy.value[..]).unwrap();
    if let Some(SignaturePolicy {
        r#type: Some(signature_policy::Type::NOutOf(n_out_of)),
    }) = rule.rule.as_mut()
    {
        n_out_of.n = 2;
    }
    policy.value = rule.encode_to_vec();
    config
        .config
        .as_mut()
        .unwrap()
        .channel_group
        .as_mut()
        .unwrap()
        .policies = policies;
    payload.data = config.encode_to_vec();
    envelope.payload = payload.encode_to_vec();
    data[0] = envelope.encode_to_vec();
    let hash = channel::block_hash::data_hash(data).to_vec();
    block.header.as_mut().unwrap().data_hash = hash;
    block.encode_to_vec()
}

fn assert_status(answer: &Answer, status: u16) {
    assert_eq!(
        answer.status,
        status,
        "answer {}",
        String::from_utf8_lossy(&answer.body)
    );
}

/// Polls `check` until it holds or `WAIT` passes.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < WAIT, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn envelope(channel: &str, id: u32) -> Command {
    Command {
        tag: Tag::Channel(channel.into()),
        payload: ChannelCommand::Envelope {
            bytes: Bytes::from(format!("envelope-{id}").into_bytes()),
            tx_id: format!("tx-{id}"),
            is_config: false,
        }
        .encode(),
    }
}

#[test]
fn a_join_on_one_node_creates_the_channel_everywhere_and_a_removal_drops_it_everywhere() {
    let mut fixture = Fixture::new();
    let admin = fixture.issue(Role::Admin, "admin");
    let admin = tls_of(&admin, &fixture.ca);
    let clients: Vec<AdminClient> = (0..NODES).map(|id| fixture.client(id, &admin)).collect();

    let empty = fixture.call(clients[0].list());
    assert_status(&empty, 200);
    assert_eq!(
        String::from_utf8_lossy(&empty.body),
        r#"{"systemChannel":null,"channels":[]}"#
    );
    let unknown = fixture.call(clients[0].info("alpha"));
    assert_status(&unknown, 404);
    assert!(unknown.error_text().contains("alpha"), "{unknown:?}");

    // Join on node 0, as osnadmin does it (multipart/form-data).
    let genesis = block("alpha", 4);
    let joined = fixture.call(clients[0].join(&genesis));
    assert_status(&joined, 201);
    let info: ChannelInfo = joined.json().unwrap();
    assert_eq!(
        info,
        ChannelInfo {
            name: "alpha".into(),
            url: "/participation/v1/channels/alpha".into(),
            consensus_relation: "consenter".into(),
            status: "active".into(),
            height: 1,
        }
    );
    for (id, client) in clients.iter().enumerate() {
        eventually(&format!("alpha on node {id}"), || {
            fixture.call(client.info("alpha")).status == 200
        });
        assert_eq!(fixture.stored_genesis(id, "alpha"), genesis, "node {id}");
        let list: ChannelList = fixture.call(client.list()).json().unwrap();
        assert_eq!(list.channels.len(), 1);
        assert_eq!(list.channels[0].url, "/participation/v1/channels/alpha");
    }

    // Fabric's runbook joins every orderer: the same block again is fine anywhere, in
    // either encoding; another block for the channel is a conflict.
    let again = fixture.call(clients[1].join_raw(&genesis));
    assert_status(&again, 200);
    assert_eq!(again.json::<ChannelInfo>().unwrap().name, "alpha");
    let conflict = fixture.call(clients[2].join(&block("alpha", 9)));
    assert_status(&conflict, 409);
    assert!(
        conflict.error_text().contains("different genesis block"),
        "{conflict:?}"
    );

    // The joined channel orders: blocks chain onto the posted block 0, on every node.
    for id in 0..10u32 {
        fixture
            .cluster
            .propose(id as usize % NODES, envelope("alpha", id));
    }
    fixture
        .cluster
        .wait_for_envelopes("alpha", 10, Duration::from_secs(20));
    let chains: Vec<Vec<Block>> = (0..NODES)
        .map(|id| fixture.cluster.chain(id, "alpha"))
        .collect();
    for chain in &chains {
        verify_chain(chain).unwrap();
        assert_eq!(chain[0].encode_to_vec(), genesis);
        let headers = |c: &[Block]| c.iter().map(|b| b.header.clone()).collect::<Vec<_>>();
        assert_eq!(headers(chain), headers(&chains[0]));
    }
    let height = chains[0].len() as u64;
    eventually("node 0 publishes the new height", || {
        fixture
            .call(clients[0].info("alpha"))
            .json::<ChannelInfo>()
            .is_ok_and(|info| info.height == height)
    });

    // Removal through another node drops the channel and its blocks everywhere.
    let removed = fixture.call(clients[2].remove("alpha"));
    assert_status(&removed, 204);
    assert!(removed.body.is_empty());
    for (id, client) in clients.iter().enumerate() {
        eventually(&format!("alpha gone from node {id}"), || {
            fixture.call(client.info("alpha")).status == 404
        });
        eventually(&format!("alpha's blocks gone from node {id}"), || {
            fixture.cluster.chain(id, "alpha").is_empty()
        });
    }
    assert_status(&fixture.call(clients[0].remove("alpha")), 404);

    // The name is free again, for any genesis block.
    let rejoined = fixture.call(clients[1].join(&block("alpha", 9)));
    assert_status(&rejoined, 201);
    assert_eq!(rejoined.json::<ChannelInfo>().unwrap().height, 1);
}

#[test]
fn bad_requests_are_refused_with_a_reason() {
    let mut fixture = Fixture::new();
    let admin = fixture.issue(Role::Admin, "admin");
    let admin = tls_of(&admin, &fixture.ca);
    let client = fixture.client(0, &admin);
    let refused = |answer: Answer, status: u16, reason: &str| {
        assert_status(&answer, status);
        assert!(
            answer.error_text().contains(reason),
            "{status}: {:?} lacks {reason:?}",
            answer.error_text()
        );
    };

    refused(
        fixture.call(client.join(b"\xff\xff not a block")),
        400,
        "not a usable genesis block",
    );
    let mut later = Block::decode(&block("beta", 4)[..]).unwrap();
    later.header.as_mut().unwrap().number = 5;
    refused(
        fixture.call(client.join(&later.encode_to_vec())),
        400,
        "not a genesis block",
    );
    refused(
        fixture.call(client.join(&block("Not_A_Name", 4))),
        400,
        "not allowed",
    );
    let mut no_config = Block::decode(&block("beta", 4)[..]).unwrap();
    no_config.data.as_mut().unwrap().data[0] = b"junk".to_vec();
    refused(
        fixture.call(client.join(&no_config.encode_to_vec())),
        400,
        "data hash",
    );
    refused(
        fixture.call(client.join_raw(&vec![0; 2 << 20])),
        413,
        "exceeds",
    );
    // Writers "2 out of 2": no single identity could ever broadcast.
    let two_signatures = with_writers_needing_two_signatures(&block("beta", 4));
    refused(
        fixture.call(client.join(&two_signatures)),
        400,
        "needs 2 signatures",
    );
    let oversized_block = vec![0; 600 * 1024];
    refused(fixture.call(client.join(&oversized_block)), 413, "at most");
    let path = "/participation/v1/channels".to_string();
    refused(
        fixture.call(client.request(Method::POST, path.clone(), Some("text/plain"), vec![1])),
        400,
        "Content-Type",
    );
    refused(
        fixture.call(
            client.request(
                Method::POST,
                path.clone(),
                Some("multipart/form-data; boundary=xyz"),
                b"--xyz\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n--xyz--\r\n"
                    .to_vec(),
            ),
        ),
        400,
        "config-block",
    );
    let put = fixture.call(client.request(Method::PUT, path, None, Vec::new()));
    refused(put, 405, "PUT");
    refused(
        fixture.call(client.request(
            Method::POST,
            "/participation/v1/channels/beta".into(),
            None,
            Vec::new(),
        )),
        405,
        "POST",
    );
    refused(
        fixture.call(client.request(
            Method::GET,
            "/participation/v2/channels".into(),
            None,
            Vec::new(),
        )),
        404,
        "no such path",
    );
    refused(
        fixture.call(client.request(
            Method::GET,
            "/participation/v1/channels/beta/extra".into(),
            None,
            Vec::new(),
        )),
        404,
        "no such path",
    );
    refused(
        fixture.call(client.request(
            Method::GET,
            "/participation/v1/channels/BETA".into(),
            None,
            Vec::new(),
        )),
        400,
        "not allowed",
    );
    // Nothing of the above created anything.
    assert_eq!(
        fixture
            .call(client.list())
            .json::<ChannelList>()
            .unwrap()
            .channels,
        vec![]
    );
}

#[test]
fn only_admins_get_in() {
    let mut fixture = Fixture::new();
    let client_role = fixture.issue(Role::Client, "app");
    let client_role = fixture.client(0, &tls_of(&client_role, &fixture.ca));
    let forbidden = fixture.call(client_role.list());
    assert_status(&forbidden, 403);
    assert!(
        forbidden
            .error_text()
            .contains("role client is not allowed"),
        "{forbidden:?}"
    );
    let forbidden = fixture.call(client_role.join(&block("gamma", 4)));
    assert_status(&forbidden, 403);

    // Without a client certificate, or with one from another CA, the TLS handshake
    // fails: no HTTP answer at all.
    let anonymous = AdminTls {
        ca_pem: fixture.ca.cert_pem().to_string(),
        identity: None,
    };
    let anonymous = fixture.client(0, &anonymous);
    let error = fixture
        .runtime
        .block_on(anonymous.list())
        .expect_err("served without a client certificate");
    assert!(
        error.contains("TLS") || error.contains("failed") || error.contains("certificate"),
        "{error}"
    );
    let mut stranger_ca = CertificateAuthority::init("ca.evil", MSP_ID, Algo::P256).unwrap();
    let stranger = stranger_ca.issue(Role::Admin, "admin", &[], 30).unwrap();
    let stranger = AdminTls {
        ca_pem: fixture.ca.cert_pem().to_string(),
        identity: Some((stranger.tls.cert_pem.clone(), stranger.tls.key_pem().into())),
    };
    assert!(
        fixture
            .runtime
            .block_on(fixture.client(0, &stranger).list())
            .is_err()
    );
    // The refusals created nothing, and an admin still gets in.
    let admin = fixture.issue(Role::Admin, "admin");
    let admin = fixture.client(0, &tls_of(&admin, &fixture.ca));
    let list: ChannelList = fixture.call(admin.list()).json().unwrap();
    assert!(list.channels.is_empty());
}

fn run(args: &[&str]) -> Output {
    Process::new(BIN).args(args).output().expect("orderer runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write_tls(dir: &Path, identity: &IssuedIdentity, ca: &CertificateAuthority) -> Vec<String> {
    identity.write_msp(dir).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("tls/ca.crt")).unwrap(),
        ca.cert_pem()
    );
    ["tls/ca.crt", "tls/server.crt", "tls/server.key"]
        .iter()
        .map(|file| dir.join(file).to_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_orderer_channel_cli_creates_lists_joins_and_removes() {
    let mut fixture = Fixture::new();
    let files = tempfile::tempdir().unwrap();
    let admin = fixture.issue(Role::Admin, "admin");
    let admin = write_tls(&files.path().join("admin"), &admin, &fixture.ca);
    let app = fixture.issue(Role::Client, "app");
    let app = write_tls(&files.path().join("app"), &app, &fixture.ca);
    let endpoint = |id: usize| fixture.endpoints[id].to_string();
    let tls_args = |endpoint: String, tls: &[String]| {
        vec![
            "--endpoint".to_string(),
            endpoint,
            "--ca-file".into(),
            tls[0].clone(),
            "--client-cert".into(),
            tls[1].clone(),
            "--client-key".into(),
            tls[2].clone(),
        ]
    };
    let channel = |command: &str, node: usize, tls: &[String], extra: &[&str]| {
        let mut args = vec!["channel".to_string(), command.to_string()];
        args.extend(tls_args(endpoint(node), tls));
        args.extend(extra.iter().map(|a| a.to_string()));
        run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let block_file = files.path().join("cli-made.block");
    let block_path = block_file.to_str().unwrap();

    let created = channel(
        "create",
        0,
        &admin,
        &[
            "--channel",
            "cli-made",
            "--max-message-count",
            "10",
            "--batch-timeout",
            "250ms",
            "--output-block",
            block_path,
        ],
    );
    assert!(created.status.success(), "{}", text(&created.stderr));
    let stdout = text(&created.stdout);
    assert!(stdout.starts_with("Status: 201\n"), "{stdout}");
    assert!(stdout.contains(r#""name": "cli-made""#), "{stdout}");
    let written = std::fs::read(&block_file).unwrap();
    let joined = channel::genesis::parse_join_block(&written).unwrap();
    assert_eq!(
        (
            joined.config.max_message_count,
            joined.config.batch_timeout_ms
        ),
        (10, 250)
    );
    assert_eq!(fixture.stored_genesis(0, "cli-made"), written);

    eventually("cli-made on node 1", || {
        fixture.cluster.chain(1, "cli-made").len() == 1
    });
    let listed = channel("list", 1, &admin, &[]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    assert!(
        text(&listed.stdout).contains(r#""url": "/participation/v1/channels/cli-made""#),
        "{}",
        text(&listed.stdout)
    );
    let one = channel("list", 1, &admin, &["--channel", "cli-made"]);
    assert!(
        text(&one.stdout).contains(r#""height": 1"#),
        "{}",
        text(&one.stdout)
    );
    let rejoined = channel("join", 2, &admin, &["--config-block", block_path]);
    assert!(rejoined.status.success(), "{}", text(&rejoined.stderr));
    assert!(text(&rejoined.stdout).starts_with("Status: 200\n"));

    let forbidden = channel("remove", 0, &app, &["--channel", "cli-made"]);
    assert!(!forbidden.status.success());
    assert!(
        text(&forbidden.stderr).contains("403"),
        "{}",
        text(&forbidden.stderr)
    );

    let removed = channel("remove", 2, &admin, &["--channel", "cli-made"]);
    assert!(removed.status.success(), "{}", text(&removed.stderr));
    assert_eq!(text(&removed.stdout), "Status: 204\n");
    let gone = channel("list", 2, &admin, &["--channel", "cli-made"]);
    assert!(!gone.status.success());
    assert!(text(&gone.stderr).contains("404"), "{}", text(&gone.stderr));
    assert!(text(&gone.stderr).contains("does not exist"));

    let bad = channel(
        "create",
        0,
        &admin,
        &["--channel", "x", "--batch-timeout", "2"],
    );
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("unit"), "{}", text(&bad.stderr));
}
