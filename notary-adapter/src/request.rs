//! A notarisation request whose shape is known good (ids of the right length, no state
//! twice, at most [`MAX_STATES`] states, a non-empty time window), and its canonical bytes.

use std::fmt;

use crate::types::{HASH_BYTES, StateKind, StateRef, TimeWindow, TxId};

/// Most inputs and references one request may name together, as Corda's notary
/// (`maxAllowedInputsAndReferences`): a request with more is refused as invalid.
pub const MAX_STATES: usize = 10_000;

/// Longest notary name accepted (an X.500 name in Corda; this is generous).
pub const MAX_NOTARY_NAME_BYTES: usize = 1024;

/// Prefix of the canonical request bytes, so that a caller's signature over a request
/// can never be taken for its signature over anything else.
pub const REQUEST_DOMAIN: &[u8] = b"synod.notary.request.v1\0";

/// Why a request is not a valid transaction to notarise (Corda's `TransactionInvalid`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvalidTransaction {
    TooManyStates {
        count: usize,
        max: usize,
    },
    /// The request's encoding, or one of its fields, is larger than the notary accepts.
    TooLarge {
        what: &'static str,
        bytes: usize,
        max: usize,
    },
    TxIdLength {
        bytes: usize,
    },
    StateHashLength {
        kind: StateKind,
        position: usize,
        bytes: usize,
    },
    DuplicateInput(StateRef),
    DuplicateReference(StateRef),
    InputAndReference(StateRef),
    EmptyTimeWindow(TimeWindow),
    /// The request names another notary than this one.
    WrongNotary {
        requested: String,
        this_notary: String,
    },
    TooManySignaturesWanted {
        wanted: u32,
        max: u32,
    },
}

impl fmt::Display for InvalidTransaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidTransaction::TooManyStates { count, max } => write!(
                f,
                "{count} inputs and references: a transaction may have at most {max}"
            ),
            InvalidTransaction::TooLarge { what, bytes, max } => {
                write!(f, "{what} is {bytes} bytes, more than the {max} accepted")
            }
            InvalidTransaction::TxIdLength { bytes } => write!(
                f,
                "transaction id is {bytes} bytes, not {HASH_BYTES} (a SHA-256 hash)"
            ),
            InvalidTransaction::StateHashLength {
                kind,
                position,
                bytes,
            } => write!(
                f,
                "{kind} #{position}: transaction hash is {bytes} bytes, not {HASH_BYTES}"
            ),
            InvalidTransaction::DuplicateInput(state) => {
                write!(f, "input {state} is named twice")
            }
            InvalidTransaction::DuplicateReference(state) => {
                write!(f, "reference {state} is named twice")
            }
            InvalidTransaction::InputAndReference(state) => {
                write!(f, "state {state} is both an input and a reference")
            }
            InvalidTransaction::EmptyTimeWindow(window) => write!(
                f,
                "time window {window} is empty: its start must be before its end"
            ),
            InvalidTransaction::WrongNotary {
                requested,
                this_notary,
            } => write!(
                f,
                "the transaction names notary {requested:?}, this is notary {this_notary:?}"
            ),
            InvalidTransaction::TooManySignaturesWanted { wanted, max } => write!(
                f,
                "{wanted} notary signatures wanted, this notary gives at most {max}"
            ),
        }
    }
}

impl std::error::Error for InvalidTransaction {}

/// What the uniqueness state machine needs of a request, in canonical form: inputs and
/// references sorted ascending by (transaction hash, output index), none repeated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatedRequest {
    tx_id: TxId,
    inputs: Vec<StateRef>,
    references: Vec<StateRef>,
    time_window: TimeWindow,
}

