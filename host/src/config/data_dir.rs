//! The relay's own state directory and its layout, in one place.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `relay.data_dir`: the relay's own state. The one place that knows what
/// lies where in it:
///
/// | path | holds |
/// |---|---|
/// | `spool/` | segments, cursors, the lock ([`spool`](Self::spool)) |
/// | `dead-letters/` | one NDJSON file per instance ([`dead_letters`](Self::dead_letters)) |
/// | `cache/` | compiled plugins, unless `relay.cache_dir` says otherwise ([`cache`](Self::cache)) |
/// | `relay.json` | where a running relay listens ([`address_file`](Self::address_file)) |
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct DataDir(PathBuf);

impl DataDir {
    /// The data directory at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DataDir(path.into())
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// For resolving and expanding the configured path.
    pub(super) fn path_mut(&mut self) -> &mut PathBuf {
        &mut self.0
    }

    /// The spool's directory.
    pub fn spool(&self) -> PathBuf {
        self.0.join("spool")
    }

    /// Where refused events are kept, per instance.
    pub fn dead_letters(&self) -> PathBuf {
        self.0.join("dead-letters")
    }

    /// What a source keeps: `<name>/replay` (a webhook's signatures used),
    /// `<name>/cursor.json` (a file source's positions) and
    /// `<name>/refused.ndjson` (records it could not make events of).
    pub fn sources(&self) -> PathBuf {
        self.0.join("sources")
    }

    /// The relay's signing key (by default) and its checkpoint log.
    pub fn integrity(&self) -> PathBuf {
        self.0.join("integrity")
    }

    /// The default compiled-plugin cache.
    pub fn cache(&self) -> PathBuf {
        self.0.join("cache")
    }

    /// Where `auditrelay run` records the address it listens on, for the
    /// operator commands.
    pub fn address_file(&self) -> PathBuf {
        self.0.join("relay.json")
    }
}
