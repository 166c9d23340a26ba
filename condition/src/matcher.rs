//! Matching data against a parsed pattern, two ways: [`Node::matches`] is the
//! allocation-free fast path the host runs on every data change, and
//! [`Node::explain`] follows the same rules but reports the first failing
//! path and why. A missing field is `None` throughout.

use std::cmp::Ordering;

use serde_json::Value;

use crate::error::Mismatch;
use crate::pattern::{Bound, Node, Op};
use crate::value::{NULL, cmp_numbers, describe, describe_found, field, json_eq};

impl Node {
    /// Whether `v` (`None` when the field is missing) matches this pattern.
    pub(crate) fn matches(&self, v: Option<&Value>) -> bool {
        match self {
            Node::Type(t) => v.is_some_and(|v| t.holds(v)),
            Node::Present => v.is_some_and(|v| !v.is_null()),
            Node::AbsentOrNull => v.is_none_or(Value::is_null),
            Node::Literal(lit) => v.is_some_and(|v| json_eq(v, lit)),
            Node::Object(fields) => match v {
                // Guards first: in a task's life most conditions fail, and mostly on a field that
                // must be null or equal a literal (the `paymentProcessed: null` of a step that has
                // run, the `fraudApproved: true` of one that waits). Checking those before types,
                // operators and nested objects settles most failures in one or two lookups.
                Some(Value::Object(map)) => {
                    fields
                        .iter()
                        .filter(|(_, p)| p.is_guard())
                        .all(|(k, p)| p.matches(field(map, k)))
                        && fields
                            .iter()
                            .filter(|(_, p)| !p.is_guard())
                            .all(|(k, p)| p.matches(field(map, k)))
                }
                _ => false,
            },
            Node::Array(items) => match v {
                Some(Value::Array(elems)) => items
                    .iter()
                    .all(|item| elems.iter().any(|e| item.node.matches(Some(e)))),
                _ => false,
            },
            Node::Ops(ops) => ops.iter().all(|op| op.holds(v)),
        }
    }

    /// A cheap test that often fails: absent-or-null, or equal to a literal.
    fn is_guard(&self) -> bool {
        matches!(self, Node::AbsentOrNull | Node::Literal(_))
    }

    /// Like [`Node::matches`], but on failure says where (the keys in `path`
    /// plus any below) and why.
    pub(crate) fn explain<'a>(&'a self, v: Option<&Value>, path: &mut Vec<&'a str>) -> Result<(), Mismatch> {
        match self {
            Node::Type(t) => match v {
                None => Err(missing(path)),
                Some(v) if t.holds(v) => Ok(()),
                Some(v) => Err(expected(path, t.described(), v)),
            },
            Node::Present => match v {
                None => Err(missing(path)),
                Some(Value::Null) => Err(expected(path, "a value other than null", &NULL)),
                Some(_) => Ok(()),
            },
            Node::AbsentOrNull => match v {
                Some(v) if !v.is_null() => Err(expected(path, "absent or null", v)),
                _ => Ok(()),
            },
            Node::Literal(lit) => match v {
                None => Err(missing(path)),
                Some(v) if json_eq(v, lit) => Ok(()),
                Some(v) => Err(expected(path, &describe(lit), v)),
            },
            Node::Object(fields) => match v {
                None => Err(missing(path)),
                Some(Value::Object(map)) => {
                    for (key, pattern) in fields {
                        path.push(key);
                        pattern.explain(field(map, key), path)?;
                        path.pop();
                    }
                    Ok(())
                }
                Some(v) => Err(expected(path, "an object", v)),
            },
            Node::Array(items) => match v {
                None => Err(missing(path)),
                Some(whole @ Value::Array(elems)) => {
                    for item in items {
                        if !elems.iter().any(|e| item.node.matches(Some(e))) {
                            let want = format!("an array with an element matching {}", describe(&item.source));
                            return Err(expected(path, &want, whole));
                        }
                    }
                    Ok(())
                }
                Some(v) => Err(expected(path, "an array", v)),
            },
            Node::Ops(ops) => {
                for op in ops {
                    if !op.holds(v) {
                        return Err(op.mismatch(v, path));
                    }
                }
                Ok(())
            }
        }
    }
}

