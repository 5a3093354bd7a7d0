//! A full sync lists the tenant with several pages in flight (`[sync] concurrency`) and still
//! repairs every kind of drift, wherever in the listing it sits: users deleted or edited on the
//! first, a middle and the last page, a deleted group, a member removed. Against the testbed's
//! scim2-server (pages of 1,000, its `filter.maxResults`) and django-scim2 (pages of 50), with
//! an LDIF export as the directory so that the tenant holds several pages without seeding the
//! DC. Runs under `scripts/test`; skipped without the testbed.

mod common;

use std::collections::BTreeSet;
use std::fmt::Write as _;

use ausi::tenant::{ResourceKind, ScimClient, scim};
use base64::Engine as _;
use common::django::Django;
use common::report::{count, excerpt, writes};
use common::testbed::{Agent, testbed};
use serde_json::{Value, json};

const OU: &str = "OU=Listing,DC=example,DC=test";

fn user_dn(i: usize) -> String {
    format!("CN=List User{i},{OU}")
}

/// `users` users and three groups (0: users 0-2, 1: user 3, 2: the last user), as an export.
fn export(path: &std::path::Path, users: usize, tag: &str) {
    let guid = |n: usize| {
        let mut g = [0x5au8; 16];
        g[..4].copy_from_slice(&(n as u32).to_le_bytes());
        base64::engine::general_purpose::STANDARD.encode(g)
    };
    let mut out = format!(
        "version: 1\n\ndn: {OU}\nobjectClass: organizationalUnit\nou: Listing\nobjectGUID:: {}\n\n",
        guid(999_999)
    );
    for i in 0..users {
        writeln!(
            out,
            "dn: {}\nobjectClass: user\nobjectGUID:: {}\nsAMAccountName: ls{i}x{tag}\nuserPrincipalName: ls{i}x{tag}@example.test\n\
             givenName: List{i}\nsn: User\nmail: ls{i}x{tag}@example.test\nuserAccountControl: 512\n",
            user_dn(i),
            guid(i)
        )
        .unwrap();
    }
    for (g, members) in [(0, vec![0, 1, 2]), (1, vec![3]), (2, vec![users - 1])] {
        writeln!(
            out,
            "dn: CN=List Group{g},{OU}\nobjectClass: group\nobjectGUID:: {}\nsAMAccountName: lsg{g}x{tag}",
            guid(500_000 + g)
        )
        .unwrap();
        for m in members {
            writeln!(out, "member: {}", user_dn(m)).unwrap();
        }
        out.push('\n');
    }
    std::fs::write(path, out).unwrap();
}

/// The tenant spoken to directly, as an administrator would.
struct Console {
    client: ScimClient,
    runtime: tokio::runtime::Runtime,
}

impl Console {
    fn new(scim: &str, token: &str) -> Console {
        let client =
            ScimClient::new(scim, ausi::secrets::SecretString::from(token.to_owned()), Default::default()).unwrap();
        Console { client, runtime: tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap() }
    }

    fn all(&self, kind: ResourceKind) -> Vec<Value> {
        self.runtime.block_on(self.client.list_all(kind, 500)).unwrap()
    }

    fn by_name(&self, kind: ResourceKind, field: &str, value: &str) -> Value {
        self.all(kind)
            .into_iter()
            .find(|r| r[field].as_str().is_some_and(|v| v.eq_ignore_ascii_case(value)))
            .unwrap_or_else(|| panic!("no {kind:?} with {field} {value}"))
    }
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// How a server takes the writes the scenario needs.
struct Server<'a> {
    /// The PATCH operation this server takes to remove one member (django-scim2 refuses the
    /// bracket form).
    remove_member: &'a dyn Fn(&str) -> Value,
    /// Whether it drops the members a group is created with (django-scim2 does): the recreated
    /// group's members then come back by a PATCH of their own (a membership change, not a
    /// repair), under the `tenant-dropped-members` warning.
    drops_created_members: bool,
}

