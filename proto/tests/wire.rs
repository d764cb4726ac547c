//! Pins the generated code to Fabric's wire format.
//!
//! Expected bytes are worked out by hand from the field numbers and enum
//! values in Fabric's `.proto` files, never produced by this crate, so a
//! renumbered field or enum value makes these tests fail instead of
//! silently round-tripping.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use proto::common::{
    Block, BlockData, BlockHeader, BlockMetadata, BlockMetadataIndex, ChannelHeader, Envelope,
    Header, HeaderType, IdentifierHeader, LastConfig, Metadata, MetadataSignature,
    OrdererBlockMetadata, Payload, SignatureHeader, Status,
};
use proto::msp::SerializedIdentity;
use proto::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use proto::orderer::atomic_broadcast_server::{self, AtomicBroadcast, AtomicBroadcastServer};
use proto::orderer::seek_info::{SeekBehavior, SeekContentType, SeekErrorResponse};
use proto::orderer::{
    BroadcastResponse, DeliverResponse, SeekInfo, SeekNewest, SeekNextCommit, SeekOldest,
    SeekPosition, SeekSpecified, deliver_response, seek_position,
};
use proto::prost::Message;
use proto::prost_types::Timestamp;
use proto::tonic;
use tower_service::Service;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares in hex so that a failure shows which byte (and so which tag)
/// went wrong.
fn assert_encodes<M: Message>(msg: &M, expected_hex: &str) {
    assert_eq!(hex(&msg.encode_to_vec()), expected_hex.replace(' ', ""));
}

fn specified(number: u64) -> SeekPosition {
    SeekPosition {
        r#type: Some(seek_position::Type::Specified(SeekSpecified { number })),
    }
}

fn newest() -> SeekPosition {
    SeekPosition {
        r#type: Some(seek_position::Type::Newest(SeekNewest {})),
    }
}

#[test]
fn envelope() {
    let env = Envelope {
        payload: b"p".to_vec(),
        signature: b"s".to_vec(),
    };
    assert_encodes(&env, "0a 01 70 12 01 73");
}

#[test]
fn payload_and_headers() {
    let payload = Payload {
        header: Some(Header {
            channel_header: b"c".to_vec(),
            signature_header: b"s".to_vec(),
        }),
        data: b"d".to_vec(),
    };
    assert_encodes(&payload, "0a 06 0a 01 63 12 01 73 12 01 64");

    let sig = SignatureHeader {
        creator: b"c".to_vec(),
        nonce: b"n".to_vec(),
    };
    assert_encodes(&sig, "0a 01 63 12 01 6e");
}

#[test]
fn channel_header_common_fields() {
    let ch = ChannelHeader {
        r#type: HeaderType::EndorserTransaction as i32,
        channel_id: "demo".into(),
        tx_id: "ab".into(),
        epoch: 0,
        ..Default::default()
    };
    // type = 3, channel_id (4) = "demo", tx_id (5) = "ab"; a zero epoch is
    // not on the wire at all in proto3.
    assert_encodes(&ch, "08 03 22 04 64 65 6d 6f 2a 02 61 62");
}

#[test]
fn channel_header_remaining_fields() {
    let ch = ChannelHeader {
        version: 1,
        timestamp: Some(Timestamp {
            seconds: 1,
            nanos: 2,
        }),
        epoch: 7,
        extension: b"x".to_vec(),
        tls_cert_hash: b"h".to_vec(),
        ..Default::default()
    };
    // version (2), timestamp (3) = {seconds 1, nanos 2}, epoch (6),
    // extension (7), tls_cert_hash (8).
    assert_encodes(&ch, "10 01 1a 04 08 01 10 02 30 07 3a 01 78 42 01 68");
}

#[test]
fn serialized_identity() {
    let id = SerializedIdentity {
        mspid: "Org1MSP".into(),
        id_bytes: b"cert".to_vec(),
    };
    assert_encodes(&id, "0a 07 4f 72 67 31 4d 53 50 12 04 63 65 72 74");
}

