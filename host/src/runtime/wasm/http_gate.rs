//! Outbound HTTP for plugins, allowed only to the hosts the operator listed.
//!
//! Every `wasi:http` request a plugin makes reaches
//! [`HttpGate::send_request`] first. A destination that matches none of
//! the instance's `allowed_hosts` is refused with
//! `error-code::HTTP-request-denied` (the plugin sees a clear error) and
//! logged with the plugin's name; only the scheme, host and port are
//! logged, since paths and queries may carry secrets, and those masked
//! too (a plugin could name a host after a secret). The patterns are
//! described in [`AllowList`].
//!
//! At most `limits.http_requests` requests of one instance are in flight
//! at once, from connecting until the response is read or times out; a
//! request beyond that fails at once with an error naming the setting, so
//! a plugin cannot hold the relay's descriptors (each request is a socket).
//! When an instance is discarded, its requests are aborted with it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::runtime::services::PluginServices;
use auditrelay_plugin_api::http::AllowList;

/// Connect limit applied when a plugin sets none.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// First-byte and between-bytes limit applied when a plugin sets none.
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The `wasi:http` hooks of one plugin instance.
pub struct HttpGate {
    services: PluginServices,
    allowed: Arc<AllowList>,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
}

impl HttpGate {
    /// A gate for the instance `services` serve, letting `max_in_flight`
    /// requests through at once.
    pub fn new(services: PluginServices, allowed: Arc<AllowList>, max_in_flight: usize) -> Self {
        HttpGate {
            services,
            allowed,
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
        }
    }
}

type ResponseFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for HttpGate {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> ResponseFuture {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("");
        let host = uri.host().unwrap_or("");
        let port = uri.port_u16();
        if !self.allowed.allows(scheme, host, port) {
            let destination = match port {
                Some(port) => format!("{scheme}://{host}:{port}"),
                None => format!("{scheme}://{host}"),
            };
            tracing::warn!(
                plugin = &**self.services.instance(),
                destination = self.services.admit(&destination),
                "denied an outbound request: the destination is not in this plugin's allowed_hosts"
            );
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            let message = format!(
                "this plugin already has {} HTTP requests in flight (limits.http_requests): wait for one to finish",
                self.max_in_flight
            );
            return Box::new(async { Err(HttpError::InternalError(Some(message))) });
        };
        let options = Some(with_default_timeouts(options));
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            // The permit goes when the connection does.
            let io = async move {
                let _permit = permit;
                io.await
            };
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

/// wasi-http waits 600 s by default; a plugin that sets nothing gets sane limits.
fn with_default_timeouts(options: Option<RequestOptions>) -> RequestOptions {
    let options = options.unwrap_or_default();
    RequestOptions {
        connect_timeout: options.connect_timeout.or(Some(DEFAULT_CONNECT_TIMEOUT)),
        first_byte_timeout: options.first_byte_timeout.or(Some(DEFAULT_READ_TIMEOUT)),
        between_bytes_timeout: options.between_bytes_timeout.or(Some(DEFAULT_READ_TIMEOUT)),
    }
}
