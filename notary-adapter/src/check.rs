//! Checks a node makes before it orders a request: size limits, the caller's membership
//! and role, the transaction's shape, and the caller's signature over the canonical
//! request bytes.
//!
//! Order: limits first (cheap, and they bound everything after), then who the caller is
//! (an unknown caller learns nothing about its request), then the transaction (Corda:
//! right notary, at most 10,000 states, well-formed), then the signature, which needs
//! the well-formed request to rebuild the signed bytes.

use std::fmt;
use std::time::SystemTime;

use ca::{Membership, MembershipError, Role, VerifiedIdentity};
use proto::prost::Message;
use proto::synod::notary as pb;

use crate::command::NotaryCommand;
use crate::request::{InvalidTransaction, MAX_NOTARY_NAME_BYTES, MAX_STATES, ValidatedRequest};
use crate::types::{HASH_BYTES, StateKind, StateRef, TxId};
use crate::wire::time_window_from_pb;

/// What this notary accepts. [`CheckConfig::new`] gives the defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckConfig {
    /// This notary's name; a request naming another is refused.
    pub notary_name: String,
    /// Roles that may notarise (default: client and peer).
    pub allowed_roles: Vec<Role>,
    /// Largest encoded request. The gRPC server should refuse larger messages before
    /// decoding them, with the same number.
    pub max_request_bytes: usize,
    pub max_certificate_bytes: usize,
    pub max_signature_bytes: usize,
    /// Most node signatures a request may ask for: f+1 in a cluster of 2f+1 nodes.
    pub max_signatures_wanted: u32,
}

/// Room for 10,000 states of about 42 encoded bytes each, a certificate and the rest.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1 << 20;
pub const DEFAULT_MAX_CERTIFICATE_BYTES: usize = 16 << 10;
/// An Ed25519 signature is 64 bytes and a DER ECDSA P-256 one at most 72.
pub const DEFAULT_MAX_SIGNATURE_BYTES: usize = 256;

impl CheckConfig {
    pub fn new(notary_name: impl Into<String>) -> CheckConfig {
        CheckConfig {
            notary_name: notary_name.into(),
            allowed_roles: vec![Role::Client, Role::Peer],
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_certificate_bytes: DEFAULT_MAX_CERTIFICATE_BYTES,
            max_signature_bytes: DEFAULT_MAX_SIGNATURE_BYTES,
            max_signatures_wanted: 1,
        }
    }
}

/// Why a request was refused before ordering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckError {
    TransactionInvalid(InvalidTransaction),
    /// The caller's certificate is not one of a trusted MSP's members (malformed, unknown
    /// issuer, expired, a CA or TLS certificate, no role, ...).
    NotAMember(MembershipError),
    Revoked(MembershipError),
    WrongRole {
        role: Role,
        allowed: Vec<Role>,
    },
    RequestSignatureInvalid(MembershipError),
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::TransactionInvalid(reason) => write!(f, "transaction invalid: {reason}"),
            CheckError::NotAMember(reason) => write!(f, "caller is not a member: {reason}"),
            CheckError::Revoked(reason) => write!(f, "caller's certificate: {reason}"),
            CheckError::WrongRole { role, allowed } => {
                let allowed: Vec<String> = allowed.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "caller's role {role} may not notarise (allowed: {})",
                    allowed.join(", ")
                )
            }
            CheckError::RequestSignatureInvalid(reason) => {
                write!(f, "request signature invalid: {reason}")
            }
        }
    }
}

impl std::error::Error for CheckError {}

impl From<InvalidTransaction> for CheckError {
    fn from(reason: InvalidTransaction) -> CheckError {
        CheckError::TransactionInvalid(reason)
    }
}

/// A request that passed every check, ready to be ordered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedRequest {
    pub request: ValidatedRequest,
    pub caller: VerifiedIdentity,
    /// At least 1.
    pub signatures_wanted: u32,
}

impl CheckedRequest {
    /// The command to order, encoded with [`NotaryCommand::encode`].
    pub fn command(&self) -> NotaryCommand {
        NotaryCommand::Notarise(self.request.clone())
    }
}

