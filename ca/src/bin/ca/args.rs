//! Command-line arguments and help text of `ca`.

use std::path::PathBuf;

use ca::authority::DEFAULT_DAYS;
use ca::{Algo, RevocationReason, Role, Serial};
use clap::{Parser, Subcommand, ValueEnum};

const ABOUT: &str = "Certificate authority for a Synod network: issues, revokes and checks \
the X.509 identities of orderers, peers, clients and admins (Hyperledger Fabric MSP layout).";

const LONG_ABOUT: &str = "\
Certificate authority for a Synod network.

Every orderer, peer, client and admin is known by X.509 certificates issued by the CA of its \
organisation (its MSP). Each `ca issue` produces two identities with separate keys: a signing \
identity whose subject carries the role as a Fabric NodeOU (OU=orderer|peer|client|admin), \
and a TLS identity for mutual TLS. Output folders follow Fabric's MSP layout, so Fabric tools \
and SDKs can use them unchanged.

A CA directory holds ca.pem (the root certificate to give every node), ca.key (the private \
key: keep it offline and backed up), registry.json (what was issued) and crl.pem (the current \
revocation list to give every node).";

const EXAMPLES: &str = "\
Examples:
  # 1. Create the CA of organisation Org1 (Ed25519 unless --algo p256):
  ca init --name ca.org1.example.com --msp-id Org1MSP --dir org1-ca

  # 2. Issue an orderer identity, valid for its host name and address:
  ca issue --dir org1-ca --role orderer --name orderer0.org1.example.com \\
      --san orderer0.org1.example.com --san 10.0.0.10 --out orderer0

  # 3. Issue an admin and a client that signs with P-256 (as Fabric SDKs do):
  ca issue --dir org1-ca --role admin --name admin@org1.example.com --out admin
  ca issue --dir org1-ca --role client --name app1 --algo p256 --days 90 --out app1

  # 4. See what was issued, then check a certificate:
  ca list --dir org1-ca
  ca verify --dir org1-ca app1/msp/signcerts/cert.pem

  # 5. Revoke a certificate (serial from `ca list`) and hand out the new CRL:
  ca revoke --dir org1-ca --serial SERIAL --reason key-compromise
  ca crl --dir org1-ca --out /etc/synod/msp/crls/org1.pem

Output of `ca issue`: OUT/msp/{cacerts,tlscacerts}/ca.pem, OUT/msp/signcerts/cert.pem, \
OUT/msp/keystore/key.pem, OUT/msp/config.yaml (NodeOUs), OUT/tls/{ca.crt,server.crt,server.key}. \
Private keys are PKCS#8 PEM, readable by their owner only (mode 0600).";

#[derive(Parser)]
#[command(name = "ca", version, about = ABOUT, long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create a new root CA for one organisation (MSP) in a new directory.
    #[command(
        after_long_help = "Example:\n  ca init --name ca.org1.example.com --msp-id Org1MSP --dir org1-ca"
    )]
    Init {
        /// Common name of the CA certificate, e.g. ca.org1.example.com.
        #[arg(long)]
        name: String,
        /// MSP id of the organisation, e.g. Org1MSP; it becomes O= in every certificate.
        #[arg(long)]
        msp_id: String,
        /// Key algorithm of the CA, and the default for the identities it issues.
        #[arg(long, value_enum, default_value_t = AlgoArg::Ed25519)]
        algo: AlgoArg,
        /// Directory to create the CA in; must not already hold a CA.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Issue a signing identity and a TLS identity for one member, in Fabric's MSP layout.
    #[command(
        after_long_help = "Example:\n  ca issue --dir org1-ca --role peer --name peer0.org1.example.com \\\n      --san peer0.org1.example.com --san localhost --san 127.0.0.1 --out peer0"
    )]
    Issue {
        /// CA directory made by `ca init`.
        #[arg(long)]
        dir: PathBuf,
        /// What the member may do; recorded as its NodeOU.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Common name of the member, e.g. its host name or user name.
        #[arg(long)]
        name: String,
        /// Host name or IP address the TLS certificate is valid for (repeatable). Nothing is
        /// added implicitly: pass localhost / 127.0.0.1 if the member is reached that way.
        #[arg(long = "san", value_name = "HOST")]
        sans: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = DEFAULT_DAYS)]
        days: u32,
        /// Key algorithm of the member's keys [default: the CA's].
        #[arg(long, value_enum)]
        algo: Option<AlgoArg>,
        /// Directory to write msp/ and tls/ into; must not already hold an identity.
        #[arg(long)]
        out: PathBuf,
    },
    /// Revoke a certificate and write a new crl.pem into the CA directory.
    #[command(
        after_long_help = "Example:\n  ca revoke --dir org1-ca --serial SERIAL --reason key-compromise"
    )]
    Revoke {
        /// CA directory made by `ca init`.
        #[arg(long)]
        dir: PathBuf,
        /// Serial number in hex, as shown by `ca list` (colons and 0x are accepted).
        #[arg(long)]
        serial: Serial,
        /// Why, as recorded in the CRL.
        #[arg(long, value_enum, default_value_t = ReasonArg::Unspecified)]
        reason: ReasonArg,
    },
    /// Sign a fresh CRL, store it as crl.pem in the CA directory and print or copy it.
    #[command(after_long_help = "Example:\n  ca crl --dir org1-ca --out orderer0/msp/crls/crl.pem")]
    Crl {
        /// CA directory made by `ca init`.
        #[arg(long)]
        dir: PathBuf,
        /// Also write the CRL here (PEM); without it the CRL is printed.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List every certificate the CA issued, with its status.
    List {
        /// CA directory made by `ca init`.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Check a certificate against the CA and its current CRL, as a node would.
    #[command(
        after_long_help = "Example:\n  ca verify --dir org1-ca --role orderer orderer0/msp/signcerts/cert.pem"
    )]
    Verify {
        /// CA directory made by `ca init`.
        #[arg(long)]
        dir: PathBuf,
        /// Also require one of these roles (repeatable).
        #[arg(long, value_enum)]
        role: Vec<RoleArg>,
        /// Certificate to check, PEM or DER.
        cert: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum AlgoArg {
    Ed25519,
    P256,
}

impl From<AlgoArg> for Algo {
    fn from(a: AlgoArg) -> Algo {
        match a {
            AlgoArg::Ed25519 => Algo::Ed25519,
            AlgoArg::P256 => Algo::P256,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Orderer,
    Peer,
    Client,
    Admin,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Orderer => Role::Orderer,
            RoleArg::Peer => Role::Peer,
            RoleArg::Client => Role::Client,
            RoleArg::Admin => Role::Admin,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ReasonArg {
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    PrivilegeWithdrawn,
}

impl From<ReasonArg> for RevocationReason {
    fn from(r: ReasonArg) -> RevocationReason {
        match r {
            ReasonArg::Unspecified => RevocationReason::Unspecified,
            ReasonArg::KeyCompromise => RevocationReason::KeyCompromise,
            ReasonArg::CaCompromise => RevocationReason::CaCompromise,
            ReasonArg::AffiliationChanged => RevocationReason::AffiliationChanged,
            ReasonArg::Superseded => RevocationReason::Superseded,
            ReasonArg::CessationOfOperation => RevocationReason::CessationOfOperation,
            ReasonArg::PrivilegeWithdrawn => RevocationReason::PrivilegeWithdrawn,
        }
    }
}