impl ValidatedRequest {
    /// Sorts the states and checks the limits; the order given does not matter.
    pub fn new(
        tx_id: TxId,
        mut inputs: Vec<StateRef>,
        mut references: Vec<StateRef>,
        time_window: TimeWindow,
    ) -> Result<ValidatedRequest, InvalidTransaction> {
        let count = inputs.len().saturating_add(references.len());
        if count > MAX_STATES {
            return Err(InvalidTransaction::TooManyStates {
                count,
                max: MAX_STATES,
            });
        }
        if time_window.is_empty() {
            return Err(InvalidTransaction::EmptyTimeWindow(time_window));
        }
        inputs.sort_unstable();
        references.sort_unstable();
        if let Some(state) = first_repeat(&inputs) {
            return Err(InvalidTransaction::DuplicateInput(state));
        }
        if let Some(state) = first_repeat(&references) {
            return Err(InvalidTransaction::DuplicateReference(state));
        }
        if let Some(state) = first_shared(&inputs, &references) {
            return Err(InvalidTransaction::InputAndReference(state));
        }
        Ok(ValidatedRequest {
            tx_id,
            inputs,
            references,
            time_window,
        })
    }

    pub fn tx_id(&self) -> &TxId {
        &self.tx_id
    }

    /// Sorted ascending.
    pub fn inputs(&self) -> &[StateRef] {
        &self.inputs
    }

    /// Sorted ascending.
    pub fn references(&self) -> &[StateRef] {
        &self.references
    }

    pub fn time_window(&self) -> &TimeWindow {
        &self.time_window
    }

    /// The bytes a caller signs (see the crate documentation for the layout). The notary
    /// name is the one the request names, empty if it names none.
    pub fn canonical_bytes(&self, notary_name: &str) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(REQUEST_DOMAIN.len() + self.body_len() + 4 + notary_name.len());
        out.extend_from_slice(REQUEST_DOMAIN);
        self.write_body(&mut out);
        // The name is checked against MAX_NOTARY_NAME_BYTES before anyone signs or
        // verifies; saturating keeps a longer one from wrapping into a shorter length.
        let length = u32::try_from(notary_name.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(notary_name.as_bytes());
        out
    }

    /// Encoded length of [`write_body`](Self::write_body).
    pub(crate) fn body_len(&self) -> usize {
        HASH_BYTES
            + 2 * 4
            + STATE_BYTES * (self.inputs.len() + self.references.len())
            + 1
            + 8 * usize::from(self.time_window.from_ms.is_some())
            + 8 * usize::from(self.time_window.until_ms.is_some())
    }

    /// tx id ‖ inputs ‖ references ‖ time window, shared by the canonical request bytes
    /// and the ordered command.
    pub(crate) fn write_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.tx_id.as_bytes());
        write_states(out, &self.inputs);
        write_states(out, &self.references);
        write_window(out, &self.time_window);
    }
}

/// Encoded size of one state: transaction hash and big-endian output index.
pub(crate) const STATE_BYTES: usize = HASH_BYTES + 4;

/// Bits of the time window's flag byte.
pub(crate) const WINDOW_HAS_FROM: u8 = 1;
pub(crate) const WINDOW_HAS_UNTIL: u8 = 2;

fn write_states(out: &mut Vec<u8>, states: &[StateRef]) {
    // At most MAX_STATES, so the count fits.
    out.extend_from_slice(&(states.len() as u32).to_be_bytes());
    for state in states {
        out.extend_from_slice(&state.tx_hash);
        out.extend_from_slice(&state.output_index.to_be_bytes());
    }
}

fn write_window(out: &mut Vec<u8>, window: &TimeWindow) {
    let mut flags = 0;
    if window.from_ms.is_some() {
        flags |= WINDOW_HAS_FROM;
    }
    if window.until_ms.is_some() {
        flags |= WINDOW_HAS_UNTIL;
    }
    out.push(flags);
    for end in [window.from_ms, window.until_ms].into_iter().flatten() {
        out.extend_from_slice(&end.to_be_bytes());
    }
}

/// The first state that appears twice in a sorted list.
fn first_repeat(sorted: &[StateRef]) -> Option<StateRef> {
    sorted
        .windows(2)
        .find(|pair| pair[0] == pair[1])
        .map(|pair| pair[0])
}

