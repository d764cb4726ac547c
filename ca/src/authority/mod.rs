//! Issuing: a self-signed root per organisation (MSP) that issues, records and revokes member
//! identities.
//!
//! A CA directory holds:
//!
//! ```text
//! ca.pem         the root certificate: give it to every node as the MSP's cacerts
//! ca.key         its PKCS#8 private key (0600); whoever holds it can mint members
//! registry.json  every certificate issued, and which were revoked
//! crl.pem        the latest certificate revocation list: give it to every node
//! ```

mod profile;
mod registry;
mod revocation;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{Issuer, KeyPair, PublicKeyData};

pub use registry::{CertificateKind, IssuedRecord, Revocation};
pub use revocation::RevocationReason;

use self::profile::Validity;
use self::registry::Registry;
use crate::certinfo;
use crate::error::CaError;
use crate::files::{self, PUBLIC, SECRET};
use crate::identity::{CertifiedKey, IssuedIdentity};
use crate::keys;
use crate::role::{Algo, Role};
use crate::serial::Serial;

pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca.key";
pub const REGISTRY_FILE: &str = "registry.json";
pub const CRL_FILE: &str = "crl.pem";

const DAY: Duration = Duration::from_secs(86_400);
/// Ten years, as cryptogen: replacing a root means re-issuing every member.
const CA_LIFETIME: Duration = Duration::from_secs(3650 * 86_400);
pub const DEFAULT_DAYS: u32 = 365;
/// Backdating, as cryptogen does, absorbs clock skew between the CA and the nodes that
/// receive a certificate minutes after it was made.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// How to issue an identity. `Default` gives [`DEFAULT_DAYS`] from now, no SANs and the CA's
/// own algorithm; tests and renewals can pin the validity window exactly.
#[derive(Debug, Clone)]
pub struct IssueOptions {
    /// Host names and IP addresses the TLS certificate is valid for.
    pub sans: Vec<String>,
    /// Lifetime when `not_after` is not given.
    pub days: u32,
    /// Defaults to five minutes ago.
    pub not_before: Option<SystemTime>,
    /// Defaults to `not_before` + `days`.
    pub not_after: Option<SystemTime>,
    /// Key algorithm of the new identity; defaults to the CA's.
    pub algo: Option<Algo>,
}

impl Default for IssueOptions {
    fn default() -> Self {
        IssueOptions {
            sans: Vec::new(),
            days: DEFAULT_DAYS,
            not_before: None,
            not_after: None,
            algo: None,
        }
    }
}

pub struct CertificateAuthority {
    name: String,
    msp_id: String,
    algo: Algo,
    cert_der: Vec<u8>,
    cert_pem: String,
    not_after: SystemTime,
    issuer: Issuer<'static, KeyPair>,
    registry: Registry,
    /// Set once the CA lives on disk; from then on every change is written through.
    dir: Option<PathBuf>,
}

impl CertificateAuthority {
    /// Creates a new root CA in memory; [`save`](Self::save) puts it on disk.
    pub fn init(name: &str, msp_id: &str, algo: Algo) -> Result<Self, CaError> {
        check_label("CA name", name)?;
        check_label("MSP id", msp_id)?;
        let key = keys::generate(algo)?;
        let not_before = SystemTime::now() - BACKDATE;
        let validity = Validity {
            not_before,
            not_after: not_before + CA_LIFETIME,
        };
        let cert = profile::root(name, msp_id, &Serial::random(), &validity).self_signed(&key)?;
        Self::assemble(cert.der().to_vec(), key, Registry::default(), None)
    }

