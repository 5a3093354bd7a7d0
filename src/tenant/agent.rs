//! The tenant's optional agent API (`{home_realm}/api/agent/v1`): heartbeat and, in later
//! releases, password changes. A tenant that answers 404 is a plain SCIM tenant.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::scim::TenantError;
use crate::secrets::{ExposeSecret, SecretString};

pub struct AgentApi {
    http: reqwest::Client,
    base: String,
    token: SecretString,
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
}

impl AgentApi {
    pub fn new(home_realm: &str, agent: &str, token: SecretString, timeout: Duration) -> Result<AgentApi, TenantError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .build()
            .map_err(|e| TenantError::InvalidUrl(e.to_string()))?;
        let base = format!("{}/api/agent/v1/agents/{}", home_realm.trim_end_matches('/'), encode_segment(agent));
        Ok(AgentApi { http, base, token })
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

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, TenantError> {
        let mut request =
            self.http.request(method, format!("{}/{path}", self.base)).bearer_auth(self.token.expose_secret());
        if let Some(body) = body {
            request = request.json(body);
        }
        // The whole cause chain ("… Connection refused"): the heartbeat's failure is shown by `status`.
        let response = request
            .send()
            .await
            .map_err(|e| TenantError::Unavailable { attempts: 1, last: super::scim::error_chain(&e) })?;
        let status = response.status().as_u16();
        match status {
            404 | 405 | 501 => Ok(None),
            401 | 403 => Err(TenantError::Unauthorized { status, detail: None }),
            200..=299 => {
                let text =
                    response.text().await.map_err(|e| TenantError::Unavailable { attempts: 1, last: e.to_string() })?;
                if text.trim().is_empty() {
                    return Ok(Some(Value::Null));
                }
                serde_json::from_str(&text)
                    .map(Some)
                    .map_err(|e| TenantError::Protocol(format!("agent API {path}: {e}")))
            }
            _ => {
                Err(TenantError::Unavailable { attempts: 1, last: format!("agent API {path} answered HTTP {status}") })
            }
        }
    }
}

/// Percent-encodes an agent name for one URL path segment.
fn encode_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
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