impl Op {
    /// Whether this operator holds for `v` (`None` when missing).
    fn holds(&self, v: Option<&Value>) -> bool {
        match self {
            Op::Eq(x) => json_eq(v.unwrap_or(&NULL), x),
            Op::Ne(x) => !json_eq(v.unwrap_or(&NULL), x),
            Op::Regex(re) => matches!(v, Some(Value::String(s)) if re.is_match(s)),
            Op::Range(bound, limit) => match v {
                Some(Value::Number(n)) => {
                    let order = cmp_numbers(n, limit);
                    match bound {
                        Bound::Gt => order == Ordering::Greater,
                        Bound::Gte => order != Ordering::Less,
                        Bound::Lt => order == Ordering::Less,
                        Bound::Lte => order != Ordering::Greater,
                    }
                }
                _ => false,
            },
            Op::In(list) => {
                let v = v.unwrap_or(&NULL);
                list.iter().any(|x| json_eq(v, x))
            }
            Op::Nin(list) => {
                let v = v.unwrap_or(&NULL);
                !list.iter().any(|x| json_eq(v, x))
            }
            Op::Not(inner) => !inner.node.matches(v),
        }
    }

    /// Why this operator does not hold for `v`; only called when it does not.
    fn mismatch(&self, v: Option<&Value>, path: &[&str]) -> Mismatch {
        let found = describe_found(v);
        let reason = match self {
            Op::Eq(x) if v.is_some() => format!("expected exactly {}, found {found}", describe(x)),
            Op::Ne(x) if v.is_some() => {
                format!("expected a value other than {}, found {found}", describe(x))
            }
            Op::Regex(re) if v.is_some() => {
                format!("expected a string matching /{}/, found {found}", re.as_str())
            }
            Op::Range(bound, limit) if v.is_some() => {
                format!("expected a number {} {limit}, found {found}", bound.symbol())
            }
            Op::In(list) if v.is_some() => {
                format!(
                    "expected one of {}, found {found}",
                    describe(&Value::Array(list.clone()))
                )
            }
            Op::Nin(list) => format!(
                "expected none of {}, found {}",
                describe(&Value::Array(list.clone())),
                if v.is_some() {
                    found
                } else {
                    "missing (which counts as null)".to_owned()
                }
            ),
            Op::Not(inner) => format!(
                "expected anything not matching {}, found {found}",
                describe(&inner.source)
            ),
            _ => "missing".to_owned(),
        };
        Mismatch {
            path: path.join("."),
            reason,
        }
    }
}

fn missing(path: &[&str]) -> Mismatch {
    Mismatch {
        path: path.join("."),
        reason: "missing".to_owned(),
    }
}

fn expected(path: &[&str], what: &str, found: &Value) -> Mismatch {
    Mismatch {
        path: path.join("."),
        reason: format!("expected {what}, found {}", describe(found)),
    }
}

#[cfg(test)]
mod tests {
    use crate::Condition;
    use serde_json::{Value, json};

    fn cond(p: Value) -> Condition {
        match Condition::parse(&p) {
            Ok(c) => c,
            Err(e) => panic!("pattern {p} refused: {e}"),
        }
    }

    /// Checks that `{"f": field_pattern}` matches each of `yes` (as the value
    /// of `f`; `None` = missing) and none of `no`, and that `explain` agrees.
    fn check(field_pattern: Value, yes: &[Option<Value>], no: &[Option<Value>]) {
        let c = cond(json!({ "f": field_pattern }));
        let data = |v: &Option<Value>| match v {
            Some(v) => json!({ "f": v }),
            None => json!({ "g": 1 }),
        };
        for v in yes {
            let d = data(v);
            assert!(c.matches(&d), "{} should match {d}", c.pattern());
            assert_eq!(c.explain(&d), Ok(()), "{} should match {d}", c.pattern());
        }
        for v in no {
            let d = data(v);
            assert!(!c.matches(&d), "{} should not match {d}", c.pattern());
            match c.explain(&d) {
                Ok(()) => panic!("explain disagrees for {} on {d}", c.pattern()),
                Err(m) => assert!(m.path.starts_with('f'), "{m}"),
            }
        }
    }

