//! What a Datadog Logs intake answer means.

use auditrelay_plugin_api::DeliverError;
use auditrelay_plugin_api::http::Response;

/// What to do after a non-2xx answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// 413: the request was too large; send its halves.
    TooLarge,
    /// Anything else: hand this to the relay.
    Error(DeliverError),
}

/// Classifies a non-2xx answer. 400 is permanent (the request was
/// malformed), 401/403 are permanent with the settings to check,
/// 408/429/5xx are retryable (honouring `Retry-After`).
pub fn classify(response: &Response, site: &str) -> Failure {
    let text: String = response.text().chars().take(300).collect();
    let what = format!("Datadog answered HTTP {}: {text}", response.status);
    let hint = match response.status {
        413 => return Failure::TooLarge,
        401 | 403 => format!(
            " (check the datadog_api_key secret, and that `site` ({site}) is the site the key belongs to)"
        ),
        400 => " (the intake refused the request as malformed; check `tags` and `tag_fields`)"
            .to_owned(),
        _ => String::new(),
    };
    Failure::Error(response.deliver_error(format!("{what}{hint}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify(&Response::new(413, ""), "s"), Failure::TooLarge);
        let Failure::Error(key) = classify(&Response::new(403, "Forbidden"), "datadoghq.eu") else {
            panic!()
        };
        assert!(!key.is_retryable());
        assert!(key.to_string().contains("datadog_api_key"), "{key}");
        assert!(key.to_string().contains("datadoghq.eu"), "{key}");
        for status in [408, 429, 500, 502, 503] {
            let Failure::Error(e) = classify(&Response::new(status, ""), "s") else {
                panic!()
            };
            assert!(e.is_retryable(), "{status}");
        }
        let Failure::Error(bad) = classify(&Response::new(400, "bad"), "s") else {
            panic!()
        };
        assert!(!bad.is_retryable());
    }
}
