//! A channel's chain as a deterministic function of the ordered commands: envelopes go
//! through the block cutter, Time-To-Cut commands close a pending batch, and each cut
//! batch becomes the next Fabric `common.Block` chained by header hash.

use bytes::Bytes;
use proto::common::{Block, BlockData, BlockHeader, BlockMetadata, LastConfig, Metadata};
use proto::prost::Message;

use crate::batch_config::BatchConfig;
use crate::block_hash::{data_hash, header_hash};
use crate::cutter::BlockCutter;
use crate::genesis::{config_from_pb, config_to_pb};

/// Number of metadata entries in a Fabric block (`BlockMetadataIndex` has 5 values).
pub const METADATA_ENTRIES: usize = 5;
const LAST_CONFIG_INDEX: usize = 1;

/// Where a chain ends: what the next block must chain onto.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainTip {
    /// Number of blocks so far, i.e. the number of the next block.
    pub height: u64,
    /// Header hash of block `height - 1`.
    pub last_hash: Vec<u8>,
    /// Number of the newest config block.
    pub last_config: u64,
}

/// A command of the ordered log addressed to a channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelCommand {
    /// A marshaled `common.Envelope`, validated at Broadcast, with its transaction id
    /// (applications drop a second envelope with the same id).
    Envelope {
        bytes: Bytes,
        tx_id: String,
        is_config: bool,
    },
    /// Some replica's batch timer fired for the batch that would become `block_number`.
    TimeToCut { block_number: u64 },
    /// Creates the channel with its genesis block (ignored if it exists).
    Create { config: BatchConfig },
    /// Creates the channel from a genesis block supplied by an operator (a marshaled
    /// `common.Block`, checked by `genesis::parse_join_block` where it is applied);
    /// ignored if the channel exists.
    Join { block: Bytes },
    /// Drops the channel and everything stored for it.
    Remove,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandError {
    Empty,
    UnknownKind(u8),
    Truncated,
    BadConfig(String),
    BadTxId,
    TrailingBytes,
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandError::Empty => write!(f, "empty channel command"),
            CommandError::UnknownKind(kind) => write!(f, "unknown channel command kind {kind}"),
            CommandError::Truncated => write!(f, "truncated time-to-cut command"),
            CommandError::BadConfig(why) => write!(f, "bad channel configuration: {why}"),
            CommandError::BadTxId => write!(f, "malformed transaction id in channel command"),
            CommandError::TrailingBytes => write!(f, "bytes after a channel command"),
        }
    }
}

impl std::error::Error for CommandError {}

/// Fabric's tx ids are 64 hex characters; anything much longer is not one.
pub const MAX_TX_ID_BYTES: usize = 255;

const KIND_ENVELOPE: u8 = 1;
const KIND_CONFIG_ENVELOPE: u8 = 2;
const KIND_TIME_TO_CUT: u8 = 3;
const KIND_CREATE: u8 = 4;
const KIND_JOIN: u8 = 5;
const KIND_REMOVE: u8 = 6;

