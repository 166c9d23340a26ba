//! Conditional requests on a task (RFC 9110, section 13). Every task answer carries the task's
//! revision as its entity tag (`ETag: "7"`). `GET /v1/tasks/{id}` with an `If-None-Match` that
//! names the task's revision answers `304 Not Modified` without a body, so a client polling a
//! task reads it again only when it changed; with `?wait`, the answer waits until the task has
//! settled at another revision (a long poll). A patch, a retry or a delete with an `If-Match`
//! applies only while the task is at a revision it names, and answers `412 Precondition Failed`
//! otherwise, changing nothing: a client changes only the task it read, and a change repeated
//! after a lost answer is refused instead of applied twice.

use axum::http::header::{IF_MATCH, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderName, HeaderValue};

use super::ApiError;

/// The entity tag of a task at `revision`: the revision, quoted.
pub(crate) fn etag(revision: u64) -> HeaderValue {
    // Digits and quotes are always a valid header value.
    HeaderValue::from_str(&format!("\"{revision}\"")).unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// What an `If-Match` or `If-None-Match` header names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Named {
    /// `*`: any current representation.
    Any,
    /// These entity tags.
    Tags(Vec<EntityTag>),
}

/// One entity tag as a request names it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EntityTag {
    /// `W/"..."`: a weak tag, which strong comparison never matches.
    weak: bool,
    /// What is between the quotes.
    opaque: String,
}

impl EntityTag {
    /// The revision this tag names, if it is one of ours (a quoted decimal number).
    fn revision(&self) -> Option<u64> {
        let digits = self.opaque.as_str();
        // Only the form `etag` writes: digits alone, without a leading zero.
        let canonical = digits.bytes().all(|b| b.is_ascii_digit()) && (digits == "0" || !digits.starts_with('0'));
        canonical.then(|| digits.parse().ok()).flatten()
    }
}

/// The revisions an `If-Match` names: `None` when there is none, or it is `*` (any revision of
/// a task that exists). Its comparison is strong, so weak tags name nothing; a tag this API never
/// gives names nothing either (the list may then be empty, and no revision matches).
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<Vec<u64>>, ApiError> {
    Ok(match named(headers, IF_MATCH)? {
        None | Some(Named::Any) => None,
        Some(Named::Tags(tags)) => Some(
            tags.iter()
                .filter(|tag| !tag.weak)
                .filter_map(EntityTag::revision)
                .collect(),
        ),
    })
}

/// A request's `If-None-Match`, read before the task is: whether the task at a revision is
/// what the client already has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IfNoneMatch(Option<Named>);

impl IfNoneMatch {
    /// The header of `headers`, parsed (400 when it is not a list of entity tags or `*`).
    pub(crate) fn of(headers: &HeaderMap) -> Result<IfNoneMatch, ApiError> {
        named(headers, IF_NONE_MATCH).map(IfNoneMatch)
    }

    /// Whether it names the task at `revision` (weak comparison: `W/"7"` names revision 7;
    /// `*` names any): then a read answers 304.
    pub(crate) fn names(&self, revision: u64) -> bool {
        matches!(self.0, Some(Named::Any)) || self.lists(revision)
    }

    /// Whether one of its entity tags names `revision`: a long poll waits past those. (`*` is
    /// no tag: with it a wait is for the task to settle, as without the header, since waiting
    /// for a revision `*` does not name would last the whole wait.)
    pub(crate) fn lists(&self, revision: u64) -> bool {
        match &self.0 {
            Some(Named::Tags(tags)) => tags.iter().any(|tag| tag.revision() == Some(revision)),
            None | Some(Named::Any) => false,
        }
    }
}

/// Every `name` header of `headers`, joined as one list (`None`: there is none).
fn named(headers: &HeaderMap, name: HeaderName) -> Result<Option<Named>, ApiError> {
    let mut all: Option<Named> = None;
    for value in headers.get_all(&name) {
        let text = value
            .to_str()
            .map_err(|_| ApiError::BadRequest(format!("the {name} header is not visible ASCII")))?;
        let this = parse(text).map_err(|problem| ApiError::BadRequest(format!("the {name} header {problem}")))?;
        all = Some(match (all, this) {
            (None, this) => this,
            (Some(Named::Any), _) | (_, Named::Any) => Named::Any,
            (Some(Named::Tags(mut tags)), Named::Tags(more)) => {
                tags.extend(more);
                Named::Tags(tags)
            }
        });
    }
    Ok(all)
}

