//! What a plugin runner's end says about the plugin: the signal that
//! killed it, refined by its last words on stderr.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use crate::runtime::{Fault, FaultKind};

/// What a runner's death says about the plugin; `over_memory`: the relay
/// killed its group for holding more than `limits.memory`.
pub(super) fn classify(
    status: ExitStatus,
    stderr_tail: &[String],
    memory_limit: Option<u64>,
    over_memory: bool,
) -> Fault {
    let said = |needle: &str| stderr_tail.iter().find(|line| line.contains(needle));
    let last_words = stderr_tail
        .iter()
        .rev()
        .find(|line| !line.starts_with("note:"))
        .map(|line| format!("; stderr: {line}"))
        .unwrap_or_default();
    let (kind, what) = match status.signal() {
        _ if over_memory => (
            FaultKind::OutOfMemory,
            match memory_limit {
                Some(limit) => format!(
                    "held more memory than limits.memory ({}) allows, counting shared memory and its child processes; its process group was killed",
                    bytesize::ByteSize::b(limit)
                ),
                None => "held more memory than limits.memory allows".to_owned(),
            },
        ),
        Some(libc::SIGSEGV | libc::SIGBUS) if said("overflowed its stack").is_some() => {
            (FaultKind::StackOverflow, "overflowed its stack".to_owned())
        }
        Some(signal @ (libc::SIGSEGV | libc::SIGBUS)) => (
            FaultKind::MemoryFault,
            format!(
                "crashed with {} (an invalid memory access)",
                signal_name(signal)
            ),
        ),
        Some(libc::SIGABRT) if said("memory allocation of").is_some() => (
            FaultKind::OutOfMemory,
            match memory_limit {
                Some(limit) => format!(
                    "ran out of memory (limits.memory caps its runner at {})",
                    bytesize::ByteSize::b(limit)
                ),
                None => "ran out of memory".to_owned(),
            },
        ),
        Some(libc::SIGABRT) if said("panicked at").is_some() => (
            FaultKind::Panic,
            "panicked where the panic could not be caught, and aborted".to_owned(),
        ),
        Some(libc::SIGABRT) => (FaultKind::Abort, "aborted (SIGABRT)".to_owned()),
        Some(libc::SIGKILL) => (
            FaultKind::Other,
            "was killed (SIGKILL), perhaps by the kernel's out-of-memory killer".to_owned(),
        ),
        Some(signal) => (
            FaultKind::Other,
            format!("was killed by {}", signal_name(signal)),
        ),
        None => (
            FaultKind::Other,
            format!("exited in the middle of a call ({status})"),
        ),
    };
    Fault::new(kind, format!("{what}{last_words}"))
}

fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGBUS => "SIGBUS".into(),
        libc::SIGILL => "SIGILL".into(),
        libc::SIGFPE => "SIGFPE".into(),
        libc::SIGTERM => "SIGTERM".into(),
        other => format!("signal {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn killed_by(signal: i32) -> ExitStatus {
        ExitStatus::from_raw(signal)
    }

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|line| line.to_string()).collect()
    }

    #[test]
    fn signals_and_last_words_name_the_cause() {
        let cases = [
            (
                killed_by(libc::SIGSEGV),
                lines(&[]),
                FaultKind::MemoryFault,
                "crashed with SIGSEGV",
            ),
            (
                killed_by(libc::SIGSEGV),
                lines(&[
                    "thread 'main' has overflowed its stack",
                    "fatal runtime error: stack overflow",
                ]),
                FaultKind::StackOverflow,
                "overflowed its stack",
            ),
            (
                killed_by(libc::SIGABRT),
                lines(&["memory allocation of 4194304 bytes failed"]),
                FaultKind::OutOfMemory,
                "ran out of memory (limits.memory caps its runner at 16.0 MiB); stderr: memory allocation of 4194304 bytes failed",
            ),
            (
                killed_by(libc::SIGABRT),
                lines(&[
                    "thread 'main' panicked at src/lib.rs:3:5:",
                    "boom",
                    "note: run with `RUST_BACKTRACE=1`",
                ]),
                FaultKind::Panic,
                "could not be caught, and aborted; stderr: boom",
            ),
            (
                killed_by(libc::SIGABRT),
                lines(&[]),
                FaultKind::Abort,
                "aborted (SIGABRT)",
            ),
            (
                killed_by(libc::SIGKILL),
                lines(&[]),
                FaultKind::Other,
                "out-of-memory killer",
            ),
            (
                ExitStatus::from_raw(3 << 8),
                lines(&[]),
                FaultKind::Other,
                "exited in the middle of a call",
            ),
        ];
        let fault = classify(killed_by(libc::SIGKILL), &lines(&[]), Some(16 << 20), true);
        assert_eq!(fault.kind, FaultKind::OutOfMemory, "{fault}");
        assert!(
            fault.message.contains("limits.memory (16.0 MiB)"),
            "{fault}"
        );
        for (status, tail, kind, message) in cases {
            let fault = classify(status, &tail, Some(16 << 20), false);
            assert_eq!(fault.kind, kind, "{fault}");
            assert!(fault.message.contains(message), "{fault}");
        }
    }
}
