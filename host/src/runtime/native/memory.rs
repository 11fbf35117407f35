//! What a runner's process group holds in memory, and the relay's guard
//! that kills the group when it holds more than `limits.memory`.
//!
//! `RLIMIT_DATA` (set in the runner) stops private allocations, but not
//! memory a plugin gets another way: `MAP_SHARED` mappings, memfds and
//! POSIX or System V shared memory, or the memory of processes it forks.
//! So the relay adds up, every [`CHECK_EVERY`], for every process in the
//! runner's group:
//!
//! - its proportional share of anonymous and shared memory it maps
//!   (`Pss_Anon` + `Pss_Shmem` from `smaps_rollup`: a page a forked child
//!   shares with its parent counts once, not once per process);
//! - shared memory it holds open but need not map — memfds and files in
//!   `/dev/shm` (their allocated size, each object once) — and System V
//!   segments it created; where these are mapped too, the larger of the
//!   two counts, not both;
//!
//! and kills the group when the total passes the limit. The guard runs in
//! the relay, where the plugin cannot stop it without stopping the relay.
//! Not counted: a `/dev/shm` file the plugin created and closed without
//! mapping (it belongs to nobody then), and anything a plugin moves out of
//! its group (`setsid`): native plugins are trusted code.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often a group's memory is added up.
pub const CHECK_EVERY: Duration = Duration::from_millis(100);

/// Bytes of memory the processes of group `group` hold (see the module
/// docs for what counts); `None` once the group has no process left.
pub fn group_memory(group: libc::pid_t) -> Option<u64> {
    let members = members(group);
    if members.is_empty() {
        return None;
    }
    let mut mapped_private = 0;
    let mut mapped_shared = 0;
    let mut objects = HashSet::new();
    let mut held_shared = 0;
    for &pid in &members {
        let (private, shared) = mapped(pid);
        mapped_private += private;
        mapped_shared += shared;
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            if !(target.starts_with("/memfd:") || target.starts_with("/dev/shm/")) {
                continue;
            }
            if let Ok(meta) = std::fs::metadata(fd.path())
                && objects.insert((meta.dev(), meta.ino()))
            {
                held_shared += meta.blocks() * 512;
            }
        }
    }
    held_shared += system_v_segments(&members);
    Some(mapped_private + mapped_shared.max(held_shared))
}

/// The processes of group `group`.
fn members(group: libc::pid_t) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| process_group(pid) == Some(group))
        .collect()
}

/// The process group of `pid`, from `/proc/<pid>/stat` (field 5, after the
/// parenthesised command name, which may hold spaces).
pub fn process_group(pid: u32) -> Option<libc::pid_t> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(2)?.parse().ok()
}

/// Anonymous and shared memory `pid` maps, in bytes: its proportional
/// shares where the kernel reports them, else what is resident.
fn mapped(pid: u32) -> (u64, u64) {
    let field = |text: &str, name: &str| {
        text.lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map(|kib| kib * 1024)
    };
    if let Ok(rollup) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        && let (Some(anon), Some(shmem)) =
            (field(&rollup, "Pss_Anon:"), field(&rollup, "Pss_Shmem:"))
    {
        return (anon, shmem);
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    (
        field(&status, "RssAnon:").unwrap_or(0),
        field(&status, "RssShmem:").unwrap_or(0),
    )
}

/// Resident bytes of the System V shared memory segments one of `pids`
/// created.
fn system_v_segments(pids: &[u32]) -> u64 {
    let Ok(table) = std::fs::read_to_string("/proc/sysvipc/shm") else {
        return 0;
    };
    // key shmid perms size cpid lpid nattch uid gid cuid cgid atime dtime ctime rss swap
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let creator: u32 = fields.get(4)?.parse().ok()?;
            let rss: u64 = fields.get(14)?.parse().ok()?;
            pids.contains(&creator).then_some(rss)
        })
        .sum()
}

/// Checks group `group` every [`CHECK_EVERY`] until it is gone; when it
/// holds more than `limit` bytes, sets `over` and kills it.
pub async fn guard(group: libc::pid_t, limit: u64, over: Arc<AtomicBool>) {
    let mut every = tokio::time::interval(CHECK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        // One scan of /proc per check, off the async threads.
        let Ok(Some(used)) = tokio::task::spawn_blocking(move || group_memory(group)).await else {
            return;
        };
        if used > limit {
            over.store(true, Ordering::SeqCst);
            // SAFETY: kill takes plain integers; the group is the runner's.
            unsafe { libc::kill(-group, libc::SIGKILL) };
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both tests measure this whole process: one's ballast must not come
    /// or go while the other measures.
    static MEASURING: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn this_process_is_found_in_its_group_with_its_memory() {
        let _alone = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
        let me = std::process::id();
        // SAFETY: getpgrp only reads a process attribute.
        let group = unsafe { libc::getpgrp() };
        assert_eq!(process_group(me), Some(group));
        let ballast = std::hint::black_box(vec![1u8; 16 << 20]);
        assert!(mapped(me).0 >= 16 << 20);
        assert!(
            group_memory(group).unwrap() >= 16 << 20,
            "this process is in its group"
        );
        drop(ballast);
    }

    #[test]
    fn a_memfd_written_but_never_mapped_counts() {
        let _alone = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: getpgrp only reads a process attribute.
        let group = unsafe { libc::getpgrp() };
        let before = group_memory(group).unwrap();
        // SAFETY: memfd_create with a valid name; the descriptor is owned
        // by the File below.
        let fd = unsafe { libc::memfd_create(c"ballast".as_ptr(), 0) };
        assert!(fd >= 0);
        let mut file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        std::io::Write::write_all(&mut file, &vec![7u8; 32 << 20]).unwrap();
        let after = group_memory(group).unwrap();
        assert!(
            after >= before + (30 << 20),
            "{before} before, {after} with a 32 MiB memfd"
        );
    }
}
