//! `ausi validate`: every user in scope against the rules a sync applies (sync/validate.rs).

use std::time::Duration;

use serde::Serialize;

use super::{Context, Report, ScopeDescription, choose_scope, no_selection, open_directory};
use crate::cli::ValidateArgs;
use crate::config::AgentConfig;
use crate::directory::{AnyDirectory, Directory, ObjectKind, ObjectQuery};
use crate::error::Result;
use crate::exit::ExitStatus;
use crate::output::{self, Outcome, Warning};
use crate::password::policy::{self, PolicyMismatch};
use crate::password::{PasswordPolicy, writer};
use std::collections::HashMap;

use crate::directory::{DirObject, ObjectGuid};
use crate::policy::scoping::{self, Exclusion, GroupRef};
use crate::sync::scope::{self, GroupLookup, PolicyScope, read_scope};
use crate::sync::validate::{Explanation, RuleOptions, Validation, Validator};
use crate::tenant::{self, agent::TenantPasswordPolicy};

#[derive(Debug, Serialize)]
pub struct ValidateReport {
    pub source: String,
    /// The sub-trees that were read.
    pub scope: ScopeDescription,
    /// The provisioning policy the users were judged by, when it is not Default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(flatten)]
    pub validation: Validation,
    /// With --user: that user, rule by rule (null when no such user is in the scope).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<Option<Explanation>>,
    /// With --user for a user the scope leaves out: where the user is and what leaves it out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outside_scope: Option<OutsideScope>,
    /// With --user for a user of the selected OUs: the policy's scope verdict (`true`: a sync
    /// provisions the user if valid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_policy_scope: Option<bool>,
    /// With --user, for a user of the selected OUs that the policy's scope leaves out: the rule
    /// (`filter`, `condition`, `group`), as `sync --dry-run --user` names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded: Option<Exclusion>,
    /// The domain's password policy against the tenant's, when both can be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_policy: Option<PolicyAlignment>,
}

/// A `--user` that exists in the directory but not in the scope.
#[derive(Debug, Serialize)]
pub struct OutsideScope {
    pub dn: String,
    /// `excluded` (under an excluded sub-tree) or `not-selected` (under no selected OU).
    pub reason: &'static str,
    /// The exclusion that leaves the user out (`excluded`), or the selected OUs (`not-selected`).
    pub by: Vec<String>,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct PolicyAlignment {
    pub domain: PasswordPolicy,
    pub tenant: TenantPasswordPolicy,
    pub mismatches: Vec<PolicyMismatch>,
}

/// With a DC and a tenant that has the agent API: the two password policies side by side.
/// Either side unreadable is a warning, never a failed validation.
async fn align_policies(
    directory: &mut AnyDirectory,
    config: Option<&AgentConfig>,
    warnings: &mut Vec<Warning>,
) -> Option<PolicyAlignment> {
    let AnyDirectory::Ldap(ldap) = directory else { return None };
    let tenant_config = config?.tenant.as_ref().filter(|t| t.agent_api == Some(true))?;
    let unreadable = |what: &str, e: &dyn std::fmt::Display| {
        Warning::new("password-policy-unreadable", format!("cannot compare the password policies: {what}: {e}"))
    };
    let domain = match writer::domain_policy(ldap).await {
        Ok(policy) => policy,
        Err(e) => {
            warnings.push(unreadable("the domain's", &e));
            return None;
        }
    };
    let timeout = Duration::from_secs(config?.sync.request_timeout_secs.max(1));
    let answer = match tenant::agent_api(tenant_config, timeout) {
        Ok(api) => api.password_policy().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.message),
    };
    match answer {
        Ok(Some(tenant)) => Some(PolicyAlignment { mismatches: policy::compare(&tenant, &domain), domain, tenant }),
        Ok(None) => None,
        Err(e) => {
            warnings.push(unreadable("the tenant's", &e));
            None
        }
    }
}

