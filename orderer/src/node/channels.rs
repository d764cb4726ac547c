//! Hosts the node's channels on the ordered log: applies channel commands to each
//! channel's ledger, stores the blocks it cuts and the state needed to resume (chain
//! tip, envelopes pending in the cutter) in the same write as the apply point, and
//! proposes Time-To-Cut when a pending batch has waited `BatchTimeout`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use channel::block_hash::header_bytes;
use channel::genesis::{config_from_pb, config_to_pb};
use channel::{BatchConfig, ChainTip, ChannelCommand, Ledger, genesis_block};
use proto::common::{
    Block, LastConfig, Metadata, MetadataSignature, OrdererBlockMetadata, SignatureHeader,
};
use proto::prost::Message as _;
use proto::synod::channel::ChannelConfig;
use sha2::{Digest, Sha256};

use crate::core::{Command, Slot, Tag, Value};
use crate::node::directory::{Directory, Outcome};
use crate::node::runtime::Application;
use crate::storage::{Store, StoreError, Table, WriteSet};

const TIP_PREFIX: &[u8] = b"tip/";
const PENDING_PREFIX: &[u8] = b"pending/";
const TX_PREFIX: &[u8] = b"tx/";
const SIGNATURES_INDEX: usize = 0;

/// Key recording that `tx_id` was ordered on `channel` (Broadcast refuses a second
/// envelope with the same id, and the apply path drops one that raced past it).
pub fn tx_key(channel: &str, tx_id: &str) -> Vec<u8> {
    [TX_PREFIX, channel.as_bytes(), b"\0", tx_id.as_bytes()].concat()
}

/// How this node signs the blocks it stores, as Fabric's orderers do: one signature in
/// the `SIGNATURES` metadata over `value ‖ signature_header ‖ header bytes`.
#[derive(Clone)]
pub struct BlockSigner {
    /// PKCS#8 PEM of the node's signing key.
    pub key_pem: String,
    /// Marshaled `msp.SerializedIdentity` of the node.
    pub creator: Vec<u8>,
}

impl BlockSigner {
    fn sign(&self, block: &mut Block, last_config: u64) -> Result<(), ca::CaError> {
        let Some(header) = block.header.as_ref() else {
            return Ok(());
        };
        let header_bytes = header_bytes(header.number, &header.previous_hash, &header.data_hash);
        // A nonce unique per block and signer, without a random source in the loop.
        let nonce = Sha256::new()
            .chain_update(&header_bytes)
            .chain_update(&self.creator)
            .finalize()[..24]
            .to_vec();
        let signature_header = SignatureHeader {
            creator: self.creator.clone(),
            nonce,
        }
        .encode_to_vec();
        let value = OrdererBlockMetadata {
            last_config: Some(LastConfig { index: last_config }),
            consenter_metadata: Metadata::default().encode_to_vec(),
        }
        .encode_to_vec();
        let signed = [&value[..], &signature_header, &header_bytes].concat();
        let signature = ca::signature::sign(&self.key_pem, &signed)?;
        let metadata = Metadata {
            value,
            signatures: vec![MetadataSignature {
                signature_header,
                signature,
                identifier_header: Vec::new(),
            }],
        };
        if let Some(entries) = block.metadata.as_mut() {
            entries.metadata[SIGNATURES_INDEX] = metadata.encode_to_vec();
        }
        Ok(())
    }
}

/// Key of block `number` of `channel` in `Table::Blocks`: ordered by channel, then
/// number, so a scan from a block onwards reads the chain in order.
pub fn block_key(channel: &str, number: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(channel.len() + 9);
    key.extend_from_slice(channel.as_bytes());
    key.push(0);
    key.extend_from_slice(&number.to_be_bytes());
    key
}

fn tip_key(channel: &str) -> Vec<u8> {
    [TIP_PREFIX, channel.as_bytes()].concat()
}

