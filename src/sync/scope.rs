//! The sync scope: the selected OUs minus the excluded sub-trees, resolved against the
//! directory by objectGUID first (a renamed or moved OU is followed) and DN second.

use std::collections::HashSet;

use serde::Serialize;

use super::progress::Progress;
use crate::config::{OuRef, ScopeConfig};
use crate::directory::ObjectKind;
use crate::directory::{
    AnyDirectory, Container, ContainerKind, DirObject, Directory, Dn, ObjectGuid, ObjectQuery, ReadSummary,
    serialize_display,
};
use crate::error::{AppError, Result};
use crate::output::Warning;
use crate::policy::scoping::{Exclusion, GroupOptions, GroupRef, MemberMode, Scoping};
use crate::store::{PageEnd, StateError, StateStore};

/// Reads the objects of `query` in `scope`, streaming them into `each`.
pub async fn read_scope(
    directory: &mut AnyDirectory,
    scope: &Scope,
    query: ObjectQuery,
    progress: &dyn Progress,
    each: &mut dyn FnMut(DirObject),
) -> Result<ReadSummary> {
    let progress = progress.begin("Reading the directory");
    let mut total = ReadSummary::default();
    let mut offset = 0;
    for base in scope.bases() {
        let mut sink = |object: DirObject| {
            if scope.contains(&object.dn) {
                each(object);
            }
        };
        let summary = directory.objects(base, query, &mut sink, &|n| progress.set(offset + n)).await?;
        offset += summary.entries;
        total.entries += summary.entries;
        total.unreadable.extend(summary.unreadable);
    }
    progress.finish();
    Ok(total)
}

/// Which DNs are in scope. Pure; built from a [`Resolution`] or from `--base`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scope {
    bases: Vec<Dn>,
    exclude: Vec<Dn>,
}

impl Scope {
    pub fn new(include: Vec<Dn>, exclude: Vec<Dn>) -> Scope {
        // Keep only the outermost bases, so no object is read twice.
        let mut bases: Vec<Dn> = Vec::new();
        for dn in include {
            if bases.iter().any(|b| dn.is_descendant_of(b)) {
                continue;
            }
            bases.retain(|b| !b.is_descendant_of(&dn));
            bases.push(dn);
        }
        Scope { bases, exclude }
    }

    /// The sub-trees to read (none nested in another).
    pub fn bases(&self) -> &[Dn] {
        &self.bases
    }

    pub fn is_empty(&self) -> bool {
        self.bases.is_empty()
    }

    pub fn contains(&self, dn: &Dn) -> bool {
        self.bases.iter().any(|b| dn.is_descendant_of(b)) && !self.exclude.iter().any(|x| dn.is_descendant_of(x))
    }
}

/// One selected or excluded OU as found in the directory now.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ResolvedOu {
    #[serde(serialize_with = "serialize_display")]
    pub dn: Dn,
    #[serde(serialize_with = "serialize_opt_guid")]
    pub guid: Option<ObjectGuid>,
    pub kind: ContainerKind,
    /// The DN stored in the configuration, when the OU has since been renamed or moved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renamed_from: Option<String>,
}

fn serialize_opt_guid<S: serde::Serializer>(g: &Option<ObjectGuid>, s: S) -> Result<S::Ok, S::Error> {
    match g {
        Some(g) => s.collect_str(g),
        None => s.serialize_none(),
    }
}

/// A stored OU that the directory no longer has.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MissingOu {
    pub dn: String,
    pub guid: Option<String>,
    /// `selected` or `excluded`.
    pub role: &'static str,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Resolution {
    pub selected: Vec<ResolvedOu>,
    pub excluded: Vec<ResolvedOu>,
    pub missing: Vec<MissingOu>,
}

impl Resolution {
    pub fn scope(&self) -> Scope {
        Scope::new(
            self.selected.iter().map(|o| o.dn.clone()).collect(),
            self.excluded.iter().map(|o| o.dn.clone()).collect(),
        )
    }