pub async fn run(ctx: &Context<'_>, args: &ValidateArgs) -> Result<Outcome> {
    let mut warnings = Vec::new();
    let config = ctx.optional_config(&mut warnings)?;
    let nothing_selected = config.as_ref().is_none_or(|c| c.scope.ous.is_empty());
    if args.base.is_none() && nothing_selected && !super::reads_ldif(&args.directory)? {
        return Err(no_selection());
    }
    let mut rules = RuleOptions::of(config.as_ref())?;
    if let Some(name) = &args.policy {
        let configured = config.as_ref().map(|c| c.policies.clone()).unwrap_or_default();
        let policy = crate::policy::Policy::resolve(name, &configured).map_err(|e| {
            crate::error::AppError::usage(e.message).with_hint("define it as [policies.NAME] in the configuration")
        })?;
        rules = rules.with_policy(policy);
    }
    let mut directory = open_directory(&args.directory, config.as_ref(), &mut warnings).await?;
    directory.read_attributes(crate::directory::ReadAttributes::for_policy(&rules.policy.attributes()));
    let info = directory.info().await?;
    let (scope, description) =
        choose_scope(&mut directory, args.base.as_deref(), config.as_ref(), &mut warnings).await?;
    let policy = (!rules.policy.is_default()).then(|| rules.policy.name.clone());

    let mut validator = match &args.user {
        Some(user) => Validator::explaining(rules.clone(), user),
        None => Validator::new(rules.clone()),
    };
    let policy_scope = PolicyScope::of(&rules.policy);
    let mut groups = ScopingGroups::new(&policy_scope, args.user.as_deref());
    // Groups too: an objectGUID a user shares with a group is a duplicate as well; with their
    // members only to judge a `--user`'s membership of the scoping groups.
    let query = ObjectQuery { members: groups.members.is_some(), ..ObjectQuery::USERS_AND_GROUPS };
    let summary = read_scope(&mut directory, &scope, query, ctx.printer, &mut |o| {
        groups.add(&o);
        match o.kind {
            ObjectKind::User => validator.add(&o),
            ObjectKind::Group => validator.add_group(&o),
        }
    })
    .await?;
    // A scoping group the scope does not hold stops here, as it stops a sync.
    groups.check()?;
    let (validation, explanation) = validator.finish(summary.unreadable);
    let excluded = groups.user.as_ref().and_then(|user| groups.exclusion(user));
    if validation.summary.users_checked == 0 {
        warnings.push(Warning::new("scope-empty", "no users were found in the scope"));
    }
    let mut outside_scope = None;
    let exit = match (&args.user, &explanation) {
        // Not in scope: a sync would not provision this user either. Where is the user, then?
        (Some(user), None) => {
            outside_scope = find_outside(&mut directory, &info.naming_context, &description, user, ctx).await?;
            match &outside_scope {
                Some(o) => warnings.push(Warning::new("user-out-of-scope", o.message.clone())),
                None => warnings.push(Warning::new(
                    "user-not-found",
                    format!(
                        "no user with userPrincipalName or sAMAccountName {user:?} in the directory ({} users in scope checked)",
                        validation.summary.users_checked
                    ),
                )),
            }
            ExitStatus::Findings
        }
        // In the OUs, but the policy's scope leaves the user out: a sync would not provision it.
        (Some(_), Some(_)) if excluded.is_some() => ExitStatus::Findings,
        (Some(_), Some(e)) if e.checks.iter().all(|c| c.passed) => ExitStatus::Ok,
        (Some(_), Some(_)) => ExitStatus::Findings,
        (None, _) if validation.summary.with_problems > 0 || validation.summary.unreadable_entries > 0 => {
            ExitStatus::Findings
        }
        (None, _) => ExitStatus::Ok,
    };
    let password_policy = match args.user {
        None => align_policies(&mut directory, config.as_ref(), &mut warnings).await,
        Some(_) => None,
    };
    let exit = match &password_policy {
        Some(alignment) if !alignment.mismatches.is_empty() => ExitStatus::Findings,
        _ => exit,
    };
    let in_policy_scope = explanation.as_ref().map(|_| excluded.is_none());
    if let (Some(user), Some(why)) = (&args.user, &excluded) {
        warnings.push(Warning::new(
            "user-out-of-scope",
            format!("{user:?} is {}: a sync does not provision it", scope::verdict(Some(why))),
        ));
    }
    let user = args.user.as_ref().map(|_| explanation);
    let report = ValidateReport {
        source: info.source,
        scope: description,
        policy,
        validation,
        user,
        outside_scope,
        in_policy_scope,
        excluded,
        password_policy,
    };
    let mut outcome = Outcome::new(Report::Validate(Box::new(report)), exit);
    outcome.warnings = warnings;
    Ok(outcome)
}