fn pending_key(channel: &str, index: u32) -> Vec<u8> {
    let mut key = [PENDING_PREFIX, channel.as_bytes(), b"\0"].concat();
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// The stored form of a channel's resume point: tip and configuration.
fn encode_tip(tip: &ChainTip, config: &BatchConfig) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&tip.height.to_be_bytes());
    out.extend_from_slice(&tip.last_config.to_be_bytes());
    out.push(tip.last_hash.len() as u8);
    out.extend_from_slice(&tip.last_hash);
    out.extend_from_slice(&config_to_pb(config).encode_to_vec());
    out
}

fn decode_tip(bytes: &[u8]) -> Result<(ChainTip, BatchConfig), String> {
    let too_short = || "channel tip record is truncated".to_string();
    let height = u64::from_be_bytes(bytes.get(0..8).ok_or_else(too_short)?.try_into().unwrap());
    let last_config =
        u64::from_be_bytes(bytes.get(8..16).ok_or_else(too_short)?.try_into().unwrap());
    let hash_len = *bytes.get(16).ok_or_else(too_short)? as usize;
    let last_hash = bytes.get(17..17 + hash_len).ok_or_else(too_short)?.to_vec();
    let config = ChannelConfig::decode(&bytes[17 + hash_len..]).map_err(|e| e.to_string())?;
    Ok((
        ChainTip {
            height,
            last_hash,
            last_config,
        },
        config_from_pb(&config)?,
    ))
}

struct Hosted {
    ledger: Ledger,
    /// Pending envelopes as stored (keys `0..persisted_pending`).
    persisted_pending: u32,
    /// Lowest pending index changed by the write being prepared, if any.
    first_unsealed: Option<u32>,
    /// The tip changed in the write being prepared.
    tip_unsealed: bool,
    /// When the current pending batch started waiting (local clock), and whether a
    /// Time-To-Cut was already proposed for it.
    pending_since_ms: Option<u64>,
    time_to_cut_sent_ms: Option<u64>,
}

/// Counters for operators and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelStats {
    pub blocks: u64,
    pub envelopes: u64,
    /// Commands that did not decode; a correct replica never proposes one.
    pub malformed_commands: u64,
    /// Commands for a channel this node does not have.
    pub unknown_channel_commands: u64,
    /// Envelopes dropped because their transaction id was already ordered.
    pub duplicate_envelopes: u64,
    /// Blocks stored unsigned because signing failed.
    pub signing_failures: u64,
}

pub struct ChannelHost {
    store: Arc<Store>,
    directory: Arc<Directory>,
    signer: Option<BlockSigner>,
    channels: BTreeMap<String, Hosted>,
    now_ms: u64,
    /// Channels whose height changed in the write being prepared.
    new_heights: Vec<(String, u64)>,
    /// Transaction ids ordered in the write being prepared (not yet in the store).
    fresh_tx_ids: HashSet<(String, String)>,
    /// Broadcast answers released once the write is durable.
    outcomes: Vec<(String, String, Outcome)>,
    stats: ChannelStats,
}

impl ChannelHost {
    /// Loads every channel's resume point from the store and publishes the channels.
    pub fn load(
        store: Arc<Store>,
        directory: Arc<Directory>,
        signer: Option<BlockSigner>,
    ) -> Result<ChannelHost, StoreError> {
        let mut channels = BTreeMap::new();
        let mut from = TIP_PREFIX.to_vec();
        loop {
            let page = store.scan(Table::ChannelMeta, &from, 1_000)?;
            for (key, value) in &page.entries {
                let Some(name) = key.strip_prefix(TIP_PREFIX) else {
                    break;
                };
                let name = String::from_utf8_lossy(name).into_owned();
                let (tip, config) = decode_tip(value).map_err(|why| StoreError::Corrupt {
                    path: store.path().to_path_buf(),
                    what: format!("channel {name}: {why}"),
                })?;
                let mut pending = Vec::new();
                let mut index = 0u32;
                while let Some(envelope) =
                    store.get(Table::ChannelMeta, &pending_key(&name, index))?
                {
                    pending.push(Bytes::from(envelope));
                    index += 1;
                }
                let ledger = Ledger::new(name.clone(), config, tip, pending);
                channels.insert(
                    name,
                    Hosted {
                        ledger,
                        persisted_pending: index,
                        first_unsealed: None,
                        tip_unsealed: false,
                        pending_since_ms: None,
                        time_to_cut_sent_ms: None,
                    },
                );
            }
            match page.next_key {
                Some(next) if next.starts_with(TIP_PREFIX) => from = next,
                _ => break,
            }
        }
        for (name, hosted) in &channels {
            directory.publish(
                name,
                *hosted.ledger.batch_config(),
                hosted.ledger.tip().height,
            );
        }
        Ok(ChannelHost {
            store,
            directory,
            signer,
            channels,
            now_ms: 0,
            new_heights: Vec::new(),
            fresh_tx_ids: HashSet::new(),
            outcomes: Vec::new(),
            stats: ChannelStats::default(),
        })
    }

