mod common;

use ca::{Algo, MembershipError, Role, signature};
use common::*;
use p256::ecdsa::Signature;

#[test]
fn signatures_verify_with_the_signer_certificate() {
    for algo in [Algo::Ed25519, Algo::P256] {
        let mut ca = authority("Org1MSP", algo);
        let alice = issue(&mut ca, Role::Client, "alice");
        let message = b"envelope payload";
        let sig = signature::sign(alice.signing.key_pem(), message).unwrap();
        signature::verify(&alice.signing.cert_der, message, &sig).unwrap();
        assert_eq!(
            signature::verify(&alice.signing.cert_der, b"another payload", &sig),
            Err(MembershipError::BadSignature),
            "{algo}"
        );
    }
}

#[test]
fn another_members_certificate_does_not_vouch_for_my_signature() {
    for algo in [Algo::Ed25519, Algo::P256] {
        let mut ca = authority("Org1MSP", algo);
        let alice = issue(&mut ca, Role::Client, "alice");
        let bob = issue(&mut ca, Role::Client, "bob");
        let message = b"transfer 100 to bob";
        let by_bob = signature::sign(bob.signing.key_pem(), message).unwrap();
        // Bob's certificate is valid; presenting Alice's with Bob's signature must not be.
        assert!(
            trusting(&[&ca])
                .verify(&alice.signing.cert_der, now())
                .is_ok()
        );
        assert_eq!(
            signature::verify(&alice.signing.cert_der, message, &by_bob),
            Err(MembershipError::BadSignature),
            "{algo}"
        );
    }
}

#[test]
fn ecdsa_signatures_are_low_s_and_high_s_is_refused() {
    let mut ca = authority("Org1MSP", Algo::P256);
    let alice = issue(&mut ca, Role::Client, "alice");
    let message = b"payload";
    for _ in 0..16 {
        let der = signature::sign(alice.signing.key_pem(), message).unwrap();
        let low = Signature::from_der(&der).unwrap();
        assert_eq!(low.normalize_s(), low, "sign() must emit low-S");

        // n - s verifies mathematically; Fabric refuses it, and so must we.
        let (r, s) = low.split_scalars();
        let high = Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
        assert_eq!(
            signature::verify(&alice.signing.cert_der, message, high.to_der().as_bytes()),
            Err(MembershipError::HighS)
        );
    }
}

#[test]
fn malformed_signatures_are_bad_signatures() {
    for algo in [Algo::Ed25519, Algo::P256] {
        let mut ca = authority("Org1MSP", algo);
        let alice = issue(&mut ca, Role::Client, "alice");
        for junk in [&b""[..], b"short", &[0u8; 64]] {
            assert_eq!(
                signature::verify(&alice.signing.cert_der, b"m", junk),
                Err(MembershipError::BadSignature),
                "{algo}"
            );
        }
    }
}
