//! Synod's orderer: the leaderless consensus core and its deterministic simulator.

pub mod core;
pub mod sim;
