//! Provisioning policies: how directory objects become tenant objects (mapping, scoping).
//! Pure code, no I/O. [`expr`] is the expression language of a mapping's source.

pub mod expr;
pub mod scoping;
