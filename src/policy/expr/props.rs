//! Property tests: the parser and the evaluator never panic, and an evaluation's work is bounded.

use std::cell::Cell;
use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

const ATTRIBUTES: &[&str] = &["a", "b", "useraccountcontrol", "proxyaddresses", "mobile"];

/// Attribute values: numbers, SMTP: entries, separators, accents, long runs, anything.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        "(SMTP|smtp|x500):[a-z@.]{0,12}",
        "[ ,;@.a-zA-ZÄÖüßæł\u{301}-]{0,24}",
        any::<String>(),
        (1usize..2000, "[a,]").prop_map(|(n, s)| s.repeat(n)),
    ]
}

fn attributes() -> impl Strategy<Value = BTreeMap<String, Vec<String>>> {
    prop::collection::btree_map(
        prop::sample::select(ATTRIBUTES).prop_map(str::to_string),
        prop::collection::vec(value(), 0..5),
        0..ATTRIBUTES.len(),
    )
}

fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Well-formed expressions: every function with a number of arguments it accepts (arguments of
/// the wrong type are caught by the parser, which is part of what is tested).
fn expression() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        prop::sample::select(ATTRIBUTES).prop_map(|a| format!("[{a}]")),
        prop_oneof!["[a-z,@. ]{0,6}", any::<String>(), Just("(.)(.*)".to_string()), Just("$1$1$1".to_string())]
            .prop_map(|s| quoted(&s)),
        (-3i64..12).prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        prop::bool::ANY.prop_map(|b| b.to_string()),
    ];
    let int = prop_oneof![(-2i64..12).prop_map(|n| n.to_string()), Just("Count([proxyaddresses])".to_string())];
    let boolean = prop_oneof![
        prop::bool::ANY.prop_map(|b| b.to_string()),
        prop::sample::select(ATTRIBUTES).prop_map(|a| format!("IsPresent([{a}])")),
        Just("BitAnd([useraccountcontrol], 2)".to_string()),
    ];
    let pattern = prop::sample::select(&["\"(.)(.*)\"", "\"\"", "\"[aeiou]+\"", "\"^SMTP:\"", "\"(?i)a|b\""][..]);
    leaf.prop_recursive(6, 64, 6, move |inner| {
        (
            0..FUNCTIONS.len(),
            prop::collection::vec(inner, 6),
            prop::collection::vec(int.clone(), 6),
            prop::collection::vec(boolean.clone(), 6),
            pattern.clone(),
            any::<u8>(),
        )
            .prop_map(|(i, args, ints, booleans, pattern, dice)| {
                let info = &FUNCTIONS[i];
                let n = match (info.func, info.max) {
                    (parse::Func::Switch, _) => 4 + 2 * usize::from(dice % 2),
                    (_, Some(max)) => max,
                    (_, None) => info.min + usize::from(dice % 3),
                };
                // mostly an argument of the type wanted, sometimes anything (for the type checks)
                let typed = dice % 8 != 0;
                let args: Vec<String> = (0..n)
                    .map(|k| match info.func.want(k) {
                        parse::Want::Int if typed => ints[k].clone(),
                        parse::Want::Bool if typed => booleans[k].clone(),
                        parse::Want::Literal if typed => pattern.to_string(),
                        _ => args[k].clone(),
                    })
                    .collect();
                format!("{}({})", info.name, args.join(", "))
            })
    })
}

/// Counts what the evaluator reads, to check it reads each attribute reference at most once.
struct Counting<'a> {
    inner: &'a BTreeMap<String, Vec<String>>,
    reads: Cell<usize>,
}

impl Attributes for Counting<'_> {
    fn values(&self, name: &str) -> Values<'_> {
        self.reads.set(self.reads.get() + 1);
        Attributes::values(self.inner, name)
    }
}

fn references(text: &str) -> usize {
    text.matches('[').count()
}

