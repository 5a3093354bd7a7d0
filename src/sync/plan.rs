//! The planner: what the tenant must be told so it matches the directory. Pure: the desired
//! objects and the state store's anchors in, a [`Plan`] out. No I/O, so every decision is
//! tested with plain values.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;
use serde_json::Value;

use super::map::changed_attributes;
use super::state::{Anchor, AnchorKind, AnchorState, QuarantineEntry, Reason};
pub use crate::config::OnRemove;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    User,
    Group,
}

impl From<Kind> for AnchorKind {
    fn from(k: Kind) -> AnchorKind {
        match k {
            Kind::User => AnchorKind::User,
            Kind::Group => AnchorKind::Group,
        }
    }
}

/// A valid, in-scope user or group as the tenant should hold it.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub kind: Kind,
    pub guid: String,
    pub dn: String,
    pub body: Value,
    pub hash: String,
    /// Groups: the objectGUIDs of members that are themselves provisioned.
    pub members: BTreeSet<String>,
}

/// A user in scope that a sync must not provision yet, with every reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quarantined {
    pub guid: String,
    pub dn: String,
    pub reasons: Vec<Reason>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Write {
    pub kind: Kind,
    pub guid: String,
    pub dn: String,
    /// Known for updates; `None` for creates.
    pub scim_id: Option<String>,
    #[serde(skip)]
    pub body: Value,
    #[serde(skip)]
    pub hash: String,
    /// A create journaled by a run that did not finish: look it up by externalId first.
    pub verify_first: bool,
    /// For updates: the attributes that differ from what was last sent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    /// Groups: the members this write sets (a PUT replaces the member list; a POST carries it),
    /// filled in by whoever knows which members have SCIM ids.
    #[serde(skip)]
    pub members: Option<InlineMembers>,
}

/// The members a group write carries: objectGUIDs with SCIM ids, and whether they differ from
/// what the tenant lists (a membership change made by the write).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InlineMembers {
    pub guids: BTreeSet<String>,
    pub changed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MembershipChange {
    pub group_guid: String,
    pub group_dn: String,
    pub add: Vec<String>,
    pub remove: Vec<String>,
    /// Made by the group's own write (create or replace), not by a PATCH.
    #[serde(skip)]
    pub inline: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoveAction {
    Deactivate,
    Delete,
    /// No tenant write (a group under `deactivate`): the anchor is only marked.
    Retire,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Removal {
    pub kind: Kind,
    pub guid: String,
    pub dn: String,
    pub scim_id: Option<String>,
    pub action: RemoveAction,
    pub reason: &'static str,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    pub creates: Vec<Write>,
    pub updates: Vec<Write>,
    pub memberships: Vec<MembershipChange>,
    pub removals: Vec<Removal>,
    /// In scope, valid and identical to what the tenant has: (guid, current DN).
    #[serde(skip)]
    pub unchanged: Vec<(String, String)>,
    /// Reported once, as the sync report's `quarantined`.
    #[serde(skip)]
    pub quarantine: Vec<Quarantined>,
    /// Users that were quarantined and are now valid or gone.
    pub released: Vec<String>,
}

impl Plan {
    /// Tenant writes this plan needs (a dry run reports this number and sends none).
    pub fn write_count(&self) -> usize {
        self.creates.len()
            + self.updates.len()
            + self.memberships.len()
            + self.removals.iter().filter(|r| r.action != RemoveAction::Retire).count()
    }

    /// Removals that write to the tenant (what the deletion threshold counts).
    pub fn deprovisions(&self) -> usize {
        self.removals.iter().filter(|r| r.action != RemoveAction::Retire).count()
    }
}

/// Everything the planner looks at besides the directory.
pub struct Known<'a> {
    pub anchors: &'a HashMap<String, Anchor>,
    /// The anchors' last sent bodies, for the changed-attribute lists (may be empty).
    pub bodies: &'a HashMap<String, Value>,
    pub members: &'a HashMap<String, BTreeSet<String>>,
    pub quarantine: &'a [QuarantineEntry],
}

/// Creates, updates and membership differences for `desired` (a page of the objects a run
/// looks at), and the quarantine of `quarantined`; removals are [`removals`]' business.
pub fn plan_objects(desired: &[Desired], quarantined: Vec<Quarantined>, known: &Known<'_>) -> Plan {
    let mut plan = Plan::default();
    let held_back: BTreeSet<&str> =
        quarantined.iter().map(|q| q.guid.as_str()).chain(known.quarantine.iter().map(|q| q.guid.as_str())).collect();

    for d in desired {
        let write = |scim_id: Option<String>, verify_first: bool, changed: Vec<String>| Write {
            kind: d.kind,
            guid: d.guid.clone(),
            dn: d.dn.clone(),
            scim_id,
            body: d.body.clone(),
            hash: d.hash.clone(),
            verify_first,
            changed,
            members: None,
        };
        match known.anchors.get(&d.guid) {
            None => plan.creates.push(write(None, false, vec![])),
            Some(a) if a.state == AnchorState::Pending || a.scim_id.is_none() => {
                plan.creates.push(write(None, true, vec![]))
            }
            Some(a) if a.state == AnchorState::Deleted => plan.creates.push(write(None, false, vec![])),
            Some(a) if a.state == AnchorState::Active && a.hash.as_deref() == Some(d.hash.as_str()) => {
                plan.unchanged.push((d.guid.clone(), d.dn.clone()))
            }
            Some(a) => {
                let changed = known.bodies.get(&d.guid).map(|old| changed_attributes(old, &d.body)).unwrap_or_default();
                plan.updates.push(write(a.scim_id.clone(), false, changed));
            }
        }
    }

    // Membership: the difference only. A quarantined user who is already in the tenant keeps
    // the memberships it has (being invalid now is no evidence that it left a group).
    for d in desired.iter().filter(|d| d.kind == Kind::Group) {
        let fresh = known.anchors.get(&d.guid).is_none_or(|a| a.state != AnchorState::Active);
        let empty = BTreeSet::new();
        let current = if fresh { &empty } else { known.members.get(&d.guid).unwrap_or(&empty) };
        let add: Vec<String> = d.members.difference(current).cloned().collect();
        let remove: Vec<String> =
            current.difference(&d.members).filter(|m| !held_back.contains(m.as_str())).cloned().collect();
        if !add.is_empty() || !remove.is_empty() {
            plan.memberships.push(MembershipChange {
                group_guid: d.guid.clone(),
                group_dn: d.dn.clone(),
                add,
                remove,
                inline: false,
            });
        }
    }

    // Quarantined users that are valid now.
    let valid: BTreeSet<&str> = desired.iter().map(|d| d.guid.as_str()).collect();
    plan.released =
        known.quarantine.iter().filter(|q| valid.contains(q.guid.as_str())).map(|q| q.guid.clone()).collect();
    plan.quarantine = quarantined;
    plan
}

/// What the tenant holds that left the scope or was deleted in AD (`gone`), per policy. The
/// caller passes only anchors it has evidence for: never the result of a failed or partial read.
pub fn removals<'a>(gone: impl IntoIterator<Item = &'a Anchor>, on_remove: OnRemove) -> Vec<Removal> {
    let mut gone: Vec<&Anchor> =
        gone.into_iter().filter(|a| matches!(a.state, AnchorState::Active | AnchorState::Pending)).collect();
    gone.sort_by(|a, b| a.dn.cmp(&b.dn));
    let mut out = Vec::new();
    for a in gone {
        let kind = match a.kind {
            AnchorKind::User => Kind::User,
            AnchorKind::Group => Kind::Group,
        };
        let action = match (on_remove, kind) {
            (OnRemove::Ignore, _) => continue,
            (OnRemove::Delete, _) => RemoveAction::Delete,
            (OnRemove::Deactivate, Kind::User) => RemoveAction::Deactivate,
            (OnRemove::Deactivate, Kind::Group) => RemoveAction::Retire,
        };
        out.push(Removal {
            kind,
            guid: a.guid.clone(),
            dn: a.dn.clone(),
            scim_id: a.scim_id.clone(),
            action,
            reason: "no longer in the selected scope, or deleted in AD",
        });
    }
    out
}