    /// The configuration to store: current DNs, GUIDs filled in, missing OUs kept (the
    /// administrator removes them explicitly; nothing is dropped silently).
    pub fn to_config(&self) -> ScopeConfig {
        let stored = |o: &ResolvedOu| OuRef { dn: o.dn.to_string(), guid: o.guid.map(|g| g.to_string()) };
        let missing = |role: &'static str| {
            self.missing
                .iter()
                .filter(move |m| m.role == role)
                .map(|m| OuRef { dn: m.dn.clone(), guid: m.guid.clone() })
        };
        ScopeConfig {
            ous: self.selected.iter().map(stored).chain(missing("selected")).collect(),
            excluded: self.excluded.iter().map(stored).chain(missing("excluded")).collect(),
        }
    }

    pub fn warnings(&self) -> Vec<Warning> {
        let mut out = Vec::new();
        for o in self.selected.iter().chain(&self.excluded) {
            if let Some(old) = &o.renamed_from {
                out.push(Warning::new(
                    "ou-renamed",
                    format!("the OU stored as {old} is now {} (found by its objectGUID)", o.dn),
                ));
            }
        }
        for m in &self.missing {
            out.push(Warning::new(
                "ou-missing",
                format!(
                    "the {} OU {} ({}) no longer exists in the directory; take it out with `ausi select-ous {} DN`",
                    m.role,
                    m.dn,
                    m.guid.as_deref().unwrap_or("no objectGUID stored"),
                    if m.role == "selected" { "--remove" } else { "--unexclude" }
                ),
            ));
        }
        out
    }
}

/// Finds each stored OU in `containers`: by objectGUID when one is stored, else by DN.
pub fn resolve(selection: &ScopeConfig, containers: &[Container]) -> Resolution {
    let mut resolution = Resolution::default();
    for (list, role) in [(&selection.ous, "selected"), (&selection.excluded, "excluded")] {
        for stored in list {
            let found = find(stored, containers);
            match found {
                Some(c) => {
                    let renamed = Dn::parse(&stored.dn).map(|d| d != c.dn).unwrap_or(true);
                    let resolved = ResolvedOu {
                        dn: c.dn.clone(),
                        guid: c.guid,
                        kind: c.kind,
                        renamed_from: renamed.then(|| stored.dn.clone()),
                    };
                    let target = if role == "selected" { &mut resolution.selected } else { &mut resolution.excluded };
                    if !target.iter().any(|o| o.dn == resolved.dn) {
                        target.push(resolved);
                    }
                }
                None => resolution.missing.push(MissingOu { dn: stored.dn.clone(), guid: stored.guid.clone(), role }),
            }
        }
    }
    resolution
}

fn find<'a>(stored: &OuRef, containers: &'a [Container]) -> Option<&'a Container> {
    match stored.guid.as_deref().and_then(ObjectGuid::parse) {
        // The GUID is authoritative: an OU re-created under the same DN is another OU.
        Some(guid) => containers.iter().find(|c| c.guid == Some(guid)),
        None => {
            let dn = Dn::parse(&stored.dn).ok()?;
            containers.iter().find(|c| c.dn == dn)
        }
    }
}

/// Looks up what an administrator typed (a DN or an objectGUID) among the containers.
pub fn lookup<'a>(text: &str, containers: &'a [Container]) -> Option<&'a Container> {
    if let Some(guid) = ObjectGuid::parse(text.trim()) {
        return containers.iter().find(|c| c.guid == Some(guid));
    }
    let dn = Dn::parse(text).ok()?;
    containers.iter().find(|c| c.dn == dn)
}

/// One object entering or leaving the scope (a `select-ous` preview, a policy preview). A
/// preview of a million users holds a million of these, so they are compact: the objectGUID as
/// its 16 bytes, and the DN and the names in one allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeObject {
    pub kind: ObjectKind,
    pub object_guid: Option<ObjectGuid>,
    /// True: entering; false: leaving.
    pub entering: bool,
    /// The DN, then sAMAccountName, userPrincipalName and display name, back to back.
    text: Box<str>,
    /// The ends of the DN, sAMAccountName and userPrincipalName in `text`.
    ends: [u32; 3],
}

