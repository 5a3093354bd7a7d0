//! The parser: recursive descent over characters, with the checks that need no data (arity,
//! the types of constant arguments, regexes compiled once) done here rather than per object.

use super::{ExprError, MAX_DEPTH, MAX_SOURCE_CHARS};

/// One function of the language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Func {
    Coalesce,
    Append,
    Join,
    Split,
    Item,
    ToLower,
    ToUpper,
    Trim,
    Replace,
    RegexReplace,
    Left,
    Mid,
    Switch,
    Iif,
    IsPresent,
    IsNullOrEmpty,
    Not,
    Equals,
    NormalizeDiacritics,
    PrimarySmtp,
    BitAnd,
    Constant,
    First,
    Count,
}

/// What a function's argument must be, checked at parse time as far as the argument's shape is
/// known (constants and the results of other functions) and again at evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Want {
    /// One text value (an integer is taken as its decimal text).
    Text,
    /// One text value, or a list whose values are each processed.
    TextOrList,
    /// A list; one text value is a list of one.
    List,
    Int,
    Bool,
    Any,
    /// A string constant (Constant's argument, RegexReplace's pattern).
    Literal,
}

pub(super) struct FuncInfo {
    pub(super) func: Func,
    pub(super) name: &'static str,
    pub(super) min: usize,
    /// None: any number from `min` on.
    pub(super) max: Option<usize>,
}

const fn f(func: Func, name: &'static str, min: usize, max: Option<usize>) -> FuncInfo {
    FuncInfo { func, name, min, max }
}

pub(super) const FUNCTIONS: &[FuncInfo] = &[
    f(Func::Append, "Append", 2, None),
    f(Func::BitAnd, "BitAnd", 2, Some(2)),
    f(Func::Coalesce, "Coalesce", 1, None),
    f(Func::Constant, "Constant", 1, Some(1)),
    f(Func::Count, "Count", 1, Some(1)),
    f(Func::Equals, "Equals", 2, Some(2)),
    f(Func::First, "First", 1, Some(1)),
    f(Func::Iif, "IIF", 3, Some(3)),
    f(Func::IsNullOrEmpty, "IsNullOrEmpty", 1, Some(1)),
    f(Func::IsPresent, "IsPresent", 1, Some(1)),
    f(Func::Item, "Item", 2, Some(2)),
    f(Func::Join, "Join", 2, None),
    f(Func::Left, "Left", 2, Some(2)),
    f(Func::Mid, "Mid", 3, Some(3)),
    f(Func::NormalizeDiacritics, "NormalizeDiacritics", 1, Some(1)),
    f(Func::Not, "Not", 1, Some(1)),
    f(Func::PrimarySmtp, "PrimarySmtp", 1, Some(1)),
    f(Func::RegexReplace, "RegexReplace", 3, Some(3)),
    f(Func::Replace, "Replace", 3, Some(3)),
    f(Func::Split, "Split", 2, Some(2)),
    f(Func::Switch, "Switch", 4, None),
    f(Func::ToLower, "ToLower", 1, Some(1)),
    f(Func::ToUpper, "ToUpper", 1, Some(1)),
    f(Func::Trim, "Trim", 1, Some(1)),
];