    pub fn stats(&self) -> &ChannelStats {
        &self.stats
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Channel names and heights.
    pub fn channels(&self) -> Vec<(String, u64)> {
        self.channels
            .iter()
            .map(|(name, hosted)| (name.clone(), hosted.ledger.tip().height))
            .collect()
    }

    fn create(&mut self, name: &str, config: BatchConfig, write: &mut WriteSet) {
        if self.channels.contains_key(name) {
            return;
        }
        let (block, tip) = genesis_block(name, &config);
        write
            .puts
            .push((Table::Blocks, block_key(name, 0), block.encode_to_vec()));
        write
            .puts
            .push((Table::ChannelMeta, tip_key(name), encode_tip(&tip, &config)));
        self.new_heights.push((name.to_string(), tip.height));
        self.stats.blocks += 1;
        self.channels.insert(
            name.to_string(),
            Hosted {
                ledger: Ledger::new(name.to_string(), config, tip, Vec::new()),
                persisted_pending: 0,
                first_unsealed: None,
                tip_unsealed: false,
                pending_since_ms: None,
                time_to_cut_sent_ms: None,
            },
        );
    }

    fn sign(&mut self, block: &mut Block, last_config: u64) {
        if let Some(signer) = &self.signer {
            if signer.sign(block, last_config).is_err() {
                self.stats.signing_failures += 1;
            }
        }
    }

    /// Whether `tx_id` was already ordered on `name` (stored, or earlier in this write).
    fn seen(&self, name: &str, tx_id: &str) -> bool {
        let key = (name.to_string(), tx_id.to_string());
        if self.fresh_tx_ids.contains(&key) {
            return true;
        }
        // A read failure here would make replicas diverge; the store refuses writes
        // after I/O errors anyway, so treat it as not seen and let the write fail.
        matches!(
            self.store.get(Table::ChannelMeta, &tx_key(name, tx_id)),
            Ok(Some(_))
        )
    }

    fn apply_command(&mut self, name: &str, command: ChannelCommand, write: &mut WriteSet) {
        if let ChannelCommand::Create { config } = command {
            self.create(name, config, write);
            return;
        }
        if !self.channels.contains_key(name) {
            self.stats.unknown_channel_commands += 1;
            return;
        }
        if let ChannelCommand::Envelope { tx_id, .. } = &command {
            if self.seen(name, tx_id) {
                self.stats.duplicate_envelopes += 1;
                self.outcomes
                    .push((name.to_string(), tx_id.clone(), Outcome::Duplicate));
                return;
            }
            self.stats.envelopes += 1;
            self.fresh_tx_ids.insert((name.to_string(), tx_id.clone()));
            write
                .puts
                .push((Table::ChannelMeta, tx_key(name, tx_id), Vec::new()));
            self.outcomes
                .push((name.to_string(), tx_id.clone(), Outcome::Ordered));
        }
        let now_ms = self.now_ms;
        let hosted = self.channels.get_mut(name).expect("checked above");
        let mut applied = hosted.ledger.apply(command);
        let cut = !applied.blocks.is_empty();
        let last_config = hosted.ledger.tip().last_config;
        for block in &mut applied.blocks {
            let number = block.header.as_ref().map_or(0, |h| h.number);
            self.sign(block, last_config);
            write.puts.push((
                Table::Blocks,
                block_key(name, number),
                block.encode_to_vec(),
            ));
            self.stats.blocks += 1;
        }
        let hosted = self.channels.get_mut(name).expect("checked above");
        // The stored pending envelopes and tip are brought up to date once per write,
        // in `seal`: several commands of one write may cut and refill the batch.
        let first_changed = if cut {
            0
        } else {
            hosted.ledger.pending().len().saturating_sub(1) as u32
        };
        hosted.first_unsealed = Some(
            hosted
                .first_unsealed
                .map_or(first_changed, |f| f.min(first_changed)),
        );
        if cut {
            hosted.tip_unsealed = true;
            self.new_heights
                .push((name.to_string(), hosted.ledger.tip().height));
            hosted.pending_since_ms = None;
            hosted.time_to_cut_sent_ms = None;
        }
        if applied.pending && hosted.pending_since_ms.is_none() {
            hosted.pending_since_ms = Some(now_ms);
        }
    }

    /// Time-To-Cut commands due at `now_ms`: one per channel whose pending batch has
    /// waited its batch timeout (again after another timeout if it is still pending,
    /// in case the first was lost with a crashed replica).
    pub fn due_time_to_cut(&mut self, now_ms: u64) -> Vec<Command> {
        self.now_ms = now_ms;
        let mut due = Vec::new();
        for (name, hosted) in &mut self.channels {
            let Some(since) = hosted.pending_since_ms else {
                continue;
            };
            let timeout = hosted.ledger.batch_config().batch_timeout_ms;
            let last = hosted.time_to_cut_sent_ms.unwrap_or(since);
            if now_ms >= last + timeout {
                hosted.time_to_cut_sent_ms = Some(now_ms);
                due.push(Command {
                    tag: Tag::Channel(name.clone()),
                    payload: ChannelCommand::TimeToCut {
                        block_number: hosted.ledger.tip().height,
                    }
                    .encode(),
                });
            }
        }
        due
    }
}

impl Application for ChannelHost {
    fn apply(&mut self, _slot: Slot, value: &Value, write: &mut WriteSet) {
        let Value::Batch(batch) = value else {
            return;
        };
        for command in &batch.commands {
            let Tag::Channel(name) = &command.tag else {
                continue;
            };
            match ChannelCommand::decode(&command.payload) {
                Ok(channel_command) => self.apply_command(name, channel_command, write),
                Err(_) => self.stats.malformed_commands += 1,
            }
        }
    }

