//! `ausi select-ous`: change which OUs are synchronised, with a preview of who enters and
//! leaves the sync scope before anything is saved.

use serde::Serialize;

use super::{Context, Report, display_path, open_directory};
use crate::cli::SelectOusArgs;
use crate::config;
use crate::directory::{Container, Directory, Dn, ObjectQuery};
use crate::error::{AppError, Result};
use crate::exit::ExitStatus;
use crate::output::{self, Outcome, Warning};
use crate::sync::scope::read_scope;
use crate::sync::scope::{self, MissingOu, Resolution, ResolvedOu, Scope, ScopeChanges};

#[derive(Debug, Serialize)]
pub struct SelectOusReport {
    pub config_path: String,
    pub selected: Vec<ResolvedOu>,
    pub excluded: Vec<ResolvedOu>,
    pub missing: Vec<MissingOu>,
    /// Whether the selection differs from the stored one.
    pub changed: bool,
    /// Whether the new selection was written (false with --dry-run or when nothing changed).
    pub saved: bool,
    pub changes: ScopeChanges,
}

pub async fn run(ctx: &Context<'_>, args: &SelectOusArgs) -> Result<Outcome> {
    let mut warnings = Vec::new();
    // select-ous may be the first command run: it creates the configuration file.
    let config = ctx.config_or_none(&mut warnings)?;
    let mut directory = open_directory(&args.directory, config.as_ref(), &mut warnings).await?;
    let nc = directory.info().await?.naming_context;
    let containers = directory.containers(&nc).await?;
    let stored = config.as_ref().map(|c| c.scope.clone()).unwrap_or_default();
    let before = scope::resolve(&stored, &containers);
    let after = apply(&before, args, &containers)?;
    warnings.extend(after.warnings());
    for o in &after.selected {
        if let Some(outer) = after.selected.iter().find(|p| p.dn != o.dn && o.dn.is_descendant_of(&p.dn)) {
            warnings.push(Warning::new(
                "ou-already-covered",
                format!("{} is inside the selected {} and adds nothing to the scope", o.dn, outer.dn),
            ));
        }
    }

    let (old_scope, new_scope) = (before.scope(), after.scope());
    let union = Scope::new(old_scope.bases().iter().chain(new_scope.bases()).cloned().collect(), vec![]);
    let mut changes = ScopeChanges::default();
    let summary = read_scope(&mut directory, &union, ObjectQuery::USERS_AND_GROUPS, ctx.printer, &mut |object| {
        changes.add(&object, old_scope.contains(&object.dn), new_scope.contains(&object.dn));
    })
    .await?;
    if !summary.unreadable.is_empty() {
        return Err(AppError::new(
            crate::error::ErrorKind::SafetyStop,
            format!(
                "{} entries of the source could not be read (first: {}: {}); the scope preview would be wrong, so nothing was saved",
                summary.unreadable.len(),
                summary.unreadable[0].location,
                summary.unreadable[0].message
            ),
        ));
    }
    changes.sort();

    let new_config = after.to_config();
    let changed = new_config != stored;
    let saved = changed && !args.dry_run;
    if saved {
        config::save_scope(&ctx.config_path, &new_config)?;
    }
    let report = SelectOusReport {
        config_path: display_path(&ctx.config_path),
        selected: after.selected,
        excluded: after.excluded,
        missing: after.missing,
        changed,
        saved,
        changes,
    };
    let mut outcome = Outcome::new(Report::SelectOus(report), ExitStatus::Ok);
    outcome.warnings = warnings;
    outcome.dry_run = args.dry_run;
    Ok(outcome)
}

