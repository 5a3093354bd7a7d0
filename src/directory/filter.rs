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
