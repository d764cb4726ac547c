//! A channel's policies applied to a verified identity: the certificate's NodeOU role in
//! the policies' terms, and a refusal that names the policy, what it admits and who
//! was refused.

use ca::{Role, VerifiedIdentity};
use channel::{ChannelPolicies, MspRole, PolicyName};

/// The MSP role a certificate with this NodeOU holds.
pub fn msp_role(role: Role) -> MspRole {
    match role {
        Role::Orderer => MspRole::Orderer,
        Role::Peer => MspRole::Peer,
        Role::Client => MspRole::Client,
        Role::Admin => MspRole::Admin,
    }
}

/// Whether `identity` satisfies policy `name` of `channel`; the error says why not.
pub fn check(
    policies: &ChannelPolicies,
    name: PolicyName,
    channel: &str,
    identity: &VerifiedIdentity,
) -> Result<(), String> {
    let policy = policies.get(name);
    if policy.admits(&identity.msp_id, msp_role(identity.role)) {
        return Ok(());
    }
    Err(format!(
        "{name} policy of channel {channel} ({policy}) is not satisfied by {}.{} {:?}",
        identity.msp_id, identity.role, identity.common_name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn identity(msp_id: &str, role: Role) -> VerifiedIdentity {
        VerifiedIdentity {
            msp_id: msp_id.into(),
            role,
            common_name: "app1".into(),
            serial: ca::Serial::from_bytes(&[1]),
            not_after: SystemTime::now(),
        }
    }

    #[test]
    fn refusals_name_the_policy_and_the_identity() {
        let policies = ChannelPolicies::for_msp("Org1MSP");
        let writer = identity("Org1MSP", Role::Client);
        assert_eq!(check(&policies, PolicyName::Writers, "c", &writer), Ok(()));
        let orderer = identity("Org1MSP", Role::Orderer);
        let refused = check(&policies, PolicyName::Writers, "c", &orderer).unwrap_err();
        assert_eq!(
            refused,
            "Writers policy of channel c (one of Org1MSP.client, Org1MSP.peer, Org1MSP.admin) \
             is not satisfied by Org1MSP.orderer \"app1\""
        );
        assert_eq!(check(&policies, PolicyName::Readers, "c", &orderer), Ok(()));
        let other = identity("Org2MSP", Role::Admin);
        assert!(
            check(&policies, PolicyName::Admins, "c", &other)
                .unwrap_err()
                .contains("Org2MSP.admin")
        );
    }
}
