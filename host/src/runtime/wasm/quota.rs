//! Bounds on what a WASM plugin may do to its granted directory: a quota
//! on what it may write, a cap on the files it may hold open, and a floor
//! of free space (and of free inodes) it may never take.
//!
//! Every way a plugin grows the directory passes here: positional writes,
//! streams for writing and appending, `set-size`, and every entry it
//! creates (files, directories, symbolic and hard links, each counted as
//! [`ENTRY_BYTES`]). Growth past `grant_quota` (the bytes of every file in
//! the directory together, plus its entries) or into the last
//! `relay.disk_reserve` of free space on the directory's filesystem fails
//! with `insufficient-space` — the plugin sees an ordinary "disk full" — so
//! a plugin can neither fill a shared disk nor take from the spool the room
//! it needs to write. Opening more than [`MAX_OPEN_FILES`] at once fails
//! with `insufficient-memory` (WASI has no "too many open files"), so a
//! plugin cannot starve the relay's descriptor table.
//!
//! Usage is counted as files grow, starting from a scan of the directory,
//! and shrinks when a plugin truncates or deletes — but a file deleted
//! while the plugin holds it open keeps its bytes on disk until it is
//! closed, and counts until then. A plugin that reaches its quota has the
//! directory scanned again (at most once a second) before it is refused,
//! so the count never drifts into refusing a plugin that has room.

use std::collections::{HashMap, HashSet};
use std::os::fd::AsRawFd;
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

/// Most files and directories a plugin may hold open at once.
pub const MAX_OPEN_FILES: usize = 16;
/// What each directory entry a plugin creates counts as, in bytes (a
/// block and an inode): an empty file, a directory or a link is not free.
pub const ENTRY_BYTES: u64 = 4096;
/// Free inodes on the granted directory's filesystem a plugin never takes.
const INODE_RESERVE: u64 = 1024;
/// How often a directory at its quota is scanned again.
const RESCAN_EVERY: Duration = Duration::from_secs(1);
/// How long a free-space reading is trusted (less what was granted since).
const FREE_SPACE_FOR: Duration = Duration::from_millis(250);
/// Most directory entries a scan looks at; a directory with more counts
/// as full.
const SCAN_LIMIT: usize = 1_000_000;

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
    /// `hidden` says how many bytes a scan cannot see (files deleted but
    /// held open), asked only when the directory is scanned again.
    fn grow(&self, growth: u64, hidden: impl FnOnce() -> u64) -> Result<(), ErrorCode> {
        if growth == 0 {
            return Ok(());
        }
        if self.used().saturating_add(growth) > self.limit {
            let mut scanned = self.scanned.lock().unwrap_or_else(|e| e.into_inner());
            if scanned.elapsed() >= RESCAN_EVERY {
                *scanned = Instant::now();
                let seen = usage(&self.dir).saturating_add(hidden());
                self.used.store(seen, Ordering::Relaxed);
            }
            if self.used().saturating_add(growth) > self.limit {
                return Err(ErrorCode::InsufficientSpace);
            }
        }
        self.take_free_space(growth)?;
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

    /// Takes `growth` bytes of the filesystem's free space (for
    /// unprivileged users) unless that would eat into the reserve. A
    /// reading is reused for a moment, less what was taken since.
    fn take_free_space(&self, growth: u64) -> Result<(), ErrorCode> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = match *free {
            Some((at, bytes)) if at.elapsed() < FREE_SPACE_FOR => bytes,
            _ => free_space(&self.dir).map_or(u64::MAX, |(bytes, _)| bytes),
        };
        if bytes.saturating_sub(growth) < self.reserve {
            return Err(ErrorCode::InsufficientSpace);
        }
        *free = Some((Instant::now(), bytes - growth));
        Ok(())
    }

    /// Takes room for one more directory entry, unless the filesystem is
    /// out of inodes but for the reserve.
    fn grow_entry(&self, hidden: impl FnOnce() -> u64) -> Result<(), ErrorCode> {
        if free_space(&self.dir).is_some_and(|(_, inodes)| inodes < INODE_RESERVE) {
            return Err(ErrorCode::InsufficientSpace);
        }
        self.grow(ENTRY_BYTES, hidden)
    }
}

