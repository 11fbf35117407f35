//! Serving the HTTP ingest's connections, each one bounded in time and
//! all of them together bounded in number.
//!
//! | bound | setting | what happens |
//! |---|---|---|
//! | a request's headers, and the wait for the next request on a kept-alive connection | `ingest.http.header_timeout` | the connection is closed |
//! | a request's body | `ingest.http.body_timeout` | `408`, connection closed |
//! | a client that stops reading an answer | `ingest.http.body_timeout` | the connection is closed |
//! | a live stream at shutdown | 1 s after its last event | the connection is closed |
//! | open connections | `ingest.http.max_connections`, and the descriptors the process may open | the longest-idle connection is closed to make room; if all are busy, `503` and close |
//!
//! The connection cap is also how the relay keeps file descriptors for
//! itself: whatever the clients do, the spool, the cursors, the dead
//! letters and the plugins can still open files (see [`descriptor_budget`]).
//! The table below counts what is kept aside.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connections::{Admission, BusyBody, Connections, Slot};
use crate::metrics::Metrics;

/// Refusals being written at once; past that, refused connections are
/// closed without an answer. Their descriptors are set aside too.
const MAX_REFUSALS_IN_FLIGHT: usize = 8;
/// How long a new connection waits for the idle one it replaces to close.
const EVICTION_WAIT: Duration = Duration::from_millis(200);
/// How long writing a refusal (and reading what the client sends before
/// closing) may take.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);
/// Most bytes of a refused request read (and dropped) before closing.
const MAX_DRAINED: usize = 1024 * 1024;
/// How long a live stream's connection is given at shutdown to take its
/// last event.
const STREAM_GRACE: Duration = Duration::from_secs(1);
/// A failed accept (out of descriptors) is logged at most this often.
const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// How long and how many.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bounds {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
}

/// How many connections the process's descriptor limit leaves room for
/// after `reserved` for the relay itself (see
/// [`Relay::reserved_descriptors`](crate::Relay::reserved_descriptors)) and
/// the refusals in flight; `None` when the limit cannot be read.
pub fn descriptor_budget(reserved: u64) -> Option<(u64, u64)> {
    let limit = open_file_limit()?;
    let reserved = reserved + MAX_REFUSALS_IN_FLIGHT as u64;
    Some((limit.saturating_sub(reserved), limit))
}

/// The soft limit on open files (`RLIMIT_NOFILE`).
fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct, which lives for the call.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit.rlim_cur)
}

/// Serves `listener` until `shutdown` is cancelled, then lets busy
/// connections finish their request (up to the body timeout).
pub(super) async fn serve(
    listener: TcpListener,
    router: Router,
    bounds: Bounds,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let connections = Connections::new(bounds.max_connections, metrics);
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
    let tasks = TaskTracker::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(bounds.header_timeout)
        .keep_alive(true);
    let mut last_error_log: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of descriptors (EMFILE/ENFILE) or a connection reset
                // before it was taken: wait a moment instead of spinning.
                if last_error_log.is_none_or(|at| at.elapsed() >= ACCEPT_ERROR_LOG_INTERVAL) {
                    tracing::warn!(%error, "cannot accept an HTTP connection; trying again shortly");
                    last_error_log = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let admitted = match connections.admit() {
            Admission::Admitted(slot) => Some(slot),
            Admission::AfterEviction(slot, closed) => {
                // Within the cap means within the descriptors set aside:
                // start only once the evicted connection let its go.
                let _ = tokio::time::timeout(EVICTION_WAIT, closed.wait()).await;
                Some(slot)
            }
            Admission::Full => None,
        };
        match admitted {
            Some(slot) => {
                let connection = Connection {
                    http: http.clone(),
                    router: router.clone(),
                    slot,
                    shutdown: shutdown.clone(),
                    write_timeout: bounds.body_timeout,
                };
                tasks.spawn(connection.run(stream));
            }
            None => {
                if let Ok(permit) = refusals.clone().try_acquire_owned() {
                    let max = bounds.max_connections;
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(REFUSAL_TIMEOUT, refuse(stream, max)).await;
                        drop(permit);
                    });
                }
            }
        }
    }
    drop(listener);
    tasks.close();
    if tokio::time::timeout(bounds.body_timeout, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("some HTTP connections were still busy at shutdown; closed them");
    }
}

/// Answers a connection the relay has no room for, and closes it: once its
/// request's headers are in (an answer before the request is one no client
/// expects), within `REFUSAL_TIMEOUT` altogether.
async fn refuse(mut stream: TcpStream, max: usize) {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut chunk).await {
            Ok(n @ 1..) => head.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    }
    let body = format!(
        "{{\"accepted\":0,\"error\":\"the relay has {max} busy HTTP connections (ingest.http.max_connections): retry, or send fewer requests at once\"}}"
    );
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
    // Closing with the request still unread would reset the connection,
    // and the client would often see the reset instead of the answer: read
    // what it sends (up to MAX_DRAINED, within REFUSAL_TIMEOUT) first.
    let mut drained = [0u8; 8192];
    let mut total = 0;
    while total < MAX_DRAINED {
        match stream.read(&mut drained).await {
            Ok(n @ 1..) => total += n,
            _ => break,
        }
    }
}

/// One admitted connection.
struct Connection {
    http: http1::Builder,
    router: Router,
    slot: Slot,
    shutdown: CancellationToken,
    write_timeout: Duration,
}

impl Connection {
    async fn run(self, stream: TcpStream) {
        let Connection {
            http,
            router,
            slot,
            shutdown,
            write_timeout,
        } = self;
        let slot = Arc::new(slot);
        let service = Tracked {
            router,
            slot: slot.clone(),
        };
        let io = TokioIo::new(WriteDeadline::new(stream, write_timeout));
        let connection = http.serve_connection(io, service);
        tokio::pin!(connection);
        tokio::select! {
            _ = connection.as_mut() => {}
            () = slot.evicted() => {}
            () = shutdown.cancelled() => {
                connection.as_mut().graceful_shutdown();
                // A live stream ends at shutdown with a last event; a client
                // that does not read it cannot hold the server for the
                // whole `body_timeout` a slow upload may take.
                if slot.is_streaming() {
                    let _ = tokio::time::timeout(STREAM_GRACE, connection).await;
                } else {
                    let _ = connection.await;
                }
            }
        }
    }
}

/// The router, marking the connection busy from a request's headers until
/// its answer is written.
#[derive(Clone)]
struct Tracked {
    router: Router,
    slot: Arc<Slot>,
}

impl hyper::service::Service<http::Request<Incoming>> for Tracked {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        let busy = self.slot.busy();
        if request.uri().path() == "/v1/stream" {
            self.slot.set_streaming();
        }
        let mut router = self.router.clone();
        Box::pin(async move {
            let response =
                tower_service::Service::call(&mut router, request.map(Body::new)).await?;
            Ok(response.map(|body| Body::new(BusyBody { body, _busy: busy })))
        })
    }
}

/// A stream whose writes fail once one has waited longer than `limit`:
/// a client that stops reading its answers cannot hold the connection.
struct WriteDeadline<T> {
    inner: T,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteDeadline<T> {
    fn new(inner: T, limit: Duration) -> Self {
        WriteDeadline {
            inner,
            limit,
            stalled: None,
        }
    }

    fn watch<R>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let limit = self.limit;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took too long to read the answer (ingest.http.body_timeout)",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
