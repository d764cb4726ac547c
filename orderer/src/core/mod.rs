//! The leaderless consensus core ("lanes", Mencius family), as a pure state machine.
//!
//! Inputs: a message from a peer, a client proposal, a clock reading (`tick`).
//! Outputs (`Ready`): records to make durable, then messages to send and decided slots
//! to apply, in that order. No sockets, clocks, threads or storage live here, so the
//! same code runs under the deterministic simulator, the model checker and the node.

pub mod acceptor;
pub mod config;
pub mod learner;
pub mod loopback;
pub mod message;
pub mod range_set;
pub mod record;
pub mod replica;
pub mod types;

pub use acceptor::{Acceptor, Refusal};
pub use config::Config;
pub use message::{Body, LaneInfo, Message};
pub use record::Record;
pub use replica::{Core, ProposeError, Ready, SnapshotRequest, Stats};
pub use types::{Ballot, Batch, Command, ReplicaId, Slot, Tag, Value};
