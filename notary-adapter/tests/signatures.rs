//! Node signatures, single and batched, as a caller verifies them; and one request's
//! whole way from the caller through ordering and applying back to the caller.

mod common;

use ca::{Algo, Role};
use common::*;
use notary_adapter::wire::{error_response, outcome_error, signed_response};
use notary_adapter::{
    CheckConfig, MemoryStore, NodeSigner, NotaryCommand, NotaryTrust, Outcome, SignError,
    Uniqueness, VerifyError, check_request, sign_request, verify_response,
};
use proto::synod::notary as pb;

struct Cluster {
    org: ca::CertificateAuthority,
    nodes: Vec<NodeSigner>,
    certificates: Vec<Vec<u8>>,
}

fn cluster(count: usize, algo: Algo) -> Cluster {
    let mut org = authority("OrdererMSP", algo);
    let mut nodes = Vec::new();
    let mut certificates = Vec::new();
    for i in 0..count {
        let identity = issue(&mut org, Role::Orderer, &format!("node{i}"));
        nodes.push(
            NodeSigner::new(
                identity.signing.cert_pem.as_bytes(),
                identity.signing.key_pem(),
            )
            .unwrap(),
        );
        certificates.push(identity.signing.cert_der.clone());
    }
    Cluster {
        org,
        nodes,
        certificates,
    }
}

fn response(
    tx_id: &notary_adapter::TxId,
    signatures: Vec<pb::NodeSignature>,
) -> pb::NotariseResponse {
    signed_response(tx_id, signatures)
}

#[test]
fn single_signatures_verify_for_their_transaction_only() {
    for algo in [Algo::Ed25519, Algo::P256] {
        let c = cluster(1, algo);
        let trust = NotaryTrust::Certificates(&c.certificates);
        let signature = c.nodes[0].sign_one(&tx(1)).unwrap();
        let good = response(&tx(1), vec![signature.clone()]);
        assert_eq!(verify_response(&good, &tx(1), &trust, 1), Ok(()));
        assert_eq!(verify_response(&good, &tx(1), &trust, 0), Ok(()));

        // Presented for another transaction.
        let moved = response(&tx(2), vec![signature.clone()]);
        assert!(matches!(
            verify_response(&moved, &tx(2), &trust, 1),
            Err(VerifyError::NotEnoughSignatures { valid: 0, .. })
        ));
        assert!(matches!(
            verify_response(&good, &tx(2), &trust, 1),
            Err(VerifyError::WrongTransaction { .. })
        ));

        let mut flipped = signature.clone();
        flipped.signature[10] ^= 1;
        assert!(verify_response(&response(&tx(1), vec![flipped]), &tx(1), &trust, 1).is_err());

        // Dressed up as a one-leaf batch: the batch message differs from the single one.
        let mut as_batch = signature;
        as_batch.batch = Some(pb::MerkleProof {
            root: notary_adapter::merkle::leaf_hash(&tx(1)).to_vec(),
            leaf_index: 0,
            leaf_count: 1,
            siblings: Vec::new(),
        });
        assert!(verify_response(&response(&tx(1), vec![as_batch]), &tx(1), &trust, 1).is_err());
    }
}

#[test]
fn batch_signatures_verify_for_every_member_of_the_batch() {
    let c = cluster(1, Algo::Ed25519);
    let membership = trusting(&[&c.org]);
    let batch: Vec<_> = (1..=7).map(tx).collect();
    let signatures = c.nodes[0].sign_batch(&batch).unwrap();
    assert_eq!(signatures.len(), batch.len());
    // One signature for the whole batch.
    assert!(
        signatures
            .windows(2)
            .all(|w| w[0].signature == w[1].signature)
    );
    for (tx_id, signature) in batch.iter().zip(&signatures) {
        let answer = response(tx_id, vec![signature.clone()]);
        for trust in [
            NotaryTrust::Certificates(&c.certificates),
            NotaryTrust::Members {
                membership: &membership,
                now: now(),
            },
        ] {
            assert_eq!(verify_response(&answer, tx_id, &trust, 1), Ok(()));
        }
        // Another member's proof does not prove this one.
        let trust = NotaryTrust::Certificates(&c.certificates);
        let other = &signatures[(signature.batch.as_ref().unwrap().leaf_index as usize + 1) % 7];
        assert!(verify_response(&response(tx_id, vec![other.clone()]), tx_id, &trust, 1).is_err());
        // Nor a tampered root or sibling.
        let mut bad_root = signature.clone();
        bad_root.batch.as_mut().unwrap().root[0] ^= 1;
        assert!(verify_response(&response(tx_id, vec![bad_root]), tx_id, &trust, 1).is_err());
        let mut bad_sibling = signature.clone();
        bad_sibling.batch.as_mut().unwrap().siblings[0][31] ^= 1;
        assert!(verify_response(&response(tx_id, vec![bad_sibling]), tx_id, &trust, 1).is_err());
    }
    assert!(c.nodes[0].sign_batch(&[]).unwrap().is_empty());
}

