//! The `orderer` binary.

use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};

use std::path::PathBuf;

use channel::BatchConfig;
use channel::Principal;
use orderer::admin_client::{AdminClient, AdminTls, Answer};
use orderer::channel_create::{self, CreateOptions};
use orderer::node::server::{NodeConfig, NodeError, start_node};
use orderer::sim::{SimConfig, Summary, run_seeds};

#[derive(Parser)]
#[command(name = "orderer", version, about = "Synod orderer node")]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Commands {
    /// Start a complete three-node cluster on this machine and keep it serving.
    ///
    /// Creates (or, if DIR already holds one, restarts) a cluster with its own CA,
    /// certificates, data directories and channel "demo", prints each AtomicBroadcast
    /// endpoint and the client identity to use, and serves until Ctrl-C.
    Dev {
        /// Where the cluster lives (default: a new temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Channels to create (repeatable).
        #[arg(long = "channel", default_value = orderer::dev::DEMO_CHANNEL)]
        channels: Vec<String>,
    },
    /// Run one orderer node from its configuration file (TOML).
    Start {
        #[arg(long)]
        config: PathBuf,
    },
    /// Manage channels through a node's channel participation API (Fabric's
    /// `osnadmin channel`). Joins and removals are ordered: they take effect on every
    /// node of the cluster.
    Channel {
        #[command(subcommand)]
        command: ChannelCommands,
    },
    /// Notarise a transaction with a node's notary service, or verify a saved answer.
    Notary {
        #[command(subcommand)]
        command: orderer::notary_cli::NotaryCommands,
    },
    /// Run the consensus core through the deterministic simulator.
    ///
    /// Each seed is one run of the replicas through drops, duplicates, reordering,
    /// partitions, crashes that lose unsynced writes and restarts, then a fault-free
    /// phase where up to f replicas crash under load. Agreement, validity, integrity
    /// and liveness are checked after every step. Exits 0 only if every seed passes;
    /// a failing seed is printed with the command that replays it.
    Simulate {
        /// How many seeds to run.
        #[arg(long, default_value_t = 1000)]
        seeds: u64,
        /// The first seed; seeds run are first-seed .. first-seed + seeds.
        #[arg(long, default_value_t = 0)]
        first_seed: u64,
        /// Cluster size (3 or 5).
        #[arg(long, default_value_t = 3, value_parser = parse_replicas)]
        replicas: usize,
        /// Events simulated in the fault phase of each seed.
        #[arg(long, default_value_t = 4000)]
        steps: u64,
        /// Worker threads (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
        /// Print faults, stalls and each replica's state while running (use with one seed).
        #[arg(long)]
        trace: bool,
        /// Let some restarts lose the replica's whole storage (it rejoins behind a vote
        /// fence). Safety is checked; the crash-stall bound is reported, not enforced.
        #[arg(long)]
        blank_restarts: bool,
    },
}

/// Where the participation API is and the admin's TLS identity.
#[derive(Args)]
struct AdminArgs {
    /// The node's participation API, HOST:PORT (its `admin_listen`).
    #[arg(long)]
    endpoint: String,
    /// CA certificate the node's TLS certificate chains to (PEM).
    #[arg(long)]
    ca_file: PathBuf,
    /// The admin's TLS certificate (PEM), e.g. `tls/server.crt` of `ca issue --role admin`.
    #[arg(long)]
    client_cert: PathBuf,
    /// The admin's TLS private key (PEM).
    #[arg(long)]
    client_key: PathBuf,
    /// Name the node's certificate must carry (default: the endpoint's host).
    #[arg(long)]
    server_name: Option<String>,
}

