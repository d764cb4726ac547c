//! What the CA hands to a new member, and how it lands on disk.

use std::fmt;
use std::path::Path;

use crate::error::CaError;
use crate::files::{self, PUBLIC, SECRET};
use crate::msp_layout::*;
use crate::role::Role;
use crate::serial::Serial;

/// A certificate together with the private key it certifies.
#[derive(Clone)]
pub struct CertifiedKey {
    pub serial: Serial,
    pub cert_der: Vec<u8>,
    pub cert_pem: String,
    key_pem: String,
}

impl CertifiedKey {
    pub(crate) fn new(serial: Serial, cert: &rcgen::Certificate, key: &rcgen::KeyPair) -> Self {
        CertifiedKey {
            serial,
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// The private key as PKCS#8 PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }
}

impl fmt::Debug for CertifiedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertifiedKey")
            .field("serial", &self.serial)
            .field("key_pem", &"[elided]")
            .finish_non_exhaustive()
    }
}

/// A member's two identities: one to sign messages with (its MSP identity, carrying the
/// role), one for mutual TLS. They use separate keys as in Fabric, so a leaked TLS key does
/// not let anyone sign transactions.
#[derive(Debug, Clone)]
pub struct IssuedIdentity {
    pub msp_id: String,
    pub role: Role,
    pub common_name: String,
    pub ca_cert_pem: String,
    pub signing: CertifiedKey,
    pub tls: CertifiedKey,
}

impl IssuedIdentity {
    /// Writes Fabric's local MSP layout under `dir`:
    ///
    /// ```text
    /// msp/cacerts/ca.pem      msp/signcerts/cert.pem   msp/keystore/key.pem (0600)
    /// msp/tlscacerts/ca.pem   msp/config.yaml          (NodeOUs enabled)
    /// tls/ca.crt              tls/server.crt           tls/server.key (0600)
    /// ```
    ///
    /// Refuses to replace an identity that is already there.
    pub fn write_msp(&self, dir: &Path) -> Result<(), CaError> {
        let msp = dir.join(MSP_DIR);
        let tls = dir.join(TLS_DIR);
        for existing in [
            msp.join(KEYSTORE).join(SIGN_KEY_FILE),
            tls.join(TLS_KEY_FILE),
        ] {
            if existing.exists() {
                return Err(CaError::AlreadyExists(existing));
            }
        }

        for sub in [CACERTS, TLSCACERTS, SIGNCERTS] {
            files::create_dir(&msp.join(sub), 0o755)?;
        }
        files::create_dir(&msp.join(KEYSTORE), 0o700)?;
        files::create_dir(&tls, 0o755)?;

        let ca = self.ca_cert_pem.as_bytes();
        // Keys first: if a certificate write fails afterwards, the refusal above keeps a rerun
        // from minting a second identity over this one.
        files::create_new(
            &msp.join(KEYSTORE).join(SIGN_KEY_FILE),
            self.signing.key_pem.as_bytes(),
            SECRET,
        )?;
        files::create_new(&tls.join(TLS_KEY_FILE), self.tls.key_pem.as_bytes(), SECRET)?;
        files::replace(&msp.join(CACERTS).join(CA_CERT_FILE), ca, PUBLIC)?;
        files::replace(&msp.join(TLSCACERTS).join(CA_CERT_FILE), ca, PUBLIC)?;
        files::replace(
            &msp.join(SIGNCERTS).join(SIGN_CERT_FILE),
            self.signing.cert_pem.as_bytes(),
            PUBLIC,
        )?;
        files::replace(&msp.join(CONFIG_FILE), node_ou_config().as_bytes(), PUBLIC)?;
        files::replace(&tls.join(TLS_CA_FILE), ca, PUBLIC)?;
        files::replace(
            &tls.join(TLS_CERT_FILE),
            self.tls.cert_pem.as_bytes(),
            PUBLIC,
        )?;
        Ok(())
    }
}
