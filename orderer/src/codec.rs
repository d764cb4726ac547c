//! The consensus core's messages and records in the `synod.replica` protobuf schema:
//! one encoding for the replica wire and the write-ahead log. Decoding validates
//! everything a peer or a disk could get wrong and never panics.

use std::sync::Arc;

use bytes::Bytes;
use proto::prost::Message as _;
use proto::synod::replica as pb;

use crate::core::types::MAX_REPLICAS;
use crate::core::{Ballot, Batch, Body, Command, LaneInfo, Message, Record, ReplicaId, Tag, Value};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed replica data: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

fn missing(what: &str) -> DecodeError {
    DecodeError(format!("missing {what}"))
}

fn replica_id(raw: u32, what: &str) -> Result<ReplicaId, DecodeError> {
    if (raw as usize) < MAX_REPLICAS {
        Ok(raw as ReplicaId)
    } else {
        Err(DecodeError(format!("{what} {raw} is not a replica id")))
    }
}

fn ballot_to_pb(ballot: Ballot) -> pb::Ballot {
    pb::Ballot {
        round: ballot.round,
        replica: ballot.replica as u32,
    }
}

fn ballot_from_pb(ballot: Option<pb::Ballot>) -> Result<Ballot, DecodeError> {
    let ballot = ballot.ok_or_else(|| missing("ballot"))?;
    Ok(Ballot {
        round: ballot.round,
        replica: replica_id(ballot.replica, "ballot replica")?,
    })
}

fn value_to_pb(value: &Value) -> pb::Value {
    let kind = match value {
        Value::Noop => pb::value::Kind::Noop(true),
        Value::Batch(batch) => pb::value::Kind::Batch(pb::Batch {
            time_ms: batch.time_ms,
            commands: batch
                .commands
                .iter()
                .map(|c| pb::Command {
                    tag: Some(match &c.tag {
                        Tag::Channel(name) => pb::command::Tag::Channel(name.clone()),
                        Tag::Notary => pb::command::Tag::Notary(true),
                    }),
                    payload: c.payload.to_vec(),
                })
                .collect(),
        }),
    };
    pb::Value { kind: Some(kind) }
}

fn value_from_pb(value: Option<pb::Value>) -> Result<Value, DecodeError> {
    match value.and_then(|v| v.kind).ok_or_else(|| missing("value"))? {
        pb::value::Kind::Noop(_) => Ok(Value::Noop),
        pb::value::Kind::Batch(batch) => {
            let commands = batch
                .commands
                .into_iter()
                .map(|c| {
                    let tag = match c.tag.ok_or_else(|| missing("command tag"))? {
                        pb::command::Tag::Channel(name) => Tag::Channel(name),
                        pb::command::Tag::Notary(_) => Tag::Notary,
                    };
                    Ok(Command {
                        tag,
                        payload: Bytes::from(c.payload),
                    })
                })
                .collect::<Result<Vec<_>, DecodeError>>()?;
            Ok(Value::Batch(Arc::new(Batch {
                time_ms: batch.time_ms,
                commands,
            })))
        }
    }
}

fn slot_values_to_pb(entries: &[(u64, Value)]) -> Vec<pb::SlotValue> {
    entries
        .iter()
        .map(|(slot, value)| pb::SlotValue {
            slot: *slot,
            value: Some(value_to_pb(value)),
        })
        .collect()
}

fn slot_values_from_pb(entries: Vec<pb::SlotValue>) -> Result<Vec<(u64, Value)>, DecodeError> {
    entries
        .into_iter()
        .map(|e| Ok((e.slot, value_from_pb(e.value)?)))
        .collect()
}

