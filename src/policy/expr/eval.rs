//! The evaluator: a walk over the parsed tree that counts its work and caps every value, so any
//! expression on any data ends in a value or an [`EvalError`], within [`MAX_STEPS`].

use icu_normalizer::DecomposingNormalizerBorrowed;
use icu_properties::CodePointMapData;
use icu_properties::props::GeneralCategory;

use super::parse::{Func, Kind, Node};
use super::{
    Attributes, EvalError, MAX_LIST_BYTES, MAX_LIST_ITEMS, MAX_STEPS, MAX_TEXT_BYTES, Value, Values, within_limits,
};

/// Evaluates `root` (parsed from `source`): the value or error, and the steps taken.
pub(super) fn evaluate(source: &str, root: &Node, attrs: &dyn Attributes) -> (Result<Value, EvalError>, u64) {
    let mut eval = Eval { source, attrs, steps: 0 };
    let result = eval.node(root);
    (result, eval.steps)
}

struct Eval<'a> {
    source: &'a str,
    attrs: &'a dyn Attributes,
    steps: u64,
}

fn fail<T>(message: String) -> Result<T, EvalError> {
    Err(EvalError { message })
}

/// Bytes held by a value (what producing or reading it costs).
fn size(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) | Value::Int(_) => 1,
        Value::Text(s) => s.len(),
        Value::List(items) => items.iter().map(String::len).sum::<usize>() + items.len(),
    }
}

/// [`size`] of an attribute's value ([`from_values`]), without building it.
fn values_size(values: &Values) -> usize {
    match values.len() {
        0 => 1,
        n => values.iter().map(str::len).sum::<usize>() + if n == 1 { 0 } else { n },
    }
}

/// A present value: not Null, not empty text, not an empty list.
fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Text(s) => !s.is_empty(),
        Value::List(items) => !items.is_empty(),
        Value::Bool(_) | Value::Int(_) => true,
    }
}

/// A value as a list of texts: Null is the empty list, one value a list of one.
fn list(v: Value) -> Vec<String> {
    match v {
        Value::Null => Vec::new(),
        Value::Text(s) => vec![s],
        Value::List(items) => items,
        Value::Bool(b) => vec![b.to_string()],
        Value::Int(n) => vec![n.to_string()],
    }
}

/// The attribute rule: no values is Null, one value is Text, several are a List.
fn from_values(mut values: Vec<String>) -> Value {
    match values.len() {
        0 => Value::Null,
        1 => Value::Text(values.pop().unwrap_or_default()),
        _ => Value::List(values),
    }
}

impl<'a> Eval<'a> {
    fn charge(&mut self, n: usize) -> Result<(), EvalError> {
        self.steps = self.steps.saturating_add(n as u64);
        if self.steps > MAX_STEPS {
            return fail(format!("the expression needs more than {MAX_STEPS} steps of work for this object"));
        }
        Ok(())
    }

    /// The source text of a node, shortened, to name it in an error.
    fn quote(&self, node: &Node) -> String {
        let text = self.source.get(node.start..node.end).unwrap_or("?");
        let mut chars = text.chars();
        let short: String = chars.by_ref().take(40).collect();
        if chars.next().is_some() { format!("{short}…") } else { short }
    }

