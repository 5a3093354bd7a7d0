//! The planner: what the tenant must be told so it matches the directory. Pure: the desired
//! objects and what ausi last sent (its own [`Anchor`]s, which the engine converts from the
//! store's rows) in, a [`Plan`] out. No I/O and no store types, so every decision is tested
//! with plain values.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;
use serde_json::Value;

use super::map::changed_attributes;
use super::repair::{self, Lookup, Match, TenantView};
pub use crate::config::OnRemove;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    User,
    Group,
}

/// What the planner needs to know of an object ausi wrote to the tenant before.
#[derive(Debug, Clone, PartialEq)]
pub struct Anchor {
    pub guid: String,
    pub kind: Kind,
    /// `None` exactly while the anchor is [`AnchorState::Pending`].
    pub scim_id: Option<String>,
    /// The DN it had when last written or seen.
    pub dn: String,
    /// The content hash of what was last sent.
    pub hash: Option<String>,
    pub state: AnchorState,
}

/// Every anchor a run looks at, compact: their texts in one arena and a row of offsets each,
/// sorted by objectGUID. A map of owned [`Anchor`]s costs ~480 bytes an anchor (five
/// allocations and a copy of the key); this costs the text and 32 bytes. [`Anchors::get`]
/// builds the planner's [`Anchor`] for one object at a time.
#[derive(Debug, Clone, Default)]
pub struct Anchors {
    text: String,
    rows: Vec<Row>,
}

#[derive(Debug, Clone, Copy)]
struct Row {
    start: usize,
    guid: u32,
    /// [`ABSENT`] for `None`.
    scim_id: u32,
    dn: u32,
    hash: u32,
    kind: Kind,
    state: AnchorState,
}

const ABSENT: u32 = u32::MAX;

impl Anchors {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn get(&self, guid: &str) -> Option<Anchor> {
        self.row(guid).map(|r| self.anchor(r))
    }

    /// The hash an anchor holds of what was last sent (`None` when the object has no anchor),
    /// read in place, without building the [`Anchor`].
    pub fn hash(&self, guid: &str) -> Option<Option<&str>> {
        self.row(guid).map(|r| self.fields(r)[3])
    }

    pub fn contains_key(&self, guid: &str) -> bool {
        self.row(guid).is_some()
    }

    /// The SCIM id of an active anchor (or a deactivated one too, with `deactivated`), read in
    /// place.
    pub fn active_id(&self, guid: &str, deactivated: bool) -> Option<&str> {
        let r = self.row(guid)?;
        let counts = r.state == AnchorState::Active || (deactivated && r.state == AnchorState::Deactivated);
        if counts { self.fields(r)[1] } else { None }
    }

    /// The kind of an anchored object.
    pub fn kind(&self, guid: &str) -> Option<Kind> {
        self.row(guid).map(|r| r.kind)
    }

    /// Every anchor, by objectGUID.
    pub fn values(&self) -> impl Iterator<Item = Anchor> + '_ {
        self.rows.iter().map(|r| self.anchor(r))
    }

    fn row(&self, guid: &str) -> Option<&Row> {
        self.rows.binary_search_by(|r| self.guid_of(r).cmp(guid)).ok().map(|at| &self.rows[at])
    }

    fn guid_of(&self, r: &Row) -> &str {
        &self.text[r.start..r.start + r.guid as usize]
    }

    /// A row's texts in the arena, in order: guid, SCIM id, DN, hash.
    fn fields(&self, r: &Row) -> [Option<&str>; 4] {
        let mut at = r.start;
        [r.guid, r.scim_id, r.dn, r.hash].map(|len| {
            (len != ABSENT).then(|| {
                let s = &self.text[at..at + len as usize];
                at += len as usize;
                s
            })
        })
    }

    fn anchor(&self, r: &Row) -> Anchor {
        let [guid, scim_id, dn, hash] = self.fields(r).map(|f| f.map(str::to_owned));
        Anchor {
            guid: guid.unwrap_or_default(),
            kind: r.kind,
            scim_id,
            dn: dn.unwrap_or_default(),
            hash,
            state: r.state,
        }
    }
}

/// [`Anchors`] filled one anchor at a time (from the store's rows as they are read).
#[derive(Debug, Default)]
pub struct AnchorsBuilder(Anchors);