/// The smallest state present in both sorted lists.
fn first_shared(a: &[StateRef], b: &[StateRef]) -> Option<StateRef> {
    let (mut i, mut j) = (0, 0);
    while let (Some(x), Some(y)) = (a.get(i), b.get(j)) {
        match x.cmp(y) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => return Some(*x),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(hash: u8, index: u32) -> StateRef {
        StateRef::new([hash; 32], index)
    }

    #[test]
    fn states_are_sorted_and_order_does_not_change_the_bytes() {
        let a = ValidatedRequest::new(
            TxId([7; 32]),
            vec![state(2, 0), state(1, 5), state(1, 1)],
            vec![state(9, 0), state(3, 3)],
            TimeWindow::default(),
        )
        .unwrap();
        assert_eq!(a.inputs(), &[state(1, 1), state(1, 5), state(2, 0)]);
        assert_eq!(a.references(), &[state(3, 3), state(9, 0)]);
        let b = ValidatedRequest::new(
            TxId([7; 32]),
            vec![state(1, 1), state(2, 0), state(1, 5)],
            vec![state(3, 3), state(9, 0)],
            TimeWindow::default(),
        )
        .unwrap();
        assert_eq!(a.canonical_bytes("N"), b.canonical_bytes("N"));
        assert_ne!(a.canonical_bytes("N"), a.canonical_bytes("M"));
    }

    #[test]
    fn canonical_bytes_follow_the_documented_layout() {
        let request = ValidatedRequest::new(
            TxId([0xaa; 32]),
            vec![state(1, 2)],
            Vec::new(),
            TimeWindow {
                from_ms: None,
                until_ms: Some(-1),
            },
        )
        .unwrap();
        let mut expected = REQUEST_DOMAIN.to_vec();
        expected.extend_from_slice(&[0xaa; 32]);
        expected.extend_from_slice(&1u32.to_be_bytes());
        expected.extend_from_slice(&[1; 32]);
        expected.extend_from_slice(&2u32.to_be_bytes());
        expected.extend_from_slice(&0u32.to_be_bytes());
        expected.push(WINDOW_HAS_UNTIL);
        expected.extend_from_slice(&(-1i64).to_be_bytes());
        expected.extend_from_slice(&2u32.to_be_bytes());
        expected.extend_from_slice(b"No");
        assert_eq!(request.canonical_bytes("No"), expected);
        assert_eq!(
            request.body_len() + REQUEST_DOMAIN.len() + 4 + 2,
            expected.len()
        );
    }

    #[test]
    fn shape_errors_name_the_offending_state() {
        let tx = TxId([0; 32]);
        let none = TimeWindow::default();
        assert_eq!(
            ValidatedRequest::new(tx, vec![state(1, 0), state(1, 0)], vec![], none),
            Err(InvalidTransaction::DuplicateInput(state(1, 0)))
        );
        assert_eq!(
            ValidatedRequest::new(tx, vec![], vec![state(2, 0), state(2, 0)], none),
            Err(InvalidTransaction::DuplicateReference(state(2, 0)))
        );
        assert_eq!(
            ValidatedRequest::new(tx, vec![state(1, 0), state(3, 0)], vec![state(3, 0)], none),
            Err(InvalidTransaction::InputAndReference(state(3, 0)))
        );
        let empty = TimeWindow {
            from_ms: Some(10),
            until_ms: Some(10),
        };
        assert_eq!(
            ValidatedRequest::new(tx, vec![], vec![], empty),
            Err(InvalidTransaction::EmptyTimeWindow(empty))
        );
        let many: Vec<StateRef> = (0..=MAX_STATES as u32).map(|i| state(0, i)).collect();
        assert_eq!(
            ValidatedRequest::new(tx, many.clone(), vec![], none),
            Err(InvalidTransaction::TooManyStates {
                count: MAX_STATES + 1,
                max: MAX_STATES
            })
        );
        // Exactly the limit is allowed, split any way between inputs and references.
        let (inputs, references) = many[..MAX_STATES].split_at(4_000);
        assert!(ValidatedRequest::new(tx, inputs.to_vec(), references.to_vec(), none).is_ok());
    }
}
