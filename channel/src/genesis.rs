//! A channel's genesis block: block 0, holding one CONFIG envelope whose data is a
//! Fabric `ConfigEnvelope` with the channel's batch settings in the Orderer group and,
//! when given, its Readers, Writers and Admins policies in the channel group, as
//! Fabric's own config blocks carry them (so Fabric tools decode it). Every replica
//! builds it from the same `Create` command, so every chain starts with the same block.

use std::collections::BTreeMap;

use proto::common::{
    Block, BlockData, BlockHeader, BlockMetadata, ChannelHeader, Config, ConfigEnvelope,
    ConfigGroup, ConfigValue, Envelope, Header, HeaderType, LastConfig, Metadata, Payload,
};
use proto::orderer::{BatchSize, BatchTimeout};
use proto::prost::Message;
use proto::synod::channel as pb;

use crate::batch_config::BatchConfig;
use crate::block_hash::{data_hash, header_hash};
use crate::ledger::{ChainTip, METADATA_ENTRIES};
use crate::policy::{ChannelPolicies, channel_policies, config_policies};

const ORDERER_GROUP: &str = "Orderer";
const BATCH_SIZE: &str = "BatchSize";
const BATCH_TIMEOUT: &str = "BatchTimeout";
const ADMINS: &str = "Admins";

/// The channel configuration tree of a genesis block, without policies (the channel then
/// gets [`ChannelPolicies::default`]).
pub fn config_envelope(config: &BatchConfig) -> ConfigEnvelope {
    let value = |bytes: Vec<u8>| ConfigValue {
        version: 0,
        value: bytes,
        mod_policy: ADMINS.into(),
    };
    let batch_size = BatchSize {
        max_message_count: config.max_message_count,
        absolute_max_bytes: config.absolute_max_bytes,
        preferred_max_bytes: config.preferred_max_bytes,
    };
    let batch_timeout = BatchTimeout {
        timeout: format!("{}ms", config.batch_timeout_ms),
    };
    let orderer = ConfigGroup {
        values: BTreeMap::from([
            (BATCH_SIZE.to_string(), value(batch_size.encode_to_vec())),
            (
                BATCH_TIMEOUT.to_string(),
                value(batch_timeout.encode_to_vec()),
            ),
        ]),
        mod_policy: ADMINS.into(),
        ..Default::default()
    };
    ConfigEnvelope {
        config: Some(Config {
            sequence: 0,
            channel_group: Some(ConfigGroup {
                groups: BTreeMap::from([(ORDERER_GROUP.to_string(), orderer)]),
                mod_policy: ADMINS.into(),
                ..Default::default()
            }),
        }),
        last_update: None,
    }
}

/// The channel configuration tree of a genesis block with `policies` in the channel
/// group; refused if a policy names no principal or a principal no MSP.
pub fn config_envelope_with_policies(
    config: &BatchConfig,
    policies: &ChannelPolicies,
) -> Result<ConfigEnvelope, String> {
    let mut envelope = config_envelope(config);
    if let Some(group) = envelope
        .config
        .as_mut()
        .and_then(|c| c.channel_group.as_mut())
    {
        group.policies = config_policies(policies)?;
    }
    Ok(envelope)
}

/// Parses a Go duration of the forms Fabric's configs use for BatchTimeout
/// ("250ms", "2s", "1m").
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("duration {text:?} has no unit"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("duration {text:?} does not start with a number"))?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        _ => return Err(format!("duration {text:?}: unit must be ms, s or m")),
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("duration {text:?} overflows"))
}

/// The batch settings in a config envelope's Orderer group.
pub fn batch_config_of(envelope: &ConfigEnvelope) -> Result<BatchConfig, String> {
    let orderer = envelope
        .config
        .as_ref()
        .and_then(|c| c.channel_group.as_ref())
        .and_then(|g| g.groups.get(ORDERER_GROUP))
        .ok_or("config has no Orderer group")?;
    let value = |name: &str| {
        orderer
            .values
            .get(name)
            .map(|v| v.value.clone())
            .ok_or_else(|| format!("Orderer group has no {name}"))
    };
    let size = BatchSize::decode(&value(BATCH_SIZE)?[..]).map_err(|e| e.to_string())?;
    let timeout = BatchTimeout::decode(&value(BATCH_TIMEOUT)?[..]).map_err(|e| e.to_string())?;
    let config = BatchConfig {
        max_message_count: size.max_message_count,
        absolute_max_bytes: size.absolute_max_bytes,
        preferred_max_bytes: size.preferred_max_bytes,
        batch_timeout_ms: parse_duration_ms(&timeout.timeout)?,
    };
    config.validate()?;
    Ok(config)
}

