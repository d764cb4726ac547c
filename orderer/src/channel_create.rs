//! What `orderer channel create` posts: a genesis block built from batch settings and
//! the channel's Readers, Writers and Admins. A policy not given names the admin's own
//! MSP (the organisation in its TLS certificate, as `ca` issues it): its clients, peers
//! and admins write, its members read, its admins administer.

use channel::{BatchConfig, ChannelPolicies, ChannelPolicy, PolicyName, Principal};
use proto::prost::Message as _;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The options of `orderer channel create` that go into the block.
pub struct CreateOptions {
    pub channel: String,
    pub max_message_count: u32,
    pub batch_timeout: String,
    pub absolute_max_bytes: u32,
    pub preferred_max_bytes: u32,
    pub writers: Vec<Principal>,
    pub readers: Vec<Principal>,
    pub admins: Vec<Principal>,
}

/// The MSP id a certificate (PEM or DER) was issued for: its subject's organisation.
pub fn msp_of_certificate(cert: &[u8]) -> Result<String, String> {
    let der = ca::certificate_der(cert)?;
    let (_, parsed) =
        X509Certificate::from_der(&der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let organisation = parsed
        .subject()
        .iter_organization()
        .next()
        .and_then(|o| o.as_str().ok())
        .map(str::to_string);
    organisation.ok_or_else(|| "the certificate names no organisation (O=)".to_string())
}

/// The policies for `options`, filling in those not given from `default_msp` (asked
/// only if one is missing).
pub fn policies(
    options: &CreateOptions,
    default_msp: impl FnOnce() -> Result<String, String>,
) -> Result<ChannelPolicies, String> {
    let given = [
        (PolicyName::Readers, &options.readers),
        (PolicyName::Writers, &options.writers),
        (PolicyName::Admins, &options.admins),
    ];
    let defaults = if given.iter().any(|(_, principals)| principals.is_empty()) {
        let msp = default_msp().map_err(|e| {
            format!(
                "cannot tell the admin's MSP for the default policies ({e}); pass --readers, \
                 --writers and --admins"
            )
        })?;
        ChannelPolicies::for_msp(&msp)
    } else {
        ChannelPolicies::default()
    };
    let pick = |name: PolicyName, principals: &Vec<Principal>| {
        if principals.is_empty() {
            defaults.get(name).clone()
        } else {
            ChannelPolicy::any_of(principals.iter().cloned())
        }
    };
    Ok(ChannelPolicies {
        readers: pick(given[0].0, given[0].1),
        writers: pick(given[1].0, given[1].1),
        admins: pick(given[2].0, given[2].1),
    })
}

/// The genesis block's bytes.
pub fn genesis(options: &CreateOptions, policies: &ChannelPolicies) -> Result<Vec<u8>, String> {
    channel::genesis::validate_channel_name(&options.channel)?;
    let config = BatchConfig {
        max_message_count: options.max_message_count,
        absolute_max_bytes: options.absolute_max_bytes,
        preferred_max_bytes: options.preferred_max_bytes,
        batch_timeout_ms: channel::genesis::parse_duration_ms(&options.batch_timeout)?,
    };
    config.validate()?;
    let (block, _) = channel::genesis_block_with_policies(&options.channel, &config, policies)?;
    Ok(block.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use channel::MspRole;

    fn options() -> CreateOptions {
        CreateOptions {
            channel: "mychannel".into(),
            max_message_count: 10,
            batch_timeout: "250ms".into(),
            absolute_max_bytes: 1 << 20,
            preferred_max_bytes: 1 << 19,
            writers: Vec::new(),
            readers: Vec::new(),
            admins: Vec::new(),
        }
    }

    #[test]
    fn missing_policies_name_the_admins_msp() {
        let mut options = options();
        options.writers = vec![Principal::new("Org2MSP", MspRole::Client)];
        let policies = policies(&options, || Ok("Org1MSP".into())).unwrap();
        assert_eq!(policies.writers.to_string(), "one of Org2MSP.client");
        assert_eq!(policies.readers.to_string(), "one of Org1MSP.member");
        assert_eq!(policies.admins.to_string(), "one of Org1MSP.admin");
        let block = genesis(&options, &policies).unwrap();
        let joined = channel::genesis::parse_join_block(&block).unwrap();
        assert_eq!(joined.policies, policies);
        assert_eq!(joined.config.batch_timeout_ms, 250);
    }

    #[test]
    fn the_admins_msp_is_asked_only_when_a_policy_is_missing() {
        let mut options = options();
        let error = policies(&options, || Err("no O=".into())).unwrap_err();
        assert!(error.contains("no O="), "{error}");
        let org = |role| vec![Principal::new("Org1MSP", role)];
        options.writers = org(MspRole::Client);
        options.readers = org(MspRole::Member);
        options.admins = org(MspRole::Admin);
        let policies = policies(&options, || panic!("not needed")).unwrap();
        assert_eq!(policies.admins.to_string(), "one of Org1MSP.admin");
    }

    #[test]
    fn the_msp_comes_from_the_certificates_organisation() {
        let mut authority =
            ca::CertificateAuthority::init("ca.org1", "Org1MSP", ca::Algo::Ed25519).unwrap();
        let admin = authority.issue(ca::Role::Admin, "admin", &[], 1).unwrap();
        assert_eq!(
            msp_of_certificate(admin.tls.cert_pem.as_bytes()),
            Ok("Org1MSP".to_string())
        );
        assert!(msp_of_certificate(b"not a certificate").is_err());
    }
}
