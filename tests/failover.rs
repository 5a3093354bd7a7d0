//! Several DCs in `directory.url`: a DC that refuses connections (a closed port on another
//! loopback address) is skipped for the next, the report says which DC served the run and
//! which were skipped; with every DC down the run exits 75 and writes nothing. The testbed
//! has one DC (Samba cannot fake a second invocationId), so the per-DC watermark is shown
//! here for that DC (a delta continues from its own watermark) and for A → B → A in the
//! engine's unit tests.
#![allow(clippy::print_stderr)]

mod common;

use std::path::Path;

use ausi::tenant::ResourceKind;
use common::testbed::{Sandbox, testbed};
use serde_json::Value;

/// Closed ports on loopback addresses no test server binds: connecting is refused at once.
const DEAD_A: &str = "ldaps://127.0.0.2:1";
const DEAD_B: &str = "ldaps://127.0.0.3:1";

/// Replaces the `url = …` line of the configuration.
fn set_urls(config: &Path, urls: &[&str]) {
    let text = std::fs::read_to_string(config).unwrap();
    let list = urls.iter().map(|u| format!("\"{u}\"")).collect::<Vec<_>>().join(", ");
    let mut out = String::new();
    let mut replaced = false;
    for line in text.lines() {
        if line.starts_with("url = ") && !replaced {
            out.push_str(&format!("url = [{list}]\n"));
            replaced = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(replaced, "{text}");
    std::fs::write(config, out).unwrap();
}

fn status(config: &str) -> Value {
    let r = common::run(common::ausi().args(["--config", config, "status", "-o", "json"]));
    r.json()
}

fn display_name_in_tenant(agent: &common::testbed::Agent, sam: &str) -> String {
    let users = agent.tenant(ResourceKind::User);
    let user = users
        .iter()
        .find(|u| u["userName"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(&format!("{sam}@example.test"))))
        .unwrap_or_else(|| panic!("{sam} in the tenant"));
    user["displayName"].as_str().unwrap_or("").to_owned()
}

#[test]
fn a_dc_that_refuses_is_skipped_and_with_every_dc_down_nothing_is_written() {
    let Some(tb) = testbed() else { return };
    let tag = format!("{}", std::process::id());
    let root = format!("OU=Failover{tag},{}", tb.base);
    let _sandbox = Sandbox { tb: &tb, root: root.clone() };
    let sam = format!("fover{tag}");
    let user_dn = format!("CN={sam},OU=In,{root}");
    tb.ldap_modify(&format!(
        "dn: {root}\nchangetype: add\nobjectClass: organizationalUnit\n\n\
         dn: OU=In,{root}\nchangetype: add\nobjectClass: organizationalUnit\n\n\
         dn: {user_dn}\nchangetype: add\nobjectClass: user\nsAMAccountName: {sam}\n\
         userPrincipalName: {sam}@example.test\ngivenName: Fail\nsn: Over\ndisplayName: Fail Over\n\
         mail: {sam}@example.test\nuserAccountControl: 544\n"
    ));
    let selected = format!("OU=In,{root}");
    let agent = tb.agent(&[selected.as_str()], "");
    let c = agent.cfg();

    // The first DC refuses connections: the second serves the run, and the report says so.
    set_urls(&agent.config, &[DEAD_A, &tb.ldaps]);
    let (code, v) = agent.sync(&[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["data"]["mode"], "full");
    assert_eq!(v["data"]["source"], tb.ldaps.as_str());
    assert_eq!(v["data"]["dc"], "dc1.example.test");
    let skipped = v["data"]["skipped_dcs"].as_array().expect("skipped_dcs");
    assert_eq!(skipped.len(), 1, "{v}");
    assert_eq!(skipped[0]["url"], DEAD_A);
    let warning = v["warnings"].as_array().unwrap().iter().find(|w| w["code"] == "dc-skipped").expect("dc-skipped");
    let text = warning["message"].as_str().unwrap();
    assert!(text.contains(DEAD_A) && text.contains(&tb.ldaps), "{text}");
    assert_eq!(v["data"]["counts"]["created"], 1, "{v}");

    // status: the DC that served the runs, with its own watermark.
    let s = status(c);
    let dcs = s["data"]["state"]["dcs"].as_array().expect("state.dcs");
    assert_eq!(dcs.len(), 1, "{s}");
    assert_eq!(dcs[0]["server"], "DC1");
    assert_eq!(dcs[0]["site"], "Default-First-Site-Name");
    let usn = dcs[0]["usn"].as_u64().unwrap();
    assert!(dcs[0]["age_secs"].as_i64().is_some_and(|a| (0..600).contains(&a)), "{s}");
    assert_eq!(s["data"]["directory"]["urls"].as_array().map(Vec::len), Some(2));

    // A change in AD, and the next run on the same DC is a delta from that DC's watermark.
    tb.ldap_modify(&format!("dn: {user_dn}\nchangetype: modify\nreplace: displayName\ndisplayName: Fail Over Two\n"));
    let (code, v) = agent.sync(&[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["data"]["mode"], "delta", "{v}");
    assert_eq!(v["data"]["counts"]["updated"], 1, "{v}");
    assert_eq!(display_name_in_tenant(&agent, &sam), "Fail Over Two");
    let after_delta = status(c)["data"]["state"]["dcs"][0]["usn"].as_u64().unwrap();
    assert!(after_delta > usn);

    // Every DC down: exit 75, the tenant keeps what it had, and the watermark stays.
    tb.ldap_modify(&format!("dn: {user_dn}\nchangetype: modify\nreplace: displayName\ndisplayName: Fail Over Three\n"));
    set_urls(&agent.config, &[DEAD_A, DEAD_B]);
    let (code, v) = agent.sync(&[]);
    assert_eq!(code, 75, "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("no domain controller answered"), "{message}");
    assert!(message.contains(DEAD_A) && message.contains(DEAD_B), "{message}");
    assert_eq!(display_name_in_tenant(&agent, &sam), "Fail Over Two", "nothing written");
    let s = status(c);
    assert_eq!(s["data"]["state"]["dcs"][0]["usn"].as_u64(), Some(after_delta), "{s}");

    // Back to the live DC: the change is picked up by a delta, not a full sync.
    set_urls(&agent.config, &[&tb.ldaps]);
    let (code, v) = agent.sync(&[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["data"]["mode"], "delta", "{v}");
    assert!(v["data"].get("skipped_dcs").is_none(), "{v}");
    assert_eq!(display_name_in_tenant(&agent, &sam), "Fail Over Three");
}

#[test]
fn a_wrong_password_is_not_tried_on_the_next_dc() {
    let Some(tb) = testbed() else { return };
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong.pw");
    std::fs::write(&wrong, "Not-the-password-1").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let config = tb.config_in(dir.path(), &wrong, "");
    // The live DC first, then one that would refuse: the rejection ends the run there (77),
    // so a wrong password is not sent to every DC of the domain (lockouts).
    set_urls(&config, &[&tb.ldaps, DEAD_A]);
    let (code, v) = common::json_with(&mut common::ausi(), &["--config", config.to_str().unwrap(), "list-ous"]);
    assert_eq!(code, 77, "{v}");
    assert!(!v.to_string().contains(DEAD_A), "the second DC was not tried: {v}");
}