pub fn config_to_pb(config: &BatchConfig) -> pb::ChannelConfig {
    pb::ChannelConfig {
        batch_size: Some(pb::BatchSize {
            max_message_count: config.max_message_count,
            absolute_max_bytes: config.absolute_max_bytes,
            preferred_max_bytes: config.preferred_max_bytes,
        }),
        batch_timeout_ms: config.batch_timeout_ms,
    }
}

pub fn config_from_pb(config: &pb::ChannelConfig) -> Result<BatchConfig, String> {
    let size = config
        .batch_size
        .as_ref()
        .ok_or("channel config without batch size")?;
    let batch = BatchConfig {
        max_message_count: size.max_message_count,
        absolute_max_bytes: size.absolute_max_bytes,
        preferred_max_bytes: size.preferred_max_bytes,
        batch_timeout_ms: config.batch_timeout_ms,
    };
    batch.validate()?;
    Ok(batch)
}

/// The policies in a config envelope's channel group (the defaults if it has none).
pub fn policies_of(envelope: &ConfigEnvelope) -> Result<ChannelPolicies, String> {
    let group = envelope
        .config
        .as_ref()
        .and_then(|c| c.channel_group.as_ref())
        .ok_or("config has no channel group")?;
    channel_policies(group)
}

/// Block 0 of `channel_id` without policies, and the tip that follows it.
pub fn genesis_block(channel_id: &str, config: &BatchConfig) -> (Block, ChainTip) {
    block_of(channel_id, config_envelope(config))
}

/// Block 0 of `channel_id` with `policies` in its configuration, and the tip that
/// follows it.
pub fn genesis_block_with_policies(
    channel_id: &str,
    config: &BatchConfig,
    policies: &ChannelPolicies,
) -> Result<(Block, ChainTip), String> {
    Ok(block_of(
        channel_id,
        config_envelope_with_policies(config, policies)?,
    ))
}

fn block_of(channel_id: &str, config_envelope: ConfigEnvelope) -> (Block, ChainTip) {
    let channel_header = ChannelHeader {
        r#type: HeaderType::Config as i32,
        channel_id: channel_id.to_string(),
        ..Default::default()
    };
    let envelope = Envelope {
        payload: Payload {
            header: Some(Header {
                channel_header: channel_header.encode_to_vec(),
                signature_header: Vec::new(),
            }),
            data: config_envelope.encode_to_vec(),
        }
        .encode_to_vec(),
        signature: Vec::new(),
    };
    let data = vec![envelope.encode_to_vec()];
    let data_hash = data_hash(&data).to_vec();
    let mut metadata = vec![Vec::new(); METADATA_ENTRIES];
    metadata[1] = Metadata {
        value: LastConfig { index: 0 }.encode_to_vec(),
        signatures: Vec::new(),
    }
    .encode_to_vec();
    let tip = ChainTip {
        height: 1,
        last_hash: header_hash(0, &[], &data_hash).to_vec(),
        last_config: 0,
    };
    let block = Block {
        header: Some(BlockHeader {
            number: 0,
            previous_hash: Vec::new(),
            data_hash,
        }),
        data: Some(BlockData { data }),
        metadata: Some(BlockMetadata { metadata }),
    };
    (block, tip)
}

/// Largest genesis block a Join accepts: it travels through the ordered log as one
/// command (Fabric's genesis blocks are tens of kilobytes).
pub const MAX_JOIN_BLOCK_BYTES: usize = 512 * 1024;

/// Fabric's longest channel name.
pub const MAX_CHANNEL_NAME_BYTES: usize = 249;

/// Fabric's channel naming rule: lowercase ASCII letters, digits, dots and dashes,
/// starting with a letter, shorter than 250 characters.
pub fn validate_channel_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_allowed =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    if !starts_with_letter || !rest_allowed || name.len() > MAX_CHANNEL_NAME_BYTES {
        return Err(format!(
            "channel name {name:?} is not allowed: it must match [a-z][a-z0-9.-]* and be at \
             most {MAX_CHANNEL_NAME_BYTES} characters"
        ));
    }
    Ok(())
}

/// A genesis block supplied to join a channel, as checked by [`parse_join_block`].
#[derive(Clone, Debug, PartialEq)]
pub struct JoinBlock {
    pub channel_id: String,
    pub config: BatchConfig,
    /// Its Readers, Writers and Admins (the defaults if the block carries none).
    pub policies: ChannelPolicies,
    /// The tip after the block: height 1, its header hash, last config 0.
    pub tip: ChainTip,
}