#[derive(Subcommand)]
enum ChannelCommands {
    /// List the channels, or describe one.
    List {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        channel: Option<String>,
    },
    /// Build a channel's genesis block from batch settings and policies, and join it.
    Create {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        channel: String,
        /// Most envelopes in a block.
        #[arg(long, default_value_t = BatchConfig::default().max_message_count)]
        max_message_count: u32,
        /// How long a batch waits before it is cut (Go duration: 500ms, 2s, 1m).
        #[arg(long, default_value = "2s")]
        batch_timeout: String,
        /// Largest envelope accepted.
        #[arg(long, default_value_t = BatchConfig::default().absolute_max_bytes)]
        absolute_max_bytes: u32,
        /// Blocks are cut before they would exceed this.
        #[arg(long, default_value_t = BatchConfig::default().preferred_max_bytes)]
        preferred_max_bytes: u32,
        /// Who may broadcast: MSPID:role,... (role: member, admin, client, peer or
        /// orderer) [default: the admin's MSP as client, peer and admin].
        #[arg(long, value_delimiter = ',', value_name = "MSPID:ROLE")]
        writers: Vec<Principal>,
        /// Who may pull blocks (Deliver) [default: any member of the admin's MSP].
        #[arg(long, value_delimiter = ',', value_name = "MSPID:ROLE")]
        readers: Vec<Principal>,
        /// Who may read and remove the channel through this API [default: the admin's
        /// MSP as admin].
        #[arg(long, value_delimiter = ',', value_name = "MSPID:ROLE")]
        admins: Vec<Principal>,
        /// Also write the genesis block to this file (to join it elsewhere).
        #[arg(long)]
        output_block: Option<PathBuf>,
    },
    /// Join a channel with its genesis (config) block, as `osnadmin channel join`.
    Join {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        config_block: PathBuf,
    },
    /// Remove a channel from the cluster, with all its blocks.
    Remove {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        channel: String,
    },
}

fn parse_replicas(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n @ (3 | 5)) => Ok(n),
        _ => Err(format!(
            "{text} replicas: the simulator runs clusters of 3 or 5"
        )),
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Commands::Dev { dir, channels } => serve(|| async move {
            let dir = match dir {
                Some(dir) => dir,
                None => std::env::temp_dir().join(format!("synod-dev-{}", std::process::id())),
            };
            let cluster = orderer::dev::start(&dir, &channels).await?;
            println!("{}", cluster.describe());
            wait_for_ctrl_c().await;
            cluster.stop().await;
            Ok(())
        }),
        Commands::Start { config } => serve(|| async move {
            let config = NodeConfig::load(&config)?;
            let node = start_node(&config, None, None).await?;
            println!(
                "orderer{} serving AtomicBroadcast on {}, replicas on {} and the channel \
                 participation API on {}",
                config.id, node.client_addr, node.replica_addr, node.admin_addr
            );
            wait_for_ctrl_c().await;
            node.stop().await;
            Ok(())
        }),
        Commands::Channel { command } => channel(command),
        Commands::Notary { command } => orderer::notary_cli::run(command),
        Commands::Simulate {
            seeds,
            first_seed,
            replicas,
            steps,
            threads,
            trace,
            blank_restarts,
        } => {
            let mut cfg = SimConfig::new(replicas, steps);
            cfg.trace = trace;
            cfg.blank_restarts = blank_restarts;
            simulate(&cfg, seeds, first_seed, threads)
        }
    }
}

fn admin_client(admin: &AdminArgs) -> Result<AdminClient, String> {
    let tls = AdminTls::load(&admin.ca_file, &admin.client_cert, &admin.client_key)?;
    AdminClient::new(&admin.endpoint, admin.server_name.as_deref(), &tls)
}

