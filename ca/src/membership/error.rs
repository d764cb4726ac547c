use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::SystemTime;

use crate::role::Role;
use crate::serial::Serial;
use crate::time_fmt::rfc3339;

/// Why a certificate, or a signature made with it, was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MembershipError {
    /// Not a well-formed certificate (or signature) at all.
    Malformed(String),
    /// CA certificates certify members; Fabric refuses them as identities and so does Synod.
    NotAnEndEntity,
    /// Signed by its own key rather than by a trusted CA.
    SelfSigned,
    /// Issued by a CA that no trusted MSP contains.
    UnknownIssuer {
        issuer: String,
    },
    /// The MSP id the identity claims is not one this node knows.
    UnknownMsp(String),
    /// Issued by a CA of another MSP than the one it claims, or naming another organisation
    /// than its issuer's MSP.
    WrongMsp {
        claimed: String,
        actual: String,
    },
    /// The signature does not verify: over a certificate, it was tampered with or forged;
    /// over a message, it was made by another key or over other bytes.
    BadSignature,
    /// An ECDSA signature with S above half the group order. Both S and n−S verify, so Fabric
    /// accepts only the low one to keep signatures, and the transaction ids derived from them,
    /// unique.
    HighS,
    /// The key is of a kind Synod does not sign with.
    UnsupportedAlgorithm(String),
    NotYetValid {
        not_before: SystemTime,
    },
    Expired {
        not_after: SystemTime,
    },
    /// The CA that issued the certificate has itself expired.
    IssuerExpired {
        not_after: SystemTime,
    },
    Revoked {
        serial: Serial,
    },
    /// A TLS certificate (extended key usage serverAuth or clientAuth) offered as a signing
    /// identity: a leaked TLS key must not let anyone sign messages.
    TlsCertificate,
    /// A certificate offered as a TLS client identity that does not allow clientAuth.
    NotATlsClientCertificate,
    /// No NodeOU (`OU=orderer|peer|client|admin`) in the subject.
    MissingRole,
    /// More than one NodeOU: Fabric requires exactly one.
    AmbiguousRole(Vec<Role>),
    /// A valid member, but not allowed to do this.
    WrongRole {
        role: Role,
        allowed: Vec<Role>,
    },
}

impl fmt::Display for MembershipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MembershipError::Malformed(reason) => write!(f, "malformed certificate: {reason}"),
            MembershipError::NotAnEndEntity => {
                f.write_str("a CA certificate cannot be used as a member identity")
            }
            MembershipError::SelfSigned => {
                f.write_str("self-signed certificate: not issued by any trusted CA")
            }
            MembershipError::UnknownIssuer { issuer } => {
                write!(f, "issuer {issuer:?} is not a trusted CA of any known MSP")
            }
            MembershipError::UnknownMsp(msp) => write!(f, "unknown MSP {msp:?}"),
            MembershipError::WrongMsp { claimed, actual } => write!(
                f,
                "identity claims MSP {claimed:?} but was issued for MSP {actual:?}"
            ),
            MembershipError::BadSignature => f.write_str("signature verification failed"),
            MembershipError::HighS => {
                f.write_str("ECDSA signature is not in low-S form, as Fabric requires")
            }
            MembershipError::UnsupportedAlgorithm(alg) => {
                write!(f, "unsupported key algorithm {alg}")
            }
            MembershipError::NotYetValid { not_before } => {
                write!(
                    f,
                    "certificate is not valid before {}",
                    rfc3339(*not_before)
                )
            }
            MembershipError::Expired { not_after } => {
                write!(f, "certificate expired at {}", rfc3339(*not_after))
            }
            MembershipError::IssuerExpired { not_after } => {
                write!(f, "the issuing CA expired at {}", rfc3339(*not_after))
            }
            MembershipError::Revoked { serial } => {
                write!(f, "certificate {serial} has been revoked")
            }
            MembershipError::TlsCertificate => {
                f.write_str("a TLS certificate cannot be used as a signing identity")
            }
            MembershipError::NotATlsClientCertificate => {
                f.write_str("the certificate is not issued for TLS client authentication")
            }
            MembershipError::MissingRole => f.write_str(
                "certificate carries no role (expected OU=orderer, peer, client or admin)",
            ),
            MembershipError::AmbiguousRole(roles) => {
                write!(f, "certificate carries several roles: {}", join(roles))
            }
            MembershipError::WrongRole { role, allowed } => {
                write!(
                    f,
                    "role {role} is not allowed here (allowed: {})",
                    join(allowed)
                )
            }
        }
    }
}

fn join(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_ou())
        .collect::<Vec<_>>()
        .join(", ")
}

impl std::error::Error for MembershipError {}

/// Why trust material (CA certificates, CRLs) could not be loaded. Loading fails as a whole:
/// a node must not run with half of what its operator configured.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadError {
    Io {
        path: PathBuf,
        source: io::Error,
    },
    Malformed {
        what: String,
        reason: String,
    },
    NotACa {
        what: String,
        reason: String,
    },
    /// A CRL that no trusted CA of its MSP signed.
    UntrustedCrl {
        what: String,
        reason: String,
    },
    NoCaCertificates {
        msp_id: String,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            LoadError::Malformed { what, reason } => write!(f, "{what}: {reason}"),
            LoadError::NotACa { what, reason } => write!(f, "{what}: not a usable CA: {reason}"),
            LoadError::UntrustedCrl { what, reason } => {
                write!(f, "{what}: CRL not accepted: {reason}")
            }
            LoadError::NoCaCertificates { msp_id } => {
                write!(f, "MSP {msp_id:?} has no CA certificates")
            }
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
