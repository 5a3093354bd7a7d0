//! Provisioning policies end to end on the seeded Samba AD DC and a real scim2-server tenant:
//! switching Default to a UPN-suffix rewrite is stopped by the rename guard, goes through with
//! `--allow-renames`, and the run after writes nothing. Runs under `scripts/test` (AUSI_REQUIRE_DC=1).

mod common;

use std::collections::BTreeSet;

use ausi::tenant::ResourceKind;
use common::testbed::testbed;

const CORP: &str = "OU=Corp,DC=example,DC=test";
const GROUPS: &str = "OU=Groups,DC=example,DC=test";

/// The rewrite policy: every seeded UPN ends in `@example.test`; the tenant gets `@rewritten.example`.
const REWRITE: &str = r#"
[policies.Rewrite.user]
"userName" = 'Replace([userPrincipalName], "@example.test", "@rewritten.example")'
"#;

fn user_names(users: &[serde_json::Value]) -> BTreeSet<String> {
    users.iter().map(|u| u["userName"].as_str().unwrap().to_lowercase()).collect()
}

#[test]
fn switching_to_a_suffix_rewrite_is_guarded_then_applied_once() {
    let Some(tb) = testbed() else { return };
    let agent = tb.agent(&[CORP, GROUPS], REWRITE);
    let (code, report) = agent.sync(&["--full"]);
    assert!(code == 0 || code == 1, "{}", report["error"]);
    assert!(report["data"].get("policy").is_none(), "Default from the configuration is not mentioned: {report}");
    let before = agent.tenant(ResourceKind::User);
    let old_names = user_names(&before);
    assert!(old_names.len() > 10 && old_names.iter().all(|n| n.ends_with("@example.test")), "{old_names:?}");
    let renamed = before.iter().filter(|u| u["userName"].as_str().unwrap().contains("@example.test")).count();
    let groups_before = agent.tenant(ResourceKind::Group);

    // Switch the policy in the configuration.
    let text = std::fs::read_to_string(&agent.config).unwrap();
    assert!(text.contains("provisioning_policy = \"Default\""), "{text}");
    std::fs::write(
        &agent.config,
        text.replace("provisioning_policy = \"Default\"", "provisioning_policy = \"Rewrite\""),
    )
    .unwrap();

    // The dry run counts, per attribute, what would change: userName of every provisioned user, nothing else.
    let (code, report) = agent.sync(&["--dry-run"]);
    assert_eq!(code, 3, "{report}");
    let data = &report["data"];
    assert_eq!(data["fallback"]["code"], "policy-changed", "a changed policy is a full re-read: {report}");
    assert_eq!(data["policy"]["name"], "Rewrite");
    assert_eq!(data["policy"]["source"], "config");
    let changes = data["changes_by_attribute"].as_object().unwrap();
    assert_eq!(changes.keys().collect::<Vec<_>>(), ["userName"], "{changes:?}");
    assert_eq!(changes["userName"].as_u64(), Some(renamed as u64));

    // The real run stops before writing anything.
    let (code, report) = agent.sync(&[]);
    assert_eq!(code, 3, "{}", report["error"]);
    let stop = &report["data"]["stop"];
    assert_eq!(stop["reason"], "rename-threshold", "{report}");
    assert_eq!(stop["renaming"].as_u64(), Some(renamed as u64), "{stop}");
    assert_eq!((stop["limit"].as_u64(), stop["limit_percent"].as_u64()), (Some(500), Some(10)), "{stop}");
    assert!(report["error"]["hints"].to_string().contains("--allow-renames"), "{report}");
    assert_eq!(report["data"]["write_requests"], 0);
    assert_eq!(agent.tenant(ResourceKind::User), before, "nothing was written");

    // Confirmed: every user is renamed, exactly as computed from the seeded UPNs; nothing else changes.
    let (code, report) = agent.sync(&["--allow-renames", &renamed.to_string()]);
    assert!(code == 0 || code == 1, "{}", report["error"]);
    let after = agent.tenant(ResourceKind::User);
    // Replace is case-sensitive, as in Entra: a UPN spelt `@EXAMPLE.TEST` keeps its suffix.
    let expected: BTreeSet<String> = before
        .iter()
        .map(|u| u["userName"].as_str().unwrap().replace("@example.test", "@rewritten.example").to_lowercase())
        .collect();
    let got = user_names(&after);
    let (extra, missing): (Vec<_>, Vec<_>) = (got.difference(&expected).collect(), expected.difference(&got).collect());
    assert!(extra.is_empty() && missing.is_empty(), "unexpected {extra:?}, missing {missing:?}");
    for old in &before {
        let new = after.iter().find(|u| u["id"] == old["id"]).expect("the same SCIM resource, renamed");
        let strip = |u: &serde_json::Value| {
            let mut u = u.clone();
            for key in ["userName", "meta"] {
                u.as_object_mut().unwrap().remove(key);
            }
            u
        };
        assert_eq!(strip(new), strip(old), "only userName changed");
    }
    assert_eq!(agent.tenant(ResourceKind::Group).len(), groups_before.len());

    // The run after writes nothing.
    let (code, report) = agent.sync(&[]);
    assert!(code == 0 || code == 1, "{}", report["error"]);
    assert_eq!(report["data"]["write_requests"], 0, "{report}");
    assert!(report["data"].get("changes_by_attribute").is_none(), "{report}");
}

#[test]
fn validate_judges_by_any_policy_and_register_refuses_an_unknown_one() {
    let Some(tb) = testbed() else { return };
    // Every UPN rewritten to the same name: userName.duplicate for every valid user.
    let extra = "[policies.Collide.user]\n\"userName\" = '\"same@example.test\"'\n";
    let agent = tb.agent(&[CORP], extra);
    let mut cmd = common::ausi();
    let (code, report) = common::json_with(&mut cmd, &["--config", agent.cfg(), "validate", "--policy", "Collide"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["data"]["policy"], "Collide");
    let duplicates = report["data"]["summary"]["by_rule"]["userName.duplicate"].as_u64().unwrap();
    assert!(duplicates > 10, "{report}");
    let (code, report) =
        common::json_with(&mut common::ausi(), &["--config", agent.cfg(), "validate", "--policy", "Nope"]);
    assert_eq!(code, 2, "{report}");
    assert!(report["error"]["message"].as_str().unwrap().contains("the policies are Default, Collide"), "{report}");
}
