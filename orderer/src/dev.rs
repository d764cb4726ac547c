//! `orderer dev`: a complete three-node cluster on loopback from one command — its own
//! CA and certificates, client and admin identities, data directories, channel `demo` —
//! for trying Synod and for tests. Run again with the same directory, it restarts the same cluster with its data.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ca::{Algo, CertificateAuthority, Role};
use channel::{BatchConfig, ChannelCommand, ChannelPolicies, genesis_block_with_policies};
use proto::prost::Message as _;

use crate::core::{Command, Tag};
use crate::node::runtime::{Input, offer};
use crate::node::server::{
    ConsensusTuning, NodeConfig, NodeError, NotaryConfig, PeerConfig, RunningNode, SigningPaths,
    TlsPaths, TrustedMsp, start_node,
};

pub const REPLICAS: usize = 3;
pub const MSP_ID: &str = "SynodDevMSP";
pub const DEMO_CHANNEL: &str = "demo";
/// The name the dev cluster's notary answers to.
pub const NOTARY_NAME: &str = "synod-dev-notary";

fn fail(what: &str) -> impl Fn(std::io::Error) -> NodeError + '_ {
    move |e| NodeError(format!("{what}: {e}"))
}

fn node_dir(dir: &Path, id: usize) -> PathBuf {
    dir.join(format!("orderer{id}"))
}

fn config_path(dir: &Path, id: usize) -> PathBuf {
    node_dir(dir, id).join("orderer.toml")
}

/// Where the client identity (Fabric MSP layout) of a dev cluster lives.
pub fn client_dir(dir: &Path) -> PathBuf {
    dir.join("client")
}

/// Where the admin identity (Fabric MSP layout; its TLS certificate is what the channel
/// participation API admits) of a dev cluster lives.
pub fn admin_dir(dir: &Path) -> PathBuf {
    dir.join("admin")
}

/// `count` distinct loopback ports free now, below the kernel's ephemeral range. Ports
/// the kernel hands out for port 0 are ephemeral ones, which the nodes' own outgoing
/// connections may take between this pick and their listeners' bind; ports below the
/// range are never taken that way.
fn free_loopback_ports(count: usize) -> Result<Vec<std::net::SocketAddr>, NodeError> {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let low = 10_000u16.min(ephemeral_start.saturating_sub(1_000));
    let span = ephemeral_start.saturating_sub(low).max(1);
    // Start somewhere different in each process, so concurrent clusters rarely probe
    // the same ports first.
    let offset = {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        (hasher.finish() % u64::from(span)) as u16
    };
    // Held until all are picked, so that none is picked twice.
    let mut held = Vec::new();
    for step in 0..span {
        if held.len() == count {
            break;
        }
        let port = low + (offset + step) % span;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            held.push(listener);
        }
    }
    if held.len() < count {
        return Err(NodeError(format!(
            "only {} free loopback ports below {ephemeral_start}, {count} needed",
            held.len()
        )));
    }
    held.iter()
        .map(|l| l.local_addr().map_err(fail("local address")))
        .collect()
}