impl Func {
    pub(super) fn name(self) -> &'static str {
        FUNCTIONS.iter().find(|i| i.func == self).map_or("?", |i| i.name)
    }

    /// What argument `index` (0-based) must be.
    pub(super) fn want(self, index: usize) -> Want {
        use Func::*;
        match (self, index) {
            (Coalesce | IsPresent | IsNullOrEmpty | Equals, _) => Want::Any,
            (Append, _) => Want::Text,
            (Join, 0) => Want::Text,
            (Join, _) => Want::List,
            (Split, _) => Want::Text,
            (Item, 0) => Want::List,
            (Item, _) => Want::Int,
            (ToLower | ToUpper | Trim | NormalizeDiacritics, _) => Want::TextOrList,
            (Replace, 0) => Want::TextOrList,
            (Replace, _) => Want::Text,
            (RegexReplace, 0) => Want::TextOrList,
            (RegexReplace, 1) => Want::Literal,
            (RegexReplace, _) => Want::Text,
            (Left | Mid, 0) => Want::TextOrList,
            (Left | Mid, _) => Want::Int,
            // Switch(source, default, key1, value1, ...): keys are text, values anything
            (Switch, 0) => Want::Text,
            (Switch, i) if i >= 2 && i % 2 == 0 => Want::Text,
            (Switch, _) => Want::Any,
            (Iif, 0) => Want::Bool,
            (Iif, _) => Want::Any,
            (Not, _) => Want::Bool,
            (PrimarySmtp | First | Count, _) => Want::List,
            (BitAnd, _) => Want::Int,
            (Constant, _) => Want::Literal,
        }
    }
}

/// The shape of a node's value when it is not Null, as far as known before evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Text,
    Int,
    Bool,
    List,
    /// An attribute (one text or a list), or a choice between different shapes.
    Dyn,
}

#[derive(Debug, Clone)]
pub(super) enum Kind {
    /// A directory attribute, by lower-case name.
    Attr(String),
    Text(String),
    Int(i64),
    Bool(bool),
    Call {
        func: Func,
        args: Vec<Node>,
        /// RegexReplace's pattern, compiled once.
        regex: Option<Box<regex::Regex>>,
    },
}

#[derive(Debug, Clone)]
pub(super) struct Node {
    pub(super) kind: Kind,
    /// 1-based column (characters) where it starts.
    pub(super) column: usize,
    /// Byte range in the source, to quote it in an evaluation error.
    pub(super) start: usize,
    pub(super) end: usize,
}

impl Node {
    /// The attribute references under this node, in source order.
    pub(super) fn collect_references(&self, out: &mut Vec<(String, usize)>) {
        match &self.kind {
            Kind::Attr(name) => out.push((name.clone(), self.column)),
            Kind::Call { args, .. } => args.iter().for_each(|a| a.collect_references(out)),
            Kind::Text(_) | Kind::Int(_) | Kind::Bool(_) => {}
        }
    }

    fn ty(&self) -> Ty {
        match &self.kind {
            Kind::Attr(_) => Ty::Dyn,
            Kind::Text(_) => Ty::Text,
            Kind::Int(_) => Ty::Int,
            Kind::Bool(_) => Ty::Bool,
            Kind::Call { func, args, .. } => {
                use Func::*;
                match func {
                    Append | Join | Item | PrimarySmtp | Constant | First => Ty::Text,
                    Split => Ty::List,
                    IsPresent | IsNullOrEmpty | Not | Equals | BitAnd => Ty::Bool,
                    Count => Ty::Int,
                    // element-wise: a list in, a list out
                    ToLower | ToUpper | Trim | NormalizeDiacritics | Replace | RegexReplace | Left | Mid => {
                        match args.first().map(Node::ty) {
                            Some(Ty::List) => Ty::List,
                            Some(Ty::Dyn) => Ty::Dyn,
                            _ => Ty::Text,
                        }
                    }
                    Coalesce => unify(args.iter()),
                    Iif => unify(args.iter().skip(1)),
                    Switch => unify(
                        args.iter().enumerate().filter(|(i, _)| *i == 1 || (*i >= 3 && i % 2 == 1)).map(|(_, a)| a),
                    ),
                }
            }
        }
    }
}

fn unify<'a>(mut nodes: impl Iterator<Item = &'a Node>) -> Ty {
    let Some(first) = nodes.next().map(Node::ty) else {
        return Ty::Dyn;
    };
    if nodes.all(|n| n.ty() == first) { first } else { Ty::Dyn }
}

