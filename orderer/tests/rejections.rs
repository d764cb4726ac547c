//! The rejection matrix: every kind of bad identity (expired, not yet valid, revoked,
//! from an unknown CA, self-signed, in the wrong role, of an MSP the channel's policies
//! do not name, with a tampered signature, another member's certificate) against every
//! port of a real three-node cluster (Broadcast, Deliver, the channel participation
//! API, the replica port, the notary). Each attempt must be refused with the port's
//! status, leave a log line naming the reason, and order (or notarise) nothing.
//!
//! A port is a [`Port`] variant: how to attempt a case on it, and what its refusal of
//! each case looks like.

mod rejections {
    pub mod cases;
    pub mod net;
    pub mod notary;
    pub mod probe;
}

use std::time::{Duration, Instant};

use proto::common::Status;

use notary_adapter::wire::describe_error;
use orderer::log::Capture;
use orderer::node::transport::TransportStats;
use proto::synod::notary as pb;
use rejections::cases::{self, Case, Credentials};
use rejections::net::{CHANNEL, Net, signer};
use rejections::notary::{self, Refusal};
use rejections::probe::{self, Probe, TlsIdentity};

/// Reasons logged by one port are logged at most once a second each; cases on one port
/// are this far apart so that every case's line is written.
const CASE_SPACING: Duration = Duration::from_millis(1_100);
/// How long a log line may take to appear after the client saw the refusal.
const LOG_WAIT: Duration = Duration::from_secs(5);

/// The ways into a node. Adding one takes a variant here, an arm in `expected` (its
/// refusal and log line per case) and one in `attempt` (how a case's credentials are
/// presented: `Credentials::signer` signs requests), and a `run_port` in the test below.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Port {
    Broadcast,
    Deliver,
    Admin,
    Replica,
    /// `synod.notary.Notary`: the request's signer is the identity under test, over a
    /// connection with a valid client's TLS identity.
    Notary,
}

/// What a client saw of an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    /// Broadcast or Deliver answered with this status.
    Status(Status),
    /// The participation API answered with this HTTP status.
    Http(u16),
    /// The notary answered with an error of this kind.
    Notary(Refusal),
    /// The notary signed: not a refusal.
    Notarised,
    /// The TLS handshake failed, or the connection was closed before anything was
    /// served.
    Closed,
    /// The connection was served (or hung): not a refusal.
    Open,
}

/// The replica transport's counter that must count a refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Counter {
    Handshakes,
    Identity,
}

impl Counter {
    fn read(self, stats: &TransportStats) -> u64 {
        match self {
            Counter::Handshakes => stats.refused_handshakes,
            Counter::Identity => stats.refused_identity,
        }
    }
}

/// How `port` must refuse `case`.
struct Expected {
    outcome: Outcome,
    counter: Option<Counter>,
    /// Every one of these is in the log line; empty for an attempt that is served, which
    /// must leave no refusal line.
    line: Vec<&'static str>,
}