impl Plan {
    /// Adds a page's plan to the run's (without the bodies: the report never shows them).
    pub fn absorb(&mut self, page: Plan) {
        let strip = |mut w: Write| {
            w.body = Value::Null;
            w.members = None;
            w
        };
        self.creates.extend(page.creates.into_iter().map(strip));
        self.updates.extend(page.updates.into_iter().map(strip));
        self.memberships.extend(page.memberships);
        self.removals.extend(page.removals);
        self.unchanged.extend(page.unchanged);
        self.quarantine.extend(page.quarantine);
        self.released.extend(page.released);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn desired(kind: Kind, guid: &str, hash: &str) -> Desired {
        Desired {
            kind,
            guid: guid.into(),
            dn: format!("CN={guid},DC=x"),
            body: json!({"externalId": guid, "v": hash}),
            hash: hash.into(),
            members: BTreeSet::new(),
        }
    }

    fn anchor(kind: AnchorKind, guid: &str, hash: &str, state: AnchorState) -> Anchor {
        Anchor {
            guid: guid.into(),
            kind,
            scim_id: (state != AnchorState::Pending).then(|| format!("id-{guid}")),
            dn: format!("CN={guid},DC=x"),
            hash: Some(hash.into()),
            state,
            last_seen_run: Some(1),
        }
    }

    struct World {
        anchors: HashMap<String, Anchor>,
        bodies: HashMap<String, Value>,
        members: HashMap<String, BTreeSet<String>>,
        quarantine: Vec<QuarantineEntry>,
    }

    impl World {
        fn new(anchors: Vec<Anchor>) -> World {
            World {
                anchors: anchors.into_iter().map(|a| (a.guid.clone(), a)).collect(),
                bodies: HashMap::new(),
                members: HashMap::new(),
                quarantine: vec![],
            }
        }

        /// As a full sync plans: every anchor not desired (nor held back) is gone.
        fn plan(&self, desired: &[Desired], quarantined: Vec<Quarantined>, on_remove: OnRemove) -> Plan {
            let known = Known {
                anchors: &self.anchors,
                bodies: &self.bodies,
                members: &self.members,
                quarantine: &self.quarantine,
            };
            let kept: BTreeSet<&str> =
                desired.iter().map(|d| d.guid.as_str()).chain(quarantined.iter().map(|q| q.guid.as_str())).collect();
            let gone = self.anchors.values().filter(|a| !kept.contains(a.guid.as_str()));
            let removals = removals(gone, on_remove);
            let mut plan = plan_objects(desired, quarantined, &known);
            plan.removals = removals;
            plan
        }
    }

    #[test]
    fn creates_updates_and_unchanged() {
        let w = World::new(vec![
            anchor(AnchorKind::User, "same", "h1", AnchorState::Active),
            anchor(AnchorKind::User, "changed", "old", AnchorState::Active),
            anchor(AnchorKind::User, "journaled", "h", AnchorState::Pending),
            anchor(AnchorKind::User, "was-off", "h", AnchorState::Deactivated),
        ]);
        let d = [
            desired(Kind::User, "same", "h1"),
            desired(Kind::User, "changed", "new"),
            desired(Kind::User, "new", "h"),
            desired(Kind::User, "journaled", "h"),
            desired(Kind::User, "was-off", "h"),
        ];
        let p = w.plan(&d, vec![], OnRemove::Deactivate);
        let guids = |ws: &[Write]| ws.iter().map(|w| (w.guid.clone(), w.verify_first)).collect::<Vec<_>>();
        assert_eq!(guids(&p.creates), [("new".to_string(), false), ("journaled".to_string(), true)]);
        assert_eq!(guids(&p.updates), [("changed".to_string(), false), ("was-off".to_string(), false)]);
        assert_eq!(p.unchanged.len(), 1);
        assert!(p.removals.is_empty());
        assert_eq!(p.write_count(), 4);
    }

    #[test]
    fn nothing_changed_means_no_writes() {
        let mut w = World::new(vec![
            anchor(AnchorKind::User, "u", "h", AnchorState::Active),
            anchor(AnchorKind::Group, "g", "gh", AnchorState::Active),
        ]);
        w.members.insert("g".into(), ["u".to_string()].into());
        let mut g = desired(Kind::Group, "g", "gh");
        g.members = ["u".to_string()].into();
        let p = w.plan(&[desired(Kind::User, "u", "h"), g], vec![], OnRemove::Deactivate);
        assert_eq!(p.write_count(), 0);
    }

    #[test]
    fn membership_is_a_difference() {
        let mut w = World::new(vec![anchor(AnchorKind::Group, "g", "gh", AnchorState::Active)]);
        w.members.insert("g".into(), ["a", "b", "q"].iter().map(|s| s.to_string()).collect());
        let mut g = desired(Kind::Group, "g", "gh");
        g.members = ["a", "c"].iter().map(|s| s.to_string()).collect();
        let q = Quarantined { guid: "q".into(), dn: "CN=q".into(), reasons: vec![] };
        let p = w.plan(&[g], vec![q], OnRemove::Deactivate);
        assert_eq!(p.memberships.len(), 1);
        assert_eq!(p.memberships[0].add, ["c"]);
        assert_eq!(p.memberships[0].remove, ["b"], "a held-back member is not removed");
    }

    #[test]
    fn removals_follow_the_policy_and_spare_the_quarantined() {
        let w = World::new(vec![
            anchor(AnchorKind::User, "left", "h", AnchorState::Active),
            anchor(AnchorKind::User, "invalid-now", "h", AnchorState::Active),
            anchor(AnchorKind::Group, "old-group", "h", AnchorState::Active),
            anchor(AnchorKind::User, "already-off", "h", AnchorState::Deactivated),
        ]);
        let q = vec![Quarantined { guid: "invalid-now".into(), dn: "CN=invalid-now".into(), reasons: vec![] }];
        let p = w.plan(&[], q.clone(), OnRemove::Deactivate);
        let actions: Vec<_> = p.removals.iter().map(|r| (r.guid.as_str(), r.action)).collect();
        assert_eq!(actions, [("left", RemoveAction::Deactivate), ("old-group", RemoveAction::Retire)]);
        assert_eq!(p.deprovisions(), 1);
        let p = w.plan(&[], q.clone(), OnRemove::Delete);
        assert_eq!(p.deprovisions(), 2);
        let p = w.plan(&[], q, OnRemove::Ignore);
        assert!(p.removals.is_empty());
    }

    #[test]
    fn quarantine_release() {
        let mut w = World::new(vec![]);
        w.quarantine =
            vec![QuarantineEntry { guid: "fixed".into(), dn: "CN=fixed".into(), reasons: vec![], since: "t".into() }];
        let p = w.plan(&[desired(Kind::User, "fixed", "h")], vec![], OnRemove::Deactivate);
        assert_eq!(p.released, ["fixed"]);
        assert_eq!(p.creates.len(), 1);
    }
}
