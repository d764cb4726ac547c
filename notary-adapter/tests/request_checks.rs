//! Each check before ordering refuses with its own typed error.

mod common;

use ca::{Algo, MembershipError, RevocationReason, Role};
use common::*;
use notary_adapter::wire::check_error;
use notary_adapter::{
    CheckConfig, CheckError, InvalidTransaction, MAX_STATES, NotaryCommand, StateKind, TimeWindow,
    ValidatedRequest, check_request, sign_request,
};
use proto::synod::notary as pb;

struct Fixture {
    membership: ca::Membership,
    alice: ca::IssuedIdentity,
    config: CheckConfig,
}

fn fixture(algo: Algo) -> (Fixture, ca::CertificateAuthority) {
    let mut org = authority("Org1MSP", algo);
    let alice = issue(&mut org, Role::Client, "alice");
    let fixture = Fixture {
        membership: trusting(&[&org]),
        alice,
        config: CheckConfig::new(NOTARY),
    };
    (fixture, org)
}

fn signed_by(identity: &ca::IssuedIdentity, request: &ValidatedRequest) -> pb::NotariseRequest {
    sign_request(
        request,
        NOTARY,
        identity.signing.cert_pem.as_bytes(),
        identity.signing.key_pem(),
        1,
    )
    .unwrap()
}

fn sample() -> ValidatedRequest {
    ValidatedRequest::new(
        tx(1),
        vec![state(2, 1), state(1, 0)],
        vec![state(3, 0)],
        TimeWindow {
            from_ms: Some(10),
            until_ms: None,
        },
    )
    .unwrap()
}

fn check(f: &Fixture, request: &pb::NotariseRequest) -> Result<ValidatedRequest, CheckError> {
    check_request(request, &f.membership, now(), &f.config).map(|checked| checked.request)
}

fn invalid(f: &Fixture, request: &pb::NotariseRequest) -> InvalidTransaction {
    match check(f, request) {
        Err(CheckError::TransactionInvalid(reason)) => reason,
        other => panic!("expected TransactionInvalid, got {other:?}"),
    }
}

#[test]
fn well_signed_requests_pass_with_either_key_kind_and_certificate_encoding() {
    for algo in [Algo::Ed25519, Algo::P256] {
        let (f, _) = fixture(algo);
        let mut request = signed_by(&f.alice, &sample());
        let checked = check_request(&request, &f.membership, now(), &f.config).unwrap();
        assert_eq!(checked.request, sample());
        assert_eq!(checked.caller.common_name, "alice");
        assert_eq!(checked.signatures_wanted, 1);
        let command = NotaryCommand::decode(&checked.command().encode()).unwrap();
        assert_eq!(command, NotaryCommand::Notarise(sample()));

        // DER works as well as PEM, and the order of the states is not signed.
        request.caller_certificate = f.alice.signing.cert_der.clone();
        request.inputs.reverse();
        assert_eq!(check(&f, &request), Ok(sample()));

        // A request that names no notary is accepted (it signed the empty name).
        let unnamed = sign_request(
            &sample(),
            "",
            f.alice.signing.cert_pem.as_bytes(),
            f.alice.signing.key_pem(),
            0,
        )
        .unwrap();
        assert_eq!(check(&f, &unnamed), Ok(sample()));
    }
}

#[test]
fn callers_outside_the_membership_are_not_members() {
    let (f, _) = fixture(Algo::Ed25519);
    let mut stranger_ca = authority("EvilMSP", Algo::Ed25519);
    let stranger = issue(&mut stranger_ca, Role::Client, "eve");
    let request = signed_by(&stranger, &sample());
    assert!(matches!(
        check(&f, &request),
        Err(CheckError::NotAMember(
            MembershipError::UnknownIssuer { .. }
        ))
    ));

    let mut garbage = signed_by(&f.alice, &sample());
    garbage.caller_certificate = b"not a certificate".to_vec();
    assert!(matches!(
        check(&f, &garbage),
        Err(CheckError::NotAMember(MembershipError::Malformed(_)))
    ));

    // A TLS certificate is no signing identity.
    let mut tls = signed_by(&f.alice, &sample());
    tls.caller_certificate = f.alice.tls.cert_der.clone();
    assert_eq!(
        check(&f, &tls),
        Err(CheckError::NotAMember(MembershipError::TlsCertificate))
    );
}