    fn s(v: Value) -> Option<Value> {
        Some(v)
    }

    #[test]
    fn type_names() {
        check(
            json!("$string"),
            &[s(json!("")), s(json!("x"))],
            &[None, s(json!(null)), s(json!(1)), s(json!(["x"]))],
        );
        check(
            json!("$number"),
            &[s(json!(0)), s(json!(-1.5)), s(json!(1e10))],
            &[None, s(json!(null)), s(json!("1"))],
        );
        check(
            json!("$boolean"),
            &[s(json!(true)), s(json!(false))],
            &[None, s(json!(null)), s(json!(0)), s(json!("true"))],
        );
        check(
            json!("$array"),
            &[s(json!([])), s(json!([1, "a"]))],
            &[None, s(json!(null)), s(json!({})), s(json!("[]"))],
        );
        check(
            json!("$object"),
            &[s(json!({})), s(json!({"a": 1}))],
            &[None, s(json!(null)), s(json!([])), s(json!("{}"))],
        );
    }

    #[test]
    fn null_means_absent_or_null() {
        check(
            json!(null),
            &[None, s(json!(null))],
            &[s(json!(false)), s(json!(0)), s(json!("")), s(json!({})), s(json!([]))],
        );
    }

    #[test]
    fn present_and_not_null() {
        for p in [json!({"$ne": null}), json!("$any")] {
            check(
                p,
                &[s(json!(false)), s(json!(0)), s(json!("")), s(json!({})), s(json!([]))],
                &[None, s(json!(null))],
            );
        }
    }

    #[test]
    fn literals() {
        check(
            json!("card"),
            &[s(json!("card"))],
            &[None, s(json!(null)), s(json!("Card")), s(json!("card "))],
        );
        check(
            json!(1),
            &[s(json!(1)), s(json!(1.0))],
            &[None, s(json!("1")), s(json!(1.5)), s(json!(true))],
        );
        check(json!(1.0), &[s(json!(1)), s(json!(1.0))], &[s(json!(2))]);
        check(json!(2.5), &[s(json!(2.5))], &[s(json!(2)), s(json!(3))]);
        check(
            json!(true),
            &[s(json!(true))],
            &[None, s(json!(false)), s(json!(1)), s(json!("true"))],
        );
        check(json!(false), &[s(json!(false))], &[None, s(json!(null)), s(json!(0))]);
        check(json!(""), &[s(json!(""))], &[None, s(json!(null))]);
    }

    #[test]
    fn eq_escapes_dollar_strings_and_compares_deeply() {
        check(
            json!({"$eq": "$string"}),
            &[s(json!("$string"))],
            &[None, s(json!("x"))],
        );
        check(
            json!({"$eq": {"a": [1, 2]}}),
            &[s(json!({"a": [1.0, 2]}))],
            &[s(json!({"a": [2, 1]})), s(json!({"a": [1, 2], "b": 0}))],
        );
        check(
            json!({"$eq": [1, 2]}),
            &[s(json!([1, 2]))],
            &[s(json!([1, 2, 3])), s(json!([2, 1]))],
        );
        check(json!({"$eq": 1}), &[s(json!(1.0))], &[s(json!(1.1)), None]);
        // A missing field counts as null, as for $ne / $in.
        check(json!({"$eq": null}), &[None, s(json!(null))], &[s(json!(0))]);
    }

