//! Building the signed envelopes a Fabric client sends: transactions for Broadcast and
//! seek requests for Deliver. Used by Synod's own tools and tests; Fabric's SDKs build
//! the same bytes. Also reading a Deliver answer.

use proto::common::{
    Block, ChannelHeader, Envelope, Header, HeaderType, Payload, SignatureHeader, Status,
};
use proto::msp::SerializedIdentity;
use proto::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use proto::orderer::deliver_response::Type as Delivered;
use proto::orderer::seek_info::SeekBehavior;
use proto::orderer::seek_position::Type as Position;
use proto::orderer::{SeekInfo, SeekNewest, SeekPosition, SeekSpecified};
use proto::prost::Message as _;

use crate::node::envelope::transaction_id;

/// A member's signing identity: its MSP id, certificate and private key (PEM).
#[derive(Clone)]
pub struct Signer {
    pub msp_id: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Signer {
    /// The marshaled `msp.SerializedIdentity`, as envelopes carry it.
    pub fn creator(&self) -> Vec<u8> {
        SerializedIdentity {
            mspid: self.msp_id.clone(),
            id_bytes: self.cert_pem.clone().into_bytes(),
        }
        .encode_to_vec()
    }

    /// A signed envelope of `header_type` on `channel` carrying `data`, with a fresh
    /// nonce and the transaction id derived from it.
    pub fn envelope(
        &self,
        channel: &str,
        header_type: HeaderType,
        data: Vec<u8>,
        nonce: [u8; 24],
    ) -> Result<Envelope, ca::CaError> {
        let creator = self.creator();
        let channel_header = ChannelHeader {
            r#type: header_type as i32,
            channel_id: channel.to_string(),
            tx_id: transaction_id(&nonce, &creator),
            timestamp: Some(now_timestamp()),
            ..Default::default()
        };
        let payload = Payload {
            header: Some(Header {
                channel_header: channel_header.encode_to_vec(),
                signature_header: SignatureHeader {
                    creator,
                    nonce: nonce.to_vec(),
                }
                .encode_to_vec(),
            }),
            data,
        }
        .encode_to_vec();
        let signature = ca::signature::sign(&self.key_pem, &payload)?;
        Ok(Envelope { payload, signature })
    }

    /// A Deliver request for blocks `start..=stop` (`None` = newest) on `channel`.
    pub fn seek(
        &self,
        channel: &str,
        start: Option<u64>,
        stop: Option<u64>,
        behavior: SeekBehavior,
        nonce: [u8; 24],
    ) -> Result<Envelope, ca::CaError> {
        let position = |n: Option<u64>| SeekPosition {
            r#type: Some(match n {
                Some(number) => Position::Specified(SeekSpecified { number }),
                None => Position::Newest(SeekNewest {}),
            }),
        };
        let seek = SeekInfo {
            start: Some(position(start)),
            stop: Some(position(stop)),
            behavior: behavior as i32,
            ..Default::default()
        };
        self.envelope(
            channel,
            HeaderType::DeliverSeekInfo,
            seek.encode_to_vec(),
            nonce,
        )
    }
}

/// Sends one Deliver request and reads its answer: the blocks, then the closing status.
/// A stream that ends without a status is reported as `UNKNOWN`.
pub async fn deliver(
    client: &mut AtomicBroadcastClient<tonic::transport::Channel>,
    seek: Envelope,
) -> Result<(Vec<Block>, Status), tonic::Status> {
    let mut responses = client
        .deliver(tokio_stream::iter(vec![seek]))
        .await?
        .into_inner();
    let mut blocks = Vec::new();
    while let Some(response) = responses.message().await? {
        match response.r#type {
            Some(Delivered::Block(block)) => blocks.push(block),
            Some(Delivered::Status(status)) => {
                return Ok((blocks, Status::try_from(status).unwrap_or(Status::Unknown)));
            }
            None => {}
        }
    }
    Ok((blocks, Status::Unknown))
}

/// Runs a command-line client's future on a single-threaded runtime; an error is a
/// message for the user.
pub fn block_on<T>(
    future: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?
        .block_on(future)
}

fn now_timestamp() -> proto::prost_types::Timestamp {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    proto::prost_types::Timestamp {
        seconds: now.as_secs() as i64,
        nanos: now.subsec_nanos() as i32,
    }
}