/// What a scan counts for `dir`: the apparent size of every file under it
/// and [`ENTRY_BYTES`] per entry (`u64::MAX` past [`SCAN_LIMIT`] entries).
fn usage(dir: &Path) -> u64 {
    let mut total: u64 = 0;
    let mut pending = vec![dir.to_owned()];
    let mut seen = 0;
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > SCAN_LIMIT {
                return u64::MAX;
            }
            total = total.saturating_add(ENTRY_BYTES);
            match entry.metadata() {
                Ok(meta) if meta.is_dir() => pending.push(entry.path()),
                Ok(meta) if meta.is_file() => total = total.saturating_add(meta.len()),
                _ => {}
            }
        }
    }
    total
}

/// Free bytes and free inodes on the filesystem of `dir`, as an
/// unprivileged user may use them.
fn free_space(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs writes into the struct, which lives for the call.
    (unsafe { libc::statvfs(path.as_ptr(), &mut stat) } == 0).then(|| {
        (
            stat.f_bavail as u64 * stat.f_frsize as u64,
            stat.f_favail as u64,
        )
    })
}

/// What one store's plugin holds open in its granted directory.
#[derive(Default)]
pub struct OpenFiles {
    /// Descriptors it opened (their resource ids).
    reps: HashSet<u32>,
    /// Files it deleted while holding them open, by (device, inode): their
    /// bytes stay on disk, unseen by a scan, until nothing holds them (no
    /// descriptor and no stream: see [`OpenFiles::settle`]).
    orphans: HashMap<(u64, u64), Arc<std::fs::File>>,
    /// Files written through streams, which hold the file open by
    /// themselves, even after its descriptor is dropped.
    streamed: Vec<std::sync::Weak<std::fs::File>>,
}

/// An open file a plugin holds: its resource id, (device, inode), links,
/// and the file.
type HeldFile = (u32, (u64, u64), u64, Arc<std::fs::File>);

/// What `fstat` says of an open file: (device, inode), links, size.
fn file_identity(file: &impl AsRawFd) -> Option<((u64, u64), u64, u64)> {
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes into the struct, which lives for the call; the
    // descriptor is borrowed from an open file.
    (unsafe { libc::fstat(file.as_raw_fd(), &mut stat) } == 0).then_some((
        (stat.st_dev as u64, stat.st_ino as u64),
        stat.st_nlink as u64,
        stat.st_size as u64,
    ))
}

/// The filesystem interface of a plugin: wasmtime-wasi's, with every way
/// of growing a file going through the quota first.
pub struct QuotaFs<'a> {
    inner: WasiFilesystemCtxView<'a>,
    quota: Option<Arc<GrantQuota>>,
    open: Arc<Mutex<OpenFiles>>,
}

/// [`HasData`] for [`QuotaFs`].
pub struct QuotaFsData;

impl HasData for QuotaFsData {
    type Data<'a> = QuotaFs<'a>;
}

fn quota_fs(state: &mut PluginState) -> QuotaFs<'_> {
    let quota = state.quota.clone();
    let open = state.open_files.clone();
    QuotaFs {
        inner: WasiFilesystemView::filesystem(state),
        quota,
        open,
    }
}

impl OpenFiles {
    /// Gives back the bytes of deleted files nothing holds any more (the
    /// map's own reference is the last), returning how many.
    fn settle(&mut self) -> u64 {
        let mut freed = 0;
        self.orphans.retain(|_, file| {
            if Arc::strong_count(file) > 1 {
                return true;
            }
            freed += file_identity(&**file).map_or(0, |(_, _, size)| size) + ENTRY_BYTES;
            false
        });
        self.streamed.retain(|file| file.strong_count() > 0);
        freed
    }

    /// Bytes of files deleted but held open, which a scan cannot see.
    fn hidden(&self) -> u64 {
        self.orphans
            .values()
            .filter_map(|file| file_identity(&**file))
            .map(|(_, _, size)| size + ENTRY_BYTES)
            .sum()
    }
}

