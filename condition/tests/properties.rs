//! Property tests of the condition language (proptest): parsing and matching never panic on any
//! JSON, `explain` agrees with `matches`, `$not` negates, and a pattern reads the same from its
//! JSON text. Patterns are drawn both from all of JSON and from a generator biased towards the
//! language (operators with good and bad arguments, type names and misspellings, shared keys).

use proptest::prelude::*;
use serde_json::{Map, Number, Value, json};
use whenever_condition::Condition;

/// Cases per property: enough to find shallow bugs, a second or two each.
const CASES: u32 = 512;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        ..ProptestConfig::default()
    }
}

/// Keys shared by patterns and data, so they meet; `$via` is a data key that looks like an
/// operator, `$gt` an operator.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["a", "b", "c", "$via", ""]).prop_map(str::to_string),
        1 => prop::sample::select(vec!["$gt", "$not", "$eq", "$in"]).prop_map(str::to_string),
        1 => "\\PC{0,6}",
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-3i64..4).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-4i32..5).prop_map(|n| json!(f64::from(n) / 2.0)),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
    ]
}

fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "x", "y", "", "$string", "$number", "$boolean", "$array", "$object", "$any", "$strnig", "$", "$null", "^x",
            "(", "[a-",
        ])
        .prop_map(str::to_string),
        "\\PC{0,8}",
    ]
}

/// Any JSON value, small.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..4)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// Task data: an object over the shared keys.
fn data() -> impl Strategy<Value = Value> {
    prop::collection::vec((key(), json_value()), 0..5).prop_map(|entries| Value::Object(entries.into_iter().collect()))
}

/// A sub-pattern biased towards the condition language.
fn pattern() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        prop::sample::select(vec![
            "$string", "$number", "$boolean", "$array", "$object", "$any", "$strnig"
        ])
        .prop_map(|s| json!(s)),
        Just(Value::Null),
        number(),
        string().prop_map(Value::String),
        any::<bool>().prop_map(Value::Bool),
        json_value().prop_map(|v| json!({"$eq": v})),
        json_value().prop_map(|v| json!({"$ne": v})),
        string().prop_map(|re| json!({"$regex": re})),
        (
            prop::sample::select(vec!["$gt", "$gte", "$lt", "$lte"]),
            json_value(),
            number()
        )
            .prop_map(|(op, bad, good)| json!({op: good, "$ne": bad})),
        (prop::sample::select(vec!["$gt", "$gte", "$lt", "$lte"]), number()).prop_map(|(op, n)| json!({op: n})),
        (
            prop::sample::select(vec!["$in", "$nin"]),
            prop::collection::vec(json_value(), 0..4)
        )
            .prop_map(|(op, items)| json!({op: items})),
        (
            prop::sample::select(vec!["$in", "$regex", "$gt", "$bogus"]),
            json_value()
        )
            .prop_map(|(op, arg)| json!({op: arg})),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|p| json!({"$not": p})),
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::vec((key(), inner.clone()), 0..4)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
            (inner, json_value()).prop_map(|(p, v)| json!({"$gt": 1, "k": p, "$eq": v})),
        ]
    })
}

/// A top-level pattern: an object over the shared keys.
fn root_pattern() -> impl Strategy<Value = Value> {
    prop::collection::vec((key(), pattern()), 0..4).prop_map(|entries| Value::Object(entries.into_iter().collect()))
}

