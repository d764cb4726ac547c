//! Signing and verifying bytes with a member's key, as Fabric does for envelopes: Ed25519, or
//! ECDSA P-256 over SHA-256 with a DER-encoded, low-S signature.

use p256::ecdsa::signature::Verifier as _;
use rcgen::{KeyPair, SigningKey as _};
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_SIG_ED25519};

use crate::certinfo;
use crate::error::CaError;
use crate::membership::MembershipError;

/// Verifies that `signature` over `message` was made with the key certified by `cert_der`.
///
/// This checks the signature only; whether the certificate belongs to a member is for
/// [`Membership`](crate::Membership) to say.
pub fn verify(cert_der: &[u8], message: &[u8], signature: &[u8]) -> Result<(), MembershipError> {
    let cert = certinfo::parse(cert_der).map_err(MembershipError::Malformed)?;
    let spki = cert.public_key();
    let key = spki.subject_public_key.data.as_ref();
    let algorithm = &spki.algorithm;

    if algorithm.algorithm == OID_SIG_ED25519 {
        let key: &[u8; 32] = key
            .try_into()
            .map_err(|_| MembershipError::Malformed("Ed25519 key is not 32 bytes".to_owned()))?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(key)
            .map_err(|e| MembershipError::Malformed(format!("invalid Ed25519 key: {e}")))?;
        let signature = ed25519_dalek::Signature::from_slice(signature)
            .map_err(|_| MembershipError::BadSignature)?;
        // Strict verification refuses small-order keys and non-canonical encodings, which
        // would otherwise let one signature verify under several keys or messages.
        return key
            .verify_strict(message, &signature)
            .map_err(|_| MembershipError::BadSignature);
    }

    let on_p256 = algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY
        && algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .is_some_and(|curve| curve == OID_EC_P256);
    if on_p256 {
        let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(key)
            .map_err(|_| MembershipError::Malformed("invalid P-256 public key".to_owned()))?;
        let signature = p256::ecdsa::Signature::from_der(signature)
            .map_err(|_| MembershipError::BadSignature)?;
        if signature.normalize_s() != signature {
            return Err(MembershipError::HighS);
        }
        return key
            .verify(message, &signature)
            .map_err(|_| MembershipError::BadSignature);
    }

    Err(MembershipError::UnsupportedAlgorithm(
        algorithm.algorithm.to_id_string(),
    ))
}

/// Signs `message` with a PKCS#8 PEM private key as written to `msp/keystore/key.pem`.
/// ECDSA signatures come out DER-encoded and low-S, the only form Fabric accepts.
pub fn sign(key_pem: &str, message: &[u8]) -> Result<Vec<u8>, CaError> {
    let key = KeyPair::from_pem(key_pem)
        .map_err(|e| CaError::InvalidRequest(format!("invalid PKCS#8 private key: {e}")))?;
    let signature = key
        .sign(message)
        .map_err(|e| CaError::InvalidRequest(format!("signing failed: {e}")))?;
    if key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
        return Ok(signature);
    }
    let parsed = p256::ecdsa::Signature::from_der(&signature).map_err(|_| {
        CaError::InvalidRequest("the ECDSA signer produced an invalid signature".to_owned())
    })?;
    Ok(parsed.normalize_s().to_der().as_bytes().to_vec())
}
