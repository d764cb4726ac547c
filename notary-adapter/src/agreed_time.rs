//! The log's agreed time: what time windows are checked against.
//!
//! Each batch carries its proposer's wall clock. Proposers' clocks disagree, so batch
//! times are not monotonic along the log; the agreed time is the largest batch time seen
//! so far, which every replica computes alike from the log alone. It is persisted with
//! the notary's state, so a restarted or newly transferred replica continues from it
//! rather than from zero.

/// The largest batch time applied so far, in milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AgreedTime {
    ms: u64,
}

impl AgreedTime {
    /// Continues from a persisted agreed time.
    pub fn from_ms(ms: u64) -> AgreedTime {
        AgreedTime { ms }
    }

    pub fn ms(&self) -> u64 {
        self.ms
    }

    /// The agreed time once a batch stamped `batch_time_ms` is applied:
    /// `max(previous agreed time, batch time)`.
    pub fn advance(self, batch_time_ms: u64) -> AgreedTime {
        AgreedTime {
            ms: self.ms.max(batch_time_ms),
        }
    }

    /// The agreed time on the signed scale of time windows; times past `i64::MAX` ms (some
    /// 292 million years) saturate.
    pub fn as_window_ms(&self) -> i64 {
        i64::try_from(self.ms).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreed_time_never_goes_back() {
        let mut time = AgreedTime::default();
        let mut seen = Vec::new();
        for batch_ms in [100, 50, 120, 119, 120, 300, 0] {
            time = time.advance(batch_ms);
            seen.push(time.ms());
        }
        assert_eq!(seen, [100, 100, 120, 120, 120, 300, 300]);
        assert_eq!(AgreedTime::from_ms(u64::MAX).as_window_ms(), i64::MAX);
        assert_eq!(AgreedTime::from_ms(7).as_window_ms(), 7);
    }
}
