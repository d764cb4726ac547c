//! Tunables of the consensus core. Every queue, batch and range has a limit.

use super::types::MAX_REPLICAS;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// Replicas in the configuration (n = 2f + 1 tolerates f crashes).
    pub replicas: usize,
    /// Period of housekeeping: heartbeats, retransmissions, fetches, compaction.
    pub tick_us: u64,
    /// Silence after which an owner whose slots block execution is revoked.
    pub suspect_after_us: u64,
    /// Extra wait per place in the revoker order, so that one revoker usually runs alone.
    pub revoke_backoff_us: u64,
    /// A blocking slot whose owner is alive but which stays undecided this long (its
    /// proposer lost its state, say) is recovered by a fresh Paxos round.
    pub stuck_after_us: u64,
    /// An unanswered proposal or revocation step is sent again after this long.
    pub retransmit_us: u64,
    /// Own proposals in flight at once; further commands wait and batch up.
    pub max_inflight_proposals: usize,
    pub max_batch_commands: usize,
    pub max_batch_bytes: usize,
    pub max_command_bytes: usize,
    /// Commands waiting for a slot; proposals beyond it are refused (backpressure).
    pub max_pending_commands: usize,
    pub max_pending_bytes: usize,
    /// How far past the live replicas' frontier a revocation reaches, in slots.
    pub revoke_lookahead_slots: u64,
    /// Widest slot range one revocation covers.
    pub max_revoke_slots: u64,
    /// Widest slot range one fetch answer covers.
    pub fetch_window_slots: u64,
    /// Decided slots kept behind the local apply point for lagging peers; a peer
    /// further behind catches up by snapshot.
    pub max_log_slots: u64,
    /// Compaction runs once it can drop at least this many slots.
    pub compact_step_slots: u64,
}

impl Config {
    /// Defaults for a LAN cluster of `replicas` nodes.
    pub fn lan(replicas: usize) -> Config {
        Config {
            replicas,
            tick_us: 10_000,
            suspect_after_us: 300_000,
            revoke_backoff_us: 150_000,
            stuck_after_us: 2_000_000,
            retransmit_us: 100_000,
            max_inflight_proposals: 8,
            max_batch_commands: 4096,
            max_batch_bytes: 2 << 20,
            max_command_bytes: 1 << 20,
            max_pending_commands: 100_000,
            max_pending_bytes: 256 << 20,
            revoke_lookahead_slots: 3_000,
            max_revoke_slots: 6_000,
            fetch_window_slots: 1_024,
            max_log_slots: 100_000,
            compact_step_slots: 1_000,
        }
    }

    pub fn majority(&self) -> usize {
        self.replicas / 2 + 1
    }

    /// The largest message the core produces with this configuration; a transport
    /// must accept at least this much. A promise may carry every in-flight batch of the
    /// revoked owner, re-proposals included.
    pub fn max_message_bytes(&self) -> usize {
        (2 * self.max_inflight_proposals + 1) * (self.max_batch_bytes + 64) + 64 * 1024
    }

    pub fn validate(&self) -> Result<(), String> {
        let checks = [
            (
                self.replicas >= 1 && self.replicas <= MAX_REPLICAS,
                format!("replicas must be 1..={MAX_REPLICAS}"),
            ),
            (self.tick_us > 0, "tick_us must be positive".into()),
            (
                self.suspect_after_us >= 2 * self.tick_us,
                "suspect_after_us must be at least two ticks".into(),
            ),
            (
                self.stuck_after_us >= self.suspect_after_us,
                "stuck_after_us must be at least suspect_after_us".into(),
            ),
            (
                self.retransmit_us >= self.tick_us,
                "retransmit_us must be at least one tick".into(),
            ),
            (
                self.max_inflight_proposals >= 1,
                "max_inflight_proposals must be positive".into(),
            ),
            (
                self.max_batch_commands >= 1,
                "max_batch_commands must be positive".into(),
            ),
            (
                self.max_command_bytes <= self.max_batch_bytes,
                "max_command_bytes must fit in max_batch_bytes".into(),
            ),
            (
                self.revoke_lookahead_slots >= self.replicas as u64
                    && self.max_revoke_slots >= self.revoke_lookahead_slots,
                "need replicas <= revoke_lookahead_slots <= max_revoke_slots".into(),
            ),
            (
                self.fetch_window_slots >= 1,
                "fetch_window_slots must be positive".into(),
            ),
            (
                self.compact_step_slots >= 1 && self.max_log_slots >= self.fetch_window_slots,
                "need compact_step_slots >= 1 and max_log_slots >= fetch_window_slots".into(),
            ),
        ];
        match checks.into_iter().find(|(ok, _)| !ok) {
            Some((_, why)) => Err(why),
            None => Ok(()),
        }
    }
}
