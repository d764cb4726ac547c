//! A channel's Readers, Writers and Admins policies: who may pull its blocks, broadcast
//! to it and administer it. In the config block they are policies of the channel group,
//! in Fabric's encoding: `SIGNATURE` policies "1 out of N signed by" MSP principals (an
//! MSP id and a role), which is what configtxgen writes for `OR('Org1MSP.client', ...)`.
//!
//! Synod authorises every request by one identity (an envelope's creator, an admin's
//! TLS certificate), so a policy is read as a list of principals any one of which
//! suffices. Rules that need several signatures cannot be met that way and are refused
//! with the reason rather than approximated.
//!
//! A config block without any policy in its channel group (genesis blocks written before
//! channels had policies) gets [`ChannelPolicies::default`]: writers are clients, peers
//! and admins of any trusted MSP, readers any member, admins any admin.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use proto::common::{
    ConfigGroup, ConfigPolicy, ImplicitMetaPolicy, MspPrincipal, MspRole as MspRolePb, Policy,
    SignaturePolicy, SignaturePolicyEnvelope, implicit_meta_policy, msp_principal, msp_role,
    policy, signature_policy,
};
use proto::prost::Message;

/// The policy that may change a config element, as Fabric's channels name it.
const ADMINS_MOD_POLICY: &str = "Admins";

/// A role within an MSP, with Fabric's `MSPRole.MSPRoleType` values. With NodeOUs (as
/// the `ca` tool issues certificates) a member's role is its certificate's OU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MspRole {
    /// Any member of the MSP, whatever its OU.
    Member,
    Admin,
    Client,
    Peer,
    Orderer,
}

impl MspRole {
    pub const ALL: [MspRole; 5] = [
        MspRole::Member,
        MspRole::Admin,
        MspRole::Client,
        MspRole::Peer,
        MspRole::Orderer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MspRole::Member => "member",
            MspRole::Admin => "admin",
            MspRole::Client => "client",
            MspRole::Peer => "peer",
            MspRole::Orderer => "orderer",
        }
    }

    fn to_pb(self) -> msp_role::MspRoleType {
        match self {
            MspRole::Member => msp_role::MspRoleType::Member,
            MspRole::Admin => msp_role::MspRoleType::Admin,
            MspRole::Client => msp_role::MspRoleType::Client,
            MspRole::Peer => msp_role::MspRoleType::Peer,
            MspRole::Orderer => msp_role::MspRoleType::Orderer,
        }
    }

    fn from_pb(value: i32) -> Option<MspRole> {
        Some(match msp_role::MspRoleType::try_from(value).ok()? {
            msp_role::MspRoleType::Member => MspRole::Member,
            msp_role::MspRoleType::Admin => MspRole::Admin,
            msp_role::MspRoleType::Client => MspRole::Client,
            msp_role::MspRoleType::Peer => MspRole::Peer,
            msp_role::MspRoleType::Orderer => MspRole::Orderer,
        })
    }
}

impl fmt::Display for MspRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MspRole {
    type Err = String;

    fn from_str(text: &str) -> Result<MspRole, String> {
        MspRole::ALL
            .into_iter()
            .find(|role| role.as_str() == text.to_ascii_lowercase())
            .ok_or_else(|| {
                format!("unknown role {text:?}: expected member, admin, client, peer or orderer")
            })
    }
}

/// One MSP role a policy names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Principal {
    /// `None`: any MSP the node trusts. Only the defaults use it; it has no encoding in
    /// a config block.
    pub msp_id: Option<String>,
    pub role: MspRole,
}

impl Principal {
    pub fn new(msp_id: impl Into<String>, role: MspRole) -> Principal {
        Principal {
            msp_id: Some(msp_id.into()),
            role,
        }
    }

    fn any_msp(role: MspRole) -> Principal {
        Principal { msp_id: None, role }
    }

