//! Reading the spool for one plugin instance.

use std::fs::File;
use std::io;
use std::sync::Arc;

use auditrelay_plugin_api::batch;

use super::format::{self, FrameKey, Parsed};
use super::{Batch, ConsumerId, Shared};

/// Bytes read from a segment at a time (more when one event is larger).
const CHUNK: u64 = 1024 * 1024;

/// Where a reader is in a segment file.
struct Position {
    first_seq: u64,
    file: File,
    offset: u64,
}

/// Reads the spool from one instance's cursor, in order; see
/// [`Spool::reader`](super::Spool::reader).
pub struct Reader {
    shared: Arc<Shared>,
    /// Whose cursor it follows (none: the spool reading itself back).
    consumer: Option<ConsumerId>,
    next_seq: u64,
    at: Option<Position>,
    buf: Vec<u8>,
    /// Bytes read from a segment at a time (more when one event is larger).
    chunk: u64,
}

/// What the reader needs to know about the segment it reads.
struct Target {
    first_seq: u64,
    path: std::path::PathBuf,
    /// Bytes written so far.
    len: u64,
    end_seq: u64,
    offset_hint: u64,
    /// Whether later segments exist (this one will not grow).
    sealed: bool,
    /// The key its records are written with.
    key: FrameKey,
}

impl Reader {
    pub(super) fn new(shared: Arc<Shared>, consumer: ConsumerId) -> Self {
        let next_seq = shared.lock().consumers[consumer.0].cursor;
        Reader {
            consumer: Some(consumer),
            ..Self::from_seq(shared, next_seq)
        }
    }

    /// A reader from `next_seq` that follows no instance's cursor.
    pub(super) fn from_seq(shared: Arc<Shared>, next_seq: u64) -> Self {
        Reader {
            shared,
            consumer: None,
            next_seq,
            at: None,
            buf: Vec::new(),
            chunk: CHUNK,
        }
    }

    /// Reads at most `chunk` bytes of a segment at a time (a live stream's
    /// reader, which holds its buffer for a moment only, reads little).
    pub fn with_chunk(self, chunk: u64) -> Self {
        Reader { chunk, ..self }
    }

    /// The sequence number this reader reads next.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Whether the reader has read everything written so far.
    pub fn caught_up(&self) -> bool {
        self.next_seq >= self.shared.lock().written_seq
    }

    /// Up to `max_events` events from where the reader is, stopping before
    /// `max_json` bytes of JSON — except that with `at_least_one`, one event
    /// larger than that still comes. Empty when nothing more is written.
    ///
    /// A read that fails (a segment cannot be opened or read) moves
    /// nothing: the reader is where it was before the call, so the next
    /// call reads the same events again. Events are never skipped because
    /// the disk or the descriptor table had a bad moment.
    pub fn read(
        &mut self,
        max_events: usize,
        max_json: usize,
        at_least_one: bool,
    ) -> io::Result<Batch> {
        let before = self.next_seq;
        let read = self.read_from_here(max_events, max_json, at_least_one);
        if read.is_err() {
            self.next_seq = before;
            // Where in which file is no longer known for sure: find the
            // place again from the spool's index on the next call.
            self.at = None;
        }
        read
    }

