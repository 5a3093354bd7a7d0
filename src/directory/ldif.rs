//! Streaming LDIF (RFC 2849) *content* parser for Active Directory / OpenLDAP exports.
//!
//! Reads exports written by Windows `ldifde` and OpenLDAP `ldapsearch` (`-L`, `-LL`, `-LLL`)
//! one record at a time from any [`BufRead`], with bounded memory:
//!
//! * lines are unfolded at the byte level (a fold may split base64 or a UTF-8 sequence);
//! * LF and CRLF line endings, a leading UTF-8 BOM and a missing final newline are accepted;
//! * an optional `version: 1` line may precede the first record;
//! * `changetype: add` (written by `ldifde`) is accepted and dropped, every other change
//!   record is rejected;
//! * `ldapsearch -L` trailer blocks (`search:`, `result:`, `matchedDN:`, `text:`, `ref:`)
//!   and search-reference blocks are skipped silently;
//! * a logical line over 16 MiB or a record over 64 MiB is a syntax error.
//!
//! After a [`LdifError::Syntax`] the reader skips to the next blank line and continues with
//! the next record; after an [`LdifError::Io`] it yields nothing more.

use std::io::{self, BufRead, Write};

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD as B64_ENCODE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// One LDIF content record. Attribute descriptions keep their options verbatim (e.g. "member;range=0-1499"),
/// original case preserved; values are raw bytes (base64 already decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdifRecord {
    pub dn: String,
    pub attrs: Vec<(String, Vec<u8>)>,
    /// 1-based line of the `dn:` line.
    pub line: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum LdifError {
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("reading LDIF: {0}")]
    Io(#[from] std::io::Error),
}

/// Longest logical (unfolded) line accepted.
const MAX_LINE: usize = 16 * 1024 * 1024;
/// Largest record accepted (sum of its unfolded line lengths).
const MAX_RECORD: usize = 64 * 1024 * 1024;
/// Column at which [`write_record`] folds.
const FOLD_WIDTH: usize = 76;
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Standard alphabet, canonical padding required (as RFC 2045 and both exporters do), so a
/// value truncated mid-group is reported instead of silently decoding to fewer bytes.
const B64_DECODE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

const CHANGE_RECORD_MSG: &str = "change records are not supported (export content, not changes)";
const URL_MSG: &str = "URL values (attr:< ...) are not supported";

/// Streaming LDIF content reader; an [`Iterator`] over records.
pub struct LdifReader<R: BufRead> {
    reader: R,
    /// Physical lines consumed so far.
    line_no: usize,
    max_line: usize,
    max_record: usize,
    /// `version:` is still allowed (nothing but comments and blank lines seen so far).
    version_allowed: bool,
    block: Block,
    /// Discarding lines up to the next blank line after a syntax error.
    skipping: bool,
    /// EOF reached or I/O failed: yield nothing more.
    done: bool,
    /// The previous line's buffer, reused for the next one.
    spare: Vec<u8>,
}

enum Block {
    /// Between records (or only a `version:` line so far).
    Empty,
    /// An `ldapsearch -L` result trailer or search reference block without a `dn:`.
    Trailer,
    Record(Pending),
}

struct Pending {
    dn: String,
    line: usize,
    attrs: Vec<(String, Vec<u8>)>,
    bytes: usize,
    /// Still directly after the `dn:` line, where `changetype:` may appear.
    after_dn: bool,
}

/// One unfolded line.
struct Logical {
    line: usize,
    bytes: Vec<u8>,
    /// Longer than `max_line`; `bytes` was discarded.
    overflow: bool,
}

impl<R: BufRead> LdifReader<R> {
    pub fn new(reader: R) -> Self {
        Self::with_limits(reader, MAX_LINE, MAX_RECORD)
    }

    fn with_limits(reader: R, max_line: usize, max_record: usize) -> Self {
        LdifReader {
            reader,
            line_no: 0,
            max_line,
            max_record,
            version_allowed: true,
            block: Block::Empty,
            skipping: false,
            done: false,
            spare: Vec::new(),
        }
    }

