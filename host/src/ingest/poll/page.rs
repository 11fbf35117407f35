//! Reading one page an API answered: its records, the link to the next
//! page, and the greatest value of the cursor field. Everything here reads
//! what a remote system wrote, so every function takes any input and says
//! what is wrong with it; none panics.

use std::cmp::Ordering;

use reqwest::Url;
use serde_json::Value;

/// The records of `page` at `pointer` (`""`: the page is the array),
/// taken out of it.
pub fn records(page: &mut Value, pointer: &str) -> Result<Vec<Value>, String> {
    let at = page.pointer_mut(pointer).ok_or_else(|| {
        format!("the page has nothing at {pointer:?} (records): is the pointer right?")
    })?;
    match at {
        Value::Array(records) => Ok(std::mem::take(records)),
        // An API answers `null` for "no records" as often as `[]`.
        Value::Null => Ok(Vec::new()),
        other => Err(format!(
            "the page's {} is {}, not an array of records",
            describe_pointer(pointer),
            kind(other)
        )),
    }
}

/// The next-page link at `pointer` in `page`: none when it is absent,
/// `null` or empty (the last page).
pub fn next_in_body(page: &Value, pointer: &str) -> Result<Option<String>, String> {
    match page.pointer(pointer) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(link)) if link.is_empty() => Ok(None),
        Some(Value::String(link)) => Ok(Some(link.clone())),
        Some(other) => Err(format!(
            "the page's {pointer:?} (next) is {}, not a link",
            kind(other)
        )),
    }
}

/// The target of the first `rel="next"` link in RFC 8288 `Link` header
/// values, e.g. `<https://api.example/audit?after=x>; rel="next"`.
pub fn next_in_link_header<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<String> {
    for value in values {
        let mut rest = value;
        while let Some(open) = rest.find('<') {
            let after = &rest[open + 1..];
            let close = after.find('>')?;
            let target = &after[..close];
            let params_end = after[close..]
                .find('<')
                .map_or(after.len(), |next| close + next);
            let params = &after[close + 1..params_end];
            if params.split(';').any(is_rel_next) {
                return Some(target.trim().to_owned());
            }
            rest = &after[params_end..];
        }
    }
    None
}

/// Whether one `Link` parameter is `rel` naming `next` (among others).
fn is_rel_next(param: &str) -> bool {
    let Some((name, value)) = param.split_once('=') else {
        return false;
    };
    name.trim().eq_ignore_ascii_case("rel")
        && value
            .trim()
            .trim_end_matches(',')
            .trim()
            .trim_matches('"')
            .split_ascii_whitespace()
            .any(|rel| rel.eq_ignore_ascii_case("next"))
}

/// `link` resolved against the page it came from; refused unless it stays
/// on `origin` (scheme, host and port): a page must never send the
/// source's credentials to another server.
pub fn follow(page: &Url, link: &str, origin: &Url) -> Result<Url, String> {
    let next = page
        .join(link)
        .map_err(|error| format!("the next-page link is not a URL ({error})"))?;
    let same = next.scheme() == origin.scheme()
        && next.host_str() == origin.host_str()
        && next.port_or_known_default() == origin.port_or_known_default();
    if !same {
        return Err(format!(
            "the next-page link goes to {}, not {}: it is not followed (a page cannot send the credentials to another server)",
            next.origin().ascii_serialization(),
            origin.origin().ascii_serialization()
        ));
    }
    if !next.username().is_empty() || next.password().is_some() {
        return Err("the next-page link holds credentials: it is not followed".into());
    }
    Ok(next)
}

/// The greatest value of `field` over `records`, and `since` (the value
/// the page was asked from): the cursor after this page. The records must
/// come oldest first (each value at least the one before): an API asked
/// for newest first would have its older records skipped, so that is an
/// error, not a guess. Records without the field are left out of it.
pub fn greatest(
    records: &[Value],
    field: &str,
    since: Option<&Value>,
) -> Result<Option<Value>, String> {
    let mut greatest: Option<&Value> = None;
    let mut found = 0usize;
    for (at, record) in records.iter().enumerate() {
        let Some(value) = record.pointer(field).filter(|v| !v.is_null()) else {
            continue;
        };
        found += 1;
        // Oldest first: each value at least the greatest before it.
        if let Some(before) = greatest {
            match compare(before, value)? {
                Ordering::Greater => {
                    return Err(format!(
                        "record {at} has {field} {value} after {before}: the API returns them newest first, so paging by {field} would skip records; ask for oldest first (e.g. ordering=created)"
                    ));
                }
                _ => greatest = Some(value),
            }
        } else {
            greatest = Some(value);
        }
    }
    if found == 0 && !records.is_empty() {
        return Err(format!(
            "no record has {field}: the cursor cannot move (is the pointer right?)"
        ));
    }
    Ok(match (greatest, since) {
        (Some(value), Some(since)) if compare_to_since(value, since) == Ordering::Less => {
            Some(since.clone())
        }
        (Some(value), _) => Some(value.clone()),
        (None, since) => since.cloned(),
    })
}

