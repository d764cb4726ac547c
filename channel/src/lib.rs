//! One Fabric-style channel as a pure function of the ordered log: the deterministic
//! block cutter (every replica cuts the same blocks from the same commands), Fabric's
//! block hashing and chaining, Time-To-Cut for the batch timeout, and the channel's
//! Readers, Writers and Admins policies in its config block.

pub mod batch_config;
pub mod block_hash;
pub mod cutter;
pub mod genesis;
pub mod ledger;
pub mod policy;

pub use batch_config::BatchConfig;
pub use cutter::{BlockCutter, Cut};
pub use genesis::{genesis_block, genesis_block_with_policies};
pub use ledger::{
    Applied, ChainTip, ChannelCommand, CommandError, Ledger, MAX_TX_ID_BYTES, verify_chain,
};
pub use policy::{ChannelPolicies, ChannelPolicy, MspRole, PolicyName, Principal};
