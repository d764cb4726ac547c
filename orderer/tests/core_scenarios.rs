//! Scripted scenarios on the in-process cluster: the normal case, a crash and its
//! revocation, a restart that must not lose a persisted proposal, a false suspicion,
//! and bad input.

use std::collections::HashSet;

use bytes::Bytes;

use orderer::core::loopback::Loopback;
use orderer::core::{
    Ballot, Body, Command, Config, LaneInfo, Message, ProposeError, ReplicaId, Tag, Value,
};

fn command(id: u64) -> Command {
    Command {
        tag: if id % 2 == 0 {
            Tag::Notary
        } else {
            Tag::Channel("demo".into())
        },
        payload: Bytes::from(id.to_le_bytes().to_vec()),
    }
}

fn ids(commands: &[Command]) -> Vec<u64> {
    commands
        .iter()
        .map(|c| u64::from_le_bytes(c.payload[..8].try_into().unwrap()))
        .collect()
}

/// Every live replica applied the same commands in the same order, each once, and
/// exactly the expected set.
fn assert_same_log(cluster: &Loopback, live: &[ReplicaId], expected: &HashSet<u64>) {
    let reference = ids(&cluster.applied_command_list(live[0]));
    let unique: HashSet<u64> = reference.iter().copied().collect();
    assert_eq!(unique.len(), reference.len(), "a command was applied twice");
    assert_eq!(&unique, expected, "applied set differs from proposed set");
    for id in &live[1..] {
        assert_eq!(
            ids(&cluster.applied_command_list(*id)),
            reference,
            "replica {id} diverged"
        );
    }
}

const TICK_US: u64 = 10_000;

#[test]
fn three_replicas_order_commands_from_all_of_them() {
    let mut cluster = Loopback::new(Config::lan(3), true);
    let mut expected = HashSet::new();
    for id in 0..300u64 {
        cluster.propose((id % 3) as ReplicaId, command(id)).unwrap();
        expected.insert(id);
        if id % 7 == 0 {
            cluster.flush();
        }
    }
    cluster.run_for(50_000, TICK_US);
    assert_same_log(&cluster, &[0, 1, 2], &expected);
    // Same slot numbers too, not just the same commands.
    assert_eq!(cluster.applied(0), cluster.applied(2));
    assert_eq!(cluster.core(1).unwrap().stats().revocations_started, 0);
}

#[test]
fn five_replicas_order_commands() {
    let mut cluster = Loopback::new(Config::lan(5), true);
    let expected: HashSet<u64> = (0..100).collect();
    for id in 0..100u64 {
        cluster.propose((id % 5) as ReplicaId, command(id)).unwrap();
    }
    cluster.run_for(50_000, TICK_US);
    assert_same_log(&cluster, &[0, 1, 2, 3, 4], &expected);
}

#[test]
fn a_crashed_owner_is_revoked_and_the_rest_keep_ordering() {
    let cfg = Config::lan(3);
    let suspect_after_us = cfg.suspect_after_us;
    let mut cluster = Loopback::new(cfg, true);
    for id in 0..30u64 {
        cluster.propose((id % 3) as ReplicaId, command(id)).unwrap();
    }
    cluster.run_for(20_000, TICK_US);
    cluster.crash(2);
    let mut expected: HashSet<u64> = (0..30).collect();
    for id in 30..60u64 {
        cluster.propose((id % 2) as ReplicaId, command(id)).unwrap();
        expected.insert(id);
    }
    cluster.flush();
    // Nothing past the dead owner's first open slot can be applied yet.
    assert!(cluster.applied_commands(0) < 60);
    cluster.run_for(suspect_after_us + 100_000, TICK_US);
    assert_same_log(&cluster, &[0, 1], &expected);
    let revocations = cluster.core(0).unwrap().stats().revocations_started
        + cluster.core(1).unwrap().stats().revocations_started;
    assert!(
        revocations >= 1,
        "the dead owner's lane must have been revoked"
    );
}

