//! The tenant's optional agent API (`{home_realm}/api/agent/v1`): heartbeat, password changes
//! to write back, the tenant's password policy. A tenant that answers 404 is a plain SCIM tenant.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

use super::retry::{self, Disposition, Next, RetryPolicy};
use super::scim::TenantError;
use crate::secrets::{ExposeSecret, SecretString};

pub struct AgentApi {
    http: reqwest::Client,
    base: String,
    token: SecretString,
    policy: RetryPolicy,
}

/// `POST /agents/{agent}/heartbeat` (tenant-api.md §2), sent after every real run.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Heartbeat {
    /// The agent's name (its id at registration).
    pub name: String,
    pub hostname: String,
    /// ausi's version.
    pub version: String,
    /// `windows`, `linux`, …
    pub os: String,
    /// The agent's health as `ausi status` decides it from the run history (without this
    /// heartbeat): `healthy` or `unhealthy`.
    pub status: &'static str,
    pub last_sync: LastSync,
}

/// The last run's summary. The contract's fields first; `started_at`, `duration_ms`, `deleted`,
/// `outcome`, `exit_code` and `error` are ausi's additions (a tenant that does not know them
/// ignores them).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LastSync {
    /// `full` or `delta`; `sync` when the run failed before it chose.
    pub kind: String,
    pub finished_at: String,
    pub created: u64,
    pub updated: u64,
    pub deactivated: u64,
    pub failed: u64,
    pub quarantined: u64,
    pub started_at: String,
    pub duration_ms: u64,
    pub deleted: u64,
    /// `ok`, `findings` or `error`.
    pub outcome: String,
    /// ausi's exit code for the run (0, 1, 3, 75, 77, 78, …; see the README).
    pub exit_code: u8,
    /// Why the run failed (no secrets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct HeartbeatAnswer {
    pub status: String,
    #[serde(default)]
    pub full_sync_requested: bool,
    /// The provisioning policy the tenant assigns this agent (optional; absent: the agent's
    /// `[tenant] provisioning_policy`). It wins over the configuration from the next run on.
    #[serde(default, alias = "provisioningPolicy")]
    pub provisioning_policy: Option<String>,
}

/// A password change queued in the tenant. The password is only ever in a [`SecretString`].
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PasswordChange {
    pub id: String,
    /// The user's objectGUID, as ausi provisioned it.
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub user_name: Option<String>,
    pub password: SecretString,
    #[serde(default)]
    pub requested_at: Option<String>,
}

#[derive(Deserialize)]
struct PasswordChanges {
    changes: Vec<PasswordChange>,
}

/// The tenant's own password rules, compared by `validate` with the domain's.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TenantPasswordPolicy {
    #[serde(default)]
    pub min_length: Option<u32>,
    /// `None` or 0: passwords do not expire.
    #[serde(default)]
    pub max_age_days: Option<u32>,
    #[serde(default)]
    pub complexity: Option<bool>,
    #[serde(default)]
    pub history_count: Option<u32>,
}