    fn read_from_here(
        &mut self,
        max_events: usize,
        max_json: usize,
        at_least_one: bool,
    ) -> io::Result<Batch> {
        let mut batch = Batch::empty(self.next_seq);
        if max_events == 0 {
            return Ok(batch);
        }
        let mut json = 0usize;
        let mut chunk = self.chunk.max((max_json as u64).saturating_add(4096));
        'segments: while let Some(target) = self.target() {
            if self
                .at
                .as_ref()
                .is_none_or(|p| p.first_seq != target.first_seq)
            {
                let file = self.shared.options.files.open(&target.path)?;
                self.at = Some(Position {
                    first_seq: target.first_seq,
                    file,
                    offset: target.offset_hint,
                });
            }
            loop {
                let at = self.at.as_mut().expect("opened above");
                if at.offset >= target.len {
                    if target.sealed && self.next_seq < target.end_seq {
                        // Damage at the end of the segment; recovery reported it.
                        self.next_seq = target.end_seq;
                    }
                    if target.sealed {
                        continue 'segments;
                    }
                    break 'segments;
                }
                let want = (target.len - at.offset).min(chunk);
                self.buf.resize(want as usize, 0);
                self.shared.options.files.read_exact_at(
                    &at.file,
                    &target.path,
                    &mut self.buf,
                    at.offset,
                )?;
                let mut used = 0;
                while used < self.buf.len() {
                    match format::parse_frame(&self.buf[used..], target.key) {
                        Parsed::Frame(frame) if frame.seq < self.next_seq => used += frame.len,
                        // Checked out but does not decode: a record this
                        // version cannot read. Plugins never see it.
                        Parsed::Frame(frame) if !decodes(frame.payload) => {
                            tracing::error!(
                                segment = %target.path.display(),
                                seq = frame.seq,
                                "a spool record does not decode as an event; skipping it (run `auditrelay spool verify`)"
                            );
                            self.next_seq = frame.seq + 1;
                            used += frame.len;
                        }
                        Parsed::Frame(frame) => {
                            let size =
                                batch::envelope_len(frame.payload).unwrap_or(frame.payload.len());
                            let exempt = at_least_one && batch.is_empty();
                            let full =
                                batch.len() >= max_events || (!exempt && json + size > max_json);
                            if full {
                                at.offset += used as u64;
                                break 'segments;
                            }
                            batch.push(frame.seq, frame.payload);
                            json += size;
                            self.next_seq = frame.seq + 1;
                            used += frame.len;
                        }
                        Parsed::Incomplete if used > 0 => break,
                        Parsed::Incomplete if at.offset + (self.buf.len() as u64) < target.len => {
                            // One event larger than the chunk: read it whole.
                            chunk *= 2;
                            break;
                        }
                        Parsed::Incomplete | Parsed::Damaged => {
                            // Damage that appeared after start (recovery checks
                            // everything then): skip to the next intact record.
                            let skip = format::resync(&self.buf[used..], target.key, self.next_seq)
                                .unwrap_or(self.buf.len() - used);
                            tracing::error!(
                                segment = %target.path.display(),
                                offset = at.offset + used as u64,
                                bytes = skip,
                                "damaged bytes in the spool; skipping them (run `auditrelay spool verify`)"
                            );
                            used += skip;
                        }
                    }
                }
                at.offset += used as u64;
            }
        }
        batch.set_end_seq(self.next_seq);
        Ok(batch)
    }

    /// The segment holding the next readable event, if one is written.
    fn target(&mut self) -> Option<Target> {
        let state = self.shared.lock();
        let cursor = self
            .consumer
            .map_or(0, |consumer| state.consumers[consumer.0].cursor);
        if cursor > self.next_seq {
            // Moved forward for us (spool.when_full = "drop_oldest").
            self.next_seq = cursor;
            self.at = None;
        }
        if self.next_seq >= state.written_seq {
            return None;
        }
        let Some(index) = state
            .segments
            .iter()
            .position(|s| s.end_seq > self.next_seq)
        else {
            // Records lost at the end of the spool (reported at start):
            // nothing holds them, so go on after them.
            self.next_seq = state.written_seq;
            self.at = None;
            return None;
        };
        let segment = &state.segments[index];
        if segment.first_seq > self.next_seq {
            // Records no segment holds (reported at start): go on after them.
            self.next_seq = segment.first_seq;
            self.at = None;
        }
        Some(Target {
            first_seq: segment.first_seq,
            path: segment.path.clone(),
            len: segment.len,
            end_seq: segment.end_seq,
            offset_hint: segment.offset_before(self.next_seq),
            sealed: index + 1 < state.segments.len(),
            key: segment.key,
        })
    }
}

/// Whether `payload` is one event exactly as [`batch::encode`] lays it out.
fn decodes(payload: &[u8]) -> bool {
    batch::decode(payload).is_ok_and(|(_, used)| used == payload.len())
}
