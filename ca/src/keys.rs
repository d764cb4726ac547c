//! Key generation and the PKCS#8 form keys are stored in.

use rcgen::KeyPair;

use crate::error::CaError;
use crate::role::Algo;

/// ring writes Ed25519 keys as PKCS#8 v2 (RFC 5958, with the public key appended); OpenSSL's
/// and Go's tooling, which Fabric deployments use, write and expect the plain v1 form of
/// RFC 8410. Both forms share this prefix up to the 32-byte seed.
const ED25519_V2_PREFIX: [u8; 16] = [
    0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
const ED25519_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

pub(crate) fn generate(algo: Algo) -> Result<KeyPair, CaError> {
    let key = KeyPair::generate_for(algo.rcgen())?;
    let der = key.serialized_der();
    if algo == Algo::Ed25519 && der.len() >= 48 && der[..16] == ED25519_V2_PREFIX {
        let mut v1 = ED25519_V1_PREFIX.to_vec();
        v1.extend_from_slice(&der[16..48]);
        return Ok(KeyPair::try_from(v1.as_slice())?);
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_keys_are_stored_as_pkcs8_v1() {
        let key = generate(Algo::Ed25519).unwrap();
        assert_eq!(key.serialized_der().len(), 48);
        assert_eq!(key.serialized_der()[..16], ED25519_V1_PREFIX);
        let reloaded = KeyPair::from_pem(&key.serialize_pem()).unwrap();
        assert_eq!(reloaded.public_key_raw(), key.public_key_raw());
    }

    #[test]
    fn p256_keys_load_back() {
        let key = generate(Algo::P256).unwrap();
        let reloaded = KeyPair::from_pem(&key.serialize_pem()).unwrap();
        assert_eq!(Algo::of_key(&reloaded), Some(Algo::P256));
    }
}
