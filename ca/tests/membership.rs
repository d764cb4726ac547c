mod common;

use std::fs;
use std::time::SystemTime;

use ca::{
    Algo, CertificateAuthority, IssueOptions, LoadError, Membership, MembershipError,
    RevocationReason, Role, require_role,
};
use common::*;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

fn pem_der(text: &str) -> Vec<u8> {
    pem::parse(text).unwrap().into_contents()
}

fn issue_between(
    ca: &mut CertificateAuthority,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Vec<u8> {
    let options = IssueOptions {
        not_before: Some(not_before),
        not_after: Some(not_after),
        ..IssueOptions::default()
    };
    ca.issue_with(Role::Peer, "peer0", &options)
        .unwrap()
        .signing
        .cert_der
}

#[test]
fn expired_certificates_are_rejected() {
    let mut ca = authority("Org1MSP", Algo::Ed25519);
    let cert = issue_between(&mut ca, now() - DAY * 10, now() - DAY);
    let err = trusting(&[&ca]).verify(&cert, now()).unwrap_err();
    assert!(matches!(err, MembershipError::Expired { .. }), "{err}");
}

#[test]
fn certificates_are_not_valid_before_their_time() {
    let mut ca = authority("Org1MSP", Algo::P256);
    let cert = issue_between(&mut ca, now() + DAY, now() + DAY * 10);
    let membership = trusting(&[&ca]);
    let err = membership.verify(&cert, now()).unwrap_err();
    assert!(matches!(err, MembershipError::NotYetValid { .. }), "{err}");
    // The same certificate is fine once its time has come.
    assert!(membership.verify(&cert, now() + DAY * 2).is_ok());
}

#[test]
fn revoked_certificates_are_rejected_once_the_crl_is_loaded() {
    let mut ca = authority("Org1MSP", Algo::Ed25519);
    let revoked = issue(&mut ca, Role::Client, "mallory");
    let kept = issue(&mut ca, Role::Client, "alice");
    ca.revoke(&revoked.signing.serial, RevocationReason::KeyCompromise)
        .unwrap();
    let crl = pem_der(&ca.crl().unwrap());

    let mut membership = trusting(&[&ca]);
    assert!(
        membership.verify(&revoked.signing.cert_der, now()).is_ok(),
        "revocation takes effect with the CRL"
    );
    membership.add_crl("Org1MSP", &crl).unwrap();
    let err = membership
        .verify(&revoked.signing.cert_der, now())
        .unwrap_err();
    assert_eq!(
        err,
        MembershipError::Revoked {
            serial: revoked.signing.serial.clone()
        }
    );
    assert!(membership.verify(&kept.signing.cert_der, now()).is_ok());
}

#[test]
fn reload_picks_up_new_crls_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("org1-ca");
    let mut ca = authority("Org1MSP", Algo::P256);
    ca.save(&ca_dir).unwrap();
    let id = issue(&mut ca, Role::Orderer, "orderer0");
    let msp_dir = dir.path().join("orderer0");
    id.write_msp(&msp_dir).unwrap();

    // A node trusting the MSP folder written for it, and one trusting the CA directory.
    let mut from_msp = Membership::from_dirs([("Org1MSP", msp_dir.join("msp"))]).unwrap();
    let mut from_ca = Membership::from_dirs([("Org1MSP", &ca_dir)]).unwrap();
    assert_eq!(from_msp.msp_ids(), ["Org1MSP"]);
    assert!(from_msp.verify(&id.signing.cert_der, now()).is_ok());
    assert!(from_ca.verify(&id.signing.cert_der, now()).is_ok());

    ca.revoke(&id.signing.serial, RevocationReason::Superseded)
        .unwrap();
    let crl = ca.crl().unwrap();
    fs::create_dir_all(msp_dir.join("msp/crls")).unwrap();
    fs::write(msp_dir.join("msp/crls/org1.pem"), &crl).unwrap();
    from_msp.reload().unwrap();
    from_ca.reload().unwrap();
    for membership in [&from_msp, &from_ca] {
        assert!(matches!(
            membership.verify(&id.signing.cert_der, now()),
            Err(MembershipError::Revoked { .. })
        ));
    }

    // A broken CRL file fails the reload and leaves the previous trust in force.
    fs::write(msp_dir.join("msp/crls/junk.pem"), "not a crl").unwrap();
    assert!(from_msp.reload().is_err());
    assert!(matches!(
        from_msp.verify(&id.signing.cert_der, now()),
        Err(MembershipError::Revoked { .. })
    ));
}

