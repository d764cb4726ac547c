//! Synod's orderer: the leaderless consensus core, its deterministic simulator, and the
//! node around it (durable store, consensus loop, hosted channels).

pub mod admin_client;
pub mod channel_create;
pub mod client;
pub mod codec;
pub mod core;
pub mod dev;
pub mod log;
pub mod node;
pub mod notary_cli;
pub mod notary_client;
pub mod sim;
pub mod storage;
