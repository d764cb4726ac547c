use std::path::Path;
use std::process::{Command, Output};

fn ca(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ca"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn an_admin_can_issue_verify_and_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();

    let init = ca(
        &[
            "init", "--name", "ca.org1", "--msp-id", "Org1MSP", "--algo", "p256", "--dir",
            "org1-ca",
        ],
        cwd,
    );
    assert!(init.status.success(), "{}", stderr(&init));

    let issue = ca(
        &[
            "issue",
            "--dir",
            "org1-ca",
            "--role",
            "orderer",
            "--name",
            "orderer0",
            "--san",
            "orderer0.example.com",
            "--san",
            "127.0.0.1",
            "--days",
            "30",
            "--out",
            "orderer0",
        ],
        cwd,
    );
    assert!(issue.status.success(), "{}", stderr(&issue));
    assert!(cwd.join("orderer0/msp/keystore/key.pem").is_file());
    assert!(cwd.join("orderer0/tls/server.key").is_file());

    let verify = ca(
        &[
            "verify",
            "--dir",
            "org1-ca",
            "--role",
            "orderer",
            "orderer0/msp/signcerts/cert.pem",
        ],
        cwd,
    );
    assert!(verify.status.success(), "{}", stdout(&verify));
    assert!(stdout(&verify).starts_with("OK: orderer \"orderer0\" of MSP Org1MSP"));

    let wrong_role = ca(
        &[
            "verify",
            "--dir",
            "org1-ca",
            "--role",
            "admin",
            "orderer0/msp/signcerts/cert.pem",
        ],
        cwd,
    );
    assert!(!wrong_role.status.success());
    assert!(stdout(&wrong_role).contains("REJECTED"));

    let list = ca(&["list", "--dir", "org1-ca"], cwd);
    assert!(list.status.success());
    let signing_row = stdout(&list)
        .lines()
        .find(|line| line.contains(" signing "))
        .expect("signing certificate listed")
        .to_owned();
    let serial = signing_row.split_whitespace().next().unwrap().to_owned();

    let revoke = ca(
        &[
            "revoke",
            "--dir",
            "org1-ca",
            "--serial",
            &serial,
            "--reason",
            "key-compromise",
        ],
        cwd,
    );
    assert!(revoke.status.success(), "{}", stderr(&revoke));
    let verify = ca(
        &[
            "verify",
            "--dir",
            "org1-ca",
            "orderer0/msp/signcerts/cert.pem",
        ],
        cwd,
    );
    assert_eq!(verify.status.code(), Some(1));
    assert!(stdout(&verify).contains("revoked"), "{}", stdout(&verify));
    let list = ca(&["list", "--dir", "org1-ca"], cwd);
    assert!(stdout(&list).contains("revoked (key-compromise)"));

    let crl = ca(&["crl", "--dir", "org1-ca"], cwd);
    assert!(stdout(&crl).starts_with("-----BEGIN X509 CRL-----"));
    let crl = ca(&["crl", "--dir", "org1-ca", "--out", "copy.pem"], cwd);
    assert!(crl.status.success());
    assert!(cwd.join("copy.pem").is_file());
}

#[test]
fn mistakes_get_clear_errors_and_a_failing_exit() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let init = [
        "init", "--name", "ca", "--msp-id", "Org1MSP", "--dir", "org1-ca",
    ];
    assert!(ca(&init, cwd).status.success());

    let again = ca(&init, cwd);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );

    let missing = ca(&["list", "--dir", "nowhere"], cwd);
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("ca init"), "{}", stderr(&missing));

    let unknown = ca(&["revoke", "--dir", "org1-ca", "--serial", "abcdef"], cwd);
    assert!(!unknown.status.success());
    assert!(stderr(&unknown).contains("no certificate with serial abcdef"));

    let bad_role = ca(
        &[
            "issue", "--dir", "org1-ca", "--role", "king", "--name", "x", "--out", "x",
        ],
        cwd,
    );
    assert!(!bad_role.status.success());
    assert!(stderr(&bad_role).contains("possible values"));

    let args = [
        "issue", "--dir", "org1-ca", "--role", "peer", "--name", "p", "--out", "p",
    ];
    assert!(ca(&args, cwd).status.success());
    let twice = ca(&args, cwd);
    assert!(!twice.status.success());
    assert!(stderr(&twice).contains("already exists"));
}

#[test]
fn help_walks_a_new_admin_through() {
    let dir = tempfile::tempdir().unwrap();
    let help = ca(&["--help"], dir.path());
    assert!(help.status.success());
    let text = stdout(&help);
    for expected in [
        "Examples:",
        "ca init",
        "ca issue",
        "ca revoke",
        "ca crl",
        "ca verify",
    ] {
        assert!(text.contains(expected), "--help lacks {expected:?}");
    }
}
