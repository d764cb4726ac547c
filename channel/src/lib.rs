//! One Fabric-style channel as a pure function of the ordered log: the deterministic
//! block cutter (every replica cuts the same blocks from the same commands), Fabric's
//! block hashing and chaining, and Time-To-Cut for the batch timeout.

pub mod batch_config;
pub mod block_hash;
pub mod cutter;
pub mod genesis;
pub mod ledger;

pub use batch_config::BatchConfig;
pub use cutter::{BlockCutter, Cut};
pub use genesis::genesis_block;
pub use ledger::{
    Applied, ChainTip, ChannelCommand, CommandError, Ledger, MAX_TX_ID_BYTES, verify_chain,
};