#[test]
fn crls_must_come_from_the_msp_ca() {
    let mut org1 = authority("Org1MSP", Algo::Ed25519);
    let mut org2 = authority("Org2MSP", Algo::Ed25519);
    let mut membership = trusting(&[&org1, &org2]);
    let org2_crl = pem_der(&org2.crl().unwrap());
    assert!(matches!(
        membership.add_crl("Org1MSP", &org2_crl),
        Err(LoadError::UntrustedCrl { .. })
    ));
    assert!(membership.add_crl("Org2MSP", &org2_crl).is_ok());
    let org1_crl = pem_der(&org1.crl().unwrap());
    assert!(membership.add_crl("Org1MSP", &org1_crl).is_ok());
}

#[test]
fn unknown_cas_are_rejected() {
    let trusted = authority("Org1MSP", Algo::Ed25519);
    let mut stranger = authority("EvilMSP", Algo::Ed25519);
    let cert = issue(&mut stranger, Role::Admin, "admin").signing.cert_der;
    let err = trusting(&[&trusted]).verify(&cert, now()).unwrap_err();
    assert!(
        matches!(err, MembershipError::UnknownIssuer { .. }),
        "{err}"
    );

    // A look-alike CA with the trusted CA's very name but its own key gets nowhere either.
    let mut impostor = authority("Org1MSP", Algo::Ed25519);
    let cert = issue(&mut impostor, Role::Admin, "admin").signing.cert_der;
    let err = trusting(&[&trusted]).verify(&cert, now()).unwrap_err();
    assert!(
        matches!(err, MembershipError::UnknownIssuer { .. }),
        "{err}"
    );
}

#[test]
fn self_signed_leaves_are_rejected() {
    for algo in [&rcgen::PKCS_ED25519, &rcgen::PKCS_ECDSA_P256_SHA256] {
        let key = KeyPair::generate_for(algo).unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Org1MSP");
        dn.push(DnType::OrganizationalUnitName, "admin");
        dn.push(DnType::CommonName, "admin");
        params.distinguished_name = dn;
        let cert = params.self_signed(&key).unwrap();
        let ca = authority("Org1MSP", Algo::Ed25519);
        let err = trusting(&[&ca]).verify(cert.der(), now()).unwrap_err();
        assert_eq!(err, MembershipError::SelfSigned);
    }
}

#[test]
fn ca_certificates_are_not_member_identities() {
    let ca = authority("Org1MSP", Algo::Ed25519);
    let err = trusting(&[&ca]).verify(ca.cert_der(), now()).unwrap_err();
    assert_eq!(err, MembershipError::NotAnEndEntity);
}

#[test]
fn roles_are_enforced() {
    let mut ca = authority("Org1MSP", Algo::Ed25519);
    let membership = trusting(&[&ca]);
    let client = membership
        .verify(&issue(&mut ca, Role::Client, "app").signing.cert_der, now())
        .unwrap();
    assert_eq!(
        require_role(&client, &[Role::Admin, Role::Orderer]),
        Err(MembershipError::WrongRole {
            role: Role::Client,
            allowed: vec![Role::Admin, Role::Orderer]
        })
    );
    assert!(require_role(&client, &[Role::Client]).is_ok());

    // TLS certificates never pass as signing identities, nor signing certificates as TLS
    // clients; a TLS client certificate carries its holder's role.
    let admin = issue(&mut ca, Role::Admin, "admin");
    assert_eq!(
        membership.verify(&admin.tls.cert_der, now()),
        Err(MembershipError::TlsCertificate)
    );
    assert_eq!(
        membership.verify_for("Org1MSP", &admin.tls.cert_der, now()),
        Err(MembershipError::TlsCertificate)
    );
    assert_eq!(
        membership.verify_tls_client(&admin.signing.cert_der, now()),
        Err(MembershipError::NotATlsClientCertificate)
    );
    let tls_client = membership
        .verify_tls_client(&admin.tls.cert_der, now())
        .unwrap();
    assert_eq!(
        (tls_client.role, tls_client.msp_id.as_str()),
        (Role::Admin, "Org1MSP")
    );
    assert_eq!(tls_client.serial, admin.tls.serial);
}

#[test]
fn tls_client_certificates_are_checked_like_any_member() {
    let mut ca = authority("Org1MSP", Algo::P256);
    let mut stranger = authority("Org1MSP", Algo::P256);
    let admin = issue(&mut ca, Role::Admin, "admin");
    ca.revoke(&admin.tls.serial, RevocationReason::KeyCompromise)
        .unwrap();
    let mut membership = trusting(&[&ca]);
    assert!(
        membership
            .verify_tls_client(&admin.tls.cert_der, now())
            .is_ok()
    );
    membership
        .add_crl("Org1MSP", &pem_der(&ca.crl().unwrap()))
        .unwrap();
    assert_eq!(
        membership.verify_tls_client(&admin.tls.cert_der, now()),
        Err(MembershipError::Revoked {
            serial: admin.tls.serial.clone()
        })
    );
    let foreign = issue(&mut stranger, Role::Admin, "admin").tls.cert_der;
    assert!(matches!(
        membership.verify_tls_client(&foreign, now()),
        Err(MembershipError::BadSignature | MembershipError::UnknownIssuer { .. })
    ));
}