    fn check_size(&self, v: &Value, node: &Node) -> Result<(), EvalError> {
        match v {
            Value::Text(s) if s.len() > MAX_TEXT_BYTES => {
                fail(format!("{} gives {} bytes of text, more than {MAX_TEXT_BYTES}", self.quote(node), s.len()))
            }
            Value::List(items) if items.len() > MAX_LIST_ITEMS => {
                fail(format!("{} gives {} values, more than {MAX_LIST_ITEMS}", self.quote(node), items.len()))
            }
            Value::List(items) => {
                if let Some(long) = items.iter().find(|s| s.len() > MAX_TEXT_BYTES) {
                    return fail(format!(
                        "{} gives a value of {} bytes, more than {MAX_TEXT_BYTES}",
                        self.quote(node),
                        long.len()
                    ));
                }
                let total = size(v);
                if total > MAX_LIST_BYTES {
                    return fail(format!(
                        "{} gives {total} bytes of values, more than {MAX_LIST_BYTES}",
                        self.quote(node)
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn node(&mut self, node: &Node) -> Result<Value, EvalError> {
        self.charge(1)?;
        let value = match &node.kind {
            Kind::Attr(name) => from_values(self.attrs.values(name).into_vec()),
            Kind::Text(s) => Value::Text(s.clone()),
            Kind::Int(n) => Value::Int(*n),
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Call { func, args, regex } => self.call(*func, args, regex.as_deref())?,
        };
        self.charge(size(&value))?;
        self.check_size(&value, node)?;
        Ok(value)
    }

    /// Evaluates an argument and charges for reading it.
    fn arg(&mut self, node: &Node) -> Result<Value, EvalError> {
        let v = self.node(node)?;
        self.charge(size(&v))?;
        Ok(v)
    }

    /// An argument as a list of texts (`list(self.arg(node)?)`), borrowed from the object when it
    /// is an attribute reference: the same steps charged and the same limits checked, in the same
    /// order, without copying the values.
    fn list_arg(&mut self, node: &Node) -> Result<Values<'a>, EvalError> {
        let Kind::Attr(name) = &node.kind else { return Ok(Values::Strings(list(self.arg(node)?).into())) };
        self.charge(1)?;
        let values = self.attrs.values(name);
        let size = values_size(&values);
        self.charge(size)?;
        if !within_limits(&values) {
            self.check_size(&from_values(values.clone().into_vec()), node)?;
        }
        self.charge(size)?;
        Ok(values)
    }

    /// One text value: Null stays None; a list of one is its value; a longer list is an error.
    fn text(&mut self, func: Func, node: &Node) -> Result<Option<String>, EvalError> {
        match self.arg(node)? {
            Value::Null => Ok(None),
            Value::Text(s) => Ok(Some(s)),
            Value::Int(n) => Ok(Some(n.to_string())),
            Value::Bool(b) => Ok(Some(b.to_string())),
            Value::List(mut items) if items.len() == 1 => Ok(items.pop()),
            Value::List(items) => fail(format!(
                "{}: {} has {} values where one is expected (pick one with First, Item or PrimarySmtp, or Join them)",
                func.name(),
                self.quote(node),
                items.len()
            )),
        }
    }

    fn int(&mut self, func: Func, node: &Node) -> Result<Option<i64>, EvalError> {
        match self.arg(node)? {
            Value::Int(n) => Ok(Some(n)),
            Value::Null => Ok(None),
            Value::Bool(_) => fail(format!("{}: {} is a boolean, not an integer", func.name(), self.quote(node))),
            other => {
                let items = list(other);
                match items.as_slice() {
                    [one] => match one.trim().parse::<i64>() {
                        Ok(n) => Ok(Some(n)),
                        Err(_) => fail(format!(
                            "{}: {} is \"{}\", not an integer",
                            func.name(),
                            self.quote(node),
                            one.chars().take(40).collect::<String>()
                        )),
                    },
                    _ => fail(format!(
                        "{}: {} has {} values where one integer is expected",
                        func.name(),
                        self.quote(node),
                        items.len()
                    )),
                }
            }
        }
    }

    /// A condition: Null is false; the texts "true" and "false" (any case, as AD writes them) count.
    fn boolean(&mut self, func: Func, node: &Node) -> Result<bool, EvalError> {
        match self.arg(node)? {
            Value::Bool(b) => Ok(b),
            Value::Null => Ok(false),
            Value::Text(s) if s.eq_ignore_ascii_case("true") => Ok(true),
            Value::Text(s) if s.eq_ignore_ascii_case("false") => Ok(false),
            _ => fail(format!("{}: {} is not a boolean (true or false)", func.name(), self.quote(node))),
        }
    }

    /// Applies `f` to a text value, or to each value of a list; Null stays Null.
    fn map(
        &mut self,
        func: Func,
        node: &Node,
        f: impl FnMut(&mut Self, &str) -> Result<String, EvalError>,
    ) -> Result<Value, EvalError> {
        let value = self.arg(node)?;
        self.map_value(func, node, value, f)
    }

    fn call(&mut self, func: Func, args: &[Node], regex: Option<&regex::Regex>) -> Result<Value, EvalError> {
        match func {
            Func::Coalesce => {
                for arg in args {
                    let v = self.arg(arg)?;
                    if present(&v) {
                        return Ok(v);
                    }
                }
                Ok(Value::Null)
            }
            Func::Append => {
                let mut out: Option<String> = None;
                for arg in args {
                    if let Some(s) = self.text(func, arg)? {
                        let acc = out.get_or_insert_with(String::new);
                        if acc.len() + s.len() > MAX_TEXT_BYTES {
                            return fail(format!("Append: the result grows past {MAX_TEXT_BYTES} bytes"));
                        }
                        acc.push_str(&s);
                    }
                }
                Ok(out.map_or(Value::Null, Value::Text))
            }
            Func::Join => {
                let separator = self.text(func, &args[0])?.unwrap_or_default();
                let mut out: Option<String> = None;
                for arg in &args[1..] {
                    for s in self.list_arg(arg)?.iter() {
                        let acc = match &mut out {
                            Some(acc) => {
                                acc.push_str(&separator);
                                acc
                            }
                            None => out.insert(String::new()),
                        };
                        acc.push_str(s);
                        if acc.len() > MAX_TEXT_BYTES {
                            return fail(format!("Join: the result grows past {MAX_TEXT_BYTES} bytes"));
                        }
                    }
                }
                Ok(out.map_or(Value::Null, Value::Text))
            }
            Func::Split => {
                let text = self.text(func, &args[0])?;
                let separator = self.text(func, &args[1])?.unwrap_or_default();
                if separator.is_empty() {
                    return fail(format!("Split: the separator {} is empty", self.quote(&args[1])));
                }
                let Some(text) = text else { return Ok(Value::Null) };
                let mut parts = Vec::new();
                for part in text.split(separator.as_str()) {
                    if parts.len() == MAX_LIST_ITEMS {
                        return fail(format!("Split: {} has more than {MAX_LIST_ITEMS} parts", self.quote(&args[0])));
                    }
                    parts.push(part.to_string());
                }
                Ok(Value::List(parts))
            }
            Func::Item => {
                let items = self.list_arg(&args[0])?;
                let Some(index) = self.int(func, &args[1])? else { return Ok(Value::Null) };
                if index < 1 {
                    return fail(format!("Item: the index {} is {index}; Item counts from 1", self.quote(&args[1])));
                }
                let index = usize::try_from(index - 1).unwrap_or(usize::MAX);
                Ok(items.get(index).map_or(Value::Null, |s| Value::Text(s.to_owned())))
            }
            Func::First => Ok(self.list_arg(&args[0])?.first().map_or(Value::Null, |s| Value::Text(s.to_owned()))),
            Func::Count => Ok(Value::Int(i64::try_from(self.list_arg(&args[0])?.len()).unwrap_or(i64::MAX))),
            Func::ToLower => self.map(func, &args[0], |_, s| Ok(s.to_lowercase())),
            Func::ToUpper => self.map(func, &args[0], |_, s| Ok(s.to_uppercase())),
            Func::Trim => self.map(func, &args[0], |_, s| Ok(s.trim().to_string())),
            Func::NormalizeDiacritics => self.map(func, &args[0], |_, s| Ok(normalize_diacritics(s))),
            Func::Replace => {
                let old = self.text(func, &args[1])?.unwrap_or_default();
                let new = self.text(func, &args[2])?.unwrap_or_default();
                if old.is_empty() {
                    return fail(format!("Replace: the old text {} is empty", self.quote(&args[1])));
                }
                self.map(func, &args[0], |ev, s| {
                    let grows = new.len().saturating_sub(old.len());
                    // every match may add `grows` bytes: refuse before building a huge string
                    if grows > 0 && s.len() + s.matches(old.as_str()).count() * grows > MAX_TEXT_BYTES {
                        return fail(format!("Replace: the result grows past {MAX_TEXT_BYTES} bytes"));
                    }
                    ev.charge(s.len())?;
                    Ok(s.replace(old.as_str(), &new))
                })
            }
            Func::RegexReplace => {
                let Some(regex) = regex else {
                    return fail("RegexReplace: the pattern was not compiled".to_string());
                };
                let replacement = self.text(func, &args[2])?.unwrap_or_default();
                self.map(func, &args[0], |ev, s| ev.regex_replace(regex, s, &replacement))
            }
            Func::Left => {
                let n = self.int(func, &args[1])?;
                // as Entra: Null is "", a negative count gives the whole text
                match self.arg(&args[0])? {
                    Value::Null => Ok(Value::Text(String::new())),
                    v => {
                        let Some(n) = n else { return Ok(Value::Null) };
                        self.map_value(func, &args[0], v, |_, s| {
                            Ok(if n < 0 { s.to_string() } else { s.chars().take(clamp(n)).collect() })
                        })
                    }
                }
            }
            Func::Mid => {
                let start = self.int(func, &args[1])?;
                let length = self.int(func, &args[2])?;
                let (Some(start), Some(length)) = (start, length) else { return Ok(Value::Null) };
                if start < 1 {
                    return fail(format!("Mid: the start {} is {start}; Mid counts from 1", self.quote(&args[1])));
                }
                if length < 0 {
                    return fail(format!("Mid: the length {} is negative ({length})", self.quote(&args[2])));
                }
                self.map(func, &args[0], |_, s| Ok(s.chars().skip(clamp(start - 1)).take(clamp(length)).collect()))
            }
            Func::Switch => {
                let source = self.text(func, &args[0])?;
                if let Some(source) = source {
                    let source = source.to_lowercase();
                    for pair in args[2..].chunks(2) {
                        let [key, value] = pair else { break };
                        if self.text(func, key)?.is_some_and(|k| k.to_lowercase() == source) {
                            return self.arg(value);
                        }
                    }
                }
                self.arg(&args[1])
            }
            Func::Iif => {
                if self.boolean(func, &args[0])? {
                    self.arg(&args[1])
                } else {
                    self.arg(&args[2])
                }
            }
            Func::IsPresent => Ok(Value::Bool(present(&self.arg(&args[0])?))),
            Func::IsNullOrEmpty => Ok(Value::Bool(!present(&self.arg(&args[0])?))),
            Func::Not => Ok(Value::Bool(!self.boolean(func, &args[0])?)),
            Func::Equals => {
                let a = self.list_arg(&args[0])?;
                let b = self.list_arg(&args[1])?;
                Ok(Value::Bool(
                    a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| x.to_lowercase() == y.to_lowercase()),
                ))
            }
            Func::PrimarySmtp => {
                let items = self.list_arg(&args[0])?;
                let mut primary = items.iter().filter_map(|s| s.strip_prefix("SMTP:"));
                match (primary.next(), primary.next()) {
                    (None, _) => Ok(Value::Null),
                    (Some(address), None) => Ok(Value::Text(address.to_string())),
                    (Some(_), Some(_)) => {
                        fail(format!("PrimarySmtp: {} has more than one primary address (SMTP:)", self.quote(&args[0])))
                    }
                }
            }
            Func::BitAnd => {
                let value = self.int(func, &args[0])?;
                let mask = self.int(func, &args[1])?;
                Ok(Value::Bool(matches!((value, mask), (Some(v), Some(m)) if v & m != 0)))
            }
            Func::Constant => self.arg(&args[0]),
        }
    }

    /// [`Eval::map`] on a value already evaluated.
    fn map_value(
        &mut self,
        func: Func,
        node: &Node,
        value: Value,
        mut f: impl FnMut(&mut Self, &str) -> Result<String, EvalError>,
    ) -> Result<Value, EvalError> {
        match value {
            Value::Null => Ok(Value::Null),
            Value::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut total = 0usize;
                for item in &items {
                    let s = f(self, item)?;
                    total += s.len();
                    if total > MAX_LIST_BYTES {
                        return fail(format!(
                            "{}: the values of {} grow past {MAX_LIST_BYTES} bytes",
                            func.name(),
                            self.quote(node)
                        ));
                    }
                    out.push(s);
                }
                Ok(Value::List(out))
            }
            Value::Text(s) => Ok(Value::Text(f(self, &s)?)),
            Value::Int(n) => Ok(Value::Text(f(self, &n.to_string())?)),
            Value::Bool(_) => fail(format!("{}: {} is a boolean, not text", func.name(), self.quote(node))),
        }
    }

    /// Replaces every match, refusing a result over [`MAX_TEXT_BYTES`] before building it: one
    /// expansion writes at most the replacement plus, per `$` in it, the match's length.
    fn regex_replace(&mut self, regex: &regex::Regex, s: &str, replacement: &str) -> Result<String, EvalError> {
        let references = replacement.matches('$').count();
        let mut out = String::new();
        let mut last = 0;
        for caps in regex.captures_iter(s) {
            let Some(whole) = caps.get(0) else { continue };
            let bound = replacement.len() + references * whole.len();
            if out.len() + (whole.start() - last) + bound > MAX_TEXT_BYTES {
                return fail(format!("RegexReplace: the result grows past {MAX_TEXT_BYTES} bytes"));
            }
            out.push_str(&s[last..whole.start()]);
            caps.expand(replacement, &mut out);
            last = whole.end();
            self.charge(whole.len() + bound)?;
        }
        out.push_str(&s[last..]);
        self.charge(s.len())?;
        Ok(out)
    }
}

/// A non-negative count as usize (callers have refused negatives).
fn clamp(n: i64) -> usize {
    usize::try_from(n.max(0)).unwrap_or(usize::MAX)
}

/// Letters that canonical decomposition (NFD) leaves whole, and their plain spelling.
pub(super) const FOLDS: &[(char, &str)] = &[
    ('ß', "ss"),
    ('ẞ', "SS"),
    ('æ', "ae"),
    ('Æ', "AE"),
    ('œ', "oe"),
    ('Œ', "OE"),
    ('ø', "o"),
    ('Ø', "O"),
    ('ł', "l"),
    ('Ł', "L"),
    ('đ', "d"),
    ('Đ', "D"),
    ('ð', "d"),
    ('Ð', "D"),
    ('þ', "th"),
    ('Þ', "Th"),
    ('ħ', "h"),
    ('Ħ', "H"),
    ('ı', "i"),
    ('ŀ', "l"),
    ('Ŀ', "L"),
    ('ŧ', "t"),
    ('Ŧ', "T"),
];

/// NFD, then drops the nonspacing marks (accents) and spells [`FOLDS`]'s letters plainly.
fn normalize_diacritics(s: &str) -> String {
    if s.is_ascii() {
        return s.to_string();
    }
    let categories = CodePointMapData::<GeneralCategory>::new();
    let mut out = String::with_capacity(s.len());
    for c in DecomposingNormalizerBorrowed::new_nfd().normalize_iter(s.chars()) {
        if categories.get(c) == GeneralCategory::NonspacingMark {
            continue;
        }
        match FOLDS.iter().find(|(from, _)| *from == c) {
            Some((_, to)) => out.push_str(to),
            None => out.push(c),
        }
    }
    out
}
