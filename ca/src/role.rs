use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a certificate holder may do, carried as a Fabric NodeOU (`OU=<role>`) in the subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Orderer,
    Peer,
    Client,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Orderer, Role::Peer, Role::Client, Role::Admin];

    /// The organizational-unit value Fabric's NodeOU classification expects.
    pub fn as_ou(self) -> &'static str {
        match self {
            Role::Orderer => "orderer",
            Role::Peer => "peer",
            Role::Client => "client",
            Role::Admin => "admin",
        }
    }

    /// Fabric compares NodeOU identifiers exactly, so no case folding here either.
    pub fn from_ou(ou: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_ou() == ou)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_ou())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::from_ou(s).ok_or_else(|| {
            format!("unknown role {s:?}: expected one of orderer, peer, client, admin")
        })
    }
}

/// Key and signature algorithm of a CA or of an issued identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algo {
    /// Small keys and deterministic signatures: the default for Synod's own nodes.
    #[default]
    Ed25519,
    /// ECDSA over P-256 with SHA-256: what Fabric's SDKs and most HSMs sign with.
    P256,
}

impl Algo {
    pub(crate) fn rcgen(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            Algo::Ed25519 => &rcgen::PKCS_ED25519,
            Algo::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        }
    }

    pub(crate) fn of_key(key: &rcgen::KeyPair) -> Option<Algo> {
        let alg = key.algorithm();
        if alg == &rcgen::PKCS_ED25519 {
            Some(Algo::Ed25519)
        } else if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
            Some(Algo::P256)
        } else {
            None
        }
    }
}

impl fmt::Display for Algo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Algo::Ed25519 => "ed25519",
            Algo::P256 => "p256",
        })
    }
}

impl FromStr for Algo {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "ed25519" => Ok(Algo::Ed25519),
            "p256" | "p-256" | "ecdsa" | "prime256v1" | "secp256r1" => Ok(Algo::P256),
            _ => Err(format!("unknown algorithm {s:?}: expected ed25519 or p256")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_their_ou() {
        for role in Role::ALL {
            assert_eq!(Role::from_ou(role.as_ou()), Some(role));
            assert_eq!(role.to_string().parse::<Role>(), Ok(role));
        }
        assert_eq!(Role::from_ou("Admin"), None);
    }

    #[test]
    fn algorithms_parse() {
        assert_eq!("P-256".parse::<Algo>(), Ok(Algo::P256));
        assert_eq!("ed25519".parse::<Algo>(), Ok(Algo::Ed25519));
        assert!("rsa".parse::<Algo>().is_err());
    }
}
