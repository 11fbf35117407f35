//! Real destinations on 127.0.0.1 for the exporter plugins.
//!
//! - [`SplunkHec`] and [`Datadog`] implement their service's documented
//!   HTTP protocol strictly: auth header, framing, field types, limits,
//!   error codes and (HEC) indexer acknowledgements. Anything else is
//!   refused the way the real service refuses it, so a plugin that passes
//!   here sends what the service accepts.
//! - [`S3Server`] runs `s3s-fs`, a real S3-compatible server that verifies
//!   SigV4 (`.ci/run` installs it).

mod datadog;
pub mod s3;
mod splunk_hec;

use std::io::Read;

pub use datadog::Datadog;
pub use s3::{S3Object, S3Server};
pub use splunk_hec::{HecEvent, SplunkHec};

/// A scripted answer: the next requests get this instead of being taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: String,
    /// `Retry-After` seconds, if any.
    pub retry_after: Option<u32>,
}

impl axum::response::IntoResponse for Refusal {
    fn into_response(self) -> axum::response::Response {
        let status = axum::http::StatusCode::from_u16(self.status).expect("a valid status");
        let mut response = (status, self.body).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert("retry-after", seconds.into());
        }
        response
    }
}

/// Decodes a request body by its `Content-Encoding`; `Err` names the problem.
pub(crate) fn decode_body(encoding: Option<&str>, body: &[u8]) -> Result<Vec<u8>, String> {
    let mut plain = Vec::new();
    match encoding {
        None | Some("identity") => return Ok(body.to_vec()),
        Some("gzip") => flate2::read::GzDecoder::new(body)
            .read_to_end(&mut plain)
            .map_err(|e| format!("body is not valid gzip: {e}"))?,
        Some("zstd") => ruzstd::decoding::StreamingDecoder::new(body)
            .map_err(|e| format!("body is not valid zstd: {e}"))?
            .read_to_end(&mut plain)
            .map_err(|e| format!("body is not valid zstd: {e}"))?,
        Some(other) => return Err(format!("unsupported Content-Encoding {other:?}")),
    };
    Ok(plain)
}

/// Serves `app` on a free loopback port from a dedicated thread and
/// runtime, so a receiver outlives any one test runtime and its CPU time
/// is kept apart from the relay's (threads are named `receiver`).
pub(crate) fn serve(app: axum::Router) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::Builder::new()
        .name("receiver".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("receiver")
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let _ = axum::serve(listener, app).await;
            });
        })
        .unwrap();
    addr
}
