//! Trust anchors: the CA certificates of each MSP and the serials their CRLs revoke.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::LoadError;
use crate::authority::{CA_CERT_FILE, CRL_FILE};
use crate::certinfo;
use crate::msp_layout::{CACERTS, CRLS};
use crate::serial::Serial;

#[derive(Debug, Clone)]
pub(super) struct TrustedCa {
    pub msp_id: String,
    pub der: Vec<u8>,
    /// Raw DER of the subject name: issuer matching is byte-for-byte, as in RFC 5280 path
    /// building, so that look-alike names never match.
    pub subject: Vec<u8>,
    pub key_id: Option<Vec<u8>>,
    spki: Vec<u8>,
    pub not_after: i64,
    pub revoked: BTreeSet<Serial>,
}

impl TrustedCa {
    pub fn new(msp_id: &str, der: &[u8], what: &str) -> Result<TrustedCa, LoadError> {
        let malformed = |reason: String| LoadError::Malformed {
            what: what.to_owned(),
            reason,
        };
        let not_a_ca = |reason: &str| LoadError::NotACa {
            what: what.to_owned(),
            reason: reason.to_owned(),
        };
        let cert = certinfo::parse(der).map_err(malformed)?;
        if !cert.is_ca() {
            return Err(not_a_ca("basicConstraints does not say CA:true"));
        }
        if let Ok(Some(usage)) = cert.key_usage() {
            if !usage.value.key_cert_sign() {
                return Err(not_a_ca("keyUsage lacks keyCertSign"));
            }
        }
        // A self-issued root must at least carry its own valid signature; a corrupted copy
        // would otherwise silently reject every member.
        if cert.subject().as_raw() == cert.issuer().as_raw() && cert.verify_signature(None).is_err()
        {
            return Err(not_a_ca("its self-signature does not verify"));
        }
        Ok(TrustedCa {
            msp_id: msp_id.to_owned(),
            der: der.to_vec(),
            subject: cert.subject().as_raw().to_vec(),
            key_id: certinfo::subject_key_id(&cert).map(<[u8]>::to_vec),
            spki: cert.public_key().raw.to_vec(),
            not_after: cert.validity().not_after.timestamp(),
            revoked: BTreeSet::new(),
        })
    }

    fn public_key(&self) -> SubjectPublicKeyInfo<'_> {
        SubjectPublicKeyInfo::from_der(&self.spki)
            .expect("parsed when the CA was loaded")
            .1
    }

    pub fn may_have_issued(&self, cert: &X509Certificate<'_>) -> bool {
        if self.subject != cert.issuer().as_raw() {
            return false;
        }
        match (certinfo::authority_key_id(cert), &self.key_id) {
            (Some(aki), Some(ski)) => aki == ski.as_slice(),
            _ => true,
        }
    }

    pub fn signed(&self, cert: &X509Certificate<'_>) -> bool {
        cert.verify_signature(Some(&self.public_key())).is_ok()
    }

    fn signed_crl(&self, crl: &CertificateRevocationList<'_>) -> bool {
        self.subject == crl.issuer().as_raw() && crl.verify_signature(&self.public_key()).is_ok()
    }
}

/// Records the serials `crl_der` revokes on the CA of `msp_id` that signed it.
///
/// The CRL's next-update time is deliberately not enforced: a late CRL still names every
/// certificate revoked so far, whereas refusing it would lock the whole organisation out.
pub(super) fn apply_crl(
    cas: &mut [TrustedCa],
    msp_id: &str,
    crl_der: &[u8],
    what: &str,
) -> Result<(), LoadError> {
    let crl = match CertificateRevocationList::from_der(crl_der) {
        Ok(([], crl)) => crl,
        Ok((rest, _)) => {
            return Err(LoadError::Malformed {
                what: what.to_owned(),
                reason: format!("{} bytes after the CRL", rest.len()),
            });
        }
        Err(e) => {
            return Err(LoadError::Malformed {
                what: what.to_owned(),
                reason: format!("not a DER X.509 CRL: {e}"),
            });
        }
    };
    let ca = cas
        .iter_mut()
        .find(|ca| ca.msp_id == msp_id && ca.signed_crl(&crl))
        .ok_or_else(|| LoadError::UntrustedCrl {
            what: what.to_owned(),
            reason: format!(
                "not signed by any CA of MSP {msp_id:?} (issuer {})",
                crl.issuer()
            ),
        })?;
    ca.revoked.extend(
        crl.iter_revoked_certificates()
            .map(|revoked| Serial::from_bytes(revoked.raw_serial())),
    );
    Ok(())
}

/// Reads one MSP's trust material from `dir`, in either of two layouts:
///
/// * a Fabric MSP folder: every file in `cacerts/`, and in `crls/` if present;
/// * a CA directory made by `ca init`: `ca.pem` and `crl.pem`.
pub(super) fn load_dir(msp_id: &str, dir: &Path) -> Result<Vec<TrustedCa>, LoadError> {
    let (ca_files, crl_files) = if dir.join(CACERTS).is_dir() {
        (
            list_files(&dir.join(CACERTS))?,
            list_files(&dir.join(CRLS))?,
        )
    } else {
        let crl = dir.join(CRL_FILE);
        (
            vec![dir.join(CA_CERT_FILE)],
            if crl.exists() { vec![crl] } else { Vec::new() },
        )
    };

    let mut cas: Vec<TrustedCa> = Vec::new();
    for path in &ca_files {
        let what = path.display().to_string();
        for der in read_pem_or_der(path, "CERTIFICATE")? {
            let ca = TrustedCa::new(msp_id, &der, &what)?;
            if !cas.iter().any(|known| known.der == ca.der) {
                cas.push(ca);
            }
        }
    }
    if cas.is_empty() {
        return Err(LoadError::NoCaCertificates {
            msp_id: msp_id.to_owned(),
        });
    }
    for path in &crl_files {
        let what = path.display().to_string();
        for der in read_pem_or_der(path, "X509 CRL")? {
            apply_crl(&mut cas, msp_id, &der, &what)?;
        }
    }
    Ok(cas)
}

fn list_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(LoadError::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| LoadError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        // Editors and atomic writers leave dot-files behind; they are never trust material.
        if path.is_file() && !hidden {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn read_pem_or_der(path: &Path, label: &str) -> Result<Vec<Vec<u8>>, LoadError> {
    let bytes = fs::read(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if bytes.first() == Some(&0x30) {
        return Ok(vec![bytes]);
    }
    let blocks = certinfo::pem_blocks(&bytes, label).map_err(|reason| LoadError::Malformed {
        what: path.display().to_string(),
        reason,
    })?;
    if blocks.is_empty() {
        return Err(LoadError::Malformed {
            what: path.display().to_string(),
            reason: format!("no {label} PEM block"),
        });
    }
    Ok(blocks)
}
