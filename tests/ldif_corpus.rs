//! Regression corpus: every `tests/corpus/ldif/*.ldif` is parsed and must not panic.
//! If `NAME.expect` exists beside it, the summary (one line per item: `ok <dn> <attr count>`
//! or `err <line> <message>`) must equal it. To add a fuzz-found input just drop the file in;
//! run with `LDIF_BLESS=1` to (re)write `.expect` files from the current behaviour.

use std::io::BufReader;
use std::panic;
use std::path::{Path, PathBuf};

use ausi::directory::ldif::{LdifError, LdifReader};

fn summary<R: std::io::BufRead>(reader: LdifReader<R>) -> String {
    reader
        .map(|r| match r {
            Ok(rec) => format!("ok {} {}\n", rec.dn, rec.attrs.len()),
            Err(LdifError::Syntax { line, message }) => format!("err {line} {message}\n"),
            Err(e) => format!("io {e}\n"),
        })
        .collect()
}

fn corpus_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/ldif");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ldif"))
        .collect();
    files.sort();
    files
}

#[test]
fn corpus_parses_without_panic_and_matches_expectations() {
    let files = corpus_files();
    assert!(files.len() >= 12, "corpus has only {} files", files.len());
    let bless = std::env::var_os("LDIF_BLESS").is_some();
    let mut failures = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(file).unwrap();
        let whole = panic::catch_unwind(|| summary(LdifReader::new(data.as_slice())));
        let tiny = panic::catch_unwind(|| summary(LdifReader::new(BufReader::with_capacity(1, data.as_slice()))));
        let (Ok(got), Ok(tiny)) = (whole, tiny) else {
            failures.push(format!("{name}: panicked"));
            continue;
        };
        if got != tiny {
            failures.push(format!("{name}: 1-byte buffer gave\n{tiny}\ninstead of\n{got}"));
        }
        let expect_path = file.with_extension("expect");
        if bless {
            std::fs::write(&expect_path, &got).unwrap();
        } else if let Ok(expect) = std::fs::read_to_string(&expect_path) {
            let expect = expect.replace("\r\n", "\n");
            if expect.trim_end() != got.trim_end() {
                failures.push(format!("{name}: expected\n{expect}\ngot\n{got}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
}
