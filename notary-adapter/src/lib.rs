//! Corda-style notarisation as an application of Synod's ordered log: pure logic, no
//! networking. A node hosts it in four steps:
//!
//! 1. **Before ordering**, [`check_request`] checks a `synod.notary.NotariseRequest`
//!    (limits, the caller's membership and role, the transaction's shape, the caller's
//!    signature) and gives a [`CheckedRequest`] whose [`command`](CheckedRequest::command)
//!    the node orders as [`NotaryCommand::encode`] bytes under the log's notary tag. A
//!    refusal becomes an answer with [`wire::check_error`].
//! 2. **When a batch is applied**, the node decodes its notary commands
//!    ([`NotaryCommand::decode`] never panics; a command that does not decode is skipped,
//!    alike on every replica) and calls [`Uniqueness::apply_batch`] with the batch's
//!    `time_ms`, its notary requests in log order, and a view of its notary table
//!    ([`KeyValueRead`], wrapped in an [`Overlay`] when several slots are applied before
//!    one write). It does so for every decided batch, with or without notary requests,
//!    so the agreed time follows the same batches on every replica. The returned puts go
//!    into the same write as the apply point.
//! 3. **Once that write is durable**, the node signs the successes with its
//!    [`NodeSigner`]: [`NodeSigner::sign_one`] each, or [`NodeSigner::sign_batch`] once
//!    for all of them, and answers every waiting caller ([`wire::signed_response`],
//!    [`wire::outcome_error`]).
//! 4. **The caller** builds its request with [`sign_request`] and checks the answer with
//!    [`verify_response`].
//!
//! # Semantics
//!
//! As Corda's uniqueness provider (see [`uniqueness`] for the exact rules): an input or
//! reference that another transaction consumed is a conflict, reported per state with
//! SHA-256 of the consuming transaction's id and whether the request names it as an
//! input or a reference; if every conflict was consumed by this very transaction the
//! request succeeds again (an idempotent re-send); a reference-only transaction succeeds
//! on a re-send only if it was committed before; the time window is checked, only when
//! there is no conflict, against the log's agreed time (from inclusive, until
//! exclusive). Success consumes every input and commits the transaction id; references
//! are never consumed. The agreed time is the largest batch time seen so far (batches
//! carry their proposers' clocks, which disagree), persisted with the state.
//!
//! Before ordering, a request is refused as `TransactionInvalid` for more than
//! [`MAX_STATES`] inputs and references together, a state named twice (as input, as
//! reference, or as both), a tx id or state hash that is not 32 bytes, an empty time
//! window, another notary's name, more signatures wanted than configured, or a field
//! over its size limit; as `NotAMember`, `Revoked` or `WrongRole` for the caller's
//! certificate; as `RequestSignatureInvalid` for its signature.
//!
//! # Byte formats
//!
//! Integers are big-endian. A state is its transaction hash (32 bytes) followed by its
//! output index (u32). A state list is its count (u32) followed by the states sorted
//! ascending by (hash, index). A time window is a flag byte (bit 0: from present, bit 1:
//! until present) followed by the present ends (i64 ms, from first).
//!
//! * **Canonical request** (what the caller signs with its certificate's key):
//!   `"synod.notary.request.v1\0"` ‖ tx id (32) ‖ inputs ‖ references ‖ time window ‖
//!   notary name length (u32) ‖ notary name (UTF-8, empty if the request names none).
//! * **Ordered command**: kind `0x01` (notarise) ‖ tx id ‖ inputs ‖ references ‖ time
//!   window. No certificate or signature: they were checked before ordering.
//! * **Signed message** (what a node signs, see [`signing`]): for one transaction
//!   SHA-256(`"synod.notary.signed-tx.v1\0"` ‖ tx id); for a batch
//!   SHA-256(`"synod.notary.signed-batch.v1\0"` ‖ Merkle root).
//! * **Merkle tree** (see [`merkle`]): leaf = SHA-256(`0x00` ‖ tx id), node =
//!   SHA-256(`0x01` ‖ left ‖ right), an odd last node promoted unchanged; a proof is
//!   (root, leaf index, leaf count, siblings from the leaf up).
//! * **Stored state** (see [`store`]): consumed states, committed tx ids and the agreed
//!   time under distinct one-byte key prefixes.

pub mod agreed_time;
pub mod check;
pub mod client;
pub mod command;
pub mod merkle;
pub mod request;
pub mod signing;
pub mod store;
pub mod types;
pub mod uniqueness;
pub mod wire;

pub use agreed_time::AgreedTime;
pub use check::{CheckConfig, CheckError, CheckedRequest, check_request};
pub use client::{ClientError, NotaryTrust, VerifyError, sign_request, verify_response};
pub use command::{CommandError, NotaryCommand};
pub use merkle::{MerkleProof, MerkleTree, ProofError};
pub use request::{InvalidTransaction, MAX_STATES, ValidatedRequest};
pub use signing::{NodeSigner, SignError};
pub use store::{IndexError, KeyValueRead, MemoryStore, Overlay, Put, SpentIndex};
pub use types::{StateKind, StateRef, TimeWindow, TxId};
pub use uniqueness::{AppliedBatch, ConflictEntry, Outcome, Uniqueness};
