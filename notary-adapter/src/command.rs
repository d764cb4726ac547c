//! The notary's commands as carried in the ordered log (under the log's notary tag).
//!
//! Only what applying needs travels: the caller's certificate and signature were checked
//! by the node that took the request, before it proposed the command.

use std::fmt;

use crate::request::{
    InvalidTransaction, MAX_STATES, STATE_BYTES, ValidatedRequest, WINDOW_HAS_FROM,
    WINDOW_HAS_UNTIL,
};
use crate::types::{HASH_BYTES, StateRef, TimeWindow, TxId};

const KIND_NOTARISE: u8 = 1;

/// Largest encoded command: a request at the state limit.
pub const MAX_COMMAND_BYTES: usize = 1 + HASH_BYTES + 2 * 4 + MAX_STATES * STATE_BYTES + 1 + 16;

/// A command of the ordered log addressed to the notary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotaryCommand {
    Notarise(ValidatedRequest),
}

/// Why bytes from the log are not a notary command. A correct replica never proposes
/// such bytes, so a node that meets one applies nothing for it (every replica decodes
/// the same bytes the same way, so they all skip it alike).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandError {
    Empty,
    UnknownKind(u8),
    TooLong { bytes: usize },
    Truncated { needed: usize, available: usize },
    UnknownWindowFlags(u8),
    TrailingBytes(usize),
    Invalid(InvalidTransaction),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Empty => f.write_str("empty notary command"),
            CommandError::UnknownKind(kind) => write!(f, "unknown notary command kind {kind}"),
            CommandError::TooLong { bytes } => write!(
                f,
                "notary command of {bytes} bytes, longer than the {MAX_COMMAND_BYTES} possible"
            ),
            CommandError::Truncated { needed, available } => write!(
                f,
                "truncated notary command: {needed} more bytes needed, {available} left"
            ),
            CommandError::UnknownWindowFlags(flags) => {
                write!(
                    f,
                    "unknown time window flags {flags:#04x} in notary command"
                )
            }
            CommandError::TrailingBytes(count) => {
                write!(f, "{count} bytes after a notary command")
            }
            CommandError::Invalid(reason) => write!(f, "invalid notarisation request: {reason}"),
        }
    }
}

impl std::error::Error for CommandError {}

