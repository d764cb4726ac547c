//! The Merkle tree a node signs once for a whole batch of notarised transactions.
//!
//! * leaf = SHA-256(`0x00` ‖ tx id)
//! * node = SHA-256(`0x01` ‖ left ‖ right)
//! * Each level pairs neighbours from the left; an odd last node is promoted to the next
//!   level unchanged (not hashed with itself, which would let two different batches
//!   share a root).
//! * The distinct prefixes keep a leaf from ever being taken for an inner node.
//!
//! A proof is the leaf's index, the number of leaves (which says at which levels the
//! path's node is promoted) and the sibling hashes from the leaf level up, one for each
//! level at which the path's node has a sibling.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::types::{HASH_BYTES, TxId};

pub type Hash = [u8; HASH_BYTES];

/// Most leaves one tree holds; a node with more successes in one batch signs several
/// trees. It bounds the proof's length to 20 siblings.
pub const MAX_LEAVES: usize = 1 << 20;

const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

pub fn leaf_hash(tx_id: &TxId) -> Hash {
    Sha256::new()
        .chain_update([LEAF_PREFIX])
        .chain_update(tx_id.as_bytes())
        .finalize()
        .into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Sha256::new()
        .chain_update([NODE_PREFIX])
        .chain_update(left)
        .chain_update(right)
        .finalize()
        .into()
}

/// Proves that one transaction id is a leaf of a tree with a given root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MerkleProof {
    pub leaf_index: u32,
    pub leaf_count: u32,
    pub siblings: Vec<Hash>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProofError {
    NoLeaves,
    TooManyLeaves {
        count: u32,
    },
    IndexOutOfRange {
        index: u32,
        count: u32,
    },
    /// The proof has fewer or more siblings than a tree of its size needs.
    WrongLength {
        expected: usize,
        actual: usize,
    },
}

impl fmt::Display for ProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProofError::NoLeaves => f.write_str("Merkle proof for a tree without leaves"),
            ProofError::TooManyLeaves { count } => write!(
                f,
                "Merkle proof for {count} leaves, more than the {MAX_LEAVES} a batch may have"
            ),
            ProofError::IndexOutOfRange { index, count } => {
                write!(
                    f,
                    "Merkle proof for leaf {index} of a tree of {count} leaves"
                )
            }
            ProofError::WrongLength { expected, actual } => write!(
                f,
                "Merkle proof has {actual} sibling hashes, its tree needs {expected}"
            ),
        }
    }
}

impl std::error::Error for ProofError {}

/// A tree over the tx ids of one batch, every level kept so proofs are cheap.
#[derive(Clone, Debug)]
pub struct MerkleTree {
    /// `levels[0]` the leaves, the last level the root alone.
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    /// `None` for no leaves or more than [`MAX_LEAVES`].
    pub fn new(tx_ids: &[TxId]) -> Option<MerkleTree> {
        if tx_ids.is_empty() || tx_ids.len() > MAX_LEAVES {
            return None;
        }
        let mut levels = vec![tx_ids.iter().map(leaf_hash).collect::<Vec<_>>()];
        while let Some(level) = levels.last().filter(|level| level.len() > 1) {
            let mut next = Vec::with_capacity(level.len().div_ceil(2));
            let mut nodes = level.iter();
            while let Some(left) = nodes.next() {
                next.push(match nodes.next() {
                    Some(right) => node_hash(left, right),
                    None => *left,
                });
            }
            levels.push(next);
        }
        Some(MerkleTree { levels })
    }

    pub fn root(&self) -> Hash {
        self.levels
            .last()
            .and_then(|level| level.first())
            .copied()
            .unwrap_or_default()
    }

    pub fn leaf_count(&self) -> usize {
        self.levels[0].len()
    }

    /// The proof for leaf `index`, `None` past the last leaf.
    pub fn proof(&self, index: usize) -> Option<MerkleProof> {
        if index >= self.leaf_count() {
            return None;
        }
        let mut siblings = Vec::new();
        let mut position = index;
        for level in &self.levels[..self.levels.len() - 1] {
            if let Some(sibling) = level.get(position ^ 1) {
                siblings.push(*sibling);
            }
            position /= 2;
        }
        Some(MerkleProof {
            // Both bounded by MAX_LEAVES.
            leaf_index: index as u32,
            leaf_count: self.leaf_count() as u32,
            siblings,
        })
    }
}

