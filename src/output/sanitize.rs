//! Terminal-safe rendering of untrusted text.
//!
//! Directory attributes are attacker-controlled: a display name can carry
//! ANSI escape sequences, carriage returns that overwrite earlier output, or
//! bidi overrides and invisible characters that make one name look like
//! another. [`for_terminal`] replaces all of those with a visible `\u{..}`.

use std::borrow::Cow;

/// Returns `s` with every dangerous character replaced by `\u{hex}`
/// (lowercase hex, no leading zeros, e.g. `\u{1b}`, `\u{202e}`). Borrowed
/// when nothing needed replacing.
///
/// Replaced: C0 controls including TAB, CR and LF; DEL; C1 controls
/// (U+0080–U+009F); bidi controls (U+061C, U+200E, U+200F, U+202A–U+202E,
/// U+2066–U+2069); invisible format characters (U+00AD, U+180E,
/// U+200B–U+200D, U+2028, U+2029, U+2060–U+2064, U+206A–U+206F, U+FEFF,
/// U+FFF9–U+FFFB, tag characters U+E0000–U+E007F).
///
/// Backslashes are left alone (DNs are full of them), so the output of this
/// function is for display only and is not unambiguously reversible.
pub fn for_terminal(s: &str) -> Cow<'_, str> {
    let first = match s.char_indices().find(|&(_, c)| is_deceptive(c)) {
        None => return Cow::Borrowed(s),
        Some((i, _)) => i,
    };
    let mut out = String::with_capacity(s.len() + 8);
    out.push_str(&s[..first]);
    for c in s[first..].chars() {
        if is_deceptive(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// True for characters that can hide or disguise text on a terminal (see [`for_terminal`]).
pub fn is_deceptive(c: char) -> bool {
    matches!(c,
        // C0 controls (TAB, LF, CR, ESC included), DEL, C1 controls.
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        // Soft hyphen: invisible unless at a line break.
        | '\u{ad}'
        // Arabic letter mark (bidi).
        | '\u{61c}'
        // Mongolian vowel separator (invisible).
        | '\u{180e}'
        // Zero-width space/non-joiner/joiner, LRM, RLM.
        | '\u{200b}'..='\u{200f}'
        // Line and paragraph separators: line breaks some terminals honour.
        | '\u{2028}'..='\u{2029}'
        // LRE, RLE, PDF, LRO, RLO.
        | '\u{202a}'..='\u{202e}'
        // Word joiner and invisible math operators.
        | '\u{2060}'..='\u{2064}'
        // LRI, RLI, FSI, PDI.
        | '\u{2066}'..='\u{2069}'
        // Deprecated invisible format characters.
        | '\u{206a}'..='\u{206f}'
        // BOM / zero-width no-break space.
        | '\u{feff}'
        // Interlinear annotation controls.
        | '\u{fff9}'..='\u{fffb}'
        // Tag characters: invisible, used to smuggle hidden ASCII.
        | '\u{e0000}'..='\u{e007f}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn owned(s: &str) -> String {
        match for_terminal(s) {
            Cow::Borrowed(b) => panic!("expected a change for {s:?}, got borrowed {b:?}"),
            Cow::Owned(o) => o,
        }
    }

    #[test]
    fn ordinary_text_is_borrowed_and_untouched() {
        for s in [
            "",
            "plain ASCII ~!@#$%^&*()_+{}|:\"<>?`-=[];',./",
            r"CN=Doe\, John,OU=Corp\2C Inc,DC=example",
            "Zoë",
            "王芳",
            "Ольга",
            "שלום", // RTL script itself is fine; only the controls are not
            "مرحبا",
            "emoji 😀🎉👍🏽",
            "flag 🇩🇪",
            "heart ❤️", // U+FE0F variation selector is kept
            "combining: e\u{301} a\u{308} n\u{303}",
            "Jürgen Müller-Lüdenscheidt",
            "a\u{a0}b", // no-break space is visible as a space
        ] {
            assert!(matches!(for_terminal(s), Cow::Borrowed(b) if b == s), "{s:?}");
        }
    }

    #[test]
    fn c0_controls() {
        assert_eq!(owned("\u{1b}[31mred\u{1b}[0m"), r"\u{1b}[31mred\u{1b}[0m");
        assert_eq!(owned("a\rb"), r"a\u{d}b");
        assert_eq!(owned("a\nb"), r"a\u{a}b");
        assert_eq!(owned("a\tb"), r"a\u{9}b");
        assert_eq!(owned("\0"), r"\u{0}");
        assert_eq!(owned("\u{7}bell"), r"\u{7}bell");
        assert_eq!(owned("x\u{1f}"), r"x\u{1f}");
        // OSC 8 hyperlink / title-setting sequences lose their ESC and BEL.
        assert_eq!(owned("\u{1b}]0;pwned\u{7}"), r"\u{1b}]0;pwned\u{7}");
    }

    #[test]
    fn del_and_c1_controls() {
        assert_eq!(owned("a\u{7f}"), r"a\u{7f}");
        assert_eq!(owned("\u{80}"), r"\u{80}");
        // U+009B is the 8-bit CSI, as dangerous as ESC [.
        assert_eq!(owned("\u{9b}31m"), r"\u{9b}31m");
        assert_eq!(owned("\u{9f}"), r"\u{9f}");
        assert_eq!(owned("\u{85}"), r"\u{85}");
        // U+00A0 is just past the C1 range.
        assert!(matches!(for_terminal("\u{a0}"), Cow::Borrowed(_)));
    }

    #[test]
    fn bidi_controls() {
        assert_eq!(owned("admin\u{202e}gpj.exe"), r"admin\u{202e}gpj.exe");
        for c in [
            '\u{61c}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}',
            '\u{2067}', '\u{2068}', '\u{2069}',
        ] {
            assert_eq!(owned(&c.to_string()), format!("\\u{{{:x}}}", c as u32));
        }
    }

    #[test]
    fn invisible_format_chars() {
        assert_eq!(owned("ad\u{200b}min"), r"ad\u{200b}min");
        assert_eq!(owned("\u{200c}\u{200d}"), r"\u{200c}\u{200d}");
        assert_eq!(owned("a\u{2060}b"), r"a\u{2060}b");
        assert_eq!(owned("\u{feff}bom"), r"\u{feff}bom");
        assert_eq!(owned("soft\u{ad}hyphen"), r"soft\u{ad}hyphen");
        assert_eq!(owned("a\u{2028}b\u{2029}"), r"a\u{2028}b\u{2029}");
        assert_eq!(owned("tag\u{e0041}\u{e007f}"), r"tag\u{e0041}\u{e007f}");
        // ZWJ emoji sequences are escaped too: the joiner is listed as spoofable.
        assert_eq!(owned("👩\u{200d}💻"), r"👩\u{200d}💻");
    }

    #[test]
    fn backslashes_left_alone() {
        assert!(matches!(for_terminal(r"C:\temp \u{1b}"), Cow::Borrowed(_)));
        assert_eq!(owned("\\\u{1b}"), r"\\u{1b}");
    }

    #[test]
    fn escape_form() {
        // Lowercase hex, no leading zeros, braces.
        assert_eq!(owned("\u{1}"), r"\u{1}");
        assert_eq!(owned("\u{feff}"), r"\u{feff}");
        assert_eq!(owned("\u{e0001}"), r"\u{e0001}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn output_is_safe(s in any::<String>()) {
            let out = for_terminal(&s);
            prop_assert!(!out.chars().any(is_deceptive));
            prop_assert!(!out.chars().any(char::is_control));
            if !s.chars().any(is_deceptive) {
                prop_assert!(matches!(out, Cow::Borrowed(_)));
                prop_assert_eq!(&*out, s.as_str());
            }
        }
    }
}
