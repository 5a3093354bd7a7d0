//! The shipped completions and man pages must match the command line they describe.
//! Regenerate with `cargo run -- generate-docs`.

use std::path::Path;

#[test]
fn committed_completions_and_man_pages_match_the_cli() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stale = Vec::new();
    for (path, contents) in ausi::commands::docs::render() {
        match std::fs::read(root.join(&path)) {
            Ok(on_disk) if on_disk == contents => {}
            _ => stale.push(path),
        }
    }
    assert!(stale.is_empty(), "out of date (run `cargo run -- generate-docs`): {stale:?}");
}

#[test]
fn man_pages_document_exit_status_environment_and_files() {
    for (path, contents) in ausi::commands::docs::render().into_iter().filter(|(p, _)| p.starts_with("man/")) {
        let text = String::from_utf8(contents).unwrap();
        for section in [".SH \"EXIT STATUS\"", ".SH ENVIRONMENT", ".SH FILES"] {
            assert!(text.contains(section), "{path} lacks {section}");
        }
        assert!(text.contains("\\fB78\\fR"), "{path} lists exit code 78");
    }
}
