//! Hosts the node's channels on the ordered log: applies channel commands to each
//! channel's ledger, stores the blocks it cuts and the state needed to resume (chain
//! tip, envelopes pending in the cutter) in the same write as the apply point, and
//! proposes Time-To-Cut when a pending batch has waited `BatchTimeout`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use channel::block_hash::header_bytes;
use channel::genesis::{config_from_pb, config_to_pb, parse_join_block};
use channel::{BatchConfig, ChainTip, ChannelCommand, ChannelPolicies, Ledger, genesis_block};
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

/// Largest purge a `Remove` carries out (keys deleted, each with the store's per-entry
/// overhead): it happens in one write, and the store refuses a write above its limit,
/// which would stop the node on every replica. A channel holding more is refused,
/// deterministically, and keeps running.
pub const MAX_REMOVE_BYTES: usize = 16 << 20;
const DELETE_OVERHEAD_BYTES: usize = 16;

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

fn tx_prefix(channel: &str) -> Vec<u8> {
    [TX_PREFIX, channel.as_bytes(), b"\0"].concat()
}

/// What deleting the block keys of a channel of `height` blocks costs against
/// `MAX_REMOVE_BYTES`.
pub fn block_purge_bytes(channel: &str, height: u64) -> usize {
    let per_block = block_key(channel, 0).len() + DELETE_OVERHEAD_BYTES;
    usize::try_from(height)
        .unwrap_or(usize::MAX)
        .saturating_mul(per_block)
}

/// The stored tx-index keys of `channel`, or `None` if they cost more than
/// `budget_bytes` to delete.
pub fn stored_tx_keys(
    store: &Store,
    channel: &str,
    budget_bytes: usize,
) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
    let prefix = tx_prefix(channel);
    let mut end = prefix.clone();
    // The prefix ends with the 0 separator: its successor ends with 1.
    end[prefix.len() - 1] = 1;
    let mut keys = Vec::new();
    let mut bytes = 0usize;
    let mut from = prefix;
    loop {
        let page = store.scan_range(Table::ChannelMeta, &from, Some(&end), 10_000)?;
        for (key, _) in page.entries {
            bytes += key.len() + DELETE_OVERHEAD_BYTES;
            if bytes > budget_bytes {
                return Ok(None);
            }
            keys.push(key);
        }
        match page.next_key {
            Some(next) => from = next,
            None => return Ok(Some(keys)),
        }
    }
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

/// The policies in a stored channel's genesis block. A block stored before Synod read
/// policies may carry some it cannot use: the channel then keeps the defaults it ran
/// with until now, and the log says so.
fn stored_policies(store: &Store, name: &str) -> Result<ChannelPolicies, StoreError> {
    let Some(block) = store.get(Table::Blocks, &block_key(name, 0))? else {
        return Err(StoreError::Corrupt {
            path: store.path().to_path_buf(),
            what: format!("channel {name} has no genesis block"),
        });
    };
    Ok(match parse_join_block(&block) {
        Ok(joined) => joined.policies,
        Err(why) => {
            crate::log_line!(
                "channel {name}: the policies of its genesis block cannot be used ({why}); \
                 applying the default ones: {}",
                describe(&ChannelPolicies::default())
            );
            ChannelPolicies::default()
        }
    })
}

/// `Readers one of ..., Writers one of ..., Admins one of ...`.
fn describe(policies: &ChannelPolicies) -> String {
    channel::PolicyName::ALL
        .iter()
        .map(|name| format!("{name} {}", policies.get(*name)))
        .collect::<Vec<_>>()
        .join("; ")
}

