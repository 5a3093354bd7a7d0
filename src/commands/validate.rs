//! `ausi validate`: every user in scope against the rules a sync applies (sync/validate.rs).

use serde::Serialize;

use super::{Context, Report, open_directory, parse_dn_arg, read_scope, resolve_selection};
use crate::cli::ValidateArgs;
use crate::directory::{AnyDirectory, Directory, Dn, ObjectQuery};
use crate::error::{AppError, ErrorKind, Result};
use crate::exit::ExitStatus;
use crate::output::{self, Outcome, Warning};
use crate::sync::scope::Scope;
use crate::sync::validate::{Explanation, Validation, Validator};

#[derive(Debug, Serialize)]
pub struct ValidateReport {
    pub source: String,
    /// The sub-trees that were read.
    pub scope: ScopeDescription,
    #[serde(flatten)]
    pub validation: Validation,
    /// With --user: that user, rule by rule (null when no such user is in the scope).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<Option<Explanation>>,
}

#[derive(Debug, Serialize)]
pub struct ScopeDescription {
    /// `selection` (the configured OUs), `base` (--base) or `export` (the whole LDIF file).
    pub from: &'static str,
    pub bases: Vec<String>,
    pub excluded: Vec<String>,
}

pub async fn run(ctx: &Context<'_>, args: &ValidateArgs) -> Result<Outcome> {
    let mut warnings = Vec::new();
    let config = ctx.optional_config(&mut warnings)?;
    let nothing_selected = config.as_ref().is_none_or(|c| c.scope.ous.is_empty());
    if args.base.is_none() && nothing_selected && !super::reads_ldif(&args.directory)? {
        return Err(no_selection());
    }
    let mut directory = open_directory(&args.directory, config.as_ref(), &mut warnings).await?;
    let info = directory.info().await?;
    let (scope, description) = choose_scope(&mut directory, args, config.as_ref(), &mut warnings).await?;

    let mut validator = match &args.user {
        Some(user) => Validator::explaining(user),
        None => Validator::new(),
    };
    let summary =
        read_scope(&mut directory, &scope, ObjectQuery::USERS, ctx.printer, &mut |user| validator.add(&user)).await?;
    let (validation, explanation) = validator.finish(summary.unreadable);
    if validation.summary.users_checked == 0 {
        warnings.push(Warning::new("scope-empty", "no users were found in the scope"));
    }
    let exit = match (&args.user, &explanation) {
        // Not in scope: a sync would not provision this user either.
        (Some(user), None) => {
            warnings.push(Warning::new(
                "user-not-found",
                format!(
                    "no user with userPrincipalName or sAMAccountName {user:?} in the scope ({} users checked)",
                    validation.summary.users_checked
                ),
            ));
            ExitStatus::Findings
        }
        (Some(_), Some(e)) if e.checks.iter().all(|c| c.passed) => ExitStatus::Ok,
        (Some(_), Some(_)) => ExitStatus::Findings,
        (None, _) if validation.summary.with_problems > 0 || validation.summary.unreadable_entries > 0 => {
            ExitStatus::Findings
        }
        (None, _) => ExitStatus::Ok,
    };
    let user = args.user.as_ref().map(|_| explanation);
    let report = ValidateReport { source: info.source, scope: description, validation, user };
    let mut outcome = Outcome::new(Report::Validate(report), exit);
    outcome.warnings = warnings;
    Ok(outcome)
}

