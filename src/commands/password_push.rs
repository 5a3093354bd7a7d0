//! `ausi password-push`: passwords from the tenant's queue, from one `--user`, or from a
//! `--batch` file, written into AD by one code path ([`push`]), each with a result.

use std::io::{BufRead, IsTerminal};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{Context, Report, choose_scope, encrypted_dc_urls, open_writable_directory, read_stdin_secret};
use crate::cli::PasswordPushArgs;
use crate::config::AgentConfig;
use crate::directory::ldap::LdapDirectory;
use crate::directory::{AnyDirectory, ObjectGuid};
use crate::error::{AppError, Result};
use crate::exit::ExitStatus;
use crate::output::{self, Outcome, Warning};
use crate::password::PasswordPolicy;
use crate::password::writer::{Applied, PasswordWriter, Target};
use crate::secrets::SecretString;
use crate::store::StateStore;
use crate::sync::history::{self, Ending};
use crate::sync::scope::Scope;
use crate::tenant::{self, agent::AgentApi};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    Tenant,
    CommandLine,
    Batch,
}

/// One password to write. Dropping it wipes the password.
pub struct Request {
    /// How the user was named (UPN, sAMAccountName, objectGUID).
    pub user: String,
    pub target: Target,
    pub password: SecretString,
    pub source: Source,
    /// The tenant's change id, to report the result back.
    pub id: Option<String>,
    /// The line of the batch file.
    pub line: Option<usize>,
}

/// What happened to one request. Never holds the password.
#[derive(Debug, Serialize)]
pub struct ChangeResult {
    pub user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dn: Option<String>,
    pub source: Source,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// `applied`, `checked` (a dry run found nothing against it), `rejected`, or `failed`
    /// (not tried because the DC failed; a tenant change stays queued and is tried again).
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub at: String,
    /// For tenant changes: whether the tenant accepted the result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reported: Option<bool>,
}

#[derive(Debug, Default, Serialize)]
pub struct PushCounts {
    pub applied: usize,
    pub checked: usize,
    pub rejected: usize,
    pub failed: usize,
}

#[derive(Debug, Serialize)]
pub struct PasswordPushReport {
    pub source: String,
    /// The domain's policy (a user under a fine-grained policy is checked against that one).
    pub policy: PasswordPolicy,
    pub counts: PushCounts,
    pub changes: Vec<ChangeResult>,
}

impl PasswordPushReport {
    pub fn table(&self) -> String {
        let mut table = output::table(&["User", "Source", "Result", "Reason"]);
        for c in &self.changes {
            let source = match c.source {
                Source::Tenant => "tenant",
                Source::CommandLine => "command line",
                Source::Batch => "batch",
            };
            table.add_row(vec![
                output::cell(&c.user),
                source.to_owned(),
                c.result.to_owned(),
                output::cell(c.reason.as_deref().unwrap_or("")),
            ]);
        }
        let p = &self.policy;
        format!(
            "{table}\n{} applied, {} checked, {} rejected, {} failed. Policy: at least {} characters, complexity {}, history {}.\n",
            self.counts.applied,
            self.counts.checked,
            self.counts.rejected,
            self.counts.failed,
            p.min_length,
            if p.complexity { "on" } else { "off" },
            p.history_count
        )
    }

    /// 1 when any change was rejected or not tried.
    pub fn exit(&self) -> ExitStatus {
        if self.counts.rejected + self.counts.failed > 0 { ExitStatus::Findings } else { ExitStatus::Ok }
    }
}

pub async fn run(ctx: &Context<'_>, args: &PasswordPushArgs) -> Result<Outcome> {
    let started_at = jiff::Timestamp::now().to_string();
    let clock = std::time::Instant::now();
    let mut warnings = Vec::new();
    let config = ctx.optional_config(&mut warnings)?;
    let result = run_push(args, config.as_ref(), &mut warnings).await;
    // The run history (`status`) gets every run of an installed agent, except a mistyped command.
    let usage = result.as_ref().is_err_and(|e| e.exit_status() == ExitStatus::Usage);
    if let (Some(config), false) = (&config, usage) {
        record(ctx, config, args, &started_at, clock, &result, &mut warnings);
    }
    let mut outcome = result?;
    outcome.warnings.splice(0..0, warnings);
    Ok(outcome)
}

