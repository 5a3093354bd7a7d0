//! From a directory object (as the mirror holds it) to what the tenant should hold: the
//! provisioning policy maps it, and group members are narrowed to objects the tenant has. Pure.

use std::collections::BTreeSet;

use super::map;
use super::plan::{Desired, Kind};
use crate::directory::DirObject;

/// A valid user; `manager_id` is its manager's SCIM id when the manager is provisioned.
pub fn user(o: &DirObject, guid: &str, manager_id: Option<&str>) -> Desired {
    desired(Kind::User, o, guid, map::user(o, manager_id), BTreeSet::new())
}

/// A group with the members the tenant should list.
pub fn group(o: &DirObject, guid: &str, members: BTreeSet<String>) -> Desired {
    desired(Kind::Group, o, guid, map::group(o), members)
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
        let d = user(&o, "g2", Some("scim-boss"));
        assert_eq!(d.body[map::ENTERPRISE_SCHEMA]["manager"]["value"], "scim-boss");
        assert_eq!(d.hash, map::content_hash(&d.body));
        assert_ne!(user(&o, "g2", None).hash, d.hash);
    }
}
