//! Provisioning policies (issue 14). The policy struct and its loading belong to the policy
//! module's owner; this file only declares the scoping part until then.

pub mod scoping;