impl AnchorsBuilder {
    pub fn push(&mut self, a: Anchor) {
        let all = &mut self.0;
        let start = all.text.len();
        let mut put = |s: Option<&str>| match s {
            // A text of 4 GiB is no anchor's: cut rather than wrap.
            Some(s) => {
                let mut end = s.len().min((ABSENT - 1) as usize);
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                let s = &s[..end];
                all.text.push_str(s);
                s.len() as u32
            }
            None => ABSENT,
        };
        let (guid, scim_id, dn, hash) =
            (put(Some(&a.guid)), put(a.scim_id.as_deref()), put(Some(&a.dn)), put(a.hash.as_deref()));
        all.rows.push(Row { start, guid, scim_id, dn, hash, kind: a.kind, state: a.state });
    }

    /// Sorted by objectGUID (the last of a repeated one is dropped), ready to look up.
    pub fn finish(self) -> Anchors {
        let Anchors { mut text, mut rows } = self.0;
        let key = |r: &Row| r.start..r.start + r.guid as usize;
        rows.sort_by(|a, b| text[key(a)].cmp(&text[key(b)]));
        rows.dedup_by(|a, b| text[key(a)] == text[key(b)]);
        text.shrink_to_fit();
        rows.shrink_to_fit();
        Anchors { text, rows }
    }
}

impl FromIterator<Anchor> for Anchors {
    fn from_iter<I: IntoIterator<Item = Anchor>>(anchors: I) -> Anchors {
        let mut all = AnchorsBuilder::default();
        anchors.into_iter().for_each(|a| all.push(a));
        all.finish()
    }
}

/// Where an anchored object stands in the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnchorState {
    /// A create was about to be sent: look the object up by externalId before creating it again.
    Pending,
    Active,
    Deactivated,
    Deleted,
}

/// Why an object is held back: the rule (its id, e.g. `mail-duplicate`) and what was found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reason {
    pub rule: String,
    pub message: String,
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

impl Desired {
    /// Whether this is the content last sent, by an anchor's hash of it.
    pub fn sent_as(&self, hash: Option<&str>) -> bool {
        hash == Some(self.hash.as_str())
    }
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
    /// Known for updates, and for creates that adopt what the tenant's listing holds (a PUT
    /// to that id); `None` for other creates.
    pub scim_id: Option<String>,
    #[serde(skip)]
    pub body: Value,
    #[serde(skip)]
    pub hash: String,
    /// A create journaled by a run that did not finish: look it up by externalId first.
    pub verify_first: bool,
    /// A create the tenant's listing shows it does not hold: no lookup before sending it.
    #[serde(skip)]
    pub absent: bool,
    /// Drift the tenant got repaired by this write (see [`Plan::repairs`]): counted as repaired.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub repair: bool,
    /// For updates: the attributes that differ from what was last sent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    /// Groups: the members this write sets (a PUT replaces the member list; a POST carries it),
    /// filled in by whoever knows which members have SCIM ids.
    #[serde(skip)]
    pub members: Option<InlineMembers>,
    /// Groups replaced while the tenant's listing is known: the member ids ausi did not set
    /// there, which a PUT keeps (members ausi did not set are left alone).
    #[serde(skip)]
    pub keep_members: Vec<String>,
}

/// The members a group write carries: objectGUIDs with SCIM ids, and whether they differ from
/// what the tenant lists (a membership change made by the write).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InlineMembers {
    pub guids: BTreeSet<String>,
    pub changed: bool,
    /// Members among them that ausi set, the tenant lost and the write restores.
    pub restored: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MembershipChange {
    pub group_guid: String,
    pub group_dn: String,
    pub add: Vec<String>,
    pub remove: Vec<String>,
    /// Among `add`: members ausi had set that the tenant lost (a repair).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restore: Vec<String>,
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

impl MembershipChange {
    /// More than a repair: members AD added or removed.
    pub fn changes_membership(&self) -> bool {
        self.add.len() > self.restore.len() || !self.remove.is_empty()
    }
}

/// Drift found in the tenant (a full sync reads it) in what ausi owns, and repaired by this
/// plan's writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Repair {
    pub kind: Kind,
    pub guid: String,
    pub dn: String,
    /// `missing` (deleted in the tenant: created again and the anchor re-pointed),
    /// `attributes` (owned attributes edited there: replaced with what ausi sent), or
    /// `members` (members ausi set that the tenant lost: added again).
    pub drift: &'static str,
    /// For `attributes`: which (`id` when the tenant holds it under another id).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<String>,
    /// For `members`: the objectGUIDs restored.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    pub creates: Vec<Write>,
    pub updates: Vec<Write>,
    pub memberships: Vec<MembershipChange>,
    pub removals: Vec<Removal>,
    /// What a full sync repairs in the tenant (the writes are among the above).
    pub repairs: Vec<Repair>,
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
    pub anchors: &'a Anchors,
    /// The anchors' last sent bodies, for the changed-attribute lists (may be empty).
    pub bodies: &'a HashMap<String, Value>,
    pub members: &'a HashMap<String, BTreeSet<String>>,
    /// The objectGUIDs quarantined by earlier runs (their members are not removed from
    /// groups; a valid one now is released).
    pub quarantine: &'a [String],
    /// The tenant's users and groups (a full sync lists them): drift in what ausi owns is
    /// repaired, and creates adopt what the tenant holds. `None`: trust the anchors.
    pub tenant: Option<&'a TenantView>,
}

