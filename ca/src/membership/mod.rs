//! Verification: is this certificate a member of a trusted organisation, and in which role?
//!
//! A node builds a [`Membership`] from the CA certificates and CRLs of every MSP it trusts,
//! then calls [`Membership::verify_for`] on the creator of each request (a Fabric
//! `SerializedIdentity`: MSP id plus certificate) and [`require_role`] before acting on it.

mod error;
mod trust;

use std::path::PathBuf;
use std::time::SystemTime;

pub use error::{LoadError, MembershipError};

use self::trust::TrustedCa;
use crate::certinfo;
use crate::role::Role;
use crate::serial::Serial;
use crate::time_fmt::{from_unix_seconds, unix_seconds};

/// A certificate that passed every membership check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedIdentity {
    pub msp_id: String,
    pub role: Role,
    pub common_name: String,
    pub serial: Serial,
    pub not_after: SystemTime,
}

/// Trusted CAs per MSP id, with the revocations their CRLs announce.
#[derive(Debug, Clone, Default)]
pub struct Membership {
    /// Where [`reload`](Self::reload) re-reads from.
    sources: Vec<(String, PathBuf)>,
    cas: Vec<TrustedCa>,
}

impl Membership {
    /// An empty membership that trusts no one; add CAs with [`add_ca`](Self::add_ca).
    pub fn new() -> Membership {
        Membership::default()
    }

    /// Loads one directory per MSP id; each is a Fabric MSP folder (`cacerts/`, `crls/`) or a
    /// CA directory (`ca.pem`, `crl.pem`).
    pub fn from_dirs<I, S, P>(msps: I) -> Result<Membership, LoadError>
    where
        I: IntoIterator<Item = (S, P)>,
        S: Into<String>,
        P: Into<PathBuf>,
    {
        let sources: Vec<(String, PathBuf)> = msps
            .into_iter()
            .map(|(id, dir)| (id.into(), dir.into()))
            .collect();
        let mut cas = Vec::new();
        for (msp_id, dir) in &sources {
            cas.extend(trust::load_dir(msp_id, dir)?);
        }
        Ok(Membership { sources, cas })
    }

    /// Re-reads every directory given to [`from_dirs`](Self::from_dirs), e.g. after an
    /// operator dropped in a new CRL. On error the previous trust stays in force: a botched
    /// edit must neither lock members out nor let revoked ones back in. CAs given to
    /// [`add_ca`](Self::add_ca) for MSPs that have no directory are kept as they are.
    pub fn reload(&mut self) -> Result<(), LoadError> {
        let fresh = Membership::from_dirs(self.sources.clone())?;
        let added: Vec<TrustedCa> = self
            .cas
            .iter()
            .filter(|ca| !self.sources.iter().any(|(id, _)| id == &ca.msp_id))
            .cloned()
            .collect();
        self.cas = fresh.cas;
        self.cas.extend(added);
        Ok(())
    }

    /// Trusts `cert_der` as a CA of `msp_id`.
    pub fn add_ca(&mut self, msp_id: &str, cert_der: &[u8]) -> Result<(), LoadError> {
        let what = format!("CA certificate for MSP {msp_id:?}");
        let ca = TrustedCa::new(msp_id, cert_der, &what)?;
        if !self
            .cas
            .iter()
            .any(|known| known.msp_id == ca.msp_id && known.der == ca.der)
        {
            self.cas.push(ca);
        }
        Ok(())
    }

    /// Applies a CRL, which must be signed by a CA already trusted for `msp_id`.
    pub fn add_crl(&mut self, msp_id: &str, crl_der: &[u8]) -> Result<(), LoadError> {
        let what = format!("CRL for MSP {msp_id:?}");
        trust::apply_crl(&mut self.cas, msp_id, crl_der, &what)
    }