pub(super) fn parse(text: &str) -> Result<Node, ExprError> {
    let count = text.chars().count();
    if count > MAX_SOURCE_CHARS {
        return Err(ExprError {
            message: format!("the expression is longer than {MAX_SOURCE_CHARS} characters ({count})"),
            column: MAX_SOURCE_CHARS + 1,
        });
    }
    let mut p = Parser { chars: text.char_indices().collect(), len: text.len(), pos: 0, depth: 0 };
    let node = p.expression()?;
    p.skip_space();
    if let Some(c) = p.peek() {
        return Err(p.error(format!("unexpected {} after the end of the expression", describe(c))));
    }
    Ok(node)
}

struct Parser {
    chars: Vec<(usize, char)>,
    /// Byte length of the source.
    len: usize,
    /// Index into `chars`.
    pos: usize,
    depth: usize,
}

/// A character for an error message: invisible ones (controls, format characters, unusual
/// spaces) by their code point.
fn describe(c: char) -> String {
    if c == ' ' || c.is_ascii_graphic() || c.is_alphanumeric() {
        format!("'{c}'")
    } else {
        format!("character U+{:04X}", c as u32)
    }
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).map(|&(_, c)| c)
    }

    fn byte(&self) -> usize {
        self.chars.get(self.pos).map_or(self.len, |&(b, _)| b)
    }

    fn column(&self) -> usize {
        self.pos + 1
    }

    fn error(&self, message: String) -> ExprError {
        ExprError { message, column: self.column() }
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn node(&self, kind: Kind, start_pos: usize) -> Node {
        let start = self.chars.get(start_pos).map_or(self.len, |&(b, _)| b);
        Node { kind, column: start_pos + 1, start, end: self.byte() }
    }

    fn expression(&mut self) -> Result<Node, ExprError> {
        self.skip_space();
        let start = self.pos;
        match self.peek() {
            None => Err(self.error("expected an expression, found the end".to_string())),
            Some('[') => self.attribute(),
            Some('"') => self.string(),
            Some(c) if c == '-' || c.is_ascii_digit() => self.integer(),
            Some(c) if c.is_alphabetic() => {
                let name = self.identifier();
                let after = self.pos;
                self.skip_space();
                if self.peek() == Some('(') {
                    self.call(&name, start)
                } else if name.eq_ignore_ascii_case("true") || name.eq_ignore_ascii_case("false") {
                    self.pos = after;
                    Ok(self.node(Kind::Bool(name.eq_ignore_ascii_case("true")), start))
                } else if lookup(&name).is_some() {
                    Err(self.error(format!("expected '(' after {name}")))
                } else {
                    self.pos = start;
                    Err(self.error(format!(
                        "unexpected word \"{name}\": attributes are written in brackets ([{name}]), text in double quotes"
                    )))
                }
            }
            Some(c) => {
                Err(self.error(format!("unexpected {}: expected an attribute, a constant or a function", describe(c))))
            }
        }
    }

    fn identifier(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek().filter(|c| c.is_alphanumeric() || *c == '_') {
            name.push(c);
            self.pos += 1;
        }
        name
    }

    fn attribute(&mut self) -> Result<Node, ExprError> {
        let start = self.pos;
        self.pos += 1; // '['
        let mut name = String::new();
        match self.peek() {
            Some(c) if c.is_ascii_alphabetic() => {}
            Some(']') => return Err(self.error("empty attribute name".to_string())),
            Some(c) => return Err(self.error(format!("unexpected {} in an attribute name", describe(c)))),
            None => return Err(self.error("unterminated attribute name: expected ']'".to_string())),
        }
        while let Some(c) = self.peek() {
            match c {
                ']' => {
                    self.pos += 1;
                    return Ok(self.node(Kind::Attr(name), start));
                }
                c if c.is_ascii_alphanumeric() || c == '-' || c == '_' => {
                    name.push(c.to_ascii_lowercase());
                    self.pos += 1;
                }
                c => return Err(self.error(format!("unexpected {} in an attribute name", describe(c)))),
            }
        }
        Err(self.error("unterminated attribute name: expected ']'".to_string()))
    }

    fn string(&mut self) -> Result<Node, ExprError> {
        let start = self.pos;
        self.pos += 1; // '"'
        let mut text = String::new();
        while let Some(c) = self.peek() {
            match c {
                '"' => {
                    self.pos += 1;
                    return Ok(self.node(Kind::Text(text), start));
                }
                '\\' => match self.chars.get(self.pos + 1).map(|&(_, c)| c) {
                    Some(e @ ('"' | '\\')) => {
                        text.push(e);
                        self.pos += 2;
                    }
                    Some(e) => {
                        return Err(
                            self.error(format!("unknown escape \\{e} in a string: only \\\" and \\\\ are escapes"))
                        );
                    }
                    None => break,
                },
                c => {
                    text.push(c);
                    self.pos += 1;
                }
            }
        }
        Err(ExprError { message: "unterminated string: expected '\"'".to_string(), column: start + 1 })
    }

    fn integer(&mut self) -> Result<Node, ExprError> {
        let start = self.pos;
        let mut digits = String::new();
        if self.peek() == Some('-') {
            digits.push('-');
            self.pos += 1;
        }
        while let Some(c) = self.peek().filter(char::is_ascii_digit) {
            digits.push(c);
            self.pos += 1;
        }
        if digits == "-" {
            return Err(self.error("expected a digit after '-'".to_string()));
        }
        match digits.parse::<i64>() {
            Ok(n) => Ok(self.node(Kind::Int(n), start)),
            Err(_) => Err(ExprError { message: format!("integer {digits} is out of range"), column: start + 1 }),
        }
    }

    fn call(&mut self, name: &str, start: usize) -> Result<Node, ExprError> {
        let name_error = |message: String| ExprError { message, column: start + 1 };
        let Some(info) = lookup(name) else {
            return Err(name_error(format!("unknown function {name}; did you mean {}?", closest(name))));
        };
        if self.depth >= MAX_DEPTH {
            return Err(name_error(format!("functions nested more than {MAX_DEPTH} deep")));
        }
        self.depth += 1;
        self.pos += 1; // '('
        let mut args = Vec::new();
        self.skip_space();
        if self.peek() == Some(')') {
            self.pos += 1;
        } else {
            loop {
                args.push(self.expression()?);
                self.skip_space();
                match self.peek() {
                    Some(',') => self.pos += 1,
                    Some(')') => {
                        self.pos += 1;
                        break;
                    }
                    Some(c) => return Err(self.error(format!("unexpected {}: expected ',' or ')'", describe(c)))),
                    None => return Err(self.error(format!("unterminated call of {}: expected ')'", info.name))),
                }
            }
        }
        self.depth -= 1;
        check_arity(info, args.len()).map_err(name_error)?;
        for (i, arg) in args.iter().enumerate() {
            check_argument(info, i, arg)?;
        }
        let regex = match (info.func, args.get(1).map(|a| &a.kind)) {
            (Func::RegexReplace, Some(Kind::Text(pattern))) => {
                Some(Box::new(compile(pattern).map_err(|message| ExprError { message, column: args[1].column })?))
            }
            _ => None,
        };
        Ok(self.node(Kind::Call { func: info.func, args, regex }, start))
    }
}

