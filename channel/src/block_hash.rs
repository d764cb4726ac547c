//! Fabric's block hashes: the header hash is SHA-256 over the DER encoding of
//! `SEQUENCE { INTEGER number, OCTET STRING previous_hash, OCTET STRING data_hash }`
//! (as Go's `asn1.Marshal` writes it), the data hash is SHA-256 over the concatenated
//! envelopes. A Fabric client recomputes both, so they must match byte for byte.

use sha2::{Digest, Sha256};

fn der_length(out: &mut Vec<u8>, length: usize) {
    if length < 0x80 {
        out.push(length as u8);
        return;
    }
    let bytes = length.to_be_bytes();
    let first = bytes
        .iter()
        .position(|b| *b != 0)
        .expect("length is not zero");
    out.push(0x80 | (bytes.len() - first) as u8);
    out.extend_from_slice(&bytes[first..]);
}

fn der_unsigned_integer(out: &mut Vec<u8>, value: u64) {
    let bytes = value.to_be_bytes();
    let first = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len() - 1);
    let magnitude = &bytes[first..];
    // A set top bit would read as negative: DER prepends a zero byte.
    let pad = magnitude[0] & 0x80 != 0;
    out.push(0x02);
    der_length(out, magnitude.len() + pad as usize);
    if pad {
        out.push(0);
    }
    out.extend_from_slice(magnitude);
}

fn der_octet_string(out: &mut Vec<u8>, value: &[u8]) {
    out.push(0x04);
    der_length(out, value.len());
    out.extend_from_slice(value);
}

/// The bytes Fabric hashes (and signs) for a block header.
pub fn header_bytes(number: u64, previous_hash: &[u8], data_hash: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(16 + previous_hash.len() + data_hash.len());
    der_unsigned_integer(&mut body, number);
    der_octet_string(&mut body, previous_hash);
    der_octet_string(&mut body, data_hash);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.push(0x30);
    der_length(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

pub fn header_hash(number: u64, previous_hash: &[u8], data_hash: &[u8]) -> [u8; 32] {
    Sha256::digest(header_bytes(number, previous_hash, data_hash)).into()
}

/// SHA-256 of the concatenation of the block's data entries (not a Merkle tree).
pub fn data_hash<T: AsRef<[u8]>>(data: &[T]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for entry in data {
        hasher.update(entry.as_ref());
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn worked_example_from_fabric() {
        assert_eq!(
            hex(&header_bytes(1, b"foo", b"bar")),
            "300d0201010403666f6f0403626172"
        );
    }

    #[test]
    fn integers_follow_go_asn1() {
        let integer = |n: u64| {
            let mut out = Vec::new();
            der_unsigned_integer(&mut out, n);
            hex(&out)
        };
        assert_eq!(integer(0), "020100");
        assert_eq!(integer(127), "02017f");
        assert_eq!(integer(128), "02020080");
        assert_eq!(integer(256), "02020100");
        assert_eq!(integer(u64::MAX), "020900ffffffffffffffff");
    }

    #[test]
    fn empty_previous_hash_and_long_lengths() {
        // The genesis block has no previous hash: an empty OCTET STRING.
        assert_eq!(hex(&header_bytes(0, b"", b"")), "300702010004000400");
        let long = vec![7u8; 200];
        let bytes = header_bytes(2, &long, &[1u8; 32]);
        // 200 bytes need the long length form (0x81 0xc8), and so does the sequence.
        assert_eq!(hex(&bytes[6..9]), "0481c8");
        assert_eq!(bytes[1], 0x81);
        assert_eq!(bytes[2] as usize, bytes.len() - 3);
    }

    #[test]
    fn data_hash_is_over_the_concatenation() {
        let joined = data_hash(&[b"ab".as_slice(), b"c".as_slice()]);
        assert_eq!(joined, data_hash(&[b"abc".as_slice()]));
        assert_eq!(
            hex(&data_hash::<&[u8]>(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