fn lock(open: &Mutex<OpenFiles>) -> std::sync::MutexGuard<'_, OpenFiles> {
    open.lock().unwrap_or_else(|e| e.into_inner())
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
            Some(quota) => quota
                .grow(growth, || lock(&self.open).hidden())
                .map_err(FsError::from),
            None => Ok(()),
        }
    }

    /// Takes room for a directory entry about to be created.
    fn grow_entry(&self) -> FsResult<()> {
        match &self.quota {
            Some(quota) => quota
                .grow_entry(|| lock(&self.open).hidden())
                .map_err(FsError::from),
            None => Ok(()),
        }
    }

    /// The open files the plugin holds.
    fn held_files(&self) -> Vec<HeldFile> {
        let reps: Vec<u32> = lock(&self.open).reps.iter().copied().collect();
        reps.into_iter()
            .filter_map(|rep| {
                let fd = Resource::<types::Descriptor>::new_borrow(rep);
                match self.inner.table.get(&fd).ok()? {
                    Descriptor::File(file) => {
                        let (id, links, _) = file_identity(&*file.file)?;
                        Some((rep, id, links, file.file.clone()))
                    }
                    Descriptor::Dir(_) => None,
                }
            })
            .collect()
    }

    fn shrink(&self, bytes: u64) {
        if let Some(quota) = &self.quota {
            quota.shrink(bytes);
        }
    }

    /// Remembers the file behind `fd` as held by a stream too.
    fn note_streamed(&self, fd: &Resource<types::Descriptor>) {
        let fd = Resource::<types::Descriptor>::new_borrow(fd.rep());
        if let Ok(Descriptor::File(file)) = self.inner.table.get(&fd) {
            let mut open = lock(&self.open);
            open.streamed.retain(|file| file.strong_count() > 0);
            open.streamed.push(Arc::downgrade(&file.file));
        }
    }

    /// Which file `path` under directory `fd` names, not following a final
    /// symlink: (device, inode), as `fstat` gives them for open files.
    /// Only used to match files this plugin holds open, after the same
    /// path was resolved, sandboxed, by WASI.
    fn identity_at(&self, fd: &Resource<types::Descriptor>, path: &str) -> Option<(u64, u64)> {
        let fd = Resource::<types::Descriptor>::new_borrow(fd.rep());
        let Ok(Descriptor::Dir(dir)) = self.inner.table.get(&fd) else {
            return None;
        };
        let path = std::ffi::CString::new(path).ok()?;
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstatat reads the NUL-terminated path and writes into the
        // struct, both alive for the call; the directory descriptor is
        // borrowed from an open directory.
        let found = unsafe {
            libc::fstatat(
                dir.dir.as_raw_fd(),
                path.as_ptr(),
                &mut stat,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        } == 0;
        found.then_some((stat.st_dev as u64, stat.st_ino as u64))
    }

    /// Files the plugin holds open by a descriptor or a stream, with no name
    /// left: (device, inode) and the file.
    fn unnamed_open_files(&self) -> Vec<((u64, u64), Arc<std::fs::File>)> {
        let mut files: Vec<_> = self
            .held_files()
            .into_iter()
            .filter(|(_, _, links, _)| *links == 0)
            .map(|(_, id, _, file)| (id, file))
            .collect();
        let streamed: Vec<_> = lock(&self.open)
            .streamed
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .collect();
        for file in streamed {
            if let Some((id, 0, _)) = file_identity(&*file) {
                files.push((id, file));
            }
        }
        files
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
            quota: quota.clone(),
            open: self.open.clone(),
            at,
            size,
            _settle: SettleOnDrop {
                quota,
                open: self.open.clone(),
            },
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
        self.note_streamed(&fd);
        let stream = self.inner.write_via_stream(fd, offset)?;
        self.wrap_stream(stream, Some(offset), size)
    }

    fn append_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<Resource<DynOutputStream>> {
        let size = self.size(&fd)?;
        self.note_streamed(&fd);
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
        if lock(&self.open).reps.len() >= MAX_OPEN_FILES {
            return Err(ErrorCode::InsufficientMemory.into());
        }
        let existing = match &self.quota {
            Some(_) => self.stat_at_path(&fd, path_flags, &path).await,
            None => None,
        };
        // A new entry is room taken; truncating gives a file's bytes back.
        let creates =
            self.quota.is_some() && existing.is_none() && oflags.contains(types::OpenFlags::CREATE);
        if creates {
            self.grow_entry()?;
        }
        let truncated = match existing {
            Some(stat)
                if oflags.contains(types::OpenFlags::TRUNCATE)
                    && stat.type_ == types::DescriptorType::RegularFile =>
            {
                stat.size
            }
            _ => 0,
        };
        let opened = match self
            .inner
            .open_at(fd, path_flags, path, oflags, flags)
            .await
        {
            Ok(opened) => opened,
            Err(error) => {
                if creates {
                    self.shrink(ENTRY_BYTES);
                }
                return Err(error);
            }
        };
        self.shrink(truncated);
        lock(&self.open).reps.insert(opened.rep());
        Ok(opened)
    }

    async fn unlink_file_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        if self.quota.is_none() {
            return self.inner.unlink_file_at(fd, path).await;
        }
        let target = self.removal_target(&fd, &path).await;
        self.inner.unlink_file_at(fd, path).await?;
        if let Some(target) = target {
            self.removed(target);
        }
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
        self.grow_entry()?;
        let created = self.inner.create_directory_at(fd, path).await;
        if created.is_err() {
            self.shrink(ENTRY_BYTES);
        }
        created
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
        self.grow_entry()?;
        let linked = self
            .inner
            .link_at(fd, old_path_flags, old_path, new_descriptor, new_path)
            .await;
        if linked.is_err() {
            self.shrink(ENTRY_BYTES);
        }
        linked
    }

    fn drop(&mut self, fd: Resource<types::Descriptor>) -> wasmtime::Result<()> {
        let rep = fd.rep();
        let ours = lock(&self.open).reps.remove(&rep);
        let dropped = HostDescriptor::drop(&mut self.inner, fd);
        if ours {
            // The last holder of a deleted file gone: its bytes go now.
            let freed = lock(&self.open).settle();
            self.shrink(freed);
        }
        dropped
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
        self.inner.remove_directory_at(fd, path).await?;
        self.shrink(ENTRY_BYTES);
        Ok(())
    }

    async fn rename_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        old_path: String,
        new_fd: Resource<types::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        if self.quota.is_none() {
            return self.inner.rename_at(fd, old_path, new_fd, new_path).await;
        }
        // Renamed over an existing file, that file is removed — unless the
        // two names are the same file (`rename("a", "a")`, or onto a hard
        // link of itself), which the system does as doing nothing. Unsure
        // which, nothing is given back: counting too much only ever
        // refuses early, and the next scan corrects it.
        let replaced = self.removal_target(&new_fd, &new_path).await;
        let moved = self.identity_at(&fd, &old_path);
        self.inner.rename_at(fd, old_path, new_fd, new_path).await?;
        if let Some(target) = replaced
            && target.identity.is_some()
            && moved.is_some()
            && moved != target.identity
        {
            self.removed(target);
        }
        Ok(())
    }

    async fn symlink_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        src_path: String,
        dest_path: String,
    ) -> FsResult<()> {
        self.grow_entry()?;
        let linked = self.inner.symlink_at(fd, src_path, dest_path).await;
        if linked.is_err() {
            self.shrink(ENTRY_BYTES);
        }
        linked
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

/// A file about to lose a name: what it was, and which file it is.
struct RemovalTarget {
    stat: types::DescriptorStat,
    /// (device, inode).
    identity: Option<(u64, u64)>,
}

impl QuotaFs<'_> {
    /// The file at `path` under `fd` that an unlink or a rename over it
    /// would remove a name of, if there is one.
    async fn removal_target(
        &mut self,
        fd: &Resource<types::Descriptor>,
        path: &str,
    ) -> Option<RemovalTarget> {
        let stat = self
            .stat_at_path(fd, types::PathFlags::empty(), path)
            .await?;
        let identity = self.identity_at(fd, path);
        Some(RemovalTarget { stat, identity })
    }

    /// Gives back what a removed name held: an entry, and the bytes too
    /// once the last name went, unless the plugin still holds the file
    /// open (then they count until it is closed). Which held file it was
    /// is told by identity, so no other deleted-but-open file is mistaken
    /// for it.
    fn removed(&mut self, target: RemovalTarget) {
        let stat = &target.stat;
        if stat.type_ != types::DescriptorType::RegularFile || stat.link_count > 1 {
            // A link went; the bytes stay with the other names.
            self.shrink(ENTRY_BYTES);
            return;
        }
        let still_open = target.identity.and_then(|identity| {
            self.unnamed_open_files()
                .into_iter()
                .find(|(id, _)| *id == identity)
        });
        match still_open {
            Some((id, file)) => {
                lock(&self.open).orphans.entry(id).or_insert(file);
            }
            None => self.shrink(stat.size + ENTRY_BYTES),
        }
    }

    /// What is at `path` under directory `fd`, if anything.
    async fn stat_at_path(
        &mut self,
        fd: &Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: &str,
    ) -> Option<types::DescriptorStat> {
        let fd = Resource::new_borrow(fd.rep());
        self.inner
            .stat_at(fd, path_flags, path.to_owned())
            .await
            .ok()
    }
}

