//! What the client-facing services share with the consensus loop: the channels and
//! their heights (Deliver waits on them), the Broadcast calls waiting for their
//! envelope to be ordered, and whether a majority of replicas is reachable.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use channel::{BatchConfig, ChannelPolicies};
use tokio::sync::{oneshot, watch};

/// What became of an envelope a Broadcast call is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Decided and applied here; it is in the block being filled (or cut).
    Ordered,
    /// The ordered log already held an envelope with this transaction id.
    Duplicate,
    /// This replica gave up on it (its slot passed in a snapshot); the client retries.
    Abandoned,
}

/// A channel as the services see it.
#[derive(Clone, Debug)]
pub struct ChannelView {
    pub batch: BatchConfig,
    /// Who may read, write and administer it; shared, so a check costs no copy.
    pub policies: Arc<ChannelPolicies>,
    /// Number of blocks; changes once they are durable.
    pub height: watch::Receiver<u64>,
}

struct Channel {
    batch: BatchConfig,
    policies: Arc<ChannelPolicies>,
    height: watch::Sender<u64>,
}

type WaiterKey = (String, String);

pub struct Directory {
    channels: RwLock<BTreeMap<String, Channel>>,
    /// Bumped whenever a channel is added or removed, for callers waiting on that.
    generation: watch::Sender<u64>,
    waiters: Mutex<HashMap<WaiterKey, oneshot::Sender<Outcome>>>,
    majority_reachable: AtomicBool,
    /// Bound on concurrent Broadcast waits, so clients cannot grow memory without limit.
    max_waiters: usize,
}

impl Directory {
    pub fn new(max_waiters: usize) -> Directory {
        Directory {
            channels: RwLock::new(BTreeMap::new()),
            generation: watch::channel(0).0,
            waiters: Mutex::new(HashMap::new()),
            majority_reachable: AtomicBool::new(true),
            max_waiters,
        }
    }

    pub fn channel(&self, name: &str) -> Option<ChannelView> {
        let channels = self.channels.read().expect("directory lock");
        channels.get(name).map(|c| ChannelView {
            batch: c.batch,
            policies: c.policies.clone(),
            height: c.height.subscribe(),
        })
    }

    pub fn channel_names(&self) -> Vec<(String, u64)> {
        let channels = self.channels.read().expect("directory lock");
        channels
            .iter()
            .map(|(name, c)| (name.clone(), *c.height.borrow()))
            .collect()
    }

    /// Adds a channel or publishes its new height (a known channel keeps its settings:
    /// they change only with a new configuration, which Synod does not order yet).
    pub fn publish(
        &self,
        name: &str,
        batch: BatchConfig,
        policies: &Arc<ChannelPolicies>,
        height: u64,
    ) {
        let mut channels = self.channels.write().expect("directory lock");
        match channels.get(name) {
            Some(channel) => {
                channel.height.send_replace(height);
            }
            None => {
                let (sender, _) = watch::channel(height);
                channels.insert(
                    name.to_string(),
                    Channel {
                        batch,
                        policies: policies.clone(),
                        height: sender,
                    },
                );
                self.generation.send_modify(|g| *g += 1);
            }
        }
    }

    /// Drops a channel; whoever waits on its height sees the channel closed.
    pub fn remove(&self, name: &str) {
        let mut channels = self.channels.write().expect("directory lock");
        if channels.remove(name).is_some() {
            self.generation.send_modify(|g| *g += 1);
        }
    }

    /// Changes whenever a channel is added or removed.
    pub fn subscribe_channel_set(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Registers interest in `tx_id` on `channel`; `None` if another call already
    /// waits for the same transaction or too many calls wait.
    pub fn wait_for(&self, channel: &str, tx_id: &str) -> Option<oneshot::Receiver<Outcome>> {
        let mut waiters = self.waiters.lock().expect("waiters lock");
        let key = (channel.to_string(), tx_id.to_string());
        if waiters.len() >= self.max_waiters || waiters.contains_key(&key) {
            return None;
        }
        let (sender, receiver) = oneshot::channel();
        waiters.insert(key, sender);
        Some(receiver)
    }

    /// Forgets a wait that ended without an outcome (timeout, client gone).
    pub fn forget(&self, channel: &str, tx_id: &str) {
        let mut waiters = self.waiters.lock().expect("waiters lock");
        waiters.remove(&(channel.to_string(), tx_id.to_string()));
    }

    pub fn resolve(&self, channel: &str, tx_id: &str, outcome: Outcome) {
        let waiter = {
            let mut waiters = self.waiters.lock().expect("waiters lock");
            waiters.remove(&(channel.to_string(), tx_id.to_string()))
        };
        if let Some(waiter) = waiter {
            // The caller may have gone; nothing to do then.
            let _ = waiter.send(outcome);
        }
    }

    pub fn set_majority_reachable(&self, reachable: bool) {
        self.majority_reachable.store(reachable, Ordering::Relaxed);
    }

    pub fn majority_reachable(&self) -> bool {
        self.majority_reachable.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_are_unique_bounded_and_resolved_once() {
        let directory = Directory::new(2);
        let first = directory.wait_for("demo", "tx1").unwrap();
        assert!(
            directory.wait_for("demo", "tx1").is_none(),
            "second wait on one tx"
        );
        let _second = directory.wait_for("demo", "tx2").unwrap();
        assert!(
            directory.wait_for("demo", "tx3").is_none(),
            "over the bound"
        );
        directory.resolve("demo", "tx1", Outcome::Ordered);
        assert_eq!(first.blocking_recv(), Ok(Outcome::Ordered));
        assert!(directory.wait_for("demo", "tx3").is_some());
    }

    #[test]
    fn heights_are_published_to_subscribers() {
        let directory = Directory::new(1);
        let policies = Arc::new(ChannelPolicies::for_msp("Org1MSP"));
        directory.publish("demo", BatchConfig::default(), &policies, 1);
        let view = directory.channel("demo").unwrap();
        directory.publish("demo", BatchConfig::default(), &policies, 5);
        assert_eq!(*view.height.borrow(), 5);
        assert_eq!(*view.policies, ChannelPolicies::for_msp("Org1MSP"));
        assert_eq!(directory.channel_names(), vec![("demo".to_string(), 5)]);
        assert!(directory.channel("other").is_none());
    }

    #[test]
    fn adding_and_removing_channels_is_announced() {
        let directory = Directory::new(1);
        let policies = Arc::new(ChannelPolicies::default());
        let mut changes = directory.subscribe_channel_set();
        directory.publish("demo", BatchConfig::default(), &policies, 1);
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        let view = directory.channel("demo").unwrap();
        directory.publish("demo", BatchConfig::default(), &policies, 2);
        assert!(
            !changes.has_changed().unwrap(),
            "a new height is no new channel"
        );
        directory.remove("demo");
        assert!(changes.has_changed().unwrap());
        assert!(directory.channel("demo").is_none());
        assert!(
            view.height.has_changed().is_err(),
            "waiters on a removed channel are released"
        );
    }
}
