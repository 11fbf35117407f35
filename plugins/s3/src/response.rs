//! What an S3 answer means for the batch: S3's XML error codes decide,
//! then the status.

use auditrelay_plugin_api::DeliverError;
use auditrelay_plugin_api::http::Response;

/// Classifies a non-2xx answer to a PutObject of `key`.
///
/// Retryable: 408, 429, 5xx except 501, and the `RequestTimeout`,
/// `SlowDown`, `InternalError`, `ServiceUnavailable` and digest codes.
/// Permanent: everything else, with the setting to fix named.
pub fn classify(response: &Response, bucket: &str, key: &str) -> DeliverError {
    let body = response.text();
    let code = xml_field(&body, "Code").unwrap_or_default();
    let detail = xml_field(&body, "Message").unwrap_or_default();
    let what = if code.is_empty() {
        format!("S3 answered HTTP {} to PUT {bucket}/{key}", response.status)
    } else {
        format!(
            "S3 answered HTTP {} {code} to PUT {bucket}/{key}: {detail}",
            response.status
        )
    };
    // S3's code decides when it is one we know; the status otherwise.
    let fix = match code {
        "RequestTimeout" | "SlowDown" | "InternalError" | "ServiceUnavailable"
        | "OperationAborted" | "BadDigest" | "IncompleteBody" => {
            return DeliverError::Retryable {
                message: what,
                retry_after: response.retry_after(),
            };
        }
        "NoSuchBucket" => {
            "check `bucket`, and `endpoint` / `force_path_style` for S3-compatible stores".into()
        }
        "InvalidAccessKeyId" | "NotSignedUp" | "SignatureDoesNotMatch" | "InvalidToken"
        | "ExpiredToken" => "check the aws_access_key_id / aws_secret_access_key / aws_session_token secrets or `access_key_id`".into(),
        "AccessDenied" => {
            format!("grant s3:PutObject on arn:aws:s3:::{bucket}/* to these credentials")
        }
        "AuthorizationHeaderMalformed" | "PermanentRedirect" | "IllegalLocationConstraintException" => {
            "the bucket lives in another region: check `region` and `endpoint`".into()
        }
        "RequestTimeTooSkewed" => {
            "this machine's clock is off by more than 15 minutes: fix NTP".into()
        }
        _ => {
            let hint = match response.status {
                301 | 307 => "the bucket lives elsewhere: check `region`, `endpoint` and `force_path_style`",
                400 => "check `key_prefix`, `storage_class` and `compression`",
                403 => "check the aws_access_key_id / aws_secret_access_key secrets and the bucket policy",
                404 => "check `bucket` and `endpoint`",
                _ => return response.deliver_error(what),
            };
            return response.deliver_error(format!("{what} ({hint})"));
        }
    };
    DeliverError::permanent(format!("{what} ({fix})"))
}

/// The text of the first `<name>` element; S3 error bodies are flat.
fn xml_field<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find("</")? + start;
    Some(xml[start..end].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(status: u16, code: &str) -> DeliverError {
        let body = format!(
            "<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>m</Message></Error>"
        );
        classify(&Response::new(status, body), "b", "k")
    }

    #[test]
    fn codes_and_statuses_are_classified() {
        assert!(error(400, "RequestTimeout").is_retryable());
        assert!(error(503, "SlowDown").is_retryable());
        assert!(error(500, "").is_retryable());
        assert!(!error(501, "NotImplemented").is_retryable());
        let bucket = error(404, "NoSuchBucket");
        assert!(!bucket.is_retryable());
        assert!(bucket.to_string().contains("check `bucket`"), "{bucket}");
        let key = error(403, "SignatureDoesNotMatch");
        assert!(key.to_string().contains("aws_secret_access_key"), "{key}");
        assert!(!error(400, "InvalidArgument").is_retryable());
        assert!(error(429, "").is_retryable());
    }
}