/// The selection after this command's flags, applied in the order clear/set → remove → add →
/// unexclude → exclude. Every OU named must exist; every exclusion must lie inside the selection.
fn apply(current: &Resolution, args: &SelectOusArgs, containers: &[Container]) -> Result<Resolution> {
    let mut next = current.clone();
    let find = |flag: &str, text: &str| -> Result<ResolvedOu> {
        let c = scope::lookup(text, containers).ok_or_else(|| {
            AppError::usage(format!("{flag} {text:?}: no OU or default container with that DN or objectGUID exists"))
                .with_hint("`ausi list-ous` shows every OU with its DN and objectGUID")
        })?;
        Ok(ResolvedOu { dn: c.dn.clone(), guid: c.guid, kind: c.kind, renamed_from: None })
    };
    if args.clear || !args.set.is_empty() {
        next.selected.clear();
        next.missing.retain(|m| m.role != "selected");
        if args.clear {
            next.excluded.clear();
            next.missing.clear();
        }
        for text in &args.set {
            push_unique(&mut next.selected, find("--set", text)?);
        }
    }
    for text in &args.remove {
        let before = next.selected.len() + next.missing.len();
        let matches = |dn: &Dn, guid: Option<String>| matches_arg(text, dn, guid.as_deref());
        next.selected.retain(|o| !matches(&o.dn, o.guid.map(|g| g.to_string())));
        next.missing.retain(|m| m.role != "selected" || !Dn::parse(&m.dn).is_ok_and(|dn| matches(&dn, m.guid.clone())));
        if next.selected.len() + next.missing.len() == before {
            return Err(AppError::usage(format!("--remove {text:?}: that OU is not selected")));
        }
    }
    for text in &args.add {
        push_unique(&mut next.selected, find("--add", text)?);
    }
    for text in &args.unexclude {
        let before = next.excluded.len() + next.missing.len();
        next.excluded.retain(|o| !matches_arg(text, &o.dn, o.guid.map(|g| g.to_string()).as_deref()));
        next.missing.retain(|m| {
            m.role != "excluded" || !Dn::parse(&m.dn).is_ok_and(|dn| matches_arg(text, &dn, m.guid.as_deref()))
        });
        if next.excluded.len() + next.missing.len() == before {
            return Err(AppError::usage(format!("--unexclude {text:?}: that OU is not excluded")));
        }
    }
    for text in &args.exclude {
        let ou = find("--exclude", text)?;
        if !next.selected.iter().any(|s| ou.dn.is_descendant_of(&s.dn) && ou.dn != s.dn) {
            return Err(AppError::usage(format!(
                "--exclude {text:?}: {} is not inside a selected OU (exclude a sub-tree of a selection, or --remove the OU itself)",
                ou.dn
            )));
        }
        push_unique(&mut next.excluded, ou);
    }
    // Exclusions that no selected OU contains any more mean nothing: drop them.
    next.excluded.retain(|x| next.selected.iter().any(|s| x.dn.is_descendant_of(&s.dn)));
    Ok(next)
}

fn push_unique(list: &mut Vec<ResolvedOu>, ou: ResolvedOu) {
    if !list.iter().any(|o| o.dn == ou.dn) {
        list.push(ou);
    }
}

fn matches_arg(text: &str, dn: &Dn, guid: Option<&str>) -> bool {
    match crate::directory::ObjectGuid::parse(text.trim()) {
        Some(g) => guid.and_then(crate::directory::ObjectGuid::parse) == Some(g),
        None => Dn::parse(text).is_ok_and(|d| d == *dn),
    }
}

impl SelectOusReport {
    pub fn table(&self) -> String {
        let mut t = output::table(&["", "OU", "objectGUID"]);
        for (label, list) in [("selected", &self.selected), ("excluded", &self.excluded)] {
            for o in list {
                t.add_row(vec![
                    label.to_owned(),
                    output::cell(&o.dn.to_string()),
                    o.guid.map(|g| g.to_string()).unwrap_or_default(),
                ]);
            }
        }
        for m in &self.missing {
            t.add_row(vec![format!("{} (MISSING)", m.role), output::cell(&m.dn), m.guid.clone().unwrap_or_default()]);
        }
        let mut out = format!("{t}\n{}", self.changes.lines());
        out.push_str(&match (self.changed, self.saved) {
            (false, _) => "The selection is unchanged.\n".to_owned(),
            (true, true) => format!("Saved to {}.\n", output::cell(&self.config_path)),
            (true, false) => "Dry run: nothing was saved.\n".to_owned(),
        });
        out
    }
}