async fn run_channel_command(command: ChannelCommands) -> Result<Answer, String> {
    match command {
        ChannelCommands::List { admin, channel } => {
            let client = admin_client(&admin)?;
            match channel {
                Some(name) => client.info(&name).await,
                None => client.list().await,
            }
        }
        ChannelCommands::Create {
            admin,
            channel,
            max_message_count,
            batch_timeout,
            absolute_max_bytes,
            preferred_max_bytes,
            writers,
            readers,
            admins,
            output_block,
        } => {
            let options = CreateOptions {
                channel,
                max_message_count,
                batch_timeout,
                absolute_max_bytes,
                preferred_max_bytes,
                writers,
                readers,
                admins,
            };
            let policies = channel_create::policies(&options, || {
                let cert = std::fs::read(&admin.client_cert)
                    .map_err(|e| format!("cannot read {}: {e}", admin.client_cert.display()))?;
                channel_create::msp_of_certificate(&cert)
            })?;
            let block = channel_create::genesis(&options, &policies)?;
            if let Some(path) = output_block {
                std::fs::write(&path, &block)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            }
            admin_client(&admin)?.join(&block).await
        }
        ChannelCommands::Join {
            admin,
            config_block,
        } => {
            let block = std::fs::read(&config_block)
                .map_err(|e| format!("cannot read {}: {e}", config_block.display()))?;
            admin_client(&admin)?.join(&block).await
        }
        ChannelCommands::Remove { admin, channel } => admin_client(&admin)?.remove(&channel).await,
    }
}

/// Prints the answer as `osnadmin` does (status, then the JSON); fails on anything but
/// a 2xx status, with the server's reason.
fn channel(command: ChannelCommands) -> ExitCode {
    let answer = match orderer::client::block_on(run_channel_command(command)) {
        Ok(answer) => answer,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("Status: {}", answer.status);
    if !answer.body.is_empty() {
        match serde_json::from_slice::<serde_json::Value>(&answer.body) {
            Ok(json) => println!(
                "{}",
                serde_json::to_string_pretty(&json).unwrap_or_else(|_| json.to_string())
            ),
            Err(_) => println!("{}", String::from_utf8_lossy(&answer.body)),
        }
    }
    if answer.is_success() {
        ExitCode::SUCCESS
    } else {
        eprintln!("error: {} {}", answer.status, answer.error_text());
        ExitCode::FAILURE
    }
}

/// Runs a node-serving future on a multi-threaded runtime; errors end the process with a
/// message and a failing exit status.
fn serve<F, Fut>(run: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), NodeError>>,
{
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn wait_for_ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        // No signal handling available: serve until killed.
        std::future::pending::<()>().await;
    }
    println!("stopping");
}

fn simulate(cfg: &SimConfig, seeds: u64, first_seed: u64, threads: Option<usize>) -> ExitCode {
    let replicas = cfg.core.replicas;
    let steps = cfg.steps;
    let threads =
        threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let started = Instant::now();
    let summary = run_seeds(cfg, first_seed, seeds, threads);
    let elapsed = started.elapsed().as_secs_f64();
    for failure in &summary.failures {
        println!(
            "seed {} FAILED: {} | replay: orderer simulate --seeds 1 --first-seed {} --replicas {} --steps {}{}",
            failure.seed,
            failure.violations.join("; "),
            failure.seed,
            replicas,
            steps,
            if cfg.blank_restarts {
                " --blank-restarts"
            } else {
                ""
            }
        );
    }
    let bound_us = Summary::stall_bound_us(cfg);
    let stall_ok = summary.max_stall_us <= bound_us || cfg.blank_restarts;
    eprintln!(
        "{} seeds in {elapsed:.1} s ({:.0} seeds/s on {threads} threads); crash stall {:.1} ms (bound {:.1} ms); \
         fault-free commands applied at their origin within {:.1} ms",
        summary.seeds,
        summary.seeds as f64 / elapsed.max(1e-9),
        summary.max_stall_us as f64 / 1000.0,
        bound_us as f64 / 1000.0,
        summary.max_latency_us as f64 / 1000.0,
    );
    if !stall_ok {
        println!(
            "crash stall {:.1} ms exceeds suspect_after + 2 x max one-way delay + 1 tick = {:.1} ms",
            summary.max_stall_us as f64 / 1000.0,
            bound_us as f64 / 1000.0
        );
    }
    println!("{}", summary.json_line(cfg));
    if summary.failures.is_empty() && stall_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
