//! The expression language of a policy's mappings: attribute references, constants and a fixed
//! set of functions in Entra's spelling (`Coalesce`, `Join`, `ToLower`, …).
//!
//! An [`Expr`] is parsed and checked once, when the policy is loaded: syntax, unknown functions,
//! arity and the types of constant arguments are [`ExprError`]s with the 1-based column of the
//! offending character. Evaluation is pure and bounded: no I/O, no loops, every function linear
//! in its input, capped sizes ([`MAX_TEXT_BYTES`], [`MAX_LIST_ITEMS`], [`MAX_LIST_BYTES`]) and
//! a step budget ([`MAX_STEPS`]); it never panics and reports bad data as an [`EvalError`].
//! The reference, with every function and its Null rule, is `docs/expressions.md`.

mod eval;
mod parse;
#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

pub use crate::directory::Values;

#[cfg(test)]
use parse::FUNCTIONS;

/// The longest expression accepted, in characters.
pub const MAX_SOURCE_CHARS: usize = 4096;
/// The deepest nesting of function calls accepted.
pub const MAX_DEPTH: usize = 32;
/// The largest text a step of an evaluation may produce (and one list element may hold).
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// The most values a list may hold.
pub const MAX_LIST_ITEMS: usize = 10_000;
/// The most bytes all values of one list may hold together.
pub const MAX_LIST_BYTES: usize = 1024 * 1024;
/// The work one evaluation may do, in steps (one per node plus one per byte read or written).
pub const MAX_STEPS: u64 = 16 * 1024 * 1024;

/// A value during evaluation, and the result of one.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Absent: an attribute without values, or a function's "nothing".
    Null,
    Text(String),
    /// Several values (a multi-valued attribute, or `Split`'s result).
    List(Vec<String>),
    Bool(bool),
    Int(i64),
}

impl fmt::Display for Value {
    /// Text as is, a list joined with "; ", Null as "", a Bool as `true`/`false`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => Ok(()),
            Value::Text(s) => f.write_str(s),
            Value::List(items) => f.write_str(&items.join("; ")),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(n) => write!(f, "{n}"),
        }
    }
}

/// Whether an attribute's values are within the sizes the evaluator accepts for a value (at a
/// limit, evaluating the attribute names the error).
pub fn within_limits(values: &Values) -> bool {
    if values.len() > MAX_LIST_ITEMS {
        return false;
    }
    let mut total = 0;
    for v in values.iter() {
        if v.len() > MAX_TEXT_BYTES {
            return false;
        }
        total += v.len() + 1;
    }
    total <= MAX_LIST_BYTES
}

/// Where an expression reads directory attributes from.
pub trait Attributes {
    /// The values of a directory attribute, by lower-case name; empty = absent. Borrowed where
    /// the source holds them: a function reading a list (`PrimarySmtp([proxyAddresses])`) copies
    /// nothing.
    fn values(&self, name: &str) -> Values<'_>;
}

impl Attributes for BTreeMap<String, Vec<String>> {
    fn values(&self, name: &str) -> Values<'_> {
        Values::Strings(Cow::Borrowed(self.get(name).map_or(&[], Vec::as_slice)))
    }
}

impl Attributes for HashMap<String, Vec<String>> {
    fn values(&self, name: &str) -> Values<'_> {
        Values::Strings(Cow::Borrowed(self.get(name).map_or(&[], Vec::as_slice)))
    }
}

/// A syntax, arity or type error in an expression, found when it is parsed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct ExprError {
    pub message: String,
    /// 1-based, in characters.
    pub column: usize,
}

/// A failure evaluating an expression for one object (bad data, a size or work limit).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct EvalError {
    pub message: String,
}

/// A parsed and checked expression.
#[derive(Debug, Clone)]
pub struct Expr {
    source: String,
    root: parse::Node,
    attributes: Vec<String>,
}

impl Expr {
    /// Parses and checks `text`: syntax, unknown function, wrong arity or argument type.
    pub fn parse(text: &str) -> Result<Expr, ExprError> {
        let root = parse::parse(text)?;
        let mut references = Vec::new();
        root.collect_references(&mut references);
        let mut attributes: Vec<String> = references.into_iter().map(|(name, _)| name).collect();
        attributes.sort();
        attributes.dedup();
        Ok(Expr { source: text.to_string(), root, attributes })
    }

    /// The attribute it is, when it is nothing but one attribute reference (`[mail]`): its
    /// lower-case name. Such an expression's value is the attribute's values, within the size
    /// limits (a caller may read them directly; [`Expr::eval`] gives the same value).
    pub fn single_attribute(&self) -> Option<&str> {
        match &self.root.kind {
            parse::Kind::Attr(name) => Some(name),
            _ => None,
        }
    }

    /// The directory attributes it reads: lower-case, sorted, deduplicated.
    pub fn attributes(&self) -> Vec<String> {
        self.attributes.clone()
    }

    /// Every attribute reference in source order: the lower-case name and its 1-based column.
    pub fn attribute_references(&self) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        self.root.collect_references(&mut out);
        out
    }

    /// Checks that every attribute it reads is one the directory has (`known` answers for a
    /// lower-case name): the first that is not is an error at its column.
    pub fn check_attributes(&self, known: impl Fn(&str) -> bool) -> Result<(), ExprError> {
        match self.attribute_references().into_iter().find(|(name, _)| !known(name)) {
            Some((name, column)) => Err(ExprError { message: format!("unknown attribute [{name}]"), column }),
            None => Ok(()),
        }
    }

    /// Evaluates it against one object's attributes: bounded cost, never panics.
    pub fn eval(&self, attrs: &dyn Attributes) -> Result<Value, EvalError> {
        self.eval_counted(attrs).0
    }

    /// The text it was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// [`Expr::eval`], and the steps it took (for the tests of the work bound).
    pub(crate) fn eval_counted(&self, attrs: &dyn Attributes) -> (Result<Value, EvalError>, u64) {
        eval::evaluate(&self.source, &self.root, attrs)
    }
}

/// The functions of the language, in Entra's spelling (names are case-insensitive).
pub fn function_names() -> impl Iterator<Item = &'static str> {
    parse::FUNCTIONS.iter().map(|f| f.name)
}
