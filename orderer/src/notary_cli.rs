//! `orderer notary notarise|verify`: the notary client on the command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use proto::prost::Message as _;
use proto::synod::notary as pb;

use crate::notary_client::{
    Caller, build_request, parse_state_ref, parse_tx_id, verify as verify_signatures,
};

#[derive(Subcommand)]
pub enum NotaryCommands {
    /// Ask one node to notarise a transaction: none of its inputs may have been
    /// consumed by another transaction. Prints the outcome; exits 0 only on success.
    Notarise {
        /// host:port of a node's notary listener.
        #[arg(long)]
        endpoint: String,
        /// The caller's identity directory (Fabric MSP layout, as `ca issue` writes it:
        /// msp/signcerts, msp/keystore, tls/ca.crt, tls/server.crt, tls/server.key).
        #[arg(long)]
        identity: PathBuf,
        /// The name in the node's TLS certificate.
        #[arg(long, default_value = "localhost")]
        server_name: String,
        /// The notary's name (the nodes' `[notary] name`).
        #[arg(long)]
        notary: String,
        /// Transaction id: 64 hex digits.
        #[arg(long)]
        tx_id: String,
        /// An input state, HASH:INDEX (repeatable).
        #[arg(long = "input")]
        inputs: Vec<String>,
        /// A reference state, HASH:INDEX (repeatable): checked, not consumed.
        #[arg(long = "reference")]
        references: Vec<String>,
        /// Time window start, ms since the Unix epoch (inclusive).
        #[arg(long)]
        from_ms: Option<i64>,
        /// Time window end, ms since the Unix epoch (exclusive).
        #[arg(long)]
        until_ms: Option<i64>,
        /// Write the node's answer (protobuf `NotariseResponse`) here, for `verify`.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Check a saved answer: it notarises the transaction and carries a valid signature
    /// (single or batched) of one of the given nodes.
    Verify {
        /// The answer written by `notarise --output`.
        #[arg(long)]
        response: PathBuf,
        /// Transaction id: 64 hex digits.
        #[arg(long)]
        tx_id: String,
        /// A node's signing certificate, PEM (repeatable): the trusted notary keys.
        #[arg(long = "node-cert", required = true)]
        node_certs: Vec<PathBuf>,
    },
}

pub fn run(command: NotaryCommands) -> ExitCode {
    match crate::client::block_on(execute(command)) {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(command: NotaryCommands) -> Result<String, String> {
    match command {
        NotaryCommands::Notarise {
            endpoint,
            identity,
            server_name,
            notary,
            tx_id,
            inputs,
            references,
            from_ms,
            until_ms,
            output,
        } => {
            let tx_id = parse_tx_id(&tx_id)?;
            let inputs = inputs
                .iter()
                .map(|s| parse_state_ref(s))
                .collect::<Result<_, _>>()?;
            let references = references
                .iter()
                .map(|s| parse_state_ref(s))
                .collect::<Result<_, _>>()?;
            let request = build_request(tx_id, inputs, references, from_ms, until_ms)?;
            let caller = Caller::from_msp_dir(&identity, &server_name)?;
            let signed = caller.request(&request, &notary)?;
            let mut client = caller.connect(&endpoint).await?;
            let response = client
                .notarise(signed)
                .await
                .map_err(|s| format!("notary call failed: {}", s.message()))?
                .into_inner();
            if let Some(path) = output {
                std::fs::write(&path, response.encode_to_vec())
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            }
            describe(&response)
        }
        NotaryCommands::Verify {
            response,
            tx_id,
            node_certs,
        } => {
            let tx_id = parse_tx_id(&tx_id)?;
            let bytes = std::fs::read(&response)
                .map_err(|e| format!("cannot read {}: {e}", response.display()))?;
            let response = pb::NotariseResponse::decode(&bytes[..])
                .map_err(|e| format!("{}: not a notary answer: {e}", response.display()))?;
            let certificates = node_certs
                .iter()
                .map(|path| {
                    std::fs::read_to_string(path)
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            verify_signatures(&response, &tx_id, &certificates)?;
            Ok("verified: notarised and signed by a trusted node".to_string())
        }
    }
}

/// "notarised (N signatures)" or the refusal as an error.
fn describe(response: &pb::NotariseResponse) -> Result<String, String> {
    match &response.result {
        Some(pb::notarise_response::Result::Signed(signed)) => Ok(format!(
            "notarised ({} signature{})",
            signed.signatures.len(),
            if signed.signatures.len() == 1 {
                ""
            } else {
                "s"
            }
        )),
        Some(pb::notarise_response::Result::Error(error)) => {
            Err(notary_adapter::wire::describe_error(error))
        }
        None => Err("the notary sent an empty answer".to_string()),
    }
}
