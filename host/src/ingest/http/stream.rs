//! `GET /v1/stream`: the spool as Server-Sent Events, for a terminal
//! (`auditrelay tail`), a dashboard or a SOC tool that wants events as they
//! come.
//!
//! Each stream reads the spool with a cursor of its own that nothing saves
//! and that keeps nothing from deletion ([`Spool::follower`]): it never
//! holds back ingest, delivery or the spool's cleanup. Only **durable**
//! events are sent — an event a crash could still take back is never
//! shown — each with its sequence number as the SSE `id`, so a client that
//! reconnects with `Last-Event-ID` (browsers' `EventSource` does it by
//! itself) goes on after the last event it got, without a gap, as long as
//! the spool still holds what came after. When it does not (the segments
//! were deleted once every instance had them, or dropped by a full spool),
//! an `event: gap` says which sequence numbers were missed.
//!
//! ```text
//! GET /v1/stream?type=group.*&tenant=acme&source=shop    Authorization: Bearer <token>
//!
//! retry: 2000
//!
//! id: 41
//! event: audit
//! data: {"id":"evt-1","source":"shop","type":"group.member_added",...}
//!
//! event: gap
//! data: {"from":42,"to":99,"reason":"..."}
//!
//! event: end
//! data: {"reason":"...","last_event_id":41}
//! ```
//!
//! A client that reads slower than events come fills its stream's queue
//! (4 chunks of at most 32 KiB of events, beside the socket's buffers); after `ingest.http.stream_stall` with the queue
//! full the stream is ended with an `event: end` that says why — the
//! memory a stream holds is bounded, and it never slows anyone else.
//! `: keepalive` comments every 15 s keep proxies from closing an idle
//! stream.
//!
//! | query | meaning |
//! |---|---|
//! | `type` | event types, repeatable or comma-separated; a trailing `*` matches any suffix (`group.*`) |
//! | `tenant` | tenants, the same way (`""` matches events without one) |
//! | `source` | sources, the same way |
//! | `from` | where to begin without `Last-Event-ID`: `now` (the default: events from now on), `earliest` (everything spooled), or a sequence number |
//! | `last_event_id` | the same as the `Last-Event-ID` header, for clients that cannot set it |

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Api, refuse};
use crate::config::FilterSettings;
use crate::dispatch::filter::EventFilter;
use crate::relay::Relay;
use crate::spool::{Confirmation, Reader};

/// Chunks of frames a stream's queue holds (each up to [`CHUNK_JSON`]).
const QUEUE: usize = 4;
/// Most envelope bytes read from the spool into one chunk.
const CHUNK_JSON: usize = 32 * 1024;
/// Spool reads at once, across every stream.
const READS: usize = 2;
/// Bytes of a segment read at a time.
const READ_BYTES: u64 = 64 * 1024;
/// Most events read at once.
const CHUNK_EVENTS: usize = 512;
/// A comment sent this often while no event comes.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// How often a stream looks again while the spool cannot write.
const FAILING_WAIT: Duration = Duration::from_secs(1);

/// The live streams: how many are open, the cap, when to end them.
#[derive(Clone)]
pub(super) struct Streams {
    open: Arc<AtomicUsize>,
    max: usize,
    stall: Duration,
    stop: CancellationToken,
    /// Spool reads under way at once, across every stream: a hundred
    /// streams catching up take two blocking threads, not a hundred.
    reads: Arc<tokio::sync::Semaphore>,
}

impl Streams {
    /// Streams capped at `max`, each ended after `stall` without reading,
    /// and all of them when `stop` is cancelled (the server is stopping).
    pub(super) fn new(max: usize, stall: Duration, stop: CancellationToken) -> Self {
        Streams {
            open: Arc::new(AtomicUsize::new(0)),
            max,
            stall,
            stop,
            reads: Arc::new(tokio::sync::Semaphore::new(READS)),
        }
    }

    /// A place for one more stream, if the cap leaves one.
    fn admit(&self, relay: &Relay) -> Option<Open> {
        let mut open = self.open.load(Ordering::Relaxed);
        loop {
            if open >= self.max {
                return None;
            }
            match self.open.compare_exchange_weak(
                open,
                open + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => open = now,
            }
        }
        relay.metrics().stream_opened(1);
        Some(Open {
            open: self.open.clone(),
            relay: relay.clone(),
        })
    }
}

/// One open stream, counted until dropped (with the response body).
struct Open {
    open: Arc<AtomicUsize>,
    relay: Relay,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        self.relay.metrics().stream_opened(-1);
    }
}