/// Puts the run into the state store's history, briefly: a sync holding the store makes this a
/// warning, never a failure (the passwords are written by then).
fn record(
    ctx: &Context<'_>,
    config: &AgentConfig,
    args: &PasswordPushArgs,
    started_at: &str,
    clock: std::time::Instant,
    result: &Result<Outcome>,
    warnings: &mut Vec<Warning>,
) {
    let (exit, counts, error) = match result {
        Ok(outcome) => {
            let counts = match &outcome.report {
                Report::PasswordPush(report) => serde_json::to_value(&report.counts).unwrap_or_default(),
                _ => serde_json::Value::Null,
            };
            (outcome.exit, counts, outcome.error.as_ref().map(|e| e.message.clone()))
        }
        Err(e) => (e.exit_status(), serde_json::Value::Null, Some(e.message.clone())),
    };
    let kind = match (args.from_tenant, &args.user) {
        (true, _) => "from-tenant",
        (false, Some(_)) => "user",
        (false, None) => "batch",
    };
    let ending = Ending::now(kind, exit, counts, error, clock);
    let path = config.state_path(&ctx.config_path);
    match StateStore::open(&path, started_at) {
        Ok(mut store) => {
            warnings.extend(super::sync::state_permission_warnings(&store));
            let run = history::Run::Whole { command: "password-push", dry_run: args.dry_run, started_at };
            warnings.extend(history::record(&mut store, run, &ending));
        }
        Err(e) => warnings.push(history::not_recorded(&e)),
    }
}

async fn run_push(
    args: &PasswordPushArgs,
    config: Option<&AgentConfig>,
    warnings: &mut Vec<Warning>,
) -> Result<Outcome> {
    let defaults = AgentConfig::default();
    let config = config.unwrap_or(&defaults);
    // Nothing is read, prompted for or sent before the connection is known to be encrypted.
    encrypted_dc_urls(&args.directory, &config.directory, "write passwords").await?;
    let mut requests = match (&args.user, &args.batch) {
        (Some(user), _) => vec![one_user(user, args.password_stdin)?],
        (None, Some(path)) => read_batch(path)?,
        (None, None) => Vec::new(),
    };
    let mut directory = open_writable_directory(&args.directory, Some(config), warnings).await?;
    let (scope, _) = choose_scope(&mut directory, None, Some(config), warnings).await?;
    let AnyDirectory::Ldap(ldap) = &mut directory else {
        return Err(AppError::usage("password-push writes to a domain controller, not an LDIF export"));
    };
    let api = match args.from_tenant {
        true => Some(agent_api(config)?),
        false => None,
    };
    let (report, error) = push(ldap, scope, &mut requests, api.as_ref(), args.dry_run, warnings).await?;
    // A DC that failed mid-way: the rest is for the next run.
    let exit = if error.is_some() { ExitStatus::Temporary } else { report.exit() };
    let mut outcome = Outcome::new(Report::PasswordPush(report), exit);
    outcome.dry_run = args.dry_run;
    outcome.error = error;
    Ok(outcome)
}

/// The scheduled part of `sync` for an agent registered with `--password-sync`.
pub async fn from_tenant(
    directory: &mut LdapDirectory,
    scope: Scope,
    config: &AgentConfig,
    warnings: &mut Vec<Warning>,
) -> Result<(PasswordPushReport, Option<AppError>)> {
    let api = agent_api(config)?;
    push(directory, scope, &mut Vec::new(), Some(&api), false, warnings).await
}

/// Writes every request (and, with `api`, every change queued in the tenant), reporting each
/// tenant change's result back. A DC failure stops the run: what is left is marked `failed`,
/// and the tenant keeps those changes queued.
async fn push(
    directory: &mut LdapDirectory,
    scope: Scope,
    requests: &mut Vec<Request>,
    api: Option<&AgentApi>,
    dry_run: bool,
    warnings: &mut Vec<Warning>,
) -> Result<(PasswordPushReport, Option<AppError>)> {
    let source = directory.url().to_owned();
    let mut writer = PasswordWriter::open(directory, scope, dry_run).await?;
    if let Some(api) = api {
        let changes = api.password_changes().await?.ok_or_else(|| {
            AppError::config("the tenant has no agent API (404): it cannot hand out password changes")
                .with_hint("`ausi password-push --user` and `--batch` work without it")
        })?;
        requests.extend(changes.into_iter().map(|c| {
            let target = match (c.external_id.as_deref().and_then(ObjectGuid::parse), &c.user_name) {
                (Some(guid), _) => Target::Guid(guid),
                (None, Some(name)) => Target::Name(name.clone()),
                (None, None) => Target::Name(String::new()),
            };
            let user = c.user_name.or(c.external_id).unwrap_or_default();
            Request { user, target, password: c.password, source: Source::Tenant, id: Some(c.id), line: None }
        }));
    }
    let mut results = Vec::with_capacity(requests.len());
    let mut counts = PushCounts::default();
    let mut stopped: Option<AppError> = None;
    for request in requests.drain(..) {
        let mut result = ChangeResult {
            user: request.user.clone(),
            dn: None,
            source: request.source,
            id: request.id.clone(),
            line: request.line,
            result: "failed",
            code: None,
            reason: None,
            at: jiff::Timestamp::now().to_string(),
            reported: None,
        };
        if let Some(e) = &stopped {
            result.reason = Some(format!("not tried: {}", e.message));
            counts.failed += 1;
            results.push(result);
            continue;
        }
        match writer.apply(&request.target, &request.password).await {
            Ok(Applied::Applied(account)) => {
                result.dn = Some(account.dn.to_string());
                result.result = if dry_run { "checked" } else { "applied" };
            }
            Ok(Applied::Rejected(account, rejection)) => {
                result.dn = account.map(|a| a.dn.to_string());
                result.result = "rejected";
                result.code = Some(rejection.code());
                result.reason = Some(rejection.reason());
            }
            Err(e) => {
                let error = AppError::from(e);
                result.reason = Some(error.message.clone());
                stopped = Some(error);
            }
        }
        match result.result {
            "applied" => counts.applied += 1,
            "checked" => counts.checked += 1,
            "rejected" => counts.rejected += 1,
            _ => counts.failed += 1,
        }
        if let (Some(api), Some(id), false, "applied" | "rejected") = (api, &request.id, dry_run, result.result) {
            let sent = api.report_password_result(id, result.result, result.reason.as_deref()).await;
            if let Err(e) = &sent {
                warnings.push(Warning::new(
                    "password-result-not-reported",
                    format!("the tenant did not take the result of change {id}: {e}"),
                ));
            }
            result.reported = Some(sent.is_ok());
        }
        results.push(result);
    }
    warnings.append(&mut writer.warnings);
    let report = PasswordPushReport { source, policy: writer.domain_policy().clone(), counts, changes: results };
    Ok((report, stopped))
}

