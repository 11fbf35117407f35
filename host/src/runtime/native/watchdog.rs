//! The plugin runner's watchdog: a small process the runner forks before
//! it loads the plugin, which ends the runner's whole process group when
//! the runner ends.
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
//! Memory is policed by the relay itself ([`memory`](super::memory)),
//! where the plugin cannot stop it: a plugin that kills this watchdog
//! gives up only the cleanup after a relay that dies without ending its
//! runners (see `native-plugins.md`).

use std::io;
use std::time::Duration;

/// How often the watchdog looks for its runner's end where it cannot wait
/// on a `pidfd`.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// Forks the watchdog. Call it while the runner has one thread (before
/// the plugin is loaded): the watchdog then owns nothing but stderr.
pub fn start() -> io::Result<()> {
    // SAFETY: plain process calls; the process has a single thread, so the
    // child may run any code (it allocates only small strings).
    unsafe {
        let runner = libc::getpid();
        match libc::fork() {
            -1 => Err(io::Error::last_os_error()),
            0 => watch(runner),
            _ => Ok(()),
        }
    }
}

/// The watchdog's life: never returns.
fn watch(runner: libc::pid_t) -> ! {
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
        }
        libc::kill(-runner, libc::SIGKILL);
        libc::_exit(0)
    }
}
