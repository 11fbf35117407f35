//! What a HEC answer means: its JSON `code` decides, then the status.
//!
//! Codes from Splunk's "Troubleshoot HTTP Event Collector" table:
//! 1–4 token problems (401/403), 5–7 and 10–16 bad requests (400),
//! 8/9/18–20 server trouble (500/503).

use auditrelay_plugin_api::DeliverError;
use auditrelay_plugin_api::http::Response;
use serde::Deserialize;

/// The JSON body HEC answers with.
#[derive(Debug, Deserialize)]
pub struct HecReply {
    /// Human-readable status.
    #[serde(default)]
    pub text: String,
    /// HEC status code; 0 is success.
    #[serde(default)]
    pub code: Option<i64>,
    /// Present when indexer acknowledgement is on.
    #[serde(default, rename = "ackId")]
    pub ack_id: Option<u64>,
}

/// Parses the reply of a 2xx answer.
pub fn success(response: &Response) -> Result<HecReply, DeliverError> {
    serde_json::from_slice(&response.body).map_err(|e| {
        DeliverError::retryable(format!(
            "Splunk HEC answered HTTP {} with a body that is not HEC JSON ({e}): {}",
            response.status,
            excerpt(response)
        ))
    })
}

/// Classifies a non-2xx answer.
pub fn classify(response: &Response) -> DeliverError {
    let reply: Option<HecReply> = serde_json::from_slice(&response.body).ok();
    let (code, text) = match &reply {
        Some(r) => (r.code, r.text.clone()),
        None => (None, excerpt(response)),
    };
    let what = match code {
        Some(code) => format!(
            "Splunk HEC answered HTTP {} code {code}: {text}",
            response.status
        ),
        None => format!("Splunk HEC answered HTTP {}: {text}", response.status),
    };
    let hint = match code {
        Some(1..=4) => Some("check the hec_token secret, and that the token is enabled in Splunk"),
        Some(7) => Some("check `index`: it must exist and be allowed for this token"),
        Some(10 | 11) => Some(
            "the request channel was refused: this plugin sends one per instance; check the token's acknowledgement setting",
        ),
        Some(14) => Some(
            "indexer acknowledgement is off for this token: set `acknowledgements = false` or enable it on the token",
        ),
        Some(15) => Some("check `fields`: indexed fields must be flat name/value pairs"),
        Some(5 | 6 | 12 | 13 | 16) => {
            Some("the request was malformed; report this with the HEC text")
        }
        _ => None,
    };
    let hint = match (response.status, code) {
        (401 | 403, _) => Some(hint.unwrap_or("check the hec_token secret")),
        (413, _) => Some("lower `max_request_bytes` below Splunk's max_content_length"),
        _ => hint,
    };
    let message = match hint {
        Some(hint) => format!("{what} ({hint})"),
        None => what,
    };
    match code {
        // Server trouble, whatever the status says.
        Some(8 | 9 | 18..=20) => DeliverError::Retryable {
            message,
            retry_after: response.retry_after(),
        },
        _ => response.deliver_error(message),
    }
}

fn excerpt(response: &Response) -> String {
    response.text().chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, code: i64) -> DeliverError {
        classify(&Response::new(
            status,
            format!(r#"{{"text":"t","code":{code}}}"#),
        ))
    }

    #[test]
    fn hec_codes_are_classified() {
        for code in [5, 6, 7, 10, 11, 12, 13, 14, 15] {
            assert!(!answer(400, code).is_retryable(), "code {code}");
        }
        assert!(answer(403, 4).to_string().contains("hec_token"));
        assert!(answer(401, 2).to_string().contains("hec_token"));
        assert!(answer(400, 7).to_string().contains("`index`"));
        for (status, code) in [(500, 8), (503, 9), (503, 18), (503, 19), (503, 20)] {
            assert!(answer(status, code).is_retryable(), "code {code}");
        }
        let busy = classify(
            &Response::new(503, r#"{"text":"Server is busy","code":9}"#)
                .with_header("Retry-After", "3"),
        );
        assert_eq!(
            busy,
            DeliverError::Retryable {
                message: "Splunk HEC answered HTTP 503 code 9: Server is busy".into(),
                retry_after: Some(std::time::Duration::from_secs(3)),
            }
        );
        assert!(classify(&Response::new(502, "bad gateway")).is_retryable());
        assert!(classify(&Response::new(429, "")).is_retryable());
    }
}
