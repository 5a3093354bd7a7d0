//! RFC 4515 LDAP search filter construction with escaping.
//!
//! Values always go through [`escape_value`] / [`escape_bytes`], so text read
//! from the directory or from users can never change a filter's structure.

use std::fmt;

/// Escapes an assertion value (RFC 4515 section 3): `*` `(` `)` `\` and NUL
/// become `\2a` `\28` `\29` `\5c` `\00`, other C0 controls and DEL become
/// `\XX` (lowercase hex). Non-ASCII text is kept as UTF-8, which AD accepts.
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '*' | '(' | ')' | '\\' | '\u{0}'..='\u{1f}' | '\u{7f}' => {
                out.push_str(&format!("\\{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// Escapes every byte as `\XX` (lowercase hex), for binary matches such as
/// `objectGUID`.
pub fn escape_bytes(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for b in value {
        out.push_str(&format!("\\{b:02x}"));
    }
    out
}

/// An LDAP search filter. Render it with `to_string()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// `(&...)`; empty renders `(&)`, absolute true (RFC 4526).
    And(Vec<Filter>),
    /// `(|...)`; empty renders `(|)`, absolute false (RFC 4526).
    Or(Vec<Filter>),
    /// `(!...)`.
    Not(Box<Filter>),
    /// `(attr=value)`, value escaped.
    Eq(String, String),
    /// `(attr=*)`.
    Present(String),
    /// Rendered verbatim: only for trusted constant filters, e.g.
    /// `(userAccountControl:1.2.840.113556.1.4.803:=2)`. Must include its
    /// own parentheses.
    Raw(String),
    /// `(attr=\XX...)` matching 16 raw bytes, e.g. AD `objectGUID` in the
    /// byte order AD stores it.
    GuidEq(String, [u8; 16]),
    /// `(attr=initial*any*...*final)`, each part escaped; at least one `*`.
    Substrings(String, Substrings),
    /// `(attr>=value)`.
    Ge(String, String),
    /// `(attr<=value)`.
    Le(String, String),
    /// `(attr~=value)`.
    Approx(String, String),
    /// `(attr:rule:=value)`, e.g. AD's bit tests `userAccountControl:1.2.840.113556.1.4.803:=2`.
    Extensible { attr: String, rule: String, value: String },
}

/// The parts of a substring assertion (RFC 4515 `substring`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Substrings {
    pub initial: Option<String>,
    pub any: Vec<String>,
    pub last: Option<String>,
}

impl Filter {
    /// `Filter::Eq` from anything string-like.
    pub fn eq(attr: impl Into<String>, value: impl Into<String>) -> Filter {
        Filter::Eq(attr.into(), value.into())
    }

    /// `Filter::Present` from anything string-like.
    pub fn present(attr: impl Into<String>) -> Filter {
        Filter::Present(attr.into())
    }
}

/// Writes an attribute description. Legal characters (letters, digits, `-`,
/// `.` for OIDs, `;` for options) pass through; anything else is written as
/// `\XX` so that a bad name yields a filter the server rejects, never one
/// with a different structure.
fn write_attr(f: &mut fmt::Formatter<'_>, attr: &str) -> fmt::Result {
    for c in attr.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ';') {
            write!(f, "{c}")?;
        } else {
            let mut buf = [0u8; 4];
            f.write_str(&escape_bytes(c.encode_utf8(&mut buf).as_bytes()))?;
        }
    }
    Ok(())
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::And(items) | Filter::Or(items) => {
                f.write_str(if matches!(self, Filter::And(_)) { "(&" } else { "(|" })?;
                for item in items {
                    write!(f, "{item}")?;
                }
                f.write_str(")")
            }
            Filter::Not(inner) => write!(f, "(!{inner})"),
            Filter::Eq(attr, value) => {
                f.write_str("(")?;
                write_attr(f, attr)?;
                write!(f, "={})", escape_value(value))
            }
            Filter::Present(attr) => {
                f.write_str("(")?;
                write_attr(f, attr)?;
                f.write_str("=*)")
            }
            Filter::Raw(raw) => f.write_str(raw),
            Filter::GuidEq(attr, bytes) => {
                f.write_str("(")?;
                write_attr(f, attr)?;
                write!(f, "={})", escape_bytes(bytes))
            }
            Filter::Substrings(attr, parts) => {
                f.write_str("(")?;
                write_attr(f, attr)?;
                f.write_str("=")?;
                if let Some(initial) = &parts.initial {
                    f.write_str(&escape_value(initial))?;
                }
                f.write_str("*")?;
                for any in &parts.any {
                    write!(f, "{}*", escape_value(any))?;
                }
                if let Some(last) = &parts.last {
                    f.write_str(&escape_value(last))?;
                }
                f.write_str(")")
            }
            Filter::Ge(attr, value) | Filter::Le(attr, value) | Filter::Approx(attr, value) => {
                f.write_str("(")?;
                write_attr(f, attr)?;
                let op = match self {
                    Filter::Ge(..) => ">=",
                    Filter::Le(..) => "<=",
                    _ => "~=",
                };
                write!(f, "{op}{})", escape_value(value))
            }
            Filter::Extensible { attr, rule, value } => {
                f.write_str("(")?;
                write_attr(f, attr)?;
                f.write_str(":")?;
                write_attr(f, rule)?;
                write!(f, ":={})", escape_value(value))
            }
        }
    }
}

