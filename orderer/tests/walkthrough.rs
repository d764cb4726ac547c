//! Runs the README's "Set up a network" walkthrough as written: its `sh` blocks, with
//! the directory and ports of its first block overridden, the `ca` and `orderer`
//! binaries of this build on `PATH`. Then checks that the channel it creates exists on
//! all three nodes, and that its last block stops them. Whatever happens, the nodes it
//! started are killed at the end.
//!
//! Cargo gives the `orderer` crate's tests only the `orderer` binary's path; `ca` is
//! another crate's binary, which a workspace build (`cargo test --workspace`) puts in
//! the same directory.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use orderer::admin_client::{AdminClient, AdminTls};
use orderer::node::participation::ChannelList;

const README: &str = include_str!("../../README.md");
const HEADING: &str = "## Set up a network";
const CHANNEL: &str = "mychannel";
/// The walkthrough starts three nodes and creates a channel; seconds on loopback.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

/// The `sh` blocks of the walkthrough section, in order.
fn walkthrough_blocks(readme: &str) -> Vec<String> {
    let section = readme
        .split_once(HEADING)
        .map(|(_, rest)| rest)
        .expect("README has a \"Set up a network\" section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in section.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(Vec::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap().join("\n")),
            (Some(lines), _) => lines.push(line),
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "an unterminated sh block");
    blocks
}

fn binaries() -> PathBuf {
    let orderer = Path::new(env!("CARGO_BIN_EXE_orderer"));
    let dir = orderer.parent().unwrap().to_path_buf();
    assert!(
        dir.join("ca").is_file(),
        "no `ca` binary next to {}: build the workspace (cargo test --workspace builds it)",
        orderer.display()
    );
    dir
}

fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// Kills the nodes the walkthrough started (their pids are in `NET/orderer*/pid`).
struct Nodes {
    net: PathBuf,
}

impl Nodes {
    fn pids(&self) -> Vec<String> {
        (0..3)
            .filter_map(|i| std::fs::read_to_string(self.net.join(format!("orderer{i}/pid"))).ok())
            .map(|pid| pid.trim().to_string())
            .filter(|pid| !pid.is_empty() && pid.chars().all(|c| c.is_ascii_digit()))
            .collect()
    }

    fn running(&self) -> Vec<String> {
        self.pids().into_iter().filter(|pid| alive(pid)).collect()
    }
}

/// Whether process `pid` runs: it exists and, where `/proc` says, is not a zombie
/// waiting for a parent (the nodes outlive the shell that started them).
fn alive(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) if Path::new("/proc/self").exists() => false,
        Err(_) => Command::new("kill")
            .args(["-0", pid])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for pid in self.running() {
            let _ = Command::new("kill").args(["-9", &pid]).status();
        }
    }
}

/// Runs `script` with bash (`set -euo pipefail`) in `env`; its stdout, or a panic with
/// its output.
fn bash(script: &str, env: &[(String, String)], what: &str) -> String {
    let child = Command::new("bash")
        .args(["-c", &format!("set -euo pipefail\n{script}")])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash runs");
    let pid = child.id().to_string();
    // Read to the end on another thread, so that a chatty script cannot block on a
    // full pipe while this one waits.
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    let output = match finished.recv_timeout(SCRIPT_TIMEOUT) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid]).status();
            panic!("{what} did not finish within {SCRIPT_TIMEOUT:?}");
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn node_logs(net: &Path) -> String {
    (0..3)
        .map(|i| {
            let log = std::fs::read_to_string(net.join(format!("orderer{i}/node.log")));
            format!("--- orderer{i}\n{}", log.unwrap_or_default())
        })
        .collect()
}

#[test]
fn the_readme_walkthrough_sets_up_a_network_with_a_channel() {
    let blocks = walkthrough_blocks(README);
    assert!(blocks.len() >= 4, "walkthrough blocks: {blocks:#?}");
    let (stop, setup) = blocks.split_last().unwrap();
    assert!(
        stop.contains("kill"),
        "the last block stops the nodes: {stop}"
    );
    assert!(
        setup[0].contains("NET=${NET:-"),
        "the first block sets the variables"
    );

    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("net");
    let nodes = Nodes { net: net.clone() };
    let ports = free_ports(9);
    let list = |range: std::ops::Range<usize>| {
        ports[range]
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let path = format!(
        "{}:{}",
        binaries().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env = vec![
        ("NET".to_string(), net.display().to_string()),
        ("CLIENT_PORTS".to_string(), list(0..3)),
        ("REPLICA_PORTS".to_string(), list(3..6)),
        ("ADMIN_PORTS".to_string(), list(6..9)),
        ("PATH".to_string(), path),
    ];

    let output = bash(&setup.join("\n"), &env, "the walkthrough");
    assert!(output.contains("Status: 201"), "{output}");

    // Every node has the channel, asked independently of the walkthrough's own check.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let read = |p: &str| std::fs::read_to_string(net.join("admin/tls").join(p)).unwrap();
    let tls = AdminTls {
        ca_pem: read("ca.crt"),
        identity: Some((read("server.crt"), read("server.key"))),
    };
    for port in &ports[6..9] {
        let client = AdminClient::new(&format!("127.0.0.1:{port}"), None, &tls).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answer = runtime.block_on(client.list()).unwrap();
            let channels: ChannelList = answer.json().unwrap();
            if channels.channels.iter().any(|c| c.name == CHANNEL) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "port {port} lists {channels:?}\n{}",
                node_logs(&net)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // The last block, with the first's variables, stops them.
    bash(&format!("{}\n{stop}", setup[0]), &env, "stopping the nodes");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nodes.running().is_empty() {
        assert!(Instant::now() < deadline, "nodes still running after kill");
        std::thread::sleep(Duration::from_millis(50));
    }
}