impl AgentApi {
    pub fn new(home_realm: &str, agent: &str, token: SecretString, timeout: Duration) -> Result<AgentApi, TenantError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .build()
            .map_err(|e| TenantError::InvalidUrl(e.to_string()))?;
        let base = format!("{}/api/agent/v1/agents/{}", home_realm.trim_end_matches('/'), encode_segment(agent));
        Ok(AgentApi { http, base, token, policy: RetryPolicy { timeout, ..RetryPolicy::default() } })
    }

    /// Whether the tenant has the agent API: `Ok(false)` on 404.
    pub async fn probe(&self) -> Result<bool, TenantError> {
        Ok(self.call(reqwest::Method::GET, "password-policy", None).await?.is_some())
    }

    /// `Ok(None)` when the tenant has no agent API (or no such agent).
    pub async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<Option<HeartbeatAnswer>, TenantError> {
        let body = serde_json::to_value(heartbeat).map_err(|e| TenantError::Protocol(format!("heartbeat: {e}")))?;
        match self.call(reqwest::Method::POST, "heartbeat", Some(&body)).await? {
            None => Ok(None),
            Some(v) => {
                serde_json::from_value(v).map(Some).map_err(|e| TenantError::Protocol(format!("heartbeat answer: {e}")))
            }
        }
    }

    /// The password changes waiting to be written into AD; `Ok(None)` without an agent API.
    pub async fn password_changes(&self) -> Result<Option<Vec<PasswordChange>>, TenantError> {
        let Some(text) = self.call_text(reqwest::Method::GET, "password-changes", None).await? else {
            return Ok(None);
        };
        // serde_json's messages quote offending values: keep them out, one may be a password.
        let parsed: PasswordChanges = serde_json::from_str(&text).map_err(|e| {
            TenantError::Protocol(format!(
                "agent API password-changes: not a list of changes (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        Ok(Some(parsed.changes))
    }

    /// Tells the tenant how change `id` ended: `applied`, or `rejected` with the reason.
    pub async fn report_password_result(
        &self,
        id: &str,
        result: &str,
        reason: Option<&str>,
    ) -> Result<(), TenantError> {
        let mut body = serde_json::json!({ "result": result });
        if let Some(reason) = reason {
            body["reason"] = Value::from(reason);
        }
        let path = format!("password-changes/{}", encode_segment(id));
        match self.call(reqwest::Method::POST, &path, Some(&body)).await? {
            Some(_) => Ok(()),
            None => Err(TenantError::NotFound),
        }
    }

    /// The tenant's password policy; `Ok(None)` without an agent API.
    pub async fn password_policy(&self) -> Result<Option<TenantPasswordPolicy>, TenantError> {
        match self.call(reqwest::Method::GET, "password-policy", None).await? {
            None => Ok(None),
            Some(v) => serde_json::from_value(v)
                .map(Some)
                .map_err(|e| TenantError::Protocol(format!("agent API password-policy: {e}"))),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, TenantError> {
        let Some(text) = self.call_text(method, path, body).await? else {
            return Ok(None);
        };
        if text.trim().is_empty() {
            return Ok(Some(Value::Null));
        }
        serde_json::from_str(&text).map(Some).map_err(|e| TenantError::Protocol(format!("agent API {path}: {e}")))
    }

    /// The answer's body, in a buffer wiped when dropped (it may hold passwords).
    async fn call_text(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Option<Zeroizing<String>>, TenantError> {
        // Temporary failures are retried as SCIM calls are (one policy, super::retry); the whole
        // cause chain ("… Connection refused") is kept: the heartbeat's failure is shown by `status`.
        let payload = body.cloned();
        let url = format!("{}/{path}", self.base);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self.http.request(method.clone(), &url).bearer_auth(self.token.expose_secret());
            if let Some(body) = &payload {
                request = request.json(body);
            }
            let (reason, retry_after) = match request.send().await {
                Err(e) => (super::scim::error_chain(&e), None),
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| retry::parse_retry_after(v, std::time::SystemTime::now()));
                    match (status, retry::disposition(status, method != reqwest::Method::GET, true)) {
                        (404 | 405 | 501, _) => return Ok(None),
                        (_, Disposition::Unauthorized) | (403, _) => {
                            return Err(TenantError::Unauthorized { status, detail: None });
                        }
                        (_, Disposition::Success) => {
                            let text = response
                                .text()
                                .await
                                .map_err(|e| TenantError::Unavailable { attempts: attempt, last: e.to_string() })?;
                            return Ok(Some(Zeroizing::new(text)));
                        }
                        (_, Disposition::Temporary) => {
                            (format!("agent API {path} answered HTTP {status}"), retry_after)
                        }
                        _ => {
                            return Err(TenantError::Protocol(format!("agent API {path} answered HTTP {status}")));
                        }
                    }
                }
            };
            match self.policy.next(attempt, &reason, retry_after) {
                Next::Wait(delay) => tokio::time::sleep(delay).await,
                Next::GiveUp(last) => return Err(TenantError::Unavailable { attempts: attempt, last }),
            }
        }
    }
}

/// Percent-encodes an agent name for one URL path segment.
fn encode_segment(text: &str) -> String {
    super::protocol::percent_encode(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_names_are_one_path_segment() {
        assert_eq!(encode_segment("dc1.example.test"), "dc1.example.test");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }
}