/// What a client asked for.
#[derive(Debug)]
struct Request {
    filter: FilterSettings,
    start: Start,
}

/// Where a stream begins.
#[derive(Debug, PartialEq)]
enum Start {
    /// After the event the client got last.
    After(u64),
    /// At this sequence number.
    At(u64),
    Now,
    Earliest,
}

impl Request {
    /// Reads the query and the `Last-Event-ID` header; every problem at
    /// once.
    fn parse(query: Option<&str>, headers: &HeaderMap) -> Result<Request, String> {
        let mut filter = FilterSettings::default();
        let mut from = None;
        let mut last = headers
            .get("last-event-id")
            .map(|v| v.to_str().unwrap_or("?").trim().to_owned());
        let mut problems = Vec::new();
        let url = reqwest::Url::parse(&format!("http://relay/?{}", query.unwrap_or_default()))
            .map_err(|e| format!("the query cannot be read: {e}"))?;
        for (key, value) in url.query_pairs() {
            let list = match &*key {
                "type" => &mut filter.types,
                "tenant" => &mut filter.tenants,
                "source" => &mut filter.sources,
                "from" => {
                    from = Some(value.into_owned());
                    continue;
                }
                "last_event_id" => {
                    last = Some(value.into_owned());
                    continue;
                }
                other => {
                    problems.push(format!(
                        "unknown query parameter {other:?}: use type, tenant, source, from or last_event_id"
                    ));
                    continue;
                }
            };
            list.extend(value.split(',').map(|v| v.trim().to_owned()));
        }
        let start = match (last.filter(|l| !l.is_empty()), from.as_deref()) {
            (Some(last), _) => match last.parse::<u64>() {
                Ok(seq) => Start::After(seq),
                Err(_) => {
                    problems.push(format!(
                        "Last-Event-ID {last:?} is not an event id of this stream (a sequence number)"
                    ));
                    Start::Now
                }
            },
            (None, None | Some("now")) => Start::Now,
            (None, Some("earliest")) => Start::Earliest,
            (None, Some(other)) => match other.parse::<u64>() {
                Ok(seq) => Start::At(seq),
                Err(_) => {
                    problems.push(format!(
                        "from={other:?}: use now, earliest or a sequence number"
                    ));
                    Start::Now
                }
            },
        };
        if problems.is_empty() {
            Ok(Request { filter, start })
        } else {
            Err(problems.join("; "))
        }
    }
}