    #[test]
    fn object_patterns() {
        let c = cond(json!({"a": {"b": 1}}));
        assert!(c.matches(&json!({"a": {"b": 1, "c": 2}, "z": 0})));
        assert!(!c.matches(&json!({"a": {"b": 2}})));
        assert!(!c.matches(&json!({"a": {}})));
        assert!(!c.matches(&json!({"a": 1})));
        assert!(!c.matches(&json!({})));
        // A null pattern below a present object matches an absent key ...
        let c = cond(json!({"a": {"b": null}}));
        assert!(c.matches(&json!({"a": {}})));
        assert!(c.matches(&json!({"a": {"b": null}})));
        // ... but a missing intermediate object fails.
        assert!(!c.matches(&json!({})));
        assert!(!c.matches(&json!({"a": null})));
        let c = cond(json!({"a": {"b": {"c": "$string"}}}));
        assert!(!c.matches(&json!({"a": {}})));
        assert!(!c.matches(&json!({"a": {"b": []}})));
        assert!(c.matches(&json!({"a": {"b": {"c": "x"}}})));
    }

    #[test]
    fn empty_object_pattern_matches_any_object() {
        let c = cond(json!({}));
        assert!(c.matches(&json!({})));
        assert!(c.matches(&json!({"a": 1})));
        assert!(!c.matches(&json!([])));
        assert!(!c.matches(&json!(1)));
        check(
            json!({}),
            &[s(json!({})), s(json!({"x": null}))],
            &[None, s(json!(null)), s(json!([]))],
        );
    }

    #[test]
    fn dollar_via_is_a_data_key() {
        let c = cond(json!({"$via": "webhook", "event": "$string"}));
        assert!(c.matches(&json!({"$via": "webhook", "event": "push"})));
        assert!(!c.matches(&json!({"$via": "manual", "event": "push"})));
        assert!(!c.matches(&json!({"event": "push"})));
        let c = cond(json!({"$via": null}));
        assert!(c.matches(&json!({"a": 1})));
        assert!(!c.matches(&json!({"$via": "webhook"})));
    }

    #[test]
    fn arrays_of_literals() {
        check(
            json!(["a", "b"]),
            &[s(json!(["a", "b"])), s(json!(["b", "x", "a"]))],
            &[
                None,
                s(json!(["a"])),
                s(json!([])),
                s(json!("a")),
                s(json!({"0": "a", "1": "b"})),
            ],
        );
        check(json!([1, 2]), &[s(json!([2.0, 1.0]))], &[s(json!([1, 3]))]);
        check(
            json!([]),
            &[s(json!([])), s(json!([1]))],
            &[None, s(json!(null)), s(json!({}))],
        );
        // Repeats need no distinct elements: every pattern needs one match.
        check(json!(["a", "a"]), &[s(json!(["a"]))], &[s(json!(["b"]))]);
        check(json!([null]), &[s(json!([1, null]))], &[s(json!([1]))]);
    }

    #[test]
    fn arrays_of_patterns() {
        let items = json!([{"sku": "$string", "qty": {"$gt": 0}}]);
        check(
            items.clone(),
            &[
                s(json!([{"sku": "A", "qty": 1}])),
                s(json!([{"sku": 1}, {"sku": "B", "qty": 2, "x": 0}])),
            ],
            &[
                None,
                s(json!([])),
                s(json!([{"sku": "A", "qty": 0}])),
                s(json!([{"sku": "A"}, {"qty": 3}])),
            ],
        );
        check(
            json!(["$number"]),
            &[s(json!(["a", 2]))],
            &[s(json!(["a"])), s(json!([]))],
        );
        check(
            json!(["$string", {"$gt": 10}]),
            &[s(json!(["a", 11])), s(json!([11, "a"]))],
            &[s(json!(["a", 10])), s(json!([11]))],
        );
        check(json!([["x"]]), &[s(json!([["y", "x"]]))], &[s(json!(["x"]))]);
    }

    #[test]
    fn regex() {
        check(
            json!({"$regex": "^ord-[0-9]+$"}),
            &[s(json!("ord-12"))],
            &[None, s(json!("ord-")), s(json!(12)), s(json!(null))],
        );
        // "containing a match": unanchored.
        check(json!({"$regex": "b+"}), &[s(json!("abbc"))], &[s(json!("ac"))]);
        check(json!({"$regex": ""}), &[s(json!(""))], &[s(json!(1)), None]);
    }