/// Channel policies (`common/policies.proto`, `msp/msp_principal.proto`; Fabric puts
/// both in package `common`).
#[test]
fn policies_and_principals() {
    use proto::common::{
        ImplicitMetaPolicy, MspPrincipal, MspRole, Policy, SignaturePolicy,
        SignaturePolicyEnvelope, implicit_meta_policy, msp_principal, msp_role, policy,
        signature_policy,
    };
    assert_encodes(
        &MspRole {
            msp_identifier: "A".into(),
            role: msp_role::MspRoleType::Admin as i32,
        },
        "0a0141 1001",
    );
    assert_eq!(msp_role::MspRoleType::Orderer as i32, 4);
    assert_encodes(
        &MspPrincipal {
            principal_classification: msp_principal::Classification::Identity as i32,
            principal: b"x".to_vec(),
        },
        "0802 120178",
    );
    let signed_by = |index| SignaturePolicy {
        r#type: Some(signature_policy::Type::SignedBy(index)),
    };
    assert_encodes(&signed_by(0), "0800");
    assert_encodes(
        &SignaturePolicy {
            r#type: Some(signature_policy::Type::NOutOf(signature_policy::NOutOf {
                n: 1,
                rules: vec![signed_by(0), signed_by(1)],
            })),
        },
        "120a 0801 12020800 12020801",
    );
    assert_encodes(
        &SignaturePolicyEnvelope {
            version: 0,
            rule: Some(signed_by(0)),
            identities: vec![MspPrincipal {
                principal_classification: msp_principal::Classification::Role as i32,
                principal: b"x".to_vec(),
            }],
        },
        "12020800 1a03120178",
    );
    assert_encodes(
        &Policy {
            r#type: policy::PolicyType::Signature as i32,
            value: b"v".to_vec(),
        },
        "0801 120176",
    );
    assert_eq!(policy::PolicyType::ImplicitMeta as i32, 3);
    assert_encodes(
        &ImplicitMetaPolicy {
            sub_policy: "R".into(),
            rule: implicit_meta_policy::Rule::Majority as i32,
        },
        "0a0152 1002",
    );
}

#[test]
fn block_header() {
    let header = BlockHeader {
        number: 1,
        previous_hash: b"foo".to_vec(),
        data_hash: b"bar".to_vec(),
    };
    assert_encodes(&header, "08 01 12 03 66 6f 6f 1a 03 62 61 72");
}

#[test]
fn block_keeps_empty_metadata_entries() {
    let block = Block {
        header: Some(BlockHeader {
            number: 1,
            ..Default::default()
        }),
        data: Some(BlockData {
            data: vec![b"a".to_vec(), b"b".to_vec()],
        }),
        metadata: Some(BlockMetadata {
            metadata: vec![Vec::new(), b"m".to_vec()],
        }),
    };
    // The empty first metadata entry must still be written (0a 00):
    // peers find entries by position.
    assert_encodes(
        &block,
        "0a 02 08 01 12 06 0a 01 61 0a 01 62 1a 05 0a 00 0a 01 6d",
    );
}

#[test]
fn block_metadata_messages() {
    let md = Metadata {
        value: b"v".to_vec(),
        signatures: vec![MetadataSignature {
            signature_header: b"h".to_vec(),
            signature: b"s".to_vec(),
            identifier_header: b"i".to_vec(),
        }],
    };
    assert_encodes(&md, "0a 01 76 12 09 0a 01 68 12 01 73 1a 01 69");

    let id = IdentifierHeader {
        identifier: 3,
        nonce: b"n".to_vec(),
    };
    assert_encodes(&id, "08 03 12 01 6e");

    let obm = OrdererBlockMetadata {
        last_config: Some(LastConfig { index: 4 }),
        consenter_metadata: b"c".to_vec(),
    };
    assert_encodes(&obm, "0a 02 08 04 12 01 63");
}

#[test]
fn seek_info_specified_to_newest() {
    let info = SeekInfo {
        start: Some(specified(5)),
        stop: Some(newest()),
        behavior: SeekBehavior::FailIfNotReady as i32,
        ..Default::default()
    };
    // start (1) = {specified (3) = {number 5}}, stop (2) = {newest (1) = {}},
    // behavior (3) = 1.
    assert_encodes(&info, "0a 04 1a 02 08 05 12 02 0a 00 18 01");
}

#[test]
fn seek_info_other_positions_and_options() {
    let info = SeekInfo {
        start: Some(SeekPosition {
            r#type: Some(seek_position::Type::Oldest(SeekOldest {})),
        }),
        stop: Some(SeekPosition {
            r#type: Some(seek_position::Type::NextCommit(SeekNextCommit {})),
        }),
        behavior: SeekBehavior::BlockUntilReady as i32,
        error_response: SeekErrorResponse::BestEffort as i32,
        content_type: SeekContentType::HeaderWithSig as i32,
    };
    // oldest is oneof tag 2, next_commit tag 4; error_response (4) and
    // content_type (5) both 1.
    assert_encodes(&info, "0a 02 12 00 12 02 22 00 20 01 28 01");
}

#[test]
fn deliver_response_status() {
    let resp = DeliverResponse {
        r#type: Some(deliver_response::Type::Status(Status::NotFound as i32)),
    };
    assert_encodes(&resp, "08 94 03");
}

#[test]
fn deliver_response_block() {
    let resp = DeliverResponse {
        r#type: Some(deliver_response::Type::Block(Block {
            header: Some(BlockHeader {
                number: 2,
                ..Default::default()
            }),
            ..Default::default()
        })),
    };
    assert_encodes(&resp, "12 04 0a 02 08 02");
}