/// A file stream whose growth is counted against the quota.
struct QuotaStream {
    inner: DynOutputStream,
    quota: Arc<GrantQuota>,
    open: Arc<Mutex<OpenFiles>>,
    /// Where the next write lands; `None` for an appending stream.
    at: Option<u64>,
    /// The file's size as far as this stream knows.
    size: u64,
    /// Last, so it runs after `inner` (and its hold on the file) is gone.
    _settle: SettleOnDrop,
}

/// When a stream goes, a deleted file it was the last to hold gives its
/// bytes back.
struct SettleOnDrop {
    quota: Arc<GrantQuota>,
    open: Arc<Mutex<OpenFiles>>,
}

impl Drop for SettleOnDrop {
    fn drop(&mut self) {
        let freed = lock(&self.open).settle();
        self.quota.shrink(freed);
    }
}

impl QuotaStream {
    fn take(&mut self, len: u64) -> StreamResult<()> {
        let growth = match self.at {
            Some(at) => (at + len).saturating_sub(self.size),
            None => len,
        };
        let open = &self.open;
        self.quota
            .grow(growth, || lock(open).hidden())
            .map_err(|_| {
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
        let quota = GrantQuota::new(dir.path(), ENTRY_BYTES + 4000, 0);
        assert_eq!(
            quota.used(),
            ENTRY_BYTES + 1000,
            "what is there counts from the start, its entry too"
        );
        assert_eq!(quota.grow(2500, || 0), Ok(()));
        assert_eq!(quota.grow(600, || 0), Err(ErrorCode::InsufficientSpace));
        quota.shrink(1000);
        assert_eq!(quota.grow(600, || 0), Ok(()));
        let (free, _) = free_space(dir.path()).unwrap();
        let reserved = GrantQuota::new(dir.path(), u64::MAX, free + 1);
        assert_eq!(
            reserved.grow(1, || 0),
            Err(ErrorCode::InsufficientSpace),
            "never into the reserve"
        );
    }

    #[test]
    fn a_count_that_drifted_is_corrected_before_refusing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big"), vec![0u8; 3000]).unwrap();
        let quota = GrantQuota::new(dir.path(), ENTRY_BYTES + 4000, 0);
        // The file goes behind the count's back.
        std::fs::remove_file(dir.path().join("big")).unwrap();
        *quota.scanned.lock().unwrap() = Instant::now() - RESCAN_EVERY;
        assert_eq!(quota.grow(2000, || 0), Ok(()));
    }
}