    fn peek_byte(&mut self) -> io::Result<Option<u8>> {
        loop {
            match self.reader.fill_buf() {
                Ok(buf) => return Ok(buf.first().copied()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Appends one physical line (without its LF / CRLF) to `buf`, never letting `buf` grow
    /// past `max_line` (+1 for a CR). Returns false at EOF.
    fn read_physical(&mut self, buf: &mut Vec<u8>, overflow: &mut bool) -> io::Result<bool> {
        let segment_start = buf.len();
        let mut any = false;
        loop {
            let avail = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if avail.is_empty() {
                break;
            }
            any = true;
            let (take, newline) = match avail.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (avail.len(), false),
            };
            let content = &avail[..take - usize::from(newline)];
            if !*overflow {
                if buf.len() + content.len() > self.max_line + 1 {
                    *overflow = true;
                    *buf = Vec::new();
                } else {
                    buf.extend_from_slice(content);
                }
            }
            self.reader.consume(take);
            if newline {
                break;
            }
        }
        if !any {
            return Ok(false);
        }
        self.line_no += 1;
        if !*overflow {
            if buf.len() > segment_start && buf.last() == Some(&b'\r') {
                buf.pop();
            }
            if buf.len() > self.max_line {
                *overflow = true;
                *buf = Vec::new();
            }
        }
        Ok(true)
    }

    /// Reads one logical line (a physical line plus its continuation lines). None at EOF.
    fn read_logical(&mut self) -> io::Result<Option<Logical>> {
        let mut bytes = std::mem::take(&mut self.spare);
        bytes.clear();
        let mut overflow = false;
        if !self.read_physical(&mut bytes, &mut overflow)? {
            return Ok(None);
        }
        let line = self.line_no;
        if line == 1 && bytes.starts_with(BOM) {
            bytes.drain(..BOM.len());
        }
        // A blank line separates records; a following space-led line does not continue it.
        if !bytes.is_empty() || overflow {
            while self.peek_byte()? == Some(b' ') {
                self.reader.consume(1);
                self.read_physical(&mut bytes, &mut overflow)?;
            }
        }
        Ok(Some(Logical { line, bytes, overflow }))
    }

    /// Ends the current block (blank line or EOF), returning its record if it had one.
    fn end_block(&mut self) -> Option<LdifRecord> {
        self.skipping = false;
        match std::mem::replace(&mut self.block, Block::Empty) {
            Block::Record(p) => Some(LdifRecord { dn: p.dn, attrs: p.attrs, line: p.line }),
            Block::Empty | Block::Trailer => None,
        }
    }

    /// Handles one non-blank logical line; Err(message) is a syntax error for that line.
    fn process(&mut self, logical: &Logical) -> Result<(), String> {
        if logical.overflow {
            return Err(format!("line longer than {} bytes (after unfolding)", self.max_line));
        }
        let bytes = &logical.bytes[..];
        match bytes.first() {
            Some(b'#') => return Ok(()),
            Some(b' ') => {
                return Err("continuation line (leading space) with no line to continue".into());
            }
            _ => {}
        }
        let version_allowed = std::mem::replace(&mut self.version_allowed, false);
        let Some(colon) = bytes.iter().position(|&b| b == b':') else {
            return Err(format!("line has no ':' (expected \"attribute: value\"): {}", show(bytes)));
        };
        let key_bytes = &bytes[..colon];
        if !valid_attr_desc(key_bytes) {
            return Err(format!("invalid attribute description {}", show(key_bytes)));
        }
        // valid_attr_desc only accepts ASCII.
        let key = std::str::from_utf8(key_bytes).unwrap_or_default();
        let is_dn = key.eq_ignore_ascii_case("dn");
        if let Block::Record(p) = &mut self.block {
            p.bytes = p.bytes.saturating_add(bytes.len());
            if p.bytes > self.max_record {
                return Err(format!("record larger than {} bytes", self.max_record));
            }
            if is_dn {
                return Err("second dn: line in one record (missing blank line?)".into());
            }
        }
        let value = parse_value(key, &bytes[colon + 1..])?;

        match &mut self.block {
            Block::Empty => {
                if is_dn {
                    let dn = String::from_utf8(value).map_err(|_| "dn is not valid UTF-8")?;
                    self.block = Block::Record(Pending {
                        dn,
                        line: logical.line,
                        attrs: Vec::new(),
                        bytes: bytes.len(),
                        after_dn: true,
                    });
                    Ok(())
                } else if version_allowed && key.eq_ignore_ascii_case("version") {
                    if trim_spaces(&value) == b"1" {
                        Ok(())
                    } else {
                        Err(format!("unsupported LDIF version {} (only 1 is supported)", show(&value)))
                    }
                } else if is_trailer_key(key) {
                    self.block = Block::Trailer;
                    Ok(())
                } else {
                    Err(format!("attribute {key:?} before any dn: line"))
                }
            }
            Block::Trailer => {
                if is_trailer_key(key) {
                    Ok(())
                } else {
                    Err(format!("unexpected {key:?} line in a search result/reference block"))
                }
            }
            Block::Record(p) => {
                let after_dn = std::mem::replace(&mut p.after_dn, false);
                if key.eq_ignore_ascii_case("changetype") {
                    if !after_dn {
                        return Err("changetype: must directly follow the dn: line".into());
                    }
                    let kind = String::from_utf8_lossy(trim_spaces(&value)).to_ascii_lowercase();
                    return match kind.as_str() {
                        "add" => Ok(()),
                        "modify" | "delete" | "modrdn" | "moddn" => Err(CHANGE_RECORD_MSG.into()),
                        _ => Err(format!("unknown changetype {}", show(&value))),
                    };
                }
                if key.eq_ignore_ascii_case("control") {
                    return Err("control: lines are only valid in change records, which are not supported".into());
                }
                p.attrs.push((key.to_owned(), value));
                Ok(())
            }
        }
    }
}

impl<R: BufRead> Iterator for LdifReader<R> {
    type Item = Result<LdifRecord, LdifError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            let logical = match self.read_logical() {
                Ok(Some(l)) => l,
                Ok(None) => {
                    self.done = true;
                    return self.end_block().map(Ok);
                }
                Err(e) => {
                    self.done = true;
                    self.block = Block::Empty;
                    return Some(Err(LdifError::Io(e)));
                }
            };
            if logical.bytes.is_empty() && !logical.overflow {
                self.spare = logical.bytes;
                match self.end_block() {
                    Some(record) => return Some(Ok(record)),
                    None => continue,
                }
            }
            if self.skipping {
                continue;
            }
            let line = logical.line;
            let processed = self.process(&logical);
            self.spare = logical.bytes;
            if let Err(message) = processed {
                self.skipping = true;
                self.block = Block::Empty;
                return Some(Err(LdifError::Syntax { line, message }));
            }
        }
    }
}

/// Decodes the part of a line after the attribute's colon.
fn parse_value(key: &str, spec: &[u8]) -> Result<Vec<u8>, String> {
    match spec.first() {
        Some(b':') => {
            let text = trim_spaces(&spec[1..]);
            B64_DECODE.decode(text).map_err(|e| format!("invalid base64 in value of {key:?}: {e}"))
        }
        Some(b'<') => Err(URL_MSG.into()),
        _ => {
            let start = spec.iter().position(|&b| b != b' ').unwrap_or(spec.len());
            Ok(spec[start..].to_vec())
        }
    }
}

fn trim_spaces(mut s: &[u8]) -> &[u8] {
    while let [b' ', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' '] = s {
        s = rest;
    }
    s
}

/// `ldapsearch -L` lines that may form a block without `dn:` (result trailer, search reference).
fn is_trailer_key(key: &str) -> bool {
    ["search", "result", "ref", "matchedDN", "text"].iter().any(|k| key.eq_ignore_ascii_case(k))
}

/// RFC 4512 attribute description: (descr / numericoid) *(";" option). Options also allow
/// '=' and '*' because Active Directory range retrieval writes `member;range=1500-*`.
fn valid_attr_desc(s: &[u8]) -> bool {
    let mut parts = s.split(|&b| b == b';');
    let base = parts.next().unwrap_or_default();
    let base_ok = match base.first() {
        Some(c) if c.is_ascii_alphabetic() => base.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-'),
        Some(c) if c.is_ascii_digit() => {
            base.split(|&b| b == b'.').all(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit))
        }
        _ => false,
    };
    base_ok
        && parts.all(|opt| {
            !opt.is_empty() && opt.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'=' | b'*'))
        })
}