pub fn message_to_pb(message: &Message) -> pb::Message {
    use pb::message::Body as B;
    let body = match &message.body {
        Body::Heartbeat => B::Heartbeat(pb::Heartbeat {}),
        Body::Accept {
            ballot,
            entries,
            prev_proposed,
        } => B::Accept(pb::Accept {
            ballot: Some(ballot_to_pb(*ballot)),
            entries: slot_values_to_pb(entries),
            prev_proposed: *prev_proposed,
        }),
        Body::Accepted {
            ballot,
            slots,
            noop,
        } => B::Accepted(pb::Accepted {
            ballot: Some(ballot_to_pb(*ballot)),
            slots: slots.clone(),
            noop: *noop,
        }),
        Body::Prepare {
            ballot,
            lane,
            from,
            to,
        } => B::Prepare(pb::Prepare {
            ballot: Some(ballot_to_pb(*ballot)),
            lane: *lane as u32,
            from: *from,
            to: *to,
        }),
        Body::Promise {
            ballot,
            lane,
            from,
            to,
            accepted,
        } => B::Promise(pb::Promise {
            ballot: Some(ballot_to_pb(*ballot)),
            lane: *lane as u32,
            from: *from,
            to: *to,
            accepted: accepted
                .iter()
                .map(|(slot, b, v)| pb::AcceptedValue {
                    slot: *slot,
                    ballot: Some(ballot_to_pb(*b)),
                    value: Some(value_to_pb(v)),
                })
                .collect(),
        }),
        Body::Nack {
            ballot,
            lane,
            promised,
            promised_to,
        } => B::Nack(pb::Nack {
            ballot: Some(ballot_to_pb(*ballot)),
            lane: *lane as u32,
            promised: Some(ballot_to_pb(*promised)),
            promised_to: *promised_to,
        }),
        Body::Fetch { from } => B::Fetch(pb::Fetch { from: *from }),
        Body::Decided {
            from,
            to,
            values,
            lane_noops,
        } => B::Decided(pb::Decided {
            from: *from,
            to: *to,
            values: slot_values_to_pb(values),
            lane_noops: lane_noops
                .iter()
                .map(|(lane, a, b)| pb::LaneNoops {
                    lane: *lane as u32,
                    from: *a,
                    to: *b,
                })
                .collect(),
        }),
        Body::Compacted { log_start } => B::Compacted(pb::Compacted {
            log_start: *log_start,
        }),
    };
    pb::Message {
        from: message.from as u32,
        lane_noop_from: message.lane.noop_from,
        lane_frontier: message.lane.frontier,
        applied: message.applied,
        body: Some(body),
    }
}

pub fn message_from_pb(message: pb::Message) -> Result<Message, DecodeError> {
    use pb::message::Body as B;
    let body = match message.body.ok_or_else(|| missing("message body"))? {
        B::Heartbeat(_) => Body::Heartbeat,
        B::Accept(m) => Body::Accept {
            ballot: ballot_from_pb(m.ballot)?,
            entries: slot_values_from_pb(m.entries)?,
            prev_proposed: m.prev_proposed,
        },
        B::Accepted(m) => Body::Accepted {
            ballot: ballot_from_pb(m.ballot)?,
            slots: m.slots,
            noop: m.noop,
        },
        B::Prepare(m) => Body::Prepare {
            ballot: ballot_from_pb(m.ballot)?,
            lane: replica_id(m.lane, "lane")?,
            from: m.from,
            to: m.to,
        },
        B::Promise(m) => Body::Promise {
            ballot: ballot_from_pb(m.ballot)?,
            lane: replica_id(m.lane, "lane")?,
            from: m.from,
            to: m.to,
            accepted: m
                .accepted
                .into_iter()
                .map(|a| Ok((a.slot, ballot_from_pb(a.ballot)?, value_from_pb(a.value)?)))
                .collect::<Result<_, DecodeError>>()?,
        },
        B::Nack(m) => Body::Nack {
            ballot: ballot_from_pb(m.ballot)?,
            lane: replica_id(m.lane, "lane")?,
            promised: ballot_from_pb(m.promised)?,
            promised_to: m.promised_to,
        },
        B::Fetch(m) => Body::Fetch { from: m.from },
        B::Decided(m) => Body::Decided {
            from: m.from,
            to: m.to,
            values: slot_values_from_pb(m.values)?,
            lane_noops: m
                .lane_noops
                .into_iter()
                .map(|r| Ok((replica_id(r.lane, "lane")?, r.from, r.to)))
                .collect::<Result<_, DecodeError>>()?,
        },
        B::Compacted(m) => Body::Compacted {
            log_start: m.log_start,
        },
    };
    Ok(Message {
        from: replica_id(message.from, "sender")?,
        lane: LaneInfo {
            noop_from: message.lane_noop_from,
            frontier: message.lane_frontier,
        },
        applied: message.applied,
        body,
    })
}

pub fn encode_record(record: &Record) -> Vec<u8> {
    use pb::record::Kind as K;
    let kind = match record {
        Record::Promise {
            lane,
            from,
            to,
            ballot,
        } => K::Promise(pb::PromiseRecord {
            lane: *lane as u32,
            from: *from,
            to: *to,
            ballot: Some(ballot_to_pb(*ballot)),
        }),
        Record::Accept {
            slot,
            ballot,
            value,
        } => K::Accept(pb::AcceptRecord {
            slot: *slot,
            ballot: Some(ballot_to_pb(*ballot)),
            value: Some(value_to_pb(value)),
        }),
        Record::OwnProposal {
            slot,
            prev_proposed,
            replaces,
            value,
        } => K::OwnProposal(pb::OwnProposalRecord {
            slot: *slot,
            prev_proposed: *prev_proposed,
            replaces: *replaces,
            value: Some(value_to_pb(value)),
        }),
        Record::Frontier { frontier } => K::Frontier(pb::FrontierRecord {
            frontier: *frontier,
        }),
        Record::Compact { below } => K::Compact(pb::CompactRecord { below: *below }),
        Record::VoteFence { below } => K::VoteFence(pb::VoteFenceRecord { below: *below }),
    };
    pb::Record { kind: Some(kind) }.encode_to_vec()
}

