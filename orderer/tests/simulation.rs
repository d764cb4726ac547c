//! The deterministic simulator over thousands of seeds: every invariant after every
//! step, the crash-stall bound, and exact replay of a seed.

use orderer::sim::{SimConfig, Summary, run_seed, run_seeds};

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn assert_clean(replicas: usize, seeds: u64, first_seed: u64) {
    assert_clean_with(SimConfig::new(replicas, 4000), seeds, first_seed);
}

fn assert_clean_with(cfg: SimConfig, seeds: u64, first_seed: u64) {
    let replicas = cfg.core.replicas;
    let summary = run_seeds(&cfg, first_seed, seeds, threads());
    let failures: Vec<String> = summary
        .failures
        .iter()
        .map(|f| {
            format!(
                "seed {}: {} (replay: orderer simulate --seeds 1 --first-seed {} --replicas {replicas}{} --trace)",
                f.seed,
                f.violations.join("; "),
                f.seed,
                if cfg.blank_restarts { " --blank-restarts" } else { "" }
            )
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(summary.seeds, seeds);
    assert!(
        cfg.blank_restarts || summary.max_stall_us <= Summary::stall_bound_us(&cfg),
        "crash stall {} us over the bound",
        summary.max_stall_us
    );
    // Load really flowed: a run that applies nothing would pass every safety check.
    assert!(
        summary.commands_applied > seeds * 500,
        "only {} commands applied",
        summary.commands_applied
    );
    eprintln!("{replicas} replicas: {}", summary.json_line(&cfg));
}

/// Restarts that lose the whole storage: the rejoining replica's vote fence must keep
/// agreement, validity and integrity (the stall bound is for crash-restarts).
#[test]
fn three_replicas_with_storage_loss_thousand_seeds() {
    let mut cfg = SimConfig::new(3, 4000);
    cfg.blank_restarts = true;
    assert_clean_with(cfg, 1000, 0xB1A7_0000);
}

#[test]
fn three_replicas_two_thousand_seeds() {
    assert_clean(3, 2000, 0x5EED_0000);
}

#[test]
fn five_replicas_thousand_seeds() {
    assert_clean(5, 1000, 0x5EED_1000);
}

#[test]
fn a_seed_replays_exactly() {
    let cfg = SimConfig::new(3, 4000);
    let first = run_seed(&cfg, 77);
    let second = run_seed(&cfg, 77);
    assert_eq!(first.commands_applied, second.commands_applied);
    assert_eq!(first.max_stall_us, second.max_stall_us);
    assert_eq!(first.max_latency_us, second.max_latency_us);
    let other = run_seed(&cfg, 78);
    assert_ne!(
        (first.commands_applied, first.max_stall_us),
        (other.commands_applied, other.max_stall_us),
        "different seeds should take different paths"
    );
}