/// A short rendering of input bytes for error messages: quoted, at most 60 bytes, anything
/// but printable ASCII escaped as `\xNN` (deterministic, whatever the bytes).
fn show(bytes: &[u8]) -> String {
    const MAX: usize = 60;
    let more = if bytes.len() > MAX { "..." } else { "" };
    format!("\"{}\"{more}", bytes[..bytes.len().min(MAX)].escape_ascii())
}

/// RFC 2849 SAFE-STRING, stricter: only printable ASCII (no control bytes), no leading
/// space, ':' or '<', no trailing space.
fn is_safe_string(v: &[u8]) -> bool {
    match (v.first(), v.last()) {
        (None, _) => true,
        (Some(b' ' | b':' | b'<'), _) | (_, Some(b' ')) => false,
        _ => v.iter().all(|&b| (0x20..0x7f).contains(&b)),
    }
}

/// Serialise a record as LDIF (base64 for values that are not SAFE-STRING per RFC 2849, incl. leading space/colon/'<', trailing space, non-ASCII or control bytes; lines folded at 76 columns). Used by tests and to write fixtures.
///
/// The record is followed by a blank line, so records can be written back to back.
/// Attribute names that do not match the attribute description grammar, or that the
/// reader would treat specially (`dn`, `changetype`, `control`), are rejected with
/// [`io::ErrorKind::InvalidInput`].
pub fn write_record(out: &mut impl std::io::Write, record: &LdifRecord) -> std::io::Result<()> {
    for (name, _) in &record.attrs {
        let reserved = ["dn", "changetype", "control"].iter().any(|r| name.eq_ignore_ascii_case(r));
        if reserved || !valid_attr_desc(name.as_bytes()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot write attribute description {name:?} as LDIF content"),
            ));
        }
    }
    let mut line = Vec::new();
    write_line(out, &mut line, "dn", record.dn.as_bytes())?;
    for (name, value) in &record.attrs {
        write_line(out, &mut line, name, value)?;
    }
    out.write_all(b"\n")
}

