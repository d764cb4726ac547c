//! Synod's certificate authority.
//!
//! Every orderer, peer, client and admin of a Synod network is known by an X.509 certificate
//! issued under Hyperledger Fabric's conventions, so that Fabric tooling and SDKs can talk to
//! Synod unchanged:
//!
//! * [`authority`] creates a root CA, issues signing and TLS identities with the holder's role
//!   as a Fabric NodeOU (`OU=orderer|peer|client|admin`), revokes them and publishes CRLs.
//! * [`identity`] holds what was issued and writes it in Fabric's MSP folder layout.
//! * [`membership`] is what a node uses to decide whether a certificate belongs to a trusted
//!   organisation, and in which role.
//! * [`signature`] signs and verifies bytes with an identity's key the way Fabric does.

pub mod authority;
mod certinfo;
mod error;
mod files;
pub mod identity;
mod keys;
pub mod membership;
mod msp_layout;
mod role;
mod serial;
pub mod signature;
mod time_fmt;

pub use authority::{CertificateAuthority, IssueOptions, RevocationReason};
pub use certinfo::certificate_der;
pub use error::CaError;
pub use identity::{CertifiedKey, IssuedIdentity};
pub use membership::{LoadError, Membership, MembershipError, VerifiedIdentity, require_role};
pub use role::{Algo, Role};
pub use serial::Serial;
