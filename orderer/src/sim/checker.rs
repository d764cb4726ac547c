//! The invariants the simulator checks after every step: agreement, validity,
//! integrity (no command applied twice), in-order application, and liveness
//! bookkeeping for the fault-free phase.

use std::collections::{BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};

use crate::core::{ReplicaId, Slot, Value};

/// Identifies a simulated client command: the first 8 bytes of its payload.
pub type CommandId = u64;

pub fn command_id(payload: &[u8]) -> Option<CommandId> {
    Some(u64::from_le_bytes(payload.get(..8)?.try_into().ok()?))
}

#[derive(Clone, Copy, Debug)]
struct Submitted {
    origin: ReplicaId,
    at_us: u64,
    /// The origin lost it (crash, or a snapshot passed its slot): not owed an answer.
    orphaned: bool,
    applied_at_origin_us: Option<u64>,
}

#[derive(Default)]
pub struct Checker {
    /// The value first applied at each slot, by any replica.
    chosen: HashMap<Slot, Value>,
    /// The application digest after each slot.
    digest_after: HashMap<Slot, u64>,
    /// Where each command was applied.
    command_slot: HashMap<CommandId, Slot>,
    submitted: HashMap<CommandId, Submitted>,
    /// Per replica, the commands of live clients it has not applied yet, by submission
    /// time: the crash stall counts only while one of them waits.
    outstanding: Vec<BTreeSet<(u64, CommandId)>>,
    pub violations: Vec<String>,
    pub commands_applied: u64,
}

/// What a replica's application has applied; durable with each apply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppState {
    pub applied_upto: Slot,
    pub digest: u64,
}

fn value_digest(value: &Value) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

impl Checker {
    pub fn new(replicas: usize) -> Checker {
        Checker {
            outstanding: vec![BTreeSet::new(); replicas],
            ..Checker::default()
        }
    }

    /// Since when replica `replica` has had a live client's command waiting.
    pub fn pending_since(&self, replica: ReplicaId) -> Option<u64> {
        self.outstanding[replica as usize]
            .first()
            .map(|(at, _)| *at)
    }

    fn settle(&mut self, id: CommandId) {
        if let Some(entry) = self.submitted.get(&id) {
            let key = (entry.at_us, id);
            for set in &mut self.outstanding {
                set.remove(&key);
            }
        }
    }

    pub fn submitted(&mut self, id: CommandId, origin: ReplicaId, at_us: u64) {
        for set in &mut self.outstanding {
            set.insert((at_us, id));
        }
        self.submitted.insert(
            id,
            Submitted {
                origin,
                at_us,
                orphaned: false,
                applied_at_origin_us: None,
            },
        );
    }

    /// The origin refused the command; nobody waits for it.
    pub fn refused(&mut self, id: CommandId) {
        self.settle(id);
        self.submitted.remove(&id);
    }

    /// Every command of `origin` still unanswered is lost to its client.
    pub fn orphan_pending_of(&mut self, origin: ReplicaId) {
        let mut lost = Vec::new();
        for (id, entry) in self.submitted.iter_mut() {
            if entry.origin == origin && entry.applied_at_origin_us.is_none() {
                entry.orphaned = true;
                lost.push(*id);
            }
        }
        for id in lost {
            self.settle(id);
        }
    }

    pub fn orphan(&mut self, id: CommandId) {
        self.settle(id);
        if let Some(entry) = self.submitted.get_mut(&id) {
            entry.orphaned = true;
        }
    }

    fn violation(&mut self, what: String) {
        if self.violations.len() < 16 {
            self.violations.push(what);
        }
    }