/// `--base`, else the configured selection, else (for an export only) the whole file.
async fn choose_scope(
    directory: &mut AnyDirectory,
    args: &ValidateArgs,
    config: Option<&crate::config::AgentConfig>,
    warnings: &mut Vec<Warning>,
) -> Result<(Scope, ScopeDescription)> {
    if let Some(text) = &args.base {
        let base = parse_dn_arg("--base", text)?;
        let description = ScopeDescription { from: "base", bases: vec![base.to_string()], excluded: vec![] };
        return Ok((Scope::new(vec![base], vec![]), description));
    }
    let (_, resolution) = resolve_selection(directory, config).await?;
    warnings.extend(resolution.warnings());
    // A vanished exclusion took its users with it (warned above); a vanished selected OU
    // means the scope is not what the administrator chose: stop.
    let gone: Vec<String> = resolution.missing.iter().filter(|m| m.role == "selected").map(|m| m.dn.clone()).collect();
    if !gone.is_empty() {
        return Err(AppError::new(
            ErrorKind::SafetyStop,
            format!("selected OUs no longer exist in the directory: {}", gone.join("; ")),
        )
        .with_hint("restore the OU, or take it out of the selection with `ausi select-ous --remove DN`"));
    }
    if resolution.selected.is_empty() {
        if matches!(directory, AnyDirectory::Ldif(_)) {
            let description = ScopeDescription { from: "export", bases: vec![], excluded: vec![] };
            return Ok((Scope::new(vec![Dn::default()], vec![]), description));
        }
        return Err(no_selection());
    }
    let scope = resolution.scope();
    let description = ScopeDescription {
        from: "selection",
        bases: scope.bases().iter().map(Dn::to_string).collect(),
        excluded: resolution.excluded.iter().map(|o| o.dn.to_string()).collect(),
    };
    Ok((scope, description))
}

fn plural(n: u64, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

fn no_selection() -> AppError {
    AppError::config("no OUs are selected for sync")
        .with_hint("choose them with `ausi select-ous --add OU=…`, or validate one sub-tree with --base DN")
}

impl ValidateReport {
    pub fn table(&self) -> String {
        let mut out = String::new();
        if let Some(None) = &self.user {
            return "The user is not in the scope.\n".to_owned();
        }
        if let Some(Some(user)) = &self.user {
            let mut t = output::table(&["Rule", "Result", "Detail"]);
            for c in &user.checks {
                t.add_row(vec![
                    c.rule.id().to_owned(),
                    if c.passed { "pass".to_owned() } else { "FAIL".to_owned() },
                    c.problem.as_ref().map(|p| output::cell(&p.message)).unwrap_or_else(|| c.description.to_owned()),
                ]);
            }
            out.push_str(&format!(
                "{} ({}, objectGUID {})\n{t}\n",
                output::cell(&user.identity.dn),
                output::cell(user.identity.sam_account_name.as_deref().unwrap_or("-")),
                user.identity.object_guid.as_deref().unwrap_or("-"),
            ));
            return out;
        }
        if !self.validation.users.is_empty() {
            let mut t = output::table(&["User", "sAMAccountName", "Rule", "Problem"]);
            for u in &self.validation.users {
                for (i, p) in u.problems.iter().enumerate() {
                    let first = i == 0;
                    t.add_row(vec![
                        if first { output::cell(&u.identity.dn) } else { String::new() },
                        if first {
                            output::cell(u.identity.sam_account_name.as_deref().unwrap_or("-"))
                        } else {
                            String::new()
                        },
                        p.rule.id().to_owned(),
                        output::cell(&p.message),
                    ]);
                }
            }
            out.push_str(&format!("{t}\n"));
        }
        for u in &self.validation.unreadable {
            out.push_str(&format!("unreadable entry at {}: {}\n", u.location, output::cell(&u.message)));
        }
        let s = &self.validation.summary;
        out.push_str(&format!(
            "{} checked: {} valid, {} with problems, {} disabled (counted, not a problem).\n",
            plural(s.users_checked, "user"),
            s.valid,
            s.with_problems,
            s.disabled
        ));
        let by_rule: Vec<String> =
            s.by_rule.iter().filter(|(_, n)| **n > 0).map(|(r, n)| format!("{r}: {n}")).collect();
        if !by_rule.is_empty() {
            out.push_str(&format!("By rule: {}\n", by_rule.join(", ")));
        }
        out
    }
}
