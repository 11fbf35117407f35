//! How the spool reaches its segment files: through the operating system,
//! or through a [`FaultPlan`] that makes chosen calls fail.
//!
//! The plan is the seam the spool's bad-day tests use: a call can fail for
//! reasons no test can arrange on a real disk at will (`EMFILE` when the
//! process runs out of descriptors, `EIO` from a dying disk, a sync that
//! fails), and the spool must never lose its place or claim durability
//! when one does.

use std::fmt;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// Replaces the file at `path` with `bytes`, whole: written beside it
/// (`<name>.tmp`) and renamed over it, so a crash leaves the old file or
/// the new one, never a mix. With `sync`, the new file and then its
/// directory are synced too, so the replacement also survives power loss.
pub fn replace_whole(path: &Path, bytes: &[u8], sync: bool) -> io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let mut file = File::create(&tmp)?;
    io::Write::write_all(&mut file, bytes)?;
    if sync {
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if sync && let Some(dir) = path.parent() {
        // The rename itself survives power loss only once the directory is.
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A call the spool makes on a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileOp {
    /// A reader opening a segment file.
    Open,
    /// A reader reading bytes at an offset of an open segment file.
    Read,
    /// The writer writing records to a segment file.
    Write,
    /// The writer syncing a segment file to disk.
    Sync,
    /// The writer syncing the segments directory after creating a segment.
    SyncDir,
}

/// Decides which calls fail, and with what error.
pub trait FaultPlan: Send + Sync {
    /// The error `op` on `path` fails with, or `None` to let it run.
    fn fail(&self, op: FileOp, path: &Path) -> Option<io::Error>;
}

/// How the spool reaches segment files; the operating system unless a
/// [`FaultPlan`] is installed.
#[derive(Clone, Default)]
pub struct SegmentFiles {
    faults: Option<Arc<dyn FaultPlan>>,
}

impl fmt::Debug for SegmentFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.faults {
            Some(_) => "SegmentFiles(with a fault plan)",
            None => "SegmentFiles(os)",
        })
    }
}

impl SegmentFiles {
    /// Segment files reached through `plan` first: each call it fails
    /// returns its error instead of reaching the disk.
    pub fn with_faults(plan: Arc<dyn FaultPlan>) -> Self {
        SegmentFiles { faults: Some(plan) }
    }

    /// The error the plan has `op` on `path` fail with, if any: the writer
    /// asks before each write and sync.
    pub(super) fn injected(&self, op: FileOp, path: &Path) -> io::Result<()> {
        match self.faults.as_ref().and_then(|plan| plan.fail(op, path)) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Opens a segment file for reading.
    pub fn open(&self, path: &Path) -> io::Result<File> {
        self.injected(FileOp::Open, path)?;
        File::open(path)
    }

    /// Fills `buf` from `offset` of `file` (the segment at `path`).
    pub fn read_exact_at(
        &self,
        file: &File,
        path: &Path,
        buf: &mut [u8],
        offset: u64,
    ) -> io::Result<()> {
        self.injected(FileOp::Read, path)?;
        #[cfg(unix)]
        {
            std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
        }
        #[cfg(not(unix))]
        {
            use std::io::{Read, Seek, SeekFrom};
            let mut file = file;
            file.seek(SeekFrom::Start(offset))?;
            file.read_exact(buf)
        }
    }
}