    /// Opens a CA directory written by [`save`](Self::save).
    pub fn load(dir: &Path) -> Result<Self, CaError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_text = files::read_to_string(&cert_path)?;
        let cert_der = certinfo::certificate_der(cert_text.as_bytes())
            .map_err(|e| CaError::corrupt(&cert_path, e))?;
        let key_text = files::read_to_string(&key_path)?;
        let key = KeyPair::from_pem(&key_text).map_err(|e| CaError::corrupt(&key_path, e))?;
        let registry = Registry::load(&dir.join(REGISTRY_FILE))?;
        Self::assemble(cert_der, key, registry, Some(dir.to_path_buf())).map_err(|e| match e {
            CaError::InvalidRequest(reason) => CaError::corrupt(dir, reason),
            other => other,
        })
    }

    fn assemble(
        cert_der: Vec<u8>,
        key: KeyPair,
        registry: Registry,
        dir: Option<PathBuf>,
    ) -> Result<Self, CaError> {
        let cert = certinfo::parse(&cert_der).map_err(CaError::InvalidRequest)?;
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(CaError::InvalidRequest(
                "the CA key does not match the CA certificate".to_owned(),
            ));
        }
        if !cert.is_ca() {
            return Err(CaError::InvalidRequest(
                "the CA certificate is not marked CA:true".to_owned(),
            ));
        }
        let name = certinfo::common_name(cert.subject()).unwrap_or_default();
        let msp_id = certinfo::organizations(cert.subject())
            .into_iter()
            .next()
            .ok_or_else(|| {
                CaError::InvalidRequest("the CA certificate names no organisation (O)".to_owned())
            })?;
        let not_after = crate::time_fmt::from_unix_seconds(cert.validity().not_after.timestamp());
        let algo = Algo::of_key(&key).ok_or_else(|| {
            CaError::InvalidRequest("the CA key is neither Ed25519 nor ECDSA P-256".to_owned())
        })?;
        let issuer = Issuer::from_ca_cert_der(&cert_der.clone().into(), key)?;
        let cert_pem = pem::encode(&pem::Pem::new("CERTIFICATE", cert_der.clone()));
        Ok(CertificateAuthority {
            name,
            msp_id,
            algo,
            cert_der,
            cert_pem,
            not_after,
            issuer,
            registry,
            dir,
        })
    }

    /// Writes a new CA directory (created if missing) and keeps it as this CA's home.
    /// Refuses to touch a directory that already holds a CA.
    pub fn save(&mut self, dir: &Path) -> Result<(), CaError> {
        for existing in [CA_KEY_FILE, CA_CERT_FILE, REGISTRY_FILE] {
            let path = dir.join(existing);
            if path.exists() {
                return Err(CaError::AlreadyExists(path));
            }
        }
        files::create_dir(dir, 0o700)?;
        files::create_new(
            &dir.join(CA_KEY_FILE),
            self.issuer.key().serialize_pem().as_bytes(),
            SECRET,
        )?;
        files::create_new(&dir.join(CA_CERT_FILE), self.cert_pem.as_bytes(), PUBLIC)?;
        self.dir = Some(dir.to_path_buf());
        // An empty CRL from day one lets nodes be configured with a CRL file before anyone
        // was ever revoked.
        self.crl()?;
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn msp_id(&self) -> &str {
        &self.msp_id
    }

    pub fn algo(&self) -> Algo {
        self.algo
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Everything issued so far, oldest first.
    pub fn certificates(&self) -> &[IssuedRecord] {
        &self.registry.certificates
    }

    /// Issues a signing and a TLS identity valid for `days` from now.
    pub fn issue(
        &mut self,
        role: Role,
        common_name: &str,
        sans: &[String],
        days: u32,
    ) -> Result<IssuedIdentity, CaError> {
        let options = IssueOptions {
            sans: sans.to_vec(),
            days,
            ..IssueOptions::default()
        };
        self.issue_with(role, common_name, &options)
    }

    pub fn issue_with(
        &mut self,
        role: Role,
        common_name: &str,
        options: &IssueOptions,
    ) -> Result<IssuedIdentity, CaError> {
        check_label("common name", common_name)?;
        let validity = self.validity(options)?;
        let sans = profile::subject_alt_names(&options.sans)?;
        let algo = options.algo.unwrap_or(self.algo);

        let sign_key = keys::generate(algo)?;
        let sign_serial = Serial::random();
        let sign_cert = profile::signing(&self.msp_id, role, common_name, &sign_serial, &validity)
            .signed_by(&sign_key, &self.issuer)?;

        let tls_key = keys::generate(algo)?;
        let tls_serial = Serial::random();
        let tls_cert = profile::tls(
            &self.msp_id,
            role,
            common_name,
            sans,
            &tls_serial,
            &validity,
        )
        .signed_by(&tls_key, &self.issuer)?;

        for (serial, kind) in [
            (&sign_serial, CertificateKind::Signing),
            (&tls_serial, CertificateKind::Tls),
        ] {
            self.registry.certificates.push(IssuedRecord {
                serial: serial.clone(),
                kind,
                role,
                common_name: common_name.to_owned(),
                not_before: truncate_to_seconds(validity.not_before),
                not_after: truncate_to_seconds(validity.not_after),
                revoked: None,
            });
        }
        self.persist_registry()?;

        Ok(IssuedIdentity {
            msp_id: self.msp_id.clone(),
            role,
            common_name: common_name.to_owned(),
            ca_cert_pem: self.cert_pem.clone(),
            signing: CertifiedKey::new(sign_serial, &sign_cert, &sign_key),
            tls: CertifiedKey::new(tls_serial, &tls_cert, &tls_key),
        })
    }

    fn validity(&self, options: &IssueOptions) -> Result<Validity, CaError> {
        let not_before = options
            .not_before
            .unwrap_or_else(|| SystemTime::now() - BACKDATE);
        let not_after = match options.not_after {
            Some(t) => t,
            None => {
                if options.days == 0 {
                    return Err(CaError::InvalidRequest(
                        "validity must be at least one day".to_owned(),
                    ));
                }
                not_before + DAY * options.days
            }
        };
        if not_after <= not_before {
            return Err(CaError::InvalidRequest(
                "the certificate would expire before it becomes valid".to_owned(),
            ));
        }
        // A member certificate outliving its root would be rejected by every verifier anyway;
        // refusing here surfaces the mistake where it is made.
        if not_after > self.not_after {
            return Err(CaError::InvalidRequest(format!(
                "the certificate would outlive the CA, which expires {}",
                crate::time_fmt::rfc3339(self.not_after)
            )));
        }
        Ok(Validity {
            not_before,
            not_after,
        })
    }

    /// Marks a certificate revoked. It only stops being accepted once nodes load a CRL made
    /// afterwards by [`crl`](Self::crl).
    pub fn revoke(&mut self, serial: &Serial, reason: RevocationReason) -> Result<(), CaError> {
        let record = self
            .registry
            .find_mut(serial)
            .ok_or_else(|| CaError::UnknownSerial(serial.clone()))?;
        if record.revoked.is_some() {
            return Err(CaError::AlreadyRevoked(serial.clone()));
        }
        record.revoked = Some(Revocation {
            at: truncate_to_seconds(SystemTime::now()),
            reason,
        });
        self.persist_registry()
    }

    /// Signs a fresh CRL listing every revoked certificate and returns it as PEM. When the CA
    /// lives on disk the CRL is also written to `crl.pem`.
    pub fn crl(&mut self) -> Result<String, CaError> {
        self.registry.crl_number += 1;
        let params = revocation::crl_params(
            &self.registry.certificates,
            self.registry.crl_number,
            SystemTime::now(),
        );
        let crl_pem = params.signed_by(&self.issuer)?.pem()?;
        self.persist_registry()?;
        if let Some(dir) = &self.dir {
            files::replace(&dir.join(CRL_FILE), crl_pem.as_bytes(), PUBLIC)?;
        }
        Ok(crl_pem)
    }

    fn persist_registry(&self) -> Result<(), CaError> {
        match &self.dir {
            Some(dir) => self.registry.store(&dir.join(REGISTRY_FILE)),
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("name", &self.name)
            .field("msp_id", &self.msp_id)
            .field("algo", &self.algo)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn check_label(what: &str, value: &str) -> Result<(), CaError> {
    if value.trim().is_empty() {
        return Err(CaError::InvalidRequest(format!("{what} must not be empty")));
    }
    if value.chars().any(char::is_control) {
        return Err(CaError::InvalidRequest(format!(
            "{what} {value:?} contains control characters"
        )));
    }
    Ok(())
}

/// Certificates hold whole seconds; the registry should show what the certificate says.
fn truncate_to_seconds(t: SystemTime) -> SystemTime {
    crate::time_fmt::from_unix_seconds(crate::time_fmt::unix_seconds(t))
}