impl ScopeObject {
    /// `object` entering (`entering`) or leaving the scope. The display name is a user's
    /// displayName, a group's displayName else its cn.
    pub fn of(object: &DirObject, entering: bool) -> ScopeObject {
        let dn = object.dn.to_string();
        let display = match object.kind {
            ObjectKind::User => object.display_name.as_deref(),
            ObjectKind::Group => object.display_name.as_deref().or(object.cn.as_deref()),
        };
        let parts = [
            dn.as_str(),
            object.sam_account_name.as_deref().unwrap_or(""),
            object.user_principal_name.as_deref().unwrap_or(""),
            display.unwrap_or(""),
        ];
        let mut text = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        let mut ends = [0u32; 3];
        for (i, part) in parts.iter().enumerate() {
            text.push_str(part);
            if i < 3 {
                ends[i] = u32::try_from(text.len()).unwrap_or(u32::MAX);
            }
        }
        ScopeObject { kind: object.kind, object_guid: object.guid, entering, text: text.into_boxed_str(), ends }
    }

    fn part(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        let end = if i < 3 { self.ends[i] as usize } else { self.text.len() };
        self.text.get(start..end).unwrap_or("")
    }

    fn optional(&self, i: usize) -> Option<&str> {
        Some(self.part(i)).filter(|p| !p.is_empty())
    }

    pub fn dn(&self) -> &str {
        self.part(0)
    }

    pub fn sam_account_name(&self) -> Option<&str> {
        self.optional(1)
    }

    pub fn user_principal_name(&self) -> Option<&str> {
        self.optional(2)
    }

    pub fn display_name(&self) -> Option<&str> {
        self.optional(3)
    }

    /// How a person recognises it: a user's logon name (userPrincipalName, else
    /// sAMAccountName), a group's display name.
    pub fn name(&self) -> Option<&str> {
        match self.kind {
            ObjectKind::User => self.user_principal_name().or(self.sam_account_name()),
            ObjectKind::Group => self.display_name().or(self.sam_account_name()),
        }
    }
}

impl Serialize for ScopeObject {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut o = s.serialize_struct("ScopeObject", 7)?;
        o.serialize_field("kind", &self.kind)?;
        o.serialize_field("dn", self.dn())?;
        o.serialize_field("object_guid", &self.object_guid.map(|g| g.to_string()))?;
        o.serialize_field("sam_account_name", &self.sam_account_name())?;
        o.serialize_field("user_principal_name", &self.user_principal_name())?;
        o.serialize_field("display_name", &self.display_name())?;
        o.serialize_field("change", if self.entering { "entering" } else { "leaving" })?;
        o.end()
    }
}

/// Users and groups.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub users: u64,
    pub groups: u64,
}

/// Who enters and who leaves the scope: the counts, and every object (the JSON lists them all;
/// a table shows the first [`PREVIEW_LINES`] of each list).
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct ScopeChanges {
    pub before: Counts,
    pub after: Counts,
    pub users_entering: u64,
    pub users_leaving: u64,
    pub groups_entering: u64,
    pub groups_leaving: u64,
    pub entering: Vec<ScopeObject>,
    pub leaving: Vec<ScopeObject>,
}

/// How many objects of each list a table shows.
pub const PREVIEW_LINES: usize = 20;

impl ScopeChanges {
    /// One object of the union of both scopes: in the scope before (`was`), after (`is`).
    pub fn add(&mut self, object: &DirObject, was: bool, is: bool) {
        let user = object.kind == ObjectKind::User;
        for (inside, counts) in [(was, &mut self.before), (is, &mut self.after)] {
            if inside {
                *(if user { &mut counts.users } else { &mut counts.groups }) += 1;
            }
        }
        if was == is {
            return;
        }
        *match (is, user) {
            (true, true) => &mut self.users_entering,
            (true, false) => &mut self.groups_entering,
            (false, true) => &mut self.users_leaving,
            (false, false) => &mut self.groups_leaving,
        } += 1;
        let item = ScopeObject::of(object, is);
        if is { self.entering.push(item) } else { self.leaving.push(item) }
    }

    /// Both lists in DN order (case-insensitive), whatever order the objects were read in.
    pub fn sort(&mut self) {
        for list in [&mut self.entering, &mut self.leaving] {
            // In place: a key per object (or a stable sort's buffer) would double the memory, and
            // DNs in one directory differ case-insensitively, so no order between equals is lost.
            list.sort_unstable_by(|a, b| lower(a.dn()).cmp(lower(b.dn())));
        }
    }

