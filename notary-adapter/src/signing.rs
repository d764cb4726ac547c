//! What a notary node signs, and the node's signer.
//!
//! * One transaction: SHA-256(`synod.notary.signed-tx.v1\0` ‖ tx id).
//! * A batch: SHA-256(`synod.notary.signed-batch.v1\0` ‖ Merkle root), the root of the
//!   tree over the batch's successful tx ids (see [`merkle`](crate::merkle)); each caller
//!   gets the signature with its leaf's proof.
//!
//! The 32-byte digest is the message given to the key: Ed25519 signs it as it is, ECDSA
//! P-256 signs its SHA-256 (DER, low-S), as `ca::signature` does for every Synod
//! signature. The two prefixes keep a batch signature from passing as a signature over a
//! transaction whose id happens to equal a root, and the other way round.

use std::fmt;

use proto::synod::notary as pb;
use sha2::{Digest, Sha256};

use crate::merkle::{Hash, MAX_LEAVES, MerkleTree};
use crate::types::TxId;

pub const TX_DOMAIN: &[u8] = b"synod.notary.signed-tx.v1\0";
pub const BATCH_DOMAIN: &[u8] = b"synod.notary.signed-batch.v1\0";

/// The message a node signs for one transaction.
pub fn single_message(tx_id: &TxId) -> Hash {
    Sha256::new()
        .chain_update(TX_DOMAIN)
        .chain_update(tx_id.as_bytes())
        .finalize()
        .into()
}

/// The message a node signs for a batch whose Merkle root is `root`.
pub fn batch_message(root: &Hash) -> Hash {
    Sha256::new()
        .chain_update(BATCH_DOMAIN)
        .chain_update(root)
        .finalize()
        .into()
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignError {
    Certificate(String),
    /// The key could not sign (not a PKCS#8 PEM key of a supported kind).
    Key(String),
    /// The key does not belong to the certificate: callers would reject every signature.
    KeyMismatch(String),
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignError::Certificate(reason) => write!(f, "notary node certificate: {reason}"),
            SignError::Key(reason) => write!(f, "notary node signing key: {reason}"),
            SignError::KeyMismatch(reason) => write!(
                f,
                "notary node signing key does not match its certificate: {reason}"
            ),
        }
    }
}

impl std::error::Error for SignError {}

/// A node's signing identity: its certificate (sent with every signature) and key.
#[derive(Clone)]
pub struct NodeSigner {
    certificate_der: Vec<u8>,
    key_pem: String,
}

impl fmt::Debug for NodeSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeSigner")
            .field("certificate_der", &self.certificate_der.len())
            .field("key_pem", &"[elided]")
            .finish()
    }
}

impl NodeSigner {
    /// `certificate` PEM or DER, `key_pem` PKCS#8 PEM (as in `msp/keystore/key.pem`).
    /// Signs a probe to make sure the two belong together.
    pub fn new(certificate: &[u8], key_pem: &str) -> Result<NodeSigner, SignError> {
        let certificate_der = ca::certificate_der(certificate).map_err(SignError::Certificate)?;
        let signer = NodeSigner {
            certificate_der,
            key_pem: key_pem.to_owned(),
        };
        let probe = single_message(&TxId([0; 32]));
        let signature = signer.sign(&probe)?;
        ca::signature::verify(&signer.certificate_der, &probe, &signature)
            .map_err(|e| SignError::KeyMismatch(e.to_string()))?;
        Ok(signer)
    }

    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }

    fn sign(&self, message: &Hash) -> Result<Vec<u8>, SignError> {
        ca::signature::sign(&self.key_pem, message).map_err(|e| SignError::Key(e.to_string()))
    }

    /// This node's signature over one transaction.
    pub fn sign_one(&self, tx_id: &TxId) -> Result<pb::NodeSignature, SignError> {
        Ok(pb::NodeSignature {
            certificate: self.certificate_der.clone(),
            signature: self.sign(&single_message(tx_id))?,
            batch: None,
        })
    }

    /// One signature per [`MAX_LEAVES`] transactions: a signature with its Merkle proof
    /// for each of `tx_ids`, in the same order. Ids may repeat (a re-sent request in the
    /// same batch); each occurrence gets its own leaf.
    pub fn sign_batch(&self, tx_ids: &[TxId]) -> Result<Vec<pb::NodeSignature>, SignError> {
        let mut out = Vec::with_capacity(tx_ids.len());
        for chunk in tx_ids.chunks(MAX_LEAVES) {
            let Some(tree) = MerkleTree::new(chunk) else {
                continue;
            };
            let root = tree.root();
            let signature = self.sign(&batch_message(&root))?;
            for index in 0..chunk.len() {
                let Some(proof) = tree.proof(index) else {
                    continue;
                };
                out.push(pb::NodeSignature {
                    certificate: self.certificate_der.clone(),
                    signature: signature.clone(),
                    batch: Some(pb::MerkleProof {
                        root: root.to_vec(),
                        leaf_index: proof.leaf_index,
                        leaf_count: proof.leaf_count,
                        siblings: proof.siblings.iter().map(|s| s.to_vec()).collect(),
                    }),
                });
            }
        }
        Ok(out)
    }
}