/// What a validation reads of the policy's scoping groups: whether each is among the groups of
/// the scope and, with `--user`, the groups' members (to judge that user's membership the way a
/// sync judges it from the mirror).
struct ScopingGroups<'a> {
    scope: &'a PolicyScope,
    /// The scoping groups' objectGUIDs read: `None` a group, else the DN of the other object.
    found: HashMap<ObjectGuid, Option<String>>,
    /// With --user and scoping groups: every group's normalised DN → its members (normalised).
    members: Option<HashMap<String, Vec<String>>>,
    /// The scoping groups' normalised DNs.
    roots: Vec<String>,
    /// `--user` (lower-case) and, once read, that user.
    target: Option<String>,
    user: Option<DirObject>,
}

impl<'a> ScopingGroups<'a> {
    fn new(scope: &'a PolicyScope, user: Option<&str>) -> ScopingGroups<'a> {
        let with_groups = !scope.scoping.groups.is_empty();
        ScopingGroups {
            scope,
            found: HashMap::new(),
            members: (with_groups && user.is_some()).then(HashMap::new),
            roots: Vec::new(),
            target: user.map(str::to_lowercase),
            user: None,
        }
    }

    fn add(&mut self, o: &DirObject) {
        if let Some(guid) = o.guid
            && self.scope.scoping.groups.contains(&GroupRef(guid))
        {
            let other = match o.kind {
                ObjectKind::Group => {
                    self.roots.push(o.dn.normalized());
                    None
                }
                ObjectKind::User => Some(o.dn.to_string()),
            };
            self.found.insert(guid, other);
        }
        match o.kind {
            ObjectKind::Group => {
                if let Some(members) = &mut self.members {
                    members.insert(o.dn.normalized(), o.members.clone());
                }
            }
            ObjectKind::User => {
                let is_target = self.target.as_ref().is_some_and(|t| {
                    [&o.user_principal_name, &o.sam_account_name]
                        .iter()
                        .any(|v| v.as_deref().is_some_and(|v| v.trim().to_lowercase() == *t))
                });
                if is_target && self.user.is_none() {
                    self.user = Some(o.clone());
                }
            }
        }
    }

    /// Every scoping group must be a group of the scope, as in a sync (exit 78 otherwise).
    fn check(&self) -> Result<()> {
        for group in &self.scope.scoping.groups {
            let found = match self.found.get(&group.0) {
                Some(None) => continue,
                Some(Some(dn)) => GroupLookup::NotAGroup(dn.clone()),
                None => GroupLookup::NotMirrored,
            };
            return Err(scope::missing_group(&self.scope.policy, *group, &found));
        }
        Ok(())
    }

    /// The policy's verdict on the `--user` read.
    fn exclusion(&self, user: &DirObject) -> Option<Exclusion> {
        let dn = user.dn.normalized();
        let in_groups = || {
            let roots: Vec<&str> = self.roots.iter().map(String::as_str).collect();
            let members = self.members.as_ref().map(|m| scoping::reached(&roots, m, self.scope.scoping.transitive));
            members.is_some_and(|m| m.contains(&dn))
        };
        scope::exclusion(self.scope, user, &in_groups)
    }
}

/// `--user` outside the scope: reads the users of the whole naming context (only on this path)
/// and says which exclusion, or which missing selection, leaves the user out.
async fn find_outside(
    directory: &mut AnyDirectory,
    naming_context: &crate::directory::Dn,
    scope: &ScopeDescription,
    user: &str,
    ctx: &Context<'_>,
) -> Result<Option<OutsideScope>> {
    if scope.from == "export" {
        return Ok(None); // the whole export was the scope
    }
    let target = user.trim().to_lowercase();
    let mut found = None;
    let everything = crate::sync::scope::Scope::new(vec![naming_context.clone()], vec![]);
    read_scope(directory, &everything, ObjectQuery::USERS, ctx.printer, &mut |o| {
        let matches = [&o.user_principal_name, &o.sam_account_name]
            .iter()
            .any(|v| v.as_deref().is_some_and(|v| v.trim().to_lowercase() == target));
        if matches && found.is_none() {
            found = Some(o.dn.clone());
        }
    })
    .await?;
    let Some(dn) = found else { return Ok(None) };
    let parse = |d: &String| crate::directory::Dn::parse(d).ok();
    let excluded: Vec<String> =
        scope.excluded.iter().filter(|x| parse(x).is_some_and(|x| dn.is_descendant_of(&x))).cloned().collect();
    let (reason, by, why) = if excluded.is_empty() {
        let bases = scope.bases.join("; ");
        ("not-selected", scope.bases.clone(), format!("it is under none of the selected OUs ({bases})"))
    } else {
        let x = excluded.join("; ");
        ("excluded", excluded, format!("it is in the excluded sub-tree {x}"))
    };
    let message = format!("{user:?} exists ({dn}), but the scope leaves it out: {why}");
    Ok(Some(OutsideScope { dn: dn.to_string(), reason, by, message }))
}

impl ValidateReport {
    pub fn table(&self) -> String {
        let mut out = String::new();
        if let Some(None) = &self.user {
            return match &self.outside_scope {
                Some(o) => format!("{}\n", output::cell(&o.message)),
                None => "No such user in the directory.\n".to_owned(),
            };
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
            if let Some(in_scope) = self.in_policy_scope {
                let verdict = scope::verdict(self.excluded.as_ref().filter(|_| !in_scope));
                out.push_str(&format!("Scope: {}\n", output::cell(&verdict)));
            }
            if !user.mapped.is_empty() {
                let mut m = output::table(&["SCIM attribute", "Value", "Mapping"]);
                for row in crate::sync::validate::mapped_rows(&user.mapped) {
                    m.add_row(row.iter().map(|c| output::cell(c)).collect::<Vec<_>>());
                }
                let policy = self.policy.as_deref().unwrap_or(crate::policy::DEFAULT);
                out.push_str(&format!("Mapped by the {policy} policy:\n{m}\n"));
            }
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
            output::plural(s.users_checked, "user"),
            s.valid,
            s.with_problems,
            s.disabled
        ));
        let by_rule: Vec<String> =
            s.by_rule.iter().filter(|(_, n)| **n > 0).map(|(r, n)| format!("{r}: {n}")).collect();
        if !by_rule.is_empty() {
            out.push_str(&format!("By rule: {}\n", by_rule.join(", ")));
        }
        if let Some(alignment) = &self.password_policy {
            match alignment.mismatches.as_slice() {
                [] => out.push_str("The tenant's password policy matches the domain's.\n"),
                mismatches => {
                    out.push_str("The tenant's password policy differs from the domain's:\n");
                    for m in mismatches {
                        out.push_str(&format!("  - {}\n", output::cell(&m.message)));
                    }
                }
            }
        }
        out
    }
}
