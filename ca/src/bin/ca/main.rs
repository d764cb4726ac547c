//! `ca`: the command-line certificate authority for a Synod network.

mod args;

use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use ca::authority::{CRL_FILE, CertificateKind};
use ca::{Algo, CertificateAuthority, IssueOptions, Membership, Role, require_role};
use clap::Parser;

use crate::args::{Cli, Command};

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn load(dir: &Path) -> Result<CertificateAuthority, String> {
    CertificateAuthority::load(dir).map_err(|e| {
        format!(
            "cannot open the CA in {}: {e} (create one with `ca init`)",
            dir.display()
        )
    })
}

fn run(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Init {
            name,
            msp_id,
            algo,
            dir,
        } => {
            let mut authority = CertificateAuthority::init(&name, &msp_id, algo.into())
                .map_err(|e| e.to_string())?;
            authority.save(&dir).map_err(|e| e.to_string())?;
            println!(
                "Created CA {name:?} for MSP {msp_id} ({}) in {}",
                authority.algo(),
                dir.display()
            );
            println!(
                "  root certificate: {}  (give to every node)",
                dir.join("ca.pem").display()
            );
            println!(
                "  private key:      {}  (keep secret and backed up)",
                dir.join("ca.key").display()
            );
            println!(
                "Next: ca issue --dir {} --role orderer --name NAME --san HOST --out OUTDIR",
                dir.display()
            );
        }
        Command::Issue {
            dir,
            role,
            name,
            sans,
            days,
            algo,
            out,
        } => {
            // Checked before issuing so a typo in --out does not leave an orphan in the registry.
            for sub in ["msp", "tls"] {
                let existing = out.join(sub);
                if existing.exists() {
                    return Err(format!(
                        "{} already exists; choose an empty --out directory",
                        existing.display()
                    ));
                }
            }
            let mut authority = load(&dir)?;
            let options = IssueOptions {
                sans,
                days,
                algo: algo.map(Algo::from),
                ..IssueOptions::default()
            };
            let identity = authority
                .issue_with(role.into(), &name, &options)
                .map_err(|e| e.to_string())?;
            identity.write_msp(&out).map_err(|e| e.to_string())?;
            println!(
                "Issued {} identity {name:?} for MSP {} into {}",
                identity.role,
                identity.msp_id,
                out.display()
            );
            println!(
                "  signing certificate serial {}  (msp/signcerts/cert.pem)",
                identity.signing.serial
            );
            println!(
                "  TLS certificate serial     {}  (tls/server.crt)",
                identity.tls.serial
            );
            println!("  private keys: msp/keystore/key.pem, tls/server.key (mode 0600)");
        }
        Command::Revoke {
            dir,
            serial,
            reason,
        } => {
            let mut authority = load(&dir)?;
            authority
                .revoke(&serial, reason.into())
                .map_err(|e| e.to_string())?;
            authority.crl().map_err(|e| e.to_string())?;
            println!(
                "Revoked {serial}; new CRL written to {}",
                dir.join(CRL_FILE).display()
            );
            println!("Copy it into every node's msp/crls/ for the revocation to take effect.");
        }
        Command::Crl { dir, out } => {
            let mut authority = load(&dir)?;
            let crl = authority.crl().map_err(|e| e.to_string())?;
            match out {
                Some(path) => {
                    std::fs::write(&path, &crl)
                        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                    println!("Wrote CRL to {}", path.display());
                }
                None => print!("{crl}"),
            }
        }
        Command::List { dir } => {
            let authority = load(&dir)?;
            list(&authority);
        }
        Command::Verify { dir, role, cert } => {
            let authority = load(&dir)?;
            let membership =
                Membership::from_dirs([(authority.msp_id(), &dir)]).map_err(|e| e.to_string())?;
            let bytes =
                std::fs::read(&cert).map_err(|e| format!("cannot read {}: {e}", cert.display()))?;
            let der =
                ca::certificate_der(&bytes).map_err(|e| format!("{}: {e}", cert.display()))?;
            let roles: Vec<Role> = role.into_iter().map(Role::from).collect();
            let verdict = membership.verify(&der, SystemTime::now()).and_then(|id| {
                if roles.is_empty() {
                    Ok(id)
                } else {
                    require_role(&id, &roles).map(|()| id)
                }
            });
            match verdict {
                Ok(id) => println!(
                    "OK: {} {:?} of MSP {}, serial {}",
                    id.role, id.common_name, id.msp_id, id.serial
                ),
                Err(reason) => {
                    println!("REJECTED: {reason}");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn list(authority: &CertificateAuthority) {
    println!(
        "CA {:?}, MSP {} ({})",
        authority.name(),
        authority.msp_id(),
        authority.algo()
    );
    let records = authority.certificates();
    if records.is_empty() {
        println!("No certificates issued yet.");
        return;
    }
    println!(
        "{:<32}  {:<7}  {:<7}  {:<20}  {:<28}  COMMON NAME",
        "SERIAL", "KIND", "ROLE", "NOT AFTER", "STATUS"
    );
    let now = SystemTime::now();
    for record in records {
        let status = match &record.revoked {
            Some(revocation) => format!("revoked ({})", revocation.reason),
            None if record.not_after < now => "expired".to_owned(),
            None => "valid".to_owned(),
        };
        let kind = match record.kind {
            CertificateKind::Signing => "signing",
            CertificateKind::Tls => "tls",
        };
        println!(
            "{:<32}  {:<7}  {:<7}  {:<20}  {:<28}  {}",
            record.serial.to_string(),
            kind,
            record.role.as_ou(),
            format_time(record.not_after),
            status,
            record.common_name
        );
    }
}

fn format_time(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "?".to_owned())
}
