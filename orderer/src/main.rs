//! The `orderer` binary.

use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};

use orderer::sim::{SimConfig, Summary, run_seeds};

#[derive(Parser)]
#[command(name = "orderer", version, about = "Synod orderer node")]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
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