    fn seal(&mut self, write: &mut WriteSet) {
        for (name, hosted) in &mut self.channels {
            if let Some(first) = hosted.first_unsealed.take() {
                // The write set deletes before it puts: delete only the keys past the
                // new end, and (re)write the changed ones.
                let pending = hosted.ledger.pending();
                let end = pending.len() as u32;
                for index in end..hosted.persisted_pending {
                    write
                        .deletes
                        .push((Table::ChannelMeta, pending_key(name, index)));
                }
                for (index, envelope) in pending.iter().enumerate().skip(first as usize) {
                    write.puts.push((
                        Table::ChannelMeta,
                        pending_key(name, index as u32),
                        envelope.to_vec(),
                    ));
                }
                hosted.persisted_pending = end;
            }
            if std::mem::take(&mut hosted.tip_unsealed) {
                write.puts.push((
                    Table::ChannelMeta,
                    tip_key(name),
                    encode_tip(hosted.ledger.tip(), hosted.ledger.batch_config()),
                ));
            }
        }
    }

    fn committed(&mut self) {
        for (name, height) in self.new_heights.drain(..) {
            if let Some(hosted) = self.channels.get(&name) {
                self.directory
                    .publish(&name, *hosted.ledger.batch_config(), height);
            }
        }
        for (name, tx_id, outcome) in self.outcomes.drain(..) {
            self.directory.resolve(&name, &tx_id, outcome);
        }
        self.fresh_tx_ids.clear();
    }

