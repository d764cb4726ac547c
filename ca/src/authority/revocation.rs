use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::IssuedRecord;
use crate::serial::Serial;

/// Nodes keep trusting a CRL past its next-update time (see `membership`), so this only tells
/// relying parties how often to expect a fresh one.
const CRL_LIFETIME: Duration = Duration::from_secs(7 * 86_400);

/// What the next CRL says: every revoked record, under a CRL number that must only grow.
pub(crate) fn crl_params(
    records: &[IssuedRecord],
    crl_number: u64,
    now: SystemTime,
) -> CertificateRevocationListParams {
    let revoked_certs = records
        .iter()
        .filter_map(|record| {
            let revocation = record.revoked.as_ref()?;
            Some(RevokedCertParams {
                serial_number: record.serial.to_rcgen(),
                revocation_time: OffsetDateTime::from(revocation.at),
                reason_code: Some(revocation.reason.to_rcgen()),
                invalidity_date: None,
            })
        })
        .collect();
    CertificateRevocationListParams {
        this_update: OffsetDateTime::from(now),
        next_update: OffsetDateTime::from(now + CRL_LIFETIME),
        crl_number: Serial::from_bytes(&crl_number.to_be_bytes()).to_rcgen(),
        issuing_distribution_point: None,
        revoked_certs,
        // The same method gave the CA certificate its subject key identifier, so the CRL's
        // authority key identifier points at it.
        key_identifier_method: KeyIdMethod::Sha256,
    }
}

/// RFC 5280 revocation reasons an administrator of a permissioned network plausibly needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RevocationReason {
    #[default]
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    PrivilegeWithdrawn,
}

impl RevocationReason {
    pub const ALL: [RevocationReason; 7] = [
        RevocationReason::Unspecified,
        RevocationReason::KeyCompromise,
        RevocationReason::CaCompromise,
        RevocationReason::AffiliationChanged,
        RevocationReason::Superseded,
        RevocationReason::CessationOfOperation,
        RevocationReason::PrivilegeWithdrawn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "key-compromise",
            RevocationReason::CaCompromise => "ca-compromise",
            RevocationReason::AffiliationChanged => "affiliation-changed",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessation-of-operation",
            RevocationReason::PrivilegeWithdrawn => "privilege-withdrawn",
        }
    }

    pub(crate) fn to_rcgen(self) -> rcgen::RevocationReason {
        match self {
            RevocationReason::Unspecified => rcgen::RevocationReason::Unspecified,
            RevocationReason::KeyCompromise => rcgen::RevocationReason::KeyCompromise,
            RevocationReason::CaCompromise => rcgen::RevocationReason::CaCompromise,
            RevocationReason::AffiliationChanged => rcgen::RevocationReason::AffiliationChanged,
            RevocationReason::Superseded => rcgen::RevocationReason::Superseded,
            RevocationReason::CessationOfOperation => rcgen::RevocationReason::CessationOfOperation,
            RevocationReason::PrivilegeWithdrawn => rcgen::RevocationReason::PrivilegeWithdrawn,
        }
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RevocationReason {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace('_', "-");
        RevocationReason::ALL
            .into_iter()
            .find(|reason| reason.as_str() == wanted)
            .ok_or_else(|| {
                let names: Vec<&str> = RevocationReason::ALL.iter().map(|r| r.as_str()).collect();
                format!(
                    "unknown revocation reason {s:?}: expected one of {}",
                    names.join(", ")
                )
            })
    }
}
