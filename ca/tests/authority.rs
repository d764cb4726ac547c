mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use ca::authority::{CertificateKind, IssuedRecord};
use ca::{Algo, CaError, CertificateAuthority, IssueOptions, Role};
use common::*;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn issued_identities_verify_in_every_role_and_algorithm() {
    for algo in [Algo::Ed25519, Algo::P256] {
        let mut ca = authority("Org1MSP", algo);
        let membership = trusting(&[&ca]);
        for role in Role::ALL {
            let id = issue(&mut ca, role, &format!("{role}0.org1.example.com"));
            let verified = membership.verify(&id.signing.cert_der, now()).unwrap();
            assert_eq!(verified.msp_id, "Org1MSP");
            assert_eq!(verified.role, role);
            assert_eq!(verified.common_name, format!("{role}0.org1.example.com"));
            assert_eq!(verified.serial, id.signing.serial);
            assert_eq!(
                membership.verify_for("Org1MSP", &id.signing.cert_der, now()),
                Ok(verified)
            );
        }
    }
}

#[test]
fn identities_default_to_the_ca_algorithm_and_can_override_it() {
    let mut ca = authority("Org1MSP", Algo::Ed25519);
    let ed = issue(&mut ca, Role::Peer, "peer0");
    assert!(ed.signing.key_pem().contains("BEGIN PRIVATE KEY"));
    let p256 = ca
        .issue_with(
            Role::Client,
            "app",
            &IssueOptions {
                algo: Some(Algo::P256),
                ..IssueOptions::default()
            },
        )
        .unwrap();
    let cert = X509Certificate::from_der(&p256.signing.cert_der).unwrap().1;
    assert_eq!(
        cert.public_key().algorithm.algorithm.to_id_string(),
        "1.2.840.10045.2.1"
    );
    assert!(
        trusting(&[&ca])
            .verify(&p256.signing.cert_der, now())
            .is_ok()
    );
}

#[test]
fn certificate_profiles_follow_fabric() {
    let mut ca = authority("Org1MSP", Algo::P256);
    let sans = ["orderer0.example.com".to_owned(), "10.1.2.3".to_owned()];
    let id = ca.issue(Role::Orderer, "orderer0", &sans, 10).unwrap();

    let root = X509Certificate::from_der(ca.cert_der()).unwrap().1;
    assert!(root.is_ca());
    let usage = root.key_usage().unwrap().unwrap().value;
    assert!(usage.key_cert_sign() && usage.crl_sign());

    let sign = X509Certificate::from_der(&id.signing.cert_der).unwrap().1;
    assert!(!sign.is_ca());
    assert!(sign.key_usage().unwrap().unwrap().value.digital_signature());
    assert!(
        sign.extended_key_usage().unwrap().is_none(),
        "no EKU, as cryptogen"
    );
    assert!(sign.subject_alternative_name().unwrap().is_none());
    let subject = sign.subject().to_string();
    assert!(subject.contains("OU=orderer"), "{subject}");
    assert!(subject.contains("O=Org1MSP"), "{subject}");
    // 128 random bits: at most 17 DER bytes with the sign byte.
    assert!(sign.raw_serial().len() <= 17 && sign.raw_serial()[0] & 0x80 == 0);

    let tls = X509Certificate::from_der(&id.tls.cert_der).unwrap().1;
    let eku = tls.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    let tls_subject = tls.subject().to_string();
    assert!(tls_subject.contains("OU=orderer"), "{tls_subject}");
    let names: Vec<String> = tls
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(dns) => dns.to_string(),
            GeneralName::IPAddress(ip) => format!("{ip:?}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(names, ["orderer0.example.com", "[10, 1, 2, 3]"]);
    assert!(tls.extensions().iter().all(|e| !matches!(
        e.parsed_extension(),
        ParsedExtension::UnsupportedExtension { .. }
    )));
    assert_ne!(id.signing.serial, id.tls.serial);
}

#[test]
fn localhost_is_only_added_when_asked() {
    let mut ca = authority("Org1MSP", Algo::Ed25519);
    let plain = ca
        .issue(Role::Peer, "peer0", &["peer0".into()], 10)
        .unwrap();
    let tls = X509Certificate::from_der(&plain.tls.cert_der).unwrap().1;
    let text = format!(
        "{:?}",
        tls.subject_alternative_name().unwrap().unwrap().value
    );
    assert!(!text.contains("localhost") && !text.contains("127"));
}

#[test]
fn write_msp_produces_fabric_layout_with_private_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut ca = authority("Org1MSP", Algo::Ed25519);
    let id = issue(&mut ca, Role::Peer, "peer0");
    id.write_msp(dir.path()).unwrap();

    let root = dir.path();
    for public in [
        "msp/cacerts/ca.pem",
        "msp/tlscacerts/ca.pem",
        "msp/signcerts/cert.pem",
        "msp/config.yaml",
        "tls/ca.crt",
        "tls/server.crt",
    ] {
        assert_eq!(mode(&root.join(public)), 0o644, "{public}");
    }
    for secret in ["msp/keystore/key.pem", "tls/server.key"] {
        assert_eq!(mode(&root.join(secret)), 0o600, "{secret}");
        let key = fs::read_to_string(root.join(secret)).unwrap();
        assert!(
            key.starts_with("-----BEGIN PRIVATE KEY-----"),
            "PKCS#8: {secret}"
        );
    }
    assert_eq!(
        fs::read_to_string(root.join("msp/cacerts/ca.pem")).unwrap(),
        ca.cert_pem()
    );
    assert_eq!(
        der(&fs::read_to_string(root.join("msp/signcerts/cert.pem")).unwrap()),
        id.signing.cert_der
    );

    let config = fs::read_to_string(root.join("msp/config.yaml")).unwrap();
    assert!(config.starts_with("NodeOUs:\n  Enable: true\n"));
    for (key, ou) in [
        ("ClientOUIdentifier", "client"),
        ("PeerOUIdentifier", "peer"),
        ("AdminOUIdentifier", "admin"),
        ("OrdererOUIdentifier", "orderer"),
    ] {
        let entry = format!(
            "  {key}:\n    Certificate: cacerts/ca.pem\n    OrganizationalUnitIdentifier: {ou}\n"
        );
        assert!(config.contains(&entry), "{entry}");
    }

    assert!(matches!(
        id.write_msp(dir.path()),
        Err(CaError::AlreadyExists(_))
    ));
}