#[test]
fn broadcast_response() {
    let resp = BroadcastResponse {
        status: Status::Success as i32,
        info: "ok".into(),
    };
    assert_encodes(&resp, "08 c8 01 12 02 6f 6b");
}

#[test]
fn decodes_hand_written_bytes() {
    let info = SeekInfo::decode(&[0x0a, 0x04, 0x1a, 0x02, 0x08, 0x05, 0x12, 0x02, 0x0a, 0x00][..])
        .unwrap();
    assert_eq!(
        info,
        SeekInfo {
            start: Some(specified(5)),
            stop: Some(newest()),
            ..Default::default()
        }
    );
    assert_eq!(info.behavior(), SeekBehavior::BlockUntilReady);

    let resp = DeliverResponse::decode(&[0x08, 0x94, 0x03][..]).unwrap();
    assert_eq!(
        resp.r#type,
        Some(deliver_response::Type::Status(Status::NotFound as i32))
    );

    let ch = ChannelHeader::decode(
        &[
            0x08, 0x05, 0x22, 0x04, b'd', b'e', b'm', b'o', 0x2a, 0x02, b'a', b'b', 0x30, 0x09,
        ][..],
    )
    .unwrap();
    assert_eq!(ch.r#type, HeaderType::DeliverSeekInfo as i32);
    assert_eq!(ch.channel_id, "demo");
    assert_eq!(ch.tx_id, "ab");
    assert_eq!(ch.epoch, 9);
}

#[test]
fn status_values() {
    let expected = [
        (Status::Unknown, 0, "UNKNOWN"),
        (Status::Success, 200, "SUCCESS"),
        (Status::BadRequest, 400, "BAD_REQUEST"),
        (Status::Forbidden, 403, "FORBIDDEN"),
        (Status::NotFound, 404, "NOT_FOUND"),
        (
            Status::RequestEntityTooLarge,
            413,
            "REQUEST_ENTITY_TOO_LARGE",
        ),
        (Status::InternalServerError, 500, "INTERNAL_SERVER_ERROR"),
        (Status::NotImplemented, 501, "NOT_IMPLEMENTED"),
        (Status::ServiceUnavailable, 503, "SERVICE_UNAVAILABLE"),
    ];
    for (status, value, name) in expected {
        assert_eq!(status as i32, value, "{name}");
        assert_eq!(status.as_str_name(), name);
        assert_eq!(Status::try_from(value), Ok(status));
    }
}

#[test]
fn header_type_values() {
    let expected = [
        (HeaderType::Message, 0, "MESSAGE"),
        (HeaderType::Config, 1, "CONFIG"),
        (HeaderType::ConfigUpdate, 2, "CONFIG_UPDATE"),
        (HeaderType::EndorserTransaction, 3, "ENDORSER_TRANSACTION"),
        (HeaderType::OrdererTransaction, 4, "ORDERER_TRANSACTION"),
        (HeaderType::DeliverSeekInfo, 5, "DELIVER_SEEK_INFO"),
        (HeaderType::ChaincodePackage, 6, "CHAINCODE_PACKAGE"),
    ];
    for (ty, value, name) in expected {
        assert_eq!(ty as i32, value, "{name}");
        assert_eq!(ty.as_str_name(), name);
    }
    // Fabric retired 7..=9; a header carrying one must not map to a type.
    for retired in 7..=9 {
        assert!(HeaderType::try_from(retired).is_err(), "{retired}");
    }
}

#[test]
#[expect(
    deprecated,
    reason = "Fabric deprecated LAST_CONFIG and ORDERER but still reads them"
)]
fn block_metadata_index_values() {
    assert_eq!(BlockMetadataIndex::Signatures as i32, 0);
    assert_eq!(BlockMetadataIndex::LastConfig as i32, 1);
    assert_eq!(BlockMetadataIndex::TransactionsFilter as i32, 2);
    assert_eq!(BlockMetadataIndex::Orderer as i32, 3);
    assert_eq!(BlockMetadataIndex::CommitHash as i32, 4);
    assert!(BlockMetadataIndex::try_from(5).is_err());
}

#[test]
fn seek_info_enum_values() {
    assert_eq!(SeekBehavior::BlockUntilReady as i32, 0);
    assert_eq!(SeekBehavior::FailIfNotReady as i32, 1);
    assert_eq!(
        SeekBehavior::FailIfNotReady.as_str_name(),
        "FAIL_IF_NOT_READY"
    );
    assert_eq!(SeekErrorResponse::Strict as i32, 0);
    assert_eq!(SeekErrorResponse::BestEffort as i32, 1);
    assert_eq!(SeekErrorResponse::BestEffort.as_str_name(), "BEST_EFFORT");
    assert_eq!(SeekContentType::Block as i32, 0);
    assert_eq!(SeekContentType::HeaderWithSig as i32, 1);
    assert_eq!(
        SeekContentType::HeaderWithSig.as_str_name(),
        "HEADER_WITH_SIG"
    );
}

