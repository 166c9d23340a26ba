//! Parsing and validating a JSON pattern into a typed tree ([`Node`]).
//!
//! Every rule of the condition language that can be checked without data is
//! checked here, once, so matching never meets an invalid pattern: operator
//! arguments have the right types, regexes are compiled, `$`-strings are
//! known type names, and operators are not mixed with data keys.

use regex::Regex;
use serde_json::{Map, Number, Value};

use crate::error::PatternError;
use crate::value::describe;

/// Deepest nesting of a pattern accepted (the same limit `serde_json` puts on
/// parsed text), so matching and projection never recurse without bound.
pub(crate) const MAX_DEPTH: usize = 128;

/// The operator keys; an object whose keys are all operators is an operator
/// object, any other `$`-key is an ordinary data key (e.g. `$via`).
pub(crate) const OPERATORS: [&str; 10] = [
    "$eq", "$ne", "$regex", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$not",
];

const TYPE_NAMES: &str = "$string, $number, $boolean, $array, $object, $any";

/// A JSON type named by a `"$string"`-style pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonType {
    String,
    Number,
    Boolean,
    Array,
    Object,
}

impl JsonType {
    fn from_name(name: &str) -> Option<JsonType> {
        Some(match name {
            "$string" => JsonType::String,
            "$number" => JsonType::Number,
            "$boolean" => JsonType::Boolean,
            "$array" => JsonType::Array,
            "$object" => JsonType::Object,
            _ => return None,
        })
    }

    /// Whether `v` is of this type.
    pub(crate) fn holds(self, v: &Value) -> bool {
        matches!(
            (self, v),
            (JsonType::String, Value::String(_))
                | (JsonType::Number, Value::Number(_))
                | (JsonType::Boolean, Value::Bool(_))
                | (JsonType::Array, Value::Array(_))
                | (JsonType::Object, Value::Object(_))
        )
    }

    /// The type with an article, for messages ("a string").
    pub(crate) fn described(self) -> &'static str {
        match self {
            JsonType::String => "a string",
            JsonType::Number => "a number",
            JsonType::Boolean => "a boolean",
            JsonType::Array => "an array",
            JsonType::Object => "an object",
        }
    }
}

/// One node of a parsed pattern; matched against a possibly missing value.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// `"$string"` etc.: a present value of that type.
    Type(JsonType),
    /// `"$any"` or `{"$ne": null}`: present and not null.
    Present,
    /// `null`: absent or null.
    AbsentOrNull,
    /// A string not starting with `$`, a number or a boolean: an equal value.
    Literal(Value),
    /// `{ "key": P, ... }`: an object whose listed keys match.
    Object(Vec<(String, Node)>),
    /// `[P, ...]`: an array where every pattern matches at least one element.
    Array(Vec<Sourced>),
    /// An operator object: every operator must hold.
    Ops(Vec<Op>),
}

/// A sub-pattern kept with its original JSON, to quote it in explanations.
#[derive(Debug, Clone)]
pub(crate) struct Sourced {
    pub(crate) node: Node,
    pub(crate) source: Value,
}

/// A range operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bound {
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Bound {
    /// The comparison symbol, for messages.
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            Bound::Gt => ">",
            Bound::Gte => ">=",
            Bound::Lt => "<",
            Bound::Lte => "<=",
        }
    }
}

/// One operator of an operator object.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// `$eq`: deeply equal (missing counts as null).
    Eq(Value),
    /// `$ne`: not deeply equal (missing counts as null).
    Ne(Value),
    /// `$regex`: a string containing a match.
    Regex(Regex),
    /// `$gt` `$gte` `$lt` `$lte`: a number in range.
    Range(Bound, Number),
    /// `$in`: equal to one of the list (missing counts as null).
    In(Vec<Value>),
    /// `$nin`: equal to none of the list (missing counts as null).
    Nin(Vec<Value>),
    /// `$not`: the inner pattern does not match (missing included).
    Not(Box<Sourced>),
}