#[test]
fn saved_ca_reloads_and_refuses_to_be_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("org1-ca");
    let mut ca = authority("Org1MSP", Algo::P256);
    ca.save(&ca_dir).unwrap();
    assert_eq!(mode(&ca_dir.join("ca.key")), 0o600);
    let id = issue(&mut ca, Role::Admin, "admin");

    let mut reloaded = CertificateAuthority::load(&ca_dir).unwrap();
    assert_eq!(reloaded.msp_id(), "Org1MSP");
    assert_eq!(reloaded.name(), "ca.org1msp");
    assert_eq!(reloaded.algo(), Algo::P256);
    assert_eq!(reloaded.cert_der(), ca.cert_der());
    let records: Vec<&IssuedRecord> = reloaded.certificates().iter().collect();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].serial, id.signing.serial);
    assert_eq!(records[0].kind, CertificateKind::Signing);
    assert_eq!(records[1].kind, CertificateKind::Tls);
    assert_eq!(records[0].role, Role::Admin);

    // Certificates issued after a reload still chain to the same root.
    let later = issue(&mut reloaded, Role::Peer, "peer1");
    assert!(
        trusting(&[&ca])
            .verify(&later.signing.cert_der, now())
            .is_ok()
    );

    let mut other = authority("Org1MSP", Algo::P256);
    assert!(matches!(
        other.save(&ca_dir),
        Err(CaError::AlreadyExists(_))
    ));
    assert_eq!(
        CertificateAuthority::load(&ca_dir).unwrap().cert_der(),
        ca.cert_der()
    );
}

#[test]
fn nonsense_requests_are_refused() {
    let mut ca = authority("Org1MSP", Algo::Ed25519);
    assert!(matches!(
        ca.issue(Role::Peer, "", &[], 10),
        Err(CaError::InvalidRequest(_))
    ));
    assert!(matches!(
        ca.issue(Role::Peer, "peer0", &[], 0),
        Err(CaError::InvalidRequest(_))
    ));
    assert!(matches!(
        ca.issue(Role::Peer, "peer0", &[], 100 * 365),
        Err(CaError::InvalidRequest(_))
    ));
    let backwards = IssueOptions {
        not_before: Some(now()),
        not_after: Some(now() - DAY),
        ..IssueOptions::default()
    };
    assert!(ca.issue_with(Role::Peer, "peer0", &backwards).is_err());
    assert!(
        ca.certificates().is_empty(),
        "refused requests leave no record"
    );
    assert!(CertificateAuthority::init("", "Org1MSP", Algo::Ed25519).is_err());
}

