//! `ausi list-ous`: the OU tree with user and group counts and the current selection.

use std::collections::HashMap;

use serde::Serialize;

use super::{Context, open_directory, parse_dn_arg, resolve_selection};
use crate::cli::ListOusArgs;
use crate::directory::{ContainerKind, Directory, DirectoryInfo, Dn, ObjectKind, ObjectQuery, serialize_display};
use crate::error::Result;
use crate::exit::ExitStatus;
use crate::output::{self, Outcome, Warning};
use crate::sync::scope::Scope;
use crate::sync::scope::read_scope;

#[derive(Debug, Serialize)]
pub struct OuRow {
    #[serde(serialize_with = "serialize_display")]
    pub dn: Dn,
    pub object_guid: Option<String>,
    pub name: String,
    pub kind: ContainerKind,
    /// RDNs below the naming context (`OU=Corp,DC=example,DC=test` is 1).
    pub depth: usize,
    pub users_direct: u64,
    pub groups_direct: u64,
    pub users_subtree: u64,
    pub groups_subtree: u64,
    /// Chosen with `select-ous --add`.
    pub selected: bool,
    /// Left out with `select-ous --exclude`.
    pub excluded: bool,
    /// Synchronised: selected itself or inside a selected OU, and not excluded.
    pub in_scope: bool,
}

#[derive(Debug, Serialize)]
pub struct ListOusReport {
    pub source: String,
    /// What the directory says about itself (rootDSE: dnsHostName, highestCommittedUSN).
    pub directory: DirectoryInfo,
    #[serde(serialize_with = "serialize_display")]
    pub naming_context: Dn,
    #[serde(serialize_with = "serialize_display")]
    pub base: Dn,
    pub ous: Vec<OuRow>,
    pub totals: Totals,
}

#[derive(Debug, Serialize)]
pub struct Totals {
    pub ous: usize,
    pub containers: usize,
    pub users: u64,
    pub groups: u64,
    pub users_in_scope: u64,
    pub groups_in_scope: u64,
}

pub async fn run(ctx: &Context<'_>, args: &ListOusArgs) -> Result<Outcome> {
    let mut warnings = Vec::new();
    let config = ctx.optional_config(&mut warnings)?;
    let mut directory = open_directory(&args.directory, config.as_ref(), &mut warnings).await?;
    let info = directory.info().await?;
    let base = match &args.base {
        Some(text) => parse_dn_arg("--base", text)?,
        None => info.naming_context.clone(),
    };
    let (nc, resolution) = resolve_selection(&mut directory, config.as_ref()).await?;
    warnings.extend(resolution.warnings());
    let scope = resolution.scope();
    let containers = directory.containers(&base).await?;

    let mut rows: Vec<OuRow> = containers
        .into_iter()
        .map(|c| {
            let selected = resolution.selected.iter().any(|o| o.dn == c.dn);
            let excluded = resolution.excluded.iter().any(|o| o.dn == c.dn);
            OuRow {
                depth: c.dn.depth_below(&nc).unwrap_or(c.dn.len()),
                object_guid: c.guid.map(|g| g.to_string()),
                in_scope: scope.contains(&c.dn),
                dn: c.dn,
                name: c.name,
                kind: c.kind,
                users_direct: 0,
                groups_direct: 0,
                users_subtree: 0,
                groups_subtree: 0,
                selected,
                excluded,
            }
        })
        .collect();
    let index: HashMap<String, usize> = rows.iter().enumerate().map(|(i, r)| (r.dn.normalized(), i)).collect();

    let mut totals = Totals {
        ous: rows.iter().filter(|r| r.kind == ContainerKind::Ou).count(),
        containers: rows.iter().filter(|r| r.kind == ContainerKind::Container).count(),
        users: 0,
        groups: 0,
        users_in_scope: 0,
        groups_in_scope: 0,
    };
    let everything = Scope::new(vec![base.clone()], vec![]);
    let summary = read_scope(&mut directory, &everything, ObjectQuery::USERS_AND_GROUPS, ctx.printer, &mut |object| {
        let user = object.kind == ObjectKind::User;
        let in_scope = scope.contains(&object.dn);
        if user {
            totals.users += 1;
            totals.users_in_scope += u64::from(in_scope);
        } else {
            totals.groups += 1;
            totals.groups_in_scope += u64::from(in_scope);
        }
        let mut direct = true;
        let mut ancestor = object.dn.parent();
        while let Some(dn) = ancestor {
            if let Some(&i) = index.get(&dn.normalized()) {
                let row = &mut rows[i];
                if user {
                    row.users_subtree += 1;
                    row.users_direct += u64::from(direct);
                } else {
                    row.groups_subtree += 1;
                    row.groups_direct += u64::from(direct);
                }
            }
            direct = false;
            if dn == base {
                break;
            }
            ancestor = dn.parent();
        }
    })
    .await?;
    for u in &summary.unreadable {
        warnings.push(Warning::new("unreadable-entry", format!("{}: {}", u.location, u.message)));
    }
    rows.sort_by_cached_key(|r| tree_key(&r.dn));
    let exit = if summary.unreadable.is_empty() { ExitStatus::Ok } else { ExitStatus::Findings };
    let report =
        ListOusReport { source: info.source.clone(), directory: info, naming_context: nc, base, ous: rows, totals };
    let mut outcome = Outcome::new(super::Report::ListOus(report), exit);
    outcome.warnings = warnings;
    Ok(outcome)
}

/// Sort key that puts every OU right after its parent, siblings alphabetically.
fn tree_key(dn: &Dn) -> Vec<String> {
    let mut key = Vec::with_capacity(dn.len());
    let mut current = Some(dn.clone());
    while let Some(d) = current {
        if let Some(v) = d.rdn_value() {
            key.push(v.to_lowercase());
        }
        current = d.parent();
    }
    key.reverse();
    key
}

impl ListOusReport {
    pub fn table(&self) -> String {
        let mut t = output::table(&["OU", "Users (here/all)", "Groups (here/all)", "Sync", "objectGUID"]);
        for r in &self.ous {
            let indent = "  ".repeat(r.depth.saturating_sub(1));
            let name = match r.kind {
                ContainerKind::Ou => output::cell(&r.name),
                ContainerKind::Container => format!("{} (container)", output::cell(&r.name)),
            };
            let sync = if r.excluded {
                "excluded"
            } else if r.selected {
                "selected"
            } else if r.in_scope {
                "in scope"
            } else {
                ""
            };
            t.add_row(vec![
                format!("{indent}{name}"),
                format!("{} / {}", r.users_direct, r.users_subtree),
                format!("{} / {}", r.groups_direct, r.groups_subtree),
                sync.to_owned(),
                r.object_guid.clone().unwrap_or_default(),
            ]);
        }
        let n = |count: u64, word: &str| output::plural(count, word);
        let in_scope = self.totals.users_in_scope + self.totals.groups_in_scope;
        format!(
            "{}: {}\n{t}\n{}, {}; {} and {}, of which {} and {} {} in the sync scope\n",
            output::cell(&self.source),
            output::cell(&self.base.to_string()),
            n(self.totals.ous as u64, "OU"),
            n(self.totals.containers as u64, "container"),
            n(self.totals.users, "user"),
            n(self.totals.groups, "group"),
            n(self.totals.users_in_scope, "user"),
            n(self.totals.groups_in_scope, "group"),
            if in_scope == 1 { "is" } else { "are" }
        )
    }
}
