//! ausi against the second SCIM server of the testbed, django-scim2 (tests/common/django.rs).
//! Runs under `scripts/test`.

mod common;

use common::django::Django;
use common::testbed::testbed;

#[test]
fn register_records_what_django_scim2_announces() {
    let Some(tb) = testbed() else { return };
    let Some(django) = Django::start() else { return };
    let agent = tb.agent_on(&django.base, &django.scim_url(), &django.token(), &[], "");
    let config = std::fs::read_to_string(&agent.config).unwrap();
    assert!(config.contains("bulk = false"), "{config}");
    assert!(config.contains("filter = false"), "{config}");
    assert!(!config.contains(&django.token()), "the token is stored by reference");
}
