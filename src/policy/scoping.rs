//! Scoping rules and group options of a policy (the scope helper's module). Placeholder types
//! with the agreed interface (contract 3 of issue 14): `Default` is today's behaviour (OUs
//! only, every group in scope, nested members), so a policy without these tables behaves as
//! ausi always did.

use std::collections::BTreeSet;

use serde::Deserialize;

/// `[policies.NAME.scope]`: who is in scope besides the selected OUs.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scoping {}

impl Scoping {
    /// The directory attributes the rules read (lower-case).
    pub fn attributes(&self) -> BTreeSet<String> {
        BTreeSet::new()
    }

    /// Checked when the policy is loaded; the error names the field.
    pub fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

/// `[policies.NAME.groups]`: which groups sync and how nested groups are sent.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupOptions {}

impl GroupOptions {
    /// The directory attributes the options read (lower-case).
    pub fn attributes(&self) -> BTreeSet<String> {
        BTreeSet::new()
    }

    /// Checked when the policy is loaded; the error names the field.
    pub fn check(&self) -> Result<(), String> {
        Ok(())
    }
}
