#![allow(dead_code)]

use std::time::SystemTime;

use ca::{Algo, CertificateAuthority, IssuedIdentity, Membership, Role};
use notary_adapter::{StateRef, TimeWindow, TxId, ValidatedRequest};

pub const NOTARY: &str = "O=Notary, L=London, C=GB";

pub fn authority(msp_id: &str, algo: Algo) -> CertificateAuthority {
    CertificateAuthority::init(&format!("ca.{}", msp_id.to_lowercase()), msp_id, algo).unwrap()
}

pub fn issue(ca: &mut CertificateAuthority, role: Role, name: &str) -> IssuedIdentity {
    ca.issue(role, name, &[], 30).unwrap()
}

pub fn trusting(cas: &[&CertificateAuthority]) -> Membership {
    let mut membership = Membership::new();
    for ca in cas {
        membership.add_ca(ca.msp_id(), ca.cert_der()).unwrap();
    }
    membership
}

pub fn pem_der(text: &str) -> Vec<u8> {
    pem::parse(text).unwrap().into_contents()
}

pub fn now() -> SystemTime {
    SystemTime::now()
}

pub fn tx(n: u8) -> TxId {
    TxId([n; 32])
}

pub fn state(n: u8, index: u32) -> StateRef {
    StateRef::new([n; 32], index)
}

pub fn request(tx_id: TxId, inputs: &[StateRef], references: &[StateRef]) -> ValidatedRequest {
    ValidatedRequest::new(
        tx_id,
        inputs.to_vec(),
        references.to_vec(),
        TimeWindow::default(),
    )
    .unwrap()
}

/// splitmix64: a few lines of deterministic randomness, so a failing seed replays.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform enough in `0..bound` for tests (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}