/// Checks that `bytes` is a channel's genesis block Synod can start a chain from: block
/// number 0 whose data hash matches its data, holding exactly one CONFIG envelope for a
/// validly named channel, whose `ConfigEnvelope` carries usable batch settings and
/// either no policies or usable ones (see [`crate::policy`]). Deterministic: every replica applying a Join reaches the same verdict.
pub fn parse_join_block(bytes: &[u8]) -> Result<JoinBlock, String> {
    if bytes.len() > MAX_JOIN_BLOCK_BYTES {
        return Err(format!(
            "the block has {} bytes; at most {MAX_JOIN_BLOCK_BYTES} are accepted",
            bytes.len()
        ));
    }
    let block = Block::decode(bytes).map_err(|e| format!("not a common.Block: {e}"))?;
    let header = block.header.as_ref().ok_or("the block has no header")?;
    if header.number != 0 {
        return Err(format!(
            "block {} is not a genesis block (number 0)",
            header.number
        ));
    }
    let data = block.data.as_ref().map_or(&[][..], |d| &d.data[..]);
    if data_hash(data).as_slice() != header.data_hash.as_slice() {
        return Err("the block's data hash does not match its data".into());
    }
    let [envelope] = data else {
        return Err(format!(
            "a genesis block holds exactly one envelope, this one {}",
            data.len()
        ));
    };
    let envelope =
        Envelope::decode(&envelope[..]).map_err(|e| format!("malformed envelope: {e}"))?;
    let payload =
        Payload::decode(&envelope.payload[..]).map_err(|e| format!("malformed payload: {e}"))?;
    let channel_header = payload
        .header
        .as_ref()
        .ok_or("the envelope's payload has no header")
        .and_then(|h| {
            ChannelHeader::decode(&h.channel_header[..])
                .map_err(|_| "malformed channel header in the envelope")
        })?;
    if channel_header.r#type != HeaderType::Config as i32 {
        return Err(format!(
            "the envelope has header type {}, a genesis block needs CONFIG ({})",
            channel_header.r#type,
            HeaderType::Config as i32
        ));
    }
    validate_channel_name(&channel_header.channel_id)?;
    let config_envelope = ConfigEnvelope::decode(&payload.data[..])
        .map_err(|e| format!("malformed ConfigEnvelope: {e}"))?;
    let config = batch_config_of(&config_envelope)?;
    let policies = policies_of(&config_envelope)?;
    Ok(JoinBlock {
        channel_id: channel_header.channel_id,
        config,
        policies,
        tip: ChainTip {
            height: 1,
            last_hash: header_hash(0, &header.previous_hash, &header.data_hash).to_vec(),
            last_config: 0,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{ChannelCommand, Ledger, verify_chain};
    use bytes::Bytes;

    #[test]
    fn genesis_is_deterministic_and_chains() {
        let config = BatchConfig::default();
        let (block, tip) = genesis_block("demo", &config);
        assert_eq!(genesis_block("demo", &config).0, block);
        // Byte-identical encodings (map entries in a fixed order), not just equal values.
        assert_eq!(
            genesis_block("demo", &config).0.encode_to_vec(),
            block.encode_to_vec()
        );
        assert_ne!(genesis_block("other", &config).0, block);
        let mut ledger = Ledger::new("demo".into(), config, tip, Vec::new());
        let applied = ledger.apply(ChannelCommand::Envelope {
            bytes: Bytes::from_static(b"tx"),
            tx_id: "t1".into(),
            is_config: false,
        });
        assert!(applied.blocks.is_empty());
        let cut = ledger.apply(ChannelCommand::TimeToCut { block_number: 1 });
        let chain = [vec![block.clone()], cut.blocks].concat();
        verify_chain(&chain).unwrap();
        // The config travels in the block as a Fabric ConfigEnvelope and reads back.
        let envelope = Envelope::decode(&block.data.unwrap().data[0][..]).unwrap();
        let payload = Payload::decode(&envelope.payload[..]).unwrap();
        let decoded = batch_config_of(&ConfigEnvelope::decode(&payload.data[..]).unwrap());
        assert_eq!(decoded, Ok(config));
    }

    #[test]
    fn batch_timeouts_parse_like_go_durations() {
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("2s"), Ok(2_000));
        assert_eq!(parse_duration_ms("1m"), Ok(60_000));
        assert!(parse_duration_ms("2").is_err());
        assert!(parse_duration_ms("s").is_err());
        assert!(parse_duration_ms("2h").is_err());
    }

    #[test]
    fn generated_genesis_blocks_join_and_broken_ones_are_refused_with_a_reason() {
        let config = BatchConfig {
            max_message_count: 7,
            batch_timeout_ms: 250,
            ..BatchConfig::default()
        };
        let (block, tip) = genesis_block("alpha.1-x", &config);
        let joined = parse_join_block(&block.encode_to_vec()).unwrap();
        assert_eq!(joined.channel_id, "alpha.1-x");
        assert_eq!((joined.config, joined.tip), (config, tip));

        let refused = |block: &Block| parse_join_block(&block.encode_to_vec()).unwrap_err();
        let mut later = block.clone();
        later.header.as_mut().unwrap().number = 3;
        assert!(refused(&later).contains("genesis"));
        let mut tampered = block.clone();
        tampered.data.as_mut().unwrap().data[0].push(0);
        assert!(refused(&tampered).contains("data hash"));
        let mut two = block.clone();
        two.data.as_mut().unwrap().data.push(Vec::new());
        let hash = data_hash(&two.data.as_ref().unwrap().data).to_vec();
        two.header.as_mut().unwrap().data_hash = hash;
        assert!(refused(&two).contains("exactly one envelope"));
        assert!(refused(&genesis_block("Bad_Name", &config).0).contains("not allowed"));
        assert!(parse_join_block(b"\xff\xff not a block").is_err());
        assert!(parse_join_block(&vec![0; MAX_JOIN_BLOCK_BYTES + 1]).is_err());

        // A CONFIG envelope whose configuration lacks the batch settings.
        let mut envelope = Envelope::decode(&block.data.as_ref().unwrap().data[0][..]).unwrap();
        let mut payload = Payload::decode(&envelope.payload[..]).unwrap();
        payload.data = ConfigEnvelope::default().encode_to_vec();
        envelope.payload = payload.encode_to_vec();
        let mut empty_config = block.clone();
        empty_config.data.as_mut().unwrap().data[0] = envelope.encode_to_vec();
        let hash = data_hash(&empty_config.data.as_ref().unwrap().data).to_vec();
        empty_config.header.as_mut().unwrap().data_hash = hash;
        assert!(refused(&empty_config).contains("Orderer group"));
    }

    #[test]
    fn policies_travel_in_the_genesis_block() {
        use crate::policy::{ChannelPolicy, MspRole, Principal};
        let config = BatchConfig::default();
        let policies = ChannelPolicies::for_msp("Org1MSP");
        let (block, tip) = genesis_block_with_policies("guarded", &config, &policies).unwrap();
        let bytes = block.encode_to_vec();
        let joined = parse_join_block(&bytes).unwrap();
        assert_eq!((joined.policies, joined.tip), (policies.clone(), tip));
        assert_eq!(
            genesis_block_with_policies("guarded", &config, &policies)
                .unwrap()
                .0
                .encode_to_vec(),
            bytes
        );
        // Blocks without policies, as before, get the defaults.
        let legacy = parse_join_block(&genesis_block("old", &config).0.encode_to_vec()).unwrap();
        assert_eq!(legacy.policies, ChannelPolicies::default());
        // A policy nobody can meet is refused when the block is made.
        let empty = ChannelPolicies {
            admins: ChannelPolicy::any_of([]),
            ..policies
        };
        assert!(
            genesis_block_with_policies("guarded", &config, &empty)
                .unwrap_err()
                .contains("Admins policy names no principal")
        );
        let any_msp = ChannelPolicies::default();
        assert!(genesis_block_with_policies("guarded", &config, &any_msp).is_err());
        let one = ChannelPolicies {
            writers: ChannelPolicy::any_of([Principal::new("Org2MSP", MspRole::Peer)]),
            ..ChannelPolicies::for_msp("Org1MSP")
        };
        let (block, _) = genesis_block_with_policies("guarded", &config, &one).unwrap();
        assert_eq!(
            parse_join_block(&block.encode_to_vec()).unwrap().policies,
            one
        );
    }

    #[test]
    fn channel_names_follow_fabric() {
        for good in ["a", "mychannel", "a.b-c9"] {
            assert!(validate_channel_name(good).is_ok(), "{good}");
        }
        let long = "a".repeat(MAX_CHANNEL_NAME_BYTES + 1);
        for bad in ["", "9a", "Abc", "a_b", "a/b", "a\0b", long.as_str()] {
            assert!(validate_channel_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn invalid_configs_are_refused() {
        let mut config = config_to_pb(&BatchConfig::default());
        config.batch_size.as_mut().unwrap().max_message_count = 0;
        assert!(config_from_pb(&config).is_err());
        assert!(config_from_pb(&pb::ChannelConfig::default()).is_err());
    }
}
