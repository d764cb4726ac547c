//! The certificate profiles the CA issues, following what Fabric's `cryptogen` produces.

use std::net::IpAddr;
use std::time::SystemTime;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

use crate::error::CaError;
use crate::role::Role;
use crate::serial::Serial;

pub(crate) struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

fn base(serial: &Serial, validity: &Validity, subject: DistinguishedName) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.serial_number = Some(serial.to_rcgen());
    params.not_before = OffsetDateTime::from(validity.not_before);
    params.not_after = OffsetDateTime::from(validity.not_after);
    params.distinguished_name = subject;
    params
}

fn subject(msp_id: &str, role: Option<Role>, common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, msp_id);
    if let Some(role) = role {
        dn.push(DnType::OrganizationalUnitName, role.as_ou());
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

/// A root that signs only end-entity certificates: path length 0 means even a certificate
/// mistakenly marked CA:true below it could not extend the chain.
pub(crate) fn root(
    name: &str,
    msp_id: &str,
    serial: &Serial,
    validity: &Validity,
) -> CertificateParams {
    let mut params = base(serial, validity, subject(msp_id, None, name));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// The MSP signing identity. Like cryptogen's: keyUsage digitalSignature only and no
/// extended key usage, since Fabric verifies identities with `ExtKeyUsageAny` and an EKU here
/// would only narrow where the certificate is accepted. No SANs: it names a member, not a host.
pub(crate) fn signing(
    msp_id: &str,
    role: Role,
    common_name: &str,
    serial: &Serial,
    validity: &Validity,
) -> CertificateParams {
    let mut params = base(serial, validity, subject(msp_id, Some(role), common_name));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params
}

/// The TLS identity, usable on both ends of mutual TLS. keyEncipherment is left out although
/// cryptogen sets it: it only means something for RSA key transport, and every key this CA
/// issues is Ed25519 or ECDSA. It carries the holder's NodeOU so that a server can authorise
/// the TLS client itself (the channel participation API admits only admins); the TLS
/// extended key usages are what keep it from passing as a signing identity.
pub(crate) fn tls(
    msp_id: &str,
    role: Role,
    common_name: &str,
    sans: Vec<SanType>,
    serial: &Serial,
    validity: &Validity,
) -> CertificateParams {
    let mut params = base(serial, validity, subject(msp_id, Some(role), common_name));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.subject_alt_names = sans;
    params.use_authority_key_identifier_extension = true;
    params
}

/// Host names become DNS names and addresses become IP SANs, as cryptogen does. Nothing is
/// added implicitly: a certificate valid for `localhost` must be asked for.
pub(crate) fn subject_alt_names(sans: &[String]) -> Result<Vec<SanType>, CaError> {
    sans.iter()
        .map(|san| {
            let san = san.trim();
            if let Ok(ip) = san.parse::<IpAddr>() {
                return Ok(SanType::IpAddress(ip));
            }
            if !is_dns_name(san) {
                return Err(CaError::InvalidRequest(format!(
                    "invalid subject alternative name {san:?}: expected a host name or an IP address"
                )));
            }
            let name = san.to_ascii_lowercase().try_into().map_err(|e| {
                CaError::InvalidRequest(format!("invalid host name {san:?}: {e}"))
            })?;
            Ok(SanType::DnsName(name))
        })
        .collect()
}

fn is_dns_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sans_split_into_dns_and_ip() {
        let sans = subject_alt_names(&[
            "Orderer0.example.com".into(),
            "10.0.0.7".into(),
            "::1".into(),
        ])
        .unwrap();
        assert!(matches!(&sans[0], SanType::DnsName(n) if n.as_str() == "orderer0.example.com"));
        assert!(matches!(sans[1], SanType::IpAddress(IpAddr::V4(_))));
        assert!(matches!(sans[2], SanType::IpAddress(IpAddr::V6(_))));
    }

    #[test]
    fn junk_sans_are_refused() {
        for bad in ["", "has space.com", "-x.com", "a..b", "ünïcode.org"] {
            assert!(subject_alt_names(&[bad.to_owned()]).is_err(), "{bad:?}");
        }
    }
}
