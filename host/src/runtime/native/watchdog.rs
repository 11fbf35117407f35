//! The plugin runner's watchdog: a small process the runner forks before
//! it loads the plugin, which ends the runner's whole process group when
//! the runner ends, and ends it early when the group uses more memory than
//! `limits.memory` allows.
//!
//! The relay starts every runner as the leader of a process group of its
//! own, so whatever the plugin forks stays in it (unless the plugin moves
//! it out with `setsid`/`setpgid`: native plugins are trusted code). The
//! watchdog waits for the runner to end (a `pidfd` where the kernel has
//! them, else its parent changing) — however it ends: a clean shutdown, a
//! crash, the relay killing it, or the relay itself dying (the runner's
//! parent-death signal) — and then kills the group, so no process a plugin
//! started outlives its runner.
//!
//! Every [`CHECK_EVERY`] it also adds up the resident anonymous and shared
//! memory (`RssAnon` + `RssShmem`) of every process in the group — memory
//! `RLIMIT_DATA` does not see (`MAP_SHARED` mappings, System V and POSIX
//! shared memory, memfds) and memory of child processes — and kills the
//! group, saying so on stderr, when it passes the limit. File-backed
//! mappings are not counted (the file backs them).

use std::io;
use std::time::Duration;

/// How often the group's memory is added up.
pub const CHECK_EVERY: Duration = Duration::from_millis(100);

/// What the watchdog says on stderr before it kills a group over its
/// memory limit (the relay reads it to classify the fault).
pub const OVER_MEMORY: &str = "over limits.memory";

/// Forks the watchdog. Call it while the runner has one thread (before
/// the plugin is loaded): the watchdog then owns nothing but stderr.
pub fn start(memory_limit: Option<u64>) -> io::Result<()> {
    // SAFETY: plain process calls; the process has a single thread, so the
    // child may run any code (it allocates only small strings).
    unsafe {
        let runner = libc::getpid();
        match libc::fork() {
            -1 => Err(io::Error::last_os_error()),
            0 => watch(runner, memory_limit),
            _ => Ok(()),
        }
    }
}

/// The watchdog's life: never returns.
fn watch(runner: libc::pid_t, memory_limit: Option<u64>) -> ! {
    // SAFETY: closing descriptors this process owns, then plain calls.
    unsafe {
        // Keep only stderr: the protocol pipes and whatever else the
        // runner had belong to the runner.
        libc::close(0);
        libc::close(1);
        let max = libc::sysconf(libc::_SC_OPEN_MAX).clamp(64, 65_536) as i32;
        for fd in 3..max {
            libc::close(fd);
        }
        libc::prctl(libc::PR_SET_NAME, c"ar-watchdog".as_ptr() as libc::c_ulong);
        let pidfd = libc::syscall(libc::SYS_pidfd_open, runner, 0) as i32;
        loop {
            let gone = if pidfd >= 0 {
                let mut poll = libc::pollfd {
                    fd: pidfd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                libc::poll(&mut poll, 1, CHECK_EVERY.as_millis() as i32) > 0
            } else {
                libc::usleep(CHECK_EVERY.as_micros() as u32);
                libc::getppid() != runner
            };
            if gone {
                break;
            }
            if let Some(limit) = memory_limit {
                let used = group_memory(runner);
                if used > limit {
                    let message = format!(
                        "plugin-runner: the plugin's processes hold {} MiB of anonymous and shared memory, {OVER_MEMORY} ({} MiB); killing them\n",
                        used >> 20,
                        limit >> 20
                    );
                    libc::write(2, message.as_ptr().cast(), message.len());
                    break;
                }
            }
        }
        libc::kill(-runner, libc::SIGKILL);
        libc::_exit(0)
    }
}

/// Resident anonymous and shared memory, in bytes, of every process in
/// process group `group`.
fn group_memory(group: libc::pid_t) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if process_group(pid) == Some(group) {
            total += resident_private_and_shared(pid);
        }
    }
    total
}

/// The process group of `pid`, from `/proc/<pid>/stat` (field 5, after the
/// parenthesised command name, which may hold spaces).
fn process_group(pid: u32) -> Option<libc::pid_t> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(2)?.parse().ok()
}

/// `RssAnon` + `RssShmem` of `pid`, in bytes.
fn resident_private_and_shared(pid: u32) -> u64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    status
        .lines()
        .filter(|line| line.starts_with("RssAnon:") || line.starts_with("RssShmem:"))
        .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum::<u64>()
        * 1024
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_found_in_its_group_with_its_memory() {
        let me = std::process::id();
        // SAFETY: getpgrp only reads a process attribute.
        let group = unsafe { libc::getpgrp() };
        assert_eq!(process_group(me), Some(group));
        let ballast = std::hint::black_box(vec![1u8; 16 << 20]);
        assert!(resident_private_and_shared(me) >= 16 << 20);
        assert!(
            group_memory(group) >= 16 << 20,
            "this process is in its group"
        );
        drop(ballast);
    }
}
