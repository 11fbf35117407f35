//! The open HTTP connections, capped, with the idle ones given up first.
//!
//! A connection is *busy* from the moment a request's headers have arrived
//! until its answer has been written out, and *idle* otherwise: waiting
//! for the next request on keep-alive, or still sending its headers
//! slowly. At the cap, a new connection takes the place of the connection
//! that has been idle the longest, so a flood of idle or half-open
//! connections can delay real requests by one round trip but never lock
//! them out; only when every connection is busy is a new one refused.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// What an arriving connection gets.
pub(super) enum Admission {
    /// Serve it; the slot frees itself when dropped.
    Admitted(Slot),
    /// Serve it once `closed` resolves: the longest-idle connection was
    /// told to close to make room, and its descriptor is free only when it
    /// has.
    AfterEviction(Slot, Closed),
    /// Every connection is busy: refuse it.
    Full,
}

/// Resolves when an evicted connection has closed.
pub(super) struct Closed(Arc<Notify>);

impl Closed {
    /// Waits for the connection to be gone.
    pub(super) async fn wait(self) {
        self.0.notified().await
    }
}

struct Entry {
    /// Requests in progress (hyper serves one at a time on HTTP/1, but a
    /// response body may still be written when the next request starts).
    busy: usize,
    /// When it last became idle (or opened).
    idle_since: Instant,
    /// Cancelled to close it.
    close: CancellationToken,
    /// Told to close to make room; still counted until it has.
    evicted: bool,
    /// Notified when its slot is dropped (the connection has closed).
    gone: Arc<Notify>,
}

struct State {
    next_id: u64,
    open: HashMap<u64, Entry>,
}

/// The table of open connections.
pub(super) struct Connections {
    max: usize,
    state: Mutex<State>,
    metrics: Arc<Metrics>,
}

impl Connections {
    /// A table holding at most `max` connections.
    pub(super) fn new(max: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Connections {
            max: max.max(1),
            state: Mutex::new(State {
                next_id: 0,
                open: HashMap::new(),
            }),
            metrics,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a new connection in, closing the longest-idle one if the
    /// table is full.
    pub(super) fn admit(self: &Arc<Self>) -> Admission {
        let mut state = self.lock();
        let mut evicted = None;
        // Connections still closing count: their descriptors are not free.
        if state.open.len() >= self.max {
            let idlest = state
                .open
                .values_mut()
                .filter(|entry| entry.busy == 0 && !entry.evicted)
                .min_by_key(|entry| entry.idle_since);
            match idlest {
                Some(entry) => {
                    entry.evicted = true;
                    entry.close.cancel();
                    evicted = Some(Closed(entry.gone.clone()));
                    self.metrics.http_connection_closed("evicted_idle");
                }
                None => {
                    self.metrics.http_connection_closed("refused_full");
                    return Admission::Full;
                }
            }
        }
        let id = state.next_id;
        state.next_id += 1;
        let close = CancellationToken::new();
        state.open.insert(
            id,
            Entry {
                busy: 0,
                idle_since: Instant::now(),
                close: close.clone(),
                evicted: false,
                gone: Arc::new(Notify::new()),
            },
        );
        self.metrics.http_connections(state.open.len() as i64);
        let slot = Slot {
            table: self.clone(),
            id,
            close,
            streaming: Default::default(),
        };
        match evicted {
            Some(closed) => Admission::AfterEviction(slot, closed),
            None => Admission::Admitted(slot),
        }
    }

    fn set_busy(&self, id: u64, busy: bool) {
        let mut state = self.lock();
        if let Some(entry) = state.open.get_mut(&id) {
            if busy {
                entry.busy += 1;
            } else {
                entry.busy = entry.busy.saturating_sub(1);
                entry.idle_since = Instant::now();
            }
        }
    }
}

/// One admitted connection's place in the table.
pub(super) struct Slot {
    table: Arc<Connections>,
    id: u64,
    close: CancellationToken,
    /// Whether it carries a live stream, an answer that never ends by
    /// itself: on shutdown it is given a moment, not `body_timeout`.
    streaming: std::sync::atomic::AtomicBool,
}

impl Slot {
    /// Marks the connection as carrying a live stream.
    pub(super) fn set_streaming(&self) {
        self.streaming
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether it carries a live stream.
    pub(super) fn is_streaming(&self) -> bool {
        self.streaming.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Resolves when the table gives this connection's place to another.
    pub(super) async fn evicted(&self) {
        self.close.cancelled().await
    }

    /// Marks the connection busy until the guard is dropped.
    pub(super) fn busy(&self) -> Busy {
        self.table.set_busy(self.id, true);
        Busy {
            table: self.table.clone(),
            id: self.id,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.table.lock();
        if let Some(entry) = state.open.remove(&self.id) {
            // notify_one stores a permit: a waiter that comes later still
            // sees it.
            entry.gone.notify_one();
        }
        self.table.metrics.http_connections(state.open.len() as i64);
    }
}

/// Keeps a connection busy while it lives.
pub(super) struct Busy {
    table: Arc<Connections>,
    id: u64,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.table.set_busy(self.id, false);
    }
}

/// A response body that keeps its connection busy until it has been
/// written out (dropped by hyper).
pub(super) struct BusyBody<B> {
    pub(super) body: B,
    pub(super) _busy: Busy,
}

impl<B: Body<Data = Bytes> + Unpin> Body for BusyBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(admission: Admission) -> Slot {
        match admission {
            Admission::Admitted(slot) | Admission::AfterEviction(slot, _) => slot,
            Admission::Full => panic!("refused"),
        }
    }

    async fn told_to_close(slot: &Slot) -> bool {
        tokio::time::timeout(std::time::Duration::from_millis(100), slot.evicted())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn the_longest_idle_connection_makes_room_and_busy_ones_never_do() {
        let table = Connections::new(2, Arc::new(Metrics::new()));
        let a = admitted(table.admit());
        let b = admitted(table.admit());
        let b_busy = b.busy();
        // Full: idle `a` makes room for `c`; busy `b` is left alone, and
        // `c` may start once `a` has closed.
        let Admission::AfterEviction(c, closed) = table.admit() else {
            panic!("a full table with an idle connection evicts it");
        };
        assert!(told_to_close(&a).await && !told_to_close(&b).await);
        drop(a);
        tokio::time::timeout(std::time::Duration::from_millis(100), closed.wait())
            .await
            .expect("the evicted connection's close is seen");
        let c_busy = c.busy();
        // Every connection busy: refused.
        assert!(matches!(table.admit(), Admission::Full));
        // `b` finished its request first, so it has been idle longest.
        drop(b_busy);
        drop(c_busy);
        let _d = admitted(table.admit());
        assert!(told_to_close(&b).await && !told_to_close(&c).await);
    }
}
