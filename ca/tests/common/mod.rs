#![allow(dead_code)]

use std::time::{Duration, SystemTime};

use ca::{Algo, CertificateAuthority, IssuedIdentity, Membership, Role};

pub const DAY: Duration = Duration::from_secs(86_400);

pub fn authority(msp_id: &str, algo: Algo) -> CertificateAuthority {
    CertificateAuthority::init(&format!("ca.{}", msp_id.to_lowercase()), msp_id, algo).unwrap()
}

pub fn issue(ca: &mut CertificateAuthority, role: Role, name: &str) -> IssuedIdentity {
    ca.issue(role, name, &[], 30).unwrap()
}

pub fn der(pem_text: &str) -> Vec<u8> {
    ca::certificate_der(pem_text.as_bytes()).unwrap()
}

pub fn trusting(cas: &[&CertificateAuthority]) -> Membership {
    let mut membership = Membership::new();
    for ca in cas {
        membership.add_ca(ca.msp_id(), ca.cert_der()).unwrap();
    }
    membership
}

pub fn now() -> SystemTime {
    SystemTime::now()
}