/// Why a filter text was refused: what, and where (1-based, in characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct FilterError {
    pub message: String,
    pub column: usize,
}

/// The longest filter text [`Filter::parse`] takes, in characters.
pub const MAX_FILTER_LEN: usize = 4096;
/// The deepest nesting of `&`, `|` and `!` [`Filter::parse`] takes.
pub const MAX_FILTER_DEPTH: usize = 32;

impl Filter {
    /// Parses an RFC 4515 filter written by an administrator: `(&(department=Sales)(!(title=*Intern*)))`.
    /// Attribute descriptions are names (letters, digits, `-`, options after `;`) or OIDs; values
    /// take `\XX` escapes and must be UTF-8. The extensible form takes an attribute and a matching
    /// rule (`attr:rule:=value`); `:dn` and a rule without an attribute are refused, since a
    /// source that filters locally (an LDIF export) could not answer them alike.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let chars: Vec<char> = text.chars().collect();
        if chars.len() > MAX_FILTER_LEN {
            return Err(FilterError { message: format!("longer than {MAX_FILTER_LEN} characters"), column: 1 });
        }
        let mut p = Parser { chars: &chars, pos: 0 };
        p.skip_space();
        let filter = p.filter(0)?;
        p.skip_space();
        if p.pos < chars.len() {
            return Err(p.error("text after the end of the filter"));
        }
        Ok(filter)
    }

    /// The attribute descriptions the filter reads, lower-case, without options; sorted, deduplicated.
    pub fn attributes(&self) -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        self.collect_attributes(&mut out);
        out
    }

    fn collect_attributes(&self, out: &mut std::collections::BTreeSet<String>) {
        let name = |a: &str| a.split(';').next().unwrap_or(a).to_ascii_lowercase();
        match self {
            Filter::And(items) | Filter::Or(items) => items.iter().for_each(|i| i.collect_attributes(out)),
            Filter::Not(inner) => inner.collect_attributes(out),
            Filter::Eq(a, _)
            | Filter::Present(a)
            | Filter::GuidEq(a, _)
            | Filter::Substrings(a, _)
            | Filter::Ge(a, _)
            | Filter::Le(a, _)
            | Filter::Approx(a, _)
            | Filter::Extensible { attr: a, .. } => {
                out.insert(name(a));
            }
            Filter::Raw(_) => {}
        }
    }
}

