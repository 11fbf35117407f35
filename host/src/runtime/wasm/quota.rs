//! A quota on what a WASM plugin may write into its granted directory, and
//! a floor of free space it may never write below.
//!
//! Every way a plugin grows files through `wasi:filesystem` passes here:
//! positional writes, streams for writing and appending, `set-size`.
//! Growth past `grant_quota` (the bytes of every file in the directory
//! together) or into the last `relay.disk_reserve` of free space on the
//! directory's filesystem fails with `insufficient-space` — the plugin sees
//! an ordinary "disk full" — so a plugin can neither fill a shared disk
//! nor take from the spool the room it needs to write.
//!
//! Usage is counted as files grow, starting from a scan of the directory,
//! and shrinks when a plugin truncates or deletes; a plugin that reaches
//! its quota has the directory scanned again (at most once a second)
//! before it is refused, so the count never drifts into refusing a
//! plugin that has room. Renames and hard links change nothing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemCtxView, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::filesystem::types::{
    self, ErrorCode, HostDescriptor, HostDirectoryEntryStream,
};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};
use wasmtime_wasi::p2::{FsError, FsResult, OutputStream, Pollable, StreamError, StreamResult};

use super::sandbox::PluginState;

/// How often a directory at its quota is scanned again.
const RESCAN_EVERY: Duration = Duration::from_secs(1);
/// How long a free-space reading is trusted.
const FREE_SPACE_FOR: Duration = Duration::from_millis(250);
/// Most directory entries a scan looks at.
const SCAN_LIMIT: usize = 100_000;

/// The quota of one instance's granted directory (shared by every store
/// the instance runs in).
pub struct GrantQuota {
    dir: PathBuf,
    limit: u64,
    reserve: u64,
    used: AtomicU64,
    scanned: Mutex<Instant>,
    free: Mutex<Option<(Instant, u64)>>,
}

impl GrantQuota {
    /// A quota of `limit` bytes for `dir`, never writing into the last
    /// `reserve` bytes of free space of its filesystem.
    pub fn new(dir: &Path, limit: u64, reserve: u64) -> Self {
        GrantQuota {
            dir: dir.to_owned(),
            limit,
            reserve,
            used: AtomicU64::new(usage(dir)),
            scanned: Mutex::new(Instant::now()),
            free: Mutex::new(None),
        }
    }

    /// Bytes the directory holds, as counted.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `growth` more bytes, or refuses with `insufficient-space`.
    fn grow(&self, growth: u64) -> Result<(), ErrorCode> {
        if growth == 0 {
            return Ok(());
        }
        if self.used().saturating_add(growth) > self.limit {
            let mut scanned = self.scanned.lock().unwrap_or_else(|e| e.into_inner());
            if scanned.elapsed() >= RESCAN_EVERY {
                *scanned = Instant::now();
                self.used.store(usage(&self.dir), Ordering::Relaxed);
            }
            if self.used().saturating_add(growth) > self.limit {
                return Err(ErrorCode::InsufficientSpace);
            }
        }
        if self.free_space().saturating_sub(growth) < self.reserve {
            return Err(ErrorCode::InsufficientSpace);
        }
        self.used.fetch_add(growth, Ordering::Relaxed);
        Ok(())
    }

    fn shrink(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                Some(u.saturating_sub(bytes))
            });
    }

    /// Free bytes on the directory's filesystem (for unprivileged users).
    fn free_space(&self) -> u64 {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, bytes)) = *free
            && at.elapsed() < FREE_SPACE_FOR
        {
            return bytes;
        }
        let bytes = free_space(&self.dir).unwrap_or(u64::MAX);
        *free = Some((Instant::now(), bytes));
        bytes
    }
}

/// Apparent size of every file under `dir`.
fn usage(dir: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_owned()];
    let mut seen = 0;
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > SCAN_LIMIT {
                return total;
            }
            match entry.metadata() {
                Ok(meta) if meta.is_dir() => pending.push(entry.path()),
                Ok(meta) if meta.is_file() => total += meta.len(),
                _ => {}
            }
        }
    }
    total
}

