//! RFC 4514 distinguished names, as Active Directory writes and compares them.
//!
//! A [`Dn`] keeps each attribute type as written and each value *unescaped*;
//! [`Display`](std::fmt::Display) re-escapes minimally, and [`Dn::normalized`]
//! gives the canonical key used for `Eq`/`Hash` (case-insensitive, spacing and
//! escaping differences removed, multi-valued RDNs sorted).

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

/// One attribute-value assertion (`type=value`) inside an RDN.
#[derive(Debug, Clone)]
struct Ava {
    /// Attribute type exactly as written (`CN`, `ou`, `2.5.4.3`).
    ty: String,
    /// Unescaped value, or for a `#`-hex BER value the raw `#...` string.
    value: String,
    /// The value was written as `#` followed by hex pairs (BER encoding).
    hex: bool,
}

/// A parsed distinguished name. The root DN (empty string) has no RDNs.
///
/// RDNs are stored leftmost first (`CN=x` of `CN=x,DC=a` is index 0).
#[derive(Debug, Clone, Default)]
pub struct Dn {
    rdns: Vec<Vec<Ava>>,
}

/// Why a string is not a valid DN. `message` names what went wrong and the
/// byte offset into `input` where it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnError {
    pub input: String,
    pub message: String,
}

impl fmt::Display for DnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The input is often attacker-controlled directory text: keep control
        // characters out of whatever terminal or log this ends up in.
        f.write_str("invalid DN \"")?;
        for c in self.input.chars() {
            if c.is_control() {
                write!(f, "\\u{{{:x}}}", c as u32)?;
            } else {
                write!(f, "{c}")?;
            }
        }
        write!(f, "\": {}", self.message)
    }
}

impl std::error::Error for DnError {}

/// Characters that may follow a backslash literally (RFC 4514 section 3).
const ESCAPABLE: &[u8] = b" \"#+,;<=>\\";

impl Dn {
    /// Parses an RFC 4514 string. The empty (or all-space) string is the root DN.
    pub fn parse(s: &str) -> Result<Dn, DnError> {
        let mut p = Parser { input: s, bytes: s.as_bytes(), pos: 0 };
        p.skip_spaces();
        if p.peek().is_none() {
            return Ok(Dn { rdns: Vec::new() });
        }
        // At most one RDN per comma (escaped ones included), so the list is allocated once.
        let mut rdns = Vec::with_capacity(s.bytes().filter(|b| *b == b',').count() + 1);
        let mut rdn = Vec::with_capacity(1);
        loop {
            p.skip_spaces();
            let ty = p.attr_type()?;
            p.skip_spaces();
            if p.peek() != Some(b'=') {
                return Err(p.err(format!(
                    "expected '=' after attribute type '{ty}' at byte {}, found {}",
                    p.pos,
                    p.describe(p.pos)
                )));
            }
            p.pos += 1;
            p.skip_spaces();
            let ava = if p.peek() == Some(b'#') { p.hex_value(ty)? } else { p.string_value(ty)? };
            rdn.push(ava);
            match p.peek() {
                None => {
                    rdns.push(rdn);
                    break;
                }
                Some(b'+') => p.pos += 1,
                Some(b',') => {
                    p.pos += 1;
                    rdns.push(std::mem::replace(&mut rdn, Vec::with_capacity(1)));
                }
                Some(_) => {
                    // Value parsers only stop at ',', '+' or end; stay total anyway.
                    return Err(p.err(format!("unexpected {} at byte {}", p.describe(p.pos), p.pos)));
                }
            }
        }
        Ok(Dn { rdns })
    }

    /// True for the root DN (no RDNs).
    pub fn is_root(&self) -> bool {
        self.rdns.is_empty()
    }

    /// Number of RDNs.
    pub fn len(&self) -> usize {
        self.rdns.len()
    }

    /// Same as [`Dn::is_root`] (no RDNs).
    pub fn is_empty(&self) -> bool {
        self.rdns.is_empty()
    }

    /// The DN with the leftmost RDN removed; the parent of a one-RDN DN is
    /// the root DN, and the root has no parent.
    pub fn parent(&self) -> Option<Dn> {
        if self.rdns.is_empty() { None } else { Some(Dn { rdns: self.rdns[1..].to_vec() }) }
    }

    /// Unescaped value of the first AVA of the leftmost RDN (`Doe, John`).
    /// For a `#`-hex BER value this is the raw `#...` string.
    pub fn rdn_value(&self) -> Option<&str> {
        self.rdns.first().and_then(|r| r.first()).map(|a| a.value.as_str())
    }