#[test]
fn a_persisted_proposal_survives_a_crash_before_it_was_sent() {
    let mut cluster = Loopback::new(Config::lan(3), true);
    // Replica 1 proposes while cut off: its Accept is written to disk but lost.
    cluster.isolate(1, true);
    cluster.propose(1, command(7)).unwrap();
    cluster.flush();
    cluster.crash(1);
    cluster.isolate(1, false);
    cluster.restart(1);
    // The restarted owner retransmits its recovered proposal.
    cluster.propose(0, command(8)).unwrap();
    cluster.run_for(300_000, TICK_US);
    assert_same_log(&cluster, &[0, 1, 2], &HashSet::from([7, 8]));
}

#[test]
fn a_falsely_suspected_owner_rejoins_without_losing_or_repeating_its_batch() {
    let cfg = Config::lan(3);
    let suspect_after_us = cfg.suspect_after_us;
    let mut cluster = Loopback::new(cfg, true);
    cluster.propose(0, command(1)).unwrap();
    cluster.run_for(20_000, TICK_US);
    // Replica 2 is partitioned away but alive, with a proposal in flight.
    cluster.isolate(2, true);
    cluster.propose(2, command(2)).unwrap();
    for id in 3..20u64 {
        cluster.propose((id % 2) as ReplicaId, command(id)).unwrap();
    }
    cluster.run_for(suspect_after_us + 200_000, TICK_US);
    assert!(
        cluster.applied_commands(0) >= 18,
        "the majority must keep ordering without the suspect"
    );
    // Heal: the suspect learns its slots were revoked and re-proposes its batch.
    cluster.isolate(2, false);
    cluster.run_for(1_000_000, TICK_US);
    let expected: HashSet<u64> = (1..20).collect();
    assert_same_log(&cluster, &[0, 1, 2], &expected);
    assert!(cluster.core(2).unwrap().stats().reproposals >= 1);
}

#[test]
fn oversized_commands_and_full_queues_are_refused() {
    let mut cfg = Config::lan(3);
    cfg.max_pending_commands = 2;
    cfg.max_inflight_proposals = 1;
    let max_command_bytes = cfg.max_command_bytes;
    let mut cluster = Loopback::new(cfg, true);
    let huge = Command {
        tag: Tag::Notary,
        payload: Bytes::from(vec![0; max_command_bytes + 1]),
    };
    assert!(matches!(
        cluster.propose(0, huge),
        Err(ProposeError::CommandTooLarge { .. })
    ));
    cluster.isolate(0, true);
    cluster.propose(0, command(1)).unwrap(); // in flight
    cluster.propose(0, command(2)).unwrap(); // queued
    cluster.propose(0, command(3)).unwrap(); // queued
    assert!(matches!(
        cluster.propose(0, command(4)),
        Err(ProposeError::QueueFull { .. })
    ));
}

#[test]
fn malformed_peer_messages_are_dropped_and_counted() {
    let mut cluster = Loopback::new(Config::lan(3), true);
    let mut core = orderer::core::Core::new(Config::lan(3), 0, 0);
    let bad = [
        // Sender out of range.
        Message {
            from: 9,
            lane: LaneInfo::default(),
            applied: 0,
            body: Body::Heartbeat,
        },
        // An owner ballot claiming another owner's slot.
        Message {
            from: 1,
            lane: LaneInfo::default(),
            applied: 0,
            body: Body::Accept {
                ballot: Ballot::owner(1),
                entries: vec![(2, Value::Noop)],
                prev_proposed: None,
            },
        },
        // A prepare with an owner ballot, and an empty range.
        Message {
            from: 1,
            lane: LaneInfo::default(),
            applied: 0,
            body: Body::Prepare {
                ballot: Ballot::owner(1),
                lane: 2,
                from: 5,
                to: 5,
            },
        },
        // Decided values outside the range they claim to cover.
        Message {
            from: 2,
            lane: LaneInfo::default(),
            applied: 0,
            body: Body::Decided {
                from: 10,
                to: 20,
                values: vec![(3, Value::Noop)],
                lane_noops: vec![],
            },
        },
    ];
    for message in bad {
        core.step(1_000, message);
    }
    assert_eq!(core.stats().malformed_messages, 4);
    let ready = core.take_ready();
    assert!(ready.apply.is_empty() && ready.persist.is_empty());
    // The cluster next to it is unaffected.
    cluster.propose(0, command(1)).unwrap();
    cluster.run_for(20_000, TICK_US);
    assert_eq!(cluster.applied_commands(2), 1);
}