    /// The table's lines: the counts, then the first [`PREVIEW_LINES`] entering and leaving.
    pub fn lines(&self) -> String {
        let n = |users: u64, groups: u64| {
            format!("{} and {}", crate::output::plural(users, "user"), crate::output::plural(groups, "group"))
        };
        let mut out = format!(
            "Scope: {} before, {} after.\n{} enter, {} leave.\n",
            n(self.before.users, self.before.groups),
            n(self.after.users, self.after.groups),
            n(self.users_entering, self.groups_entering),
            n(self.users_leaving, self.groups_leaving),
        );
        for (label, list) in [("entering", &self.entering), ("leaving", &self.leaving)] {
            for o in list.iter().take(PREVIEW_LINES) {
                let kind = if o.kind == ObjectKind::User { "user" } else { "group" };
                let name = o.name().map(|n| format!(" {}", crate::output::cell(n))).unwrap_or_default();
                out.push_str(&format!("  {label}: {kind}{name}, {}\n", crate::output::cell(o.dn())));
            }
            if list.len() > PREVIEW_LINES {
                out.push_str(&format!(
                    "  … and {} more {label} (the JSON report lists them all)\n",
                    list.len() - PREVIEW_LINES
                ));
            }
        }
        out
    }
}

/// A DN's characters in lower case, for ordering without allocating.
fn lower(text: &str) -> impl Iterator<Item = char> + '_ {
    text.chars().flat_map(char::to_lowercase)
}

/// The active policy's scope beyond the OUs and its group options, as a run applies them to
/// the mirror: an object in the OUs that the policy leaves out gets status `out` (kept for its
/// links, treated as gone: deprovisioned per `on_remove`, counted by the deletion threshold).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyScope {
    /// The policy's name, for the errors that name it.
    pub policy: String,
    pub scoping: Scoping,
    pub groups: GroupOptions,
}

/// What one run knows to decide the scope: the users in the scoping groups (when set).
pub struct ScopeRun<'a> {
    scope: &'a PolicyScope,
    in_groups: Option<HashSet<String>>,
}

impl PolicyScope {
    pub fn of(policy: &crate::policy::Policy) -> PolicyScope {
        PolicyScope { policy: policy.name.clone(), scoping: policy.scope.clone(), groups: policy.groups.clone() }
    }

    pub fn flattened(&self) -> bool {
        self.groups.members == MemberMode::Flattened
    }

    /// Before validation: the scoping groups' users from the mirror's links; in a delta, the
    /// users whose membership no longer agrees with their recorded scope become dirty.
    pub fn begin(&self, store: &mut StateStore, all: bool) -> Result<ScopeRun<'_>> {
        let run = self.read(store)?;
        if let (false, Some(users)) = (all, &run.in_groups) {
            store.mark_scope_membership_dirty(users)?;
        }
        Ok(run)
    }

    /// The scoping groups' users from the mirror's links, to judge objects (`sync --user`). A
    /// scoping group the mirror does not hold is a configuration error, before anything is
    /// judged: its members cannot be known, and every user would leave the scope.
    pub fn read(&self, store: &StateStore) -> Result<ScopeRun<'_>> {
        let in_groups = if self.scoping.groups.is_empty() {
            None
        } else {
            for group in &self.scoping.groups {
                let found = match store.mirrored(&group.to_string())? {
                    Some(m) if m.object.kind == ObjectKind::Group => continue,
                    Some(m) => GroupLookup::NotAGroup(m.object.dn.to_string()),
                    None => GroupLookup::NotMirrored,
                };
                return Err(missing_group(&self.policy, *group, &found));
            }
            let roots: Vec<String> = self.scoping.groups.iter().map(ToString::to_string).collect();
            Some(store.users_in_groups(&roots, self.scoping.transitive)?)
        };
        Ok(ScopeRun { scope: self, in_groups })
    }

    /// After validation, in a delta with flattened groups: the groups above a changed group change too.
    pub fn finish(&self, store: &mut StateStore, all: bool) -> Result<(), StateError> {
        if !all && self.flattened() {
            store.mark_parent_groups_dirty()?;
        }
        Ok(())
    }
}

