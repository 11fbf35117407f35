//! The transport of native plugin builds (feature `native-http`): a
//! blocking HTTP/1.1 client with rustls and the Mozilla root store.
//!
//! A native plugin is trusted code, so nothing filters where it connects:
//! `allowed_hosts` is the sandbox's rule, not this transport's. Errors are
//! worded and classified as the wasi:http transport's are, so a plugin's
//! retry logic does not care which build it runs in.

use std::io::Read;
use std::sync::OnceLock;

use super::{HttpError, HttpErrorKind, Request, Response};

/// Largest response body read; the rest is an error, not a silent cut.
const MAX_RESPONSE: u64 = 64 * 1024 * 1024;

/// One agent per process: it pools connections across calls.
fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            // Statuses are the plugin's to judge, body included.
            .http_status_as_error(false)
            .build()
            .into()
    })
}

pub(crate) fn send(request: &Request) -> Result<Response, HttpError> {
    send_request(request).map_err(|error| error.naming_destination_of(request))
}

fn send_request(request: &Request) -> Result<Response, HttpError> {
    let mut builder = http::Request::builder()
        .method(request.method.as_str())
        .uri(&request.url);
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    let built = builder
        .body(request.body.clone())
        .map_err(|e| HttpError::new(HttpErrorKind::InvalidRequest, e.to_string()))?;
    let agent = agent();
    let configured = agent
        .configure_request(built)
        .timeout_connect(Some(request.connect_timeout))
        .timeout_recv_response(Some(request.timeout))
        .timeout_recv_body(Some(request.timeout))
        .build();
    let mut response = agent.run(configured).map_err(classify)?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = Vec::new();
    response
        .body_mut()
        .as_reader()
        .take(MAX_RESPONSE + 1)
        .read_to_end(&mut body)
        .map_err(|e| HttpError::new(HttpErrorKind::Protocol, format!("reading the body: {e}")))?;
    if body.len() as u64 > MAX_RESPONSE {
        return Err(HttpError::new(
            HttpErrorKind::Protocol,
            format!("the response body is larger than {MAX_RESPONSE} bytes"),
        ));
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn classify(error: ureq::Error) -> HttpError {
    let kind = match &error {
        ureq::Error::Timeout(_) => HttpErrorKind::Timeout,
        ureq::Error::HostNotFound => HttpErrorKind::Dns,
        ureq::Error::BadUri(_) | ureq::Error::Http(_) => HttpErrorKind::InvalidRequest,
        ureq::Error::Io(_) | ureq::Error::ConnectionFailed => HttpErrorKind::Connect,
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => HttpErrorKind::Tls,
        ureq::Error::Protocol(_) => HttpErrorKind::Protocol,
        _ => HttpErrorKind::Other,
    };
    HttpError::new(kind, error.to_string())
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::time::Duration;

    use super::*;

    /// Answers one request with `answer`; returns its address and, once
    /// served, the request's head and body.
    fn serve_once(answer: &'static str) -> (String, std::thread::JoinHandle<(String, Vec<u8>)>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/ingest?token=secret",
            listener.local_addr().unwrap()
        );
        let served = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                head.push_str(&line);
                if line == "\r\n" {
                    break;
                }
            }
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .map_or(0, |n| n.trim().parse().unwrap());
            let mut body = vec![0u8; length];
            std::io::Read::read_exact(&mut reader, &mut body).unwrap();
            (&stream).write_all(answer.as_bytes()).unwrap();
            (head, body)
        });
        (url, served)
    }

    #[test]
    fn a_request_goes_out_whole_and_any_status_comes_back() {
        let (url, served) = serve_once(
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: 4\r\n\r\nbusy",
        );
        let response = send(
            &Request::post(&url)
                .header("Authorization", "Splunk t")
                .body(b"{\"event\":1}".to_vec()),
        )
        .unwrap();
        assert_eq!(response.status, 503);
        assert_eq!(response.text(), "busy");
        assert_eq!(response.retry_after(), Some(Duration::from_secs(7)));
        let (head, body) = served.join().unwrap();
        assert!(
            head.starts_with("POST /ingest?token=secret HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(
            head.contains("authorization: Splunk t") || head.contains("Authorization: Splunk t"),
            "{head}"
        );
        assert_eq!(body, b"{\"event\":1}");
    }

    #[test]
    fn a_refused_connection_is_a_connect_error_naming_the_host_not_the_path() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let error = send(&Request::post(format!(
            "http://127.0.0.1:{port}/x?token=secret"
        )))
        .unwrap_err();
        assert_eq!(error.kind, HttpErrorKind::Connect, "{error}");
        assert!(
            error
                .message
                .starts_with(&format!("POST http://127.0.0.1:{port}: ")),
            "{error}"
        );
        assert!(!error.message.contains("secret"), "{error}");
    }
}
