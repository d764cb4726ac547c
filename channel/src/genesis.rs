//! A channel's genesis block: block 0, holding one CONFIG envelope whose data is the
//! channel's configuration. Every replica builds it from the same `Create` command, so
//! every replica's chain starts with the same block.

use proto::common::{
    Block, BlockData, BlockHeader, BlockMetadata, ChannelHeader, Envelope, Header, HeaderType,
    LastConfig, Metadata, Payload,
};
use proto::prost::Message;
use proto::synod::channel as pb;

use crate::batch_config::BatchConfig;
use crate::block_hash::{data_hash, header_hash};
use crate::ledger::{ChainTip, METADATA_ENTRIES};

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
            data: config_to_pb(config).encode_to_vec(),
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
        // The config travels in the block and reads back.
        let envelope = Envelope::decode(&block.data.unwrap().data[0][..]).unwrap();
        let payload = Payload::decode(&envelope.payload[..]).unwrap();
        let decoded = config_from_pb(&pb::ChannelConfig::decode(&payload.data[..]).unwrap());
        assert_eq!(decoded, Ok(config));
    }

    #[test]
    fn invalid_configs_are_refused() {
        let mut config = config_to_pb(&BatchConfig::default());
        config.batch_size.as_mut().unwrap().max_message_count = 0;
        assert!(config_from_pb(&config).is_err());
        assert!(config_from_pb(&pb::ChannelConfig::default()).is_err());
    }
}
