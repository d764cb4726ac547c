//! The orderer node around the consensus core: the consensus loop with its durable
//! store, and the applications it hosts.

pub mod atomic_broadcast;
pub mod channels;
pub mod directory;
pub mod envelope;
pub mod participation;
pub mod runtime;
pub mod server;
pub mod state_transfer;
pub mod transport;