    #[test]
    fn ranges() {
        check(
            json!({"$gt": 1}),
            &[s(json!(1.5)), s(json!(2))],
            &[
                None,
                s(json!(1)),
                s(json!(1.0)),
                s(json!(0)),
                s(json!("2")),
                s(json!(null)),
            ],
        );
        check(
            json!({"$gte": 1}),
            &[s(json!(1)), s(json!(1.0)), s(json!(7))],
            &[None, s(json!(0.999)), s(json!(true))],
        );
        check(
            json!({"$lt": 1}),
            &[s(json!(0.5)), s(json!(-3))],
            &[None, s(json!(1)), s(json!(1.0)), s(json!("0"))],
        );
        check(
            json!({"$lte": 1.0}),
            &[s(json!(1)), s(json!(-1))],
            &[None, s(json!(1.01)), s(json!([0]))],
        );
        check(
            json!({"$gt": 1, "$lt": 5}),
            &[s(json!(2)), s(json!(4.99))],
            &[None, s(json!(1)), s(json!(5)), s(json!(0)), s(json!(6))],
        );
        check(
            json!({"$gte": 1, "$lte": 1}),
            &[s(json!(1)), s(json!(1.0))],
            &[s(json!(2))],
        );
        check(
            json!({"$gt": 5, "$lt": 1}),
            &[],
            &[s(json!(3)), s(json!(0)), s(json!(6))],
        );
        check(
            json!({"$gt": 9_007_199_254_740_992_u64}),
            &[s(json!(9_007_199_254_740_993_u64))],
            &[s(json!(9_007_199_254_740_992.0))],
        );
    }

    #[test]
    fn in_and_nin() {
        check(
            json!({"$in": ["a", 1, null]}),
            &[s(json!("a")), s(json!(1.0)), s(json!(null)), None],
            &[s(json!("b")), s(json!(2))],
        );
        check(json!({"$in": ["a"]}), &[s(json!("a"))], &[None, s(json!(null))]);
        check(
            json!({"$in": [[1, 2], {"a": 1}]}),
            &[s(json!([1, 2])), s(json!({"a": 1.0}))],
            &[s(json!([2, 1]))],
        );
        check(json!({"$in": ["$string"]}), &[s(json!("$string"))], &[s(json!("x"))]);
        check(
            json!({"$nin": ["a", 1]}),
            &[None, s(json!(null)), s(json!("b")), s(json!(2))],
            &[s(json!("a")), s(json!(1.0))],
        );
        check(json!({"$nin": [null]}), &[s(json!(0))], &[None, s(json!(null))]);
        check(json!({"$nin": []}), &[None, s(json!(1))], &[]);
    }

    #[test]
    fn not() {
        check(
            json!({"$not": "$string"}),
            &[None, s(json!(null)), s(json!(1))],
            &[s(json!("x"))],
        );
        check(json!({"$not": null}), &[s(json!(0))], &[None, s(json!(null))]);
        check(
            json!({"$not": {"$gt": 3}}),
            &[None, s(json!(3)), s(json!("x"))],
            &[s(json!(4))],
        );
        check(
            json!({"$not": {"a": 1}}),
            &[None, s(json!({"a": 2})), s(json!(5))],
            &[s(json!({"a": 1, "b": 2}))],
        );
        check(json!({"$not": {"$not": 1}}), &[s(json!(1))], &[None, s(json!(2))]);
        check(json!({"$not": ["a"]}), &[None, s(json!(["b"]))], &[s(json!(["a"]))]);
    }

    #[test]
    fn ne_general() {
        check(
            json!({"$ne": "a"}),
            &[None, s(json!(null)), s(json!("b")), s(json!(1))],
            &[s(json!("a"))],
        );
        check(json!({"$ne": 1}), &[s(json!(1.5))], &[s(json!(1.0))]);
        check(
            json!({"$ne": {"a": [1]}}),
            &[s(json!({"a": [2]}))],
            &[s(json!({"a": [1.0]}))],
        );
    }

