//! Property tests: the reader never panics and `write_record` round-trips through it.

use std::io::BufReader;

use ausi::directory::ldif::{LdifError, LdifReader, LdifRecord, write_record};
use proptest::prelude::*;

fn summarize<R: std::io::BufRead>(reader: LdifReader<R>) -> Vec<String> {
    reader
        .map(|r| match r {
            Ok(rec) => format!("ok {:?} {:?}", rec.dn, rec.attrs),
            Err(LdifError::Syntax { line, message }) => format!("err {line} {message}"),
            Err(e) => format!("io {e}"),
        })
        .collect()
}

/// Parses `input` whole and through a tiny buffer; both must agree and terminate.
fn check_input(input: &[u8], cap: usize) {
    let items = summarize(LdifReader::new(input));
    let lines = input.iter().filter(|&&b| b == b'\n').count() + 1;
    assert!(items.len() <= lines, "more items than lines");
    let chunked = summarize(LdifReader::new(BufReader::with_capacity(cap, input)));
    assert_eq!(items, chunked);
}

fn ldifish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("dn:"),
        Just("dn::"),
        Just("::"),
        Just(":"),
        Just(":<"),
        Just(" "),
        Just("\n"),
        Just("\r\n"),
        Just("\r"),
        Just("#"),
        Just("cn"),
        Just("a"),
        Just("Z"),
        Just("="),
        Just(","),
        Just(";"),
        Just("+/"),
        Just("AAAA"),
        Just("w6k="),
        Just("\u{e9}"),
        Just("\u{feff}"),
        Just("version: 1"),
        Just("changetype: add"),
        Just("changetype: modify"),
        Just("search: 2"),
        Just("result: 0 Success"),
        Just("ref: ldap://x"),
    ];
    prop::collection::vec(token, 0..200).prop_map(|t| t.concat())
}

fn attr_name() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z][A-Za-z0-9-]{0,12}(;[A-Za-z0-9=*-]{1,10}){0,2}", "[0-9]{1,4}(\\.[0-9]{1,4}){0,5}(;binary)?",]
        .prop_filter("reserved by the reader", |n| {
            !["dn", "changetype", "control"].iter().any(|r| n.eq_ignore_ascii_case(r))
        })
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        "[ -~]{0,120}".prop_map(String::into_bytes),
        (
            prop_oneof![Just(" "), Just(":"), Just("<"), Just("  "), Just("")],
            "[ -~]{0,20}",
            prop_oneof![Just(""), Just(" "), Just("\r"), Just("\n"), Just("\u{e9}")],
        )
            .prop_map(|(a, b, c)| format!("{a}{b}{c}").into_bytes()),
        any::<String>().prop_map(String::into_bytes),
        Just(Vec::new()),
        Just(b"\xff\xfe\x00".to_vec()),
    ]
}

fn record() -> impl Strategy<Value = LdifRecord> {
    (any::<String>().prop_map(|s| s.replace('\0', "")), prop::collection::vec((attr_name(), value()), 0..8))
        .prop_map(|(dn, attrs)| LdifRecord { dn, attrs, line: 0 })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..2048), cap in 1usize..16) {
        check_input(&input, cap);
    }

    #[test]
    fn ldif_like_strings_never_panic(input in ldifish(), cap in 1usize..16) {
        check_input(input.as_bytes(), cap);
    }

    #[test]
    fn write_then_read_round_trips(records in prop::collection::vec(record(), 1..4), cap in 1usize..64) {
        let mut out = Vec::new();
        let mut expected = Vec::new();
        for rec in &records {
            let line = 1 + out.iter().filter(|&&b| b == b'\n').count();
            write_record(&mut out, rec).unwrap();
            expected.push(LdifRecord { line, ..rec.clone() });
        }
        for l in out.split(|&b| b == b'\n') {
            prop_assert!(l.len() <= 76);
        }
        let got: Vec<LdifRecord> = LdifReader::new(out.as_slice())
            .collect::<Result<_, _>>()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&got, &expected);
        let chunked: Vec<LdifRecord> = LdifReader::new(BufReader::with_capacity(cap, out.as_slice()))
            .collect::<Result<_, _>>()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&chunked, &expected);
    }
}
