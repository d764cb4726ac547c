//! Names of the files in Fabric's MSP folder layout, shared by the writer and the loader.

pub(crate) const MSP_DIR: &str = "msp";
pub(crate) const TLS_DIR: &str = "tls";
pub(crate) const CACERTS: &str = "cacerts";
pub(crate) const TLSCACERTS: &str = "tlscacerts";
pub(crate) const SIGNCERTS: &str = "signcerts";
pub(crate) const KEYSTORE: &str = "keystore";
pub(crate) const CRLS: &str = "crls";
pub(crate) const CA_CERT_FILE: &str = "ca.pem";
pub(crate) const SIGN_CERT_FILE: &str = "cert.pem";
pub(crate) const SIGN_KEY_FILE: &str = "key.pem";
pub(crate) const CONFIG_FILE: &str = "config.yaml";
pub(crate) const TLS_CA_FILE: &str = "ca.crt";
pub(crate) const TLS_CERT_FILE: &str = "server.crt";
pub(crate) const TLS_KEY_FILE: &str = "server.key";

/// Fabric's `config.yaml` enabling NodeOUs: an identity's role is the OU it carries, and each
/// OU identifier names the CA certificate (relative to the MSP folder) it is valid under. This
/// is the shape Fabric's `cryptogen` writes, so Fabric peers accept the folder as is.
pub(crate) fn node_ou_config() -> String {
    let ca = format!("{CACERTS}/{CA_CERT_FILE}");
    let mut yaml = String::from("NodeOUs:\n  Enable: true\n");
    for (key, ou) in [
        ("ClientOUIdentifier", "client"),
        ("PeerOUIdentifier", "peer"),
        ("AdminOUIdentifier", "admin"),
        ("OrdererOUIdentifier", "orderer"),
    ] {
        yaml.push_str(&format!(
            "  {key}:\n    Certificate: {ca}\n    OrganizationalUnitIdentifier: {ou}\n"
        ));
    }
    yaml
}
