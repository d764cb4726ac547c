//! The bad identities, one kind per case, in the forms the ports take them: a signing
//! identity for envelopes (Broadcast, Deliver), one for notary requests (the notary), an
//! admin's TLS identity (the participation API) and a TLS identity naming replica 1 (the
//! replica port).

use std::time::{Duration, SystemTime};

use ca::{CertificateAuthority, IssueOptions, IssuedIdentity, RevocationReason, Role};
use orderer::client::Signer;
use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair};

use super::net::{Net, OTHER, OURS, corrupt, signer};
use super::probe::TlsIdentity;

const DAY: Duration = Duration::from_secs(86_400);

/// The name every replica-port identity carries: node 0 takes it for replica 1.
pub const REPLICA_NAME: &str = "orderer1";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    Expired,
    NotYetValid,
    Revoked,
    UnknownCa,
    SelfSigned,
    WrongRole,
    WrongMsp,
    TamperedSignature,
    AnotherMembersCertificate,
}

impl Case {
    pub const ALL: [Case; 9] = [
        Case::Expired,
        Case::NotYetValid,
        Case::Revoked,
        Case::UnknownCa,
        Case::SelfSigned,
        Case::WrongRole,
        Case::WrongMsp,
        Case::TamperedSignature,
        Case::AnotherMembersCertificate,
    ];
}

/// One case's identities.
#[derive(Clone)]
pub struct Credentials {
    pub signer: Signer,
    /// Signs notary requests: `signer`, except where the notary allows `signer`'s role
    /// (clients and peers may notarise).
    pub notary_signer: Signer,
    /// The signature of the envelope or notary request is corrupted after signing.
    pub tamper_signature: bool,
    pub admin_tls: TlsIdentity,
    pub replica_tls: TlsIdentity,
}

fn tls(identity: &IssuedIdentity) -> TlsIdentity {
    TlsIdentity::from_pem(&identity.tls.cert_pem, identity.tls.key_pem())
}

/// A member's TLS certificate with its CA's signature corrupted.
fn tampered_tls(identity: &IssuedIdentity) -> TlsIdentity {
    let mut tls = tls(identity);
    let mut der = tls.chain[0].to_vec();
    corrupt(&mut der);
    tls.chain[0] = der.into();
    tls
}

fn replica_sans() -> Vec<String> {
    vec![REPLICA_NAME.to_string()]
}

/// An admin, a client and a replica-named orderer issued by `ca` with `options`.
struct Issued {
    client: IssuedIdentity,
    admin: IssuedIdentity,
    replica: IssuedIdentity,
}

fn issue(ca: &mut CertificateAuthority, tag: &str, options: IssueOptions) -> Issued {
    let replica_options = IssueOptions {
        sans: replica_sans(),
        ..options.clone()
    };
    Issued {
        client: ca
            .issue_with(Role::Client, &format!("{tag}-client"), &options)
            .unwrap(),
        admin: ca
            .issue_with(Role::Admin, &format!("{tag}-admin"), &options)
            .unwrap(),
        replica: ca
            .issue_with(Role::Orderer, REPLICA_NAME, &replica_options)
            .unwrap(),
    }
}

fn credentials(issued: &Issued) -> Credentials {
    Credentials {
        signer: signer(&issued.client),
        notary_signer: signer(&issued.client),
        tamper_signature: false,
        admin_tls: tls(&issued.admin),
        replica_tls: tls(&issued.replica),
    }
}

fn window(not_before: SystemTime, not_after: SystemTime) -> IssueOptions {
    IssueOptions {
        not_before: Some(not_before),
        not_after: Some(not_after),
        ..IssueOptions::default()
    }
}