/// The first value of `field` in `records` before `since`: an API that
/// answers those ignored the cursor parameter.
pub fn first_before(records: &[Value], field: &str, since: &Value) -> Option<Value> {
    records
        .iter()
        .filter_map(|record| record.pointer(field).filter(|v| !v.is_null()))
        .find(|value| compare_to_since(value, since) == Ordering::Less)
        .cloned()
}

/// Orders a record's value against the value a page was asked from,
/// which may be the configured `start` — text, even for a numeric field —
/// and then compares as a number where it reads as one. A value of
/// another kind is never "before".
fn compare_to_since(value: &Value, since: &Value) -> Ordering {
    let number = |v: &Value| match v {
        Value::Number(n) => n.as_f64(),
        Value::String(text) => text.trim().parse::<f64>().ok(),
        _ => None,
    };
    match (value, since) {
        (Value::Number(_), Value::String(_)) | (Value::String(_), Value::Number(_)) => {
            match (number(value), number(since)) {
                (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
                _ => Ordering::Equal,
            }
        }
        _ => compare(value, since).unwrap_or(Ordering::Equal),
    }
}

/// Orders two values of the cursor field: numbers as numbers, RFC 3339
/// times as times, other strings as text; two kinds are an error.
pub fn compare(a: &Value, b: &Value) -> Result<Ordering, String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => Ok(match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(x), Some(y)) => x.cmp(&y),
                _ => {
                    let (x, y) = (
                        x.as_f64().unwrap_or(f64::NAN),
                        y.as_f64().unwrap_or(f64::NAN),
                    );
                    x.partial_cmp(&y).unwrap_or(Ordering::Equal)
                }
            },
        }),
        (Value::String(x), Value::String(y)) => Ok(
            match (x.parse::<jiff::Timestamp>(), y.parse::<jiff::Timestamp>()) {
                (Ok(x), Ok(y)) => x.cmp(&y),
                _ => x.cmp(y),
            },
        ),
        _ => Err(format!(
            "the cursor field is {} in one record and {} in another: it must be a number or a string in every record",
            kind(a),
            kind(b)
        )),
    }
}

/// How a cursor value is sent in the query: a string as it is, a number
/// as its JSON text.
pub fn query_text(value: &Value) -> Result<String, String> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Number(number) => Ok(number.to_string()),
        other => Err(format!(
            "the cursor field is {}: it must be a number or a string",
            kind(other)
        )),
    }
}

/// `url` with the query parameter `param` set to `value` (replacing it
/// where the configured URL has it already).
pub fn with_param(url: &Url, param: &str, value: &str) -> Url {
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(name, _)| name != param)
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    let mut url = url.clone();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair(param, value);
    url
}