/// Creates, updates and membership differences for `desired` (a page of the objects a run
/// looks at), and the quarantine of `quarantined`; removals are [`removals`]' business.
pub fn plan_objects(desired: &[Desired], quarantined: Vec<Quarantined>, known: &Known<'_>) -> Plan {
    let mut plan = Plan::default();
    let held_back: BTreeSet<&str> =
        quarantined.iter().map(|q| q.guid.as_str()).chain(known.quarantine.iter().map(String::as_str)).collect();

    for d in desired {
        let write = |scim_id: Option<String>, verify_first: bool, changed: Vec<String>| Write {
            kind: d.kind,
            guid: d.guid.clone(),
            dn: d.dn.clone(),
            scim_id,
            body: d.body.clone(),
            hash: d.hash.clone(),
            verify_first,
            absent: false,
            repair: false,
            changed,
            members: None,
            keep_members: vec![],
        };
        let user_name = d.body["userName"].as_str();
        // A create: what the tenant's listing holds of it, if it was read.
        let create = |journaled: bool| match known.tenant.map(|v| v.soft_match(d.kind, &d.guid, user_name)) {
            Some(Match::Adopt(id)) => write(Some(id), false, vec![]),
            Some(Match::Absent) => Write { absent: true, ..write(None, false, vec![]) },
            _ => write(None, journaled, vec![]),
        };
        let anchor = known.anchors.get(&d.guid);
        let there = match (&anchor, known.tenant) {
            (Some(a), Some(view)) if a.state == AnchorState::Active && a.scim_id.is_some() => {
                Some(view.find(d.kind, &d.guid, a.scim_id.as_deref()))
            }
            _ => None,
        };
        match (anchor, there) {
            (None, _) => plan.creates.push(create(false)),
            (Some(a), _) if a.state == AnchorState::Pending || a.scim_id.is_none() => plan.creates.push(create(true)),
            (Some(a), _) if a.state == AnchorState::Deleted => plan.creates.push(write(None, false, vec![])),
            (Some(_), Some(Lookup::Missing)) => {
                plan.creates.push(Write { absent: true, repair: true, ..write(None, false, vec![]) });
                plan.repairs.push(repair_of(d, "missing", vec![], vec![]));
            }
            (Some(a), Some(Lookup::Found(t))) => {
                let moved = a.scim_id.as_deref() != Some(t.id());
                let same = d.sent_as(a.hash.as_deref());
                let mut drifted = repair::drift(d.kind, &d.body, &t.resource);
                if let Some(view) = known.tenant {
                    drifted.retain(|a| !view.altered.contains(a));
                }
                if moved {
                    drifted.insert(0, "id".into());
                }
                let keep = keep_members(d, t, known);
                if same && drifted.is_empty() {
                    plan.unchanged.push((d.guid.clone(), d.dn.clone()));
                } else if same {
                    plan.updates.push(Write {
                        repair: true,
                        keep_members: keep,
                        ..write(Some(t.id().to_owned()), false, drifted.clone())
                    });
                    plan.repairs.push(repair_of(d, "attributes", drifted, vec![]));
                } else {
                    let changed =
                        known.bodies.get(&d.guid).map(|old| changed_attributes(old, &d.body)).unwrap_or_default();
                    plan.updates.push(Write { keep_members: keep, ..write(Some(t.id().to_owned()), false, changed) });
                }
            }
            (Some(a), _) if a.state == AnchorState::Active && d.sent_as(a.hash.as_deref()) => {
                plan.unchanged.push((d.guid.clone(), d.dn.clone()))
            }
            (Some(a), _) => {
                let changed = known.bodies.get(&d.guid).map(|old| changed_attributes(old, &d.body)).unwrap_or_default();
                plan.updates.push(write(a.scim_id.clone(), false, changed));
            }
        }
    }

    // Membership: the difference only. A quarantined user who is already in the tenant keeps
    // the memberships it has (being invalid now is no evidence that it left a group). With the
    // tenant's listing, a member ausi set that the tenant no longer lists is added again; one
    // ausi did not set is not ausi's to remove.
    let created: BTreeSet<&str> = plan.creates.iter().map(|w| w.guid.as_str()).collect();
    for d in desired.iter().filter(|d| d.kind == Kind::Group) {
        let fresh = known.anchors.get(&d.guid).is_none_or(|a| a.state != AnchorState::Active)
            || created.contains(d.guid.as_str());
        let empty = BTreeSet::new();
        let mut current = if fresh { empty.clone() } else { known.members.get(&d.guid).unwrap_or(&empty).clone() };
        let mut restore = Vec::new();
        if let (false, Some(view), Some(a)) = (fresh, known.tenant, known.anchors.get(&d.guid))
            && let Lookup::Found(t) = view.find(d.kind, &d.guid, a.scim_id.as_deref())
        {
            let lost: Vec<String> = current.iter().filter(|m| !lists(t, m, known, view)).cloned().collect();
            for m in lost {
                current.remove(&m);
                if d.members.contains(&m) {
                    restore.push(m);
                }
            }
        }
        let add: Vec<String> = d.members.difference(&current).cloned().collect();
        let remove: Vec<String> =
            current.difference(&d.members).filter(|m| !held_back.contains(m.as_str())).cloned().collect();
        if !restore.is_empty() {
            plan.repairs.push(repair_of(d, "members", vec![], restore.clone()));
        }
        if !add.is_empty() || !remove.is_empty() {
            plan.memberships.push(MembershipChange {
                group_guid: d.guid.clone(),
                group_dn: d.dn.clone(),
                add,
                remove,
                restore,
                inline: false,
            });
        }
    }

    // Quarantined users that are valid now.
    let valid: BTreeSet<&str> = desired.iter().map(|d| d.guid.as_str()).collect();
    plan.released = known.quarantine.iter().filter(|q| valid.contains(q.as_str())).cloned().collect();
    plan.quarantine = quarantined;
    plan
}