    /// Whether a verified member of `msp_id` in `role` (never `Member`: a certificate
    /// has a definite role) is this principal.
    pub fn admits(&self, msp_id: &str, role: MspRole) -> bool {
        let msp_matches = self.msp_id.as_deref().is_none_or(|id| id == msp_id);
        msp_matches && (self.role == MspRole::Member || self.role == role)
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.msp_id.as_deref().unwrap_or("*"), self.role)
    }
}

/// `MSPID:role`, as `orderer channel create --writers` takes it.
impl FromStr for Principal {
    type Err = String;

    fn from_str(text: &str) -> Result<Principal, String> {
        let (msp_id, role) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?} is not MSPID:role (e.g. Org1MSP:client)"))?;
        validate_msp_id(msp_id)?;
        Ok(Principal::new(msp_id, role.parse()?))
    }
}

/// An MSP id must be non-empty and printable; it is compared byte for byte.
fn validate_msp_id(msp_id: &str) -> Result<(), String> {
    if msp_id.is_empty() || msp_id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "MSP id {msp_id:?} must be non-empty, without spaces or control characters"
        ));
    }
    Ok(())
}

/// Any one of its principals satisfies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelPolicy {
    principals: Vec<Principal>,
}

impl ChannelPolicy {
    /// The principals in their order, without repeats.
    pub fn any_of(principals: impl IntoIterator<Item = Principal>) -> ChannelPolicy {
        let mut unique: Vec<Principal> = Vec::new();
        for principal in principals {
            if !unique.contains(&principal) {
                unique.push(principal);
            }
        }
        ChannelPolicy { principals: unique }
    }

    pub fn principals(&self) -> &[Principal] {
        &self.principals
    }

    pub fn admits(&self, msp_id: &str, role: MspRole) -> bool {
        self.principals.iter().any(|p| p.admits(msp_id, role))
    }
}

impl fmt::Display for ChannelPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.principals.iter().map(Principal::to_string).collect();
        write!(f, "one of {}", names.join(", "))
    }
}

/// Which of a channel's policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyName {
    Readers,
    Writers,
    Admins,
}

impl PolicyName {
    pub const ALL: [PolicyName; 3] = [PolicyName::Readers, PolicyName::Writers, PolicyName::Admins];

    /// The key in the channel group's policies, as in Fabric.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyName::Readers => "Readers",
            PolicyName::Writers => "Writers",
            PolicyName::Admins => "Admins",
        }
    }
}

impl fmt::Display for PolicyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who may read, write and administer one channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelPolicies {
    pub readers: ChannelPolicy,
    pub writers: ChannelPolicy,
    pub admins: ChannelPolicy,
}

impl Default for ChannelPolicies {
    /// What a channel whose config carries no policies gets: the rules Synod applied
    /// before channels had policies.
    fn default() -> ChannelPolicies {
        let any =
            |roles: &[MspRole]| ChannelPolicy::any_of(roles.iter().map(|r| Principal::any_msp(*r)));
        ChannelPolicies {
            readers: any(&[MspRole::Member]),
            writers: any(&[MspRole::Client, MspRole::Peer, MspRole::Admin]),
            admins: any(&[MspRole::Admin]),
        }
    }
}

impl ChannelPolicies {
    /// The usual policies for a channel of one organisation: its clients, peers and
    /// admins write, its members read, its admins administer.
    pub fn for_msp(msp_id: &str) -> ChannelPolicies {
        let of = |roles: &[MspRole]| {
            ChannelPolicy::any_of(roles.iter().map(|r| Principal::new(msp_id, *r)))
        };
        ChannelPolicies {
            readers: of(&[MspRole::Member]),
            writers: of(&[MspRole::Client, MspRole::Peer, MspRole::Admin]),
            admins: of(&[MspRole::Admin]),
        }
    }

    pub fn get(&self, name: PolicyName) -> &ChannelPolicy {
        match name {
            PolicyName::Readers => &self.readers,
            PolicyName::Writers => &self.writers,
            PolicyName::Admins => &self.admins,
        }
    }
}