/// A certificate signed by its own key: O=OURS, the role's OU, and for TLS the
/// extended key usages and `sans`.
fn self_signed(role: Role, name: &str, tls: bool, sans: Vec<String>) -> (String, String) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(sans).unwrap();
    let mut subject = DistinguishedName::new();
    subject.push(DnType::OrganizationName, OURS);
    subject.push(DnType::OrganizationalUnitName, role.as_ou());
    subject.push(DnType::CommonName, name);
    params.distinguished_name = subject;
    if tls {
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
    }
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Issues every case's identities. Revocations are published in the CA directory the
/// nodes read (they take effect at the nodes' next reload).
pub fn prepare(net: &mut Net) -> Vec<(Case, Credentials)> {
    let now = SystemTime::now();
    let mut cases = Vec::new();
    for case in Case::ALL {
        let credentials = match case {
            Case::Expired => credentials(&issue(
                &mut net.ours,
                "expired",
                window(now - 10 * DAY, now - DAY),
            )),
            Case::NotYetValid => credentials(&issue(
                &mut net.ours,
                "early",
                window(now + DAY, now + 30 * DAY),
            )),
            Case::Revoked => {
                let issued = issue(&mut net.ours, "revoked", IssueOptions::default());
                for identity in [&issued.client, &issued.admin, &issued.replica] {
                    for serial in [&identity.signing.serial, &identity.tls.serial] {
                        net.ours
                            .revoke(serial, RevocationReason::KeyCompromise)
                            .unwrap();
                    }
                }
                net.ours.crl().unwrap();
                credentials(&issued)
            }
            Case::UnknownCa => {
                credentials(&issue(&mut net.rogue, "rogue", IssueOptions::default()))
            }
            Case::SelfSigned => {
                let (cert, key) = self_signed(Role::Client, "self-client", false, Vec::new());
                let (admin_cert, admin_key) =
                    self_signed(Role::Admin, "self-admin", true, Vec::new());
                let (replica_cert, replica_key) =
                    self_signed(Role::Orderer, REPLICA_NAME, true, replica_sans());
                let signer = Signer {
                    msp_id: OURS.into(),
                    cert_pem: cert,
                    key_pem: key,
                };
                Credentials {
                    notary_signer: signer.clone(),
                    signer,
                    tamper_signature: false,
                    admin_tls: TlsIdentity::from_pem(&admin_cert, &admin_key),
                    replica_tls: TlsIdentity::from_pem(&replica_cert, &replica_key),
                }
            }
            Case::WrongRole => {
                // A peer may neither write nor read this channel; an admin may not
                // notarise; a client may not use the admin API nor pass for a replica,
                // whatever name it carries.
                let peer = net.ours.issue(Role::Peer, "a-peer", &[], 30).unwrap();
                let admin = net.ours.issue(Role::Admin, "an-admin", &[], 30).unwrap();
                let client = net.ours.issue(Role::Client, "a-client", &[], 30).unwrap();
                let named = net
                    .ours
                    .issue(Role::Client, REPLICA_NAME, &replica_sans(), 30)
                    .unwrap();
                Credentials {
                    signer: signer(&peer),
                    notary_signer: signer(&admin),
                    tamper_signature: false,
                    admin_tls: tls(&client),
                    replica_tls: tls(&named),
                }
            }
            Case::WrongMsp => credentials(&issue(&mut net.other, "other", IssueOptions::default())),
            Case::TamperedSignature => {
                let replica = net
                    .ours
                    .issue(Role::Orderer, REPLICA_NAME, &replica_sans(), 30)
                    .unwrap();
                Credentials {
                    signer: signer(&net.client),
                    notary_signer: signer(&net.client),
                    tamper_signature: true,
                    admin_tls: tampered_tls(&net.admin),
                    replica_tls: tampered_tls(&replica),
                }
            }
            Case::AnotherMembersCertificate => {
                // Another member's certificate, with this member's key.
                let thief = net.ours.issue(Role::Client, "thief", &[], 30).unwrap();
                let mut stolen = signer(&net.client);
                stolen.key_pem = thief.signing.key_pem().to_string();
                let with_key = |victim: &IssuedIdentity| TlsIdentity {
                    key_pem: thief.tls.key_pem().to_string(),
                    ..tls(victim)
                };
                Credentials {
                    notary_signer: stolen.clone(),
                    signer: stolen,
                    tamper_signature: false,
                    admin_tls: with_key(&net.admin),
                    replica_tls: with_key(&net.orderers[1]),
                }
            }
        };
        cases.push((case, credentials));
    }
    cases
}

/// An identity of the other organisation that claims to be ours in its envelopes.
pub fn claims_our_msp(net: &mut Net) -> Signer {
    let other = net.other.issue(Role::Client, "impostor", &[], 30).unwrap();
    assert_eq!(other.msp_id, OTHER);
    Signer {
        msp_id: OURS.into(),
        ..signer(&other)
    }
}