fn free_space(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs writes into the struct, which lives for the call.
    (unsafe { libc::statvfs(path.as_ptr(), &mut stat) } == 0)
        .then(|| stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// The filesystem interface of a plugin: wasmtime-wasi's, with every way
/// of growing a file going through the quota first.
pub struct QuotaFs<'a> {
    inner: WasiFilesystemCtxView<'a>,
    quota: Option<Arc<GrantQuota>>,
}

/// [`HasData`] for [`QuotaFs`].
pub struct QuotaFsData;

impl HasData for QuotaFsData {
    type Data<'a> = QuotaFs<'a>;
}

fn quota_fs(state: &mut PluginState) -> QuotaFs<'_> {
    let quota = state.quota.clone();
    QuotaFs {
        inner: WasiFilesystemView::filesystem(state),
        quota,
    }
}

/// Replaces `wasi:filesystem/types` in `linker` by the quota's version
/// (the rest of WASI must be in it already).
pub fn add_to_linker(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    types::add_to_linker::<PluginState, QuotaFsData>(linker, quota_fs)?;
    linker.allow_shadowing(false);
    Ok(())
}

impl QuotaFs<'_> {
    /// The size of the file behind `fd`, if it is one.
    fn size(&mut self, fd: &Resource<types::Descriptor>) -> FsResult<u64> {
        match self.inner.table.get(fd)? {
            Descriptor::File(file) => Ok(file.file.metadata().map_err(ErrorCode::from)?.len()),
            Descriptor::Dir(_) => Err(ErrorCode::IsDirectory.into()),
        }
    }

    fn grow(&self, growth: u64) -> FsResult<()> {
        match &self.quota {
            Some(quota) => quota.grow(growth).map_err(FsError::from),
            None => Ok(()),
        }
    }

    fn shrink(&self, bytes: u64) {
        if let Some(quota) = &self.quota {
            quota.shrink(bytes);
        }
    }

    fn wrap_stream(
        &mut self,
        stream: Resource<DynOutputStream>,
        at: Option<u64>,
        size: u64,
    ) -> FsResult<Resource<DynOutputStream>> {
        let Some(quota) = self.quota.clone() else {
            return Ok(stream);
        };
        let inner = self.inner.table.delete(stream)?;
        let wrapped: DynOutputStream = Box::new(QuotaStream {
            inner,
            quota,
            at,
            size,
        });
        Ok(self.inner.table.push(wrapped)?)
    }
}

impl types::Host for QuotaFs<'_> {
    fn convert_error_code(&mut self, err: FsError) -> wasmtime::Result<ErrorCode> {
        types::Host::convert_error_code(&mut self.inner, err)
    }

    fn filesystem_error_code(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        types::Host::filesystem_error_code(&mut self.inner, err)
    }
}

impl HostDirectoryEntryStream for QuotaFs<'_> {
    async fn read_directory_entry(
        &mut self,
        stream: Resource<types::DirectoryEntryStream>,
    ) -> FsResult<Option<types::DirectoryEntry>> {
        self.inner.read_directory_entry(stream).await
    }

    fn drop(&mut self, stream: Resource<types::DirectoryEntryStream>) -> wasmtime::Result<()> {
        HostDirectoryEntryStream::drop(&mut self.inner, stream)
    }
}

