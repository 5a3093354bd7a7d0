//! Reading a `sync` report in a test, and showing the part that matters when an assertion fails.

use serde_json::Value;

/// The parts of a sync report a failure message needs (not the whole plan of a large run).
pub fn excerpt(report: &Value) -> String {
    let d = &report["data"];
    let pick = serde_json::json!({
        "exit_code": report["exit_code"], "error": report["error"], "warnings": report["warnings"],
        "mode": d["mode"], "fallback": d["fallback"], "counts": d["counts"], "read": d["read"],
        "write_requests": d["write_requests"], "plan": d["plan"], "quarantined": d["quarantined"],
        "failures": d["failures"], "stderr": report["stderr"],
    });
    serde_json::to_string_pretty(&pick).unwrap()
}

pub fn mode(report: &Value) -> &str {
    report["data"]["mode"].as_str().unwrap_or("<no mode>")
}

pub fn count(report: &Value, name: &str) -> u64 {
    report["data"]["counts"][name].as_u64().unwrap_or_else(|| panic!("no counts.{name} in {}", excerpt(report)))
}

pub fn writes(report: &Value) -> u64 {
    report["data"]["write_requests"].as_u64().unwrap_or_else(|| panic!("no write_requests in {}", excerpt(report)))
}