/// The agent API of the registered tenant.
fn agent_api(config: &AgentConfig) -> Result<AgentApi> {
    let tenant_config = config.tenant.as_ref().ok_or_else(|| {
        AppError::config("the agent is not registered with a tenant").with_hint("run `ausi register --home-realm URL`")
    })?;
    super::tenant_token(tenant_config)?;
    tenant::agent_api(tenant_config, Duration::from_secs(config.sync.request_timeout_secs.max(1)))
}

fn target(text: &str) -> Target {
    match ObjectGuid::parse(text) {
        Some(guid) => Target::Guid(guid),
        None => Target::Name(text.to_owned()),
    }
}

/// `--user X`: the password from standard input, or typed twice at a hidden prompt.
fn one_user(user: &str, stdin: bool) -> Result<Request> {
    let password = if stdin {
        read_stdin_secret("password")?
    } else if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        let prompt = |text: String| {
            rpassword::prompt_password(text)
                .map(SecretString::from)
                .map_err(|e| AppError::usage("cannot read the password from the terminal").caused_by(&e))
        };
        let first = prompt(format!("New password for {user}: "))?;
        let again = prompt("Again: ".to_owned())?;
        use crate::secrets::ExposeSecret;
        if first.expose_secret() != again.expose_secret() {
            return Err(AppError::usage("the two passwords differ; nothing was changed"));
        }
        first
    } else {
        return Err(AppError::usage(
            "no password: pipe it in with --password-stdin (a password is never accepted as an argument)",
        ));
    };
    Ok(Request {
        user: user.to_owned(),
        target: target(user),
        password,
        source: Source::CommandLine,
        id: None,
        line: None,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchLine {
    user: String,
    password: SecretString,
}

/// Every line of a `--batch` file, all checked before any password is sent. Errors name the
/// line, never its content (it holds a password).
fn read_batch(path: &std::path::Path) -> Result<Vec<Request>> {
    let stdin = path.as_os_str() == "-";
    let reader: Box<dyn BufRead> = if stdin {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(path)
            .map_err(|e| AppError::usage(format!("cannot read the batch file {}", path.display())).caused_by(&e))?;
        Box::new(std::io::BufReader::new(file))
    };
    let name = if stdin { "standard input".to_owned() } else { path.display().to_string() };
    let mut requests = Vec::new();
    let mut bad = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let line = Zeroizing::new(
            line.map_err(|e| AppError::usage(format!("cannot read line {number} of {name}")).caused_by(&e))?,
        );
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<BatchLine>(&line) {
            Ok(entry) if !entry.user.trim().is_empty() => requests.push(Request {
                target: target(entry.user.trim()),
                user: entry.user.trim().to_owned(),
                password: entry.password,
                source: Source::Batch,
                id: None,
                line: Some(number),
            }),
            Ok(_) => bad.push(format!("line {number}: \"user\" is empty")),
            // The error's own text may quote the password: give only where and what kind.
            Err(e) => bad.push(format!("line {number}, column {}: {}", e.column(), batch_error(&e))),
        }
    }
    if !bad.is_empty() {
        let mut error = AppError::usage(format!("the batch in {name} is not valid JSON Lines; nothing was sent"))
            .with_hint("one object per line: {\"user\": \"UPN or sAMAccountName\", \"password\": \"...\"}");
        error.causes = bad;
        return Err(error);
    }
    if requests.is_empty() {
        return Err(AppError::usage(format!("the batch in {name} holds no password changes")));
    }
    Ok(requests)
}

fn batch_error(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "not a JSON object",
        serde_json::error::Category::Data => "expected exactly the string fields \"user\" and \"password\"",
        serde_json::error::Category::Io => "unreadable",
    }
}
