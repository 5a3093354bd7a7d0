//! The engine every command shares: scope resolution, the user rules, the provisioning policy,
//! the pure planner and the state store (and, next to them, applying a plan to the tenant).

pub mod apply;
pub mod desired;
pub mod engine;
#[cfg(test)]
pub(crate) mod fake_tenant;
pub mod health;
pub mod history;
pub mod map;
pub mod pace;
pub mod plan;
pub mod progress;
pub mod repair;
pub mod run;
pub mod scope;
pub mod spill;
pub mod validate;
