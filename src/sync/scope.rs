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
use crate::error::Result;
use crate::output::Warning;
use crate::policy::scoping::{Attributes, Exclusion, GroupOptions, MemberMode, Scoping};
use crate::store::{StateError, StateStore};

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

/// The active policy's scope beyond the OUs and its group options, as a run applies them to
/// the mirror: an object in the OUs that the policy leaves out gets status `out` (kept for its
/// links, treated as gone: deprovisioned per `on_remove`, counted by the deletion threshold).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyScope {
    pub scoping: Scoping,
    pub groups: GroupOptions,
}

/// A directory object as the policy's rules read it.
struct Object<'a>(&'a DirObject);

impl Attributes for Object<'_> {
    fn values(&self, name: &str) -> Vec<String> {
        self.0.values(name)
    }
}

/// What one run knows to decide the scope: the users in the scoping groups (when set).
pub struct ScopeRun<'a> {
    scope: &'a PolicyScope,
    in_groups: Option<HashSet<String>>,
}

impl PolicyScope {
    pub fn of(policy: &crate::policy::Policy) -> PolicyScope {
        PolicyScope { scoping: policy.scope.clone(), groups: policy.groups.clone() }
    }

    pub fn flattened(&self) -> bool {
        self.groups.members == MemberMode::Flattened
    }

    /// Before validation: the scoping groups' users from the mirror's links; in a delta, the
    /// users whose membership no longer agrees with their recorded scope become dirty.
    pub fn begin(&self, store: &mut StateStore, all: bool) -> Result<ScopeRun<'_>, StateError> {
        let run = self.read(store)?;
        if let (false, Some(users)) = (all, &run.in_groups) {
            store.mark_scope_membership_dirty(users)?;
        }
        Ok(run)
    }

    /// The scoping groups' users from the mirror's links, to judge objects (`sync --user`).
    pub fn read(&self, store: &StateStore) -> Result<ScopeRun<'_>, StateError> {
        let in_groups = if self.scoping.groups.is_empty() {
            None
        } else {
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

impl ScopeRun<'_> {
    /// `None`: the policy takes the object (in the OUs, as every mirrored object is); else why not.
    pub fn exclusion(&self, guid: &str, o: &DirObject) -> Option<Exclusion> {
        match o.kind {
            ObjectKind::User => {
                let in_groups = || self.in_groups.as_ref().is_some_and(|users| users.contains(guid));
                self.scope.scoping.exclusion(&Object(o), &in_groups)
            }
            ObjectKind::Group => self.scope.groups.exclusion(o.guid, &Object(o)),
        }
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

    #[test]
    fn lookup_by_dn_or_guid() {
        let cs = [ou("OU=Corp,DC=x", 3)];
        assert!(lookup("ou=CORP, dc=x", &cs).is_some());
        assert!(lookup(&ObjectGuid([3; 16]).to_string(), &cs).is_some());
        assert!(lookup("OU=Nope,DC=x", &cs).is_none());
    }
}