    #[test]
    fn mixed_operators_all_apply() {
        check(
            json!({"$regex": "^a", "$nin": ["abc"]}),
            &[s(json!("ab"))],
            &[s(json!("abc")), s(json!("b")), None],
        );
        check(
            json!({"$ne": null, "$not": {"$in": [0]}}),
            &[s(json!(1))],
            &[None, s(json!(null)), s(json!(0.0))],
        );
    }

    #[test]
    fn top_level_operator_object() {
        let c = cond(json!({"$not": {"blocked": true}}));
        assert!(c.matches(&json!({"blocked": false})));
        assert!(c.matches(&json!({})));
        assert!(!c.matches(&json!({"blocked": true})));
    }

    fn explain_err(p: Value, d: Value) -> (String, String) {
        match cond(p.clone()).explain(&d) {
            Ok(()) => panic!("{p} unexpectedly matched {d}"),
            Err(m) => (m.path, m.reason),
        }
    }

    #[test]
    fn explain_messages() {
        let order =
            json!({"order": {"payment": {"method": "$string"}, "fraudChecked": null, "customer": {"id": "$string"}}});
        let (path, reason) = explain_err(order.clone(), json!({"order": {"payment": {"method": 12}}}));
        assert_eq!(
            (path.as_str(), reason.as_str()),
            ("order.payment.method", "expected a string, found 12")
        );
        let m = cond(order.clone()).explain(&json!({"order": {"payment": {"method": 12}}}));
        assert_eq!(
            m.map_err(|m| m.to_string()),
            Err("order.payment.method: expected a string, found 12".to_owned())
        );
        let (path, reason) = explain_err(
            order.clone(),
            json!({"order": {"payment": {"method": "card"}, "fraudChecked": true}}),
        );
        assert_eq!(
            (path.as_str(), reason.as_str()),
            ("order.fraudChecked", "expected absent or null, found true")
        );
        let (path, reason) = explain_err(order.clone(), json!({"order": {"payment": {"method": "card"}}}));
        assert_eq!((path.as_str(), reason.as_str()), ("order.customer", "missing"));
        let (path, reason) = explain_err(order, json!({}));
        assert_eq!((path.as_str(), reason.as_str()), ("order", "missing"));

        let cases = [
            (
                json!({"a": {"b": 1}}),
                json!({"a": 3}),
                "a",
                "expected an object, found 3",
            ),
            (json!({"a": "x"}), json!({"a": "y"}), "a", "expected \"x\", found \"y\""),
            (json!({"a": 1}), json!({"a": 2}), "a", "expected 1, found 2"),
            (
                json!({"a": "$any"}),
                json!({"a": null}),
                "a",
                "expected a value other than null, found null",
            ),
            (json!({"a": "$any"}), json!({}), "a", "missing"),
            (
                json!({"a": {"$eq": "$x"}}),
                json!({"a": "y"}),
                "a",
                "expected exactly \"$x\", found \"y\"",
            ),
            (json!({"a": {"$eq": "$x"}}), json!({}), "a", "missing"),
            (
                json!({"a": {"$eq": null}}),
                json!({"a": 0}),
                "a",
                "expected exactly null, found 0",
            ),
            (
                json!({"a": {"$ne": 3}}),
                json!({"a": 3.0}),
                "a",
                "expected a value other than 3, found 3.0",
            ),
            (
                json!({"a": {"$regex": "^x"}}),
                json!({"a": "yx"}),
                "a",
                "expected a string matching /^x/, found \"yx\"",
            ),
            (json!({"a": {"$regex": "^x"}}), json!({}), "a", "missing"),
            (
                json!({"a": {"$gt": 1, "$lt": 5}}),
                json!({"a": 5}),
                "a",
                "expected a number < 5, found 5",
            ),
            (
                json!({"a": {"$gte": 1.5}}),
                json!({"a": "2"}),
                "a",
                "expected a number >= 1.5, found \"2\"",
            ),
            (json!({"a": {"$lte": 0}}), json!({}), "a", "missing"),
            (
                json!({"a": {"$in": ["x", "y"]}}),
                json!({"a": "z"}),
                "a",
                "expected one of [\"x\",\"y\"], found \"z\"",
            ),
            (json!({"a": {"$in": ["x"]}}), json!({}), "a", "missing"),
            (
                json!({"a": {"$nin": ["x"]}}),
                json!({"a": "x"}),
                "a",
                "expected none of [\"x\"], found \"x\"",
            ),
            (
                json!({"a": {"$nin": [null]}}),
                json!({}),
                "a",
                "expected none of [null], found missing (which counts as null)",
            ),
            (
                json!({"a": {"$not": "$string"}}),
                json!({"a": "s"}),
                "a",
                "expected anything not matching \"$string\", found \"s\"",
            ),
            (
                json!({"a": {"$not": null}}),
                json!({}),
                "a",
                "expected anything not matching null, found missing",
            ),
            (
                json!({"a": ["x", "y"]}),
                json!({"a": ["x"]}),
                "a",
                "expected an array with an element matching \"y\", found [\"x\"]",
            ),
            (
                json!({"a": [{"b": 1}]}),
                json!({"a": [{"b": 2}]}),
                "a",
                "expected an array with an element matching {\"b\":1}, found [{\"b\":2}]",
            ),
            (json!({"a": []}), json!({"a": {}}), "a", "expected an array, found {}"),
            (json!({"a": "$array"}), json!({}), "a", "missing"),
            (
                json!({"$not": {"x": 1}}),
                json!({"x": 1}),
                "",
                "expected anything not matching {\"x\":1}, found {\"x\":1}",
            ),
        ];
        for (p, d, path, reason) in cases {
            let (got_path, got_reason) = explain_err(p.clone(), d.clone());
            assert_eq!(
                (got_path.as_str(), got_reason.as_str()),
                (path, reason),
                "pattern {p} data {d}"
            );
        }
    }