pub fn decode_record(bytes: &[u8]) -> Result<Record, DecodeError> {
    use pb::record::Kind as K;
    let record = pb::Record::decode(bytes).map_err(|e| DecodeError(e.to_string()))?;
    Ok(match record.kind.ok_or_else(|| missing("record kind"))? {
        K::Promise(r) => Record::Promise {
            lane: replica_id(r.lane, "lane")?,
            from: r.from,
            to: r.to,
            ballot: ballot_from_pb(r.ballot)?,
        },
        K::Accept(r) => Record::Accept {
            slot: r.slot,
            ballot: ballot_from_pb(r.ballot)?,
            value: value_from_pb(r.value)?,
        },
        K::OwnProposal(r) => Record::OwnProposal {
            slot: r.slot,
            prev_proposed: r.prev_proposed,
            replaces: r.replaces,
            value: value_from_pb(r.value)?,
        },
        K::Frontier(r) => Record::Frontier {
            frontier: r.frontier,
        },
        K::Compact(r) => Record::Compact { below: r.below },
        K::VoteFence(r) => Record::VoteFence { below: r.below },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> Value {
        Value::Batch(Arc::new(Batch {
            time_ms: 42,
            commands: vec![
                Command {
                    tag: Tag::Channel("demo".into()),
                    payload: Bytes::from_static(b"envelope"),
                },
                Command {
                    tag: Tag::Notary,
                    payload: Bytes::from_static(b""),
                },
            ],
        }))
    }

    const B: Ballot = Ballot {
        round: 3,
        replica: 2,
    };

    fn bodies() -> Vec<Body> {
        vec![
            Body::Heartbeat,
            Body::Accept {
                ballot: Ballot::owner(1),
                entries: vec![(4, batch())],
                prev_proposed: Some(1),
            },
            Body::Accept {
                ballot: B,
                entries: vec![(7, Value::Noop), (10, Value::Noop)],
                prev_proposed: None,
            },
            Body::Accepted {
                ballot: B,
                slots: vec![7, 10],
                noop: true,
            },
            Body::Prepare {
                ballot: B,
                lane: 1,
                from: 4,
                to: 400,
            },
            Body::Promise {
                ballot: B,
                lane: 1,
                from: 4,
                to: 400,
                accepted: vec![(4, Ballot::owner(1), batch())],
            },
            Body::Nack {
                ballot: Ballot::owner(1),
                lane: 1,
                promised: B,
                promised_to: 400,
            },
            Body::Fetch { from: 9 },
            Body::Decided {
                from: 9,
                to: 20,
                values: vec![(9, batch()), (10, Value::Noop)],
                lane_noops: vec![(2, 11, 20)],
            },
            Body::Compacted { log_start: 77 },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for body in bodies() {
            let message = Message {
                from: 1,
                lane: LaneInfo {
                    noop_from: 5,
                    frontier: 12,
                },
                applied: 3,
                body,
            };
            let bytes = message_to_pb(&message).encode_to_vec();
            let decoded = message_from_pb(pb::Message::decode(&bytes[..]).unwrap()).unwrap();
            assert_eq!(decoded, message);
        }
    }

    #[test]
    fn every_record_round_trips() {
        let records = [
            Record::Promise {
                lane: 2,
                from: 5,
                to: 50,
                ballot: B,
            },
            Record::Accept {
                slot: 5,
                ballot: B,
                value: Value::Noop,
            },
            Record::OwnProposal {
                slot: 8,
                prev_proposed: Some(5),
                replaces: Some(2),
                value: batch(),
            },
            Record::OwnProposal {
                slot: 8,
                prev_proposed: None,
                replaces: None,
                value: batch(),
            },
            Record::Frontier { frontier: 99 },
            Record::Compact { below: 64 },
            Record::VoteFence { below: 3_000 },
        ];
        for record in records {
            assert_eq!(decode_record(&encode_record(&record)).unwrap(), record);
        }
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        assert!(decode_record(&[0xff, 0xff, 0xff]).is_err());
        assert!(decode_record(&[]).unwrap_err().0.contains("record kind"));
        let no_body = pb::Message {
            from: 1,
            ..Default::default()
        };
        assert!(message_from_pb(no_body).unwrap_err().0.contains("body"));
        let bad_sender = pb::Message {
            from: 4_000,
            body: Some(pb::message::Body::Heartbeat(pb::Heartbeat {})),
            ..Default::default()
        };
        assert!(
            message_from_pb(bad_sender)
                .unwrap_err()
                .0
                .contains("sender")
        );
        let no_ballot = pb::Message {
            from: 1,
            body: Some(pb::message::Body::Accepted(pb::Accepted::default())),
            ..Default::default()
        };
        assert!(message_from_pb(no_ballot).unwrap_err().0.contains("ballot"));
    }
}
