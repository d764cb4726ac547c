//! Synod's orderer: the leaderless consensus core, its deterministic simulator, and the
//! node around it (durable store, consensus loop, hosted channels).

pub mod admin_client;
pub mod client;
pub mod codec;
pub mod core;
pub mod dev;
pub mod node;
pub mod sim;
pub mod storage;