/// What the mirror (or a validation's read) holds under a scoping group's objectGUID.
pub use crate::policy::scoping::GroupLookup;

/// The error for a scoping group that cannot be evaluated: a configuration error (exit 78)
/// naming the policy and the objectGUID, with what to do.
pub fn missing_group(policy: &str, group: GroupRef, found: &GroupLookup) -> AppError {
    AppError::config(crate::policy::scoping::missing_group_message(policy, group, found)).with_hint(format!(
        "correct the objectGUID in [policies.{policy}.scope] groups (PowerShell: (Get-ADGroup NAME).ObjectGUID), or select the OU that holds the group (`ausi select-ous --add OU`; with [policies.{policy}.groups] only or filter, it need not sync itself)"
    ))
}

/// A policy preview: who the policy `after` takes in and leaves out compared with `before`,
/// both judged on the same mirror (so what changed in AD is not counted as the policy's doing).
/// Reads the mirror page by page; only the objects that change are kept.
pub fn policy_changes(store: &StateStore, before: &PolicyScope, after: &PolicyScope) -> Result<ScopeChanges> {
    let (old, new) = (before.read(store)?, after.read(store)?);
    let mut changes = ScopeChanges::default();
    for kind in [ObjectKind::User, ObjectKind::Group] {
        let mut from = PageEnd::default();
        loop {
            let page = store.work_page(kind, true, &from, 500)?;
            let Some(last) = page.last() else { break };
            from = last.page_end();
            for m in &page {
                let was = old.exclusion(&m.guid, &m.object).is_none();
                let is = new.exclusion(&m.guid, &m.object).is_none();
                changes.add(&m.object, was, is);
            }
        }
    }
    changes.sort();
    Ok(changes)
}

impl ScopeRun<'_> {
    /// `None`: the policy takes the object (in the OUs, as every mirrored object is); else why not.
    pub fn exclusion(&self, guid: &str, o: &DirObject) -> Option<Exclusion> {
        let in_groups = || self.in_groups.as_ref().is_some_and(|users| users.contains(guid));
        exclusion(self.scope, o, &in_groups)
    }
}

/// The policy's verdict on an object of the selected OUs: `None` it takes it, else the rule that
/// leaves it out. `in_groups` answers whether a user is a member of the scoping groups (from the
/// mirror in a sync, from the groups read in `validate`): the one decision both share.
pub fn exclusion(scope: &PolicyScope, o: &DirObject, in_groups: &dyn Fn() -> bool) -> Option<Exclusion> {
    match o.kind {
        ObjectKind::User => scope.scoping.exclusion(o, in_groups),
        ObjectKind::Group => scope.groups.exclusion(o.guid, o),
    }
}

