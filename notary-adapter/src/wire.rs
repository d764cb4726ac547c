//! Between this crate's types and the `synod.notary` protobuf messages.

use proto::synod::notary as pb;

use crate::check::CheckError;
use crate::types::{StateKind, StateRef, TimeWindow, TxId};
use crate::uniqueness::{ConflictEntry, Outcome};

pub fn state_ref_to_pb(state: &StateRef) -> pb::StateRef {
    pb::StateRef {
        tx_hash: state.tx_hash.to_vec(),
        output_index: state.output_index,
    }
}

/// A time window for a request: absent when both ends are open.
pub fn time_window_to_pb(window: &TimeWindow) -> Option<pb::TimeWindow> {
    (*window != TimeWindow::default()).then_some(pb::TimeWindow {
        from_ms: window.from_ms,
        until_ms: window.until_ms,
    })
}

/// An absent time window is no constraint.
pub fn time_window_from_pb(window: Option<&pb::TimeWindow>) -> TimeWindow {
    window.map_or(TimeWindow::default(), |w| TimeWindow {
        from_ms: w.from_ms,
        until_ms: w.until_ms,
    })
}

fn conflict_entry_to_pb(entry: &ConflictEntry) -> pb::ConflictEntry {
    let kind = match entry.kind {
        StateKind::Input => pb::conflict_entry::Kind::Input,
        StateKind::Reference => pb::conflict_entry::Kind::Reference,
    };
    pb::ConflictEntry {
        state: Some(state_ref_to_pb(&entry.state)),
        consuming_tx_hash: entry.consuming_tx_hash.to_vec(),
        kind: kind as i32,
    }
}

/// The error to answer an applied request with; `None` for a success, which the node
/// answers with signatures.
pub fn outcome_error(outcome: &Outcome) -> Option<pb::Error> {
    let kind = match outcome {
        Outcome::Success => return None,
        Outcome::Conflict(entries) => pb::error::Kind::Conflict(pb::Conflict {
            entries: entries.iter().map(conflict_entry_to_pb).collect(),
        }),
        Outcome::TimeWindowInvalid {
            current_time_ms,
            window,
        } => pb::error::Kind::TimeWindowInvalid(pb::TimeWindowInvalid {
            current_time_ms: *current_time_ms,
            window: Some(pb::TimeWindow {
                from_ms: window.from_ms,
                until_ms: window.until_ms,
            }),
        }),
    };
    Some(pb::Error { kind: Some(kind) })
}

/// The error to answer a request refused before ordering with.
pub fn check_error(error: &CheckError) -> pb::Error {
    let kind = match error {
        CheckError::TransactionInvalid(reason) => {
            pb::error::Kind::TransactionInvalid(pb::TransactionInvalid {
                reason: reason.to_string(),
            })
        }
        CheckError::RequestSignatureInvalid(reason) => {
            pb::error::Kind::RequestSignatureInvalid(pb::RequestSignatureInvalid {
                reason: reason.to_string(),
            })
        }
        CheckError::NotAMember(reason) => pb::error::Kind::NotAMember(pb::NotAMember {
            reason: reason.to_string(),
        }),
        CheckError::Revoked(reason) => pb::error::Kind::Revoked(pb::Revoked {
            reason: reason.to_string(),
        }),
        CheckError::WrongRole { role, allowed } => pb::error::Kind::WrongRole(pb::WrongRole {
            role: role.to_string(),
            allowed: allowed.iter().map(ToString::to_string).collect(),
        }),
    };
    pb::Error { kind: Some(kind) }
}

/// For a request the node could not get ordered; retrying it is safe.
pub fn unavailable(reason: impl Into<String>) -> pb::Error {
    pb::Error {
        kind: Some(pb::error::Kind::Unavailable(pb::Unavailable {
            reason: reason.into(),
        })),
    }
}

pub fn signed_response(tx_id: &TxId, signatures: Vec<pb::NodeSignature>) -> pb::NotariseResponse {
    pb::NotariseResponse {
        tx_id: tx_id.as_bytes().to_vec(),
        result: Some(pb::notarise_response::Result::Signed(pb::Signed {
            signatures,
        })),
    }
}

/// `tx_id` as the request sent it: a request refused for a malformed id gets it back as
/// it was.
pub fn error_response(tx_id: &[u8], error: pb::Error) -> pb::NotariseResponse {
    pb::NotariseResponse {
        tx_id: tx_id.to_vec(),
        result: Some(pb::notarise_response::Result::Error(error)),
    }
}

/// A one-line description of a notary error, for logs and client error messages.
pub fn describe_error(error: &pb::Error) -> String {
    match &error.kind {
        None => "unspecified notary error".to_owned(),
        Some(pb::error::Kind::Conflict(conflict)) => format!(
            "conflict: {} state(s) already consumed by another transaction",
            conflict.entries.len()
        ),
        Some(pb::error::Kind::RequestSignatureInvalid(e)) => {
            format!("request signature invalid: {}", e.reason)
        }
        Some(pb::error::Kind::TransactionInvalid(e)) => {
            format!("transaction invalid: {}", e.reason)
        }
        Some(pb::error::Kind::TimeWindowInvalid(e)) => format!(
            "time window {} does not contain the notary's time {} ms",
            time_window_from_pb(e.window.as_ref()),
            e.current_time_ms
        ),
        Some(pb::error::Kind::NotAMember(e)) => format!("not a member: {}", e.reason),
        Some(pb::error::Kind::Revoked(e)) => format!("revoked: {}", e.reason),
        Some(pb::error::Kind::WrongRole(e)) => format!(
            "role {} may not notarise (allowed: {})",
            e.role,
            e.allowed.join(", ")
        ),
        Some(pb::error::Kind::Unavailable(e)) => format!("notary unavailable: {}", e.reason),
    }
}