fn lookup(name: &str) -> Option<&'static FuncInfo> {
    FUNCTIONS.iter().find(|i| i.name.eq_ignore_ascii_case(name))
}

/// The known function nearest to `name` (edit distance, case-insensitive).
fn closest(name: &str) -> &'static str {
    let name = name.to_lowercase();
    FUNCTIONS.iter().min_by_key(|i| edit_distance(&name, &i.name.to_lowercase())).map_or("?", |i| i.name)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1).min(row[j] + 1).min(diagonal + usize::from(ca != cb));
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn check_arity(info: &FuncInfo, n: usize) -> Result<(), String> {
    if info.func == Func::Switch && (n < info.min || n % 2 == 1) {
        return Err(format!(
            "Switch takes a source, a default and key/value pairs (an even number of arguments, at least 4), found {n}"
        ));
    }
    match info.max {
        Some(max) if max == info.min && n != max => {
            Err(format!("{} takes {max} argument{}, found {n}", info.name, plural(max)))
        }
        Some(max) if n < info.min || n > max => {
            Err(format!("{} takes {} to {max} arguments, found {n}", info.name, info.min))
        }
        None if n < info.min => Err(format!("{} takes at least {} arguments, found {n}", info.name, info.min)),
        _ => Ok(()),
    }
}

