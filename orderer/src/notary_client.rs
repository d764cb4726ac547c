//! A small client of the notary service: build and sign a request from a caller's
//! identity files, send it to one node over mutual TLS, verify the answer.

use std::path::Path;
use std::time::SystemTime;

use notary_adapter::{
    NotaryTrust, StateRef, TimeWindow, TxId, ValidatedRequest, sign_request, verify_response,
};
use proto::synod::notary as pb;
use proto::synod::notary::notary_client::NotaryClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// A caller: its TLS identity for the connection and its signing identity for requests.
pub struct Caller {
    pub tls: ClientTlsConfig,
    pub signing_cert_pem: String,
    pub signing_key_pem: String,
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

impl Caller {
    /// From a Fabric MSP-layout identity directory (`msp/signcerts/cert.pem`,
    /// `msp/keystore/key.pem`, `tls/ca.crt`, `tls/server.crt`, `tls/server.key`), for
    /// nodes whose TLS certificates carry `server_name`.
    pub fn from_msp_dir(dir: &Path, server_name: &str) -> Result<Caller, String> {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&dir.join("tls/ca.crt"))?))
            .identity(Identity::from_pem(
                read(&dir.join("tls/server.crt"))?,
                read(&dir.join("tls/server.key"))?,
            ))
            .domain_name(server_name);
        Ok(Caller {
            tls,
            signing_cert_pem: read(&dir.join("msp/signcerts/cert.pem"))?,
            signing_key_pem: read(&dir.join("msp/keystore/key.pem"))?,
        })
    }

    pub async fn connect(&self, address: &str) -> Result<NotaryClient<Channel>, String> {
        let channel = Channel::from_shared(format!("https://{address}"))
            .map_err(|e| format!("notary address {address:?}: {e}"))?
            .tls_config(self.tls.clone())
            .map_err(|e| format!("TLS: {e}"))?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| format!("cannot reach the notary at {address}: {e}"))?;
        Ok(NotaryClient::new(channel))
    }

    /// The signed request for `request`, addressed to the notary `notary_name`.
    pub fn request(
        &self,
        request: &ValidatedRequest,
        notary_name: &str,
    ) -> Result<pb::NotariseRequest, String> {
        sign_request(
            request,
            notary_name,
            self.signing_cert_pem.as_bytes(),
            &self.signing_key_pem,
            1,
        )
        .map_err(|e| e.to_string())
    }
}

/// Notarises `request` with `wanted` signatures of distinct nodes (f + 1 for a caller
/// that trusts no single node): asks the nodes in turn until `wanted` of them signed,
/// and returns one answer carrying all their signatures (`verify_response` with
/// `signatures_wanted = wanted` checks it). A refusal (conflict, invalid request) is
/// returned as soon as a node gives one: every node decides the same.
pub async fn notarise_with_signatures(
    caller: &Caller,
    addresses: &[String],
    request: &ValidatedRequest,
    notary_name: &str,
    wanted: usize,
) -> Result<pb::NotariseResponse, String> {
    let signed = caller.request(request, notary_name)?;
    let mut signatures = Vec::new();
    let mut problems = Vec::new();
    for address in addresses {
        if signatures.len() >= wanted {
            break;
        }
        let mut client = match caller.connect(address).await {
            Ok(client) => client,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        let response = match client.notarise(signed.clone()).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                problems.push(format!("{address}: {}", status.message()));
                continue;
            }
        };
        match response.result {
            Some(pb::notarise_response::Result::Signed(node)) => signatures.extend(node.signatures),
            Some(pb::notarise_response::Result::Error(pb::Error {
                kind: Some(pb::error::Kind::Unavailable(why)),
            })) => problems.push(format!("{address}: unavailable: {}", why.reason)),
            _ => return Ok(response),
        }
    }
    if signatures.len() < wanted {
        return Err(format!(
            "{} of {wanted} signatures gathered: {}",
            signatures.len(),
            problems.join("; ")
        ));
    }
    Ok(notary_adapter::wire::signed_response(
        request.tx_id(),
        signatures,
    ))
}

/// Parses `HASH:INDEX` (64 hex digits, a colon, an output index).
pub fn parse_state_ref(text: &str) -> Result<StateRef, String> {
    let (hash, index) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?}: expected HASH:INDEX"))?;
    let hash = parse_hash(hash)?;
    let index = index
        .parse::<u32>()
        .map_err(|e| format!("{text:?}: output index: {e}"))?;
    Ok(StateRef::new(hash, index))
}

/// Parses 64 hex digits.
pub fn parse_hash(text: &str) -> Result<[u8; 32], String> {
    let bytes = decode_hex(text)?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("{text:?}: {} bytes, expected 32", b.len()))
}

pub fn parse_tx_id(text: &str) -> Result<TxId, String> {
    parse_hash(text).map(TxId)
}

fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    if text.len() % 2 != 0 {
        return Err(format!("{text:?}: odd number of hex digits"));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| format!("{text:?}: not hexadecimal"))
        })
        .collect()
}

/// Builds a request from its parts, with the crate's checks.
pub fn build_request(
    tx_id: TxId,
    inputs: Vec<StateRef>,
    references: Vec<StateRef>,
    from_ms: Option<i64>,
    until_ms: Option<i64>,
) -> Result<ValidatedRequest, String> {
    ValidatedRequest::new(tx_id, inputs, references, TimeWindow { from_ms, until_ms })
        .map_err(|e| e.to_string())
}

/// Verifies `response` for `tx_id` against the nodes' certificates (PEM files).
pub fn verify(
    response: &pb::NotariseResponse,
    tx_id: &TxId,
    node_certificates_pem: &[String],
) -> Result<(), String> {
    let certificates = node_certificates_pem
        .iter()
        .map(|pem| ca::certificate_der(pem.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    verify_response(
        response,
        tx_id,
        &NotaryTrust::Certificates(&certificates),
        1,
    )
    .map_err(|e| e.to_string())
}

/// Verifies `response` for `tx_id`: signed by any orderer of a trusted MSP in `membership`.
pub fn verify_by_membership(
    response: &pb::NotariseResponse,
    tx_id: &TxId,
    membership: &ca::Membership,
) -> Result<(), String> {
    let trust = NotaryTrust::Members {
        membership,
        now: SystemTime::now(),
    };
    verify_response(response, tx_id, &trust, 1).map_err(|e| e.to_string())
}