/// Parses the top-level pattern, which must be an object since task data
/// always is one.
pub(crate) fn parse_root(pattern: &Value) -> Result<Node, PatternError> {
    if !pattern.is_object() {
        return Err(PatternError::new(
            "",
            format!("the condition must be a JSON object, found {}", describe(pattern)),
        ));
    }
    parse_node(pattern, "", 0)
}

fn parse_node(v: &Value, path: &str, depth: usize) -> Result<Node, PatternError> {
    if depth > MAX_DEPTH {
        return Err(PatternError::new(
            path,
            format!("the pattern nests deeper than {MAX_DEPTH} levels"),
        ));
    }
    match v {
        Value::Null => Ok(Node::AbsentOrNull),
        Value::Bool(_) | Value::Number(_) => Ok(Node::Literal(v.clone())),
        Value::String(s) => parse_string(s, path),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                Ok(Sourced {
                    node: parse_node(item, &format!("{path}[{i}]"), depth + 1)?,
                    source: item.clone(),
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Node::Array),
        Value::Object(map) => parse_object(map, path, depth),
    }
}

fn parse_string(s: &str, path: &str) -> Result<Node, PatternError> {
    if !s.starts_with('$') {
        return Ok(Node::Literal(Value::String(s.to_owned())));
    }
    if s == "$any" {
        return Ok(Node::Present);
    }
    JsonType::from_name(s).map(Node::Type).ok_or_else(|| {
        let quoted = describe(&Value::String(s.to_owned()));
        PatternError::new(
            path,
            format!(
                "unknown type name {quoted} (expected one of {TYPE_NAMES}; \
                 to match the literal string write {{\"$eq\": {quoted}}})"
            ),
        )
    })
}

fn is_operator(key: &str) -> bool {
    OPERATORS.contains(&key)
}

/// Operators of other query languages (MongoDB's) that these conditions do not have. Read as data
/// keys they would make a condition that never holds, so they are refused, saying what to write.
const FOREIGN_OPERATORS: [&str; 11] = [
    "$exists",
    "$or",
    "$and",
    "$nor",
    "$elemMatch",
    "$all",
    "$where",
    "$expr",
    "$size",
    "$mod",
    "$text",
];

/// What a pattern writes instead of the foreign operators.
const INSTEAD: &str = "presence is {\"$ne\": null}, absence null, one of several values {\"$in\": [...]}, \
                       an array holding an element [pattern]; every key of an object must hold";

/// The data key a pattern's key stands for: `$$` opens a key whose name starts with `$` (`$$id`
/// is the data key `$id`), for the keys an operator, or one edit from one, would otherwise take.
fn data_key(key: &str) -> &str {
    match key.strip_prefix('$') {
        Some(rest) if rest.starts_with('$') => rest,
        _ => key,
    }
}

/// The operator a `$`-key that is none was most likely meant as: one edit away (`$gtt`, `$lte `,
/// `$nte`), or the same but for case (`$GT`). Such a key is refused: read as a data key, it would
/// make a condition that never holds.
fn misspelt_operator(key: &str) -> Option<&'static str> {
    if !key.starts_with('$') || key.starts_with("$$") || is_operator(key) {
        return None;
    }
    OPERATORS
        .iter()
        .copied()
        .find(|op| op.eq_ignore_ascii_case(key) || one_edit_apart(op, key))
}

/// Whether `a` becomes `b` by inserting, removing or changing one character, or by swapping two
/// that stand side by side: a typo of it, to suggest the name meant (an operator here; a host
/// suggests a connector's name so).
pub fn one_edit_apart(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let common_start = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let (a, b) = (&a[common_start..], &b[common_start..]);
    match (a.len(), b.len()) {
        (0, 0) => false,
        (x, y) if x == y + 1 => a[1..] == *b,
        (x, y) if y == x + 1 => b[1..] == *a,
        (x, y) if x == y => a[1..] == b[1..] || (x >= 2 && a[0] == b[1] && a[1] == b[0] && a[2..] == b[2..]),
        _ => false,
    }
}

