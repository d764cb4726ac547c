//! The `orderer` binary.

use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};

use std::path::PathBuf;

use orderer::node::server::{NodeConfig, NodeError, start_node};
use orderer::sim::{SimConfig, Summary, run_seeds};

#[derive(Parser)]
#[command(name = "orderer", version, about = "Synod orderer node")]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

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
                "orderer{} serving AtomicBroadcast on {} and replicas on {}",
                config.id, node.client_addr, node.replica_addr
            );
            wait_for_ctrl_c().await;
            node.stop().await;
            Ok(())
        }),
        Commands::Simulate {
            seeds,
            first_seed,
            replicas,
            steps,
            threads,
            trace,
        } => {
            let mut cfg = SimConfig::new(replicas, steps);
            cfg.trace = trace;
            simulate(&cfg, seeds, first_seed, threads)
        }
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
            "seed {} FAILED: {} | replay: orderer simulate --seeds 1 --first-seed {} --replicas {} --steps {}",
            failure.seed,
            failure.violations.join("; "),
            failure.seed,
            replicas,
            steps
        );
    }
    let bound_us = Summary::stall_bound_us(cfg);
    let stall_ok = summary.max_stall_us <= bound_us;
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