impl HostDescriptor for QuotaFs<'_> {
    async fn write(
        &mut self,
        fd: Resource<types::Descriptor>,
        buf: Vec<u8>,
        offset: types::Filesize,
    ) -> FsResult<types::Filesize> {
        let size = self.size(&fd)?;
        self.grow((offset.saturating_add(buf.len() as u64)).saturating_sub(size))?;
        self.inner.write(fd, buf, offset).await
    }

    async fn set_size(
        &mut self,
        fd: Resource<types::Descriptor>,
        size: types::Filesize,
    ) -> FsResult<()> {
        let current = self.size(&fd)?;
        if size > current {
            self.grow(size - current)?;
        }
        self.inner.set_size(fd, size).await?;
        self.shrink(current.saturating_sub(size));
        Ok(())
    }

    fn write_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: types::Filesize,
    ) -> FsResult<Resource<DynOutputStream>> {
        let size = self.size(&fd)?;
        let stream = self.inner.write_via_stream(fd, offset)?;
        self.wrap_stream(stream, Some(offset), size)
    }

    fn append_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<Resource<DynOutputStream>> {
        let size = self.size(&fd)?;
        let stream = self.inner.append_via_stream(fd)?;
        self.wrap_stream(stream, None, size)
    }

    async fn open_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
        oflags: types::OpenFlags,
        flags: types::DescriptorFlags,
    ) -> FsResult<Resource<types::Descriptor>> {
        // Truncating on open gives the file's bytes back.
        let truncated = if oflags.contains(types::OpenFlags::TRUNCATE) && self.quota.is_some() {
            self.stat_size_at(&fd, path_flags, &path).await
        } else {
            None
        };
        let opened = self
            .inner
            .open_at(fd, path_flags, path, oflags, flags)
            .await?;
        self.shrink(truncated.unwrap_or(0));
        Ok(opened)
    }

    async fn unlink_file_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        let freed = match self.quota {
            Some(_) => {
                self.stat_size_at(&fd, types::PathFlags::empty(), &path)
                    .await
            }
            None => None,
        };
        self.inner.unlink_file_at(fd, path).await?;
        self.shrink(freed.unwrap_or(0));
        Ok(())
    }

    async fn advise(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: types::Filesize,
        len: types::Filesize,
        advice: types::Advice,
    ) -> FsResult<()> {
        self.inner.advise(fd, offset, len, advice).await
    }

    async fn sync_data(&mut self, fd: Resource<types::Descriptor>) -> FsResult<()> {
        self.inner.sync_data(fd).await
    }

    async fn get_flags(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<types::DescriptorFlags> {
        self.inner.get_flags(fd).await
    }

    async fn get_type(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<types::DescriptorType> {
        self.inner.get_type(fd).await
    }

    async fn set_times(
        &mut self,
        fd: Resource<types::Descriptor>,
        atim: types::NewTimestamp,
        mtim: types::NewTimestamp,
    ) -> FsResult<()> {
        self.inner.set_times(fd, atim, mtim).await
    }

    async fn read(
        &mut self,
        fd: Resource<types::Descriptor>,
        len: types::Filesize,
        offset: types::Filesize,
    ) -> FsResult<(Vec<u8>, bool)> {
        self.inner.read(fd, len, offset).await
    }

    async fn read_directory(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<Resource<types::DirectoryEntryStream>> {
        self.inner.read_directory(fd).await
    }

    async fn sync(&mut self, fd: Resource<types::Descriptor>) -> FsResult<()> {
        self.inner.sync(fd).await
    }

    async fn create_directory_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        self.inner.create_directory_at(fd, path).await
    }

    async fn stat(&mut self, fd: Resource<types::Descriptor>) -> FsResult<types::DescriptorStat> {
        self.inner.stat(fd).await
    }

    async fn stat_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
    ) -> FsResult<types::DescriptorStat> {
        self.inner.stat_at(fd, path_flags, path).await
    }

    async fn set_times_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
        atim: types::NewTimestamp,
        mtim: types::NewTimestamp,
    ) -> FsResult<()> {
        self.inner
            .set_times_at(fd, path_flags, path, atim, mtim)
            .await
    }

    async fn link_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        old_path_flags: types::PathFlags,
        old_path: String,
        new_descriptor: Resource<types::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        self.inner
            .link_at(fd, old_path_flags, old_path, new_descriptor, new_path)
            .await
    }

    fn drop(&mut self, fd: Resource<types::Descriptor>) -> wasmtime::Result<()> {
        HostDescriptor::drop(&mut self.inner, fd)
    }

    async fn readlink_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<String> {
        self.inner.readlink_at(fd, path).await
    }

    async fn remove_directory_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        self.inner.remove_directory_at(fd, path).await
    }

    async fn rename_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        old_path: String,
        new_fd: Resource<types::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        self.inner.rename_at(fd, old_path, new_fd, new_path).await
    }

    async fn symlink_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        src_path: String,
        dest_path: String,
    ) -> FsResult<()> {
        self.inner.symlink_at(fd, src_path, dest_path).await
    }

    fn read_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: types::Filesize,
    ) -> FsResult<Resource<DynInputStream>> {
        self.inner.read_via_stream(fd, offset)
    }

    async fn is_same_object(
        &mut self,
        a: Resource<types::Descriptor>,
        b: Resource<types::Descriptor>,
    ) -> wasmtime::Result<bool> {
        self.inner.is_same_object(a, b).await
    }

    async fn metadata_hash(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<types::MetadataHashValue> {
        self.inner.metadata_hash(fd).await
    }

    async fn metadata_hash_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
    ) -> FsResult<types::MetadataHashValue> {
        self.inner.metadata_hash_at(fd, path_flags, path).await
    }
}