fn repair_of(d: &Desired, drift: &'static str, attributes: Vec<String>, members: Vec<String>) -> Repair {
    Repair { kind: d.kind, guid: d.guid.clone(), dn: d.dn.clone(), drift, attributes, members }
}

/// Whether the tenant's group `t` lists member `guid` (under the id the tenant has it by).
fn lists(t: &repair::TenantObject, guid: &str, known: &Known<'_>, view: &TenantView) -> bool {
    match known.anchors.get(guid) {
        Some(a) => id_in(view, &a).is_some_and(|id| t.lists(id)),
        None => true, // not anchored: nothing to say it was lost
    }
}

/// The tenant id of an anchored object, if the listing holds it.
fn id_in<'v>(view: &'v TenantView, a: &Anchor) -> Option<&'v str> {
    match view.find(a.kind, &a.guid, a.scim_id.as_deref()) {
        Lookup::Found(o) => Some(o.id()),
        _ => None,
    }
}

/// The member ids of tenant group `t` that ausi did not set (kept when the group is replaced).
fn keep_members(d: &Desired, t: &repair::TenantObject, known: &Known<'_>) -> Vec<String> {
    if d.kind != Kind::Group || !t.has_members() {
        return vec![];
    }
    let empty = BTreeSet::new();
    let set = known.members.get(&d.guid).unwrap_or(&empty);
    let mut ours: std::collections::HashSet<String> = std::collections::HashSet::new();
    for a in set.iter().chain(d.members.iter()).filter_map(|m| known.anchors.get(m)) {
        ours.extend(known.tenant.and_then(|v| id_in(v, &a)).map(str::to_owned));
        ours.extend(a.scim_id);
    }
    let mut keep: Vec<String> = t.members().filter(|id| !ours.contains(*id)).map(str::to_owned).collect();
    keep.sort();
    keep
}