struct Parser<'a> {
    chars: &'a [char],
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, message: impl Into<String>) -> FilterError {
        FilterError { message: message.into(), column: self.pos + 1 }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(|c| c == ' ') {
            self.pos += 1;
        }
    }

    fn expect(&mut self, c: char) -> Result<(), FilterError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(match self.peek() {
                Some(found) => format!("expected `{c}`, found `{found}`"),
                None => format!("expected `{c}`, found the end of the filter"),
            }))
        }
    }

    fn filter(&mut self, depth: usize) -> Result<Filter, FilterError> {
        if depth > MAX_FILTER_DEPTH {
            return Err(self.error(format!("nested deeper than {MAX_FILTER_DEPTH} levels")));
        }
        self.expect('(')?;
        let filter = match self.peek() {
            Some('&') | Some('|') => {
                let and = self.peek() == Some('&');
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek() == Some('(') {
                    items.push(self.filter(depth + 1)?);
                }
                if items.is_empty() {
                    return Err(self.error(format!("`{}` needs at least one filter", if and { '&' } else { '|' })));
                }
                if and { Filter::And(items) } else { Filter::Or(items) }
            }
            Some('!') => {
                self.pos += 1;
                Filter::Not(Box::new(self.filter(depth + 1)?))
            }
            _ => self.item()?,
        };
        self.expect(')')?;
        Ok(filter)
    }

    fn attribute(&mut self, what: &str) -> Result<String, FilterError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ';')) {
            self.pos += 1;
        }
        let name: String = self.chars[start..self.pos].iter().collect();
        let base = name.split(';').next().unwrap_or_default();
        let is_name = base.starts_with(|c: char| c.is_ascii_alphabetic()) && !base.contains('.');
        let is_oid = !base.is_empty()
            && base.split('.').all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()));
        if name.is_empty() || !(is_name || is_oid) || name.ends_with(';') {
            self.pos = start;
            return Err(self.error(format!("expected {what}")));
        }
        Ok(name)
    }

    fn item(&mut self) -> Result<Filter, FilterError> {
        let attr = self.attribute("an attribute name")?;
        match self.peek() {
            Some('=') => {
                self.pos += 1;
                self.equality_or_substrings(attr)
            }
            Some(op @ ('>' | '<' | '~')) => {
                self.pos += 1;
                self.expect('=')?;
                let value = self.value(false)?.unwrap_or_default();
                Ok(match op {
                    '>' => Filter::Ge(attr, value),
                    '<' => Filter::Le(attr, value),
                    _ => Filter::Approx(attr, value),
                })
            }
            Some(':') => {
                self.pos += 1;
                if self.chars[self.pos..].starts_with(&['d', 'n', ':']) {
                    return Err(self.error("`:dn` matching is not supported"));
                }
                let rule = self.attribute("a matching rule")?;
                self.expect(':')?;
                self.expect('=')?;
                let value = self.value(false)?.unwrap_or_default();
                Ok(Filter::Extensible { attr, rule, value })
            }
            _ => Err(self.error("expected `=`, `>=`, `<=`, `~=` or `:`")),
        }
    }

    fn equality_or_substrings(&mut self, attr: String) -> Result<Filter, FilterError> {
        // Parts separated by unescaped `*`.
        let mut parts = vec![self.value(true)?.unwrap_or_default()];
        while self.peek() == Some('*') {
            self.pos += 1;
            parts.push(self.value(true)?.unwrap_or_default());
        }
        if parts.len() == 1 {
            return Ok(Filter::Eq(attr, parts.remove(0)));
        }
        if parts.len() == 2 && parts.iter().all(String::is_empty) {
            return Ok(Filter::Present(attr));
        }
        let last = parts.pop().filter(|p| !p.is_empty());
        let initial = Some(parts.remove(0)).filter(|p| !p.is_empty());
        if parts.iter().any(String::is_empty) {
            return Err(self.error("two `*` in a row"));
        }
        Ok(Filter::Substrings(attr, Substrings { initial, any: parts, last }))
    }

    /// An assertion value up to `)` (or `*` when `star_ends`), escapes decoded.
    fn value(&mut self, star_ends: bool) -> Result<Option<String>, FilterError> {
        let mut bytes = Vec::new();
        let start = self.pos;
        loop {
            match self.peek() {
                None | Some(')') => break,
                Some('*') if star_ends => break,
                Some(c @ ('(' | '*' | '\u{0}')) => {
                    return Err(self.error(format!("`{}` must be escaped in a value", c.escape_default())));
                }
                Some('\\') => {
                    let hex: String = self.chars.iter().skip(self.pos + 1).take(2).collect();
                    match u8::from_str_radix(&hex, 16) {
                        Ok(b) if hex.len() == 2 && hex.chars().all(|c| c.is_ascii_hexdigit()) => bytes.push(b),
                        _ => return Err(self.error("`\\` must be followed by two hex digits")),
                    }
                    self.pos += 3;
                }
                Some(c) => {
                    let mut buf = [0u8; 4];
                    bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    self.pos += 1;
                }
            }
        }
        match String::from_utf8(bytes) {
            Ok(s) => Ok(Some(s)),
            Err(_) => {
                self.pos = start;
                Err(self.error("the value's escapes are not UTF-8"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Inverse of `escape_value`, for checking round trips.
    fn unescape(s: &str) -> Option<String> {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\' {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).ok()
    }

    #[test]
    fn spec_example() {
        assert_eq!(
            Filter::Eq("sAMAccountName".into(), "a*b(c)\\".into()).to_string(),
            r"(sAMAccountName=a\2ab\28c\29\5c)"
        );
    }

    #[test]
    fn escape_value_cases() {
        assert_eq!(escape_value(""), "");
        assert_eq!(escape_value("plain text"), "plain text");
        assert_eq!(escape_value("nul\0"), r"nul\00");
        assert_eq!(escape_value("a\tb\r\n\u{1b}\u{7f}"), r"a\09b\0d\0a\1b\7f");
        assert_eq!(escape_value("Zoë 王芳 Ольга 😀"), "Zoë 王芳 Ольга 😀");
        // RFC 4514 DN specials mean nothing in a filter.
        assert_eq!(escape_value(r"CN=Doe\, John"), r"CN=Doe\5c, John");
    }

    #[test]
    fn injection_stays_inert() {
        let f = Filter::And(vec![Filter::eq("objectClass", "user"), Filter::eq("sAMAccountName", "*)(objectClass=*")]);
        assert_eq!(f.to_string(), r"(&(objectClass=user)(sAMAccountName=\2a\29\28objectClass=\2a))");
        let f = Filter::eq("cn", "x)(|(cn=*");
        assert_eq!(f.to_string(), r"(cn=x\29\28|\28cn=\2a)");
        let f = Filter::eq("mail", "\0*");
        assert_eq!(f.to_string(), r"(mail=\00\2a)");
        // A hostile attribute name cannot add structure either.
        let f = Filter::eq("cn=x)(objectClass", "y");
        assert_eq!(f.to_string(), r"(cn\3dx\29\28objectClass=y)");
        assert_eq!(Filter::present("a b").to_string(), r"(a\20b=*)");
    }

    #[test]
    fn composites() {
        assert_eq!(Filter::And(vec![]).to_string(), "(&)");
        assert_eq!(Filter::Or(vec![]).to_string(), "(|)");
        assert_eq!(Filter::And(vec![Filter::present("mail")]).to_string(), "(&(mail=*))");
        let f = Filter::And(vec![
            Filter::eq("objectCategory", "person"),
            Filter::Or(vec![Filter::eq("cn", "a"), Filter::eq("cn", "b")]),
            Filter::Not(Box::new(Filter::Raw("(userAccountControl:1.2.840.113556.1.4.803:=2)".into()))),
        ]);
        assert_eq!(
            f.to_string(),
            "(&(objectCategory=person)(|(cn=a)(cn=b))(!(userAccountControl:1.2.840.113556.1.4.803:=2)))"
        );
        assert_eq!(Filter::present("objectGUID;binary").to_string(), "(objectGUID;binary=*)");
        assert_eq!(Filter::eq("2.5.4.3", "x").to_string(), "(2.5.4.3=x)");
    }

    #[test]
    fn guid_bytes() {
        // schemaIDGUID of the AD `user` class, bf967aba-0de6-11d0-a285-00aa003049e2,
        // in AD byte order.
        let bytes = [0xba, 0x7a, 0x96, 0xbf, 0xe6, 0x0d, 0xd0, 0x11, 0xa2, 0x85, 0x00, 0xaa, 0x00, 0x30, 0x49, 0xe2];
        assert_eq!(
            Filter::GuidEq("objectGUID".into(), bytes).to_string(),
            r"(objectGUID=\ba\7a\96\bf\e6\0d\d0\11\a2\85\00\aa\00\30\49\e2)"
        );
        assert_eq!(escape_bytes(&[]), "");
        assert_eq!(escape_bytes(b"a*"), r"\61\2a");
    }

    #[test]
    fn parse_reads_every_form_and_renders_back() {
        for text in [
            "(department=Sales)",
            "(mail=*)",
            "(&(objectCategory=person)(|(cn=a)(cn=b))(!(title=*intern*)))",
            "(mail=*@example.com)",
            "(cn=J*n*Doe)",
            "(cn=Jo*)",
            "(employeeNumber>=100)",
            "(employeeNumber<=200)",
            "(sn~=smith)",
            "(userAccountControl:1.2.840.113556.1.4.803:=2)",
            r"(cn=a\2ab\28c\29\5c)",
            "(2.5.4.3=x)",
            "(cn;lang-de=Zoë)",
        ] {
            let f = Filter::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(f.to_string(), text);
        }
        assert_eq!(Filter::parse("(cn=*)").unwrap(), Filter::present("cn"));
        assert_eq!(Filter::parse(r"(cn=a\2a)").unwrap(), Filter::eq("cn", "a*"));
        assert_eq!(Filter::parse(r"(cn=\c3\a9)").unwrap(), Filter::eq("cn", "é"));
        assert_eq!(
            Filter::parse("(cn=a*b*c)").unwrap(),
            Filter::Substrings(
                "cn".into(),
                Substrings { initial: Some("a".into()), any: vec!["b".into()], last: Some("c".into()) }
            )
        );
        assert_eq!(Filter::parse("  (cn=x) ").unwrap(), Filter::eq("cn", "x"));
    }

    #[test]
    fn parse_errors_name_the_column() {
        let err = |text: &str| Filter::parse(text).unwrap_err();
        assert_eq!(err("department=Sales").column, 1);
        assert_eq!(err("(department=Sales").to_string(), "column 18: expected `)`, found the end of the filter");
        assert_eq!(err("(&)").to_string(), "column 3: `&` needs at least one filter");
        assert_eq!(err("(=x)").to_string(), "column 2: expected an attribute name");
        assert_eq!(err("(cn=a(b)").to_string(), "column 6: `(` must be escaped in a value");
        assert_eq!(err(r"(cn=a\zz)").to_string(), r"column 6: `\` must be followed by two hex digits");
        assert_eq!(err(r"(cn=\ff)").to_string(), "column 5: the value's escapes are not UTF-8");
        assert_eq!(err("(cn=a**b)").to_string(), "column 9: two `*` in a row");
        assert_eq!(err("(cn:dn:=x)").to_string(), "column 5: `:dn` matching is not supported");
        assert_eq!(err("(cn=x))").to_string(), "column 7: text after the end of the filter");
        assert_eq!(err("(cn!x)").column, 4);
        assert_eq!(err("(1cn=x)").column, 2);
        assert_eq!(err("(Zoë=x)").column, 4);
        let deep = format!("{}(cn=x){}", "(!".repeat(40), ")".repeat(40));
        assert!(err(&deep).message.contains("nested deeper"));
        assert!(err(&format!("(cn={})", "x".repeat(5000))).message.contains("longer than"));
    }

    #[test]
    fn attributes_are_lower_case_without_options() {
        let f = Filter::parse("(&(Department=x)(!(cn;lang-de=*))(|(MAIL=*a)(department>=b)))").unwrap();
        assert_eq!(f.attributes().into_iter().collect::<Vec<_>>(), ["cn", "department", "mail"]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn escaped_value_is_inert_and_reversible(v in any::<String>()) {
            let e = escape_value(&v);
            prop_assert!(!e.contains(['*', '(', ')', '\0']));
            prop_assert!(!e.chars().any(|c| c.is_ascii_control()));
            prop_assert_eq!(unescape(&e), Some(v.clone()));
            let rendered = Filter::eq("cn", v).to_string();
            prop_assert_eq!(rendered.matches('(').count(), 1);
            prop_assert_eq!(rendered.matches(')').count(), 1);
            prop_assert!(rendered.starts_with("(cn=") && rendered.ends_with(')'));
        }

        #[test]
        fn parse_never_panics_and_what_it_takes_renders_to_the_same_filter(text in "[()&|!=*~<>:a-c0-9.\\\\ ]{0,40}") {
            if let Ok(f) = Filter::parse(&text) {
                prop_assert_eq!(Filter::parse(&f.to_string()), Ok(f));
            }
        }

        #[test]
        fn a_value_survives_render_and_parse(v in any::<String>()) {
            let v: String = v.chars().filter(|c| *c != '\0').collect();
            prop_assert_eq!(Filter::parse(&Filter::eq("cn", v.clone()).to_string()), Ok(Filter::eq("cn", v)));
        }

        #[test]
        fn escaped_bytes_round_trip(v in prop::collection::vec(any::<u8>(), 0..32)) {
            let e = escape_bytes(&v);
            prop_assert_eq!(e.len(), v.len() * 3);
            let back: Vec<u8> = e
                .split('\\')
                .skip(1)
                .map(|h| u8::from_str_radix(h, 16).unwrap())
                .collect();
            prop_assert_eq!(back, v);
        }
    }
}
