//! `${ENV_VAR}` expansion in configuration strings.
//!
//! | written | becomes |
//! |---|---|
//! | `${NAME}` | the value of `NAME`; an error if it is unset |
//! | `${NAME:-fallback}` | the value of `NAME`, or `fallback` if unset or empty |
//! | `$$` | a literal `$` |
//! | `$` followed by anything else | itself |
//!
//! Expansion happens after TOML parsing, inside string values only, so a
//! variable's value can never change the structure of the file.

/// Expands references in `text`; `env` looks variables up. The error says
/// which variable is missing (never its value).
pub fn interpolate(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    if !text.contains('$') {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| {
                format!("unclosed ${{ in {text:?}: write ${{NAME}}, or $$ for a literal $")
            })?;
            let reference = &body[..end];
            let (name, fallback) = match reference.split_once(":-") {
                Some((name, fallback)) => (name, Some(fallback)),
                None => (reference, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "${{{reference}}} is not a variable reference: names use letters, digits and _"
                ));
            }
            match (
                env(name).filter(|v| !v.is_empty() || fallback.is_none()),
                fallback,
            ) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(fallback)) => out.push_str(fallback),
                (None, None) => {
                    return Err(format!(
                        "environment variable {name} is not set (export it, or write ${{{name}:-default}})"
                    ));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cr3t".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_references() {
        assert_eq!(
            interpolate("Bearer ${TOKEN}", &env).unwrap(),
            "Bearer s3cr3t"
        );
        assert_eq!(
            interpolate("${MISSING:-x}/${TOKEN}", &env).unwrap(),
            "x/s3cr3t"
        );
        assert_eq!(interpolate("${EMPTY:-d}", &env).unwrap(), "d");
        assert_eq!(interpolate("${EMPTY}", &env).unwrap(), "");
        assert_eq!(
            interpolate("cost: $$5 or $5", &env).unwrap(),
            "cost: $5 or $5"
        );
        assert_eq!(interpolate("plain", &env).unwrap(), "plain");
    }

    #[test]
    fn reports_missing_variables_by_name() {
        let err = interpolate("${SPLUNK_TOKEN}", &env).unwrap_err();
        assert!(err.contains("SPLUNK_TOKEN is not set"), "{err}");
        assert!(
            interpolate("${TOKEN", &env)
                .unwrap_err()
                .contains("unclosed")
        );
        assert!(
            interpolate("${a-b}", &env)
                .unwrap_err()
                .contains("not a variable")
        );
    }

    #[test]
    fn values_are_inserted_verbatim() {
        let env = |_: &str| Some("}\"${NESTED}\n".to_owned());
        assert_eq!(interpolate("${X}", &env).unwrap(), "}\"${NESTED}\n");
    }
}