#[test]
fn revoked_callers_are_revoked() {
    let (mut f, mut org) = fixture(Algo::Ed25519);
    org.revoke(&f.alice.signing.serial, RevocationReason::KeyCompromise)
        .unwrap();
    f.membership
        .add_crl("Org1MSP", &pem_der(&org.crl().unwrap()))
        .unwrap();
    let error = check(&f, &signed_by(&f.alice, &sample())).unwrap_err();
    assert!(matches!(error, CheckError::Revoked(_)), "{error:?}");
    let wire = check_error(&error);
    assert!(matches!(wire.kind, Some(pb::error::Kind::Revoked(_))));
}

#[test]
fn roles_that_may_notarise_are_configurable() {
    let (mut f, mut org) = fixture(Algo::Ed25519);
    let bob = issue(&mut org, Role::Peer, "bob");
    let admin = issue(&mut org, Role::Admin, "root");
    let orderer = issue(&mut org, Role::Orderer, "node0");
    assert!(check(&f, &signed_by(&bob, &sample())).is_ok());
    for outsider in [&admin, &orderer] {
        let error = check(&f, &signed_by(outsider, &sample())).unwrap_err();
        assert_eq!(
            error,
            CheckError::WrongRole {
                role: outsider.role,
                allowed: vec![Role::Client, Role::Peer],
            }
        );
        assert!(matches!(
            check_error(&error).kind,
            Some(pb::error::Kind::WrongRole(_))
        ));
    }
    f.config.allowed_roles = vec![Role::Admin];
    assert!(check(&f, &signed_by(&admin, &sample())).is_ok());
    assert!(matches!(
        check(&f, &signed_by(&f.alice, &sample())),
        Err(CheckError::WrongRole { .. })
    ));
}

#[test]
fn signatures_over_anything_else_are_invalid() {
    let (f, mut org) = fixture(Algo::P256);
    let mallory = issue(&mut org, Role::Client, "mallory");

    // Signed by another member's key.
    let mut forged = signed_by(&f.alice, &sample());
    forged.signature = signed_by(&mallory, &sample()).signature;
    assert!(matches!(
        check(&f, &forged),
        Err(CheckError::RequestSignatureInvalid(_))
    ));

    // An input added, a reference dropped, the window moved, the id changed after signing.
    let mut tampered = Vec::new();
    let mut more_inputs = signed_by(&f.alice, &sample());
    more_inputs
        .inputs
        .push(notary_adapter::wire::state_ref_to_pb(&state(9, 9)));
    tampered.push(more_inputs);
    let mut fewer_references = signed_by(&f.alice, &sample());
    fewer_references.references.clear();
    tampered.push(fewer_references);
    let mut moved_window = signed_by(&f.alice, &sample());
    moved_window.time_window = None;
    tampered.push(moved_window);
    let mut other_id = signed_by(&f.alice, &sample());
    other_id.tx_id = tx(2).as_bytes().to_vec();
    tampered.push(other_id);
    // Signed for no notary in particular, sent naming this one.
    let mut renamed = sign_request(
        &sample(),
        "",
        f.alice.signing.cert_pem.as_bytes(),
        f.alice.signing.key_pem(),
        1,
    )
    .unwrap();
    renamed.notary_name = NOTARY.to_owned();
    tampered.push(renamed);
    for request in &tampered {
        let error = check(&f, request).unwrap_err();
        assert!(
            matches!(error, CheckError::RequestSignatureInvalid(_)),
            "{error:?}"
        );
        assert!(matches!(
            check_error(&error).kind,
            Some(pb::error::Kind::RequestSignatureInvalid(_))
        ));
    }
}