    #[test]
    fn explain_reports_the_first_failure_in_pattern_order() {
        let c = cond(json!({"a": "$string", "b": "$string"}));
        let m = c.explain(&json!({"a": 1, "b": 2})).map_err(|m| m.path);
        assert_eq!(m, Err("a".to_owned()));
    }

    #[test]
    fn data_that_is_not_an_object() {
        let c = cond(json!({"a": 1}));
        assert!(!c.matches(&json!([1])));
        assert_eq!(
            c.explain(&json!("x")).map_err(|m| m.to_string()),
            Err("top level: expected an object, found \"x\"".to_owned())
        );
    }

    // ---- randomised properties (a small deterministic generator; no extra dependency) ----

    /// xorshift64*: enough randomness for property checks, reproducible.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len() as u64) as usize]
        }
    }

    const KEYS: [&str; 3] = ["a", "b", "$via"];

    fn random_value(rng: &mut Rng, depth: u32) -> Value {
        let kinds = if depth == 0 { 5 } else { 7 };
        match rng.below(kinds) {
            0 => Value::Null,
            1 => json!(rng.below(2) == 0),
            2 => json!(rng.below(5) as i64 - 2),
            3 => json!((rng.below(5) as f64) / 2.0 - 1.0),
            4 => json!(*rng.pick(&["x", "y", "", "$string"])),
            5 => Value::Array((0..rng.below(3)).map(|_| random_value(rng, depth - 1)).collect()),
            _ => random_object(rng, depth - 1),
        }
    }

    fn random_object(rng: &mut Rng, depth: u32) -> Value {
        let mut map = serde_json::Map::new();
        for key in KEYS {
            if rng.below(3) != 0 {
                map.insert(key.to_owned(), random_value(rng, depth));
            }
        }
        Value::Object(map)
    }

    fn random_literal(rng: &mut Rng) -> Value {
        match rng.below(4) {
            0 => json!(rng.below(5) as i64 - 2),
            1 => json!((rng.below(5) as f64) / 2.0 - 1.0),
            2 => json!(*rng.pick(&["x", "y", ""])),
            _ => json!(rng.below(2) == 0),
        }
    }

    fn random_pattern(rng: &mut Rng, depth: u32) -> Value {
        let kinds = if depth == 0 { 12 } else { 16 };
        match rng.below(kinds) {
            0 => json!(*rng.pick(&["$string", "$number", "$boolean", "$array", "$object", "$any"])),
            1 => Value::Null,
            2 | 3 => random_literal(rng),
            4 => json!({"$eq": random_value(rng, 1)}),
            5 => json!({"$ne": random_value(rng, 1)}),
            6 => json!({"$regex": *rng.pick(&["^x", "y", "^$"])}),
            7 => json!({"$gt": random_literal_number(rng), "$lte": random_literal_number(rng)}),
            8 => json!({"$in": [random_value(rng, 0), random_value(rng, 0)]}),
            9 => json!({"$nin": [random_value(rng, 0), Value::Null]}),
            10 => json!({"$lt": random_literal_number(rng)}),
            11 => json!({"$gte": random_literal_number(rng)}),
            12 => json!({"$not": random_pattern(rng, depth - 1)}),
            13 => Value::Array((0..rng.below(3)).map(|_| random_pattern(rng, depth - 1)).collect()),
            _ => random_object_pattern(rng, depth - 1),
        }
    }

    fn random_literal_number(rng: &mut Rng) -> Value {
        json!((rng.below(7) as f64) / 2.0 - 1.5)
    }

    fn random_object_pattern(rng: &mut Rng, depth: u32) -> Value {
        let mut map = serde_json::Map::new();
        for key in KEYS {
            if rng.below(2) == 0 {
                map.insert(key.to_owned(), random_pattern(rng, depth));
            }
        }
        Value::Object(map)
    }

    #[test]
    fn property_not_is_negation_and_explain_agrees() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut matched = 0;
        for _ in 0..3000 {
            let p = random_object_pattern(&mut rng, 3);
            let data = random_object(&mut rng, 3);
            let c = cond(p.clone());
            let m = c.matches(&data);
            matched += usize::from(m);
            assert_eq!(m, c.explain(&data).is_ok(), "explain disagrees: {p} on {data}");
            // $not at the top level and under a key.
            let top = cond(json!({"$not": p.clone()}));
            assert_eq!(top.matches(&data), !m, "top-level $not of {p} on {data}");
            let wrapped_data = json!({"k": data});
            let inner = cond(json!({"k": {"$not": p.clone()}}));
            assert_eq!(inner.matches(&wrapped_data), !m, "$not of {p} on {data}");
            assert_eq!(inner.explain(&wrapped_data).is_ok(), !m);
            // and a missing field: $not P matches iff P does not match missing.
            let missing = cond(json!({"k": {"$not": p.clone()}}));
            let plain = cond(json!({"k": p.clone()}));
            assert_eq!(missing.matches(&json!({})), !plain.matches(&json!({})));
        }
        // The generator must exercise both outcomes.
        assert!(matched > 100 && matched < 2900, "matched {matched} of 3000");
    }

    #[test]
    fn property_numbers_match_whatever_their_form() {
        let mut rng = Rng(42);
        for _ in 0..500 {
            let p = random_object_pattern(&mut rng, 2);
            let data = random_object(&mut rng, 2);
            let c = cond(p);
            // Rewriting every integral number as a float changes nothing.
            let floated = float_numbers(&data);
            assert_eq!(c.matches(&data), c.matches(&floated), "{data} vs {floated}");
        }
    }

    fn float_numbers(v: &Value) -> Value {
        match v {
            Value::Number(n) => n.as_f64().map_or_else(|| v.clone(), |f| json!(f)),
            Value::Array(a) => Value::Array(a.iter().map(float_numbers).collect()),
            Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), float_numbers(v))).collect()),
            other => other.clone(),
        }
    }
}