    /// Attribute type of the first AVA of the leftmost RDN, as written.
    pub fn rdn_type(&self) -> Option<&str> {
        self.rdns.first().and_then(|r| r.first()).map(|a| a.ty.as_str())
    }

    /// True when `self` is `ancestor` or lies below it (per [`Dn::normalized`]).
    pub fn is_descendant_of(&self, ancestor: &Dn) -> bool {
        self.depth_below(ancestor).is_some()
    }

    /// Number of RDNs between `self` and `ancestor`; `Some(0)` when equal,
    /// `None` when `self` is not below `ancestor`.
    pub fn depth_below(&self, ancestor: &Dn) -> Option<usize> {
        let extra = self.rdns.len().checked_sub(ancestor.rdns.len())?;
        let same = self.rdns[extra..].iter().zip(&ancestor.rdns).all(|(a, b)| rdn_eq(a, b));
        same.then_some(extra)
    }

    /// Canonical comparison key: types ASCII-lowercased (OIDs kept as
    /// written), values unescaped, Unicode-lowercased and re-escaped with
    /// [`escape_rdn_value`] (hex BER values: hex lowercased), AVAs of a
    /// multi-valued RDN sorted, RDNs joined with `,` without spaces.
    pub fn normalized(&self) -> String {
        // Exact when nothing needs escaping (`ty=value` per AVA, one separator between).
        let len: usize = self.rdns.iter().flatten().map(|a| a.ty.len() + a.value.len() + 2).sum();
        let mut out = String::with_capacity(len.saturating_sub(1));
        for (i, rdn) in self.rdns.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_rdn_normalized(&mut out, rdn);
        }
        out
    }

    /// A child of `self` whose single-valued RDN is `rdn_type=value`.
    /// `value` is the plain (unescaped) text; escaping happens on display.
    /// `rdn_type` must be a valid attribute type (`CN`, `OU`, an OID); it is
    /// not checked.
    pub fn child(&self, rdn_type: &str, value: &str) -> Dn {
        let mut rdns = Vec::with_capacity(self.rdns.len() + 1);
        rdns.push(vec![Ava { ty: rdn_type.to_string(), value: value.to_string(), hex: false }]);
        rdns.extend(self.rdns.iter().cloned());
        Dn { rdns }
    }
}

/// Appends the canonical form of one AVA (see [`Dn::normalized`]) to `out`.
fn push_ava_normalized(out: &mut String, a: &Ava) {
    let start = out.len();
    out.push_str(&a.ty);
    out[start..].make_ascii_lowercase();
    out.push('=');
    if a.hex {
        let start = out.len();
        out.push_str(&a.value);
        out[start..].make_ascii_lowercase();
    } else if a.value.is_ascii() {
        // ASCII lowercases char for char (no expansion), so escape as we go.
        push_escaped(out, a.value.chars().map(|c| c.to_ascii_lowercase()), a.value.len());
    } else {
        // Per-char lowercasing (not `str::to_lowercase`) so the result does
        // not depend on context such as word-final sigma.
        let lower: String = a.value.chars().flat_map(char::to_lowercase).collect();
        push_escaped(out, lower.chars(), lower.chars().count());
    }
}

fn ava_normalized(a: &Ava) -> String {
    let mut out = String::with_capacity(a.ty.len() + a.value.len() + 2);
    push_ava_normalized(&mut out, a);
    out
}

/// Appends the canonical form of one RDN: its AVAs normalized, sorted and joined with `+`.
fn push_rdn_normalized(out: &mut String, rdn: &[Ava]) {
    if let [ava] = rdn {
        push_ava_normalized(out, ava);
    } else {
        let mut avas: Vec<String> = rdn.iter().map(ava_normalized).collect();
        avas.sort();
        out.push_str(&avas.join("+"));
    }
}

/// `rdn_normalized(a) == rdn_normalized(b)` without building either: escaping is injective
/// and a hex value never normalizes like a string value (whose leading `#` is escaped), so
/// two single AVAs are equal when their kinds, types (ASCII case folded) and values (hex:
/// ASCII case folded, else lowercased per char) are.
fn rdn_eq(a: &[Ava], b: &[Ava]) -> bool {
    match (a, b) {
        ([x], [y]) => {
            x.hex == y.hex
                && x.ty.eq_ignore_ascii_case(&y.ty)
                && if x.hex || (x.value.is_ascii() && y.value.is_ascii()) {
                    x.value.eq_ignore_ascii_case(&y.value)
                } else {
                    x.value.chars().flat_map(char::to_lowercase).eq(y.value.chars().flat_map(char::to_lowercase))
                }
        }
        _ => {
            let (mut x, mut y) = (String::new(), String::new());
            push_rdn_normalized(&mut x, a);
            push_rdn_normalized(&mut y, b);
            x == y
        }
    }
}

