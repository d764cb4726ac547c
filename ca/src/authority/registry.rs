//! The CA's record of everything it issued, kept next to its key so revocation can find a
//! certificate by serial long after the certificate itself was handed out.

use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::RevocationReason;
use crate::error::CaError;
use crate::files::{self, PUBLIC};
use crate::role::Role;
use crate::serial::Serial;
use crate::time_fmt::serde_rfc3339;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertificateKind {
    /// The MSP identity a member signs with.
    Signing,
    Tls,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    #[serde(with = "serde_rfc3339")]
    pub at: SystemTime,
    pub reason: RevocationReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedRecord {
    pub serial: Serial,
    pub kind: CertificateKind,
    pub role: Role,
    pub common_name: String,
    #[serde(with = "serde_rfc3339")]
    pub not_before: SystemTime,
    #[serde(with = "serde_rfc3339")]
    pub not_after: SystemTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Revocation>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Registry {
    /// RFC 5280 wants CRL numbers to grow with every CRL, so relying parties can tell the
    /// newest; it has to survive restarts of the CA.
    pub crl_number: u64,
    pub certificates: Vec<IssuedRecord>,
}

impl Registry {
    pub(crate) fn load(path: &Path) -> Result<Registry, CaError> {
        let text = files::read_to_string(path)?;
        serde_json::from_str(&text).map_err(|e| CaError::corrupt(path, e))
    }

    pub(crate) fn store(&self, path: &Path) -> Result<(), CaError> {
        let mut json = serde_json::to_string_pretty(self)
            .map_err(|e| CaError::corrupt(path, format!("cannot encode registry: {e}")))?;
        json.push('\n');
        files::replace(path, json.as_bytes(), PUBLIC)
    }

    pub(crate) fn find_mut(&mut self, serial: &Serial) -> Option<&mut IssuedRecord> {
        self.certificates.iter_mut().find(|r| &r.serial == serial)
    }
}
