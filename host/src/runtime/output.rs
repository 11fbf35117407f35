//! A plugin's stdout and stderr, turned into lines of the relay's log:
//! a WASM plugin's WASI streams, a native plugin runner's stderr.
//!
//! Writes are taken synchronously (a plugin never waits on its output), cut
//! into lines and handed to the instance's
//! [`PluginServices::output_line`]: masked, capped, within its log budget,
//! logged with the instance name (stdout at `info`, stderr at `warn`). The
//! last few stderr lines are kept (masked), because a Rust plugin prints
//! its panic message there just before it traps.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;

use super::services::PluginServices;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// A line without an end is logged once it is this long.
const MAX_LINE: usize = super::services::MAX_LINE;
/// stderr lines kept for fault reports.
const TAIL_LINES: usize = 8;

/// Which stream a sink serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The plugin's stdout (logged at info).
    Stdout,
    /// The plugin's stderr (logged at warn, tail kept).
    Stderr,
}

/// Collects one stream of one instance; clones share the buffer.
#[derive(Clone)]
pub struct OutputSink {
    inner: Arc<SinkInner>,
}

struct SinkInner {
    services: PluginServices,
    stream: Stream,
    partial: Mutex<Vec<u8>>,
    tail: Mutex<VecDeque<String>>,
}

impl OutputSink {
    /// A sink for `stream` of the instance `services` serve.
    pub fn new(services: PluginServices, stream: Stream) -> Self {
        OutputSink {
            inner: Arc::new(SinkInner {
                services,
                stream,
                partial: Mutex::new(Vec::new()),
                tail: Mutex::new(VecDeque::new()),
            }),
        }
    }

    /// Takes output as it comes; complete lines are logged at once.
    pub fn write(&self, bytes: &[u8]) {
        let mut partial = self.inner.partial.lock().unwrap_or_else(|e| e.into_inner());
        partial.extend_from_slice(bytes);
        while let Some(end) = partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = partial.drain(..=end).collect();
            self.emit(&line[..line.len() - 1]);
        }
        if partial.len() > MAX_LINE {
            let line = std::mem::take(&mut *partial);
            self.emit(&line);
        }
    }

    /// Logs whatever is left without a line end (called when the instance ends).
    pub fn finish(&self) {
        let rest =
            std::mem::take(&mut *self.inner.partial.lock().unwrap_or_else(|e| e.into_inner()));
        if !rest.is_empty() {
            self.emit(&rest);
        }
    }

    /// The last stderr lines, oldest first, and forgets them.
    pub fn take_tail(&self) -> Vec<String> {
        self.finish();
        let mut tail = self.inner.tail.lock().unwrap_or_else(|e| e.into_inner());
        tail.drain(..).collect()
    }

    fn emit(&self, line: &[u8]) {
        // A little more than a line is kept, so that a secret across the
        // cut is masked before the cut (PluginServices::output_line).
        let text = String::from_utf8_lossy(&line[..line.len().min(2 * MAX_LINE)]);
        let text = text.trim_end_matches('\r');
        if text.trim().is_empty() {
            return;
        }
        let services = &self.inner.services;
        match self.inner.stream {
            Stream::Stdout => {
                services.output_line("stdout", text, false);
            }
            Stream::Stderr => {
                let masked = services.output_line("stderr", text, true);
                let mut tail = self.inner.tail.lock().unwrap_or_else(|e| e.into_inner());
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(masked);
            }
        }
    }
}

impl IsTerminal for OutputSink {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for OutputSink {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for OutputSink {
    async fn ready(&mut self) {}
}

impl OutputStream for OutputSink {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        OutputSink::write(self, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl AsyncWrite for OutputSink {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        OutputSink::write(&self, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_stderr_lines() {
        let sink = OutputSink::new(PluginServices::describe_only(), Stream::Stderr);
        sink.write(b"first\nthread '<unnamed>' panicked at src/lib.rs:1:1:\nboom");
        sink.write(b"\r\nnote: run with `RUST_BACKTRACE=1`\n");
        assert_eq!(
            sink.take_tail(),
            [
                "first",
                "thread '<unnamed>' panicked at src/lib.rs:1:1:",
                "boom",
                "note: run with `RUST_BACKTRACE=1`"
            ]
        );
        assert!(sink.take_tail().is_empty());
    }

    #[test]
    fn endless_lines_are_cut() {
        let sink = OutputSink::new(PluginServices::describe_only(), Stream::Stderr);
        sink.write(&vec![b'x'; MAX_LINE + 10]);
        sink.write(b"next\n");
        let tail = sink.take_tail();
        assert_eq!(tail.len(), 2);
        assert!(
            tail[0].starts_with(&"x".repeat(MAX_LINE)),
            "{}",
            tail[0].len()
        );
        assert!(
            tail[0].ends_with("… [cut: 16394 bytes in all]"),
            "{}",
            &tail[0][MAX_LINE..]
        );
        assert_eq!(tail[1], "next");
    }
}