/// The channel group's `policies` for `policies`: each a `SIGNATURE` policy "1 out of N
/// signed by" its principals, modified by `Admins`. Every principal must name its MSP
/// and every policy at least one principal.
pub fn config_policies(
    policies: &ChannelPolicies,
) -> Result<BTreeMap<String, ConfigPolicy>, String> {
    let mut out = BTreeMap::new();
    for name in PolicyName::ALL {
        let policy = policies.get(name);
        if policy.principals.is_empty() {
            return Err(format!("the {name} policy names no principal"));
        }
        let mut identities = Vec::new();
        for principal in &policy.principals {
            let msp_id = principal
                .msp_id
                .as_deref()
                .ok_or_else(|| format!("the {name} policy must name the MSP of {principal}"))?;
            validate_msp_id(msp_id).map_err(|e| format!("the {name} policy: {e}"))?;
            identities.push(MspPrincipal {
                principal_classification: msp_principal::Classification::Role as i32,
                principal: MspRolePb {
                    msp_identifier: msp_id.to_string(),
                    role: principal.role.to_pb() as i32,
                }
                .encode_to_vec(),
            });
        }
        let rules = (0..identities.len() as i32)
            .map(|index| SignaturePolicy {
                r#type: Some(signature_policy::Type::SignedBy(index)),
            })
            .collect();
        let envelope = SignaturePolicyEnvelope {
            version: 0,
            rule: Some(SignaturePolicy {
                r#type: Some(signature_policy::Type::NOutOf(signature_policy::NOutOf {
                    n: 1,
                    rules,
                })),
            }),
            identities,
        };
        out.insert(
            name.as_str().to_string(),
            ConfigPolicy {
                version: 0,
                policy: Some(Policy {
                    r#type: policy::PolicyType::Signature as i32,
                    value: envelope.encode_to_vec(),
                }),
                mod_policy: ADMINS_MOD_POLICY.into(),
            },
        );
    }
    Ok(out)
}

/// The policies of a channel group: [`ChannelPolicies::default`] if it has none at all,
/// else its Readers, Writers and Admins, each of which must be present and met by one
/// identity. Deterministic: the same group gives the same principals in the same order.
pub fn channel_policies(channel_group: &ConfigGroup) -> Result<ChannelPolicies, String> {
    if channel_group.policies.is_empty() {
        return Ok(ChannelPolicies::default());
    }
    let resolve = |name: PolicyName| -> Result<ChannelPolicy, String> {
        let principals = resolve(channel_group, name.as_str(), "the channel group")?
            .ok_or_else(|| format!("the channel group has policies but no {name} policy"))?;
        if principals.is_empty() {
            return Err(format!(
                "the {name} policy names no principal, so nobody could satisfy it"
            ));
        }
        Ok(ChannelPolicy::any_of(principals))
    };
    Ok(ChannelPolicies {
        readers: resolve(PolicyName::Readers)?,
        writers: resolve(PolicyName::Writers)?,
        admins: resolve(PolicyName::Admins)?,
    })
}

/// The principals any one of which satisfies policy `name` of `group` (`None` if the
/// group has no such policy).
fn resolve(group: &ConfigGroup, name: &str, path: &str) -> Result<Option<Vec<Principal>>, String> {
    let Some(config_policy) = group.policies.get(name) else {
        return Ok(None);
    };
    let what = format!("policy {name} of {path}");
    let policy = config_policy
        .policy
        .as_ref()
        .ok_or_else(|| format!("{what} is empty"))?;
    match policy::PolicyType::try_from(policy.r#type) {
        Ok(policy::PolicyType::Signature) => signature_principals(&policy.value, &what).map(Some),
        Ok(policy::PolicyType::ImplicitMeta) => {
            implicit_meta_principals(group, &policy.value, &what).map(Some)
        }
        _ => Err(format!(
            "{what} has type {}; Synod reads SIGNATURE and IMPLICIT_META policies",
            policy.r#type
        )),
    }
}