impl ChannelCommand {
    /// The payload carried in the log: one kind byte, then for an envelope the length
    /// of its tx id (one byte), the tx id and the envelope; for Time-To-Cut the block
    /// number (big-endian); for Create the configuration; for Join the block; for Remove
    /// nothing.
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::new();
        match self {
            ChannelCommand::Envelope {
                bytes,
                tx_id,
                is_config,
            } => {
                assert!(
                    tx_id.len() <= MAX_TX_ID_BYTES,
                    "tx id longer than {MAX_TX_ID_BYTES} bytes"
                );
                out.reserve(2 + tx_id.len() + bytes.len());
                out.push(if *is_config {
                    KIND_CONFIG_ENVELOPE
                } else {
                    KIND_ENVELOPE
                });
                out.push(tx_id.len() as u8);
                out.extend_from_slice(tx_id.as_bytes());
                out.extend_from_slice(bytes);
            }
            ChannelCommand::TimeToCut { block_number } => {
                out.push(KIND_TIME_TO_CUT);
                out.extend_from_slice(&block_number.to_be_bytes());
            }
            ChannelCommand::Create { config } => {
                out.push(KIND_CREATE);
                out.extend_from_slice(&config_to_pb(config).encode_to_vec());
            }
            ChannelCommand::Join { block } => {
                out.reserve(1 + block.len());
                out.push(KIND_JOIN);
                out.extend_from_slice(block);
            }
            ChannelCommand::Remove => out.push(KIND_REMOVE),
        }
        Bytes::from(out)
    }

    pub fn decode(payload: &Bytes) -> Result<ChannelCommand, CommandError> {
        let (&kind, rest) = payload.split_first().ok_or(CommandError::Empty)?;
        match kind {
            KIND_ENVELOPE | KIND_CONFIG_ENVELOPE => {
                let (&length, _) = rest.split_first().ok_or(CommandError::Truncated)?;
                let end = 2 + length as usize;
                let tx_id = payload.get(2..end).ok_or(CommandError::Truncated)?;
                let tx_id = std::str::from_utf8(tx_id).map_err(|_| CommandError::BadTxId)?;
                Ok(ChannelCommand::Envelope {
                    tx_id: tx_id.to_string(),
                    bytes: payload.slice(end..),
                    is_config: kind == KIND_CONFIG_ENVELOPE,
                })
            }
            KIND_TIME_TO_CUT => {
                let number: [u8; 8] = rest.try_into().map_err(|_| CommandError::Truncated)?;
                Ok(ChannelCommand::TimeToCut {
                    block_number: u64::from_be_bytes(number),
                })
            }
            KIND_CREATE => {
                let config = proto::synod::channel::ChannelConfig::decode(rest)
                    .map_err(|e| CommandError::BadConfig(e.to_string()))?;
                Ok(ChannelCommand::Create {
                    config: config_from_pb(&config).map_err(CommandError::BadConfig)?,
                })
            }
            KIND_JOIN => Ok(ChannelCommand::Join {
                block: payload.slice(1..),
            }),
            KIND_REMOVE if rest.is_empty() => Ok(ChannelCommand::Remove),
            KIND_REMOVE => Err(CommandError::TrailingBytes),
            other => Err(CommandError::UnknownKind(other)),
        }
    }
}

/// What applying one command did.
#[derive(Debug, Default)]
pub struct Applied {
    /// New blocks, in order, without orderer signatures (each node adds its own).
    pub blocks: Vec<Block>,
    /// Envelopes wait in the cutter: the node's batch timer should run.
    pub pending: bool,
    /// A Time-To-Cut for a block that was already cut (another replica's timer won).
    pub stale_time_to_cut: bool,
}

#[derive(Debug)]
pub struct Ledger {
    channel_id: String,
    cutter: BlockCutter,
    tip: ChainTip,
}

impl Ledger {
    /// A ledger continuing from `tip`, with `pending` envelopes already in the cutter
    /// (as persisted with the apply point).
    pub fn new(
        channel_id: String,
        batch: BatchConfig,
        tip: ChainTip,
        pending: Vec<Bytes>,
    ) -> Ledger {
        let mut cutter = BlockCutter::new(batch);
        for envelope in pending {
            let cut = cutter.ordered(envelope);
            assert!(
                cut.batches.is_empty(),
                "restored pending envelopes must not fill a block"
            );
        }
        Ledger {
            channel_id,
            cutter,
            tip,
        }
    }

    pub fn channel_id(&self) -> &str {
        &self.channel_id
    }

    pub fn tip(&self) -> &ChainTip {
        &self.tip
    }

    pub fn batch_config(&self) -> &BatchConfig {
        self.cutter.config()
    }

    pub fn pending_count(&self) -> usize {
        self.cutter.pending_count()
    }

    /// Envelopes waiting in the cutter, in order (persisted with the apply point).
    pub fn pending(&self) -> &[Bytes] {
        self.cutter.pending()
    }