pub(super) async fn stream(
    State(api): State<Api>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(refusal) = api.refusal(&headers) {
        return refusal;
    }
    let request = match Request::parse(query.as_deref(), &headers) {
        Ok(request) => request,
        Err(problems) => return refuse(StatusCode::BAD_REQUEST, problems),
    };
    let Some(open) = api.streams.admit(&api.relay) else {
        let mut response = refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{} live streams are open already (ingest.http.max_streams); try again later",
                api.streams.max
            ),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return response;
    };
    let stats = api.relay.spool().stats();
    let from = match request.start {
        Start::After(seq) if seq >= stats.next_seq => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!(
                    "Last-Event-ID {seq} is past this relay's last event ({}): it came from another relay, or from a spool since replaced; connect without it (from=earliest reads everything this spool holds)",
                    stats.next_seq.saturating_sub(1)
                ),
            );
        }
        Start::After(seq) => seq + 1,
        Start::At(seq) => seq,
        Start::Now => stats.durable_seq,
        Start::Earliest => stats.first_seq,
    };
    let (queue, chunks) = mpsc::channel(QUEUE);
    let last = Arc::new(Mutex::new(None));
    let feed = Feed {
        relay: api.relay.clone(),
        filter: EventFilter::new(&request.filter),
        expected: from,
        queued: from,
        queue,
        last: last.clone(),
        stall: api.streams.stall,
        stop: api.streams.stop.clone(),
        reads: api.streams.reads.clone(),
    };
    tokio::spawn(feed.run());
    let body = EventStream {
        chunks,
        last,
        _open: open,
    };
    let mut response = Response::new(axum::body::Body::new(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // nginx buffers answers unless told not to.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response.into_response()
}

/// Reads the spool for one stream and queues its frames.
struct Feed {
    relay: Relay,
    filter: EventFilter,
    /// The sequence number the next event should have: a larger one means
    /// events were gone before this stream read them.
    expected: u64,
    /// Everything before it is in the queue (sent, or filtered out): where
    /// a client that reconnects goes on.
    queued: u64,
    queue: mpsc::Sender<Bytes>,
    /// The stream's last words, sent after the queue drains.
    last: Arc<Mutex<Option<Bytes>>>,
    stall: Duration,
    stop: CancellationToken,
    reads: Arc<tokio::sync::Semaphore>,
}

/// Why a feed stops.
enum Stop {
    /// The client went away.
    Gone,
    /// The relay ends the stream, saying why.
    End {
        reason: String,
        metric: &'static str,
    },
}

impl Feed {
    async fn run(mut self) {
        let stop = match self.feed().await {
            Ok(never) => match never {},
            Err(stop) => stop,
        };
        if let Stop::End { reason, metric } = stop {
            self.relay.metrics().stream_ended(metric);
            let last_event_id = self.queued.checked_sub(1);
            let data = serde_json::json!({ "reason": reason, "last_event_id": last_event_id });
            // The `id:` line moves the client's Last-Event-ID here even when
            // the filter let nothing through.
            let id = last_event_id
                .map(|id| format!("id: {id}\n"))
                .unwrap_or_default();
            *self.last.lock().expect("never poisoned") =
                Some(Bytes::from(format!("{id}event: end\ndata: {data}\n\n")));
        }
        // Dropping the queue ends the body once it is drained.
    }

    async fn feed(&mut self) -> Result<Infallible, Stop> {
        let mut first = String::from("retry: 2000\n");
        if let Some(before) = self.queued.checked_sub(1) {
            // A client that gets no event before it reconnects still goes
            // on from here, not from "now" again.
            first.push_str(&format!("id: {before}\n"));
        }
        first.push('\n');
        self.send(Bytes::from(first), self.queued).await?;
        loop {
            let durable = self.relay.spool().stats().durable_seq;
            if self.expected < durable {
                let (frames, through) = self.read(durable).await?;
                if !frames.is_empty() {
                    self.send(Bytes::from(frames), through).await?;
                } else {
                    self.queued = through;
                }
                continue;
            }
            tokio::select! {
                confirmation = self.relay.spool().durable(self.expected) => match confirmation {
                    Confirmation::Durable => {}
                    Confirmation::Failing(_) => tokio::time::sleep(FAILING_WAIT).await,
                    Confirmation::Stopped => return Err(stopping()),
                },
                () = tokio::time::sleep(KEEPALIVE) => {
                    // With the position: a client whose filter lets little
                    // through resumes past what it was shown nothing of.
                    let keepalive = match self.queued.checked_sub(1) {
                        Some(id) => format!(": keepalive\nid: {id}\n\n"),
                        None => ": keepalive\n\n".to_owned(),
                    };
                    // A full queue already shows the client is there.
                    if let Err(mpsc::error::TrySendError::Closed(_)) =
                        self.queue.try_send(Bytes::from(keepalive))
                    {
                        return Err(Stop::Gone);
                    }
                }
                () = self.stop.cancelled() => return Err(stopping()),
                () = self.queue.closed() => return Err(Stop::Gone),
            }
        }
    }

    /// Reads the events from `expected` to before `durable` (some of them)
    /// and renders those that pass the filter, and a gap notice where
    /// events were gone; and where the stream is after them.
    ///
    /// A reader is made for each read and dropped after it: it holds no
    /// segment file open between reads (a slow client would keep deleted
    /// segments on disk) and no read buffer.
    async fn read(&mut self, durable: u64) -> Result<(Vec<u8>, u64), Stop> {
        let mut reader: Reader = self
            .relay
            .spool()
            .follower(self.expected)
            .with_chunk(READ_BYTES);
        let max = (durable - self.expected).min(CHUNK_EVENTS as u64) as usize;
        let turn = self
            .reads
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| stopping())?;
        let read = tokio::task::spawn_blocking(move || {
            let read = reader.read(max, CHUNK_JSON, true);
            drop(turn);
            read
        })
        .await
        .map_err(|_| stopping())?;
        let batch = match read {
            Ok(batch) => batch,
            Err(error) => {
                tracing::warn!(%error, "a live stream cannot read the spool; trying again");
                tokio::time::sleep(FAILING_WAIT).await;
                return Ok((Vec::new(), self.queued));
            }
        };
        let mut frames = Vec::with_capacity(batch.json_bytes() + batch.len() * 32);
        let mut beyond = false;
        for (seq, event) in batch.events() {
            if seq >= durable {
                // Past a jump over deleted segments the reader reads from
                // where they ended; what is not durable yet waits, and what
                // the jump passed over before it is gone.
                self.gap_until(durable, &mut frames);
                beyond = true;
                break;
            }
            self.gap_until(seq, &mut frames);
            self.expected = seq + 1;
            if self.filter.matches(&event) {
                frames.extend_from_slice(b"id: ");
                frames.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
                frames.extend_from_slice(b"\nevent: audit\ndata: ");
                // Canonical JSON holds no line break.
                frames.extend_from_slice(event.envelope);
                frames.extend_from_slice(b"\n\n");
            }
        }
        if !beyond {
            self.gap_until(batch.end_seq().min(durable), &mut frames);
        }
        Ok((frames, self.expected))
    }

    /// Says which events were gone before the stream read them, if any
    /// came before `seq`.
    fn gap_until(&mut self, seq: u64, frames: &mut Vec<u8>) {
        if seq <= self.expected {
            return;
        }
        let data = serde_json::json!({
            "from": self.expected,
            "to": seq - 1,
            "reason": "the spool no longer holds these events (deleted once every plugin instance had them, or dropped by a full spool); they were delivered, or counted as dropped",
        });
        frames.extend_from_slice(format!("event: gap\ndata: {data}\n\n").as_bytes());
        self.expected = seq;
    }

    /// Queues `chunk` (the events before `through`), waiting at most
    /// `stall` for room — or until the server stops.
    async fn send(&mut self, chunk: Bytes, through: u64) -> Result<(), Stop> {
        let room = tokio::select! {
            room = tokio::time::timeout(self.stall, self.queue.reserve()) => room,
            () = self.stop.cancelled() => return Err(stopping()),
        };
        match room {
            Ok(Ok(permit)) => {
                permit.send(chunk);
                self.queued = through;
                Ok(())
            }
            Ok(Err(_)) => Err(Stop::Gone),
            Err(_) => Err(Stop::End {
                reason: format!(
                    "the client read too slowly: nothing was taken for {} (ingest.http.stream_stall); reconnect with Last-Event-ID to go on",
                    humantime::format_duration(self.stall)
                ),
                metric: "slow",
            }),
        }
    }
}

