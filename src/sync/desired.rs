//! From what the directory holds (in scope) to what the tenant should hold: validation decides
//! who is provisioned and who is quarantined, the provisioning policy maps each object, and
//! group members and managers are resolved to objects that are themselves provisioned. Pure.

use std::collections::{BTreeSet, HashMap};

use super::map;
use super::plan::{Desired, Kind, Quarantined};
use super::state::{Anchor, AnchorState, Reason};
use super::validate::Validation;
use crate::directory::{DirObject, ObjectKind};

#[derive(Debug, Default)]
pub struct DesiredState {
    pub objects: Vec<Desired>,
    pub quarantined: Vec<Quarantined>,
    /// Users whose manager is provisioned in this same run: their manager reference is set by a
    /// second pass once the manager has a SCIM id.
    pub manager_pending: Vec<String>,
}

/// `objects` are the users and groups in scope; `validation` is the validator's verdict on the
/// users; `ids` maps objectGUIDs to SCIM ids known now; `anchors` is the state store's view.
pub fn build(
    objects: &[DirObject],
    validation: &Validation,
    ids: &HashMap<String, String>,
    anchors: &HashMap<String, Anchor>,
) -> DesiredState {
    let problems: HashMap<&str, &[super::validate::Problem]> =
        validation.users.iter().map(|u| (u.identity.dn.as_str(), u.problems.as_slice())).collect();
    let mut state = DesiredState::default();
    let mut guid_of_dn: HashMap<String, String> = HashMap::new();
    let mut valid_users: BTreeSet<String> = BTreeSet::new();
    for o in objects {
        let dn = o.dn.to_string();
        let Some(guid) = o.guid.map(|g| g.to_string()) else {
            if o.kind == ObjectKind::User {
                state.quarantined.push(Quarantined {
                    guid: format!("dn:{dn}"),
                    dn,
                    reasons: vec![Reason {
                        rule: "objectGUID.required".into(),
                        message: "the entry has no objectGUID, the anchor a sync needs (export it with objectGUID)"
                            .into(),
                    }],
                });
            }
            continue;
        };
        guid_of_dn.insert(o.dn.normalized(), guid.clone());
        if o.kind == ObjectKind::User {
            match problems.get(dn.as_str()) {
                Some(found) => state.quarantined.push(Quarantined {
                    guid,
                    dn,
                    reasons: found
                        .iter()
                        .map(|p| Reason { rule: p.rule.id().to_owned(), message: p.message.clone() })
                        .collect(),
                }),
                None => {
                    valid_users.insert(guid);
                }
            }
        }
    }
    let groups: BTreeSet<&str> = objects
        .iter()
        .filter(|o| o.kind == ObjectKind::Group)
        .filter_map(|o| guid_of_dn.get(&o.dn.normalized()).map(String::as_str))
        .collect();
    // A quarantined user already in the tenant stays a member of its groups.
    let held: BTreeSet<&str> = state
        .quarantined
        .iter()
        .map(|q| q.guid.as_str())
        .filter(|g| anchors.get(*g).is_some_and(|a| a.state == AnchorState::Active))
        .collect();

    for o in objects {
        let Some(guid) = guid_of_dn.get(&o.dn.normalized()).cloned() else { continue };
        let (kind, body, members) = match o.kind {
            ObjectKind::User if valid_users.contains(&guid) => {
                let manager = o
                    .manager
                    .as_ref()
                    .and_then(|m| guid_of_dn.get(&m.normalized()))
                    .filter(|m| valid_users.contains(*m));
                let manager_id = manager.and_then(|m| ids.get(m));
                if manager.is_some() && manager_id.is_none() {
                    state.manager_pending.push(guid.clone());
                }
                (Kind::User, map::user(o, manager_id.map(String::as_str)), BTreeSet::new())
            }
            ObjectKind::User => continue,
            ObjectKind::Group => {
                let members = o
                    .members
                    .iter()
                    .filter_map(|m| guid_of_dn.get(&m.normalized()))
                    .filter(|g| valid_users.contains(*g) || groups.contains(g.as_str()) || held.contains(g.as_str()))
                    .filter(|g| **g != guid)
                    .cloned()
                    .collect();
                (Kind::Group, map::group(o), members)
            }
        };
        let hash = map::content_hash(&body);
        state.objects.push(Desired { kind, guid, dn: o.dn.to_string(), body, hash, members });
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::{Dn, ObjectGuid};
    use crate::sync::validate::Validator;

    fn user(cn: &str, n: u8, mail: Option<&str>) -> DirObject {
        DirObject {
            kind: ObjectKind::User,
            dn: Dn::parse(&format!("CN={cn},OU=P,DC=x,DC=y")).unwrap(),
            guid: Some(ObjectGuid([n; 16])),
            user_principal_name: Some(format!("{cn}@x.y")),
            given_name: Some(cn.into()),
            sn: Some("S".into()),
            mail: mail.map(str::to_owned),
            user_account_control: Some(512),
            ..Default::default()
        }
    }

    fn run(objects: &[DirObject], ids: &HashMap<String, String>) -> DesiredState {
        let mut v = Validator::new();
        for o in objects.iter().filter(|o| o.kind == ObjectKind::User) {
            v.add(o);
        }
        let (validation, _) = v.finish(vec![]);
        build(objects, &validation, ids, &HashMap::new())
    }

    #[test]
    fn invalid_users_are_quarantined_with_reasons_and_left_out_of_groups() {
        let good = user("good", 1, Some("good@x.y"));
        let bad = user("bad", 2, None);
        let group = DirObject {
            kind: ObjectKind::Group,
            dn: Dn::parse("CN=G,OU=P,DC=x,DC=y").unwrap(),
            guid: Some(ObjectGuid([3; 16])),
            members: vec![good.dn.clone(), bad.dn.clone(), Dn::parse("CN=outside,DC=x,DC=y").unwrap()],
            ..Default::default()
        };
        let d = run(&[good.clone(), bad, group], &HashMap::new());
        assert_eq!(d.quarantined.len(), 1);
        assert_eq!(d.quarantined[0].reasons[0].rule, "mail.required");
        let g = d.objects.iter().find(|o| o.kind == Kind::Group).unwrap();
        assert_eq!(g.members, [ObjectGuid([1; 16]).to_string()].into());
        assert_eq!(d.objects.len(), 2);
    }

    #[test]
    fn managers_resolve_to_scim_ids_or_wait_for_them() {
        let boss = user("boss", 1, Some("boss@x.y"));
        let mut worker = user("worker", 2, Some("worker@x.y"));
        worker.manager = Some(boss.dn.clone());
        let d = run(&[boss.clone(), worker.clone()], &HashMap::new());
        assert_eq!(d.manager_pending, [ObjectGuid([2; 16]).to_string()]);
        let ids = HashMap::from([(ObjectGuid([1; 16]).to_string(), "scim-boss".to_string())]);
        let d = run(&[boss, worker], &ids);
        assert!(d.manager_pending.is_empty());
        let w = d.objects.iter().find(|o| o.dn.starts_with("CN=worker")).unwrap();
        assert_eq!(w.body[map::ENTERPRISE_SCHEMA]["manager"]["value"], "scim-boss");
    }
}