/// Where a user of the selected OUs stands, as `sync --dry-run --user` and `validate --user`
/// say it.
pub fn verdict(excluded: Option<&Exclusion>) -> String {
    match excluded {
        Some(why) => format!("in the selected OUs, out of the policy's scope ({}: {why})", why.rule()),
        None => "in the selected scope".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dn(s: &str) -> Dn {
        Dn::parse(s).unwrap()
    }

    fn ou(d: &str, g: u8) -> Container {
        Container { kind: ContainerKind::Ou, dn: dn(d), guid: Some(ObjectGuid([g; 16])), name: String::new() }
    }

    #[test]
    fn scope_bases_are_outermost_and_exclusions_apply() {
        let s = Scope::new(
            vec![dn("OU=Sales,OU=Corp,DC=x"), dn("OU=Corp,DC=x"), dn("OU=Other,DC=x")],
            vec![dn("OU=Backend,OU=Eng,OU=Corp,DC=x")],
        );
        assert_eq!(s.bases(), [dn("OU=Corp,DC=x"), dn("OU=Other,DC=x")]);
        assert!(s.contains(&dn("CN=a,OU=Sales,OU=Corp,DC=x")));
        assert!(s.contains(&dn("cn=b,ou=eng,ou=corp,dc=X")));
        assert!(!s.contains(&dn("CN=c,OU=Backend,OU=Eng,OU=Corp,DC=x")));
        assert!(!s.contains(&dn("CN=d,OU=Corporate,DC=x")));
        assert!(!s.contains(&dn("CN=e,DC=x")));
    }

    #[test]
    fn renamed_ou_is_followed_by_guid() {
        let stored = ScopeConfig {
            ous: vec![OuRef { dn: "OU=Sales,DC=x".into(), guid: Some(ObjectGuid([7; 16]).to_string()) }],
            excluded: vec![],
        };
        let r = resolve(&stored, &[ou("OU=Vertrieb,DC=x", 7), ou("OU=Sales,DC=x", 8)]);
        assert_eq!(r.selected[0].dn, dn("OU=Vertrieb,DC=x"));
        assert_eq!(r.selected[0].renamed_from.as_deref(), Some("OU=Sales,DC=x"));
        assert_eq!(r.warnings()[0].code, "ou-renamed");
        assert_eq!(r.to_config().ous[0].dn, "OU=Vertrieb,DC=x");
    }

    #[test]
    fn vanished_ou_is_reported_and_kept() {
        let stored = ScopeConfig {
            ous: vec![OuRef { dn: "OU=Gone,DC=x".into(), guid: Some(ObjectGuid([9; 16]).to_string()) }],
            excluded: vec![],
        };
        let r = resolve(&stored, &[ou("OU=Gone,DC=x", 1)]);
        assert!(r.selected.is_empty());
        assert_eq!(r.missing.len(), 1);
        assert_eq!(r.to_config(), stored);
    }

    /// u1 (Sales) and u2 (Engineering) in group 10, u3 (Sales) in none; u4 shares no group.
    fn mirror() -> (tempfile::TempDir, StateStore) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(&dir.path().join("state.db"), "2026-12-03T00:00:00Z").unwrap();
        let user = |id: u8, department: &str| DirObject {
            kind: ObjectKind::User,
            dn: dn(&format!("CN=User {id},OU=P,DC=x")),
            guid: Some(ObjectGuid([id; 16])),
            sam_account_name: Some(format!("u{id}")),
            user_principal_name: Some(format!("u{id}@x.example")),
            department: Some(department.to_owned()),
            ..DirObject::default()
        };
        let group = DirObject {
            kind: ObjectKind::Group,
            dn: dn("CN=Staff,OU=P,DC=x"),
            guid: Some(ObjectGuid([10; 16])),
            cn: Some("Staff".into()),
            members: [1, 2].iter().map(|id| dn(&format!("CN=User {id},OU=P,DC=x")).normalized()).collect(),
            ..DirObject::default()
        };
        let objects = [user(1, "Sales"), user(2, "Engineering"), user(3, "Sales"), group];
        store.mirror_put(&objects, 1, false, &crate::store::directory_keys).unwrap();
        store.mirror_resolve_links(false).unwrap();
        (dir, store)
    }

    fn policy(scope: &str) -> PolicyScope {
        PolicyScope { policy: "Staff".into(), scoping: toml::from_str(scope).unwrap(), groups: GroupOptions::default() }
    }

    const STAFF: &str = "0a0a0a0a-0a0a-0a0a-0a0a-0a0a0a0a0a0a";

    #[test]
    fn a_policy_preview_lists_who_enters_and_leaves_judged_on_the_same_mirror() {
        let (_dir, store) = mirror();
        let everyone = PolicyScope::default();
        let narrow = policy(&format!("filter = \"(department=Sales)\"\ngroups = [\"{STAFF}\"]"));
        let out = policy_changes(&store, &everyone, &narrow).unwrap();
        assert_eq!(
            (out.before.clone(), out.after.clone()),
            (Counts { users: 3, groups: 1 }, Counts { users: 1, groups: 1 })
        );
        assert_eq!((out.users_entering, out.users_leaving, out.groups_entering, out.groups_leaving), (0, 2, 0, 0));
        let leaving: Vec<(&str, Option<&str>)> = out.leaving.iter().map(|o| (o.dn(), o.name())).collect();
        assert_eq!(
            leaving,
            [("CN=User 2,OU=P,DC=x", Some("u2@x.example")), ("CN=User 3,OU=P,DC=x", Some("u3@x.example"))]
        );
        assert!(out.leaving.iter().all(|o| !o.entering && o.kind == ObjectKind::User));
        // The other way round, the same objects enter.
        let back = policy_changes(&store, &narrow, &everyone).unwrap();
        assert_eq!(
            back.entering.iter().map(ScopeObject::dn).collect::<Vec<_>>(),
            ["CN=User 2,OU=P,DC=x", "CN=User 3,OU=P,DC=x"]
        );
        assert!(back.leaving.is_empty());
        // The same policy on both sides changes nobody.
        let same = policy_changes(&store, &narrow, &narrow).unwrap();
        assert_eq!((same.entering.len(), same.leaving.len(), same.after.users), (0, 0, 1));
    }

    #[test]
    fn a_scoping_group_the_mirror_does_not_hold_is_a_configuration_error_naming_policy_and_guid() {
        let (_dir, store) = mirror();
        let placeholder = "00000000-0000-0000-0000-000000000000";
        let err = policy(&format!("groups = [\"{placeholder}\"]")).read(&store).err().unwrap();
        assert_eq!(err.exit_status(), crate::exit::ExitStatus::Config);
        assert!(err.message.contains("\"Staff\"") && err.message.contains(placeholder), "{}", err.message);
        assert!(err.message.contains("every user would leave the scope"), "{}", err.message);
        // A user's objectGUID is not a group's.
        let user = ObjectGuid([1; 16]).to_string();
        let err = policy(&format!("groups = [\"{STAFF}\", \"{user}\"]")).read(&store).err().unwrap();
        assert!(err.message.contains("CN=User 1,OU=P,DC=x, which is not a group"), "{}", err.message);
        // Found: the run goes on, and the group's members are in scope.
        let staff = policy(&format!("groups = [\"{STAFF}\"]"));
        let run = staff.read(&store).unwrap();
        let m = store.mirrored(&ObjectGuid([3; 16]).to_string()).unwrap().unwrap();
        assert_eq!(run.exclusion(&m.guid, &m.object).unwrap().rule(), "group");
    }

    #[test]
    fn the_table_shows_twenty_of_each_list_with_names_and_counts_the_rest() {
        let mut changes = ScopeChanges::default();
        for i in 0..25 {
            let o = DirObject {
                kind: ObjectKind::User,
                dn: dn(&format!("CN=U{i:02},DC=x")),
                user_principal_name: Some(format!("u{i:02}@x")),
                ..DirObject::default()
            };
            changes.add(&o, false, true);
        }
        let group = DirObject {
            kind: ObjectKind::Group,
            dn: dn("CN=G,DC=x"),
            cn: Some("Team G".into()),
            ..DirObject::default()
        };
        changes.add(&group, true, false);
        changes.add(&group, true, true);
        changes.sort();
        let lines = changes.lines();
        assert!(lines.contains("Scope: 0 users and 2 groups before, 25 users and 1 group after.\n"), "{lines}");
        assert!(lines.contains("25 users and 0 groups enter, 0 users and 1 group leave.\n"), "{lines}");
        assert!(lines.contains("  entering: user u00@x, CN=U00,DC=x\n"), "{lines}");
        assert!(lines.contains("  entering: user u19@x, CN=U19,DC=x\n"), "{lines}");
        assert!(!lines.contains("u20@x"), "{lines}");
        assert!(lines.contains("  … and 5 more entering (the JSON report lists them all)\n"), "{lines}");
        assert!(lines.contains("  leaving: group Team G, CN=G,DC=x\n"), "{lines}");
        // The JSON has every object, with its names.
        let json = serde_json::to_value(&changes).unwrap();
        assert_eq!(json["entering"].as_array().unwrap().len(), 25);
        assert_eq!(json["entering"][0]["user_principal_name"], "u00@x");
        assert_eq!(json["entering"][0]["change"], "entering");
        assert_eq!(json["leaving"][0]["display_name"], "Team G");
        assert_eq!(json["leaving"][0]["sam_account_name"], serde_json::Value::Null);
    }

    #[test]
    fn lookup_by_dn_or_guid() {
        let cs = [ou("OU=Corp,DC=x", 3)];
        assert!(lookup("ou=CORP, dc=x", &cs).is_some());
        assert!(lookup(&ObjectGuid([3; 16]).to_string(), &cs).is_some());
        assert!(lookup("OU=Nope,DC=x", &cs).is_none());
    }
}