/// Exercises everything a parsed condition offers; returns whether it matched.
fn exercise(condition: &Condition, data: &Value) -> bool {
    let matched = condition.matches(data);
    let explained = condition.explain(data);
    assert_eq!(
        matched,
        explained.is_ok(),
        "explain disagrees with matches on {data}: {explained:?}"
    );
    if let Err(mismatch) = explained {
        assert!(!mismatch.to_string().is_empty());
    }
    let projection = condition.projection(data);
    assert_eq!(
        projection,
        condition.projection(data),
        "projection is a function of the data"
    );
    let _ = projection.to_json();
    matched
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_json_as_a_pattern_never_panics(pattern in json_value(), data in json_value()) {
        if let Ok(condition) = Condition::parse(&pattern) {
            prop_assert!(pattern.is_object(), "only objects are conditions: {}", pattern);
            exercise(&condition, &data);
        }
    }

    #[test]
    fn any_text_as_a_condition_never_panics(text in "\\PC{0,40}", data in data()) {
        if let Ok(condition) = Condition::from_json_text(&text) {
            exercise(&condition, &data);
        }
    }

    #[test]
    fn explain_agrees_with_matches(pattern in root_pattern(), data in data()) {
        if let Ok(condition) = Condition::parse(&pattern) {
            exercise(&condition, &data);
            // The same pattern from its JSON text is the same condition.
            let reread = Condition::from_json_text(&pattern.to_string()).expect("its own text parses");
            prop_assert_eq!(reread.matches(&data), condition.matches(&data));
            prop_assert_eq!(reread.paths(), condition.paths());
        }
    }

    #[test]
    fn not_negates(pattern in root_pattern(), data in data()) {
        let Ok(condition) = Condition::parse(&pattern) else { return Ok(()) };
        let matched = exercise(&condition, &data);

        // At the top level.
        let top = Condition::parse(&json!({"$not": pattern.clone()})).expect("$not of a valid pattern is valid");
        prop_assert_eq!(exercise(&top, &data), !matched, "top-level $not of {} on {}", pattern, data);

        // Under a key, present and missing.
        let under = Condition::parse(&json!({"k": {"$not": pattern.clone()}})).expect("valid");
        let plain = Condition::parse(&json!({"k": pattern.clone()})).expect("valid");
        let wrapped = json!({"k": data});
        prop_assert_eq!(exercise(&under, &wrapped), !matched);
        prop_assert_eq!(exercise(&under, &json!({})), !exercise(&plain, &json!({})));

        // Twice is not at all.
        let twice = Condition::parse(&json!({"$not": {"$not": pattern.clone()}})).expect("valid");
        prop_assert_eq!(exercise(&twice, &data), matched);
    }

    #[test]
    fn the_direct_projection_digest_is_the_digest_of_the_projection(pattern in root_pattern(), data in data()) {
        let Ok(condition) = Condition::parse(&pattern) else { return Ok(()) };
        // Digests are stored per task and step: the shortcut must give the very same text.
        prop_assert_eq!(condition.projection_digest(&data), condition.projection(&data).digest());
        let floated = float_numbers(&data);
        prop_assert_eq!(condition.projection_digest(&floated), condition.projection(&data).digest());
    }

    #[test]
    fn integral_numbers_match_whatever_their_form(pattern in root_pattern(), data in data()) {
        let Ok(condition) = Condition::parse(&pattern) else { return Ok(()) };
        let floated = float_numbers(&data);
        prop_assert_eq!(condition.matches(&data), condition.matches(&floated), "{} vs {}", data, floated);
    }
}

/// Rewrites every small integer as the same float (`2` → `2.0`).
fn float_numbers(v: &Value) -> Value {
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(i) if i.unsigned_abs() < (1 << 52) => json!(i as f64),
            _ => v.clone(),
        },
        Value::Array(items) => Value::Array(items.iter().map(float_numbers).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), float_numbers(v))).collect()),
        other => other.clone(),
    }
}

/// The generators must reach valid patterns and both outcomes, or the properties above would
/// hold vacuously.
#[test]
fn the_generators_reach_valid_patterns_and_both_outcomes() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let (mut valid, mut matched, mut invalid) = (0, 0, 0);
    for _ in 0..1000 {
        let pattern = root_pattern().new_tree(&mut runner).expect("pattern").current();
        let data = data().new_tree(&mut runner).expect("data").current();
        match Condition::parse(&pattern) {
            Ok(condition) => {
                valid += 1;
                matched += usize::from(condition.matches(&data));
            }
            Err(_) => invalid += 1,
        }
    }
    assert!(valid > 300, "only {valid} of 1000 patterns are valid");
    assert!(invalid > 50, "only {invalid} of 1000 patterns are invalid");
    assert!(
        matched > 50 && matched < valid - 50,
        "{matched} of {valid} valid patterns matched"
    );
}