fn write_line(out: &mut impl Write, line: &mut Vec<u8>, name: &str, value: &[u8]) -> io::Result<()> {
    line.clear();
    line.extend_from_slice(name.as_bytes());
    if value.is_empty() {
        line.push(b':');
    } else if is_safe_string(value) {
        line.extend_from_slice(b": ");
        line.extend_from_slice(value);
    } else {
        line.extend_from_slice(b":: ");
        line.extend_from_slice(B64_ENCODE.encode(value).as_bytes());
    }
    let (first, mut rest) = line.split_at(line.len().min(FOLD_WIDTH));
    out.write_all(first)?;
    out.write_all(b"\n")?;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(FOLD_WIDTH - 1));
        out.write_all(b" ")?;
        out.write_all(chunk)?;
        out.write_all(b"\n")?;
        rest = tail;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &[u8]) -> Vec<Result<LdifRecord, LdifError>> {
        LdifReader::new(input).collect()
    }

    fn records(input: &[u8]) -> Vec<LdifRecord> {
        parse(input).into_iter().map(|r| r.unwrap_or_else(|e| panic!("unexpected error: {e}"))).collect()
    }

    fn one(input: &[u8]) -> LdifRecord {
        let mut recs = records(input);
        assert_eq!(recs.len(), 1, "{recs:?}");
        recs.remove(0)
    }

    /// (line, message) of every syntax error; panics on records or I/O errors.
    fn errors(input: &[u8]) -> Vec<(usize, String)> {
        parse(input)
            .into_iter()
            .map(|r| match r {
                Err(LdifError::Syntax { line, message }) => (line, message),
                other => panic!("expected syntax error, got {other:?}"),
            })
            .collect()
    }

    fn only_error(input: &[u8]) -> (usize, String) {
        let mut errs = errors(input);
        assert_eq!(errs.len(), 1, "{errs:?}");
        errs.remove(0)
    }

    /// `ok <dn> <n>` / `err <line> <message>` per item.
    fn summary(input: &[u8]) -> Vec<String> {
        parse(input)
            .into_iter()
            .map(|r| match r {
                Ok(rec) => format!("ok {} {}", rec.dn, rec.attrs.len()),
                Err(LdifError::Syntax { line, message }) => format!("err {line} {message}"),
                Err(e) => format!("io {e}"),
            })
            .collect()
    }

    fn attr<'a>(rec: &'a LdifRecord, name: &str) -> &'a [u8] {
        rec.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
            .unwrap_or_else(|| panic!("no attribute {name} in {rec:?}"))
    }

    fn a(name: &str, value: &[u8]) -> (String, Vec<u8>) {
        (name.to_owned(), value.to_vec())
    }

    // ---- version, comments, separators, line endings ----

    #[test]
    fn version_1_in_its_own_block() {
        let recs = records(b"version: 1\n\ndn: cn=a\ncn: a\n");
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].line, 3);
    }

    #[test]
    fn version_1_directly_followed_by_record() {
        let rec = one(b"version: 1\ndn: cn=a\ncn: a\n");
        assert_eq!(rec.line, 2);
        assert_eq!(rec.attrs, vec![a("cn", b"a")]);
    }

    #[test]
    fn version_after_leading_comments() {
        assert_eq!(records(b"# hi\n\nversion: 1\n\ndn: cn=a\n").len(), 1);
    }

    #[test]
    fn other_version_is_error() {
        let (line, msg) = only_error(b"version: 2\n");
        assert_eq!(line, 1);
        assert!(msg.contains("unsupported LDIF version \"2\""), "{msg}");
        assert_eq!(
            summary(b"version: 2\n\ndn: cn=a\n"),
            vec!["err 1 unsupported LDIF version \"2\" (only 1 is supported)", "ok cn=a 0"]
        );
    }

    #[test]
    fn version_after_a_record_is_an_attribute_before_dn() {
        let out = summary(b"dn: cn=a\n\nversion: 1\n");
        assert_eq!(out[1], "err 3 attribute \"version\" before any dn: line");
        // Inside a record it is an ordinary attribute.
        assert_eq!(one(b"dn: cn=a\nversion: 7\n").attrs, vec![a("version", b"7")]);
    }

    #[test]
    fn comments_including_folded_comments() {
        let input = b"# top comment\n#  folded\n  comment continuation: not an attribute\n\
dn: cn=a\n# inside\n continued comment\ncn: a\n#last\n";
        let rec = one(input);
        assert_eq!(rec.line, 4);
        assert_eq!(rec.attrs, vec![a("cn", b"a")]);
    }

    #[test]
    fn multiple_blank_lines_between_records() {
        let recs = records(b"\n\n\ndn: cn=a\n\n\n\n\ndn: cn=b\n\n\n");
        assert_eq!(recs.iter().map(|r| r.line).collect::<Vec<_>>(), vec![4, 9]);
    }

    #[test]
    fn crlf_and_bom() {
        let input = b"\xEF\xBB\xBFversion: 1\r\n\r\ndn: cn=a\r\ncn: x\r\n y\r\n\r\ndn: cn=b\r\n";
        let recs = records(input);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].attrs, vec![a("cn", b"xy")]);
        assert_eq!(recs[1].dn, "cn=b");
        // BOM directly before a dn line.
        assert_eq!(one(b"\xEF\xBB\xBFdn: cn=a\r\n").dn, "cn=a");
    }

    #[test]
    fn missing_trailing_newline() {
        let rec = one(b"dn: cn=a\ncn: last");
        assert_eq!(rec.attrs, vec![a("cn", b"last")]);
        let rec = one(b"dn: cn=a\ncn: las\n t");
        assert_eq!(rec.attrs, vec![a("cn", b"last")]);
    }

    #[test]
    fn only_cr_in_middle_of_value_is_kept() {
        assert_eq!(one(b"dn: cn=a\ncn: a\rb\n").attrs, vec![a("cn", b"a\rb")]);
    }

    #[test]
    fn empty_and_whitespace_inputs() {
        assert!(parse(b"").is_empty());
        assert!(parse(b"\n\n\r\n").is_empty());
        assert!(parse(b"# only\n# comments").is_empty());
        assert!(parse(b"\xEF\xBB\xBF").is_empty());
    }

    // ---- folding ----

    #[test]
    fn folded_lines_are_unfolded() {
        let rec = one(b"d\n n: cn=a\ndescription: hello\n  world\n !\n");
        assert_eq!(rec.dn, "cn=a");
        assert_eq!(rec.attrs, vec![a("description", b"hello world!")]);
    }

    #[test]
    fn folding_inside_base64() {
        // "hello world" = aGVsbG8gd29ybGQ=
        let rec = one(b"dn: cn=a\ndescription:: aGVs\n bG8gd2\n 9ybGQ=\n");
        assert_eq!(attr(&rec, "description"), b"hello world");
    }

    #[test]
    fn folding_splits_a_utf8_character() {
        // "é" is C3 A9; the fold separates the two bytes in both the dn and a value.
        let rec = one(b"dn: cn=Ren\xC3\n \xA9,dc=x\nsn: Caf\xC3\n \xA9\n");
        assert_eq!(rec.dn, "cn=Ren\u{e9},dc=x");
        assert_eq!(attr(&rec, "sn"), "Caf\u{e9}".as_bytes());
        // ...and inside a base64 DN: "cn=Renée" -> Y249UmVuw6ll
        assert_eq!(one(b"dn:: Y249UmVu\n w6ll\n").dn, "cn=Ren\u{e9}e");
    }

    #[test]
    fn lone_continuation_line_at_start_is_error_then_resync() {
        assert_eq!(
            summary(b" cn=a\ncn: x\n\ndn: cn=b\n"),
            vec!["err 1 continuation line (leading space) with no line to continue", "ok cn=b 0"]
        );
        // After a blank line a space-led line starts a new (bad) logical line too.
        assert_eq!(
            summary(b"dn: cn=a\n\n x\n"),
            vec!["ok cn=a 0", "err 3 continuation line (leading space) with no line to continue"]
        );
    }

    #[test]
    fn deep_folding() {
        let mut input = b"dn: cn=a\ndescription: ".to_vec();
        for _ in 0..5000 {
            input.extend_from_slice(b"\n x");
        }
        input.push(b'\n');
        let rec = one(&input);
        assert_eq!(attr(&rec, "description"), vec![b'x'; 5000].as_slice());
    }

    // ---- values ----

    #[test]
    fn plain_values_strip_leading_spaces_only() {
        let rec = one(b"dn:    cn=a\ncn:   x y  \nsn:x\n");
        assert_eq!(rec.dn, "cn=a");
        assert_eq!(rec.attrs, vec![a("cn", b"x y  "), a("sn", b"x")]);
    }

    #[test]
    fn base64_values() {
        let rec = one(b"dn: cn=a\nuserPassword::   c2VjcmV0  \nempty::\nbin:: AP8=\n");
        assert_eq!(rec.attrs, vec![a("userPassword", b"secret"), a("empty", b""), a("bin", b"\x00\xff"),]);
        // Missing padding (e.g. a truncated value) is an error, not a shorter value.
        let (line, msg) = only_error(b"dn: cn=a\nbin:: AP8\n");
        assert_eq!(line, 2);
        assert!(msg.starts_with("invalid base64 in value of \"bin\""), "{msg}");
    }

    #[test]
    fn invalid_base64_names_attribute() {
        let (line, msg) = only_error(b"dn: cn=a\ncn: x\nobjectGUID:: ab$d\n");
        assert_eq!(line, 3);
        assert!(msg.starts_with("invalid base64 in value of \"objectGUID\""), "{msg}");
        let (_, msg) = only_error(b"dn: cn=a\nphoto:: QUJD\n RA=x\n");
        assert!(msg.contains("\"photo\""), "{msg}");
    }

    #[test]
    fn url_values_are_rejected() {
        let (line, msg) = only_error(b"dn: cn=a\njpegPhoto:< file:///etc/passwd\n");
        assert_eq!((line, msg.as_str()), (2, URL_MSG));
        assert_eq!(only_error(b"dn:< file:///x\n").1, URL_MSG);
    }

    #[test]
    fn empty_values() {
        let rec = one(b"dn: cn=a\ndescription:\nsn: \n");
        assert_eq!(rec.attrs, vec![a("description", b""), a("sn", b"")]);
        assert_eq!(one(b"dn:\nobjectClass: top\n").dn, "");
    }

    #[test]
    fn non_ascii_plain_values_are_kept_as_bytes() {
        let rec = one(b"dn: cn=a\ncn: \xFF\xFEraw\n");
        assert_eq!(attr(&rec, "cn"), b"\xFF\xFEraw");
    }

    // ---- dn ----

    #[test]
    fn base64_dn_with_escaped_comma() {
        let dn = "CN=Doe\\, John,OU=Users,DC=corp,DC=example,DC=com";
        let input = format!("dn:: {}\ncn: Doe, John\n", B64_ENCODE.encode(dn));
        let rec = one(input.as_bytes());
        assert_eq!(rec.dn, dn);
        assert_eq!(rec.attrs, vec![a("cn", b"Doe, John")]);
    }

    #[test]
    fn dn_must_be_utf8() {
        assert_eq!(only_error(b"dn: cn=\xFF\n"), (1, "dn is not valid UTF-8".into()));
        // base64 of FF FE
        assert_eq!(only_error(b"dn:: //4=\n"), (1, "dn is not valid UTF-8".into()));
        let (_, msg) = only_error(b"dn:: !!!\ncn: a\n");
        assert!(msg.starts_with("invalid base64 in value of \"dn\""), "{msg}");
    }

    #[test]
    fn dn_key_is_case_insensitive_and_second_dn_is_error() {
        assert_eq!(one(b"DN: cn=a\n").dn, "cn=a");
        assert_eq!(
            summary(b"dn: cn=a\ndn: cn=b\ncn: b\n\ndn: cn=c\n"),
            vec!["err 2 second dn: line in one record (missing blank line?)", "ok cn=c 0"]
        );
    }

    // ---- changetype / control ----

    #[test]
    fn changetype_add_is_dropped() {
        let rec = one(b"dn: cn=a\nchangetype: add\ncn: a\n");
        assert_eq!(rec.attrs, vec![a("cn", b"a")]);
        let rec = one(b"dn: cn=a\nChangeType:   ADD  \n");
        assert!(rec.attrs.is_empty());
    }

    #[test]
    fn change_records_are_rejected_and_skipped() {
        for kind in ["modify", "delete", "modrdn", "moddn"] {
            let input = format!(
                "dn: cn=a\nchangetype: add\n\ndn: cn=b\nchangetype: {kind}\nreplace: cn\ncn: x\n-\n\ndn: cn=c\n"
            );
            assert_eq!(
                summary(input.as_bytes()),
                vec!["ok cn=a 0".to_string(), format!("err 5 {CHANGE_RECORD_MSG}"), "ok cn=c 0".to_string()],
                "{kind}"
            );
        }
        assert_eq!(only_error(b"dn: cn=a\nchangetype: frobnicate\n").1, "unknown changetype \"frobnicate\"");
    }

    #[test]
    fn changetype_must_follow_dn() {
        assert_eq!(
            only_error(b"dn: cn=a\ncn: a\nchangetype: add\n"),
            (3, "changetype: must directly follow the dn: line".into())
        );
    }

    #[test]
    fn control_lines_are_rejected() {
        let (line, msg) = only_error(b"dn: cn=a\ncontrol: 1.2.840.113556.1.4.805 true\nchangetype: delete\n");
        assert_eq!(line, 2);
        assert!(msg.starts_with("control: lines are only valid in change records"), "{msg}");
    }

    // ---- ldapsearch / ldifde ----

    #[test]
    fn ldapsearch_lll_export() {
        let input = b"dn: dc=example,dc=com\n\
objectClass: top\n\
objectClass: dcObject\n\
dc: example\n\
\n\
dn: cn=Jos\xC3\xA9,ou=People,dc=example,dc=com\n\
objectClass: inetOrgPerson\n\
cn:: Sm9zw6k=\n\
sn: Smith\n\
member;range=0-1499: cn=a\n\
member;range=1500-*: cn=b\n\
1.2.840.113556.1.4.221: jsmith\n\
description: a long description that ldapsearch folded at column seventy-s\n \
ix like this\n\
\n";
        let recs = records(input);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].attrs.len(), 3);
        let r = &recs[1];
        assert_eq!(r.line, 6);
        assert_eq!(r.dn, "cn=Jos\u{e9},ou=People,dc=example,dc=com");
        assert_eq!(attr(r, "cn"), "Jos\u{e9}".as_bytes());
        assert_eq!(attr(r, "member;range=0-1499"), b"cn=a");
        assert_eq!(attr(r, "member;range=1500-*"), b"cn=b");
        assert_eq!(attr(r, "1.2.840.113556.1.4.221"), b"jsmith");
        assert_eq!(
            attr(r, "description"),
            b"a long description that ldapsearch folded at column seventy-six like this"
        );
    }

    #[test]
    fn ldapsearch_l_export_with_trailer_and_references() {
        let input = b"version: 1\n\
\n\
#\n\
# LDAPv3\n\
# base <DC=corp,DC=example,DC=com> with scope subtree\n\
# filter: (objectclass=user)\n\
# requesting: cn\n\
#\n\
\n\
# Administrator, Users, corp.example.com\n\
dn: CN=Administrator,CN=Users,DC=corp,DC=example,DC=com\n\
cn: Administrator\n\
\n\
# search reference\n\
ref: ldap://ForestDnsZones.corp.example.com/DC=ForestDnsZones,DC=corp,DC=examp\n \
le,DC=com\n\
\n\
# refldap://DomainDnsZones.corp.example.com/DC=DomainDnsZones,DC=corp,DC=exa\n \
mple,DC=com\n\
\n\
# search result\n\
search: 2\n\
result: 0 Success\n\
\n\
# numEntries: 1\n\
# numReferences: 1\n";
        assert_eq!(summary(input), vec!["ok CN=Administrator,CN=Users,DC=corp,DC=example,DC=com 1"]);
        // An error result block with matchedDN / text lines is skipped as well.
        assert!(parse(b"search: 3\nresult: 32 No such object\nmatchedDN: dc=x\ntext: nope\n").is_empty());
    }

    #[test]
    fn trailer_block_with_other_lines_is_error() {
        assert_eq!(
            only_error(b"search: 2\ncn: x\n"),
            (2, "unexpected \"cn\" line in a search result/reference block".into())
        );
    }

    #[test]
    fn ldifde_export() {
        let guid = [0x2b, 0x1f, 0x9e, 0x07, 0x5a, 0x0c, 0x4b, 0x4e, 0x8f, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77];
        // ldifde folds at 79 columns: 79 chars then continuation lines.
        let long = "CN=Some Very Long Group Name For Testing Folding,OU=Groups,OU=Departme\
nt,DC=corp,DC=example,DC=com";
        let member_line = format!("member: {long}");
        let (first, rest) = member_line.split_at(79);
        let input = format!(
            "\r\ndn: CN=Jane Doe,OU=Staff,DC=corp,DC=example,DC=com\r\n\
changetype: add\r\n\
objectClass: top\r\n\
objectClass: person\r\n\
cn: Jane Doe\r\n\
distinguishedName: CN=Jane Doe,OU=Staff,DC=corp,DC=example,DC=com\r\n\
objectGUID:: {}\r\n\
objectguid:: {}\r\n\
{first}\r\n {rest}\r\n\
sAMAccountName: jdoe\r\n\
\r\n\
dn: DC=corp,DC=example,DC=com\r\n\
changetype: add\r\n\
dc: corp\r\n\
\r\n",
            B64_ENCODE.encode(guid),
            B64_ENCODE.encode(guid),
        );
        let recs = records(input.as_bytes());
        assert_eq!(recs.len(), 2);
        let r = &recs[0];
        assert_eq!(r.line, 2);
        assert_eq!(r.attrs.len(), 8);
        assert_eq!(attr(r, "objectGUID"), guid);
        assert_eq!(attr(r, "objectguid"), guid);
        assert_eq!(attr(r, "member"), long.as_bytes());
        assert!(r.attrs.iter().all(|(n, _)| n != "changetype"));
        assert_eq!(recs[1].line, 14);
    }

    // ---- syntax errors and resync ----

    #[test]
    fn line_without_colon() {
        assert_eq!(only_error(b"dn: cn=a\nthis line has no colon\n").0, 2);
        assert!(only_error(b"dn: cn=a\n-\n").1.starts_with("line has no ':'"));
    }

    #[test]
    fn attribute_before_dn() {
        assert_eq!(only_error(b"cn: a\ndn: cn=a\n"), (1, "attribute \"cn\" before any dn: line".into()));
    }

    #[test]
    fn attribute_description_grammar() {
        for good in [
            "cn",
            "objectGUID",
            "x-Custom-Attr",
            "member;range=0-1499",
            "member;range=1500-*",
            "userCertificate;binary",
            "cn;lang-en;x-opt",
            "2.5.4.3",
            "1.2.840.113556.1.4.221;binary",
        ] {
            let input = format!("dn: cn=a\n{good}: v\n");
            assert_eq!(one(input.as_bytes()).attrs, vec![a(good, b"v")], "{good}");
        }
        for bad in ["", "1cn", "-cn", "c_n", "cn;", "cn;;x", "cn x", "cn ", "2.5..4", "2.5.4.", "ç", ";x"] {
            let input = format!("dn: cn=a\n{bad}: v\n");
            let (line, msg) = only_error(input.as_bytes());
            assert_eq!(line, 2, "{bad}");
            assert!(msg.starts_with("invalid attribute description"), "{bad}: {msg}");
        }
    }

    #[test]
    fn error_resync_yields_ok_err_ok() {
        let out = parse(b"dn: cn=a\ncn: a\n\ndn: cn=b\nbad line\ncn: b\n\n\ndn: cn=c\ncn: c\n");
        assert_eq!(out.len(), 3);
        assert!(matches!(&out[0], Ok(r) if r.dn == "cn=a" && r.line == 1));
        assert!(matches!(&out[1], Err(LdifError::Syntax { line: 5, .. })));
        assert!(matches!(&out[2], Ok(r) if r.dn == "cn=c" && r.line == 9));
        // Display of a syntax error
        let err = out.into_iter().nth(1).and_then(Result::err).map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("line 5: line has no ':' (expected \"attribute: value\"): \"bad line\""));
    }

    #[test]
    fn error_line_numbers_use_start_of_logical_line() {
        assert_eq!(only_error(b"dn: cn=a\ncn: a\nob\n jectGUID:: !!\n").0, 3);
    }

    struct FailAfter<'a> {
        data: &'a [u8],
    }

    impl io::Read for FailAfter<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.data.is_empty() {
                return Err(io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn io_error_ends_iteration() {
        let reader = io::BufReader::with_capacity(4, FailAfter { data: b"dn: cn=a\n\ndn: cn=b\ncn: x\n" });
        let mut it = LdifReader::new(reader);
        assert!(matches!(it.next(), Some(Ok(r)) if r.dn == "cn=a"));
        let err = it.next();
        assert!(matches!(&err, Some(Err(LdifError::Io(e))) if e.to_string() == "disk on fire"), "{err:?}");
        assert!(it.next().is_none());
        assert!(it.next().is_none());
    }

    #[test]
    fn tiny_buffer_gives_same_results() {
        let input: &[u8] =
            b"\xEF\xBB\xBFversion: 1\r\n\r\ndn:: Y249UmVu\r\n w6ll\r\ncn: a\r\n b\r\n\r\nbad\r\n\r\ndn: cn=x\n";
        let expected = summary(input);
        let got: Vec<String> = LdifReader::new(io::BufReader::with_capacity(1, input))
            .map(|r| match r {
                Ok(rec) => format!("ok {} {}", rec.dn, rec.attrs.len()),
                Err(LdifError::Syntax { line, message }) => format!("err {line} {message}"),
                Err(e) => format!("io {e}"),
            })
            .collect();
        assert_eq!(got, expected);
        assert_eq!(expected.len(), 3);
    }

    // ---- limits ----

    #[test]
    fn logical_line_over_16_mib_is_error_and_skipped() {
        let mut input = b"dn: cn=a\ndescription: ".to_vec();
        input.resize(input.len() + MAX_LINE / 2, b'x');
        input.extend_from_slice(b"\n ");
        input.resize(input.len() + MAX_LINE / 2, b'y');
        input.extend_from_slice(b"\ncn: a\n\ndn: cn=b\n");
        assert_eq!(
            summary(&input),
            vec![format!("err 2 line longer than {MAX_LINE} bytes (after unfolding)"), "ok cn=b 0".to_string()]
        );
        // Exactly at the limit is fine.
        let mut input = b"dn: cn=a\n".to_vec();
        let prefix = b"description: ";
        input.extend_from_slice(prefix);
        input.resize(input.len() + MAX_LINE - prefix.len(), b'x');
        input.extend_from_slice(b"\r\n");
        assert_eq!(attr(&one(&input), "description").len(), MAX_LINE - prefix.len());
    }

    #[test]
    fn small_limits_bound_lines_and_records() {
        let run = |input: &[u8]| -> Vec<String> {
            LdifReader::with_limits(input, 20, 50)
                .map(|r| match r {
                    Ok(rec) => format!("ok {} {}", rec.dn, rec.attrs.len()),
                    Err(LdifError::Syntax { line, message }) => format!("err {line} {message}"),
                    Err(e) => format!("io {e}"),
                })
                .collect()
        };
        assert_eq!(
            run(b"dn: cn=a\ncn: 0123456789abcdef\n 0123\n\ndn: cn=b\n"),
            vec!["err 2 line longer than 20 bytes (after unfolding)", "ok cn=b 0"]
        );
        assert_eq!(
            run(b"dn: cn=a\ncn: 0123456789\ncn: 0123456789\ncn: 0123456789\ncn: x\n\ndn: cn=b\n"),
            vec!["err 5 record larger than 50 bytes", "ok cn=b 0"]
        );
        // Comments and skipped trailer blocks are not stored, so they do not count.
        assert_eq!(run(b"search: 1\nresult: 0 Success\nref: x\nref: x\nref: x\nref: x\n"), Vec::<String>::new());
    }

    // ---- writer ----

    fn written(rec: &LdifRecord) -> String {
        let mut out = Vec::new();
        write_record(&mut out, rec).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn write_record_uses_base64_when_needed() {
        let rec = LdifRecord {
            dn: "cn=Ren\u{e9}".into(),
            attrs: vec![
                a("cn", b"plain value"),
                a("empty", b""),
                a("lead", b" x"),
                a("colon", b":x"),
                a("lt", b"<x"),
                a("trail", b"x "),
                a("ctl", b"a\nb"),
                a("bin", b"\x00\xff"),
                a("inner", b"a:b<c d"),
            ],
            line: 0,
        };
        assert_eq!(
            written(&rec),
            "dn:: Y249UmVuw6k=\ncn: plain value\nempty:\nlead:: IHg=\ncolon:: Ong=\nlt:: PHg=\n\
trail:: eCA=\nctl:: YQpi\nbin:: AP8=\ninner: a:b<c d\n\n"
        );
        let back = one(written(&rec).as_bytes());
        assert_eq!(back.dn, rec.dn);
        assert_eq!(back.attrs, rec.attrs);
    }

    #[test]
    fn write_record_folds_at_76_columns() {
        let rec = LdifRecord { dn: "cn=a".into(), attrs: vec![a("description", &[b'z'; 300])], line: 1 };
        let text = written(&rec);
        for l in text.lines() {
            assert!(l.len() <= FOLD_WIDTH, "{l:?}");
        }
        assert_eq!(text.lines().nth(1).map(str::len), Some(76));
        assert_eq!(one(text.as_bytes()), rec);
    }

    #[test]
    fn write_record_rejects_unwritable_names() {
        for name in ["changetype", "DN", "control", "bad name", ""] {
            let rec = LdifRecord { dn: "cn=a".into(), attrs: vec![a(name, b"x")], line: 1 };
            let err = write_record(&mut Vec::new(), &rec).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name}");
        }
    }
}
