//! Fabric's `BatchSize` and `BatchTimeout`, with Fabric's defaults.

/// How a channel cuts blocks (Fabric's `Orderer.BatchSize` and `Orderer.BatchTimeout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchConfig {
    /// A block holds at most this many envelopes.
    pub max_message_count: u32,
    /// An envelope larger than this is refused at Broadcast.
    pub absolute_max_bytes: u32,
    /// A block is cut before it would exceed this; a larger envelope gets a block of
    /// its own.
    pub preferred_max_bytes: u32,
    /// A pending batch is cut this long after its first envelope (via Time-To-Cut).
    pub batch_timeout_ms: u64,
}

impl Default for BatchConfig {
    /// Fabric's sample configuration: 500 messages, 10 MB, 2 MB, 2 s.
    fn default() -> Self {
        BatchConfig {
            max_message_count: 500,
            absolute_max_bytes: 10 * 1024 * 1024,
            preferred_max_bytes: 2 * 1024 * 1024,
            batch_timeout_ms: 2_000,
        }
    }
}

impl BatchConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_message_count == 0 {
            return Err("max_message_count must be at least 1".into());
        }
        if self.absolute_max_bytes == 0 {
            return Err("absolute_max_bytes must be positive".into());
        }
        if self.preferred_max_bytes == 0 || self.preferred_max_bytes > self.absolute_max_bytes {
            return Err(format!(
                "preferred_max_bytes ({}) must be positive and at most absolute_max_bytes ({})",
                self.preferred_max_bytes, self.absolute_max_bytes
            ));
        }
        if self.batch_timeout_ms == 0 {
            return Err("batch_timeout_ms must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_fabrics_and_valid() {
        let config = BatchConfig::default();
        assert_eq!(config.max_message_count, 500);
        assert_eq!(config.preferred_max_bytes, 2 << 20);
        assert!(config.validate().is_ok());
        let bad = BatchConfig {
            preferred_max_bytes: config.absolute_max_bytes + 1,
            ..config
        };
        assert!(bad.validate().unwrap_err().contains("preferred_max_bytes"));
    }
}
