//! Reading the facts Synod cares about out of DER certificates and PEM files.

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

use crate::role::Role;

/// Parses one certificate, rejecting trailing bytes: a certificate travels inside envelopes
/// and anything appended to it is either a bug or an attempt to smuggle data.
pub(crate) fn parse(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok((rest, _)) => Err(format!("{} bytes after the certificate", rest.len())),
        Err(e) => Err(format!("not a DER X.509 certificate: {e}")),
    }
}

fn strings<'b, 'a: 'b>(attrs: impl Iterator<Item = &'b AttributeTypeAndValue<'a>>) -> Vec<String> {
    attrs
        .filter_map(|attr| attr.as_str().ok().map(str::to_owned))
        .collect()
}

pub(crate) fn common_name(name: &X509Name<'_>) -> Option<String> {
    strings(name.iter_common_name()).into_iter().next()
}

pub(crate) fn organizations(name: &X509Name<'_>) -> Vec<String> {
    strings(name.iter_organization())
}

/// The NodeOU roles named in the subject; other OUs (departments, affiliations) are ignored
/// as Fabric ignores them.
pub(crate) fn roles(name: &X509Name<'_>) -> Vec<Role> {
    let mut roles: Vec<Role> = strings(name.iter_organizational_unit())
        .iter()
        .filter_map(|ou| Role::from_ou(ou))
        .collect();
    roles.sort();
    roles.dedup();
    roles
}

/// The TLS purposes (serverAuth, clientAuth) a certificate's extended key usage names.
/// A certificate without the extension has none: Fabric's signing certificates carry no
/// EKU, TLS certificates do.
pub(crate) struct TlsPurposes {
    pub server_auth: bool,
    pub client_auth: bool,
}

pub(crate) fn tls_purposes(cert: &X509Certificate<'_>) -> Result<TlsPurposes, String> {
    let eku = cert
        .extended_key_usage()
        .map_err(|e| format!("extended key usage: {e}"))?;
    Ok(eku.map_or(
        TlsPurposes {
            server_auth: false,
            client_auth: false,
        },
        |eku| TlsPurposes {
            server_auth: eku.value.server_auth,
            client_auth: eku.value.client_auth,
        },
    ))
}

pub(crate) fn subject_key_id<'a>(cert: &'a X509Certificate<'_>) -> Option<&'a [u8]> {
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0),
            _ => None,
        })
}

pub(crate) fn authority_key_id<'a>(cert: &'a X509Certificate<'_>) -> Option<&'a [u8]> {
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|id| id.0)
            }
            _ => None,
        })
}

/// The DER contents of every PEM block labelled `label` in `text`.
pub(crate) fn pem_blocks(text: &[u8], label: &str) -> Result<Vec<Vec<u8>>, String> {
    let blocks = pem::parse_many(text).map_err(|e| format!("invalid PEM: {e}"))?;
    Ok(blocks
        .into_iter()
        .filter(|block| block.tag() == label)
        .map(|block| block.into_contents())
        .collect())
}

/// Reads a certificate file's contents, PEM or raw DER, since admins hold both.
pub fn certificate_der(bytes: &[u8]) -> Result<Vec<u8>, String> {
    if bytes.first() == Some(&0x30) {
        return Ok(bytes.to_vec());
    }
    let mut blocks = pem_blocks(bytes, "CERTIFICATE")?;
    match blocks.len() {
        0 => Err("no CERTIFICATE block found".to_owned()),
        1 => Ok(blocks.remove(0)),
        n => Err(format!("expected one certificate, found {n}")),
    }
}