/// Runs every check on `request`, taking `now` for certificate validity.
pub fn check_request(
    request: &pb::NotariseRequest,
    membership: &Membership,
    now: SystemTime,
    config: &CheckConfig,
) -> Result<CheckedRequest, CheckError> {
    check_limits(request, config)?;
    let (caller, certificate_der) = check_caller(request, membership, now, config)?;
    let validated = check_transaction(request, config)?;
    let signed = validated.canonical_bytes(&request.notary_name);
    ca::signature::verify(&certificate_der, &signed, &request.signature)
        .map_err(CheckError::RequestSignatureInvalid)?;
    Ok(CheckedRequest {
        request: validated,
        caller,
        signatures_wanted: request.signatures_wanted.max(1),
    })
}

fn too_large(what: &'static str, bytes: usize, max: usize) -> Result<(), CheckError> {
    if bytes > max {
        return Err(InvalidTransaction::TooLarge { what, bytes, max }.into());
    }
    Ok(())
}

fn check_limits(request: &pb::NotariseRequest, config: &CheckConfig) -> Result<(), CheckError> {
    let count = request
        .inputs
        .len()
        .saturating_add(request.references.len());
    if count > MAX_STATES {
        return Err(InvalidTransaction::TooManyStates {
            count,
            max: MAX_STATES,
        }
        .into());
    }
    too_large("request", request.encoded_len(), config.max_request_bytes)?;
    too_large(
        "caller certificate",
        request.caller_certificate.len(),
        config.max_certificate_bytes,
    )?;
    too_large(
        "signature",
        request.signature.len(),
        config.max_signature_bytes,
    )?;
    too_large(
        "notary name",
        request.notary_name.len(),
        MAX_NOTARY_NAME_BYTES,
    )
}

fn check_caller(
    request: &pb::NotariseRequest,
    membership: &Membership,
    now: SystemTime,
    config: &CheckConfig,
) -> Result<(VerifiedIdentity, Vec<u8>), CheckError> {
    let der = ca::certificate_der(&request.caller_certificate)
        .map_err(|reason| CheckError::NotAMember(MembershipError::Malformed(reason)))?;
    let identity = membership.verify(&der, now).map_err(|e| match e {
        MembershipError::Revoked { .. } => CheckError::Revoked(e),
        other => CheckError::NotAMember(other),
    })?;
    if !config.allowed_roles.contains(&identity.role) {
        return Err(CheckError::WrongRole {
            role: identity.role,
            allowed: config.allowed_roles.clone(),
        });
    }
    Ok((identity, der))
}

fn check_transaction(
    request: &pb::NotariseRequest,
    config: &CheckConfig,
) -> Result<ValidatedRequest, CheckError> {
    if !request.notary_name.is_empty() && request.notary_name != config.notary_name {
        return Err(InvalidTransaction::WrongNotary {
            requested: request.notary_name.clone(),
            this_notary: config.notary_name.clone(),
        }
        .into());
    }
    if request.signatures_wanted > config.max_signatures_wanted {
        return Err(InvalidTransaction::TooManySignaturesWanted {
            wanted: request.signatures_wanted,
            max: config.max_signatures_wanted,
        }
        .into());
    }
    let tx_id = TxId::from_slice(&request.tx_id).ok_or(InvalidTransaction::TxIdLength {
        bytes: request.tx_id.len(),
    })?;
    let inputs = states(&request.inputs, StateKind::Input)?;
    let references = states(&request.references, StateKind::Reference)?;
    let window = time_window_from_pb(request.time_window.as_ref());
    Ok(ValidatedRequest::new(tx_id, inputs, references, window)?)
}

fn states(states: &[pb::StateRef], kind: StateKind) -> Result<Vec<StateRef>, CheckError> {
    states
        .iter()
        .enumerate()
        .map(|(position, state)| {
            let tx_hash: [u8; HASH_BYTES] = state.tx_hash.as_slice().try_into().map_err(|_| {
                InvalidTransaction::StateHashLength {
                    kind,
                    position,
                    bytes: state.tx_hash.len(),
                }
            })?;
            Ok(StateRef::new(tx_hash, state.output_index))
        })
        .collect()
}