fn stopping() -> Stop {
    Stop::End {
        reason: "the relay is stopping; reconnect with Last-Event-ID once it is back".into(),
        metric: "stopping",
    }
}

/// The response body: the queued chunks, then the last words.
struct EventStream {
    chunks: mpsc::Receiver<Bytes>,
    last: Arc<Mutex<Option<Bytes>>>,
    _open: Open,
}

impl http_body::Body for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        match self.chunks.poll_recv(cx) {
            Poll::Ready(Some(chunk)) => Poll::Ready(Some(Ok(http_body::Frame::data(chunk)))),
            Poll::Ready(None) => Poll::Ready(
                self.last
                    .lock()
                    .expect("never poisoned")
                    .take()
                    .map(|chunk| Ok(http_body::Frame::data(chunk))),
            ),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str, last: Option<&str>) -> Result<Request, String> {
        let mut headers = HeaderMap::new();
        if let Some(last) = last {
            headers.insert("last-event-id", last.parse().unwrap());
        }
        Request::parse(Some(query), &headers)
    }

    #[test]
    fn filters_and_the_start_are_read_from_the_query_and_the_header() {
        let request = parse(
            "type=group.*,user.login&type=role.*&tenant=acme&source=shop",
            None,
        )
        .unwrap();
        assert_eq!(request.filter.types, ["group.*", "user.login", "role.*"]);
        assert_eq!(request.filter.tenants, ["acme"]);
        assert_eq!(request.filter.sources, ["shop"]);
        assert_eq!(request.start, Start::Now);
        assert_eq!(parse("from=earliest", None).unwrap().start, Start::Earliest);
        assert_eq!(parse("from=12", None).unwrap().start, Start::At(12));
        // The header wins: it is what a reconnecting EventSource sends.
        assert_eq!(
            parse("from=earliest", Some("41")).unwrap().start,
            Start::After(41)
        );
        assert_eq!(
            parse("last_event_id=7", None).unwrap().start,
            Start::After(7)
        );
        assert_eq!(
            parse("type=group.%2A", None).unwrap().filter.types,
            ["group.*"]
        );
    }

    #[test]
    fn every_problem_is_named_at_once() {
        let error = parse("typ=x&from=yesterday", None).unwrap_err();
        assert!(error.contains("unknown query parameter \"typ\""), "{error}");
        assert!(error.contains("from=\"yesterday\""), "{error}");
        let error = parse("", Some("evt-1")).unwrap_err();
        assert!(error.contains("Last-Event-ID \"evt-1\""), "{error}");
    }
}
