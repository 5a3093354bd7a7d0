//! From a directory object (as the mirror holds it) to what the tenant should hold: the
//! provisioning policy maps it, and group members are narrowed to objects the tenant has. Pure.

use std::collections::BTreeSet;

use super::map;
use super::plan::{Desired, Kind};
use crate::directory::DirObject;
use crate::policy::Policy;
use crate::policy::map::MapError;

/// A valid user, as `policy` maps it; `manager_id` is its manager's SCIM id when the manager is
/// provisioned. An error only for an expression that fails for this user (which the rules
/// quarantine as `mapping.error` before anything is planned).
pub fn user(policy: &Policy, o: &DirObject, guid: &str, manager_id: Option<&str>) -> Result<Desired, MapError> {
    let body = crate::policy::map::user(policy, o, manager_id)?;
    Ok(desired(Kind::User, o, guid, body, BTreeSet::new()))
}

/// A group with the members the tenant should list.
pub fn group(policy: &Policy, o: &DirObject, guid: &str, members: BTreeSet<String>) -> Result<Desired, MapError> {
    Ok(desired(Kind::Group, o, guid, crate::policy::map::group(policy, o)?, members))
}

fn desired(kind: Kind, o: &DirObject, guid: &str, body: serde_json::Value, members: BTreeSet<String>) -> Desired {
    let hash = map::content_hash(&body);
    Desired { kind, guid: guid.to_owned(), dn: o.dn.to_string(), body, hash, members }
}

/// A member in the directory, with what decides whether the tenant lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub guid: String,
    pub is_group: bool,
    /// A user or group that passes every rule.
    pub valid: bool,
    /// An invalid user or group the tenant already has: it keeps its memberships (being invalid now is
    /// no evidence that it left a group).
    pub held: bool,
}

/// The members of group `group` the tenant should list: valid users and groups, and held ones
/// in scope (`candidates` are the in-scope members), never the group itself.
pub fn members(group: &str, candidates: impl IntoIterator<Item = Candidate>) -> BTreeSet<String> {
    candidates.into_iter().filter(|c| (c.valid || c.held) && c.guid != group).map(|c| c.guid).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::{Dn, ObjectGuid, ObjectKind};

    fn candidate(guid: &str, is_group: bool, valid: bool, held: bool) -> Candidate {
        Candidate { guid: guid.into(), is_group, valid, held }
    }

    #[test]
    fn members_are_groups_valid_users_and_held_users_only() {
        let got = members(
            "g",
            [
                candidate("valid", false, true, false),
                candidate("invalid", false, false, false),
                candidate("held", false, false, true),
                candidate("nested", true, true, false),
                candidate("bad-name", true, false, false),
                candidate("held-group", true, false, true),
                candidate("g", true, true, false),
            ],
        );
        assert_eq!(got, ["held", "held-group", "nested", "valid"].iter().map(|s| s.to_string()).collect());
    }

    #[test]
    fn a_user_maps_with_its_manager_id() {
        let o = DirObject {
            kind: ObjectKind::User,
            dn: Dn::parse("CN=w,OU=P,DC=x,DC=y").unwrap(),
            guid: Some(ObjectGuid([2; 16])),
            user_principal_name: Some("w@x.y".into()),
            given_name: Some("W".into()),
            sn: Some("S".into()),
            mail: Some("w@x.y".into()),
            ..Default::default()
        };
        let default = Policy::default_policy();
        let d = user(&default, &o, "g2", Some("scim-boss")).unwrap();
        assert_eq!(d.body[map::ENTERPRISE_SCHEMA]["manager"]["value"], "scim-boss");
        assert_eq!(d.hash, map::content_hash(&d.body));
        assert_ne!(user(&default, &o, "g2", None).unwrap().hash, d.hash);
        // A configured policy's mapping error is the user's, named by target.
        let config = toml::from_str(r#"user."enterprise.costCenter" = 'Item([proxyAddresses], 1)'"#).unwrap();
        let mut policy = Policy::compile("P", &config).unwrap();
        let ok = user(&policy, &o, "g2", None).unwrap();
        assert!(ok.body.get(map::ENTERPRISE_SCHEMA).is_none(), "an absent value is left out");
        policy = Policy::compile("P", &toml::from_str(r#"user."title" = '[otherMobile]'"#).unwrap()).unwrap();
        let mut many = o.clone();
        many.extra.insert("othermobile", &["1", "2"]);
        let e = user(&policy, &many, "g2", None).unwrap_err();
        assert_eq!(e.target, "title");
        assert!(e.message.contains("gives 2 values"), "{e}");
    }
}