#[test]
fn service_name() {
    assert_eq!(
        atomic_broadcast_server::SERVICE_NAME,
        "orderer.AtomicBroadcast"
    );
    assert_eq!(
        <AtomicBroadcastServer<Echo> as tonic::server::NamedService>::NAME,
        "orderer.AtomicBroadcast"
    );
}

/// Fails every call with a message naming the method and the first
/// envelope's payload, which the routing test reads back from the
/// trailers-only response.
struct Echo;

impl Echo {
    async fn reject(
        method: &str,
        request: tonic::Request<tonic::Streaming<Envelope>>,
    ) -> tonic::Status {
        let first = request.into_inner().message().await;
        let payload = match first {
            Ok(Some(env)) => String::from_utf8_lossy(&env.payload).into_owned(),
            Ok(None) => "none".to_owned(),
            Err(e) => format!("error({})", e.message()),
        };
        tonic::Status::unavailable(format!("{method}:{payload}"))
    }
}

#[tonic::async_trait]
impl AtomicBroadcast for Echo {
    type BroadcastStream = tokio_stream::Empty<Result<BroadcastResponse, tonic::Status>>;
    type DeliverStream = tokio_stream::Empty<Result<DeliverResponse, tonic::Status>>;

    async fn broadcast(
        &self,
        request: tonic::Request<tonic::Streaming<Envelope>>,
    ) -> Result<tonic::Response<Self::BroadcastStream>, tonic::Status> {
        Err(Self::reject("broadcast", request).await)
    }

    async fn deliver(
        &self,
        request: tonic::Request<tonic::Streaming<Envelope>>,
    ) -> Result<tonic::Response<Self::DeliverStream>, tonic::Status> {
        Err(Self::reject("deliver", request).await)
    }
}

/// Sends one gRPC-framed `Envelope{payload: "p", signature: "s"}` to `path`
/// and returns the `(grpc-status, grpc-message)` the server answered with.
async fn call_server(path: &str) -> (String, String) {
    // Uncompressed flag, 4-byte big-endian length, then the message bytes.
    let frame: &[u8] = &[0, 0, 0, 0, 6, 0x0a, 0x01, b'p', 0x12, 0x01, b's'];
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://orderer{path}"))
        .header("content-type", "application/grpc")
        .body(Full::new(Bytes::from_static(frame)))
        .unwrap();
    let response = AtomicBroadcastServer::new(Echo)
        .call(request)
        .await
        .unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    (header("grpc-status"), header("grpc-message"))
}

#[tokio::test(flavor = "current_thread")]
async fn server_routes_fabric_method_paths() {
    let unavailable = (tonic::Code::Unavailable as i32).to_string();
    assert_eq!(
        call_server("/orderer.AtomicBroadcast/Broadcast").await,
        (unavailable.clone(), "broadcast:p".to_owned())
    );
    assert_eq!(
        call_server("/orderer.AtomicBroadcast/Deliver").await,
        (unavailable, "deliver:p".to_owned())
    );
    // Guards against the two checks above passing for any path at all.
    let (status, _) = call_server("/orderer.AtomicBroadcast/Other").await;
    assert_eq!(status, (tonic::Code::Unimplemented as i32).to_string());
}

/// Records the request paths a client uses and answers every call with a
/// trailers-only `UNAVAILABLE`.
#[derive(Clone, Default)]
struct RecordPaths(Arc<Mutex<Vec<String>>>);

impl Service<http::Request<tonic::body::Body>> for RecordPaths {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        self.0.lock().unwrap().push(request.uri().path().to_owned());
        let response = http::Response::builder()
            .header("content-type", "application/grpc")
            .header("grpc-status", (tonic::Code::Unavailable as i32).to_string())
            .body(tonic::body::Body::default())
            .unwrap();
        Box::pin(async move { Ok(response) })
    }
}

#[tokio::test(flavor = "current_thread")]
async fn client_uses_fabric_method_paths() {
    let recorder = RecordPaths::default();
    let origin: http::Uri = "http://orderer".parse().unwrap();
    let mut client = AtomicBroadcastClient::with_origin(recorder.clone(), origin);

    let err = client
        .broadcast(tokio_stream::iter(vec![Envelope::default()]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    let err = client
        .deliver(tokio_stream::iter(vec![Envelope::default()]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);

    assert_eq!(
        *recorder.0.lock().unwrap(),
        [
            "/orderer.AtomicBroadcast/Broadcast",
            "/orderer.AtomicBroadcast/Deliver"
        ]
    );
}