#[test]
fn several_signatures_must_come_from_distinct_trusted_nodes() {
    let c = cluster(3, Algo::Ed25519);
    let membership = trusting(&[&c.org]);
    let members = NotaryTrust::Members {
        membership: &membership,
        now: now(),
    };
    let listed = NotaryTrust::Certificates(&c.certificates);
    let one = c.nodes[0].sign_one(&tx(1)).unwrap();
    let two = c.nodes[1].sign_batch(&[tx(9), tx(1)]).unwrap()[1].clone();

    let both = response(&tx(1), vec![one.clone(), two]);
    for trust in [&members, &listed] {
        assert_eq!(verify_response(&both, &tx(1), trust, 2), Ok(()));
        assert!(matches!(
            verify_response(&both, &tx(1), trust, 3),
            Err(VerifyError::NotEnoughSignatures {
                valid: 2,
                wanted: 3,
                ..
            })
        ));
        // One node twice counts once.
        let twice = response(&tx(1), vec![one.clone(), one.clone()]);
        assert!(matches!(
            verify_response(&twice, &tx(1), trust, 2),
            Err(VerifyError::NotEnoughSignatures { valid: 1, .. })
        ));
    }

    // A node no one trusts, and a trusted organisation's member that is no orderer.
    let mut other_org = authority("OtherMSP", Algo::Ed25519);
    let outsider = issue(&mut other_org, Role::Orderer, "node9");
    let outsider = NodeSigner::new(
        outsider.signing.cert_pem.as_bytes(),
        outsider.signing.key_pem(),
    )
    .unwrap();
    let mut org = c.org;
    let client = issue(&mut org, Role::Client, "carol");
    let client =
        NodeSigner::new(client.signing.cert_der.as_slice(), client.signing.key_pem()).unwrap();
    for signer in [&outsider, &client] {
        let answer = response(&tx(1), vec![signer.sign_one(&tx(1)).unwrap()]);
        assert!(verify_response(&answer, &tx(1), &members, 1).is_err());
        assert!(verify_response(&answer, &tx(1), &listed, 1).is_err());
    }

    let crowd = response(&tx(1), vec![one; 33]);
    assert_eq!(
        verify_response(&crowd, &tx(1), &listed, 1),
        Err(VerifyError::TooManySignatures { count: 33 })
    );
}

#[test]
fn a_signer_refuses_a_key_that_is_not_its_certificates() {
    let mut org = authority("OrdererMSP", Algo::Ed25519);
    let a = issue(&mut org, Role::Orderer, "node0");
    let b = issue(&mut org, Role::Orderer, "node1");
    assert!(matches!(
        NodeSigner::new(a.signing.cert_pem.as_bytes(), b.signing.key_pem()),
        Err(SignError::KeyMismatch(_))
    ));
    assert!(matches!(
        NodeSigner::new(a.signing.cert_pem.as_bytes(), "not a key"),
        Err(SignError::Key(_))
    ));
    assert!(matches!(
        NodeSigner::new(b"junk", a.signing.key_pem()),
        Err(SignError::Certificate(_))
    ));
}

