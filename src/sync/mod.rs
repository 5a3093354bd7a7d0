//! The engine every command shares: scope resolution and the user rules (and, in later
//! releases, mapping, planning, applying and the state store).

pub mod scope;
pub mod validate;
