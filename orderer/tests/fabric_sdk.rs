//! Compatibility test against Hyperledger Fabric's own Node SDK (`fabric-common` 2.2):
//! a dev cluster is started with `orderer dev`, and `tests/fabric-sdk/test.js`
//! broadcasts P-256-signed envelopes built and sent by the SDK over mutual TLS, then
//! reads the blocks back with `orderer.AtomicBroadcast/Deliver` and decodes them with
//! the SDK's `BlockDecoder`. Skipped (with a message) when `node` or `npm` is missing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use orderer::dev::{DEMO_CHANNEL, MSP_ID};

const BIN: &str = env!("CARGO_BIN_EXE_orderer");
const NODE_TIMEOUT: Duration = Duration::from_secs(120);
const NPM_TIMEOUT: Duration = Duration::from_secs(300);

/// A child process killed when dropped, so a failing test leaves nothing behind.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn available(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|status| status.success())
        .unwrap_or(false)
}

/// Runs `command` to completion, killing it after `timeout`; returns whether it succeeded.
fn run_bounded(mut command: Command, timeout: Duration) -> bool {
    let mut child = Process(command.spawn().expect("command starts"));
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            return status.success();
        }
        if Instant::now() > deadline {
            panic!("{command:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts `orderer dev --dir dir`; returns the process and the address of orderer0's
/// AtomicBroadcast once the client identity has been printed.
fn start_dev_cluster(dir: &Path) -> (Process, String) {
    let mut child = Command::new(BIN)
        .args(["dev", "--dir", dir.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("orderer binary runs");
    let stdout = child.stdout.take().unwrap();
    let process = Process(child);
    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut address = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines_rx
            .recv_timeout(left)
            .expect("orderer dev prints its client identity within 60 s");
        println!("{line}");
        if let Some(rest) = line.trim().strip_prefix("orderer0: AtomicBroadcast ") {
            address = rest.split_whitespace().next().map(str::to_string);
        }
        if line.contains("client identity") {
            let address = address.expect("orderer0's AtomicBroadcast address was printed");
            return (process, address);
        }
    }
}

#[test]
fn fabric_node_sdk_broadcasts_and_decodes_delivered_blocks() {
    if !available("node") || !available("npm") {
        println!("SKIPPED: node and npm are needed on PATH for the Fabric Node SDK test");
        return;
    }
    let sdk_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fabric-sdk");
    if !sdk_dir.join("node_modules").is_dir() {
        let mut npm = Command::new("npm");
        npm.current_dir(&sdk_dir)
            .args(["ci", "--no-audit", "--no-fund"]);
        assert!(
            run_bounded(npm, NPM_TIMEOUT),
            "npm ci in tests/fabric-sdk failed"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let (cluster, address) = start_dev_cluster(dir.path());
    let client_dir = dir.path().join("client");

    let started = Instant::now();
    let mut node = Command::new("node");
    node.current_dir(&sdk_dir).args([
        "test.js",
        &address,
        client_dir.to_str().unwrap(),
        MSP_ID,
        DEMO_CHANNEL,
    ]);
    let passed = run_bounded(node, NODE_TIMEOUT);
    println!(
        "Fabric Node SDK test ran for {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(cluster);
    assert!(
        passed,
        "the Fabric Node SDK test (tests/fabric-sdk/test.js) failed"
    );
}