#[test]
fn refusals_reach_the_caller_as_typed_errors() {
    let c = cluster(1, Algo::Ed25519);
    let trust = NotaryTrust::Certificates(&c.certificates);
    let refused = error_response(
        tx(1).as_bytes(),
        notary_adapter::wire::unavailable("no majority"),
    );
    let error = verify_response(&refused, &tx(1), &trust, 1).unwrap_err();
    assert!(
        matches!(&error, VerifyError::Refused(e) if matches!(e.kind, Some(pb::error::Kind::Unavailable(_))))
    );
    assert_eq!(
        error.to_string(),
        "notary refused: notary unavailable: no majority"
    );
    let empty = pb::NotariseResponse {
        tx_id: tx(1).as_bytes().to_vec(),
        result: None,
    };
    assert_eq!(
        verify_response(&empty, &tx(1), &trust, 1),
        Err(VerifyError::NoResult)
    );
}

/// Caller → checks → ordered bytes → apply on every replica → signatures → caller.
#[test]
fn a_request_goes_all_the_way_round() {
    let c = cluster(3, Algo::Ed25519);
    let mut clients = authority("Org1MSP", Algo::P256);
    let alice = issue(&mut clients, Role::Client, "alice");
    let membership = trusting(&[&c.org, &clients]);
    let mut config = CheckConfig::new(NOTARY);
    config.max_signatures_wanted = 2;

    let spend = request(tx(1), &[state(7, 0), state(7, 1)], &[state(8, 0)]);
    let double_spend = request(tx(2), &[state(7, 1)], &[]);
    let sign = |request| {
        sign_request(
            request,
            NOTARY,
            alice.signing.cert_pem.as_bytes(),
            alice.signing.key_pem(),
            2,
        )
        .unwrap()
    };
    let wire_requests = [sign(&spend), sign(&double_spend), sign(&spend)];

    // The receiving node checks and orders.
    let ordered: Vec<Vec<u8>> = wire_requests
        .iter()
        .map(|r| {
            check_request(r, &membership, now(), &config)
                .unwrap()
                .command()
                .encode()
        })
        .collect();

    // Every replica applies the same bytes to the same answers.
    let mut answers = Vec::new();
    for node in &c.nodes[..2] {
        let requests: Vec<_> = ordered
            .iter()
            .map(|bytes| match NotaryCommand::decode(bytes).unwrap() {
                NotaryCommand::Notarise(request) => request,
            })
            .collect();
        let mut store = MemoryStore::new();
        let mut machine = Uniqueness::default();
        let applied = machine.apply_batch(&store, 1_000, &requests).unwrap();
        store.apply(applied.puts.clone());
        let signatures = node.sign_batch(&applied.successes()).unwrap();
        answers.push((applied.outcomes, signatures));
    }
    assert_eq!(answers[0].0, answers[1].0);
    let outcomes = &answers[0].0;
    assert_eq!(outcomes[0].1, Outcome::Success);
    assert!(matches!(outcomes[1].1, Outcome::Conflict(_)));
    assert_eq!(outcomes[2].1, Outcome::Success);

    // The caller of the first request gets both nodes' signatures.
    let first = response(
        &tx(1),
        vec![answers[0].1[0].clone(), answers[1].1[0].clone()],
    );
    let trust = NotaryTrust::Members {
        membership: &membership,
        now: now(),
    };
    assert_eq!(verify_response(&first, &tx(1), &trust, 2), Ok(()));
    // The double spender learns which state is gone, and the hash of its consumer only.
    let refused = error_response(tx(2).as_bytes(), outcome_error(&outcomes[1].1).unwrap());
    match verify_response(&refused, &tx(2), &trust, 1) {
        Err(VerifyError::Refused(error)) => match error.kind {
            Some(pb::error::Kind::Conflict(conflict)) => {
                assert_eq!(conflict.entries.len(), 1);
                let entry = &conflict.entries[0];
                assert_eq!(entry.consuming_tx_hash, tx(1).hash().to_vec());
                assert_eq!(entry.kind, pb::conflict_entry::Kind::Input as i32);
                assert_eq!(entry.state.as_ref().unwrap().output_index, 1);
            }
            other => panic!("expected a conflict, got {other:?}"),
        },
        other => panic!("expected a refusal, got {other:?}"),
    }
}
