//! Hyperledger Fabric's ordering-service wire format.
//!
//! The messages and the `orderer.AtomicBroadcast` gRPC service here are
//! generated from our own `.proto` files, which reproduce the package names,
//! message names, field numbers and enum values of Fabric's `fabric-protos`
//! (only the parts an orderer needs). That is what lets unmodified Fabric
//! peers, SDKs and tools talk to Synod: they encode with Fabric's definitions
//! and we decode with these, so any divergence is a silent wire break.
//!
//! Fields that carry marshaled messages in Fabric (`Envelope::payload`,
//! `Header::channel_header`, `BlockData::data`, …) stay `Vec<u8>` here as
//! well, because signatures and hashes are taken over exactly those bytes.
//!
//! Dependants should use the re-exported [`prost`], [`prost_types`] and
//! [`tonic`] so that the traits the generated code implements are the same
//! ones they call.

pub use prost;
pub use prost_types;
pub use tonic;

/// Fabric's `common` package: envelopes, headers, blocks, status codes, channel
/// configuration and its policies (with the MSP principals they name, which Fabric also
/// puts in `common`).
pub mod common {
    tonic::include_proto!("common");
}

/// Fabric's `msp` package: the serialized identity inside signature headers.
pub mod msp {
    tonic::include_proto!("msp");
}

/// Fabric's `orderer` package: Deliver's seek requests, the responses and the
/// `AtomicBroadcast` client and server.
pub mod orderer {
    tonic::include_proto!("orderer");
}

/// Synod's own protocols: the replica-to-replica exchange with the consensus core's
/// messages and write-ahead records, the channel configuration in genesis blocks, and
/// the Corda-style notary service.
pub mod synod {
    pub mod channel {
        tonic::include_proto!("synod.channel");
    }
    pub mod notary {
        tonic::include_proto!("synod.notary");
    }
    pub mod replica {
        tonic::include_proto!("synod.replica");
    }
}
