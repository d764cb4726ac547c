//! Deterministic simulation of a lanes cluster: every seed is one replayable run of
//! n replicas through drops, duplicates, reordering, partitions, crashes that lose
//! unsynced writes and restarts, followed by a fault-free phase in which up to f
//! replicas crash under load and liveness and the crash stall are measured.

pub mod checker;
pub mod rng;
mod world;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::core::Config;

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub core: Config,
    /// Events processed in the fault phase.
    pub steps: u64,
    pub min_delay_us: u64,
    pub max_delay_us: u64,
    pub min_sync_us: u64,
    pub max_sync_us: u64,
    /// Mean gap between client commands.
    pub client_interval_us: u64,
    /// Fault-free time before the stall measurement starts.
    pub settle_us: u64,
    /// Length of the stall measurement window (crashes happen inside it).
    pub measure_us: u64,
    /// Time after the window in which every command submitted in it must be applied.
    pub drain_us: u64,
    /// Print faults, stalls and every replica's state as the run goes (for replaying
    /// one seed).
    pub trace: bool,
    /// Some restarts lose the replica's whole storage (it rejoins behind a vote fence).
    /// Safety is checked as always; the crash-stall bound is not, because slots below
    /// a fresh fence need the votes of every other replica until they are decided.
    pub blank_restarts: bool,
}

impl SimConfig {
    /// A LAN-like cluster: one-way delays up to 2 ms, fsync up to 0.3 ms, 10 ms ticks,
    /// suspicion after 100 ms. Small logs and windows, so that compaction, snapshots
    /// and revocation extension happen in short runs.
    pub fn new(replicas: usize, steps: u64) -> SimConfig {
        let core = Config {
            replicas,
            tick_us: 10_000,
            suspect_after_us: 100_000,
            revoke_backoff_us: 50_000,
            stuck_after_us: 300_000,
            retransmit_us: 30_000,
            max_inflight_proposals: 4,
            max_batch_commands: 64,
            max_batch_bytes: 16 << 10,
            max_command_bytes: 1 << 10,
            max_pending_commands: 10_000,
            max_pending_bytes: 8 << 20,
            revoke_lookahead_slots: 60,
            max_revoke_slots: 120,
            fetch_window_slots: 64,
            max_log_slots: 200,
            compact_step_slots: 50,
        };
        SimConfig {
            core,
            steps,
            min_delay_us: 100,
            max_delay_us: 2_000,
            min_sync_us: 50,
            max_sync_us: 300,
            client_interval_us: 3_000,
            settle_us: 500_000,
            measure_us: 1_000_000,
            drain_us: 1_000_000,
            trace: false,
            blank_restarts: false,
        }
    }
}

/// The outcome of one seed.
#[derive(Clone, Debug)]
pub struct SeedReport {
    pub seed: u64,
    pub violations: Vec<String>,
    pub max_stall_us: u64,
    pub max_latency_us: u64,
    pub commands_applied: u64,
}

/// Runs one seed; a panic inside the core (a failed assertion) is a violation.
pub fn run_seed(cfg: &SimConfig, seed: u64) -> SeedReport {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let mut world = world::World::new(cfg.clone(), seed);
        world.run();
        let mut violations = world.checker.violations.clone();
        let bound_us = Summary::stall_bound_us(cfg);
        if world.max_stall_us > bound_us && !cfg.blank_restarts {
            violations.push(format!(
                "crash stall {:.1} ms exceeds suspect_after + 2 x max one-way delay + 1 tick = {:.1} ms",
                world.max_stall_us as f64 / 1000.0,
                bound_us as f64 / 1000.0
            ));
        }
        let malformed = world.malformed_messages();
        if malformed > 0 {
            violations.push(format!(
                "{malformed} malformed messages between correct replicas"
            ));
        }
        SeedReport {
            seed,
            violations,
            max_stall_us: world.max_stall_us,
            max_latency_us: world.max_latency_us,
            commands_applied: world.checker.commands_applied,
        }
    }));
    outcome.unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into());
        SeedReport {
            seed,
            violations: vec![format!("assertion failed: {why}")],
            max_stall_us: 0,
            max_latency_us: 0,
            commands_applied: 0,
        }
    })
}

/// Totals over many seeds.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub seeds: u64,
    pub failures: Vec<SeedReport>,
    pub violations: u64,
    pub max_stall_us: u64,
    pub max_latency_us: u64,
    pub commands_applied: u64,
}

/// Runs seeds `first..first + count` on `threads` threads.
pub fn run_seeds(cfg: &SimConfig, first: u64, count: u64, threads: usize) -> Summary {
    let next = AtomicU64::new(0);
    let reports = std::sync::Mutex::new(Summary::default());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= count {
                        break;
                    }
                    let report = run_seed(cfg, first.wrapping_add(index));
                    let mut summary = reports.lock().expect("no thread panics holding it");
                    summary.seeds += 1;
                    summary.max_stall_us = summary.max_stall_us.max(report.max_stall_us);
                    summary.max_latency_us = summary.max_latency_us.max(report.max_latency_us);
                    summary.commands_applied += report.commands_applied;
                    summary.violations += report.violations.len() as u64;
                    if !report.violations.is_empty() {
                        summary.failures.push(report);
                    }
                }
            });
        }
    });
    let mut summary = reports.into_inner().expect("threads joined");
    summary.failures.sort_by_key(|r| r.seed);
    summary
}

impl Summary {
    /// The closing JSON line of `orderer simulate`.
    pub fn json_line(&self, cfg: &SimConfig) -> String {
        serde_json::json!({
            "seeds": self.seeds,
            "violations": self.violations,
            "max_crash_stall_ms": self.max_stall_us as f64 / 1000.0,
            "suspect_after_ms": cfg.core.suspect_after_us as f64 / 1000.0,
            "max_one_way_delay_ms": cfg.max_delay_us as f64 / 1000.0,
            "tick_ms": cfg.core.tick_us as f64 / 1000.0,
            "applied": self.commands_applied,
        })
        .to_string()
    }

    /// The bound the crash stall must respect: suspicion, one round trip, one tick.
    pub fn stall_bound_us(cfg: &SimConfig) -> u64 {
        cfg.core.suspect_after_us + 2 * cfg.max_delay_us + cfg.core.tick_us
    }
}
