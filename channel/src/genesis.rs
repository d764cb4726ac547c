//! A channel's genesis block: block 0, holding one CONFIG envelope whose data is a
//! Fabric `ConfigEnvelope` with the channel's batch settings in the Orderer group, as
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

const ORDERER_GROUP: &str = "Orderer";
const BATCH_SIZE: &str = "BatchSize";
const BATCH_TIMEOUT: &str = "BatchTimeout";
const ADMINS: &str = "Admins";

/// The channel configuration tree of a genesis block.
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

/// Block 0 of `channel_id` and the tip that follows it.
pub fn genesis_block(channel_id: &str, config: &BatchConfig) -> (Block, ChainTip) {
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
            data: config_envelope(config).encode_to_vec(),
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
    fn invalid_configs_are_refused() {
        let mut config = config_to_pb(&BatchConfig::default());
        config.batch_size.as_mut().unwrap().max_message_count = 0;
        assert!(config_from_pb(&config).is_err());
        assert!(config_from_pb(&pb::ChannelConfig::default()).is_err());
    }
}