/// An implicit-meta rule over the sub-groups' policies. ANY is the union of what each
/// sub-policy admits. ALL and MAJORITY over more than one sub-group need signatures
/// from several of them, which one identity cannot give.
fn implicit_meta_principals(
    group: &ConfigGroup,
    value: &[u8],
    what: &str,
) -> Result<Vec<Principal>, String> {
    let meta = ImplicitMetaPolicy::decode(value)
        .map_err(|e| format!("{what}: malformed ImplicitMetaPolicy: {e}"))?;
    let rule = implicit_meta_policy::Rule::try_from(meta.rule)
        .map_err(|_| format!("{what}: unknown implicit-meta rule {}", meta.rule))?;
    if group.groups.is_empty() {
        // Fabric satisfies ANY and ALL of nothing without a signature.
        return Err(format!(
            "{what}: {} of the sub-groups' {} policies, and there are no sub-groups: it \
             would admit anyone or no one",
            rule.as_str_name(),
            meta.sub_policy
        ));
    }
    if rule != implicit_meta_policy::Rule::Any && group.groups.len() > 1 {
        return Err(format!(
            "{what}: {} of the {} sub-groups' {} policies needs signatures from several of \
             them, and Synod authorises each request by one identity; use a SIGNATURE \
             policy such as OR('Org1MSP.admin', 'Org2MSP.admin') instead",
            rule.as_str_name(),
            group.groups.len(),
            meta.sub_policy
        ));
    }
    let mut principals = Vec::new();
    for (sub_name, sub_group) in &group.groups {
        let path = format!("group {sub_name}");
        match resolve(sub_group, &meta.sub_policy, &path)? {
            Some(found) => principals.extend(found),
            // ANY skips a sub-group without the policy; for ALL or MAJORITY of one it
            // is a rule nobody can meet.
            None if rule == implicit_meta_policy::Rule::Any => {}
            None => {
                return Err(format!(
                    "{what}: group {sub_name} has no {} policy",
                    meta.sub_policy
                ));
            }
        }
    }
    Ok(principals)
}

/// A signature policy whose rule is met by one signature: `signed_by`, or "1 out of"
/// rules that are themselves such rules (Fabric's OR).
fn signature_principals(value: &[u8], what: &str) -> Result<Vec<Principal>, String> {
    let envelope = SignaturePolicyEnvelope::decode(value)
        .map_err(|e| format!("{what}: malformed SignaturePolicyEnvelope: {e}"))?;
    let identities = envelope
        .identities
        .iter()
        .enumerate()
        .map(|(index, identity)| {
            principal_of(identity).map_err(|e| format!("{what}: identity {index}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let rule = envelope
        .rule
        .as_ref()
        .ok_or_else(|| format!("{what} has no rule"))?;
    let mut indices = Vec::new();
    one_signature_rule(rule, &mut indices).map_err(|e| format!("{what}: {e}"))?;
    indices
        .into_iter()
        .map(|index| {
            usize::try_from(index)
                .ok()
                .and_then(|i| identities.get(i))
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "{what}: the rule names identity {index} of {}",
                        identities.len()
                    )
                })
        })
        .collect()
}

/// Collects the identity indices of a rule met by any one of them.
fn one_signature_rule(rule: &SignaturePolicy, indices: &mut Vec<i32>) -> Result<(), String> {
    match &rule.r#type {
        Some(signature_policy::Type::SignedBy(index)) => {
            indices.push(*index);
            Ok(())
        }
        Some(signature_policy::Type::NOutOf(n_out_of)) => {
            let count = n_out_of.rules.len();
            match n_out_of.n {
                1 => n_out_of
                    .rules
                    .iter()
                    .try_for_each(|rule| one_signature_rule(rule, indices)),
                n if n < 1 => Err(format!(
                    "a rule '{n} out of {count}' is met without any signature"
                )),
                n => Err(format!(
                    "a rule '{n} out of {count}' needs {n} signatures, and Synod authorises \
                     each request by one identity; only '1 out of N' (OR) rules are supported"
                )),
            }
        }
        None => Err("a rule is empty".into()),
    }
}

