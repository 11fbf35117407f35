//! Packing encoded items (events, log lines) into runs that fit a
//! destination's limits — requests, objects, files — with no copy per
//! item: [`Encoded`] holds them back to back, [`split_by_limits`] cuts
//! them into runs.

/// Items (events, log lines) encoded back to back in one buffer, to be cut
/// into requests with [`split_by_limits`] without a copy per item.
#[derive(Debug, Clone, Default)]
pub struct Encoded {
    buffer: Vec<u8>,
    /// Where item k ends in `buffer`.
    ends: Vec<usize>,
}

impl Encoded {
    /// An empty buffer with room for `bytes` in `items` items.
    pub fn with_capacity(bytes: usize, items: usize) -> Self {
        Encoded {
            buffer: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(items),
        }
    }

    /// Adds the item `encode` appends.
    pub fn push(&mut self, encode: impl FnOnce(&mut Vec<u8>)) {
        encode(&mut self.buffer);
        self.ends.push(self.buffer.len());
    }

    /// Adds the item `encode` appends; if it fails, whatever it appended is
    /// dropped and no item is added.
    pub fn try_push<E>(
        &mut self,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        let start = self.buffer.len();
        match encode(&mut self.buffer) {
            Ok(()) => {
                self.ends.push(self.buffer.len());
                Ok(())
            }
            Err(error) => {
                self.buffer.truncate(start);
                Err(error)
            }
        }
    }

    /// How many items.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Item `k`'s bytes.
    pub fn get(&self, k: usize) -> &[u8] {
        self.span(k..k + 1)
    }

    /// The bytes of the items in `run`, back to back.
    pub fn span(&self, run: std::ops::Range<usize>) -> &[u8] {
        let start = if run.start == 0 {
            0
        } else {
            self.ends[run.start - 1]
        };
        &self.buffer[start..self.ends[run.end - 1]]
    }

    /// Every item's size, for [`split_by_limits`].
    pub fn sizes(&self) -> Vec<usize> {
        (0..self.len()).map(|k| self.get(k).len()).collect()
    }
}

/// Splits items of the given encoded sizes into consecutive runs that fit a
/// request: at most `max_items` each, and at most `max_bytes` in total
/// counting `overhead` bytes per item (separators, framing). An item that
/// alone exceeds `max_bytes` gets a run of its own; the caller decides what
/// to do with it.
///
/// ```
/// use auditrelay_plugin_api::packing::split_by_limits;
///
/// assert_eq!(split_by_limits(&[4, 4, 4, 9, 1], 10, 100, 1), vec![0..2, 2..3, 3..4, 4..5]);
/// assert_eq!(split_by_limits(&[1, 1, 1], 100, 2, 0), vec![0..2, 2..3]);
/// ```
pub fn split_by_limits(
    sizes: &[usize],
    max_bytes: usize,
    max_items: usize,
    overhead: usize,
) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, &size) in sizes.iter().enumerate() {
        let size = size + overhead;
        let full = i - start >= max_items.max(1) || bytes + size > max_bytes;
        if i > start && full {
            runs.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < sizes.len() {
        runs.push(start..sizes.len());
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_items_keep_their_bounds_and_a_failed_one_leaves_nothing() {
        let mut items = Encoded::default();
        items.push(|out| out.extend_from_slice(b"ab"));
        let failed = items.try_push(|out| {
            out.extend_from_slice(b"junk");
            Err("too big")
        });
        assert_eq!(failed, Err("too big"));
        items.push(|out| out.extend_from_slice(b"cde"));
        assert_eq!(items.len(), 2);
        assert_eq!(items.get(1), b"cde");
        assert_eq!(items.span(0..2), b"abcde");
        assert_eq!(items.sizes(), [2, 3]);
    }
}