fn within_caps(v: &Value) -> bool {
    match v {
        Value::Text(s) => s.len() <= MAX_TEXT_BYTES,
        Value::List(items) => {
            items.len() <= MAX_LIST_ITEMS
                && items.iter().all(|s| s.len() <= MAX_TEXT_BYTES)
                && items.iter().map(String::len).sum::<usize>() <= MAX_LIST_BYTES
        }
        _ => true,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_never_panics_on_arbitrary_text(text in any::<String>()) {
        if let Err(e) = Expr::parse(&text) {
            prop_assert!(e.column >= 1 && e.column <= text.chars().count().max(MAX_SOURCE_CHARS) + 1, "{e}");
        }
    }

    #[test]
    fn parse_never_panics_on_token_soup(tokens in prop::collection::vec(prop_oneof![
        Just("("), Just(")"), Just(","), Just("["), Just("]"), Just("\""), Just("\\"), Just("-"), Just(" "),
        Just("1"), Just("Item"), Just("Switch"), Just("RegexReplace"), Just("Mid"), Just("true"), Just("[a]"),
        Just("\"x\""), Just("Ö"), Just("\u{301}"), Just("Trim("),
    ], 0..120)) {
        let text = tokens.concat();
        if let Err(e) = Expr::parse(&text) {
            prop_assert!(e.column >= 1 && e.column <= text.chars().count() + 1, "{text}: {e}");
        }
    }

    #[test]
    fn evaluation_never_panics_and_its_work_is_bounded(text in expression(), data in attributes()) {
        let Ok(expr) = Expr::parse(&text) else { return Ok(()) };
        let counting = Counting { inner: &data, reads: Cell::new(0) };
        let (result, steps) = expr.eval_counted(&counting);
        // no loops: each attribute reference is read at most once
        prop_assert!(counting.reads.get() <= references(&text), "{text}");
        // the budget is enforced: past it, the result is the budget's error
        if steps > MAX_STEPS {
            prop_assert!(matches!(&result, Err(e) if e.message.contains("steps of work")), "{text}: {result:?}");
        }
        match &result {
            Ok(v) => prop_assert!(within_caps(v), "{text}"),
            Err(e) => prop_assert!(!e.message.is_empty()),
        }
        // pure: the same input gives the same answer
        prop_assert_eq!(expr.eval(&data), result);
    }
}

/// Values of `[a]` around the evaluator's limits: none, a few, one too long, too many.
fn list_values() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        prop::collection::vec(value(), 0..6),
        Just(vec!["SMTP:x@y".to_owned(), "x".repeat(MAX_TEXT_BYTES + 1)]),
        Just(vec!["x".repeat(MAX_TEXT_BYTES + 1)]),
        Just(vec!["smtp:a".to_owned(); MAX_LIST_ITEMS + 1]),
        Just(vec!["y".repeat(MAX_TEXT_BYTES); MAX_LIST_BYTES / MAX_TEXT_BYTES]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// A function reading a list straight from an attribute (`F([a])`, borrowed, no copy) gives
    /// what it gives reading the same list as an evaluated value (`F(Coalesce([a]))`), and is
    /// charged the same steps (the Coalesce node adds its own 1, and reading its argument and its
    /// value the list's size twice).
    #[test]
    fn a_list_read_from_an_attribute_is_charged_and_checked_as_an_evaluated_one(
        values in list_values(),
        func in prop::sample::select(&[
            "PrimarySmtp(#)", "First(#)", "Count(#)", "Join(\",\", #, #)", "Item(#, 2)", "Equals(#, [b])",
            "Equals([b], #)",
        ][..]),
    ) {
        let data: BTreeMap<String, Vec<String>> =
            [("a".to_owned(), values.clone()), ("b".to_owned(), vec!["smtp:a".to_owned()])].into();
        // Coalesce takes one empty text for Null: for `[""]` the evaluated value is the text `""`.
        let wrapper = if values == [""] { "\"\"" } else { "Coalesce([a])" };
        let direct = Expr::parse(&func.replace('#', "[a]")).unwrap().eval_counted(&data);
        let evaluated = Expr::parse(&func.replace('#', wrapper)).unwrap().eval_counted(&data);
        // An error quotes the argument as written: the wrapper's text stands for `[a]`.
        let quoted = |r: &Result<Value, EvalError>| r.clone().map_err(|e| e.message.replace(wrapper, "[a]"));
        prop_assert_eq!(quoted(&direct.0), quoted(&evaluated.0));
        if direct.0.is_ok() && values != [""] {
            let value_size = match values.as_slice() {
                [] => 1,
                [one] => one.len(),
                many => many.iter().map(|v| v.len() + 1).sum(),
            };
            let reads = func.matches('#').count() as u64;
            prop_assert_eq!(direct.1 + reads * (1 + 2 * value_size as u64), evaluated.1);
        }
    }
}

/// Steps for `text` with attribute `a` set to `input`.
fn steps(text: &str, input: &str) -> u64 {
    let expr = Expr::parse(text).unwrap();
    let data: BTreeMap<String, Vec<String>> = [("a".to_string(), vec![input.to_string()])].into();
    let (result, steps) = expr.eval_counted(&data);
    assert!(result.is_ok(), "{text}: {result:?}");
    steps
}

#[test]
fn every_function_s_work_grows_linearly_with_its_input() {
    let cases = [
        "Coalesce([a])",
        "Append([a], [a])",
        "Join(\",\", [a], Split([a], \",\"))",
        "Split([a], \",\")",
        "Item(Split([a], \",\"), 2)",
        "ToLower([a])",
        "ToUpper([a])",
        "Trim([a])",
        "Replace([a], \",\", \";;\")",
        "RegexReplace([a], \"(é+)\", \"<$1>\")",
        "Left([a], 1000000)",
        "Mid([a], 2, 1000000)",
        "Switch([a], \"d\", \"x\", \"y\")",
        "IIF(IsPresent([a]), [a], \"\")",
        "IsNullOrEmpty([a])",
        "Not(IsPresent([a]))",
        "Equals([a], [a])",
        "NormalizeDiacritics([a])",
        "PrimarySmtp(Split([a], \",\"))",
        "BitAnd(Count(Split([a], \",\")), 1)",
        "Constant(\"x\")",
        "First(Split([a], \",\"))",
    ];
    for text in cases {
        let small = steps(text, &"aé,Ö ".repeat(100));
        let large = steps(text, &"aé,Ö ".repeat(400));
        assert!(large <= 4 * small + 64, "{text}: {small} steps for 600 bytes, {large} for 2400");
    }
    let names: Vec<&str> = function_names().collect();
    for name in names {
        assert!(cases.iter().any(|c| c.contains(&format!("{name}("))), "no linearity case for {name}");
    }
}

#[test]
fn an_adversarial_expression_ends_in_an_error_within_the_budget() {
    // each level doubles the text: without the caps, 2^30 bytes
    let mut text = "[a]".to_string();
    for _ in 0..30 {
        text = format!("Replace({text}, \"a\", \"aa\")");
    }
    let data: BTreeMap<String, Vec<String>> = [("a".to_string(), vec!["a".repeat(100)])].into();
    let (result, steps) = Expr::parse(&text).unwrap().eval_counted(&data);
    assert!(result.unwrap_err().message.contains("grows past"));
    assert!(steps <= MAX_STEPS);

    // a wide Join of the same big list again and again
    let join = format!("Join(\",\", {})", vec!["Split([a], \",\")"; 200].join(", "));
    let data: BTreeMap<String, Vec<String>> = [("a".to_string(), vec![",".repeat(MAX_LIST_ITEMS - 1)])].into();
    let (result, steps) = Expr::parse(&join).unwrap().eval_counted(&data);
    assert!(result.unwrap_err().message.contains("grows past"), "{steps}");
    assert!(steps <= MAX_STEPS);
}

#[test]
fn most_generated_expressions_parse_so_the_evaluation_property_tests_something() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = expression();
    let total = 400;
    let (mut parsed, mut calls) = (0, 0);
    for _ in 0..total {
        let text = strategy.new_tree(&mut runner).unwrap().current();
        if let Ok(expr) = Expr::parse(&text) {
            parsed += 1;
            calls += usize::from(matches!(expr.root.kind, parse::Kind::Call { .. }));
        }
    }
    assert!(parsed * 2 >= total && calls * 4 >= total, "{parsed} parse, {calls} calls, of {total}");
}