#[test]
fn revocation_is_recorded_and_published() {
    let dir = tempfile::tempdir().unwrap();
    let mut ca = authority("Org1MSP", Algo::Ed25519);
    ca.save(dir.path()).unwrap();
    let id = issue(&mut ca, Role::Client, "app");
    ca.revoke(&id.signing.serial, ca::RevocationReason::KeyCompromise)
        .unwrap();
    assert!(matches!(
        ca.revoke(&id.signing.serial, ca::RevocationReason::Unspecified),
        Err(CaError::AlreadyRevoked(_))
    ));
    assert!(matches!(
        ca.revoke(
            &"abcdef".parse().unwrap(),
            ca::RevocationReason::Unspecified
        ),
        Err(CaError::UnknownSerial(_))
    ));
    let crl = ca.crl().unwrap();
    assert_eq!(fs::read_to_string(dir.path().join("crl.pem")).unwrap(), crl);

    let crl_der = pem::parse(&crl).unwrap().into_contents();
    let parsed = x509_parser::parse_x509_crl(&crl_der).unwrap().1;
    assert!(parsed.next_update().is_some());
    let serials: Vec<ca::Serial> = parsed
        .iter_revoked_certificates()
        .map(|r| ca::Serial::from_bytes(r.raw_serial()))
        .collect();
    assert_eq!(serials, std::slice::from_ref(&id.signing.serial));

    let reloaded = CertificateAuthority::load(dir.path()).unwrap();
    let record = &reloaded.certificates()[0];
    assert_eq!(
        record.revoked.as_ref().map(|r| r.reason),
        Some(ca::RevocationReason::KeyCompromise)
    );
    // CRL numbers keep growing across restarts.
    let mut reloaded = reloaded;
    let next = pem::parse(reloaded.crl().unwrap()).unwrap().into_contents();
    let next = x509_parser::parse_x509_crl(&next).unwrap().1;
    assert!(next.crl_number().unwrap() > parsed.crl_number().unwrap());
}

fn openssl_available() -> bool {
    Command::new("openssl").arg("version").output().is_ok()
}

#[test]
fn openssl_accepts_certificates_and_crls() {
    if !openssl_available() {
        println!("openssl not found on PATH: skipping the OpenSSL cross-check");
        return;
    }
    for algo in [Algo::Ed25519, Algo::P256] {
        let dir = tempfile::tempdir().unwrap();
        let mut ca = authority("Org1MSP", algo);
        ca.save(&dir.path().join("ca")).unwrap();
        let id = ca
            .issue(
                Role::Orderer,
                "orderer0",
                &["orderer0".into(), "127.0.0.1".into()],
                10,
            )
            .unwrap();
        id.write_msp(&dir.path().join("out")).unwrap();
        let ca_pem = dir.path().join("ca/ca.pem");
        for cert in ["out/msp/signcerts/cert.pem", "out/tls/server.crt"] {
            let output = Command::new("openssl")
                .arg("verify")
                .arg("-CAfile")
                .arg(&ca_pem)
                .arg(dir.path().join(cert))
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{algo}: openssl verify {cert}: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        for key in ["out/msp/keystore/key.pem", "out/tls/server.key"] {
            let status = Command::new("openssl")
                .args(["pkey", "-noout", "-in"])
                .arg(dir.path().join(key))
                .status()
                .unwrap();
            assert!(status.success(), "{algo}: openssl pkey {key}");
        }
        let output = Command::new("openssl")
            .args(["crl", "-noout", "-CAfile"])
            .arg(&ca_pem)
            .arg("-in")
            .arg(dir.path().join("ca/crl.pem"))
            .output()
            .unwrap();
        assert!(
            output.status.success()
                && String::from_utf8_lossy(&output.stderr).contains("verify OK"),
            "{algo}: openssl crl: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
