//! Active Directory `objectGUID` values.
//!
//! AD stores a GUID as 16 bytes in Microsoft's mixed-endian layout: Data1
//! (u32), Data2 (u16) and Data3 (u16) little-endian, then 8 bytes as-is. The
//! canonical string form reads those fields as numbers, so bytes
//! `00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff` display as
//! `33221100-5544-7766-8899-aabbccddeeff`.

use std::fmt;

/// An `objectGUID`, holding the raw bytes exactly as AD stores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectGuid(pub [u8; 16]);

impl ObjectGuid {
    /// The raw attribute value; `None` unless it is exactly 16 bytes.
    pub fn from_bytes(b: &[u8]) -> Option<ObjectGuid> {
        <[u8; 16]>::try_from(b).ok().map(ObjectGuid)
    }

    /// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (any case, optionally in
    /// `{}`) into AD byte order. Nothing else is accepted: no surrounding
    /// whitespace, no missing dashes, no `urn:uuid:` prefix.
    pub fn parse(s: &str) -> Option<ObjectGuid> {
        let s = match s.strip_prefix('{') {
            Some(inner) => inner.strip_suffix('}')?,
            None => s,
        };
        let b = s.as_bytes();
        if b.len() != 36 {
            return None;
        }
        let mut digits = [0u8; 16];
        let mut n = 0;
        let mut i = 0;
        while i < 36 {
            if matches!(i, 8 | 13 | 18 | 23) {
                if b[i] != b'-' {
                    return None;
                }
                i += 1;
                continue;
            }
            digits[n] = hex(b[i])? << 4 | hex(b[i + 1])?;
            n += 1;
            i += 2;
        }
        // `digits` is now the GUID in reading order (big-endian fields);
        // swap the first three fields into AD's little-endian layout.
        let mut out = digits;
        out[0..4].reverse();
        out[4..6].reverse();
        out[6..8].reverse();
        Some(ObjectGuid(out))
    }

    /// The raw bytes in AD order (what an `objectGUID` filter must match).
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for ObjectGuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // By hand, not sixteen `{:02x}`: a run formats every object's objectGUID several times.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        const ORDER: [usize; 16] = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
        let mut text = [b'-'; 36];
        let mut at = 0;
        for (i, byte) in ORDER.iter().map(|&i| self.0[i]).enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                at += 1; // past a dash
            }
            text[at] = HEX[usize::from(byte >> 4)];
            text[at + 1] = HEX[usize::from(byte & 0xf)];
            at += 2;
        }
        f.write_str(std::str::from_utf8(&text).expect("hex digits and dashes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEQ: [u8; 16] =
        [0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff];

    #[test]
    fn spec_example() {
        let g = ObjectGuid(SEQ);
        assert_eq!(g.to_string(), "33221100-5544-7766-8899-aabbccddeeff");
        assert_eq!(ObjectGuid::parse("33221100-5544-7766-8899-aabbccddeeff"), Some(g));
        assert_eq!(ObjectGuid::parse("{33221100-5544-7766-8899-AABBCCDDEEFF}"), Some(g));
        assert_eq!(ObjectGuid::from_bytes(&SEQ), Some(g));
        assert_eq!(g.as_bytes(), &SEQ);
    }

    #[test]
    fn real_ad_value() {
        // schemaIDGUID of the `user` class, identical in every AD forest:
        // documented as bf967aba-0de6-11d0-a285-00aa003049e2, and exported
        // by ldifde as `schemaIDGUID:: unqWv+YN0BGihQCqADBJ4g==`, which is
        // base64 of the bytes below.
        let raw = [0xba, 0x7a, 0x96, 0xbf, 0xe6, 0x0d, 0xd0, 0x11, 0xa2, 0x85, 0x00, 0xaa, 0x00, 0x30, 0x49, 0xe2];
        let g = ObjectGuid::from_bytes(&raw).unwrap();
        assert_eq!(g.to_string(), "bf967aba-0de6-11d0-a285-00aa003049e2");
        assert_eq!(ObjectGuid::parse("BF967ABA-0DE6-11D0-A285-00AA003049E2"), Some(g));
        // `computer` class: bf967a86-0de6-11d0-a285-00aa003049e2.
        let c = ObjectGuid::parse("bf967a86-0de6-11d0-a285-00aa003049e2").unwrap();
        assert_eq!(c.as_bytes()[..4], [0x86, 0x7a, 0x96, 0xbf]);
        assert_eq!(c.as_bytes()[4..], raw[4..]);
    }

    #[test]
    fn rejects_wrong_lengths() {
        assert_eq!(ObjectGuid::from_bytes(&[]), None);
        assert_eq!(ObjectGuid::from_bytes(&SEQ[..15]), None);
        assert_eq!(ObjectGuid::from_bytes(&[0u8; 17]), None);
        assert_eq!(ObjectGuid::parse(""), None);
        assert_eq!(ObjectGuid::parse("33221100-5544-7766-8899-aabbccddeef"), None);
        assert_eq!(ObjectGuid::parse("33221100-5544-7766-8899-aabbccddeeff0"), None);
        assert_eq!(ObjectGuid::parse("33221100554477668899aabbccddeeff"), None);
    }

    #[test]
    fn rejects_bad_syntax() {
        let bad = [
            "g3221100-5544-7766-8899-aabbccddeeff",
            "33221100-5544-7766-8899-aabbccddeefz",
            "33221100_5544-7766-8899-aabbccddeeff",
            "332211-005544-7766-8899-aabbccddeeff",
            "{33221100-5544-7766-8899-aabbccddeeff",
            "33221100-5544-7766-8899-aabbccddeeff}",
            " 33221100-5544-7766-8899-aabbccddeeff",
            "+3221100-5544-7766-8899-aabbccddeeff",
            "33221100-5544-7766-8899-aabbccddeeé",
            "{{33221100-5544-7766-8899-aabbccddeeff}}",
        ];
        for s in bad {
            assert_eq!(ObjectGuid::parse(s), None, "{s}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn round_trips(raw in any::<[u8; 16]>()) {
            let g = ObjectGuid(raw);
            let s = g.to_string();
            let b = raw;
            let formatted = format!(
                "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
                b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]
            );
            prop_assert_eq!(&s, &formatted);
            prop_assert_eq!(ObjectGuid::parse(&s), Some(g));
            prop_assert_eq!(ObjectGuid::parse(&s.to_uppercase()), Some(g));
            prop_assert_eq!(ObjectGuid::parse(&format!("{{{s}}}")), Some(g));
            prop_assert_eq!(ObjectGuid::from_bytes(g.as_bytes()), Some(g));
        }

        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = ObjectGuid::parse(&s);
        }

        #[test]
        fn parse_never_panics_guid_like(s in "[{]?[0-9a-fA-F-]{30,40}[}]?") {
            if let Some(g) = ObjectGuid::parse(&s) {
                let t = s.trim_start_matches('{').trim_end_matches('}').to_lowercase();
                prop_assert_eq!(g.to_string(), t);
            }
        }
    }
}