fn expected(port: Port, case: Case) -> Expected {
    let envelope_reason = |policy: &'static str| -> Vec<&'static str> {
        match case {
            Case::Expired => vec!["certificate expired at"],
            Case::NotYetValid => vec!["certificate is not valid before"],
            Case::Revoked => vec!["has been revoked"],
            Case::UnknownCa => vec!["is not a trusted CA of any known MSP"],
            Case::SelfSigned => vec!["self-signed certificate"],
            Case::WrongRole => vec![policy, "OrdererMSP.peer"],
            Case::WrongMsp => vec![policy, "OtherMSP.client"],
            Case::TamperedSignature | Case::AnotherMembersCertificate => {
                vec!["envelope signature is invalid"]
            }
        }
    };
    // What rustls reports when it refuses the client's certificate.
    let tls_reason = || match case {
        Case::Expired => Some("certificate expired"),
        Case::NotYetValid => Some("certificate not valid yet"),
        Case::UnknownCa | Case::SelfSigned => Some("UnknownIssuer"),
        Case::TamperedSignature | Case::AnotherMembersCertificate => Some("BadSignature"),
        Case::Revoked | Case::WrongRole | Case::WrongMsp => None,
    };
    let with = |prefix: &'static str, reason: Vec<&'static str>| {
        let mut line = vec![prefix];
        line.extend(reason);
        line
    };
    match port {
        Port::Broadcast | Port::Deliver => {
            let (prefix, policy) = if port == Port::Broadcast {
                ("broadcast: refused", "Writers policy of channel guarded")
            } else {
                ("deliver: refused", "Readers policy of channel guarded")
            };
            let mut line = with(prefix, vec!["FORBIDDEN"]);
            line.extend(envelope_reason(policy));
            Expected {
                outcome: Outcome::Status(Status::Forbidden),
                counter: None,
                line,
            }
        }
        Port::Admin => {
            let prefix = "participation API: refused";
            if let Some(reason) = tls_reason() {
                return Expected {
                    outcome: Outcome::Closed,
                    counter: None,
                    line: with(prefix, vec!["TLS handshake failed", reason]),
                };
            }
            let reason = match case {
                Case::Revoked => vec!["has been revoked"],
                Case::WrongRole => vec!["may not manage channels", "role client is not allowed"],
                _ => vec!["Admins policy of channel guarded", "OtherMSP.admin"],
            };
            Expected {
                outcome: Outcome::Http(403),
                counter: None,
                line: with(prefix, reason),
            }
        }
        Port::Replica => {
            let prefix = "replica transport: refused";
            if let Some(reason) = tls_reason() {
                return Expected {
                    outcome: Outcome::Closed,
                    counter: Some(Counter::Handshakes),
                    line: with(prefix, vec!["TLS handshake failed", reason]),
                };
            }
            let reason = match case {
                Case::Revoked => "has been revoked",
                Case::WrongRole => "role client is not allowed",
                _ => "is not a member of the replicas' MSP OrdererMSP",
            };
            Expected {
                outcome: Outcome::Closed,
                counter: Some(Counter::Identity),
                line: with(prefix, vec!["certificate naming replica 1", reason]),
            }
        }
        Port::Notary => {
            // The TLS layer lets every case through (a valid client's TLS identity): the
            // notary's own checks of the request's signer refuse them.
            let (refusal, reason) = match case {
                Case::Expired => (
                    Refusal::NotAMember,
                    vec!["not a member: certificate expired at"],
                ),
                Case::NotYetValid => (
                    Refusal::NotAMember,
                    vec!["not a member: certificate is not valid before"],
                ),
                Case::Revoked => (
                    Refusal::Revoked,
                    vec!["revoked: certificate", "has been revoked"],
                ),
                Case::UnknownCa => (
                    Refusal::NotAMember,
                    vec![
                        "not a member: issuer",
                        "is not a trusted CA of any known MSP",
                    ],
                ),
                Case::SelfSigned => (
                    Refusal::NotAMember,
                    vec!["not a member: self-signed certificate"],
                ),
                Case::WrongRole => (
                    Refusal::WrongRole,
                    vec!["role admin may not notarise (allowed: client, peer)"],
                ),
                // The notary's callers name only our organisation.
                Case::WrongMsp => (
                    Refusal::NotAMember,
                    vec![
                        "not a member: OtherMSP.client",
                        "is not an allowed caller of this notary",
                    ],
                ),
                Case::TamperedSignature | Case::AnotherMembersCertificate => (
                    Refusal::RequestSignatureInvalid,
                    vec!["request signature invalid: signature verification failed"],
                ),
            };
            Expected {
                outcome: Outcome::Notary(refusal),
                counter: None,
                line: with("notary: refused", reason),
            }
        }
    }
}

