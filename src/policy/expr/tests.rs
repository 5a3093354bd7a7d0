use std::collections::BTreeMap;

use super::*;

fn attrs(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    pairs.iter().map(|(k, vs)| (k.to_string(), vs.iter().map(|v| v.to_string()).collect())).collect()
}

/// The attributes most tests read.
fn user() -> BTreeMap<String, Vec<String>> {
    attrs(&[
        ("givenname", &["Anna"]),
        ("sn", &["Österström"]),
        ("displayname", &["  Anna Österström  "]),
        ("userprincipalname", &["anna.ostrom@corp.local"]),
        ("proxyaddresses", &["smtp:anna@old.example", "SMTP:anna@example.com", "X500:/o=Org/cn=anna"]),
        ("othermailbox", &["a@x.example", "b@y.example"]),
        ("useraccountcontrol", &["514"]),
        ("department", &["Sales"]),
        ("c", &["DE"]),
        ("employeeid", &["E042"]),
        ("badnumber", &["12ab"]),
        ("empty", &[""]),
        ("hidden", &["TRUE"]),
    ])
}

fn eval(text: &str) -> Result<Value, EvalError> {
    Expr::parse(text).unwrap_or_else(|e| panic!("{text}: {e}")).eval(&user())
}

fn ok(text: &str) -> Value {
    eval(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn list(items: &[&str]) -> Value {
    Value::List(items.iter().map(|s| s.to_string()).collect())
}

fn eval_error(text: &str) -> String {
    match eval(text) {
        Err(e) => e.message,
        Ok(v) => panic!("{text}: expected an evaluation error, got {v:?}"),
    }
}

fn parse_error(text: &str) -> ExprError {
    match Expr::parse(text) {
        Err(e) => e,
        Ok(_) => panic!("{text}: expected a parse error"),
    }
}

// --- syntax and values ---

#[test]
fn a_bare_attribute_is_text_list_or_null_by_its_number_of_values() {
    assert_eq!(ok("[givenName]"), text("Anna"));
    assert_eq!(ok("[GIVENNAME]"), text("Anna"));
    assert_eq!(ok("[otherMailbox]"), list(&["a@x.example", "b@y.example"]));
    assert_eq!(ok("[mobile]"), Value::Null);
}

#[test]
fn constants_strings_integers_and_booleans() {
    assert_eq!(ok(r#""say \"hi\" \\ bye""#), text(r#"say "hi" \ bye"#));
    assert_eq!(ok("42"), Value::Int(42));
    assert_eq!(ok("-7"), Value::Int(-7));
    assert_eq!(ok("TRUE"), Value::Bool(true));
    assert_eq!(ok(" false "), Value::Bool(false));
    assert_eq!(ok("\"\""), text(""));
}

#[test]
fn attributes_lists_what_is_read_lower_case_sorted_once() {
    let e = Expr::parse("Coalesce([mail], PrimarySmtp([proxyAddresses]), [MAIL], \"x\")").unwrap();
    assert_eq!(e.attributes(), vec!["mail".to_string(), "proxyaddresses".to_string()]);
    assert_eq!(e.source(), "Coalesce([mail], PrimarySmtp([proxyAddresses]), [MAIL], \"x\")");
    assert!(Expr::parse("\"x\"").unwrap().attributes().is_empty());
}

#[test]
fn attribute_references_carry_their_column_for_an_unknown_attribute_error() {
    let e = Expr::parse("Coalesce([mail], ToLower([Mial]), [mail])").unwrap();
    assert_eq!(
        e.attribute_references(),
        vec![("mail".to_string(), 10), ("mial".to_string(), 26), ("mail".to_string(), 35)]
    );
    let known = |name: &str| ["mail", "givenname"].contains(&name);
    let err = e.check_attributes(known).unwrap_err();
    assert_eq!(err.to_string(), "column 26: unknown attribute [mial]");
    assert_eq!(Expr::parse("ToLower([GivenName])").unwrap().check_attributes(known), Ok(()));
}

#[test]
fn function_names_are_case_insensitive() {
    assert_eq!(ok("tolower([givenName])"), text("anna"));
    assert_eq!(ok("TOUPPER([givenName])"), text("ANNA"));
    assert_eq!(ok("iif(true, 1, 2)"), Value::Int(1));
}

#[test]
fn display_joins_lists_and_shows_null_as_empty() {
    assert_eq!(text("a").to_string(), "a");
    assert_eq!(list(&["a", "b"]).to_string(), "a; b");
    assert_eq!(Value::Null.to_string(), "");
    assert_eq!(Value::Bool(true).to_string(), "true");
    assert_eq!(Value::Int(-3).to_string(), "-3");
}

// --- parse errors, with their column ---

fn assert_parse_error(text: &str, column: usize, contains: &str) {
    let e = parse_error(text);
    assert_eq!(e.column, column, "{text}: {e}");
    assert!(e.message.contains(contains), "{text}: {e} does not contain {contains:?}");
}

#[test]
fn syntax_errors_name_the_column_of_the_offending_character() {
    assert_parse_error("", 1, "expected an expression");
    assert_parse_error("   ", 4, "expected an expression");
    assert_parse_error("ToLower([givenName]", 20, "expected ')'");
    assert_parse_error("ToLower([givenName]))", 21, "after the end");
    assert_parse_error("ToLower([givenName] [sn])", 21, "expected ',' or ')'");
    assert_parse_error("[given Name]", 7, "attribute name");
    assert_parse_error("[]", 2, "empty attribute name");
    assert_parse_error("[1abc]", 2, "attribute name");
    assert_parse_error("[mail", 6, "expected ']'");
    assert_parse_error("Append([sn], \"abc)", 14, "unterminated string");
    assert_parse_error(r#""a\nb""#, 3, "unknown escape");
    assert_parse_error("Append([sn],)", 13, "unexpected ')': expected an attribute, a constant or a function");
    assert_parse_error("-", 2, "digit");
    assert_parse_error("99999999999999999999", 1, "out of range");
    assert_parse_error("givenName", 1, "in brackets");
    assert_parse_error("ToLower", 8, "expected '('");
    assert_parse_error("@", 1, "'@'");
    assert_parse_error("\u{feff}[mail]", 1, "unexpected character U+FEFF");
    assert_parse_error("[mail\u{200b}]", 6, "unexpected character U+200B in an attribute name");
}

#[test]
fn columns_count_characters_not_bytes() {
    // "Ö" is two bytes in UTF-8: the column of ')' is still 12
    assert_parse_error("Append(\"Ö\", )", 13, "unexpected ')'");
    assert_parse_error("\"ÄÖÜ\" x", 7, "after the end");
}

#[test]
fn an_unknown_function_is_named_with_the_closest_known_one() {
    assert_parse_error("  ToLowr([givenName])", 3, "unknown function ToLowr; did you mean ToLower?");
    assert_parse_error("Coalesc([a])", 1, "did you mean Coalesce?");
    assert_parse_error("regexreplac([a], \"x\", \"y\")", 1, "did you mean RegexReplace?");
}

#[test]
fn arity_errors_point_at_the_function() {
    assert_parse_error("Append([a], ToLower([b], [c]))", 13, "ToLower takes 1 argument, found 2");
    assert_parse_error("Append([a])", 1, "Append takes at least 2 arguments, found 1");
    assert_parse_error("Mid([a], 1)", 1, "Mid takes 3 arguments, found 2");
    assert_parse_error("Coalesce()", 1, "Coalesce takes at least 1 arguments, found 0");
    assert_parse_error("Switch([c], \"x\", \"DE\")", 1, "Switch takes a source, a default and key/value pairs");
    assert_parse_error("Switch([c], \"x\", \"DE\", \"de\", \"FR\")", 1, "found 5");
}

#[test]
fn constant_arguments_of_the_wrong_type_are_parse_errors() {
    assert_parse_error("Item([a], \"one\")", 11, "must be an integer, found the text \"one\"");
    assert_parse_error("Item([a], 0)", 11, "Item counts from 1");
    assert_parse_error("Left([a], true)", 11, "must be an integer, found a boolean");
    assert_parse_error("Mid([a], 0, 2)", 10, "counts from 1");
    assert_parse_error("Mid([a], 1, -2)", 13, "length");
    assert_parse_error("BitAnd([userAccountControl], \"2\")", 30, "must be an integer");
    assert_parse_error("Not(\"yes\")", 5, "must be a boolean, found text");
    assert_parse_error("IIF(Append([a], \"x\"), 1, 2)", 5, "must be a boolean, found text");
    assert_parse_error("Item([a], -1)", 11, "Item counts from 1");
    assert_parse_error("Append([a], IsPresent([b]))", 13, "must be one text value, found a boolean");
    assert_parse_error("Append([a], Split([b], \",\"))", 13, "found a list");
    assert_parse_error("Constant([a])", 10, "string constant");
    assert_parse_error("RegexReplace([a], [b], \"x\")", 19, "string constant");
    assert_parse_error("RegexReplace([a], \"(unclosed\", \"x\")", 19, "does not compile");
    assert_parse_error("RegexReplace([a], \"a{1000}{1000}{1000}\", \"x\")", 19, "does not compile");
    assert_parse_error("Split([a], \"\")", 12, "separator must not be empty");
    assert_parse_error("Replace([a], \"\", \"x\")", 14, "must not be empty");
}

#[test]
fn nesting_and_length_are_limited() {
    let nested = |n: usize| format!("{}[a]{}", "Trim(".repeat(n), ")".repeat(n));
    assert!(Expr::parse(&nested(MAX_DEPTH)).is_ok());
    let e = parse_error(&nested(MAX_DEPTH + 1));
    assert_eq!(e.column, 5 * MAX_DEPTH + 1, "{e}");
    assert!(e.message.contains("nested more than 32"), "{e}");

    let long = format!("\"{}\"", "x".repeat(MAX_SOURCE_CHARS - 2));
    assert!(Expr::parse(&long).is_ok());
    let e = parse_error(&format!("\"{}\"", "x".repeat(MAX_SOURCE_CHARS - 1)));
    assert_eq!(e.column, MAX_SOURCE_CHARS + 1);
    assert!(e.message.contains("longer than 4096 characters"), "{e}");
}

// --- one test per function: the normal case, Null, an edge ---

#[test]
fn coalesce_gives_the_first_present_value() {
    assert_eq!(ok("Coalesce([mail], [otherMailbox], \"none\")"), list(&["a@x.example", "b@y.example"]));
    assert_eq!(ok("Coalesce([mail], [mobile])"), Value::Null);
    // empty text counts as absent
    assert_eq!(ok("Coalesce([empty], Trim(\"  \"), [givenName])"), text("Anna"));
}

#[test]
fn append_concatenates_and_skips_null() {
    assert_eq!(ok("Append([givenName], \" \", [sn])"), text("Anna Österström"));
    assert_eq!(ok("Append([mobile], \"@x\")"), text("@x"));
    assert_eq!(ok("Append([mobile], [pager])"), Value::Null);
    assert_eq!(ok("Append(1, 2)"), text("12"));
    assert!(eval_error("Append([otherMailbox], \"x\")").contains("[otherMailbox] has 2 values"));
}

#[test]
fn join_joins_values_and_lists_skipping_null() {
    assert_eq!(ok("Join(\", \", [givenName], [otherMailbox], [mobile])"), text("Anna, a@x.example, b@y.example"));
    assert_eq!(ok("Join(\",\", [mobile])"), Value::Null);
    assert_eq!(ok("Join([mobile], \"a\", \"b\")"), text("ab"));
}

#[test]
fn split_gives_a_list() {
    assert_eq!(ok("Split([userPrincipalName], \"@\")"), list(&["anna.ostrom", "corp.local"]));
    assert_eq!(ok("Split([mobile], \",\")"), Value::Null);
    assert_eq!(ok("Split(\"a,,b\", \",\")"), list(&["a", "", "b"]));
    assert!(eval_error("Split([givenName], [mobile])").contains("separator [mobile] is empty"));
    let commas = ",".repeat(MAX_LIST_ITEMS);
    let e = Expr::parse("Split([a], \",\")").unwrap().eval(&attrs(&[("a", &[commas.as_str()])]));
    assert!(e.unwrap_err().message.contains("more than 10000 parts"));
}

#[test]
fn item_counts_from_one() {
    assert_eq!(ok("Item(Split([userPrincipalName], \"@\"), 1)"), text("anna.ostrom"));
    assert_eq!(ok("Item([otherMailbox], 2)"), text("b@y.example"));
    assert_eq!(ok("Item([otherMailbox], 3)"), Value::Null);
    assert_eq!(ok("Item([mobile], 1)"), Value::Null);
    assert_eq!(ok("Item([givenName], 1)"), text("Anna"));
    assert!(eval_error("Item([otherMailbox], [badNumber])").contains("[badNumber] is \"12ab\", not an integer"));
    assert!(eval_error("Item([otherMailbox], Count([mobile]))").contains("Item counts from 1"));
}

#[test]
fn first_and_count() {
    assert_eq!(ok("First([proxyAddresses])"), text("smtp:anna@old.example"));
    assert_eq!(ok("First([mobile])"), Value::Null);
    assert_eq!(ok("Count([proxyAddresses])"), Value::Int(3));
    assert_eq!(ok("Count([givenName])"), Value::Int(1));
    assert_eq!(ok("Count([mobile])"), Value::Int(0));
}

#[test]
fn to_lower_and_to_upper_handle_unicode_and_lists() {
    assert_eq!(ok("ToLower([sn])"), text("österström"));
    assert_eq!(ok("ToUpper([sn])"), text("ÖSTERSTRÖM"));
    assert_eq!(ok("ToLower([mobile])"), Value::Null);
    assert_eq!(ok("ToUpper([mobile])"), Value::Null);
    assert_eq!(ok("ToUpper([otherMailbox])"), list(&["A@X.EXAMPLE", "B@Y.EXAMPLE"]));
    assert_eq!(ok("ToUpper(\"straße\")"), text("STRASSE"));
    assert_eq!(ok("ToLower(12)"), text("12"));
}

#[test]
fn trim_strips_white_space_at_both_ends() {
    assert_eq!(ok("Trim([displayName])"), text("Anna Österström"));
    assert_eq!(ok("Trim([mobile])"), Value::Null);
    assert_eq!(ok("Trim(\"\u{a0}x\u{3000}\")"), text("x"));
}

#[test]
fn replace_is_literal() {
    assert_eq!(ok("Replace([userPrincipalName], \"@corp.local\", \"@example.com\")"), text("anna.ostrom@example.com"));
    assert_eq!(ok("Replace([mobile], \"a\", \"b\")"), Value::Null);
    assert_eq!(ok("Replace(\"a.b.c\", \".\", [mobile])"), text("abc"));
    assert_eq!(ok("Replace(\"x*y\", \"*\", \"$1\")"), text("x$1y"));
    assert!(eval_error("Replace(\"x\", [mobile], \"y\")").contains("old text [mobile] is empty"));
    let grows = format!("Replace(\"{}\", \"a\", \"{}\")", "a".repeat(1000), "b".repeat(100));
    assert!(eval_error(&grows).contains("grows past"));
}

#[test]
fn regex_replace_uses_the_regex_crate() {
    assert_eq!(ok("RegexReplace([userPrincipalName], \"@.*$\", \"@example.com\")"), text("anna.ostrom@example.com"));
    assert_eq!(ok("RegexReplace([givenName], \"^(.)(.*)$\", \"$2-$1\")"), text("nna-A"));
    assert_eq!(ok("RegexReplace([mobile], \"x\", \"y\")"), Value::Null);
    assert_eq!(ok("RegexReplace([otherMailbox], \"@.*\", \"\")"), list(&["a", "b"]));
    // an empty match between every character: bounded by the size check
    assert_eq!(ok("RegexReplace(\"ab\", \"\", \"-\")"), text("-a-b-"));
    let big = format!("RegexReplace(\"{}\", \"\", \"{}\")", "a".repeat(1000), "b".repeat(100));
    assert!(eval_error(&big).contains("grows past"));
}

#[test]
fn left_follows_entra() {
    assert_eq!(ok("Left([givenName], 2)"), text("An"));
    assert_eq!(ok("Left([sn], 1)"), text("Ö"));
    assert_eq!(ok("Left([givenName], 10)"), text("Anna"));
    assert_eq!(ok("Left([givenName], 0)"), text(""));
    assert_eq!(ok("Left([givenName], -1)"), text("Anna"));
    assert_eq!(ok("Left([mobile], 3)"), text(""));
    assert_eq!(ok("Left([otherMailbox], 1)"), list(&["a", "b"]));
}

#[test]
fn mid_counts_characters_from_one() {
    assert_eq!(ok("Mid([sn], 2, 3)"), text("ste"));
    assert_eq!(ok("Mid([sn], 1, 1)"), text("Ö"));
    assert_eq!(ok("Mid([sn], 9, 100)"), text("öm"));
    assert_eq!(ok("Mid([sn], 100, 1)"), text(""));
    assert_eq!(ok("Mid([mobile], 1, 1)"), Value::Null);
    assert!(eval_error("Mid([sn], Count([mobile]), 1)").contains("counts from 1"));
}

#[test]
fn switch_matches_keys_case_insensitively_in_entras_order() {
    assert_eq!(ok("Switch([c], \"Other\", \"de\", \"Germany\", \"FR\", \"France\")"), text("Germany"));
    assert_eq!(ok("Switch([department], \"Other\", \"de\", \"Germany\")"), text("Other"));
    assert_eq!(ok("Switch([mobile], \"Other\", \"de\", \"Germany\")"), text("Other"));
    assert_eq!(ok("Switch([c], [mobile], \"FR\", \"France\")"), Value::Null);
    assert!(eval_error("Switch([otherMailbox], \"x\", \"a\", \"b\")").contains("has 2 values"));
}

#[test]
fn iif_evaluates_only_the_branch_it_takes() {
    assert_eq!(ok("IIF(IsPresent([mail]), [mail], [userPrincipalName])"), text("anna.ostrom@corp.local"));
    assert_eq!(ok("IIF(true, \"yes\", Append([otherMailbox], \"x\"))"), text("yes"));
    assert_eq!(ok("IIF([mobile], \"yes\", \"no\")"), text("no"));
    assert!(eval_error("IIF([givenName], 1, 2)").contains("[givenName] is not a boolean"));
}

#[test]
fn is_present_and_is_null_or_empty() {
    assert_eq!(ok("IsPresent([givenName])"), Value::Bool(true));
    assert_eq!(ok("IsPresent([mobile])"), Value::Bool(false));
    assert_eq!(ok("IsPresent([empty])"), Value::Bool(false));
    assert_eq!(ok("IsNullOrEmpty([mobile])"), Value::Bool(true));
    assert_eq!(ok("IsNullOrEmpty([empty])"), Value::Bool(true));
    assert_eq!(ok("IsNullOrEmpty([otherMailbox])"), Value::Bool(false));
}

#[test]
fn not_flips_and_treats_null_as_false() {
    assert_eq!(ok("Not(IsPresent([mobile]))"), Value::Bool(true));
    assert_eq!(ok("Not(true)"), Value::Bool(false));
    assert_eq!(ok("Not([mobile])"), Value::Bool(true));
    assert_eq!(ok("Not([hidden])"), Value::Bool(false));
    assert!(eval_error("Not([givenName])").contains("[givenName] is not a boolean"));
}

#[test]
fn equals_compares_case_insensitively() {
    assert_eq!(ok("Equals([c], \"de\")"), Value::Bool(true));
    assert_eq!(ok("Equals([c], \"FR\")"), Value::Bool(false));
    assert_eq!(ok("Equals([mobile], [pager])"), Value::Bool(true));
    assert_eq!(ok("Equals([mobile], \"\")"), Value::Bool(false));
    assert_eq!(ok("Equals([userAccountControl], 514)"), Value::Bool(true));
    assert_eq!(ok("Equals([otherMailbox], Split(\"A@X.example,b@y.example\", \",\"))"), Value::Bool(true));
}

#[test]
fn normalize_diacritics_strips_marks_and_folds_the_table() {
    assert_eq!(ok("NormalizeDiacritics([sn])"), text("Osterstrom"));
    assert_eq!(ok("NormalizeDiacritics([mobile])"), Value::Null);
    assert_eq!(
        ok("NormalizeDiacritics(\"Łódź Straße Æsir Øre Đorđe Þór Crème brûlée Ñandú\")"),
        text("Lodz Strasse AEsir Ore Dorde Thor Creme brulee Nandu")
    );
    // letters that are not Latin keep their base letter
    assert_eq!(ok("NormalizeDiacritics(\"Ἀθῆναι Йогурт\")"), text("Αθηναι Иогурт"));
    for (from, to) in eval::FOLDS {
        assert_eq!(ok(&format!("NormalizeDiacritics(\"{from}\")")), text(to));
    }
}

#[test]
fn primary_smtp_takes_the_upper_case_smtp_entry() {
    assert_eq!(ok("PrimarySmtp([proxyAddresses])"), text("anna@example.com"));
    assert_eq!(ok("PrimarySmtp([mobile])"), Value::Null);
    assert_eq!(ok("PrimarySmtp([otherMailbox])"), Value::Null);
    assert_eq!(ok("PrimarySmtp(\"SMTP:only@example.com\")"), text("only@example.com"));
    let two = Expr::parse("PrimarySmtp([proxyAddresses])").unwrap();
    let data = attrs(&[("proxyaddresses", &["SMTP:a@example.com", "SMTP:b@example.com"])]);
    assert!(two.eval(&data).unwrap_err().message.contains("more than one primary address"));
}

#[test]
fn bit_and_tests_bits_of_an_integer_attribute() {
    assert_eq!(ok("BitAnd([userAccountControl], 2)"), Value::Bool(true));
    assert_eq!(ok("BitAnd([userAccountControl], 16)"), Value::Bool(false));
    assert_eq!(ok("BitAnd([mobile], 2)"), Value::Bool(false));
    assert_eq!(ok("BitAnd(-1, 4611686018427387904)"), Value::Bool(true));
    let e = eval_error("BitAnd([badNumber], 2)");
    assert_eq!(e, "BitAnd: [badNumber] is \"12ab\", not an integer");
}

#[test]
fn constant_is_its_text() {
    assert_eq!(ok("Constant(\"Employee\")"), text("Employee"));
    assert_eq!(ok("Constant(\"\")"), text(""));
    assert_eq!(ok("Append(Constant(\"x\"), [mobile])"), text("x"));
}

// --- limits ---

#[test]
fn an_oversized_attribute_value_is_an_evaluation_error() {
    let e = Expr::parse("ToLower([photo])").unwrap();
    let big = "x".repeat(MAX_TEXT_BYTES + 1);
    let data = attrs(&[("photo", &[big.as_str()])]);
    assert!(e.eval(&data).unwrap_err().message.starts_with("[photo] gives 65537 bytes of text"));
}

#[test]
fn doubling_text_stops_at_the_size_cap_not_the_memory() {
    let mut nested = "[a]".to_string();
    for _ in 0..25 {
        nested = format!("Replace({nested}, \"a\", \"aa\")");
    }
    let data = attrs(&[("a", &["a"])]);
    let e = Expr::parse(&nested).unwrap();
    assert!(e.eval(&data).unwrap_err().message.contains("grows past"));
}

// --- docs/expressions.md: every example gives the result shown ---

const REFERENCE: &str = include_str!("../../../docs/expressions.md");

/// The fenced blocks whose info string is `text <kind>`, as lists of lines.
fn blocks(kind: &str) -> Vec<Vec<&'static str>> {
    let mut out = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    let opening = format!("```text {kind}");
    for line in REFERENCE.lines() {
        match current.as_mut() {
            Some(lines) if line == "```" => out.push(std::mem::take(lines)),
            Some(lines) => lines.push(line),
            None => {}
        }
        if line == "```" {
            current = None;
        } else if line == opening {
            current = Some(Vec::new());
        }
    }
    out
}

fn reference_user() -> BTreeMap<String, Vec<String>> {
    let mut user: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let [block] = blocks("attributes").try_into().expect("one attributes block");
    for line in block {
        let (name, value) = line.split_once(": ").unwrap_or_else(|| panic!("not `name: value`: {line}"));
        user.entry(name.to_lowercase()).or_default().push(value.to_string());
    }
    user
}

/// A result as the reference writes it.
fn render(result: Result<Value, String>) -> String {
    match result {
        Ok(Value::Null) => "Null".to_string(),
        Ok(Value::Text(s)) => serde_json::to_string(&s).unwrap(),
        Ok(Value::List(items)) => {
            format!("[{}]", items.iter().map(|s| serde_json::to_string(s).unwrap()).collect::<Vec<_>>().join(", "))
        }
        Ok(Value::Bool(b)) => b.to_string(),
        Ok(Value::Int(n)) => n.to_string(),
        Err(message) => message,
    }
}

#[test]
fn every_example_in_the_reference_gives_the_result_it_shows() {
    let user = reference_user();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for line in blocks("example").into_iter().flatten() {
        let (text, shown) = line.split_once(" → ").unwrap_or_else(|| panic!("no ` → ` in {line}"));
        let got = match Expr::parse(text) {
            Ok(expr) => render(expr.eval(&user).map_err(|e| format!("error: {e}"))),
            Err(e) => render(Err(e.to_string())),
        };
        if got != shown {
            wrong.push(format!("{text}\n  shown: {shown}\n  got:   {got}"));
        }
        checked += 1;
    }
    assert!(wrong.is_empty(), "examples that do not give what the reference shows:\n{}", wrong.join("\n"));
    assert!(checked >= 2 * FUNCTIONS.len(), "only {checked} examples");
}

#[test]
fn the_reference_has_a_section_with_examples_for_every_function() {
    for name in function_names() {
        let heading = format!("\n### {name}\n");
        let start = REFERENCE.find(&heading).unwrap_or_else(|| panic!("no section {name}"));
        let section = &REFERENCE[start + heading.len()..];
        let section = &section[..section.find("\n#").unwrap_or(section.len())];
        assert!(section.contains(&format!("\n{name}(")), "no example of {name} in its section");
    }
}