impl PartialEq for Dn {
    fn eq(&self, other: &Dn) -> bool {
        self.rdns.len() == other.rdns.len() && self.rdns.iter().zip(&other.rdns).all(|(a, b)| rdn_eq(a, b))
    }
}

impl Eq for Dn {}

impl Hash for Dn {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.normalized().hash(state);
    }
}

impl FromStr for Dn {
    type Err = DnError;
    fn from_str(s: &str) -> Result<Dn, DnError> {
        Dn::parse(s)
    }
}

impl fmt::Display for Dn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, rdn) in self.rdns.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            for (j, ava) in rdn.iter().enumerate() {
                if j > 0 {
                    f.write_str("+")?;
                }
                f.write_str(&ava.ty)?;
                f.write_str("=")?;
                if ava.hex || !needs_escape(&ava.value) {
                    f.write_str(&ava.value)?;
                } else {
                    f.write_str(&escape_rdn_value(&ava.value))?;
                }
            }
        }
        Ok(())
    }
}

/// Escapes an attribute value for use in an RDN string (RFC 4514 section 2.4):
/// `, + " \ < > ; =` get a backslash, as do a leading `#`, a leading space and
/// a trailing space; control characters (C0, DEL, C1) become `\XX` per UTF-8
/// byte. Everything else, including non-ASCII text, is kept as is.
pub fn escape_rdn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 4);
    push_escaped(&mut out, value.chars(), value.chars().count());
    out
}

/// [`escape_rdn_value`] of the `count` characters `chars`, appended to `out`.
fn push_escaped(out: &mut String, chars: impl Iterator<Item = char>, count: usize) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let last = count.saturating_sub(1);
    for (i, c) in chars.enumerate() {
        match c {
            c if is_special(c) => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push('\\');
                    out.push(char::from(HEX[usize::from(b >> 4)]));
                    out.push(char::from(HEX[usize::from(b & 15)]));
                }
            }
            c => out.push(c),
        }
    }
}

/// True when [`escape_rdn_value`] would change `value`.
fn needs_escape(value: &str) -> bool {
    value.starts_with(['#', ' ']) || value.ends_with(' ') || value.chars().any(|c| is_special(c) || c.is_control())
}

/// A character escaped with a backslash wherever it stands in a value.
fn is_special(c: char) -> bool {
    matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
}