impl QuotaFs<'_> {
    /// The size of the file at `path` under directory `fd`, if it is one.
    async fn stat_size_at(
        &mut self,
        fd: &Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: &str,
    ) -> Option<u64> {
        let fd = Resource::new_borrow(fd.rep());
        let stat = self
            .inner
            .stat_at(fd, path_flags, path.to_owned())
            .await
            .ok()?;
        (stat.type_ == types::DescriptorType::RegularFile).then_some(stat.size)
    }
}

/// A file stream whose growth is counted against the quota.
struct QuotaStream {
    inner: DynOutputStream,
    quota: Arc<GrantQuota>,
    /// Where the next write lands; `None` for an appending stream.
    at: Option<u64>,
    /// The file's size as far as this stream knows.
    size: u64,
}

impl QuotaStream {
    fn take(&mut self, len: u64) -> StreamResult<()> {
        let growth = match self.at {
            Some(at) => (at + len).saturating_sub(self.size),
            None => len,
        };
        self.quota.grow(growth).map_err(|_| {
            StreamError::LastOperationFailed(wasmtime::format_err!(
                std::io::Error::from_raw_os_error(libc::EDQUOT)
            ))
        })?;
        match &mut self.at {
            Some(at) => {
                *at += len;
                self.size = self.size.max(*at);
            }
            None => self.size += len,
        }
        Ok(())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for QuotaStream {
    async fn ready(&mut self) {
        self.inner.ready().await
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for QuotaStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.take(bytes.len() as u64)?;
        self.inner.write(bytes)
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.inner.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.inner.check_write()
    }

    fn write_zeroes(&mut self, nelem: usize) -> StreamResult<()> {
        self.take(nelem as u64)?;
        self.inner.write_zeroes(nelem)
    }

    async fn blocking_write_and_flush(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.take(bytes.len() as u64)?;
        self.inner.blocking_write_and_flush(bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_refused_at_the_quota_and_above_the_reserve() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("old"), vec![0u8; 1000]).unwrap();
        let quota = GrantQuota::new(dir.path(), 4000, 0);
        assert_eq!(quota.used(), 1000, "what is there counts from the start");
        assert_eq!(quota.grow(2500), Ok(()));
        assert_eq!(quota.grow(600), Err(ErrorCode::InsufficientSpace));
        quota.shrink(1000);
        assert_eq!(quota.grow(600), Ok(()));
        let free = free_space(dir.path()).unwrap();
        let reserved = GrantQuota::new(dir.path(), u64::MAX, free + 1);
        assert_eq!(
            reserved.grow(1),
            Err(ErrorCode::InsufficientSpace),
            "never into the reserve"
        );
    }

    #[test]
    fn a_count_that_drifted_is_corrected_before_refusing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big"), vec![0u8; 3000]).unwrap();
        let quota = GrantQuota::new(dir.path(), 4000, 0);
        // The file goes behind the count's back.
        std::fs::remove_file(dir.path().join("big")).unwrap();
        *quota.scanned.lock().unwrap() = Instant::now() - RESCAN_EVERY;
        assert_eq!(quota.grow(2000), Ok(()));
    }
}