#[test]
fn identities_must_belong_to_the_msp_they_claim() {
    let mut org1 = authority("Org1MSP", Algo::Ed25519);
    let org2 = authority("Org2MSP", Algo::P256);
    let membership = trusting(&[&org1, &org2]);
    let cert = issue(&mut org1, Role::Peer, "peer0").signing.cert_der;
    assert_eq!(
        membership.verify_for("Org2MSP", &cert, now()),
        Err(MembershipError::WrongMsp {
            claimed: "Org2MSP".into(),
            actual: "Org1MSP".into()
        })
    );
    assert_eq!(
        membership.verify_for("Org3MSP", &cert, now()),
        Err(MembershipError::UnknownMsp("Org3MSP".into()))
    );
    assert_eq!(
        membership
            .verify_for("Org1MSP", &cert, now())
            .unwrap()
            .msp_id,
        "Org1MSP"
    );

    // A CA trusted for Org2 that signs a certificate naming O=Org1MSP is caught too.
    let mut mislabelled = Membership::new();
    mislabelled.add_ca("Org2MSP", org1.cert_der()).unwrap();
    assert!(matches!(
        mislabelled.verify(&cert, now()),
        Err(MembershipError::WrongMsp { .. })
    ));
}

#[test]
fn tampered_certificates_fail_signature_checks() {
    for algo in [Algo::Ed25519, Algo::P256] {
        let mut ca = authority("Org1MSP", algo);
        let membership = trusting(&[&ca]);
        let cert = issue(&mut ca, Role::Peer, "peer0").signing.cert_der;

        // Turn "peer0" into "peer1" inside the signed part.
        let at = cert
            .windows(5)
            .position(|w| w == b"peer0")
            .expect("common name in the DER");
        let mut renamed = cert.clone();
        renamed[at + 4] = b'1';
        assert_eq!(
            membership.verify(&renamed, now()),
            Err(MembershipError::BadSignature),
            "{algo}: tampered TBS"
        );

        // Flip a bit of the signature itself (the last bytes of the certificate).
        let mut forged = cert.clone();
        let last = forged.len() - 2;
        forged[last] ^= 0x01;
        assert_eq!(
            membership.verify(&forged, now()),
            Err(MembershipError::BadSignature),
            "{algo}: tampered signature"
        );
    }
}

#[test]
fn garbage_is_malformed() {
    let ca = authority("Org1MSP", Algo::Ed25519);
    let membership = trusting(&[&ca]);
    assert!(matches!(
        membership.verify(b"not a certificate", now()),
        Err(MembershipError::Malformed(_))
    ));
    let mut trailing = ca.cert_der().to_vec();
    trailing.push(0);
    assert!(matches!(
        membership.verify(&trailing, now()),
        Err(MembershipError::Malformed(_))
    ));
}

#[test]
fn only_ca_certificates_can_be_trusted() {
    let mut ca = authority("Org1MSP", Algo::Ed25519);
    let leaf = issue(&mut ca, Role::Peer, "peer0").signing.cert_der;
    assert!(matches!(
        Membership::new().add_ca("Org1MSP", &leaf),
        Err(LoadError::NotACa { .. })
    ));
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Membership::from_dirs([("Org1MSP", dir.path())]),
        Err(LoadError::Io { .. })
    ));
    fs::create_dir(dir.path().join("cacerts")).unwrap();
    assert!(matches!(
        Membership::from_dirs([("Org1MSP", dir.path())]),
        Err(LoadError::NoCaCertificates { .. })
    ));
}

#[test]
fn nothing_outlives_its_ca() {
    // `issue` refuses to outlive the CA, so forge such a certificate with the CA key directly.
    let dir = tempfile::tempdir().unwrap();
    let mut ca = authority("Org1MSP", Algo::P256);
    ca.save(dir.path()).unwrap();
    let ca_key =
        KeyPair::from_pem(&fs::read_to_string(dir.path().join("ca.key")).unwrap()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_der(&ca.cert_der().to_vec().into(), ca_key).unwrap();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Org1MSP");
    dn.push(DnType::OrganizationalUnitName, "peer");
    dn.push(DnType::CommonName, "peer0");
    params.distinguished_name = dn;
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(2200, 1, 1);
    params.use_authority_key_identifier_extension = true;
    let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = params.signed_by(&leaf_key, &issuer).unwrap();

    let membership = trusting(&[&ca]);
    assert!(membership.verify(cert.der(), now()).is_ok());
    let err = membership
        .verify(cert.der(), now() + DAY * 365 * 11)
        .unwrap_err();
    assert!(
        matches!(err, MembershipError::IssuerExpired { .. }),
        "{err}"
    );
}