/// Creates the CA, identities and configurations of a new cluster in `dir`, with
/// listeners on free loopback ports (kept in the configurations for restarts).
fn create(dir: &Path) -> Result<Vec<NodeConfig>, NodeError> {
    std::fs::create_dir_all(dir).map_err(fail("cannot create the cluster directory"))?;
    let ca_error = |e: ca::CaError| NodeError(format!("CA: {e}"));
    // P-256, so that Fabric's SDKs (ECDSA only) can use the client identity.
    let mut ca =
        CertificateAuthority::init("ca.synod-dev", MSP_ID, Algo::P256).map_err(ca_error)?;
    ca.save(&dir.join("ca")).map_err(ca_error)?;
    // Peers verify each other by name: the name is a SAN, next to the loopback ones.
    let sans = |name: &str| [name.to_string(), "localhost".into(), "127.0.0.1".into()];
    let ports = free_loopback_ports(REPLICAS * 5)?;
    let mut configs = Vec::new();
    for id in 0..REPLICAS {
        let name = format!("orderer{id}");
        let identity = ca
            .issue(Role::Orderer, &name, &sans(&name), 365)
            .map_err(ca_error)?;
        let home = node_dir(dir, id);
        identity.write_msp(&home).map_err(ca_error)?;
        let peers = (0..REPLICAS)
            .filter(|p| *p != id)
            .map(|p| PeerConfig {
                id: p as u8,
                address: ports[p].to_string(),
                tls_name: format!("orderer{p}"),
            })
            .collect();
        configs.push(NodeConfig {
            id: id as u8,
            replicas: REPLICAS,
            data_dir: home.join("data"),
            replica_listen: ports[id],
            client_listen: ports[REPLICAS + id],
            admin_listen: ports[2 * REPLICAS + id],
            operations_listen: Some(ports[4 * REPLICAS + id]),
            peers,
            tls: TlsPaths {
                cert: home.join("tls/server.crt"),
                key: home.join("tls/server.key"),
                ca: home.join("tls/ca.crt"),
            },
            signing: SigningPaths {
                msp_id: MSP_ID.into(),
                cert: home.join("msp/signcerts/cert.pem"),
                key: home.join("msp/keystore/key.pem"),
            },
            trusted_msps: vec![TrustedMsp {
                msp_id: MSP_ID.into(),
                dir: home.join("msp"),
            }],
            consensus: ConsensusTuning::default(),
            notary: Some(NotaryConfig {
                listen: ports[3 * REPLICAS + id],
                name: NOTARY_NAME.into(),
                batch_signing: true,
                callers: vec![format!("{MSP_ID}:client"), format!("{MSP_ID}:peer")],
            }),
        });
    }
    let client = ca
        .issue(Role::Client, "client", &sans("client"), 365)
        .map_err(ca_error)?;
    client.write_msp(&client_dir(dir)).map_err(ca_error)?;
    let admin = ca
        .issue(Role::Admin, "admin", &sans("admin"), 365)
        .map_err(ca_error)?;
    admin.write_msp(&admin_dir(dir)).map_err(ca_error)?;
    for (id, config) in configs.iter().enumerate() {
        std::fs::write(config_path(dir, id), config.to_toml())
            .map_err(fail("cannot write a node configuration"))?;
    }
    Ok(configs)
}

pub struct DevCluster {
    pub dir: PathBuf,
    pub nodes: Vec<RunningNode>,
    pub configs: Vec<NodeConfig>,
}

/// Starts the cluster in `dir` (creating it if needed) and makes sure `channels`
/// exist.
pub async fn start(dir: &Path, channels: &[String]) -> Result<DevCluster, NodeError> {
    let configs = if config_path(dir, 0).exists() {
        (0..REPLICAS)
            .map(|id| NodeConfig::load(&config_path(dir, id)))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        create(dir)?
    };
    // Started together: a node with empty storage waits to hear from its peers before
    // it votes, so starting one after the other would never get past the first.
    // The first failure ends the start: the others would wait for the failed node.
    let mut starting = tokio::task::JoinSet::new();
    for (index, config) in configs.iter().cloned().enumerate() {
        starting.spawn(async move { (index, start_node(&config, None, None).await) });
    }
    let mut started = Vec::new();
    while let Some(done) = starting.join_next().await {
        let (index, node) = done.map_err(|e| NodeError(format!("a node failed to start: {e}")))?;
        let node = node.map_err(|NodeError(why)| NodeError(format!("orderer{index}: {why}")))?;
        started.push((index, node));
    }
    started.sort_by_key(|(index, _)| *index);
    let nodes = started.into_iter().map(|(_, node)| node).collect();
    let cluster = DevCluster {
        dir: dir.to_path_buf(),
        nodes,
        configs,
    };
    for channel in channels {
        cluster.ensure_channel(channel).await?;
    }
    Ok(cluster)
}

