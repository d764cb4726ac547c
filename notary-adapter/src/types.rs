//! The values notarisation is about: transaction ids, state references, time windows.

use std::fmt;

use sha2::{Digest, Sha256};

/// Transaction ids and state hashes are SHA-256 digests.
pub const HASH_BYTES: usize = 32;

/// A transaction id (Corda's `SecureHash`): 32 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(pub [u8; HASH_BYTES]);

impl TxId {
    /// `None` unless `bytes` is exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<TxId> {
        bytes.try_into().ok().map(TxId)
    }

    pub fn as_bytes(&self) -> &[u8; HASH_BYTES] {
        &self.0
    }

    /// SHA-256 of the id: what a conflict reports about the consuming transaction, so a
    /// caller learns that a state is gone without learning which transaction took it.
    pub fn hash(&self) -> [u8; HASH_BYTES] {
        Sha256::digest(self.0).into()
    }
}

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TxId({self})")
    }
}

/// One output of an earlier transaction. Ordered by transaction hash, then index, which
/// is the order of the canonical request bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateRef {
    pub tx_hash: [u8; HASH_BYTES],
    pub output_index: u32,
}

impl StateRef {
    pub fn new(tx_hash: [u8; HASH_BYTES], output_index: u32) -> StateRef {
        StateRef {
            tx_hash,
            output_index,
        }
    }
}

impl fmt::Display for StateRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.tx_hash)?;
        write!(f, ":{}", self.output_index)
    }
}

impl fmt::Debug for StateRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StateRef({self})")
    }
}

/// How a request uses a state: consumes it (input) or only reads it (reference).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StateKind {
    Input,
    Reference,
}

impl fmt::Display for StateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StateKind::Input => "input",
            StateKind::Reference => "reference",
        })
    }
}

/// When a transaction may be notarised, in milliseconds since the Unix epoch: `from_ms`
/// inclusive, `until_ms` exclusive, an absent end open (Corda's `TimeWindow`). The
/// default, both ends open, is no constraint at all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TimeWindow {
    pub from_ms: Option<i64>,
    pub until_ms: Option<i64>,
}

impl TimeWindow {
    /// Whether the window admits `time_ms`.
    pub fn contains(&self, time_ms: i64) -> bool {
        self.from_ms.is_none_or(|from| from <= time_ms)
            && self.until_ms.is_none_or(|until| time_ms < until)
    }

    /// A window with both ends whose start is not before its end admits no time at all;
    /// Corda refuses to build one.
    pub fn is_empty(&self) -> bool {
        matches!((self.from_ms, self.until_ms), (Some(from), Some(until)) if from >= until)
    }
}

impl fmt::Display for TimeWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.from_ms {
            Some(from) => write!(f, "[{from} ms, ")?,
            None => f.write_str("(-inf, ")?,
        }
        match self.until_ms {
            Some(until) => write!(f, "{until} ms)"),
            None => f.write_str("+inf)"),
        }
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for byte in bytes {
        write!(f, "{byte:02x}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_window_edges_from_inclusive_until_exclusive() {
        let between = TimeWindow {
            from_ms: Some(100),
            until_ms: Some(200),
        };
        assert!(!between.contains(99));
        assert!(between.contains(100));
        assert!(between.contains(199));
        assert!(!between.contains(200));

        let from_only = TimeWindow {
            from_ms: Some(100),
            until_ms: None,
        };
        assert!(!from_only.contains(99));
        assert!(from_only.contains(100));
        assert!(from_only.contains(i64::MAX));

        let until_only = TimeWindow {
            from_ms: None,
            until_ms: Some(200),
        };
        assert!(until_only.contains(i64::MIN));
        assert!(until_only.contains(199));
        assert!(!until_only.contains(200));

        assert!(TimeWindow::default().contains(0));
        assert!(!TimeWindow::default().is_empty());
        assert!(
            TimeWindow {
                from_ms: Some(5),
                until_ms: Some(5)
            }
            .is_empty()
        );
    }

    #[test]
    fn ids_and_refs_print_as_hex() {
        let id = TxId([0xab; 32]);
        assert_eq!(id.to_string(), "ab".repeat(32));
        assert_eq!(
            StateRef::new([1; 32], 7).to_string(),
            format!("{}:7", "01".repeat(32))
        );
        assert_eq!(TxId::from_slice(&[0; 31]), None);
        assert_ne!(id.hash(), id.0);
    }
}
