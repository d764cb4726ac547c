//! The orderer node around the consensus core: the consensus loop with its durable
//! store, and the applications it hosts.

pub mod channels;
pub mod runtime;