    /// Replica `replica` applies `slot`; `app` is its application state, updated here.
    pub fn apply(
        &mut self,
        replica: ReplicaId,
        app: &mut AppState,
        slot: Slot,
        value: &Value,
        now_us: u64,
    ) {
        if slot != app.applied_upto {
            self.violation(format!(
                "replica {replica} applied slot {slot} while at {}",
                app.applied_upto
            ));
        }
        match self.chosen.get(&slot) {
            Some(chosen) if !chosen.same_as(value) => self.violation(format!(
                "agreement: slot {slot} applied as {chosen:?} and as {value:?} (replica {replica})"
            )),
            Some(_) => {}
            None => {
                self.chosen.insert(slot, value.clone());
                if let Value::Batch(batch) = value {
                    for command in &batch.commands {
                        self.first_application(slot, &command.payload);
                    }
                }
            }
        }
        if let Value::Batch(batch) = value {
            for command in &batch.commands {
                let Some(id) = command_id(&command.payload) else {
                    continue;
                };
                if let Some(entry) = self.submitted.get(&id) {
                    self.outstanding[replica as usize].remove(&(entry.at_us, id));
                }
                if let Some(entry) = self.submitted.get_mut(&id) {
                    if entry.origin == replica && entry.applied_at_origin_us.is_none() {
                        entry.applied_at_origin_us = Some(now_us);
                    }
                }
            }
        }
        let mut hasher = DefaultHasher::new();
        (app.digest, slot, value_digest(value)).hash(&mut hasher);
        app.digest = hasher.finish();
        app.applied_upto = slot + 1;
        match self.digest_after.get(&slot) {
            Some(d) if *d != app.digest => self.violation(format!(
                "replica {replica}'s application state after slot {slot} differs from a peer's"
            )),
            Some(_) => {}
            None => {
                self.digest_after.insert(slot, app.digest);
            }
        }
    }

    fn first_application(&mut self, slot: Slot, payload: &[u8]) {
        let Some(id) = command_id(payload) else {
            self.violation(format!(
                "validity: slot {slot} holds a command no client sent"
            ));
            return;
        };
        if !self.submitted.contains_key(&id) {
            self.violation(format!(
                "validity: slot {slot} holds command {id} no client sent"
            ));
        }
        self.commands_applied += 1;
        if let Some(previous) = self.command_slot.insert(id, slot) {
            self.violation(format!(
                "integrity: command {id} applied in slot {previous} and again in slot {slot}"
            ));
        }
    }

    /// Replica `replica` took a snapshot covering every slot below `applied_upto`: its
    /// commands decided there are answered.
    pub fn snapshot_installed(&mut self, replica: ReplicaId, applied_upto: Slot, now_us: u64) {
        for (id, entry) in self.submitted.iter_mut() {
            let covered = self
                .command_slot
                .get(id)
                .is_some_and(|slot| *slot < applied_upto);
            if entry.origin == replica && entry.applied_at_origin_us.is_none() && covered {
                entry.applied_at_origin_us = Some(now_us);
            }
        }
    }

    /// Commands submitted before `deadline_us` to a replica that is up, never lost,
    /// and still not applied at their origin.
    pub fn overdue(&self, deadline_us: u64, up: &[bool]) -> Vec<CommandId> {
        let mut ids: Vec<CommandId> = self
            .submitted
            .iter()
            .filter(|(_, s)| {
                !s.orphaned
                    && s.applied_at_origin_us.is_none()
                    && s.at_us < deadline_us
                    && up[s.origin as usize]
            })
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Longest wait from `since_us` (or submission, if later) to application at the
    /// origin, over commands that were answered.
    pub fn max_latency_since_us(&self, since_us: u64) -> u64 {
        self.submitted
            .values()
            .filter_map(|s| {
                let applied = s.applied_at_origin_us?;
                (applied >= since_us).then(|| applied - s.at_us.max(since_us))
            })
            .max()
            .unwrap_or(0)
    }

    /// Whether any command is waiting at a live origin.
    pub fn has_pending(&self) -> bool {
        self.submitted
            .values()
            .any(|s| !s.orphaned && s.applied_at_origin_us.is_none())
    }
}
