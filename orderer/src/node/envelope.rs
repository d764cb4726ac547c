//! Checks of a client's `common.Envelope` before anything is ordered or delivered:
//! structure, the creator's membership, the creator's signature, the channel's policy
//! and the transaction id. Each failure maps to the `common.Status` Fabric answers with
//! and an `info` text that says what was wrong.

use std::time::SystemTime;

use ca::{Membership, VerifiedIdentity, certificate_der};
use channel::PolicyName;
use proto::common::{ChannelHeader, Envelope, HeaderType, Payload, SignatureHeader, Status};
use proto::msp::SerializedIdentity;
use proto::prost::Message as _;
use sha2::{Digest, Sha256};

use crate::node::access;
use crate::node::directory::ChannelView;

/// Why an envelope is refused, as Fabric reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub status: Status,
    pub info: String,
}

impl Rejection {
    pub fn new(status: Status, info: impl Into<String>) -> Rejection {
        Rejection {
            status,
            info: info.into(),
        }
    }
}

/// A decoded envelope with its headers.
#[derive(Clone, Debug)]
pub struct Parsed {
    pub envelope: Envelope,
    pub payload: Payload,
    pub channel_header: ChannelHeader,
    pub signature_header: SignatureHeader,
}

impl Parsed {
    pub fn header_type(&self) -> Option<HeaderType> {
        HeaderType::try_from(self.channel_header.r#type).ok()
    }
}

pub fn parse(bytes: &[u8]) -> Result<Parsed, Rejection> {
    let bad = |what: &str, e: proto::prost::DecodeError| {
        Rejection::new(Status::BadRequest, format!("malformed {what}: {e}"))
    };
    let envelope = Envelope::decode(bytes).map_err(|e| bad("envelope", e))?;
    let payload = Payload::decode(&envelope.payload[..]).map_err(|e| bad("payload", e))?;
    let header = payload
        .header
        .as_ref()
        .ok_or_else(|| Rejection::new(Status::BadRequest, "payload has no header"))?;
    let channel_header =
        ChannelHeader::decode(&header.channel_header[..]).map_err(|e| bad("channel header", e))?;
    let signature_header = SignatureHeader::decode(&header.signature_header[..])
        .map_err(|e| bad("signature header", e))?;
    Ok(Parsed {
        envelope,
        payload,
        channel_header,
        signature_header,
    })
}

/// Fabric's transaction id: lowercase hex of SHA-256(nonce ‖ creator).
pub fn transaction_id(nonce: &[u8], creator: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(nonce)
        .chain_update(creator)
        .finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Verifies the creator (a member of a trusted MSP, not expired or revoked) and its
/// signature over the payload.
pub fn authenticate(
    parsed: &Parsed,
    membership: &Membership,
    now: SystemTime,
) -> Result<VerifiedIdentity, Rejection> {
    let creator =
        SerializedIdentity::decode(&parsed.signature_header.creator[..]).map_err(|e| {
            Rejection::new(
                Status::BadRequest,
                format!("malformed creator identity: {e}"),
            )
        })?;
    let cert = certificate_der(&creator.id_bytes)
        .map_err(|why| Rejection::new(Status::BadRequest, format!("creator certificate: {why}")))?;
    let identity = membership
        .verify_for(&creator.mspid, &cert, now)
        .map_err(|e| Rejection::new(Status::Forbidden, format!("creator not authorized: {e}")))?;
    ca::signature::verify(&cert, &parsed.envelope.payload, &parsed.envelope.signature).map_err(
        |e| {
            Rejection::new(
                Status::Forbidden,
                format!("envelope signature is invalid: {e}"),
            )
        },
    )?;
    Ok(identity)
}

/// Checks `identity` against policy `name` of `channel`: FORBIDDEN naming the policy,
/// what it admits and the identity's MSP id and role.
pub fn require_policy(
    view: &ChannelView,
    name: PolicyName,
    channel: &str,
    identity: &VerifiedIdentity,
) -> Result<(), Rejection> {
    access::check(&view.policies, name, channel, identity)
        .map_err(|why| Rejection::new(Status::Forbidden, why))
}

/// An envelope accepted for ordering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admitted {
    pub channel_id: String,
    pub tx_id: String,
    pub creator: String,
}

/// The Broadcast checks, in order: size against the node's limit, structure, header
/// type, channel, size against the channel's limit, creator and signature, the
/// channel's Writers policy, transaction id. `channel` looks a channel up.
pub fn admit_broadcast(
    bytes: &[u8],
    max_envelope_bytes: usize,
    channel: impl Fn(&str) -> Option<ChannelView>,
    membership: &Membership,
    now: SystemTime,
) -> Result<Admitted, Rejection> {
    if bytes.len() > max_envelope_bytes {
        return Err(Rejection::new(
            Status::RequestEntityTooLarge,
            format!(
                "envelope of {} bytes exceeds {max_envelope_bytes}",
                bytes.len()
            ),
        ));
    }
    let parsed = parse(bytes)?;
    match parsed.header_type() {
        Some(HeaderType::EndorserTransaction | HeaderType::Message) => {}
        Some(HeaderType::ConfigUpdate) => {
            return Err(Rejection::new(
                Status::NotImplemented,
                "channel configuration updates are not supported yet",
            ));
        }
        other => {
            return Err(Rejection::new(
                Status::BadRequest,
                format!("header type {other:?} cannot be broadcast"),
            ));
        }
    }
    let channel_id = parsed.channel_header.channel_id.clone();
    let Some(view) = channel(&channel_id) else {
        return Err(Rejection::new(
            Status::NotFound,
            format!("channel {channel_id:?} does not exist"),
        ));
    };
    let limit = view.batch.absolute_max_bytes as usize;
    if bytes.len() > limit {
        return Err(Rejection::new(
            Status::RequestEntityTooLarge,
            format!(
                "envelope of {} bytes exceeds channel {channel_id}'s AbsoluteMaxBytes {limit}",
                bytes.len()
            ),
        ));
    }
    let identity = authenticate(&parsed, membership, now)?;
    require_policy(&view, PolicyName::Writers, &channel_id, &identity)?;
    let expected = transaction_id(
        &parsed.signature_header.nonce,
        &parsed.signature_header.creator,
    );
    if parsed.channel_header.tx_id != expected {
        return Err(Rejection::new(
            Status::BadRequest,
            format!(
                "tx id {:?} is not hex(SHA-256(nonce ‖ creator)) = {expected}",
                parsed.channel_header.tx_id
            ),
        ));
    }
    Ok(Admitted {
        channel_id,
        tx_id: expected,
        creator: identity.common_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_ids_are_hex_sha256_of_nonce_and_creator() {
        // SHA-256("abc").
        assert_eq!(
            transaction_id(b"a", b"bc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn garbage_is_a_bad_request() {
        let rejection = parse(&[0xff, 0x01]).unwrap_err();
        assert_eq!(rejection.status, Status::BadRequest);
        let empty_payload = Envelope::default().encode_to_vec();
        assert!(
            parse(&empty_payload)
                .unwrap_err()
                .info
                .contains("no header")
        );
    }
}