    fn abandoned(&mut self, commands: Vec<Command>) {
        for command in commands {
            let Tag::Channel(name) = &command.tag else {
                continue;
            };
            if let Ok(ChannelCommand::Envelope { tx_id, .. }) =
                ChannelCommand::decode(&command.payload)
            {
                self.directory.resolve(name, &tx_id, Outcome::Abandoned);
            }
        }
    }

    fn due_commands(&mut self, now_ms: u64) -> Vec<Command> {
        self.due_time_to_cut(now_ms)
    }

    fn majority_reachable(&mut self, reachable: bool) {
        self.directory.set_majority_reachable(reachable);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tips_round_trip_and_truncation_is_an_error() {
        let tip = ChainTip {
            height: 9,
            last_hash: vec![3; 32],
            last_config: 4,
        };
        let config = BatchConfig::default();
        let bytes = encode_tip(&tip, &config);
        assert_eq!(decode_tip(&bytes), Ok((tip, config)));
        assert!(decode_tip(&bytes[..20]).is_err());
    }

    fn envelope(tx: u32) -> Value {
        Value::Batch(Arc::new(crate::core::Batch {
            time_ms: 0,
            commands: vec![Command {
                tag: Tag::Channel("demo".into()),
                payload: ChannelCommand::Envelope {
                    bytes: Bytes::from(vec![tx as u8; 10]),
                    tx_id: format!("tx{tx}"),
                    is_config: false,
                }
                .encode(),
            }],
        }))
    }

    /// Several commands in one write that cut and refill the batch must leave exactly
    /// the new pending envelopes on disk (the write set deletes before it puts).
    #[test]
    fn pending_envelopes_survive_a_restart_after_cuts_within_one_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let directory = Arc::new(Directory::new(10));
        let mut host = ChannelHost::load(store.clone(), directory.clone(), None).unwrap();
        let config = BatchConfig {
            max_message_count: 4,
            ..BatchConfig::default()
        };
        let mut slot = 0;
        let mut commit = |host: &mut ChannelHost, values: Vec<Value>| {
            let mut write = WriteSet::default();
            for value in values {
                host.apply(slot, &value, &mut write);
                slot += 1;
            }
            host.seal(&mut write);
            write.applied_upto = Some(slot);
            store.commit(write).unwrap();
            host.committed();
        };
        let create = Value::Batch(Arc::new(crate::core::Batch {
            time_ms: 0,
            commands: vec![Command {
                tag: Tag::Channel("demo".into()),
                payload: ChannelCommand::Create { config }.encode(),
            }],
        }));
        commit(&mut host, vec![create, envelope(1), envelope(2)]);
        // One write: appends a third envelope, then a fourth fills the block (cut).
        commit(&mut host, vec![envelope(3), envelope(4)]);
        assert!(host.channels["demo"].ledger.pending().is_empty());
        // Another: cut nothing, append two.
        commit(&mut host, vec![envelope(5)]);
        commit(
            &mut host,
            vec![
                envelope(6),
                envelope(7),
                envelope(8),
                envelope(9),
                envelope(10),
            ],
        );
        let before: Vec<Bytes> = host.channels["demo"].ledger.pending().to_vec();
        assert_eq!(before.len(), 2);
        let reloaded = ChannelHost::load(store.clone(), directory, None).unwrap();
        assert_eq!(reloaded.channels["demo"].ledger.pending(), &before[..]);
        assert_eq!(
            reloaded.channels["demo"].ledger.tip(),
            host.channels["demo"].ledger.tip()
        );
    }

    #[test]
    fn block_keys_sort_by_channel_then_number() {
        assert!(block_key("a", 255) < block_key("a", 256));
        assert!(block_key("a", u64::MAX) < block_key("ab", 0));
    }
}