struct Parser<'a> {
    input: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    fn err(&self, message: String) -> DnError {
        DnError { input: self.input.to_string(), message }
    }

    /// Human description of what sits at `pos` (always a char boundary here).
    fn describe(&self, pos: usize) -> String {
        match self.input.get(pos..).and_then(|r| r.chars().next()) {
            None => "end of input".to_string(),
            Some(c) => format!("{c:?}"),
        }
    }

    fn attr_type(&mut self) -> Result<String, DnError> {
        let start = self.pos;
        match self.peek() {
            Some(c) if c.is_ascii_alphabetic() => {
                while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'-') {
                    self.pos += 1;
                }
            }
            Some(c) if c.is_ascii_digit() => {
                while matches!(self.peek(), Some(c) if c.is_ascii_digit() || c == b'.') {
                    self.pos += 1;
                }
                let oid = &self.input[start..self.pos];
                if oid.split('.').count() < 2 || oid.split('.').any(str::is_empty) {
                    return Err(self.err(format!("invalid numeric OID attribute type '{oid}' at byte {start}")));
                }
            }
            other => {
                let hint = match other {
                    Some(b',') | Some(b'+') => " (empty RDN)",
                    None if start > 0 => " (trailing separator)",
                    _ => "",
                };
                return Err(
                    self.err(format!("expected attribute type at byte {start}, found {}{hint}", self.describe(start)))
                );
            }
        }
        Ok(self.input[start..self.pos].to_string())
    }

    /// `#` followed by hex pairs: a BER-encoded value, kept as the raw string.
    fn hex_value(&mut self, ty: String) -> Result<Ava, DnError> {
        let start = self.pos;
        self.pos += 1; // '#'
        while matches!(self.peek(), Some(c) if c.is_ascii_hexdigit()) {
            self.pos += 1;
        }
        let digits = self.pos - start - 1;
        if digits == 0 || !digits.is_multiple_of(2) {
            return Err(self.err(format!(
                "hex-encoded value at byte {start} must have a non-empty, even number of hex digits, found {digits} followed by {}",
                self.describe(self.pos)
            )));
        }
        let value = self.input[start..self.pos].to_string();
        self.skip_spaces();
        match self.peek() {
            None | Some(b',') | Some(b'+') => Ok(Ava {
                ty,
                value,
                hex: true,
            }),
            Some(_) => Err(self.err(format!(
                "unexpected {} at byte {} in hex-encoded value starting at byte {start} (escape a leading '#' as '\\#')",
                self.describe(self.pos),
                self.pos
            ))),
        }
    }

    fn string_value(&mut self, ty: String) -> Result<Ava, DnError> {
        let start = self.pos;
        let mut out: Vec<u8> = Vec::with_capacity(16);
        // Unescaped spaces at the end of `out`; they are not significant.
        let mut trailing_spaces = 0usize;
        loop {
            match self.peek() {
                None | Some(b',') | Some(b'+') => break,
                Some(b'\\') => {
                    let esc = self.pos;
                    self.pos += 1;
                    match self.peek() {
                        None => {
                            return Err(self.err(format!("dangling '\\' at byte {esc}: input ends inside an escape")));
                        }
                        Some(h) if h.is_ascii_hexdigit() => match self.bytes.get(self.pos + 1).copied() {
                            Some(l) if l.is_ascii_hexdigit() => {
                                out.push(hex_val(h) << 4 | hex_val(l));
                                self.pos += 2;
                            }
                            _ => {
                                return Err(self.err(format!(
                                        "invalid escape at byte {esc}: '\\{}' must be followed by a second hex digit, found {}",
                                        h as char,
                                        self.describe(self.pos + 1)
                                    )));
                            }
                        },
                        Some(c) if ESCAPABLE.contains(&c) => {
                            out.push(c);
                            self.pos += 1;
                        }
                        Some(_) => {
                            return Err(self.err(format!(
                                "invalid escape at byte {esc}: '\\' followed by {}; expected two hex digits or one of \" # + , ; < = > \\ (or space)",
                                self.describe(self.pos)
                            )));
                        }
                    }
                    trailing_spaces = 0;
                }
                Some(c @ (b'"' | b';' | b'<' | b'>' | 0)) => {
                    return Err(self.err(format!(
                        "unescaped {:?} at byte {} must be written as '\\{}' or '\\{:02X}'",
                        c as char, self.pos, c as char, c
                    )));
                }
                Some(b' ') => {
                    out.push(b' ');
                    trailing_spaces += 1;
                    self.pos += 1;
                }
                Some(_) => {
                    // A run of plain bytes (this one included) is copied at once.
                    let rest = &self.bytes[self.pos..];
                    let run = rest
                        .iter()
                        .position(|b| matches!(b, b',' | b'+' | b'\\' | b'"' | b';' | b'<' | b'>' | 0 | b' '))
                        .unwrap_or(rest.len());
                    out.extend_from_slice(&rest[..run]);
                    trailing_spaces = 0;
                    self.pos += run;
                }
            }
        }
        out.truncate(out.len() - trailing_spaces);
        match String::from_utf8(out) {
            Ok(value) => Ok(Ava { ty, value, hex: false }),
            Err(_) => {
                Err(self.err(format!("hex escapes in the value starting at byte {start} do not form valid UTF-8")))
            }
        }
    }
}

