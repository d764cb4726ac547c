//! The caller's side: signing a request, and checking the notary's answer.

use std::collections::BTreeSet;
use std::fmt;
use std::time::SystemTime;

use ca::{Membership, Role};
use proto::synod::notary as pb;

use crate::merkle::{Hash, MerkleProof, root_from_proof};
use crate::request::{MAX_NOTARY_NAME_BYTES, ValidatedRequest};
use crate::signing::{batch_message, single_message};
use crate::types::TxId;
use crate::wire::{describe_error, state_ref_to_pb, time_window_to_pb};

/// Most signatures a response may carry; more is refused unread. A cluster of 2f+1
/// nodes gives at most f+1.
pub const MAX_RESPONSE_SIGNATURES: usize = 32;

/// A Merkle proof has at most 20 siblings (see [`MAX_LEAVES`](crate::merkle::MAX_LEAVES)).
const MAX_PROOF_SIBLINGS: usize = 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    NotaryNameTooLong { bytes: usize },
    Signing(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::NotaryNameTooLong { bytes } => write!(
                f,
                "notary name of {bytes} bytes, longer than the {MAX_NOTARY_NAME_BYTES} accepted"
            ),
            ClientError::Signing(reason) => write!(f, "signing the request: {reason}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// Builds the request for `request`, signed over its canonical bytes with `key_pem`
/// (PKCS#8 PEM), the key of `caller_certificate` (PEM or DER, sent as given).
pub fn sign_request(
    request: &ValidatedRequest,
    notary_name: &str,
    caller_certificate: &[u8],
    key_pem: &str,
    signatures_wanted: u32,
) -> Result<pb::NotariseRequest, ClientError> {
    if notary_name.len() > MAX_NOTARY_NAME_BYTES {
        return Err(ClientError::NotaryNameTooLong {
            bytes: notary_name.len(),
        });
    }
    let signature = ca::signature::sign(key_pem, &request.canonical_bytes(notary_name))
        .map_err(|e| ClientError::Signing(e.to_string()))?;
    Ok(pb::NotariseRequest {
        tx_id: request.tx_id().as_bytes().to_vec(),
        inputs: request.inputs().iter().map(state_ref_to_pb).collect(),
        references: request.references().iter().map(state_ref_to_pb).collect(),
        time_window: time_window_to_pb(request.time_window()),
        caller_certificate: caller_certificate.to_vec(),
        signature,
        notary_name: notary_name.to_owned(),
        signatures_wanted,
    })
}

/// Which node signatures a caller accepts.
#[derive(Clone, Copy, Debug)]
pub enum NotaryTrust<'a> {
    /// Exactly these node certificates (DER); distinct certificates count as distinct
    /// nodes.
    Certificates(&'a [Vec<u8>]),
    /// Any orderer of a trusted MSP, valid and unrevoked at `now`; nodes are told apart
    /// by MSP id and common name, so a node's renewed certificate does not count twice.
    Members {
        membership: &'a Membership,
        now: SystemTime,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum VerifyError {
    /// The response is for another transaction (or names none).
    WrongTransaction {
        tx_id: Vec<u8>,
    },
    NoResult,
    /// The notary refused: conflict, invalid request, time window, ...
    Refused(Box<pb::Error>),
    TooManySignatures {
        count: usize,
    },
    /// Fewer valid signatures of distinct trusted nodes than wanted; `problems` says what
    /// was wrong with each one that did not count.
    NotEnoughSignatures {
        valid: usize,
        wanted: u32,
        problems: Vec<String>,
    },
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::WrongTransaction { tx_id } => write!(
                f,
                "the response is for another transaction ({} byte id)",
                tx_id.len()
            ),
            VerifyError::NoResult => {
                f.write_str("the response carries neither signatures nor error")
            }
            VerifyError::Refused(error) => write!(f, "notary refused: {}", describe_error(error)),
            VerifyError::TooManySignatures { count } => write!(
                f,
                "the response carries {count} signatures, more than the \
                 {MAX_RESPONSE_SIGNATURES} accepted"
            ),
            VerifyError::NotEnoughSignatures {
                valid,
                wanted,
                problems,
            } => {
                write!(
                    f,
                    "{valid} valid signature(s) of distinct trusted notary nodes, {wanted} wanted"
                )?;
                if !problems.is_empty() {
                    write!(f, ": {}", problems.join("; "))?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for VerifyError {}

/// Checks that `response` notarises `tx_id` with valid signatures of at least
/// `signatures_wanted` (at least one) distinct trusted nodes, single or batched.
pub fn verify_response(
    response: &pb::NotariseResponse,
    tx_id: &TxId,
    trust: &NotaryTrust<'_>,
    signatures_wanted: u32,
) -> Result<(), VerifyError> {
    if response.tx_id != tx_id.as_bytes() {
        return Err(VerifyError::WrongTransaction {
            tx_id: response.tx_id.clone(),
        });
    }
    let signed = match &response.result {
        None => return Err(VerifyError::NoResult),
        Some(pb::notarise_response::Result::Error(error)) => {
            return Err(VerifyError::Refused(Box::new(error.clone())));
        }
        Some(pb::notarise_response::Result::Signed(signed)) => signed,
    };
    if signed.signatures.len() > MAX_RESPONSE_SIGNATURES {
        return Err(VerifyError::TooManySignatures {
            count: signed.signatures.len(),
        });
    }
    let wanted = signatures_wanted.max(1);
    let mut nodes = BTreeSet::new();
    let mut problems = Vec::new();
    for (position, signature) in signed.signatures.iter().enumerate() {
        match check_signature(signature, tx_id, trust) {
            Ok(node) => {
                if !nodes.insert(node) {
                    problems.push(format!("signature #{position}: a second one of one node"));
                }
            }
            Err(problem) => problems.push(format!("signature #{position}: {problem}")),
        }
    }
    if nodes.len() < wanted as usize {
        return Err(VerifyError::NotEnoughSignatures {
            valid: nodes.len(),
            wanted,
            problems,
        });
    }
    Ok(())
}

/// Checks one node signature; returns what tells its node apart from others.
fn check_signature(
    signature: &pb::NodeSignature,
    tx_id: &TxId,
    trust: &NotaryTrust<'_>,
) -> Result<Vec<u8>, String> {
    let der = ca::certificate_der(&signature.certificate)
        .map_err(|e| format!("node certificate: {e}"))?;
    let node = match trust {
        NotaryTrust::Certificates(trusted) => {
            if !trusted.contains(&der) {
                return Err("node certificate is not a trusted one".to_owned());
            }
            der.clone()
        }
        NotaryTrust::Members { membership, now } => {
            let identity = membership
                .verify(&der, *now)
                .map_err(|e| format!("node certificate: {e}"))?;
            ca::require_role(&identity, &[Role::Orderer])
                .map_err(|e| format!("node certificate: {e}"))?;
            let mut node = identity.msp_id.into_bytes();
            node.push(0);
            node.extend_from_slice(identity.common_name.as_bytes());
            node
        }
    };
    let message = match &signature.batch {
        None => single_message(tx_id),
        Some(batch) => batch_message(&proven_root(batch, tx_id)?),
    };
    ca::signature::verify(&der, &message, &signature.signature).map_err(|e| e.to_string())?;
    Ok(node)
}

/// The batch root, once the proof leads from `tx_id` to it.
fn proven_root(batch: &pb::MerkleProof, tx_id: &TxId) -> Result<Hash, String> {
    let root: Hash = batch
        .root
        .as_slice()
        .try_into()
        .map_err(|_| format!("Merkle root is {} bytes, not 32", batch.root.len()))?;
    if batch.siblings.len() > MAX_PROOF_SIBLINGS {
        return Err(format!(
            "Merkle proof has {} siblings, at most {MAX_PROOF_SIBLINGS} possible",
            batch.siblings.len()
        ));
    }
    let siblings = batch
        .siblings
        .iter()
        .map(|s| Hash::try_from(s.as_slice()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "a Merkle sibling is not 32 bytes".to_owned())?;
    let proof = MerkleProof {
        leaf_index: batch.leaf_index,
        leaf_count: batch.leaf_count,
        siblings,
    };
    let computed = root_from_proof(tx_id, &proof).map_err(|e| e.to_string())?;
    if computed != root {
        return Err("the Merkle proof does not lead from the transaction to the root".to_owned());
    }
    Ok(root)
}