/// The scenario on one tenant.
fn drift_repaired(agent: &Agent, token: &str, users: usize, tag: &str, server: Server<'_>) {
    let path = agent.dir.path().join("listing.ldif");
    export(&path, users, tag);
    let source = format!("ldif:{}", path.display());
    let upn = |i: usize| format!("ls{i}x{tag}@example.test");

    let (code, first) = agent.sync(&["--full", "--source", &source]);
    assert_eq!(code, 0, "{}", excerpt(&first));
    assert_eq!(count(&first, "created"), users as u64 + 3, "{}", excerpt(&first));
    let console = Console::new(&agent.scim, token);

    // The listing's order is the server's (here, the order of the concurrent creates), not the
    // export's: take users at the first, a middle and the last position of the listing, so that
    // drift sits on different pages. Group members are left out, so that each group's repair is
    // only the one made below (a server may drop a deleted user from its groups).
    let listed = console.all(ResourceKind::User);
    assert_eq!(listed.len(), users);
    let members: BTreeSet<String> = [0, 1, 2, 3, users - 1].into_iter().map(upn).collect();
    let free: Vec<String> = listed
        .iter()
        .map(|u| u["userName"].as_str().unwrap().to_lowercase())
        .filter(|name| !members.contains(name))
        .collect();
    let last = free.len() - 1;
    let (gone, edited) = ([&free[0], &free[last / 2], &free[last]], [&free[1], &free[last - 1]]);
    let group_member = console.by_name(ResourceKind::User, "userName", &upn(1));
    for name in gone {
        let u = console.by_name(ResourceKind::User, "userName", name);
        console.runtime.block_on(console.client.delete(ResourceKind::User, &id(&u))).unwrap();
    }
    for name in edited {
        let u = console.by_name(ResourceKind::User, "userName", name);
        console
            .runtime
            .block_on(console.client.patch(
                ResourceKind::User,
                &id(&u),
                &[scim::patch_replace("name.familyName", json!("Edited"))],
            ))
            .unwrap();
    }
    let g1 = console.by_name(ResourceKind::Group, "displayName", "List Group1");
    console.runtime.block_on(console.client.delete(ResourceKind::Group, &id(&g1))).unwrap();
    let g0 = console.by_name(ResourceKind::Group, "displayName", "List Group0");
    console
        .runtime
        .block_on(console.client.patch(ResourceKind::Group, &id(&g0), &[(server.remove_member)(&id(&group_member))]))
        .unwrap();

    // One full sync repairs it all, from a listing of several pages read concurrently.
    let (code, fixed) = agent.sync(&["--full", "--source", &source]);
    assert_eq!(code, 0, "{}", excerpt(&fixed));
    let seen = &fixed["data"]["tenant"];
    assert_eq!(seen["complete"], true, "{}", excerpt(&fixed));
    let pages = seen["pages"].as_u64().unwrap_or_else(|| panic!("no tenant.pages in {}", excerpt(&fixed)));
    assert!(pages >= 3, "users on several pages: {pages} requests");
    let repaired =
        [count(&fixed, "repaired_users"), count(&fixed, "repaired_groups"), count(&fixed, "repaired_memberships")];
    assert_eq!(repaired, [5, 1, 1], "{}", excerpt(&fixed));
    let dropped = fixed["warnings"].as_array().unwrap().iter().any(|w| w["code"] == "tenant-dropped-members");
    assert_eq!(dropped, server.drops_created_members, "{}", excerpt(&fixed));
    assert_eq!((count(&fixed, "created"), count(&fixed, "failed")), (0, 0), "{}", excerpt(&fixed));

    let now = console.all(ResourceKind::User);
    assert_eq!(now.len(), users, "every deleted user is back, none twice");
    let names: BTreeSet<String> = now.iter().map(|u| u["userName"].as_str().unwrap().to_lowercase()).collect();
    assert_eq!(names, (0..users).map(upn).collect(), "exactly the export's users");
    for name in edited {
        assert_eq!(
            console.by_name(ResourceKind::User, "userName", name)["name"]["familyName"],
            "User",
            "{name} reverted"
        );
    }
    let g0 = console.by_name(ResourceKind::Group, "displayName", "List Group0");
    let members: BTreeSet<&str> =
        g0["members"].as_array().unwrap().iter().map(|m| m["value"].as_str().unwrap()).collect();
    assert!(members.contains(id(&group_member).as_str()), "the member is back: {g0}");
    console.by_name(ResourceKind::Group, "displayName", "List Group1");

    // And the next full sync, listing the same pages, writes nothing.
    let (code, quiet) = agent.sync(&["--full", "--source", &source]);
    assert_eq!(code, 0, "{}", excerpt(&quiet));
    assert_eq!(writes(&quiet), 0, "{}", excerpt(&quiet));
    assert_eq!(count(&quiet, "unchanged"), users as u64 + 3);
}

/// scim2-server serves 1,000 a page: 2,100 users are three pages, the last two in flight at once.
#[test]
fn scim2_server_a_parallel_listing_repairs_every_kind_of_drift() {
    let Some(tb) = testbed() else { return };
    let agent = tb.agent(&[], "[sync]\nconcurrency = 4");
    let token = std::fs::read_to_string(&tb.scim_token_file).unwrap().trim().to_owned();
    let tag = common::unique_tag();
    let server = Server { remove_member: &|member| scim::patch_remove_member(member), drops_created_members: false };
    drift_repaired(&agent, &token, 2100, &tag, server);
}

/// django-scim2 announces `filter.maxResults` 50 and ignores `attributes=` (it sends whole
/// resources, which changes nothing): 130 users are three pages.
#[test]
fn django_scim2_a_parallel_listing_repairs_every_kind_of_drift() {
    let Some(tb) = testbed() else { return };
    let Some(django) = Django::start() else { return };
    let agent = tb.agent_on(&django.base, &django.scim_url(), &django.token(), &[], "[sync]\nconcurrency = 4");
    let tag = format!("d{}", common::unique_tag());
    let server = Server {
        remove_member: &|member| json!({"op": "remove", "path": "members", "value": [{"value": member}]}),
        drops_created_members: true,
    };
    drift_repaired(&agent, &django.token(), 130, &tag, server);
}
