//! The orderer node around the consensus core: the consensus loop with its durable
//! store, and the applications it hosts.

pub mod access;
pub mod applications;
pub mod atomic_broadcast;
pub mod channels;
pub mod client_tls;
pub mod directory;
pub mod envelope;
pub mod multipart;
pub mod notary;
pub mod notary_service;
pub mod operations;
pub mod participation;
pub mod runtime;
pub mod server;
pub mod state_transfer;
pub mod transport;