    pub fn msp_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.cas.iter().map(|ca| ca.msp_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Checks `cert_der` against every trusted MSP and reports which one it belongs to.
    pub fn verify(
        &self,
        cert_der: &[u8],
        now: SystemTime,
    ) -> Result<VerifiedIdentity, MembershipError> {
        self.check(None, cert_der, now, Purpose::Signing)
    }

    /// Checks the certificate a TLS client presented (its TLS identity, carrying the
    /// holder's NodeOU) against every trusted MSP, for servers that authorise the
    /// connection itself rather than signed messages.
    pub fn verify_tls_client(
        &self,
        cert_der: &[u8],
        now: SystemTime,
    ) -> Result<VerifiedIdentity, MembershipError> {
        self.check(None, cert_der, now, Purpose::TlsClient)
    }

    /// Like [`verify`](Self::verify), for an identity that names its MSP (a Fabric
    /// `SerializedIdentity`): the certificate must have been issued by a CA of that MSP.
    pub fn verify_for(
        &self,
        msp_id: &str,
        cert_der: &[u8],
        now: SystemTime,
    ) -> Result<VerifiedIdentity, MembershipError> {
        if !self.cas.iter().any(|ca| ca.msp_id == msp_id) {
            return Err(MembershipError::UnknownMsp(msp_id.to_owned()));
        }
        self.check(Some(msp_id), cert_der, now, Purpose::Signing)
    }

    fn check(
        &self,
        claimed: Option<&str>,
        cert_der: &[u8],
        now: SystemTime,
        purpose: Purpose,
    ) -> Result<VerifiedIdentity, MembershipError> {
        let cert = certinfo::parse(cert_der).map_err(MembershipError::Malformed)?;
        if cert.is_ca() {
            return Err(MembershipError::NotAnEndEntity);
        }
        let tls = certinfo::tls_purposes(&cert).map_err(MembershipError::Malformed)?;
        match purpose {
            Purpose::Signing if tls.server_auth || tls.client_auth => {
                return Err(MembershipError::TlsCertificate);
            }
            Purpose::TlsClient if !tls.client_auth => {
                return Err(MembershipError::NotATlsClientCertificate);
            }
            _ => {}
        }
        if cert.subject().as_raw() == cert.issuer().as_raw() && cert.verify_signature(None).is_ok()
        {
            return Err(MembershipError::SelfSigned);
        }

        let candidates: Vec<&TrustedCa> = self
            .cas
            .iter()
            .filter(|ca| ca.may_have_issued(&cert))
            .collect();
        if candidates.is_empty() {
            return Err(MembershipError::UnknownIssuer {
                issuer: cert.issuer().to_string(),
            });
        }
        let signers: Vec<&TrustedCa> = candidates
            .into_iter()
            .filter(|ca| ca.signed(&cert))
            .collect();
        let issuer = match claimed {
            None => signers.first(),
            Some(claimed) => match signers.iter().find(|ca| ca.msp_id == claimed) {
                Some(ca) => Some(ca),
                None => match signers.first() {
                    Some(other) => {
                        return Err(MembershipError::WrongMsp {
                            claimed: claimed.to_owned(),
                            actual: other.msp_id.clone(),
                        });
                    }
                    None => None,
                },
            },
        }
        .ok_or(MembershipError::BadSignature)?;

        let validity = cert.validity();
        let now = unix_seconds(now);
        if now < validity.not_before.timestamp() {
            return Err(MembershipError::NotYetValid {
                not_before: from_unix_seconds(validity.not_before.timestamp()),
            });
        }
        if now > validity.not_after.timestamp() {
            return Err(MembershipError::Expired {
                not_after: from_unix_seconds(validity.not_after.timestamp()),
            });
        }

        // Everything a CA signed dies with it, whatever the member certificate says.
        if now > issuer.not_after {
            return Err(MembershipError::IssuerExpired {
                not_after: from_unix_seconds(issuer.not_after),
            });
        }

        let serial = Serial::from_bytes(cert.raw_serial());
        if issuer.revoked.contains(&serial) {
            return Err(MembershipError::Revoked { serial });
        }

        let organizations = certinfo::organizations(cert.subject());
        if !organizations.is_empty() && !organizations.contains(&issuer.msp_id) {
            return Err(MembershipError::WrongMsp {
                claimed: organizations.join(", "),
                actual: issuer.msp_id.clone(),
            });
        }

        let roles = certinfo::roles(cert.subject());
        let role = match roles.as_slice() {
            [] => return Err(MembershipError::MissingRole),
            [role] => *role,
            _ => return Err(MembershipError::AmbiguousRole(roles)),
        };

        Ok(VerifiedIdentity {
            msp_id: issuer.msp_id.clone(),
            role,
            common_name: certinfo::common_name(cert.subject()).unwrap_or_default(),
            serial,
            not_after: from_unix_seconds(validity.not_after.timestamp()),
        })
    }
}

/// What a certificate is being verified for: signing and TLS certificates of one member
/// use separate keys, and neither may stand in for the other.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Signing,
    TlsClient,
}

/// Accepts `identity` only in one of the `allowed` roles.
pub fn require_role(identity: &VerifiedIdentity, allowed: &[Role]) -> Result<(), MembershipError> {
    if allowed.contains(&identity.role) {
        Ok(())
    } else {
        Err(MembershipError::WrongRole {
            role: identity.role,
            allowed: allowed.to_vec(),
        })
    }
}
