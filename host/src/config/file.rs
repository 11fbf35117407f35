//! `[ingest.file.<name>]`: files other systems write their audit lines to,
//! tailed through rotation, each line mapped to envelopes by a mapper
//! plugin (or read as an envelope when the source names none).

use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use super::webhook::{MapperSettings, default_max_refused_bytes};
use super::{default_true, units};

/// `[ingest.file.<name>]`: files tailed line by line.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    /// Whether `auditrelay run` reads the files.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Files or globs (`/var/log/app/audit.log*`), relative to the config
    /// file's directory. Include the rotated names so that a file rotated
    /// twice while the relay was down is still read.
    pub paths: Vec<PathBuf>,
    /// What a line is: `json-lines` (one JSON document per line) or
    /// `lines` (text, for a mapper that parses it).
    #[serde(default)]
    pub format: LineFormat,
    /// Where to begin in the files found at the very first start (no
    /// cursor yet); files that appear later are always read whole.
    #[serde(default)]
    pub start_at: StartAt,
    /// Longest wait between two looks at the files (change events wake the
    /// source sooner where the filesystem sends them).
    #[serde(default = "default_poll_interval", with = "units::duration")]
    pub poll_interval: Duration,
    /// Whether to ask the OS for change events (inotify); without them, or
    /// where they cannot be had, the source looks every `poll_interval`.
    #[serde(default = "default_true")]
    pub watch: bool,
    /// How long a file that no longer matches `paths` (rotated away,
    /// removed) is still read after its last growth: a writer may append
    /// to it until it reopens.
    #[serde(default = "default_rotate_wait", with = "units::duration")]
    pub rotate_wait: Duration,
    /// Most lines read, mapped and spooled at once.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// The longest line taken; a longer one is refused (its first bytes kept
    /// in `refused.ndjson`) and skipped to its end.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: ByteSize,
    /// The most `<data_dir>/sources/<name>/refused.ndjson` may hold; past
    /// it, the source stops (its cursor where it was) until it is moved.
    #[serde(default = "default_max_refused_bytes")]
    pub max_refused_bytes: ByteSize,
    /// The mapper that turns a line into envelopes; none: each line is an
    /// envelope.
    #[serde(default)]
    pub mapper: Option<MapperSettings>,
}

/// `[ingest.file.<name>] format`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LineFormat {
    /// One JSON document per line (`application/x-ndjson`).
    #[default]
    JsonLines,
    /// Plain text lines (`text/plain`).
    Lines,
}

impl LineFormat {
    /// The content type a mapper is told.
    pub fn content_type(self) -> &'static str {
        match self {
            LineFormat::JsonLines => "application/x-ndjson",
            LineFormat::Lines => "text/plain",
        }
    }
}

/// `[ingest.file.<name>] start_at`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    /// Every line already in the files.
    #[default]
    Beginning,
    /// Only lines written after the first start.
    End,
}

fn default_poll_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_rotate_wait() -> Duration {
    Duration::from_secs(5)
}
fn default_batch() -> usize {
    1000
}
fn default_max_line_bytes() -> ByteSize {
    ByteSize::mib(1)
}