fn parse_object(map: &Map<String, Value>, path: &str, depth: usize) -> Result<Node, PatternError> {
    if let Some((key, meant)) = map.keys().find_map(|k| misspelt_operator(k).map(|op| (k, op))) {
        return Err(PatternError::new(
            path,
            format!(
                "{key:?} is no operator: did you mean {meant}? (the operators: {}; a data key this \
                 close to one is taken for a typo: write the data key {:?})",
                OPERATORS.join(", "),
                format!("${key}")
            ),
        ));
    }
    if let Some(key) = map
        .keys()
        .find(|k| FOREIGN_OPERATORS.iter().any(|op| op.eq_ignore_ascii_case(k)))
    {
        return Err(PatternError::new(
            path,
            format!(
                "{key:?} is no operator of these conditions (the operators: {}; {INSTEAD}); a data \
                 key of that name is written {:?}",
                OPERATORS.join(", "),
                format!("${key}")
            ),
        ));
    }
    let operator_count = map.keys().filter(|k| is_operator(k)).count();
    // `$$id` and `$id`, or `$` and `$$`, would test one data key twice.
    if operator_count == 0 {
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = map.keys().map(|k| data_key(k)).find(|k| !seen.insert(*k)) {
            return Err(PatternError::new(
                path,
                format!("two keys of this object both test the data key {twice:?} ($$ opens a key that starts with $)"),
            ));
        }
    }
    if operator_count == 0 {
        return map
            .iter()
            .map(|(key, sub)| {
                let key = data_key(key);
                let child = if path.is_empty() {
                    key.to_string()
                } else {
                    format!("{path}.{key}")
                };
                Ok((key.to_string(), parse_node(sub, &child, depth + 1)?))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Node::Object);
    }
    if operator_count != map.len() {
        let (ops, others): (Vec<&str>, Vec<&str>) = map.keys().map(String::as_str).partition(|k| is_operator(k));
        return Err(PatternError::new(
            path,
            format!(
                "operators ({}) mixed with keys that are no operators, read as data keys ({}); an \
                 object is either all operators or all data keys",
                ops.join(", "),
                others.join(", ")
            ),
        ));
    }
    if map.len() == 1 && map.get("$ne") == Some(&Value::Null) {
        return Ok(Node::Present);
    }
    map.iter()
        .map(|(op, arg)| parse_op(op, arg, path, depth))
        .collect::<Result<Vec<_>, _>>()
        .map(Node::Ops)
}

fn parse_op(op: &str, arg: &Value, path: &str, depth: usize) -> Result<Op, PatternError> {
    let needs = |what: &str| PatternError::new(path, format!("{op} needs {what}, found {}", describe(arg)));
    match op {
        "$eq" => Ok(Op::Eq(arg.clone())),
        "$ne" => Ok(Op::Ne(arg.clone())),
        "$regex" => {
            let Value::String(re) = arg else {
                return Err(needs("a string"));
            };
            Regex::new(re).map(Op::Regex).map_err(|e| {
                PatternError::new(
                    path,
                    format!(
                        "$regex {} is not a valid regular expression: {}",
                        describe(arg),
                        regex_error_summary(&e)
                    ),
                )
            })
        }
        "$gt" | "$gte" | "$lt" | "$lte" => {
            let Value::Number(n) = arg else {
                return Err(needs("a number"));
            };
            let bound = match op {
                "$gt" => Bound::Gt,
                "$gte" => Bound::Gte,
                "$lt" => Bound::Lt,
                _ => Bound::Lte,
            };
            Ok(Op::Range(bound, n.clone()))
        }
        "$in" | "$nin" => {
            let Value::Array(items) = arg else {
                return Err(needs("an array"));
            };
            if op == "$in" && items.is_empty() {
                return Err(PatternError::new(
                    path,
                    "$in with no values matches nothing".to_string(),
                ));
            }
            Ok(if op == "$in" {
                Op::In(items.clone())
            } else {
                Op::Nin(items.clone())
            })
        }
        "$not" => Ok(Op::Not(Box::new(Sourced {
            node: parse_node(arg, path, depth + 1)?,
            source: arg.clone(),
        }))),
        other => Err(PatternError::new(path, format!("unknown operator {other}"))),
    }
}

/// The regex crate's syntax errors span several lines (pattern, caret,
/// message); keep the one-line message.
fn regex_error_summary(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix("error: "))
        .map(str::to_owned)
        .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(pattern: Value) -> PatternError {
        match parse_root(&pattern) {
            Ok(node) => panic!("expected an error for {pattern}, parsed {node:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn top_level_must_be_an_object() {
        for p in [
            json!(null),
            json!(1),
            json!("x"),
            json!("$string"),
            json!([1]),
            json!(true),
        ] {
            let e = err(p);
            assert_eq!(e.path, "");
            assert!(e.message.contains("must be a JSON object"), "{e}");
        }
        let e = err(json!([]));
        assert_eq!(
            e.to_string(),
            "invalid condition at the top level: the condition must be a JSON object, found []"
        );
    }

    #[test]
    fn a_misspelt_operator_is_refused_naming_the_one_meant() {
        for (typo, meant) in [
            ("$gtt", "$gt"),
            ("$GT", "$gt"),
            ("$lte ", "$lte"),
            ("$nni", "$nin"),
            ("$reegx", "$regex"),
            ("$e", "$eq"),
        ] {
            let e = err(json!({"order": {"total": {typo: 500}}}));
            assert_eq!(e.path, "order.total", "{typo}");
            assert!(
                e.message
                    .starts_with(&format!("{typo:?} is no operator: did you mean {meant}?")),
                "{typo}: {e}"
            );
        }
        // `$`-keys far from every operator are data keys, as ever.
        for key in ["$via", "$foo", "$type", "$key"] {
            assert!(parse_root(&json!({key: "x"})).is_ok(), "{key}");
        }
        let e = err(json!({"$id": "x"}));
        assert!(e.message.contains("write the data key \"$$id\""), "{e}");
    }

    #[test]
    fn a_double_dollar_opens_a_data_key_that_starts_with_one() {
        let condition = crate::Condition::parse(&json!({"$$id": "x", "$$in": {"$gt": 1}, "$$$": true})).expect("valid");
        assert!(condition.matches(&json!({"$id": "x", "$in": 2, "$$": true})));
        assert!(!condition.matches(&json!({"$$id": "x", "$in": 2, "$$": true})));
        let why = condition
            .explain(&json!({"$id": "y", "$in": 2, "$$": true}))
            .expect_err("no match");
        assert_eq!(why.path, "$id");
    }

    #[test]
    fn another_language_s_operator_is_refused_saying_what_to_write() {
        let e = err(json!({"$$foo": 1, "$foo": 2}));
        assert!(e.message.contains("both test the data key \"$foo\""), "{e}");
        for key in ["$exists", "$or", "$elemMatch", "$OR", "$Size"] {
            let e = err(json!({"a": {key: true}}));
            assert_eq!(e.path, "a", "{key}");
            assert!(
                e.message
                    .starts_with(&format!("{key:?} is no operator of these conditions"))
                    && e.message.contains("presence is {\"$ne\": null}")
                    && e.message.contains(&format!("written \"${key}\"")),
                "{key}: {e}"
            );
        }
    }

    #[test]
    fn mixed_operators_and_data_keys_refused() {
        let e = err(json!({"order": {"total": {"$gt": 1, "currency": "EUR"}}}));
        assert_eq!(e.path, "order.total");
        assert!(e.message.contains("$gt"), "{e}");
        assert!(e.message.contains("currency"), "{e}");
        // `$`-data keys count as "other" keys too.
        let e = err(json!({"a": {"$gt": 1, "$via": "x"}}));
        assert_eq!(e.path, "a");
        // At the top level.
        let e = err(json!({"$not": {"a": 1}, "b": 2}));
        assert_eq!(e.path, "");
    }

    #[test]
    fn range_needs_a_number() {
        let e = err(json!({"order": {"total": {"$gt": "abc"}}}));
        assert_eq!(e.path, "order.total");
        assert_eq!(e.message, "$gt needs a number, found \"abc\"");
        assert_eq!(
            e.to_string(),
            "invalid condition at order.total: $gt needs a number, found \"abc\""
        );
        for op in ["$gte", "$lt", "$lte"] {
            let e = err(json!({"n": {op: null}}));
            assert_eq!(e.path, "n");
            assert_eq!(e.message, format!("{op} needs a number, found null"));
        }
    }

    #[test]
    fn regex_needs_a_valid_string() {
        let e = err(json!({"s": {"$regex": 12}}));
        assert_eq!(e.path, "s");
        assert_eq!(e.message, "$regex needs a string, found 12");
        let e = err(json!({"a": {"s": {"$regex": "(unclosed"}}}));
        assert_eq!(e.path, "a.s");
        assert!(
            e.message
                .starts_with("$regex \"(unclosed\" is not a valid regular expression: "),
            "{e}"
        );
        assert!(!e.message.contains('\n'), "{e}");
    }

    #[test]
    fn in_with_no_values_is_refused_as_it_matches_nothing() {
        let e = err(json!({"tier": {"$in": []}}));
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            ("tier", "$in with no values matches nothing")
        );
        assert!(
            parse_root(&json!({"tier": {"$nin": []}})).is_ok(),
            "$nin with none matches anything"
        );
    }

    #[test]
    fn in_and_nin_need_an_array() {
        let e = err(json!({"x": {"$in": "a"}}));
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            ("x", "$in needs an array, found \"a\"")
        );
        let e = err(json!({"x": {"y": {"$nin": {"a": 1}}}}));
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            ("x.y", "$nin needs an array, found {\"a\":1}")
        );
    }

    #[test]
    fn unknown_type_name_refused() {
        let e = err(json!({"order": {"id": "$strnig"}}));
        assert_eq!(e.path, "order.id");
        assert!(e.message.contains("unknown type name \"$strnig\""), "{e}");
        assert!(e.message.contains("$eq"), "{e}");
        let e = err(json!({"x": "$"}));
        assert_eq!(e.path, "x");
        let e = err(json!({"x": "$null"}));
        assert_eq!(e.path, "x");
    }

    #[test]
    fn errors_inside_arrays_and_not_name_the_path() {
        let e = err(json!({"items": [{"price": {"$gt": "x"}}]}));
        assert_eq!(e.path, "items[0].price");
        let e = err(json!({"tags": ["a", "$strnig"]}));
        assert_eq!(e.path, "tags[1]");
        let e = err(json!({"a": {"$not": {"$lt": []}}}));
        assert_eq!(e.path, "a");
        assert_eq!(e.message, "$lt needs a number, found []");
        let e = err(json!({"a": {"$not": {"b": "$nope"}}}));
        assert_eq!(e.path, "a.b");
    }

    #[test]
    fn unknown_dollar_keys_are_data_keys() {
        let node = parse_root(&json!({"$via": "webhook", "$other": {"$x": 1}})).map_err(|e| e.to_string());
        assert!(matches!(node, Ok(Node::Object(ref f)) if f.len() == 2), "{node:?}");
    }

    #[test]
    fn dollar_strings_in_operator_arguments_are_literals() {
        assert!(parse_root(&json!({"a": {"$eq": "$strnig"}})).is_ok());
        assert!(parse_root(&json!({"a": {"$in": ["$x", "$y"]}})).is_ok());
        assert!(parse_root(&json!({"a": {"$ne": "$x"}})).is_ok());
    }

    #[test]
    fn ne_null_is_present() {
        assert!(
            matches!(parse_root(&json!({"a": {"$ne": null}})), Ok(Node::Object(f)) if matches!(f[0].1, Node::Present))
        );
        assert!(matches!(parse_root(&json!({"a": "$any"})), Ok(Node::Object(f)) if matches!(f[0].1, Node::Present)));
    }

    #[test]
    fn too_deep_refused() {
        let mut p = json!(1);
        for _ in 0..(MAX_DEPTH + 2) {
            p = json!({ "a": p });
        }
        let e = err(p);
        assert!(e.message.contains("deeper"), "{e}");
    }
}