fn shape(ty: Ty) -> &'static str {
    match ty {
        Ty::Text => "text",
        Ty::Int => "an integer",
        Ty::Bool => "a boolean",
        Ty::List => "a list",
        Ty::Dyn => "a value",
    }
}

fn check_argument(info: &FuncInfo, index: usize, arg: &Node) -> Result<(), ExprError> {
    let err = |message: String| Err(ExprError { message, column: arg.column });
    let ty = arg.ty();
    let ordinal = index + 1;
    let name = info.name;
    match info.func.want(index) {
        Want::Any => {}
        Want::Text => {
            if matches!(ty, Ty::Bool | Ty::List) {
                return err(format!("{name}'s argument {ordinal} must be one text value, found {}", shape(ty)));
            }
        }
        Want::TextOrList | Want::List => {
            if matches!(ty, Ty::Bool) {
                return err(format!("{name}'s argument {ordinal} must be text or a list, found a boolean"));
            }
        }
        Want::Int => {
            if let Kind::Text(s) = &arg.kind {
                return err(format!("{name}'s argument {ordinal} must be an integer, found the text \"{s}\""));
            }
            if matches!(ty, Ty::Bool | Ty::List) {
                return err(format!("{name}'s argument {ordinal} must be an integer, found {}", shape(ty)));
            }
        }
        Want::Bool => {
            if !matches!(ty, Ty::Bool | Ty::Dyn) {
                return err(format!("{name}'s argument {ordinal} must be a boolean, found {}", shape(ty)));
            }
        }
        Want::Literal => {
            if !matches!(arg.kind, Kind::Text(_)) {
                return err(format!("{name}'s argument {ordinal} must be a string constant (\"...\")"));
            }
        }
    }
    // constants whose value alone is wrong
    let int = |i: usize| match &arg.kind {
        Kind::Int(n) if index == i => Some(*n),
        _ => None,
    };
    let text = |i: usize| match &arg.kind {
        Kind::Text(s) if index == i => Some(s.as_str()),
        _ => None,
    };
    match info.func {
        Func::Item if int(1).is_some_and(|n| n < 1) => {
            err("Item counts from 1: the index must be 1 or more".to_string())
        }
        Func::Mid if int(1).is_some_and(|n| n < 1) => err("Mid counts from 1: the start must be 1 or more".to_string()),
        Func::Mid if int(2).is_some_and(|n| n < 0) => err("Mid's length must be 0 or more".to_string()),
        Func::Split if text(1) == Some("") => err("Split's separator must not be empty".to_string()),
        Func::Replace if text(1) == Some("") => err("Replace's old text must not be empty".to_string()),
        _ => Ok(()),
    }
}

/// The size limits of a compiled regex (bytes of its program and of its lazy DFA's cache).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

fn compile(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern).size_limit(REGEX_SIZE_LIMIT).dfa_size_limit(REGEX_SIZE_LIMIT).build().map_err(
        |e| {
            let detail = match &e {
                regex::Error::Syntax(s) => s.lines().last().unwrap_or_default().trim().to_string(),
                regex::Error::CompiledTooBig(_) => "the compiled pattern is too big".to_string(),
                _ => e.to_string(),
            };
            format!("RegexReplace's pattern does not compile: {detail}")
        },
    )
}