impl NotaryCommand {
    /// One kind byte (1 = notarise), then the tx id (32 bytes), the input count (u32
    /// big-endian) and the inputs (32-byte hash, u32 big-endian index, sorted), the same
    /// for references, and the time window: a flag byte (1 = from present, 2 = until
    /// present) followed by the present ends as i64 big-endian, from first.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            NotaryCommand::Notarise(request) => {
                let mut out = Vec::with_capacity(1 + request.body_len());
                out.push(KIND_NOTARISE);
                request.write_body(&mut out);
                out
            }
        }
    }

    /// Never panics: any byte string decodes to a command or to an error.
    pub fn decode(payload: &[u8]) -> Result<NotaryCommand, CommandError> {
        if payload.len() > MAX_COMMAND_BYTES {
            return Err(CommandError::TooLong {
                bytes: payload.len(),
            });
        }
        let (&kind, rest) = payload.split_first().ok_or(CommandError::Empty)?;
        if kind != KIND_NOTARISE {
            return Err(CommandError::UnknownKind(kind));
        }
        let mut reader = Reader { rest };
        let tx_id = TxId(reader.array()?);
        let inputs = reader.states()?;
        let references = reader.states()?;
        let flags = reader.array::<1>()?[0];
        if flags & !(WINDOW_HAS_FROM | WINDOW_HAS_UNTIL) != 0 {
            return Err(CommandError::UnknownWindowFlags(flags));
        }
        let mut end = |present: bool| -> Result<Option<i64>, CommandError> {
            Ok(if present {
                Some(i64::from_be_bytes(reader.array()?))
            } else {
                None
            })
        };
        let time_window = TimeWindow {
            from_ms: end(flags & WINDOW_HAS_FROM != 0)?,
            until_ms: end(flags & WINDOW_HAS_UNTIL != 0)?,
        };
        if !reader.rest.is_empty() {
            return Err(CommandError::TrailingBytes(reader.rest.len()));
        }
        ValidatedRequest::new(tx_id, inputs, references, time_window)
            .map(NotaryCommand::Notarise)
            .map_err(CommandError::Invalid)
    }
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, count: usize) -> Result<&[u8], CommandError> {
        if self.rest.len() < count {
            return Err(CommandError::Truncated {
                needed: count,
                available: self.rest.len(),
            });
        }
        let (taken, rest) = self.rest.split_at(count);
        self.rest = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CommandError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn states(&mut self) -> Result<Vec<StateRef>, CommandError> {
        let count = u32::from_be_bytes(self.array()?) as usize;
        // Checked before allocating, so a forged count cannot ask for gigabytes.
        if count > MAX_STATES {
            return Err(CommandError::Invalid(InvalidTransaction::TooManyStates {
                count,
                max: MAX_STATES,
            }));
        }
        let mut states = Vec::with_capacity(count);
        for _ in 0..count {
            let tx_hash = self.array()?;
            let output_index = u32::from_be_bytes(self.array()?);
            states.push(StateRef {
                tx_hash,
                output_index,
            });
        }
        Ok(states)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(window: TimeWindow) -> ValidatedRequest {
        ValidatedRequest::new(
            TxId([5; 32]),
            vec![StateRef::new([1; 32], 0), StateRef::new([1; 32], 9)],
            vec![StateRef::new([2; 32], 3)],
            window,
        )
        .unwrap()
    }

    #[test]
    fn commands_round_trip() {
        for window in [
            TimeWindow::default(),
            TimeWindow {
                from_ms: Some(-5),
                until_ms: None,
            },
            TimeWindow {
                from_ms: None,
                until_ms: Some(i64::MAX),
            },
            TimeWindow {
                from_ms: Some(1),
                until_ms: Some(2),
            },
        ] {
            let command = NotaryCommand::Notarise(request(window));
            assert_eq!(NotaryCommand::decode(&command.encode()), Ok(command));
        }
        let empty =
            ValidatedRequest::new(TxId([0; 32]), vec![], vec![], TimeWindow::default()).unwrap();
        let command = NotaryCommand::Notarise(empty);
        assert_eq!(NotaryCommand::decode(&command.encode()), Ok(command));
    }

    #[test]
    fn malformed_commands_are_refused_with_the_reason() {
        let good = NotaryCommand::Notarise(request(TimeWindow::default())).encode();
        assert_eq!(NotaryCommand::decode(&[]), Err(CommandError::Empty));
        assert_eq!(
            NotaryCommand::decode(&[9, 1, 2]),
            Err(CommandError::UnknownKind(9))
        );
        assert!(matches!(
            NotaryCommand::decode(&good[..good.len() - 1]),
            Err(CommandError::Truncated { .. })
        ));
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(
            NotaryCommand::decode(&trailing),
            Err(CommandError::TrailingBytes(1))
        );
        let mut flags = good.clone();
        *flags.last_mut().unwrap() = 4;
        assert_eq!(
            NotaryCommand::decode(&flags),
            Err(CommandError::UnknownWindowFlags(4))
        );
        // A forged count far beyond the limit is refused before anything is allocated.
        let mut huge = vec![KIND_NOTARISE];
        huge.extend_from_slice(&[0; 32]);
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            NotaryCommand::decode(&huge),
            Err(CommandError::Invalid(
                InvalidTransaction::TooManyStates { .. }
            ))
        ));
        // The same input twice: the decoder re-checks what the encoder guarantees.
        let mut twice = vec![KIND_NOTARISE];
        twice.extend_from_slice(&[0; 32]);
        twice.extend_from_slice(&2u32.to_be_bytes());
        for _ in 0..2 {
            twice.extend_from_slice(&[1; 32]);
            twice.extend_from_slice(&0u32.to_be_bytes());
        }
        twice.extend_from_slice(&0u32.to_be_bytes());
        twice.push(0);
        assert_eq!(
            NotaryCommand::decode(&twice),
            Err(CommandError::Invalid(InvalidTransaction::DuplicateInput(
                StateRef::new([1; 32], 0)
            )))
        );
        assert!(matches!(
            NotaryCommand::decode(&vec![KIND_NOTARISE; MAX_COMMAND_BYTES + 1]),
            Err(CommandError::TooLong { .. })
        ));
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            // xorshift64*: enough to scatter bytes.
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let good = NotaryCommand::Notarise(request(TimeWindow {
            from_ms: Some(3),
            until_ms: Some(4),
        }))
        .encode();
        for _ in 0..20_000 {
            let mut bytes = if next() % 2 == 0 {
                good.clone()
            } else {
                let length = (next() % 200) as usize;
                (0..length).map(|_| next() as u8).collect()
            };
            // Flip, cut or extend a little.
            for _ in 0..next() % 4 {
                if bytes.is_empty() {
                    break;
                }
                let at = (next() % bytes.len() as u64) as usize;
                match next() % 3 {
                    0 => bytes[at] ^= next() as u8,
                    1 => bytes.truncate(at),
                    _ => bytes.insert(at, next() as u8),
                }
            }
            // Whatever decodes must round-trip.
            if let Ok(command) = NotaryCommand::decode(&bytes) {
                assert_eq!(NotaryCommand::decode(&command.encode()), Ok(command));
            }
        }
    }
}
