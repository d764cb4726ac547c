//! Fabric's block cutter, deterministic so that every replica applying the same
//! ordered envelopes cuts the same blocks.

use bytes::Bytes;

use crate::batch_config::BatchConfig;

/// Envelopes cut into blocks by one `ordered` call, in block order, and whether
/// envelopes remain pending (the batch timer must run).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cut {
    pub batches: Vec<Vec<Bytes>>,
    pub pending: bool,
}

#[derive(Debug)]
pub struct BlockCutter {
    config: BatchConfig,
    pending: Vec<Bytes>,
    pending_bytes: usize,
}

impl BlockCutter {
    pub fn new(config: BatchConfig) -> BlockCutter {
        BlockCutter {
            config,
            pending: Vec::new(),
            pending_bytes: 0,
        }
    }

    pub fn config(&self) -> &BatchConfig {
        &self.config
    }

    /// Adds one ordered envelope (its marshaled bytes) and returns the blocks it
    /// completes. Size limits use the marshaled size, as Fabric's `proto.Size` does.
    pub fn ordered(&mut self, envelope: Bytes) -> Cut {
        let preferred = self.config.preferred_max_bytes as usize;
        let size = envelope.len();
        let mut batches = Vec::new();
        if size > preferred {
            // Too big to share a block: flush what is pending, then a block of its own.
            if !self.pending.is_empty() {
                batches.push(self.cut());
            }
            batches.push(vec![envelope]);
            return Cut {
                batches,
                pending: false,
            };
        }
        if self.pending_bytes + size > preferred {
            batches.push(self.cut());
        }
        self.pending.push(envelope);
        self.pending_bytes += size;
        if self.pending.len() >= self.config.max_message_count as usize {
            batches.push(self.cut());
        }
        Cut {
            batches,
            pending: !self.pending.is_empty(),
        }
    }

    /// Cuts whatever is pending (the batch timeout fired, or a config message must get
    /// a block of its own).
    pub fn cut(&mut self) -> Vec<Bytes> {
        self.pending_bytes = 0;
        std::mem::take(&mut self.pending)
    }

    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    pub fn pending(&self) -> &[Bytes] {
        &self.pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(size: usize) -> Bytes {
        Bytes::from(vec![1u8; size])
    }

    fn sizes(batches: &[Vec<Bytes>]) -> Vec<Vec<usize>> {
        batches
            .iter()
            .map(|b| b.iter().map(Bytes::len).collect())
            .collect()
    }

    fn cutter(count: u32, preferred: u32) -> BlockCutter {
        BlockCutter::new(BatchConfig {
            max_message_count: count,
            absolute_max_bytes: 10 * preferred,
            preferred_max_bytes: preferred,
            batch_timeout_ms: 1_000,
        })
    }

    #[test]
    fn cuts_at_max_message_count() {
        let mut cutter = cutter(3, 1_000);
        assert_eq!(cutter.ordered(envelope(10)).batches.len(), 0);
        assert!(cutter.ordered(envelope(10)).pending);
        let cut = cutter.ordered(envelope(10));
        assert_eq!(sizes(&cut.batches), vec![vec![10, 10, 10]]);
        assert!(!cut.pending);
        assert_eq!(cutter.pending_count(), 0);
    }

    #[test]
    fn cuts_before_overflowing_preferred_bytes() {
        let mut cutter = cutter(100, 100);
        cutter.ordered(envelope(60));
        let cut = cutter.ordered(envelope(50));
        assert_eq!(sizes(&cut.batches), vec![vec![60]]);
        assert!(cut.pending);
        // Exactly reaching the preferred size does not cut by size.
        let cut = cutter.ordered(envelope(50));
        assert!(cut.batches.is_empty());
        assert_eq!(cutter.cut().len(), 2);
    }

    #[test]
    fn an_oversized_envelope_gets_a_block_of_its_own() {
        let mut cutter = cutter(100, 100);
        cutter.ordered(envelope(30));
        let cut = cutter.ordered(envelope(101));
        assert_eq!(sizes(&cut.batches), vec![vec![30], vec![101]]);
        assert!(!cut.pending);
        // With nothing pending, just its own block.
        let cut = cutter.ordered(envelope(500));
        assert_eq!(sizes(&cut.batches), vec![vec![500]]);
    }

    #[test]
    fn same_input_same_blocks() {
        let run = || {
            let mut cutter = cutter(4, 200);
            let mut all = Vec::new();
            for i in 0..50usize {
                all.extend(cutter.ordered(envelope(1 + (i * 37) % 150)).batches);
            }
            sizes(&all)
        };
        assert_eq!(run(), run());
    }
}