/// What the notary answered, and a description for failure messages.
fn notary_outcome(answer: Result<pb::NotariseResponse, String>) -> (Outcome, String) {
    match answer {
        Ok(response) => match (notary::answer(&response), &response.result) {
            (Ok(()), _) => (Outcome::Notarised, "notarised".into()),
            (Err(refusal), Some(pb::notarise_response::Result::Error(error))) => {
                (Outcome::Notary(refusal), describe_error(error))
            }
            (Err(refusal), _) => (Outcome::Notary(refusal), format!("{response:?}")),
        },
        Err(why) => (Outcome::Closed, why),
    }
}

/// What one attempt came to, and the local address it came from for the listeners
/// that log it.
struct Attempt {
    outcome: Outcome,
    detail: String,
    local: Option<String>,
}

async fn attempt(net: &Net, port: Port, case: Case, credentials: &Credentials) -> Attempt {
    let ca_pem = net.ours.cert_pem().to_string();
    match port {
        Port::Broadcast => {
            let (status, info) = net
                .broadcast(&credentials.signer, credentials.tamper_signature)
                .await;
            Attempt {
                outcome: Outcome::Status(status),
                detail: info,
                local: None,
            }
        }
        Port::Deliver => {
            let (blocks, status) = net
                .deliver(&credentials.signer, credentials.tamper_signature)
                .await;
            Attempt {
                outcome: Outcome::Status(status),
                detail: format!("{blocks} blocks delivered"),
                local: None,
            }
        }
        Port::Admin => {
            // Removing the channel: had it been allowed, the channel would be gone.
            let path = format!("/participation/v1/channels/{CHANNEL}");
            let admin = net.nodes[0].admin_addr;
            let (local, answer) = probe::http(
                admin,
                &ca_pem,
                Some(&credentials.admin_tls),
                "DELETE",
                &path,
            )
            .await;
            let (outcome, detail) = match answer {
                Ok((status, body)) => (Outcome::Http(status), body),
                Err(why) => (Outcome::Closed, why),
            };
            Attempt {
                outcome,
                detail,
                local: Some(local.to_string()),
            }
        }
        Port::Replica => {
            let replica = net.nodes[0].replica_addr;
            let (local, probe) = probe::h2(replica, &ca_pem, Some(&credentials.replica_tls)).await;
            let (outcome, detail) = match probe {
                Probe::Refused(why) => (Outcome::Closed, why),
                other => (Outcome::Open, format!("{other:?}")),
            };
            Attempt {
                outcome,
                detail,
                local: Some(local.to_string()),
            }
        }
        Port::Notary => {
            // Fresh states of this case's own, through node 2.
            let label = format!("{case:?}");
            let request = notary::request(
                &credentials.notary_signer,
                notary::tx(&label),
                notary::states(&label),
                credentials.tamper_signature,
            );
            let (local, answer) = net.notarise(2, request).await;
            let (outcome, detail) = notary_outcome(answer);
            Attempt {
                outcome,
                detail,
                local: Some(local.to_string()),
            }
        }
    }
}

