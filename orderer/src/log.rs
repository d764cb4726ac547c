//! The node's log: one line per event on stderr. Tests capture lines through
//! [`capture`] instead of scraping the process's stderr, and refusals go through a
//! [`Throttle`] so that a flood of bad requests cannot fill the disk.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Writes one line to the node's log: `log_line!("format", args...)`.
#[macro_export]
macro_rules! log_line {
    ($($arg:tt)*) => {
        $crate::log::write(&format!($($arg)*))
    };
}

type Buffer = Arc<Mutex<Vec<String>>>;

/// Buffers of the live captures. Empty outside tests, so writing a line costs one
/// uncontended lock beyond the write to stderr.
static CAPTURES: Mutex<Vec<Buffer>> = Mutex::new(Vec::new());

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves nothing half-written worth refusing.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes `line` to stderr and to every live capture.
pub fn write(line: &str) {
    eprintln!("{line}");
    for buffer in lock(&CAPTURES).iter() {
        lock(buffer).push(line.to_string());
    }
}

/// Lines written while it lives (by every node of the process).
pub struct Capture {
    buffer: Buffer,
}

/// Starts capturing the log.
pub fn capture() -> Capture {
    let buffer = Buffer::default();
    lock(&CAPTURES).push(buffer.clone());
    Capture { buffer }
}

impl Capture {
    /// Every line captured so far.
    pub fn lines(&self) -> Vec<String> {
        lock(&self.buffer).clone()
    }

    /// Lines captured after the first `skip`, holding every one of `parts`.
    pub fn find(&self, skip: usize, parts: &[&str]) -> Vec<String> {
        lock(&self.buffer)
            .iter()
            .skip(skip)
            .filter(|line| parts.iter().all(|part| line.contains(part)))
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        lock(&self.buffer).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        lock(&CAPTURES).retain(|buffer| !Arc::ptr_eq(buffer, &self.buffer));
    }
}

/// How often one reason may be logged.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Distinct reasons tracked at once; reasons beyond it share one budget, so that
/// requests varying their details cannot grow the table or the log without bound.
const MAX_REASONS: usize = 256;
const OTHER_REASONS: &str = "(other reasons)";

struct Seen {
    last: Instant,
    suppressed: u64,
}

/// Lets through at most one line per reason per interval, and says how many were
/// suppressed since the last one.
pub struct Throttle {
    interval: Duration,
    reasons: Mutex<HashMap<String, Seen>>,
}

impl Default for Throttle {
    fn default() -> Throttle {
        Throttle::new(REFUSAL_LOG_INTERVAL)
    }
}

impl Throttle {
    pub fn new(interval: Duration) -> Throttle {
        Throttle {
            interval,
            reasons: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(suppressed)` if a line for `reason` may be written now, with the number of
    /// lines for it suppressed since the last one; `None` if this one is suppressed.
    pub fn admit(&self, reason: &str, now: Instant) -> Option<u64> {
        let mut reasons = lock(&self.reasons);
        if !reasons.contains_key(reason) && reasons.len() >= MAX_REASONS {
            let interval = self.interval;
            reasons.retain(|_, seen| now.duration_since(seen.last) < interval);
        }
        let key = if reasons.contains_key(reason) || reasons.len() < MAX_REASONS {
            reason
        } else {
            OTHER_REASONS
        };
        match reasons.get_mut(key) {
            Some(seen) if now.duration_since(seen.last) < self.interval => {
                seen.suppressed += 1;
                None
            }
            Some(seen) => {
                seen.last = now;
                Some(std::mem::take(&mut seen.suppressed))
            }
            None => {
                reasons.insert(
                    key.to_string(),
                    Seen {
                        last: now,
                        suppressed: 0,
                    },
                );
                Some(0)
            }
        }
    }

    /// Logs `{site}: refused {peer}: {reason}` unless the same site and reason were
    /// logged within the interval.
    pub fn refusal(&self, site: &str, peer: impl std::fmt::Display, reason: &str) {
        let Some(suppressed) = self.admit(&format!("{site}: {reason}"), Instant::now()) else {
            return;
        };
        if suppressed == 0 {
            write(&format!("{site}: refused {peer}: {reason}"));
        } else {
            write(&format!(
                "{site}: refused {peer}: {reason} ({suppressed} more refused for this reason \
                 since the last line)"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_reason_per_interval_with_the_count_suppressed() {
        let throttle = Throttle::new(Duration::from_secs(1));
        let start = Instant::now();
        assert_eq!(throttle.admit("expired", start), Some(0));
        assert_eq!(throttle.admit("revoked", start), Some(0));
        for _ in 0..5 {
            assert_eq!(
                throttle.admit("expired", start + Duration::from_millis(10)),
                None
            );
        }
        assert_eq!(
            throttle.admit("expired", start + Duration::from_secs(1)),
            Some(5)
        );
        assert_eq!(
            throttle.admit("revoked", start + Duration::from_secs(1)),
            Some(0)
        );
    }

    #[test]
    fn varying_reasons_share_one_budget_beyond_the_table() {
        let throttle = Throttle::new(Duration::from_secs(1));
        let start = Instant::now();
        let admitted = (0..10 * MAX_REASONS)
            .filter(|i| throttle.admit(&format!("reason {i}"), start).is_some())
            .count();
        assert_eq!(admitted, MAX_REASONS + 1);
        assert!(lock(&throttle.reasons).len() <= MAX_REASONS + 1);
        // Once they are stale, the table makes room again.
        let later = start + Duration::from_secs(2);
        assert_eq!(throttle.admit("fresh", later), Some(0));
        assert!(lock(&throttle.reasons).len() <= MAX_REASONS);
    }

    #[test]
    fn captures_see_the_lines_written_while_they_live() {
        let capture = capture();
        let before = capture.len();
        crate::log_line!("log test {}", 42);
        Throttle::default().refusal("log test site", "127.0.0.1:1", "why");
        assert_eq!(capture.find(before, &["log test 42"]).len(), 1);
        assert_eq!(
            capture
                .find(before, &["log test site: refused 127.0.0.1:1: why"])
                .len(),
            1
        );
        let buffers = lock(&CAPTURES).len();
        drop(capture);
        assert_eq!(
            lock(&CAPTURES).len(),
            buffers - 1,
            "a dropped capture stops"
        );
    }
}