fn hex_val(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn dn(s: &str) -> Dn {
        Dn::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(s: &str) -> DnError {
        match Dn::parse(s) {
            Ok(d) => panic!("{s:?} parsed as {d:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn ad_escaped_commas() {
        let d = dn(r"CN=Doe\, John,OU=Research\, Development,OU=Corp,DC=example,DC=test");
        assert_eq!(d.len(), 5);
        assert_eq!(d.rdn_type(), Some("CN"));
        assert_eq!(d.rdn_value(), Some("Doe, John"));
        let p = d.parent().unwrap();
        assert_eq!(p.rdn_type(), Some("OU"));
        assert_eq!(p.rdn_value(), Some("Research, Development"));
        assert_eq!(d.to_string(), r"CN=Doe\, John,OU=Research\, Development,OU=Corp,DC=example,DC=test");
        assert_eq!(d.normalized(), r"cn=doe\, john,ou=research\, development,ou=corp,dc=example,dc=test");
        // `\2C` and `\,` are the same character.
        assert_eq!(d, dn(r"CN=Doe\2C John,OU=Research\2c Development,OU=Corp,DC=example,DC=test"));
    }

    #[test]
    fn escaped_leading_hash() {
        let d = dn(r"CN=\#hash,OU=X,DC=a");
        assert_eq!(d.rdn_value(), Some("#hash"));
        assert_eq!(d.to_string(), r"CN=\#hash,OU=X,DC=a");
        assert_eq!(d, dn(r"CN=\23hash,OU=X,DC=a"));
        // A '#' after the first character needs no escape.
        assert_eq!(dn("CN=a#b,DC=a").rdn_value(), Some("a#b"));
        assert_eq!(escape_rdn_value("a#b"), "a#b");
    }

    #[test]
    fn hex_ber_value_kept_raw() {
        let d = dn("CN=#04024869 ,DC=a");
        assert_eq!(d.rdn_value(), Some("#04024869"));
        assert_eq!(d.to_string(), "CN=#04024869,DC=a");
        assert_eq!(d, dn("cn=#04024869,dc=A"));
        assert_eq!(dn("CN=#0A,DC=a"), dn("CN=#0a,DC=a"));
        // BER-hex "#0a" is not the string "#0a".
        assert_ne!(dn("CN=#0a,DC=a"), dn(r"CN=\#0a,DC=a"));
        assert!(err("CN=#hash,DC=a").message.contains("hex"));
        assert!(err("CN=#abc,DC=a").message.contains("even"));
        assert!(err("CN=#,DC=a").message.contains("hex"));
        assert!(err("CN=#00 x,DC=a").message.contains("byte 7"));
    }

    #[test]
    fn trailing_and_leading_spaces() {
        let d = dn(r"CN=Trailing\ ,DC=a");
        assert_eq!(d.rdn_value(), Some("Trailing "));
        assert_eq!(d.to_string(), r"CN=Trailing\ ,DC=a");
        assert_ne!(d, dn("CN=Trailing,DC=a"));
        assert_eq!(dn("CN=Trailing ,DC=a").rdn_value(), Some("Trailing"));
        let lead = dn(r"CN=\ lead,DC=a");
        assert_eq!(lead.rdn_value(), Some(" lead"));
        assert_eq!(lead.to_string(), r"CN=\ lead,DC=a");
        // Spaces inside a value are kept; only the outer unescaped ones go.
        assert_eq!(dn("CN=  a  b  ,DC=a").rdn_value(), Some("a  b"));
        // Escaped space followed by unescaped ones: the escaped one stays.
        assert_eq!(dn(r"CN=a\   ,DC=a").rdn_value(), Some("a "));
        assert_eq!(escape_rdn_value(" "), r"\ ");
        assert_eq!(escape_rdn_value("  "), r"\ \ ");
    }

    #[test]
    fn escaped_plus_vs_multivalued() {
        let single = dn(r"CN=A\+B,DC=a");
        let multi = dn("CN=A+UID=b,DC=a");
        assert_eq!(single.len(), 2);
        assert_eq!(multi.len(), 2);
        assert_eq!(single.rdn_value(), Some("A+B"));
        assert_eq!(multi.rdn_value(), Some("A"));
        assert_eq!(multi.rdn_type(), Some("CN"));
        assert_ne!(single, multi);
        assert_eq!(single.to_string(), r"CN=A\+B,DC=a");
        assert_eq!(multi.to_string(), "CN=A+UID=b,DC=a");
        // AVA order within an RDN is not significant.
        assert_eq!(multi, dn("uid=B + cn=a,DC=a"));
        assert_eq!(multi.normalized(), "cn=a+uid=b,dc=a");
    }

    #[test]
    fn hex_escapes_form_utf8() {
        let a = dn(r"CN=Lu\C4\8Dić,DC=a");
        let b = dn("CN=Lučić,DC=a");
        assert_eq!(a.rdn_value(), Some("Lučić"));
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "CN=Lučić,DC=a");
        // Non-ASCII case folding.
        assert_eq!(dn("CN=LUČIĆ,DC=a"), b);
        assert!(err(r"CN=Lu\C4,DC=a").message.contains("UTF-8"));
        assert!(err(r"CN=\FF,DC=a").message.contains("UTF-8"));
    }

    #[test]
    fn case_insensitive_equality_and_hash() {
        let a = dn("ou=corp,dc=EXAMPLE,dc=test");
        let b = dn("OU=Corp,DC=example,DC=TEST");
        assert_eq!(a, b);
        assert_eq!(a.normalized(), "ou=corp,dc=example,dc=test");
        let set: HashSet<Dn> = [a.clone(), b].into_iter().collect();
        assert_eq!(set.len(), 1);
        // Display keeps the spelling as written.
        assert_eq!(a.to_string(), "ou=corp,dc=EXAMPLE,dc=test");
    }

    #[test]
    fn spaces_around_separators() {
        let d = dn("CN = x , DC = a");
        assert_eq!(d, dn("CN=x,DC=a"));
        assert_eq!(d.rdn_value(), Some("x"));
        assert_eq!(d.rdn_type(), Some("CN"));
        assert_eq!(d.to_string(), "CN=x,DC=a");
        assert_eq!(dn("  CN=x+ UID = y ,DC=a  ").normalized(), "cn=x+uid=y,dc=a");
    }

    #[test]
    fn oid_types() {
        let d = dn("2.5.4.3=John,0.9.2342.19200300.100.1.25=example");
        assert_eq!(d.rdn_type(), Some("2.5.4.3"));
        assert_eq!(d.normalized(), "2.5.4.3=john,0.9.2342.19200300.100.1.25=example");
        assert!(err("2=x").message.contains("OID"));
        assert!(err("2..5=x").message.contains("OID"));
        assert!(err("2.5.=x").message.contains("OID"));
    }

    #[test]
    fn all_specials_escape_and_round_trip() {
        let d = dn(r#"CN=\"q\"\;\<x\>\=\\,DC=a"#);
        assert_eq!(d.rdn_value(), Some(r#""q";<x>=\"#));
        assert_eq!(d.to_string(), r#"CN=\"q\"\;\<x\>\=\\,DC=a"#);
        assert_eq!(Dn::parse(&d.to_string()).unwrap(), d);
        // Unescaped '=' in a value is allowed by RFC 4514.
        assert_eq!(dn("CN=a=b,DC=a").rdn_value(), Some("a=b"));
        // Control chars become \XX.
        let c = Dn::parse("DC=a").unwrap().child("CN", "a\nb\u{0}\u{85}");
        assert_eq!(c.to_string(), r"CN=a\0Ab\00\C2\85,DC=a");
        assert_eq!(Dn::parse(&c.to_string()).unwrap().rdn_value(), Some("a\nb\u{0}\u{85}"));
    }

    #[test]
    fn root_dn() {
        let r = dn("");
        assert!(r.is_root());
        assert_eq!(r.len(), 0);
        assert_eq!(r.parent(), None);
        assert_eq!(r.rdn_value(), None);
        assert_eq!(r.rdn_type(), None);
        assert_eq!(r.to_string(), "");
        assert_eq!(r.normalized(), "");
        assert!(dn("   ").is_root());
        assert_eq!(dn("DC=a").parent(), Some(r.clone()));
        assert!(dn("CN=x,DC=a").is_descendant_of(&r));
        assert_eq!(dn("CN=x,DC=a").depth_below(&r), Some(2));
    }

    #[test]
    fn descendants() {
        let base = dn("OU=Corp,DC=example,DC=test");
        let user = dn(r"CN=Doe\, John,OU=Research\, Development,ou=CORP,DC=Example,DC=test");
        assert!(user.is_descendant_of(&base));
        assert_eq!(user.depth_below(&base), Some(2));
        assert!(base.is_descendant_of(&base));
        assert_eq!(base.depth_below(&base), Some(0));
        assert!(!base.is_descendant_of(&user));
        assert_eq!(base.depth_below(&user), None);
        // Suffix match is per RDN, not per string: "OU=xCorp" is not under "OU=Corp".
        assert!(!dn("OU=xCorp,DC=example,DC=test").is_descendant_of(&base));
        assert!(!dn(r"CN=a,OU=x\,OU=Corp,DC=example,DC=test").is_descendant_of(&dn("OU=x,OU=Corp,DC=example,DC=test")));
        assert!(!dn("CN=a,DC=other,DC=test").is_descendant_of(&base));
    }

    #[test]
    fn child_escapes() {
        let base = dn("OU=Corp,DC=example,DC=test");
        let c = base.child("CN", "Doe, John");
        assert_eq!(c.to_string(), r"CN=Doe\, John,OU=Corp,DC=example,DC=test");
        assert_eq!(c.rdn_value(), Some("Doe, John"));
        assert_eq!(c.parent().unwrap(), base);
        assert_eq!(c.depth_below(&base), Some(1));
        let h = base.child("CN", "#x ");
        assert_eq!(h.to_string(), r"CN=\#x\ ,OU=Corp,DC=example,DC=test");
        assert_eq!(dn(&h.to_string()).rdn_value(), Some("#x "));
    }

    #[test]
    fn errors_say_what_and_where() {
        let e = err("CN=a,,DC=b");
        assert_eq!(e.input, "CN=a,,DC=b");
        assert!(e.message.contains("byte 5"), "{}", e.message);
        assert!(e.message.contains("empty RDN"), "{}", e.message);

        let e = err("=x");
        assert!(e.message.contains("attribute type") && e.message.contains("byte 0"), "{}", e.message);

        let e = err(r"CN=a\");
        assert!(e.message.contains("dangling") && e.message.contains("byte 4"), "{}", e.message);

        let e = err(r"CN=a\G1");
        assert!(e.message.contains("invalid escape") && e.message.contains("byte 4"), "{}", e.message);
        assert!(e.message.contains("'G'"), "{}", e.message);

        let e = err(r"CN=a\4");
        assert!(e.message.contains("second hex digit"), "{}", e.message);

        let e = err("CN=a,");
        assert!(e.message.contains("trailing"), "{}", e.message);
        let e = err("CN=a+");
        assert!(e.message.contains("byte 5"), "{}", e.message);
        let e = err("CN");
        assert!(e.message.contains("'='"), "{}", e.message);
        let e = err("CN=a;DC=b");
        assert!(e.message.contains("';'") && e.message.contains("byte 4"), "{}", e.message);
        assert!(err("CN=\"quoted\"").message.contains("unescaped"));
        assert!(err("C N=x").message.contains("'='"));
        assert!(err("CN=a,\u{1b}[31m=b").message.contains("attribute type"));

        // Display names the input with control characters made visible.
        let shown = err("CN=\u{1b}a\\").to_string();
        assert!(shown.starts_with("invalid DN \"CN=\\u{1b}a\\\": "), "{shown}");
        assert!(!shown.contains('\u{1b}'));
    }

    fn value_char() -> impl Strategy<Value = char> {
        prop_oneof![
            3 => any::<char>(),
            2 => prop::sample::select(vec![
                ',', '+', '"', '\\', '<', '>', ';', '=', '#', ' ', '\n', 'a', 'Z', 'č', '\u{85}'
            ]),
        ]
        .prop_filter("no NUL", |c| *c != '\0')
    }

    fn value() -> impl Strategy<Value = String> {
        prop::collection::vec(value_char(), 0..10).prop_map(|v| v.into_iter().collect())
    }

    fn attr_type() -> impl Strategy<Value = String> {
        prop_oneof!["[A-Za-z][A-Za-z0-9-]{0,6}", "[0-9]{1,3}(\\.[0-9]{1,3}){1,4}",]
    }

    fn ava() -> impl Strategy<Value = Ava> {
        prop_oneof![
            4 => (attr_type(), value()).prop_map(|(ty, value)| Ava { ty, value, hex: false }),
            1 => (attr_type(), "(#([0-9a-fA-F]{2}){1,4})").prop_map(|(ty, value)| Ava { ty, value, hex: true }),
        ]
    }

    fn arb_dn() -> impl Strategy<Value = Dn> {
        prop::collection::vec(prop::collection::vec(ava(), 1..3), 0..5).prop_map(|rdns| Dn { rdns })
    }

    /// The straightforward forms the faster ones must equal: every AVA normalized on its own,
    /// RDNs compared by their normalized text, values escaped through `escape_rdn_value`.
    fn reference_ava(a: &Ava) -> String {
        let ty = a.ty.to_ascii_lowercase();
        if a.hex {
            format!("{ty}={}", a.value.to_ascii_lowercase())
        } else {
            let lower: String = a.value.chars().flat_map(char::to_lowercase).collect();
            format!("{ty}={}", escape_rdn_value(&lower))
        }
    }

    fn reference_rdn(rdn: &[Ava]) -> String {
        let mut avas: Vec<String> = rdn.iter().map(reference_ava).collect();
        avas.sort();
        avas.join("+")
    }

    fn reference_normalized(d: &Dn) -> String {
        d.rdns.iter().map(|r| reference_rdn(r)).collect::<Vec<_>>().join(",")
    }

    fn reference_display(d: &Dn) -> String {
        let rdn = |r: &Vec<Ava>| {
            let shown =
                |a: &Ava| format!("{}={}", a.ty, if a.hex { a.value.clone() } else { escape_rdn_value(&a.value) });
            r.iter().map(shown).collect::<Vec<_>>().join("+")
        };
        d.rdns.iter().map(rdn).collect::<Vec<_>>().join(",")
    }

    /// `d` with its types and values upper-cased (hex digits included): normalizes like `d`
    /// unless the value holds characters whose cases do not round-trip (ß, the Kelvin sign).
    fn shouted(d: &Dn) -> Dn {
        let ava = |a: &Ava| Ava { ty: a.ty.to_uppercase(), value: a.value.to_uppercase(), hex: a.hex };
        Dn { rdns: d.rdns.iter().map(|r| r.iter().map(ava).collect()).collect() }
    }

    #[test]
    fn fast_comparison_agrees_on_unicode_case() {
        // The Kelvin sign lowercases to an ASCII 'k'; U+0130 to two characters.
        assert_eq!(dn("CN=\u{212a}x,DC=a"), dn("cn=kX,dc=A"));
        assert!(dn("CN=k,CN=\u{130},DC=a").is_descendant_of(&dn("CN=i\u{307},DC=A")));
        assert_ne!(dn("CN=#6162,DC=a"), dn("CN=\\#6162,DC=a"));
        assert_ne!(dn("CN=a+CN=b,DC=a"), dn("CN=a\\+CN\\=b,DC=a"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn normalized_and_comparisons_match_the_reference(d in arb_dn(), e in arb_dn()) {
            prop_assert_eq!(d.normalized(), reference_normalized(&d));
            prop_assert_eq!(d.to_string(), reference_display(&d));
            for other in [e, shouted(&d), d.clone()] {
                prop_assert_eq!(other.normalized(), reference_normalized(&other));
                prop_assert_eq!(d == other, reference_normalized(&d) == reference_normalized(&other));
                for (x, y) in d.rdns.iter().zip(&other.rdns) {
                    prop_assert_eq!(rdn_eq(x, y), reference_rdn(x) == reference_rdn(y));
                }
                let below = |a: &Dn, b: &Dn| {
                    let extra = a.rdns.len().checked_sub(b.rdns.len())?;
                    let same = a.rdns[extra..].iter().zip(&b.rdns).all(|(x, y)| reference_rdn(x) == reference_rdn(y));
                    same.then_some(extra)
                };
                prop_assert_eq!(d.depth_below(&other), below(&d, &other));
                prop_assert_eq!(other.depth_below(&d), below(&other, &d));
            }
        }

        #[test]
        fn display_parse_round_trip(d in arb_dn()) {
            let shown = d.to_string();
            let back = Dn::parse(&shown).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&back, &d);
            prop_assert_eq!(back.to_string(), shown);
            prop_assert_eq!(back.len(), d.len());
            for (r1, r2) in back.rdns.iter().zip(&d.rdns) {
                for (a1, a2) in r1.iter().zip(r2) {
                    prop_assert_eq!(&a1.value, &a2.value);
                    prop_assert_eq!(&a1.ty, &a2.ty);
                    prop_assert_eq!(a1.hex, a2.hex);
                }
            }
        }

        #[test]
        fn child_rdn_value_round_trips(v in value(), parent in arb_dn()) {
            let c = parent.child("CN", &v);
            prop_assert_eq!(c.rdn_value(), Some(v.as_str()));
            let back = Dn::parse(&c.to_string()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back.rdn_value(), Some(v.as_str()));
            prop_assert_eq!(&back, &c);
            prop_assert_eq!(back.depth_below(&parent), Some(1));
            prop_assert_eq!(back.parent(), Some(parent));
        }

        #[test]
        fn normalized_is_a_fixed_point(d in arb_dn()) {
            let n = d.normalized();
            let back = Dn::parse(&n).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back.normalized(), n);
        }

        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = Dn::parse(&s);
        }

        #[test]
        fn parse_never_panics_dn_like(s in "[A-Za-z0-9=,+#; \"<>.\\\\čé\u{0}-]{0,24}") {
            if let Ok(d) = Dn::parse(&s) {
                // Whatever parses must survive display and re-parse unchanged.
                let back = Dn::parse(&d.to_string()).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(back, d);
            }
        }
    }
}