/// One header's value: `*`, or entity tags (`"x"`, `W/"x"`) separated by commas.
fn parse(text: &str) -> Result<Named, String> {
    if text.trim() == "*" {
        return Ok(Named::Any);
    }
    let mut tags = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            break;
        }
        let (weak, quoted) = match rest.strip_prefix("W/") {
            Some(quoted) => (true, quoted),
            None => (false, rest),
        };
        let Some(inner) = quoted.strip_prefix('"') else {
            return Err(format!(
                "must be * or entity tags like \"7\" separated by commas; it has {rest:?}"
            ));
        };
        let Some(end) = inner.find('"') else {
            return Err(format!("has an entity tag without its closing quote: {rest:?}"));
        };
        tags.push(EntityTag {
            weak,
            opaque: inner[..end].to_string(),
        });
        rest = inner[end + 1..].trim_start_matches([' ', '\t']);
        if !rest.is_empty() && !rest.starts_with(',') {
            return Err(format!("must separate its entity tags with commas; it has {rest:?}"));
        }
    }
    if tags.is_empty() {
        return Err("is empty: it must be * or entity tags like \"7\"".into());
    }
    Ok(Named::Tags(tags))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: HeaderName, values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(&name, HeaderValue::from_str(value).expect("value"));
        }
        map
    }

    #[test]
    fn an_etag_is_the_revision_quoted() {
        assert_eq!(etag(7), "\"7\"");
        assert_eq!(etag(0), "\"0\"");
    }

    #[test]
    fn if_match_names_strong_revisions_of_all_its_headers() {
        assert_eq!(if_match(&HeaderMap::new()).expect("parsed"), None);
        assert_eq!(if_match(&headers(IF_MATCH, &["*"])).expect("parsed"), None);
        assert_eq!(
            if_match(&headers(IF_MATCH, &["\"3\", W/\"4\",\"5\"", " \"6\" "])).expect("parsed"),
            Some(vec![3, 5, 6])
        );
        // Tags this API never gives name no revision: nothing matches.
        assert_eq!(
            if_match(&headers(IF_MATCH, &["\"abc\", \"\", \"007\", \"1,2\""])).expect("parsed"),
            Some(vec![])
        );
        assert_eq!(
            if_match(&headers(IF_MATCH, &["W/\"3\""])).expect("parsed"),
            Some(vec![])
        );
    }

    #[test]
    fn if_none_match_compares_weakly_and_star_names_any_revision() {
        let none = IfNoneMatch::of(&HeaderMap::new()).expect("parsed");
        assert!(!none.names(1));
        let tags = IfNoneMatch::of(&headers(IF_NONE_MATCH, &["W/\"7\", \"9\""])).expect("parsed");
        assert!(tags.names(7) && tags.names(9) && !tags.names(8));
        assert!(tags.lists(7) && !tags.lists(8));
        let any = IfNoneMatch::of(&headers(IF_NONE_MATCH, &["*"])).expect("parsed");
        assert!(any.names(42) && !any.lists(42));
    }

    #[test]
    fn a_header_that_is_not_entity_tags_is_refused_naming_the_problem() {
        for (value, problem) in [
            ("7", "must be * or entity tags like \"7\""),
            ("\"7", "without its closing quote"),
            ("\"7\" \"8\"", "must separate its entity tags with commas"),
            (" , ", "is empty"),
            ("\"7\", *", "must be * or entity tags"),
        ] {
            match if_match(&headers(IF_MATCH, &[value])) {
                Err(ApiError::BadRequest(message)) => {
                    assert!(message.starts_with("the if-match header "), "{message}");
                    assert!(message.contains(problem), "{value:?}: {message}");
                }
                other => panic!("{value:?} is refused: {other:?}"),
            }
        }
    }
}