fn describe_pointer(pointer: &str) -> String {
    if pointer.is_empty() {
        "body".into()
    } else {
        format!("{pointer:?} (records)")
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn records_are_found_at_the_pointer_or_as_the_page() {
        let page = json!({"pagination": {"next": 2}, "results": [{"pk": 1}, {"pk": 2}]});
        assert_eq!(records(&mut page.clone(), "/results").unwrap().len(), 2);
        assert_eq!(records(&mut json!([{"a": 1}]), "").unwrap().len(), 1);
        assert_eq!(
            records(&mut json!({"results": null}), "/results")
                .unwrap()
                .len(),
            0
        );
        let error = records(&mut page.clone(), "/items").unwrap_err();
        assert!(error.contains("\"/items\""), "{error}");
        let error = records(&mut json!({"results": {"pk": 1}}), "/results").unwrap_err();
        assert!(error.contains("an object, not an array"), "{error}");
        let error = records(&mut json!({"a": 1}), "").unwrap_err();
        assert!(error.contains("body is an object"), "{error}");
    }

    #[test]
    fn the_next_link_is_read_from_the_body() {
        let page = json!({"next": "https://a.example/e?page=2", "last": null, "n": 3});
        assert_eq!(
            next_in_body(&page, "/next").unwrap().as_deref(),
            Some("https://a.example/e?page=2")
        );
        assert_eq!(next_in_body(&page, "/last").unwrap(), None);
        assert_eq!(next_in_body(&page, "/missing").unwrap(), None);
        assert_eq!(next_in_body(&json!({"next": ""}), "/next").unwrap(), None);
        assert!(next_in_body(&page, "/n").unwrap_err().contains("a number"));
    }

    /// As GitHub, GitLab and RFC 8288 write them.
    #[test]
    fn the_next_link_is_read_from_link_headers() {
        let github = r#"<https://api.github.com/orgs/o/audit-log?per_page=100&after=MS42&before=>; rel="next", <https://api.github.com/orgs/o/audit-log?per_page=100>; rel="first""#;
        assert_eq!(
            next_in_link_header([github]).as_deref(),
            Some("https://api.github.com/orgs/o/audit-log?per_page=100&after=MS42&before=")
        );
        let first_not_next = r#"<https://x/?p=1>; rel="first", <https://x/?p=3>; rel="next""#;
        assert_eq!(
            next_in_link_header([first_not_next]).as_deref(),
            Some("https://x/?p=3")
        );
        assert_eq!(
            next_in_link_header([r#"</e?p=2>; title="a, b"; rel="prev next""#]).as_deref(),
            Some("/e?p=2")
        );
        assert_eq!(
            next_in_link_header(["<https://x/?p=2>; REL=next"]).as_deref(),
            Some("https://x/?p=2")
        );
        assert_eq!(
            next_in_link_header([
                r#"<https://x/?p=1>; rel="prev""#,
                r#"<https://x/?p=9>; rel=next"#
            ])
            .as_deref(),
            Some("https://x/?p=9")
        );
        assert_eq!(
            next_in_link_header([r#"<https://x/?p=1>; rel="nextish""#]),
            None
        );
        assert_eq!(next_in_link_header(["<unterminated; rel=next"]), None);
        assert_eq!(next_in_link_header(["garbage"]), None);
    }

    #[test]
    fn next_links_stay_on_the_configured_server() {
        let origin = Url::parse("https://idp.example/api/events/?ordering=created").unwrap();
        let page = Url::parse("https://idp.example/api/events/?ordering=created&page=2").unwrap();
        assert_eq!(
            follow(&page, "?ordering=created&page=3", &origin)
                .unwrap()
                .as_str(),
            "https://idp.example/api/events/?ordering=created&page=3"
        );
        assert_eq!(
            follow(&page, "https://idp.example:443/api/events/?page=3", &origin)
                .unwrap()
                .as_str(),
            "https://idp.example/api/events/?page=3"
        );
        for elsewhere in [
            "https://evil.example/steal",
            "//evil.example/steal",
            "http://idp.example/api/events/?page=3",
            "https://idp.example:8443/api/events/?page=3",
            "https://idp.example.evil.example/",
            "https://idp.example@evil.example/",
        ] {
            let error = follow(&page, elsewhere, &origin).unwrap_err();
            assert!(error.contains("not followed"), "{elsewhere}: {error}");
        }
        let error = follow(&page, "https://u:p@idp.example/", &origin).unwrap_err();
        assert!(error.contains("credentials"), "{error}");
    }

    #[test]
    fn the_cursor_is_the_greatest_value_and_never_goes_back() {
        let page = [
            json!({"created": "2026-01-01T00:00:00Z"}),
            json!({"created": "2026-01-01T00:00:00.5Z"}),
            json!({"other": 1}),
            json!({"created": "2026-01-01T00:00:01Z"}),
        ];
        // As text, ".5Z" sorts before "Z": compared as times it is after.
        assert_eq!(
            greatest(&page, "/created", None).unwrap(),
            Some(json!("2026-01-01T00:00:01Z"))
        );
        let later = json!("2027-01-01T00:00:00Z");
        assert_eq!(
            greatest(&page, "/created", Some(&later)).unwrap(),
            Some(later)
        );
        assert_eq!(greatest(&[], "/created", None).unwrap(), None);
        let ids = [json!({"pk": 9}), json!({"pk": 10}), json!({"pk": 10})];
        assert_eq!(greatest(&ids, "/pk", None).unwrap(), Some(json!(10)));
    }

    #[test]
    fn newest_first_is_refused_rather_than_skipping() {
        let page = [json!({"pk": 10}), json!({"pk": 9})];
        let error = greatest(&page, "/pk", None).unwrap_err();
        assert!(error.contains("newest first"), "{error}");
        let error = greatest(&[json!({"a": 1})], "/pk", None).unwrap_err();
        assert!(error.contains("no record has /pk"), "{error}");
        let error = greatest(&[json!({"pk": 1}), json!({"pk": "2"})], "/pk", None).unwrap_err();
        assert!(
            error.contains("a number in one record and a string"),
            "{error}"
        );
    }

    #[test]
    fn the_cursor_parameter_replaces_the_configured_one() {
        let url = Url::parse("https://a.example/e?ordering=created&created__gte=old").unwrap();
        assert_eq!(
            with_param(&url, "created__gte", "2026-01-01T00:00:00+00:00").as_str(),
            "https://a.example/e?ordering=created&created__gte=2026-01-01T00%3A00%3A00%2B00%3A00"
        );
        assert_eq!(query_text(&json!(12)).unwrap(), "12");
        assert!(query_text(&json!([1])).is_err());
    }

    proptest! {
        /// Whatever a server sends, reading it never panics.
        #[test]
        fn any_link_header_is_read_without_panicking(header in ".{0,200}") {
            let _ = next_in_link_header([header.as_str()]);
        }

        #[test]
        fn any_page_is_read_without_panicking(text in r#"[\[\]{}",:0-9a-z/ .-]{0,200}"#, pointer in "(/[a-z0-9]{0,3}){0,3}") {
            if let Ok(page) = serde_json::from_str::<Value>(&text) {
                let _ = next_in_body(&page, &pointer);
                let _ = records(&mut page.clone(), &pointer);
                if let Value::Array(items) = &page {
                    let _ = greatest(items, &pointer, None);
                }
            }
            if let Ok(base) = Url::parse("https://a.example/x") {
                let _ = follow(&base, &text, &base);
            }
        }
    }
}