async fn wait_for_line(capture: &Capture, skip: usize, parts: &[&str]) -> bool {
    let deadline = Instant::now() + LOG_WAIT;
    loop {
        if !capture.find(skip, parts).is_empty() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs every case on `port`; returns what went wrong.
async fn run_port(
    net: &Net,
    capture: &Capture,
    port: Port,
    cases: &[(Case, Credentials)],
) -> Vec<String> {
    let mut failures = Vec::new();
    for (index, (case, credentials)) in cases.iter().enumerate() {
        if index > 0 {
            tokio::time::sleep(CASE_SPACING).await;
        }
        let expected = expected(port, *case);
        let stats_before = net.nodes[0].transport_stats().unwrap();
        let mark = capture.len();
        let attempt = attempt(net, port, *case, credentials).await;
        let mut fail = |what: String| failures.push(format!("{port:?} × {case:?}: {what}"));
        if attempt.outcome != expected.outcome {
            fail(format!(
                "expected {:?}, saw {:?} ({})",
                expected.outcome, attempt.outcome, attempt.detail
            ));
        }
        if expected.line.is_empty() {
            // Served: no refusal line names this attempt's address (the notary logs
            // before it answers).
            let local = attempt
                .local
                .as_deref()
                .expect("a served port logs addresses");
            let refused = capture.find(mark, &["refused", local]);
            if !refused.is_empty() {
                fail(format!("served, yet logged as refused: {refused:#?}"));
            }
            continue;
        }
        let mut line = expected.line.clone();
        if let Some(local) = &attempt.local {
            line.push(local);
        }
        if !wait_for_line(capture, mark, &line).await {
            fail(format!(
                "no log line with {line:?}; lines since: {:#?}",
                capture.lines().get(mark..).unwrap_or_default()
            ));
        }
        if let Some(counter) = expected.counter {
            let after = net.nodes[0].transport_stats().unwrap();
            if counter.read(&after) <= counter.read(&stats_before) {
                fail(format!(
                    "{counter:?} not counted: {stats_before:?} → {after:?}"
                ));
            }
        }
    }
    failures
}

/// What a valid member gets on every port, so that refusals are the identities' doing.
async fn valid_members_are_served(net: &Net) {
    let client = signer(&net.client);
    assert_eq!(net.broadcast(&client, false).await.0, Status::Success);
    net.wait_for_height(2).await;
    assert_eq!(net.deliver(&client, false).await, (1, Status::Success));
    let ca_pem = net.ours.cert_pem().to_string();
    let admin = TlsIdentity::from_pem(&net.admin.tls.cert_pem, net.admin.tls.key_pem());
    let path = format!("/participation/v1/channels/{CHANNEL}");
    let (_, answer) =
        probe::http(net.nodes[0].admin_addr, &ca_pem, Some(&admin), "GET", &path).await;
    assert_eq!(answer.unwrap().0, 200);
    let replica = &net.orderers[1];
    let replica = TlsIdentity::from_pem(&replica.tls.cert_pem, replica.tls.key_pem());
    let (_, served) = probe::h2(net.nodes[0].replica_addr, &ca_pem, Some(&replica)).await;
    assert_eq!(served, Probe::Served);
    let tx = notary::tx("positive control");
    let request = notary::request(&client, tx, notary::states("positive control"), false);
    let (_, answer) = net.notarise(1, request).await;
    let response = answer.unwrap();
    let nodes: Vec<String> = net
        .orderers
        .iter()
        .map(|orderer| orderer.signing.cert_pem.clone())
        .collect();
    orderer::notary_client::verify(&response, &tx, &nodes)
        .unwrap_or_else(|e| panic!("the notary serves a client of ours: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_bad_identity_is_refused_on_every_port_with_a_logged_reason() {
    let capture = orderer::log::capture();
    let mut net = Net::start().await;
    let revoked_at = Instant::now();
    let cases = cases::prepare(&mut net);
    valid_members_are_served(&net).await;
    // Revocations reach the nodes at their next reload of the trusted MSPs.
    let reloaded = revoked_at + 2 * orderer::node::server::MEMBERSHIP_RELOAD_INTERVAL;
    tokio::time::sleep_until((reloaded + Duration::from_millis(500)).into()).await;
    let heights = net.heights();

    // The ports side by side: their lines start differently, so no port's refusals
    // hold back another's in the once-a-second-per-reason log throttle.
    let (broadcast, deliver, admin, replica, notary) = tokio::join!(
        run_port(&net, &capture, Port::Broadcast, &cases),
        run_port(&net, &capture, Port::Deliver, &cases),
        run_port(&net, &capture, Port::Admin, &cases),
        run_port(&net, &capture, Port::Replica, &cases),
        run_port(&net, &capture, Port::Notary, &cases),
    );
    let mut failures = [broadcast, deliver, admin, replica, notary].concat();

    // Claiming our MSP with the other organisation's certificate.
    let impostor = cases::claims_our_msp(&mut net);
    let (status, info) = net.broadcast(&impostor, false).await;
    if status != Status::Forbidden || !info.contains("claims MSP \"OrdererMSP\"") {
        failures.push(format!("impostor: {status:?} {info}"));
    }

    // Nothing was notarised: a valid client spends each case's states through another
    // node. Those of a refused attempt are still unconsumed; those of the one the notary
    // served are gone.
    let client = signer(&net.client);
    for (case, _) in &cases {
        let label = format!("{case:?}");
        let tx = notary::tx(&format!("a valid client after {label}"));
        let request = notary::request(&client, tx, notary::states(&label), false);
        let (_, answer) = net.notarise(0, request).await;
        let (outcome, detail) = notary_outcome(answer);
        let want = match expected(Port::Notary, *case).outcome {
            Outcome::Notarised => Outcome::Notary(Refusal::Conflict),
            _ => Outcome::Notarised,
        };
        if outcome != want {
            failures.push(format!(
                "Notary × {case:?}: a valid client spending the case's states: expected \
                 {want:?}, saw {outcome:?} ({detail})"
            ));
        }
    }

    // Nothing was ordered, nothing removed: past a batch timeout, every node still
    // holds the channel at the height the valid envelope left it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(net.heights(), heights, "something was ordered or removed");
    net.stop().await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// No listener serves a connection without a client certificate from a trusted CA,
/// and every refusal is logged with the client's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_listener_requires_a_client_certificate_from_a_trusted_ca() {
    let capture = orderer::log::capture();
    let mut net = Net::start().await;
    let ca_pem = net.ours.cert_pem().to_string();
    let valid = TlsIdentity::from_pem(&net.client.tls.cert_pem, net.client.tls.key_pem());
    let rogue = net.rogue.issue(ca::Role::Client, "rogue", &[], 30).unwrap();
    let rogue = TlsIdentity::from_pem(&rogue.tls.cert_pem, rogue.tls.key_pem());
    let node = &net.nodes[2];
    let listeners = [
        ("AtomicBroadcast", node.client_addr),
        ("participation API", node.admin_addr),
        ("replica transport", node.replica_addr),
        (
            "notary",
            node.notary_addr.expect("every node serves the notary"),
        ),
    ];
    let mut failures = Vec::new();
    for (site, address) in listeners {
        for (what, identity, reason) in [
            ("no certificate", None, "peer sent no certificates"),
            (
                "a certificate from an unknown CA",
                Some(&rogue),
                "UnknownIssuer",
            ),
        ] {
            let mark = capture.len();
            let (local, refused) = if site == "participation API" {
                let (local, answer) = probe::http(
                    address,
                    &ca_pem,
                    identity,
                    "GET",
                    "/participation/v1/channels",
                )
                .await;
                (local, answer.is_err())
            } else {
                let (local, probe) = probe::h2(address, &ca_pem, identity).await;
                (local, matches!(probe, Probe::Refused(_)))
            };
            if !refused {
                failures.push(format!("{site} served {what}"));
            }
            let local = local.to_string();
            let parts = [site, "refused", &local, "TLS handshake failed", reason];
            if !wait_for_line(&capture, mark, &parts).await {
                failures.push(format!("{site}, {what}: no log line with {parts:?}"));
            }
        }
    }
    // The AtomicBroadcast listener serves a member (the others are shown serving
    // members by the matrix).
    let (_, served) = probe::h2(node.client_addr, &ca_pem, Some(&valid)).await;
    if served != Probe::Served {
        failures.push(format!(
            "AtomicBroadcast did not serve a member: {served:?}"
        ));
    }
    let client = signer(&net.client);
    assert_eq!(net.broadcast(&client, false).await.0, Status::Success);
    net.stop().await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