    /// Applies one ordered command; deterministic, so every replica cuts the same blocks.
    pub fn apply(&mut self, command: ChannelCommand) -> Applied {
        let mut applied = Applied::default();
        match command {
            ChannelCommand::Envelope {
                bytes, is_config, ..
            } => {
                if is_config {
                    // A config envelope always gets a block of its own.
                    let pending = self.cutter.cut();
                    if !pending.is_empty() {
                        applied.blocks.push(self.next_block(pending, false));
                    }
                    applied.blocks.push(self.next_block(vec![bytes], true));
                } else {
                    let cut = self.cutter.ordered(bytes);
                    for batch in cut.batches {
                        applied.blocks.push(self.next_block(batch, false));
                    }
                }
            }
            // Creation and removal are the host's business; for an existing chain a
            // creation is a repeat.
            ChannelCommand::Create { .. }
            | ChannelCommand::Join { .. }
            | ChannelCommand::Remove => {}
            ChannelCommand::TimeToCut { block_number } => {
                if block_number == self.tip.height {
                    let pending = self.cutter.cut();
                    if !pending.is_empty() {
                        applied.blocks.push(self.next_block(pending, false));
                    }
                } else {
                    // Lower: another timer already cut that block. Higher cannot be
                    // proposed by a correct replica; either way nothing to cut.
                    applied.stale_time_to_cut = true;
                }
            }
        }
        applied.pending = self.cutter.pending_count() > 0;
        applied
    }

    fn next_block(&mut self, envelopes: Vec<Bytes>, is_config: bool) -> Block {
        let number = self.tip.height;
        if is_config {
            self.tip.last_config = number;
        }
        let data: Vec<Vec<u8>> = envelopes.iter().map(|e| e.to_vec()).collect();
        let data_hash = data_hash(&data).to_vec();
        let previous_hash = self.tip.last_hash.clone();
        let mut metadata = vec![Vec::new(); METADATA_ENTRIES];
        metadata[LAST_CONFIG_INDEX] = Metadata {
            value: LastConfig {
                index: self.tip.last_config,
            }
            .encode_to_vec(),
            signatures: Vec::new(),
        }
        .encode_to_vec();
        let header = BlockHeader {
            number,
            previous_hash,
            data_hash,
        };
        self.tip.last_hash = header_hash(number, &header.previous_hash, &header.data_hash).to_vec();
        self.tip.height = number + 1;
        Block {
            header: Some(header),
            data: Some(BlockData { data }),
            metadata: Some(BlockMetadata { metadata }),
        }
    }
}