/// The root a proof leads to from `tx_id`; the caller compares it with the signed root.
pub fn root_from_proof(tx_id: &TxId, proof: &MerkleProof) -> Result<Hash, ProofError> {
    let (mut index, mut count) = (proof.leaf_index as usize, proof.leaf_count as usize);
    if count == 0 {
        return Err(ProofError::NoLeaves);
    }
    if count > MAX_LEAVES {
        return Err(ProofError::TooManyLeaves {
            count: proof.leaf_count,
        });
    }
    if index >= count {
        return Err(ProofError::IndexOutOfRange {
            index: proof.leaf_index,
            count: proof.leaf_count,
        });
    }
    let expected = path_length(index, count);
    if proof.siblings.len() != expected {
        return Err(ProofError::WrongLength {
            expected,
            actual: proof.siblings.len(),
        });
    }
    let mut hash = leaf_hash(tx_id);
    let mut siblings = proof.siblings.iter();
    while count > 1 {
        let has_sibling = index % 2 == 1 || index + 1 < count;
        if has_sibling {
            // Present: the length was checked against the same walk.
            let Some(sibling) = siblings.next() else {
                break;
            };
            hash = if index % 2 == 1 {
                node_hash(sibling, &hash)
            } else {
                node_hash(&hash, sibling)
            };
        }
        index /= 2;
        count = count.div_ceil(2);
    }
    Ok(hash)
}

/// Number of siblings on the path of leaf `index` in a tree of `count` leaves.
fn path_length(mut index: usize, mut count: usize) -> usize {
    let mut length = 0;
    while count > 1 {
        if index % 2 == 1 || index + 1 < count {
            length += 1;
        }
        index /= 2;
        count = count.div_ceil(2);
    }
    length
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(count: usize) -> Vec<TxId> {
        (0..count)
            .map(|i| {
                let mut id = [0; 32];
                id[..8].copy_from_slice(&(i as u64).to_be_bytes());
                TxId(id)
            })
            .collect()
    }

    #[test]
    fn every_leaf_of_trees_of_1_to_33_leaves_proves_and_tampering_fails() {
        for count in 1..=33 {
            let ids = ids(count);
            let tree = MerkleTree::new(&ids).unwrap();
            let root = tree.root();
            for (index, id) in ids.iter().enumerate() {
                let proof = tree.proof(index).unwrap();
                assert_eq!(
                    root_from_proof(id, &proof),
                    Ok(root),
                    "{count} leaves, #{index}"
                );

                // Another transaction id does not lead to the root.
                let other = TxId([0xff; 32]);
                assert_ne!(root_from_proof(&other, &proof), Ok(root));
                // Nor does any flipped bit in any sibling.
                for s in 0..proof.siblings.len() {
                    let mut bad = proof.clone();
                    bad.siblings[s][s % 32] ^= 1;
                    assert_ne!(root_from_proof(id, &bad), Ok(root));
                }
                // Nor the same siblings at another position.
                if count > 1 {
                    let mut moved = proof.clone();
                    moved.leaf_index = ((index + 1) % count) as u32;
                    assert_ne!(root_from_proof(id, &moved), Ok(root));
                }
                // A dropped or an extra sibling is refused outright.
                if !proof.siblings.is_empty() {
                    let mut short = proof.clone();
                    short.siblings.pop();
                    assert!(matches!(
                        root_from_proof(id, &short),
                        Err(ProofError::WrongLength { .. })
                    ));
                }
                let mut long = proof.clone();
                long.siblings.push([0; 32]);
                assert!(matches!(
                    root_from_proof(id, &long),
                    Err(ProofError::WrongLength { .. })
                ));
            }
            assert!(tree.proof(count).is_none());
        }
    }

    #[test]
    fn shape_follows_the_documented_rules() {
        let ids = ids(3);
        let tree = MerkleTree::new(&ids).unwrap();
        let left = node_hash(&leaf_hash(&ids[0]), &leaf_hash(&ids[1]));
        // The third leaf is promoted, not hashed with itself.
        assert_eq!(tree.root(), node_hash(&left, &leaf_hash(&ids[2])));
        assert_eq!(tree.proof(2).unwrap().siblings, vec![left]);
        let single = MerkleTree::new(&ids[..1]).unwrap();
        assert_eq!(single.root(), leaf_hash(&ids[0]));
        assert!(single.proof(0).unwrap().siblings.is_empty());
        assert!(MerkleTree::new(&[]).is_none());
    }

    #[test]
    fn proofs_with_impossible_sizes_are_refused() {
        let id = TxId([1; 32]);
        let proof = |index, count| MerkleProof {
            leaf_index: index,
            leaf_count: count,
            siblings: Vec::new(),
        };
        assert_eq!(
            root_from_proof(&id, &proof(0, 0)),
            Err(ProofError::NoLeaves)
        );
        assert_eq!(
            root_from_proof(&id, &proof(3, 3)),
            Err(ProofError::IndexOutOfRange { index: 3, count: 3 })
        );
        assert_eq!(
            root_from_proof(&id, &proof(0, u32::MAX)),
            Err(ProofError::TooManyLeaves { count: u32::MAX })
        );
    }
}