fn principal_of(identity: &MspPrincipal) -> Result<Principal, String> {
    if identity.principal_classification != msp_principal::Classification::Role as i32 {
        let name = msp_principal::Classification::try_from(identity.principal_classification)
            .map(|c| c.as_str_name().to_string())
            .unwrap_or_else(|_| identity.principal_classification.to_string());
        return Err(format!(
            "principal classification {name} is not supported (only ROLE: an MSP id and a role)"
        ));
    }
    let role = MspRolePb::decode(&identity.principal[..])
        .map_err(|e| format!("malformed MSPRole: {e}"))?;
    validate_msp_id(&role.msp_identifier)?;
    let kind =
        MspRole::from_pb(role.role).ok_or_else(|| format!("unknown MSP role {}", role.role))?;
    Ok(Principal::new(role.msp_identifier, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group_with(policies: BTreeMap<String, ConfigPolicy>) -> ConfigGroup {
        ConfigGroup {
            policies,
            ..Default::default()
        }
    }

    fn signature(rule: SignaturePolicy, identities: &[(&str, MspRole)]) -> ConfigPolicy {
        let identities = identities
            .iter()
            .map(|(msp, role)| MspPrincipal {
                principal_classification: 0,
                principal: MspRolePb {
                    msp_identifier: msp.to_string(),
                    role: role.to_pb() as i32,
                }
                .encode_to_vec(),
            })
            .collect();
        ConfigPolicy {
            policy: Some(Policy {
                r#type: policy::PolicyType::Signature as i32,
                value: SignaturePolicyEnvelope {
                    version: 0,
                    rule: Some(rule),
                    identities,
                }
                .encode_to_vec(),
            }),
            ..Default::default()
        }
    }

    fn signed_by(index: i32) -> SignaturePolicy {
        SignaturePolicy {
            r#type: Some(signature_policy::Type::SignedBy(index)),
        }
    }

    fn n_out_of(n: i32, rules: Vec<SignaturePolicy>) -> SignaturePolicy {
        SignaturePolicy {
            r#type: Some(signature_policy::Type::NOutOf(signature_policy::NOutOf {
                n,
                rules,
            })),
        }
    }

    fn meta(sub_policy: &str, rule: implicit_meta_policy::Rule) -> ConfigPolicy {
        ConfigPolicy {
            policy: Some(Policy {
                r#type: policy::PolicyType::ImplicitMeta as i32,
                value: ImplicitMetaPolicy {
                    sub_policy: sub_policy.into(),
                    rule: rule as i32,
                }
                .encode_to_vec(),
            }),
            ..Default::default()
        }
    }

    fn explicit() -> ChannelPolicies {
        ChannelPolicies {
            readers: ChannelPolicy::any_of([
                Principal::new("OrgA", MspRole::Member),
                Principal::new("OrgB", MspRole::Peer),
            ]),
            writers: ChannelPolicy::any_of([Principal::new("OrgA", MspRole::Client)]),
            admins: ChannelPolicy::any_of([Principal::new("OrgA", MspRole::Admin)]),
        }
    }

    #[test]
    fn policies_round_trip_through_the_fabric_encoding() {
        let policies = explicit();
        let encoded = config_policies(&policies).unwrap();
        assert_eq!(
            encoded.keys().collect::<Vec<_>>(),
            ["Admins", "Readers", "Writers"]
        );
        let group = group_with(encoded.clone());
        assert_eq!(channel_policies(&group), Ok(policies.clone()));
        // Byte-identical on every call: replicas hash the block.
        assert_eq!(config_policies(&policies).unwrap(), encoded);
        // "1 out of N signed by" in Fabric's terms.
        let writers = encoded["Writers"].policy.as_ref().unwrap();
        let envelope = SignaturePolicyEnvelope::decode(&writers.value[..]).unwrap();
        assert_eq!(envelope.rule, Some(n_out_of(1, vec![signed_by(0)])));
        assert_eq!(encoded["Writers"].mod_policy, "Admins");
    }

    #[test]
    fn a_group_without_policies_gets_the_defaults() {
        let defaults = channel_policies(&ConfigGroup::default()).unwrap();
        assert_eq!(defaults, ChannelPolicies::default());
        assert!(defaults.writers.admits("AnyMSP", MspRole::Client));
        assert!(!defaults.writers.admits("AnyMSP", MspRole::Orderer));
        assert!(defaults.readers.admits("AnyMSP", MspRole::Orderer));
        assert!(defaults.admins.admits("AnyMSP", MspRole::Admin));
        assert!(!defaults.admins.admits("AnyMSP", MspRole::Peer));
        assert!(
            config_policies(&defaults)
                .unwrap_err()
                .contains("must name the MSP"),
            "the defaults have no encoding"
        );
    }

    #[test]
    fn principals_match_msp_and_role_and_member_matches_every_role() {
        let policies = explicit();
        assert!(policies.readers.admits("OrgA", MspRole::Orderer));
        assert!(policies.readers.admits("OrgB", MspRole::Peer));
        assert!(!policies.readers.admits("OrgB", MspRole::Client));
        assert!(policies.writers.admits("OrgA", MspRole::Client));
        assert!(!policies.writers.admits("OrgB", MspRole::Client));
        assert!(!policies.writers.admits("OrgA", MspRole::Admin));
        assert_eq!(
            policies.readers.to_string(),
            "one of OrgA.member, OrgB.peer"
        );
        assert_eq!(
            ChannelPolicies::default().writers.to_string(),
            "one of *.client, *.peer, *.admin"
        );
    }

    #[test]
    fn principals_parse_from_msp_and_role() {
        assert_eq!(
            "Org1MSP:client".parse::<Principal>(),
            Ok(Principal::new("Org1MSP", MspRole::Client))
        );
        assert_eq!(
            "Org1MSP:ORDERER".parse::<Principal>(),
            Ok(Principal::new("Org1MSP", MspRole::Orderer))
        );
        assert!(
            "Org1MSP"
                .parse::<Principal>()
                .unwrap_err()
                .contains("MSPID:role")
        );
        assert!(":client".parse::<Principal>().is_err());
        assert!(
            "Org1MSP:boss"
                .parse::<Principal>()
                .unwrap_err()
                .contains("unknown role")
        );
    }

    #[test]
    fn nested_ors_flatten_in_order_without_repeats() {
        let rule = n_out_of(
            1,
            vec![signed_by(1), n_out_of(1, vec![signed_by(0), signed_by(1)])],
        );
        let policy = signature(rule, &[("OrgA", MspRole::Admin), ("OrgB", MspRole::Client)]);
        let group = group_with(BTreeMap::from([
            ("Readers".to_string(), policy.clone()),
            ("Writers".to_string(), policy.clone()),
            ("Admins".to_string(), policy),
        ]));
        let parsed = channel_policies(&group).unwrap();
        assert_eq!(
            parsed.writers.principals(),
            [
                Principal::new("OrgB", MspRole::Client),
                Principal::new("OrgA", MspRole::Admin)
            ]
        );
    }

    /// What configtxgen writes: ANY over sub-groups, down to the organisations'
    /// signature policies.
    #[test]
    fn implicit_meta_any_unites_the_sub_groups_policies() {
        let org = |msp: &str| {
            let readers = signature(
                n_out_of(1, vec![signed_by(0), signed_by(1)]),
                &[(msp, MspRole::Peer), (msp, MspRole::Client)],
            );
            let admins = signature(signed_by(0), &[(msp, MspRole::Admin)]);
            group_with(BTreeMap::from([
                ("Readers".to_string(), readers.clone()),
                ("Writers".to_string(), readers),
                ("Admins".to_string(), admins),
            ]))
        };
        let any = |name: &str| meta(name, implicit_meta_policy::Rule::Any);
        let application = ConfigGroup {
            groups: BTreeMap::from([
                ("Org2".to_string(), org("Org2MSP")),
                ("Org1".to_string(), org("Org1MSP")),
            ]),
            policies: BTreeMap::from([
                ("Readers".to_string(), any("Readers")),
                ("Writers".to_string(), any("Writers")),
                (
                    "Admins".to_string(),
                    meta("Admins", implicit_meta_policy::Rule::Majority),
                ),
            ]),
            ..Default::default()
        };
        let mut channel = ConfigGroup {
            groups: BTreeMap::from([("Application".to_string(), application)]),
            policies: BTreeMap::from([
                ("Readers".to_string(), any("Readers")),
                ("Writers".to_string(), any("Writers")),
                ("Admins".to_string(), any("Admins")),
            ]),
            ..Default::default()
        };
        // MAJORITY of two organisations' admins: two signatures.
        let error = channel_policies(&channel).unwrap_err();
        assert!(error.contains("MAJORITY of the 2 sub-groups"), "{error}");
        channel
            .groups
            .get_mut("Application")
            .unwrap()
            .policies
            .insert("Admins".into(), any("Admins"));
        let parsed = channel_policies(&channel).unwrap();
        // Sub-groups in name order.
        assert_eq!(
            parsed.readers.to_string(),
            "one of Org1MSP.peer, Org1MSP.client, Org2MSP.peer, Org2MSP.client"
        );
        assert_eq!(
            parsed.admins.to_string(),
            "one of Org1MSP.admin, Org2MSP.admin"
        );
    }

    #[test]
    fn policies_one_identity_cannot_meet_are_refused_with_the_reason() {
        let refused = |policy: ConfigPolicy| {
            let mut policies = config_policies(&explicit()).unwrap();
            policies.insert("Writers".into(), policy);
            channel_policies(&group_with(policies)).unwrap_err()
        };
        let two = &[("OrgA", MspRole::Client), ("OrgB", MspRole::Client)];
        let error = refused(signature(
            n_out_of(2, vec![signed_by(0), signed_by(1)]),
            two,
        ));
        assert!(error.contains("'2 out of 2' needs 2 signatures"), "{error}");
        assert!(
            error.contains("policy Writers of the channel group"),
            "{error}"
        );
        let error = refused(signature(n_out_of(0, vec![signed_by(0)]), two));
        assert!(error.contains("without any signature"), "{error}");
        let error = refused(signature(signed_by(5), two));
        assert!(error.contains("identity 5 of 2"), "{error}");
        let error = refused(signature(n_out_of(1, vec![]), two));
        assert!(error.contains("names no principal"), "{error}");
        let error = refused(meta("Writers", implicit_meta_policy::Rule::Any));
        assert!(error.contains("no sub-groups"), "{error}");
        let mut unknown = signature(signed_by(0), two);
        unknown.policy.as_mut().unwrap().r#type = policy::PolicyType::Msp as i32;
        assert!(refused(unknown).contains("has type 2"));
        let mut garbage = signature(signed_by(0), two);
        garbage.policy.as_mut().unwrap().value = vec![0xff, 0xff];
        assert!(refused(garbage).contains("malformed SignaturePolicyEnvelope"));

        let mut by_identity = signature(signed_by(0), two);
        let mut envelope =
            SignaturePolicyEnvelope::decode(&by_identity.policy.as_ref().unwrap().value[..])
                .unwrap();
        envelope.identities[0].principal_classification =
            msp_principal::Classification::Identity as i32;
        by_identity.policy.as_mut().unwrap().value = envelope.encode_to_vec();
        assert!(refused(by_identity).contains("IDENTITY is not supported"));

        let mut missing = config_policies(&explicit()).unwrap();
        missing.remove("Admins");
        assert!(
            channel_policies(&group_with(missing))
                .unwrap_err()
                .contains("no Admins policy")
        );
    }
}