impl DevCluster {
    /// Joins `name` with a genesis block of Fabric's default batch settings and
    /// policies naming the cluster's MSP (its clients, peers and admins write, its
    /// members read, its admins administer), through the ordered log as the
    /// participation API does (a no-op if it exists), and waits until every node has it.
    pub async fn ensure_channel(&self, name: &str) -> Result<(), NodeError> {
        channel::genesis::validate_channel_name(name).map_err(NodeError)?;
        let policies = ChannelPolicies::for_msp(MSP_ID);
        let block = genesis_block_with_policies(name, &BatchConfig::default(), &policies)
            .map_err(NodeError)?
            .0
            .encode_to_vec();
        for _ in 0..300 {
            if self
                .nodes
                .iter()
                .all(|n| n.directory.channel(name).is_some())
            {
                return Ok(());
            }
            let command = Command {
                tag: Tag::Channel(name.into()),
                payload: ChannelCommand::Join {
                    block: block.clone().into(),
                }
                .encode(),
            };
            let (answer, _) = tokio::sync::oneshot::channel();
            offer(self.nodes[0].inbox(), Input::Propose { command, answer });
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(NodeError(format!(
            "channel {name} was not created within 30 s"
        )))
    }

    pub async fn stop(self) {
        for node in self.nodes {
            node.stop().await;
        }
    }

    /// What an operator needs to use the cluster.
    pub fn describe(&self) -> String {
        let channels: Vec<String> = self.nodes[0]
            .directory
            .channel_names()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        let mut out = format!("Synod dev cluster: 3 orderers, channels {channels:?}\n");
        for (node, config) in self.nodes.iter().zip(&self.configs) {
            out.push_str(&format!(
                "  orderer{}: AtomicBroadcast {} (mutual TLS)  replicas {}  config {}\n",
                config.id,
                node.client_addr,
                node.replica_addr,
                config_path(&self.dir, config.id as usize).display()
            ));
        }
        out.push_str(&format!(
            "  client identity ({MSP_ID}, Fabric MSP layout): {}\n  CA: {}\n",
            client_dir(&self.dir).display(),
            self.dir.join("ca").display()
        ));
        out.push_str(&format!(
            "  channel participation API (HTTPS, admin identity {}):\n",
            admin_dir(&self.dir).display()
        ));
        for (node, config) in self.nodes.iter().zip(&self.configs) {
            out.push_str(&format!("    orderer{}: {}\n", config.id, node.admin_addr));
        }
        out.push_str(&format!("  list channels: {}\n", self.admin_command(0)));
        out.push_str("  operations (plain HTTP):\n");
        for (node, config) in self.nodes.iter().zip(&self.configs) {
            if let Some(addr) = node.operations_addr {
                out.push_str(&format!(
                    "    orderer{}: http://{addr}/healthz\n",
                    config.id
                ));
            }
        }
        out.push_str(&format!(
            "  notary \"{NOTARY_NAME}\" (gRPC synod.notary.Notary, mutual TLS):\n"
        ));
        for (node, config) in self.nodes.iter().zip(&self.configs) {
            if let Some(addr) = node.notary_addr {
                out.push_str(&format!("    orderer{}: {addr}\n", config.id));
            }
        }
        out
    }

    /// The `orderer channel list` command line for node `id`'s participation API, with
    /// the admin identity's TLS files.
    pub fn admin_command(&self, id: usize) -> String {
        let tls = admin_dir(&self.dir).join("tls");
        format!(
            "orderer channel list --endpoint {} --ca-file {} --client-cert {} --client-key {}",
            self.nodes[id].admin_addr,
            tls.join("ca.crt").display(),
            tls.join("server.crt").display(),
            tls.join("server.key").display()
        )
    }
}