/// What the tenant holds that left the scope or was deleted in AD (`gone`), per policy. The
/// caller passes only anchors it has evidence for: never the result of a failed or partial read.
pub fn removals<'a>(gone: impl IntoIterator<Item = &'a Anchor>, on_remove: OnRemove) -> Vec<Removal> {
    let mut gone: Vec<&Anchor> =
        gone.into_iter().filter(|a| matches!(a.state, AnchorState::Active | AnchorState::Pending)).collect();
    gone.sort_by(|a, b| a.dn.cmp(&b.dn));
    let mut out = Vec::new();
    for a in gone {
        let kind = a.kind;
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
    /// Adds a page's plan to this one, bodies included (a window of pages still to be written).
    pub fn append(&mut self, page: Plan) {
        self.creates.extend(page.creates);
        self.updates.extend(page.updates);
        self.memberships.extend(page.memberships);
        self.removals.extend(page.removals);
        self.repairs.extend(page.repairs);
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

    fn anchor(kind: Kind, guid: &str, hash: &str, state: AnchorState) -> Anchor {
        Anchor {
            guid: guid.into(),
            kind,
            scim_id: (state != AnchorState::Pending).then(|| format!("id-{guid}")),
            dn: format!("CN={guid},DC=x"),
            hash: Some(hash.into()),
            state,
        }
    }

    struct World {
        anchors: Anchors,
        bodies: HashMap<String, Value>,
        members: HashMap<String, BTreeSet<String>>,
        quarantine: Vec<String>,
        tenant: Option<TenantView>,
    }

    impl World {
        fn new(anchors: Vec<Anchor>) -> World {
            World {
                anchors: anchors.into_iter().collect(),
                bodies: HashMap::new(),
                members: HashMap::new(),
                quarantine: vec![],
                tenant: None,
            }
        }

        /// As a full sync plans: every anchor not desired (nor held back) is gone.
        fn plan(&self, desired: &[Desired], quarantined: Vec<Quarantined>, on_remove: OnRemove) -> Plan {
            let known = Known {
                anchors: &self.anchors,
                bodies: &self.bodies,
                members: &self.members,
                quarantine: &self.quarantine,
                tenant: self.tenant.as_ref(),
            };
            let kept: BTreeSet<&str> =
                desired.iter().map(|d| d.guid.as_str()).chain(quarantined.iter().map(|q| q.guid.as_str())).collect();
            let gone: Vec<Anchor> = self.anchors.values().filter(|a| !kept.contains(a.guid.as_str())).collect();
            let removals = removals(&gone, on_remove);
            let mut plan = plan_objects(desired, quarantined, &known);
            plan.removals = removals;
            plan
        }
    }

    /// The compact anchors give back exactly what was put in, looked up in any order; a
    /// repeated objectGUID keeps one row; absent ones are absent.
    #[test]
    fn compact_anchors_give_back_what_was_put_in() {
        let mut put: Vec<Anchor> = (0..300)
            .map(|i| {
                let state = [AnchorState::Pending, AnchorState::Active, AnchorState::Deactivated][i % 3];
                let mut a =
                    anchor(if i.is_multiple_of(2) { Kind::User } else { Kind::Group }, &format!("g{i:03}"), "h", state);
                a.dn = format!("CN=Ünïcode {i},OU=\\, x,DC=x");
                a.hash = (!i.is_multiple_of(5)).then(|| format!("hash{i}"));
                a
            })
            .collect();
        put.reverse();
        let anchors: Anchors = put.iter().cloned().chain([put[7].clone()]).collect();
        assert_eq!(anchors.len(), 300);
        for a in &put {
            assert_eq!(anchors.get(&a.guid).as_ref(), Some(a));
            assert_eq!(anchors.hash(&a.guid), Some(a.hash.as_deref()));
            assert!(anchors.contains_key(&a.guid));
        }
        assert_eq!(anchors.get("g300"), None);
        assert_eq!(anchors.hash("g300"), None);
        assert!(!anchors.contains_key("g0"));
        let mut sorted = put.clone();
        sorted.sort_by(|a, b| a.guid.cmp(&b.guid));
        assert_eq!(anchors.values().collect::<Vec<_>>(), sorted);
        assert!(Anchors::default().get("g000").is_none());
    }

    #[test]
    fn creates_updates_and_unchanged() {
        let w = World::new(vec![
            anchor(Kind::User, "same", "h1", AnchorState::Active),
            anchor(Kind::User, "changed", "old", AnchorState::Active),
            anchor(Kind::User, "journaled", "h", AnchorState::Pending),
            anchor(Kind::User, "was-off", "h", AnchorState::Deactivated),
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
            anchor(Kind::User, "u", "h", AnchorState::Active),
            anchor(Kind::Group, "g", "gh", AnchorState::Active),
        ]);
        w.members.insert("g".into(), ["u".to_string()].into());
        let mut g = desired(Kind::Group, "g", "gh");
        g.members = ["u".to_string()].into();
        let p = w.plan(&[desired(Kind::User, "u", "h"), g], vec![], OnRemove::Deactivate);
        assert_eq!(p.write_count(), 0);
    }

    #[test]
    fn membership_is_a_difference() {
        let mut w = World::new(vec![anchor(Kind::Group, "g", "gh", AnchorState::Active)]);
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
            anchor(Kind::User, "left", "h", AnchorState::Active),
            anchor(Kind::User, "invalid-now", "h", AnchorState::Active),
            anchor(Kind::Group, "old-group", "h", AnchorState::Active),
            anchor(Kind::User, "already-off", "h", AnchorState::Deactivated),
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
        w.quarantine = vec!["fixed".into()];
        let p = w.plan(&[desired(Kind::User, "fixed", "h")], vec![], OnRemove::Deactivate);
        assert_eq!(p.released, ["fixed"]);
        assert_eq!(p.creates.len(), 1);
    }

    // ------------------------------------------------------------------ repairs (full sync)

    fn user_body(guid: &str, given: &str) -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "externalId": guid,
            "userName": format!("{guid}@x.test"),
            "name": {"givenName": given, "familyName": "S"},
            "displayName": format!("{given} S"),
            "emails": [{"value": format!("{guid}@x.test"), "type": "work", "primary": true}],
            "active": true,
        })
    }

    fn wanted_user(guid: &str) -> Desired {
        let body = user_body(guid, "G");
        Desired {
            kind: Kind::User,
            guid: guid.into(),
            dn: format!("CN={guid},DC=x"),
            hash: crate::sync::map::content_hash(&body),
            body,
            members: BTreeSet::new(),
        }
    }

    /// As the tenant shows a resource: with an id, meta, and lower-cased.
    fn listed(mut body: Value, id: &str) -> Value {
        body["id"] = json!(id);
        body["meta"] = json!({"resourceType": "User"});
        body["userName"] = json!(body["userName"].as_str().unwrap().to_uppercase());
        body
    }

    fn synced(guids: &[&str]) -> World {
        World::new(
            guids
                .iter()
                .map(|g| {
                    let kind = if g.starts_with('g') { Kind::Group } else { Kind::User };
                    let hash = if kind == Kind::User { wanted_user(g).hash } else { "gh".into() };
                    anchor(kind, g, &hash, AnchorState::Active)
                })
                .collect(),
        )
    }

    #[test]
    fn a_full_sync_repairs_what_was_deleted_or_edited_in_the_tenant() {
        let mut w = synced(&["same", "deleted", "edited", "moved"]);
        let mut edited = listed(user_body("edited", "G"), "id-edited");
        edited["name"]["familyName"] = json!("Changed in the tenant");
        let users = [listed(user_body("same", "G"), "id-same"), edited, listed(user_body("moved", "G"), "new-id")];
        w.tenant = Some(TenantView::new(&users, &[], true, 1));
        let d: Vec<Desired> = ["same", "deleted", "edited", "moved"].iter().map(|g| wanted_user(g)).collect();
        let p = w.plan(&d, vec![], OnRemove::Deactivate);
        assert_eq!(p.unchanged.iter().map(|(g, _)| g.as_str()).collect::<Vec<_>>(), ["same"]);
        assert_eq!(p.creates.len(), 1);
        let c = &p.creates[0];
        assert!(c.guid == "deleted" && c.repair && c.absent && c.scim_id.is_none() && !c.verify_first);
        let updates: Vec<_> = p.updates.iter().map(|u| (u.guid.as_str(), u.scim_id.as_deref(), u.repair)).collect();
        assert_eq!(updates, [("edited", Some("id-edited"), true), ("moved", Some("new-id"), true)]);
        let drift: Vec<_> = p.repairs.iter().map(|r| (r.guid.as_str(), r.drift, r.attributes.clone())).collect();
        assert_eq!(
            drift,
            [
                ("deleted", "missing", vec![]),
                ("edited", "attributes", vec!["name.familyName".to_string()]),
                ("moved", "attributes", vec!["id".to_string()]),
            ]
        );
        assert_eq!(p.write_count(), 3);
    }

    #[test]
    fn without_a_listing_or_with_an_incomplete_one_nothing_is_taken_as_deleted() {
        let mut w = synced(&["a"]);
        let d = [wanted_user("a")];
        assert_eq!(w.plan(&d, vec![], OnRemove::Deactivate).write_count(), 0, "no listing: trust the anchors");
        w.tenant = Some(TenantView::new(&[], &[], false, 1));
        let p = w.plan(&d, vec![], OnRemove::Deactivate);
        assert!(p.repairs.is_empty() && p.write_count() == 0, "{p:?}");
    }

    #[test]
    fn creates_adopt_from_the_listing_by_the_soft_match_rules() {
        let mut w = World::new(vec![
            anchor(Kind::User, "journaled", "h", AnchorState::Pending),
            anchor(Kind::User, "never-sent", "h", AnchorState::Pending),
        ]);
        let mut by_name = listed(user_body("by-name", "G"), "id-by-name");
        by_name.as_object_mut().unwrap().remove("externalId");
        let users = [listed(user_body("journaled", "G"), "id-journaled"), by_name];
        w.tenant = Some(TenantView::new(&users, &[], true, 1));
        let d: Vec<Desired> = ["journaled", "never-sent", "by-name", "new"].iter().map(|g| wanted_user(g)).collect();
        let p = w.plan(&d, vec![], OnRemove::Deactivate);
        let creates: Vec<_> =
            p.creates.iter().map(|c| (c.guid.as_str(), c.scim_id.as_deref(), c.verify_first, c.absent)).collect();
        assert_eq!(
            creates,
            [
                ("journaled", Some("id-journaled"), false, false),
                ("never-sent", None, false, true),
                ("by-name", Some("id-by-name"), false, false),
                ("new", None, false, true),
            ]
        );
        assert!(p.repairs.is_empty(), "adoptions are not repairs");
    }

    #[test]
    fn members_ausi_set_that_the_tenant_lost_are_restored_and_others_left_alone() {
        let mut w = synced(&["u1", "u2", "u3", "g1"]);
        w.members.insert("g1".into(), ["u1", "u2", "u3"].iter().map(|s| s.to_string()).collect());
        let users: Vec<Value> =
            ["u1", "u2", "u3"].iter().map(|g| listed(user_body(g, "G"), &format!("id-{g}"))).collect();
        // u2 was removed in the tenant; "foreign" was added there; AD dropped u3.
        let group = json!({"id": "id-g1", "externalId": "g1", "displayName": "G1",
            "members": [{"value": "id-u1"}, {"value": "id-u3"}, {"value": "foreign"}]});
        w.tenant = Some(TenantView::new(&users, &[group], true, 1));
        let mut g = desired(Kind::Group, "g1", "gh");
        g.body = json!({"externalId": "g1", "displayName": "G1"});
        g.members = ["u1", "u2"].iter().map(|s| s.to_string()).collect();
        let d = [wanted_user("u1"), wanted_user("u2"), g.clone()];
        let p = w.plan(&d, vec![], OnRemove::Ignore);
        assert_eq!(p.memberships.len(), 1);
        let m = &p.memberships[0];
        assert_eq!(
            (m.add.clone(), m.restore.clone(), m.remove.clone()),
            (vec!["u2".into()], vec!["u2".into()], vec!["u3".into()])
        );
        assert_eq!(p.repairs.len(), 1);
        assert_eq!((p.repairs[0].drift, p.repairs[0].members.clone()), ("members", vec!["u2".to_string()]));

        // The group renamed in the tenant: replaced, keeping the member ausi did not set.
        let renamed = json!({"id": "id-g1", "externalId": "g1", "displayName": "Renamed",
            "members": [{"value": "id-u1"}, {"value": "id-u2"}, {"value": "foreign"}]});
        w.members.insert("g1".into(), ["u1", "u2"].iter().map(|s| s.to_string()).collect());
        w.tenant = Some(TenantView::new(&users, &[renamed], true, 1));
        let p = w.plan(&d, vec![], OnRemove::Ignore);
        assert!(p.memberships.is_empty(), "{:?}", p.memberships);
        assert_eq!(p.updates.len(), 1);
        assert!(p.updates[0].repair);
        assert_eq!(p.updates[0].keep_members, ["foreign"]);
    }
}
