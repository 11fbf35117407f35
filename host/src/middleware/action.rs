//! Naming what a request did from its method and route template:
//! `POST /api/risks` → `risk.create`, `DELETE /groups/{id}/members/{user}`
//! → `group.member.delete`.

use axum::http::Method;

/// The action a request performs, or `None` for a method that changes
/// nothing worth naming (`HEAD`, `OPTIONS`, ...). `GET` is `read` (the
/// middleware records it only for routes configured as exports).
pub fn classify(method: &Method, template: &str) -> Option<String> {
    let verb = match *method {
        Method::POST => "create",
        Method::PUT | Method::PATCH => "update",
        Method::DELETE => "delete",
        Method::GET => "read",
        _ => return None,
    };
    let nouns: Vec<String> = template
        .split('/')
        .filter(|segment| !segment.is_empty() && !is_parameter(segment) && !is_prefix(segment))
        .map(singular)
        .collect();
    let subject = if nouns.is_empty() {
        "root".to_owned()
    } else {
        nouns.join(".")
    };
    Some(format!("{subject}.{verb}"))
}

/// `{id}`, `:id`, `*rest` in a template; in a raw path (no matched route),
/// a segment that looks like an identifier: digits, a UUID, long hex.
fn is_parameter(segment: &str) -> bool {
    if segment.starts_with(['{', ':', '*']) {
        return true;
    }
    let hex_or_dash = segment.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    segment.bytes().all(|b| b.is_ascii_digit()) || (hex_or_dash && segment.len() >= 8)
}

/// Path prefixes that name no resource: `api`, `v1`, `v2`, ...
fn is_prefix(segment: &str) -> bool {
    let lower = segment.to_ascii_lowercase();
    lower == "api"
        || lower
            .strip_prefix('v')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// English plurals as resource names use them: `policies` → `policy`,
/// `addresses` → `address`, `boxes` → `box`, `members` → `member`.
fn singular(segment: &str) -> String {
    let word: String = segment
        .chars()
        .map(|c| match c {
            'A'..='Z' => c.to_ascii_lowercase(),
            'a'..='z' | '0'..='9' | '_' => c,
            _ => '_',
        })
        .collect();
    if let Some(stem) = word.strip_suffix("ies") {
        format!("{stem}y")
    } else if let Some(stem) = ["sses", "xes", "ches", "shes", "zes"]
        .iter()
        .find_map(|suffix| word.strip_suffix(suffix).map(|stem| (stem, *suffix)))
    {
        format!("{}{}", stem.0, &stem.1[..stem.1.len() - 2])
    } else if word.ends_with('s')
        && !word.ends_with("ss")
        && !word.ends_with("us")
        && !word.ends_with("is")
    {
        word[..word.len() - 1].to_owned()
    } else {
        word
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_named_from_the_route() {
        let cases = [
            (Method::POST, "/api/risks", "risk.create"),
            (
                Method::DELETE,
                "/groups/{id}/members/{user}",
                "group.member.delete",
            ),
            (Method::POST, "/groups/{id}/members", "group.member.create"),
            (Method::PATCH, "/v2/policies/:id", "policy.update"),
            (
                Method::PUT,
                "/users/{id}/addresses/{n}",
                "user.address.update",
            ),
            (Method::POST, "/inboxes", "inbox.create"),
            (Method::POST, "/api/status", "status.create"),
            (Method::GET, "/reports/{id}/export", "report.export.read"),
            (Method::POST, "/", "root.create"),
            (Method::POST, "/Api-Keys", "api_key.create"),
            // A raw path: identifiers are recognised by their look.
            (
                Method::DELETE,
                "/groups/42/members/0190a6a0-0000-7000-8000-000000000001",
                "group.member.delete",
            ),
        ];
        for (method, template, expected) in cases {
            assert_eq!(
                classify(&method, template).as_deref(),
                Some(expected),
                "{method} {template}"
            );
        }
        assert_eq!(classify(&Method::HEAD, "/groups"), None);
        assert_eq!(classify(&Method::OPTIONS, "/groups"), None);
    }
}