/// Checks that `blocks` form a chain: consecutive numbers, each data hash matches its
/// data, each previous hash is the header hash of the block before.
pub fn verify_chain(blocks: &[Block]) -> Result<(), String> {
    let mut previous: Option<(u64, Vec<u8>)> = None;
    for block in blocks {
        let header = block.header.as_ref().ok_or("block without header")?;
        let data = block.data.as_ref().map_or(&[][..], |d| &d.data[..]);
        if data_hash(data).as_slice() != header.data_hash.as_slice() {
            return Err(format!(
                "block {}: data hash does not match its data",
                header.number
            ));
        }
        if let Some((number, hash)) = &previous {
            if header.number != number + 1 {
                return Err(format!("block {} follows block {number}", header.number));
            }
            if &header.previous_hash != hash {
                return Err(format!(
                    "block {}: previous hash does not chain",
                    header.number
                ));
            }
        }
        previous = Some((
            header.number,
            header_hash(header.number, &header.previous_hash, &header.data_hash).to_vec(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(count: u32) -> Ledger {
        let batch = BatchConfig {
            max_message_count: count,
            absolute_max_bytes: 1 << 20,
            preferred_max_bytes: 1 << 16,
            batch_timeout_ms: 100,
        };
        let tip = ChainTip {
            height: 1,
            last_hash: vec![9; 32],
            last_config: 0,
        };
        Ledger::new("demo".into(), batch, tip, Vec::new())
    }

    fn envelope(i: u8) -> ChannelCommand {
        ChannelCommand::Envelope {
            bytes: Bytes::from(vec![i; 10]),
            tx_id: format!("tx{i}"),
            is_config: false,
        }
    }

    #[test]
    fn commands_round_trip_and_bad_ones_are_refused() {
        for command in [
            envelope(3),
            ChannelCommand::Envelope {
                bytes: Bytes::from_static(b"cfg"),
                tx_id: String::new(),
                is_config: true,
            },
            ChannelCommand::TimeToCut { block_number: 77 },
            ChannelCommand::Create {
                config: BatchConfig::default(),
            },
            ChannelCommand::Join {
                block: Bytes::from_static(b"any bytes: checked where applied"),
            },
            ChannelCommand::Remove,
        ] {
            assert_eq!(ChannelCommand::decode(&command.encode()), Ok(command));
        }
        assert_eq!(
            ChannelCommand::decode(&Bytes::new()),
            Err(CommandError::Empty)
        );
        assert_eq!(
            ChannelCommand::decode(&Bytes::from_static(&[9, 1])),
            Err(CommandError::UnknownKind(9))
        );
        assert_eq!(
            ChannelCommand::decode(&Bytes::from_static(&[3, 1, 2])),
            Err(CommandError::Truncated)
        );
        // A tx id running past the end of the command.
        assert_eq!(
            ChannelCommand::decode(&Bytes::from_static(&[1, 9, b'a'])),
            Err(CommandError::Truncated)
        );
        assert_eq!(
            ChannelCommand::decode(&Bytes::from_static(&[6, 0])),
            Err(CommandError::TrailingBytes)
        );
    }

    #[test]
    fn blocks_chain_and_time_to_cut_cuts_once() {
        let mut ledger = ledger(3);
        let mut blocks = Vec::new();
        for i in 0..7 {
            blocks.extend(ledger.apply(envelope(i)).blocks);
        }
        assert_eq!(blocks.len(), 2);
        assert_eq!(ledger.pending_count(), 1);
        // Two replicas' timers fire for block 3; only the first cuts.
        let first = ledger.apply(ChannelCommand::TimeToCut { block_number: 3 });
        assert_eq!(first.blocks.len(), 1);
        assert!(!first.pending);
        let second = ledger.apply(ChannelCommand::TimeToCut { block_number: 3 });
        assert!(second.blocks.is_empty() && second.stale_time_to_cut);
        blocks.extend(first.blocks);
        assert_eq!(ledger.tip().height, 4);
        verify_chain(&blocks).unwrap();
        assert_eq!(
            blocks[0].header.as_ref().unwrap().previous_hash,
            vec![9; 32]
        );
        assert_eq!(
            blocks[0].metadata.as_ref().unwrap().metadata.len(),
            METADATA_ENTRIES
        );
    }

    #[test]
    fn a_config_envelope_gets_its_own_block_and_becomes_last_config() {
        let mut ledger = ledger(10);
        ledger.apply(envelope(1));
        let applied = ledger.apply(ChannelCommand::Envelope {
            bytes: Bytes::from_static(b"config"),
            tx_id: "config".into(),
            is_config: true,
        });
        assert_eq!(applied.blocks.len(), 2);
        assert_eq!(ledger.tip().last_config, 2);
        let last_config =
            Metadata::decode(&applied.blocks[1].metadata.as_ref().unwrap().metadata[1][..])
                .unwrap();
        assert_eq!(LastConfig::decode(&last_config.value[..]).unwrap().index, 2);
    }

    #[test]
    fn tampering_breaks_the_chain() {
        let mut ledger = ledger(1);
        let mut blocks: Vec<Block> = (0..3)
            .flat_map(|i| ledger.apply(envelope(i)).blocks)
            .collect();
        verify_chain(&blocks).unwrap();
        blocks[1].data.as_mut().unwrap().data[0][0] ^= 1;
        assert!(verify_chain(&blocks).unwrap_err().contains("data hash"));
    }

    #[test]
    fn same_commands_same_chain() {
        let run = || {
            let mut ledger = ledger(4);
            let mut hashes = Vec::new();
            for i in 0..40u8 {
                let command = if i % 9 == 0 {
                    ChannelCommand::TimeToCut {
                        block_number: ledger.tip().height,
                    }
                } else {
                    envelope(i)
                };
                ledger.apply(command);
                hashes.push(ledger.tip().last_hash.clone());
            }
            hashes
        };
        assert_eq!(run(), run());
    }
}