#[test]
fn malformed_transactions_are_invalid() {
    let (mut f, _) = fixture(Algo::Ed25519);
    let good = signed_by(&f.alice, &sample());

    let mut request = good.clone();
    request.tx_id.pop();
    assert_eq!(
        invalid(&f, &request),
        InvalidTransaction::TxIdLength { bytes: 31 }
    );

    let mut request = good.clone();
    request.references[0].tx_hash.push(0);
    assert_eq!(
        invalid(&f, &request),
        InvalidTransaction::StateHashLength {
            kind: StateKind::Reference,
            position: 0,
            bytes: 33
        }
    );

    let mut request = good.clone();
    request.inputs.push(request.inputs[0].clone());
    assert_eq!(
        invalid(&f, &request),
        InvalidTransaction::DuplicateInput(state(1, 0))
    );

    let mut request = good.clone();
    request.references.push(request.references[0].clone());
    assert_eq!(
        invalid(&f, &request),
        InvalidTransaction::DuplicateReference(state(3, 0))
    );

    let mut request = good.clone();
    request.references.push(request.inputs[0].clone());
    assert_eq!(
        invalid(&f, &request),
        InvalidTransaction::InputAndReference(state(1, 0))
    );

    let mut request = good.clone();
    request.time_window = Some(pb::TimeWindow {
        from_ms: Some(5),
        until_ms: Some(5),
    });
    assert!(matches!(
        invalid(&f, &request),
        InvalidTransaction::EmptyTimeWindow(_)
    ));

    let mut request = good.clone();
    request.notary_name = "O=Other Notary, L=Zurich, C=CH".to_owned();
    assert!(matches!(
        invalid(&f, &request),
        InvalidTransaction::WrongNotary { .. }
    ));

    let mut request = good.clone();
    request.signatures_wanted = 2;
    assert_eq!(
        invalid(&f, &request),
        InvalidTransaction::TooManySignaturesWanted { wanted: 2, max: 1 }
    );
    f.config.max_signatures_wanted = 2;
    // Allowed now, but the signature does not cover the count: it is not part of the
    // canonical bytes, so this one passes.
    assert!(check(&f, &request).is_ok());

    let mut request = good.clone();
    request.inputs = (0..=MAX_STATES as u32)
        .map(|i| notary_adapter::wire::state_ref_to_pb(&state(4, i)))
        .collect();
    assert_eq!(
        invalid(&f, &request),
        InvalidTransaction::TooManyStates {
            count: MAX_STATES + 2,
            max: MAX_STATES
        }
    );

    let mut request = good.clone();
    request.signature = vec![0; 257];
    assert!(matches!(
        invalid(&f, &request),
        InvalidTransaction::TooLarge {
            what: "signature",
            ..
        }
    ));

    let mut request = good.clone();
    request.caller_certificate = vec![b'x'; 20_000];
    assert!(matches!(
        invalid(&f, &request),
        InvalidTransaction::TooLarge {
            what: "caller certificate",
            ..
        }
    ));

    f.config.max_request_bytes = 256;
    let error = check(&f, &good).unwrap_err();
    assert!(matches!(
        error,
        CheckError::TransactionInvalid(InvalidTransaction::TooLarge {
            what: "request",
            ..
        })
    ));
    assert!(
        error.to_string().contains("more than the 256 accepted"),
        "{error}"
    );
    assert!(matches!(
        check_error(&error).kind,
        Some(pb::error::Kind::TransactionInvalid(_))
    ));
}

#[test]
fn exactly_the_state_limit_is_allowed() {
    let (f, _) = fixture(Algo::Ed25519);
    let inputs: Vec<_> = (0..6_000).map(|i| state(5, i)).collect();
    let references: Vec<_> = (0..(MAX_STATES - 6_000) as u32)
        .map(|i| state(6, i))
        .collect();
    let request = ValidatedRequest::new(tx(3), inputs, references, TimeWindow::default()).unwrap();
    let signed = signed_by(&f.alice, &request);
    assert_eq!(check(&f, &signed), Ok(request));
}