struct Hosted {
    ledger: Ledger,
    /// From its genesis block, for the services' checks.
    policies: Arc<ChannelPolicies>,
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
    /// Joins whose block was not a usable genesis block for the channel they name.
    pub refused_joins: u64,
    /// Removals of channels too large to purge in one write (see `MAX_REMOVE_BYTES`).
    pub refused_removes: u64,
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
    /// Channels removed in the write being prepared, in order (the directory drops them
    /// once it is durable).
    removed: Vec<String>,
    /// The same as a set: their stored keys are already deleted in this write, so the
    /// store no longer speaks for a channel of that name created again in it.
    removed_in_write: HashSet<String>,
    /// `MAX_REMOVE_BYTES`, lowered by tests.
    max_remove_bytes: usize,
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
                let policies = Arc::new(stored_policies(&store, &name)?);
                channels.insert(
                    name,
                    Hosted {
                        ledger,
                        policies,
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
                &hosted.policies,
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
            removed: Vec::new(),
            removed_in_write: HashSet::new(),
            max_remove_bytes: MAX_REMOVE_BYTES,
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
        let (block, tip) = genesis_block(name, &config);
        let policies = ChannelPolicies::default();
        self.start_chain(name, config, policies, tip, block.encode_to_vec(), write);
    }

    /// Starts `name` from an operator's genesis block, stored exactly as given so that
    /// every replica holds the same block 0. The first Join or Create of a name wins;
    /// later ones are repeats.
    fn join(&mut self, name: &str, block: &Bytes, write: &mut WriteSet) {
        if self.channels.contains_key(name) {
            return;
        }
        match parse_join_block(block) {
            Ok(joined) if joined.channel_id == name => {
                let (config, policies, tip) = (joined.config, joined.policies, joined.tip);
                self.start_chain(name, config, policies, tip, block.to_vec(), write);
            }
            _ => self.stats.refused_joins += 1,
        }
    }

    fn start_chain(
        &mut self,
        name: &str,
        config: BatchConfig,
        policies: ChannelPolicies,
        tip: ChainTip,
        block: Vec<u8>,
        write: &mut WriteSet,
    ) {
        if self.channels.contains_key(name) {
            return;
        }
        write.puts.push((Table::Blocks, block_key(name, 0), block));
        write
            .puts
            .push((Table::ChannelMeta, tip_key(name), encode_tip(&tip, &config)));
        self.new_heights.push((name.to_string(), tip.height));
        self.stats.blocks += 1;
        self.channels.insert(
            name.to_string(),
            Hosted {
                ledger: Ledger::new(name.to_string(), config, tip, Vec::new()),
                policies: Arc::new(policies),
                persisted_pending: 0,
                first_unsealed: None,
                tip_unsealed: false,
                pending_since_ms: None,
                time_to_cut_sent_ms: None,
            },
        );
    }

    /// Drops `name` with its blocks, tip, pending envelopes and tx-id index. What it
    /// deletes must not depend on how this replica grouped slots into writes: keys put
    /// earlier in this write are taken out of it, and stored keys count only if no
    /// earlier removal in this write deleted them already.
    fn remove(&mut self, name: &str, write: &mut WriteSet) {
        let Some(hosted) = self.channels.get(name) else {
            self.stats.unknown_channel_commands += 1;
            return;
        };
        let height = hosted.ledger.tip().height;
        let persisted_pending = hosted.persisted_pending;
        let fresh_bytes: usize = self
            .fresh_tx_ids
            .iter()
            .filter(|(channel, _)| channel == name)
            .map(|(_, tx_id)| tx_key(name, tx_id).len() + DELETE_OVERHEAD_BYTES)
            .sum();
        let budget = self
            .max_remove_bytes
            .checked_sub(block_purge_bytes(name, height))
            .and_then(|left| left.checked_sub(fresh_bytes));
        let stored = match budget {
            Some(_) if self.removed_in_write.contains(name) => Some(Vec::new()),
            // A read failure is treated as "too large": the store refuses writes after
            // I/O errors, so this write never lands anyway.
            Some(budget) => stored_tx_keys(&self.store, name, budget).unwrap_or(None),
            None => None,
        };
        let Some(stored) = stored else {
            self.stats.refused_removes += 1;
            return;
        };
        for number in 0..height {
            write.deletes.push((Table::Blocks, block_key(name, number)));
        }
        write.deletes.push((Table::ChannelMeta, tip_key(name)));
        for index in 0..persisted_pending {
            write
                .deletes
                .push((Table::ChannelMeta, pending_key(name, index)));
        }
        for key in stored {
            write.deletes.push((Table::ChannelMeta, key));
        }
        let block_prefix = block_key(name, 0);
        let block_prefix = &block_prefix[..block_prefix.len() - 8];
        let tip = tip_key(name);
        let txs = tx_prefix(name);
        write.puts.retain(|(table, key, _)| match table {
            Table::Blocks => !key.starts_with(block_prefix),
            Table::ChannelMeta => *key != tip && !key.starts_with(&txs),
            _ => true,
        });
        self.fresh_tx_ids.retain(|(channel, _)| channel != name);
        self.new_heights.retain(|(channel, _)| channel != name);
        self.channels.remove(name);
        self.removed_in_write.insert(name.to_string());
        self.removed.push(name.to_string());
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
        if self.removed_in_write.contains(name) {
            return false;
        }
        // A read failure here would make replicas diverge; the store refuses writes
        // after I/O errors anyway, so treat it as not seen and let the write fail.
        matches!(
            self.store.get(Table::ChannelMeta, &tx_key(name, tx_id)),
            Ok(Some(_))
        )
    }

    fn apply_command(&mut self, name: &str, command: ChannelCommand, write: &mut WriteSet) {
        match &command {
            ChannelCommand::Create { config } => return self.create(name, *config, write),
            ChannelCommand::Join { block } => return self.join(name, block, write),
            ChannelCommand::Remove => return self.remove(name, write),
            ChannelCommand::Envelope { .. } | ChannelCommand::TimeToCut { .. } => {}
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
        // Removals first: a channel removed and created again in one write is published
        // afresh below.
        for name in self.removed.drain(..) {
            self.directory.remove(&name);
        }
        self.removed_in_write.clear();
        for (name, height) in self.new_heights.drain(..) {
            if let Some(hosted) = self.channels.get(&name) {
                self.directory.publish(
                    &name,
                    *hosted.ledger.batch_config(),
                    &hosted.policies,
                    height,
                );
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

    fn reload(&mut self) -> Result<(), StoreError> {
        let fresh = ChannelHost::load(
            self.store.clone(),
            self.directory.clone(),
            self.signer.clone(),
        )?;
        // Channels the snapshot does not hold are gone here too.
        for name in self.channels.keys() {
            if !fresh.channels.contains_key(name) {
                self.directory.remove(name);
            }
        }
        let stats = std::mem::take(&mut self.stats);
        *self = fresh;
        self.stats = stats;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies `values` from `slot` on as one write, as the consensus loop would.
    fn commit_values(store: &Store, host: &mut ChannelHost, slot: &mut Slot, values: Vec<Value>) {
        let mut write = WriteSet::default();
        for value in values {
            host.apply(*slot, &value, &mut write);
            *slot += 1;
        }
        host.seal(&mut write);
        write.applied_upto = Some(*slot);
        store.commit(write).unwrap();
        host.committed();
    }

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
            commit_values(&store, host, &mut slot, values)
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

    fn on(channel: &str, command: ChannelCommand) -> Value {
        Value::Batch(Arc::new(crate::core::Batch {
            time_ms: 0,
            commands: vec![Command {
                tag: Tag::Channel(channel.into()),
                payload: command.encode(),
            }],
        }))
    }

    fn join(channel: &str, max_message_count: u32) -> ChannelCommand {
        let config = BatchConfig {
            max_message_count,
            ..BatchConfig::default()
        };
        ChannelCommand::Join {
            block: genesis_block(channel, &config).0.encode_to_vec().into(),
        }
    }

    fn table(store: &Store, table: Table) -> Vec<(Vec<u8>, Vec<u8>)> {
        store.scan(table, b"", 100_000).unwrap().entries
    }

    /// What the channel tables hold, the channels the directory publishes, and the
    /// counters.
    type GroupedRun = (
        Vec<Vec<(Vec<u8>, Vec<u8>)>>,
        Vec<(String, u64)>,
        ChannelStats,
    );

    /// Applies `values` in writes of the given sizes.
    fn run_grouped(values: &[Value], sizes: &[usize]) -> GroupedRun {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let directory = Arc::new(Directory::new(10));
        let mut host = ChannelHost::load(store.clone(), directory.clone(), None).unwrap();
        let mut values = values.iter();
        let mut slot = 0;
        for size in sizes.iter().cycle() {
            let chunk: Vec<&Value> = values.by_ref().take(*size).collect();
            if chunk.is_empty() {
                break;
            }
            let mut write = WriteSet::default();
            for value in chunk {
                host.apply(slot, value, &mut write);
                slot += 1;
            }
            host.seal(&mut write);
            write.applied_upto = Some(slot);
            store.commit(write).unwrap();
            host.committed();
        }
        let tables = vec![
            table(&store, Table::Blocks),
            table(&store, Table::ChannelMeta),
        ];
        // A restart sees what the running host saw.
        let reloaded = ChannelHost::load(store.clone(), Arc::new(Directory::new(10)), None);
        assert_eq!(reloaded.unwrap().channels(), host.channels());
        (tables, directory.channel_names(), host.stats().clone())
    }

    /// Joining, removing and joining a channel again, with envelopes in between that
    /// reuse tx ids of the removed incarnation, leaves the same store and channels
    /// however the slots were grouped into writes.
    #[test]
    fn join_and_remove_are_the_same_whatever_the_write_grouping() {
        let values = vec![
            on("demo", join("demo", 3)),
            envelope(1),
            envelope(2),
            envelope(3),
            envelope(4),
            on("demo", ChannelCommand::Remove),
            on("demo", join("demo", 2)),
            envelope(1),
            envelope(5),
            envelope(6),
            on("demo", ChannelCommand::Remove),
            on("demo", join("demo", 3)),
            envelope(5),
            on("other", join("other", 3)),
            // Refused: the block names another channel, or it exists already.
            on("third", join("other", 3)),
            on("other", join("other", 9)),
            on("nothing", ChannelCommand::Remove),
        ];
        let reference = run_grouped(&values, &[1]);
        // Among them: a removal and a reuse of a stored tx id in one write.
        for sizes in [&[values.len()][..], &[2], &[3, 1], &[5, 3], &[10, 3]] {
            assert_eq!(
                run_grouped(&values, sizes),
                reference,
                "writes of {sizes:?}"
            );
        }
        let (tables, channels, stats) = reference;
        assert_eq!(
            channels,
            vec![("demo".to_string(), 1), ("other".to_string(), 1)]
        );
        assert_eq!(stats.duplicate_envelopes, 0, "tx ids of a removed channel");
        assert_eq!(
            (stats.refused_joins, stats.unknown_channel_commands),
            (1, 1)
        );
        // Block 0 is the joined block byte for byte; nothing of the earlier
        // incarnations is left: one pending envelope, one tx id, one tip per channel.
        let demo_genesis = match join("demo", 3) {
            ChannelCommand::Join { block } => block.to_vec(),
            _ => unreachable!(),
        };
        assert_eq!(tables[0].len(), 2);
        assert_eq!(tables[0][0], (block_key("demo", 0), demo_genesis));
        let meta_keys: Vec<&[u8]> = tables[1].iter().map(|(k, _)| &k[..]).collect();
        assert_eq!(
            meta_keys,
            vec![
                &pending_key("demo", 0)[..],
                &tip_key("demo")[..],
                &tip_key("other")[..],
                &tx_key("demo", "tx5")[..],
            ]
        );
    }

    /// The purge budget counts blocks and tx ids whether they are stored or still in
    /// the write being prepared, so every replica refuses or accepts alike.
    #[test]
    fn a_channel_too_large_to_purge_in_one_write_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let mut host =
            ChannelHost::load(store.clone(), Arc::new(Directory::new(10)), None).unwrap();
        // Three blocks (genesis and two of one envelope) and two tx ids.
        let cost = block_purge_bytes("demo", 3) + 2 * (tx_key("demo", "tx1").len() + 16);
        host.max_remove_bytes = cost - 1;
        let mut slot = 0;
        let mut commit = |host: &mut ChannelHost, values: Vec<Value>| {
            commit_values(&store, host, &mut slot, values)
        };
        let remove = || on("demo", ChannelCommand::Remove);
        // In the write that ordered the envelopes, then from the store.
        commit(
            &mut host,
            vec![
                on("demo", join("demo", 1)),
                envelope(1),
                envelope(2),
                remove(),
            ],
        );
        commit(&mut host, vec![remove()]);
        assert_eq!(host.stats().refused_removes, 2);
        assert_eq!(host.channels(), vec![("demo".to_string(), 3)]);
        assert_eq!(
            stored_tx_keys(&store, "demo", 1_000)
                .unwrap()
                .map(|k| k.len()),
            Some(2)
        );
        assert_eq!(stored_tx_keys(&store, "demo", 10).unwrap(), None);
        assert_eq!(
            stored_tx_keys(&store, "dem", 1_000).unwrap(),
            Some(Vec::new())
        );

        host.max_remove_bytes = cost;
        commit(&mut host, vec![remove()]);
        assert!(host.channels().is_empty());
        assert!(table(&store, Table::Blocks).is_empty());
        assert!(table(&store, Table::ChannelMeta).is_empty());
    }

    #[test]
    fn block_keys_sort_by_channel_then_number() {
        assert!(block_key("a", 255) < block_key("a", 256));
        assert!(block_key("a", u64::MAX) < block_key("ab", 0));
    }
}
