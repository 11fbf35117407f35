//! Turning a wasmtime error into a [`Fault`] an operator can act on.
//!
//! A Rust plugin's faults do not all look like what they are: a panic and
//! an allocation failure both end in `unreachable`, and deep recursion
//! overruns the stack that Rust keeps in linear memory, which shows up as
//! an out-of-bounds access. The sandbox remembers refused memory growth
//! and the plugin's last stderr lines; with those and the wasm backtrace,
//! each fault gets its real cause.

use std::collections::HashSet;
use std::time::Duration;

use wasmtime::{Trap, WasmBacktrace};

use crate::runtime::{Fault, FaultKind};

/// Backtrace frames shown in logs.
const SHOWN_FRAMES: usize = 12;
/// A backtrace this deep made of this few functions is runaway recursion.
const RECURSION_MIN_FRAMES: usize = 32;
const RECURSION_MAX_FUNCTIONS: usize = 4;

/// What the sandbox saw around the failed call.
pub struct Evidence {
    /// The size a refused memory growth asked for.
    pub refused_memory: Option<usize>,
    /// The memory cap.
    pub memory_limit: usize,
    /// The plugin's last stderr lines.
    pub stderr_tail: Vec<String>,
}

/// The fault for a call that ran past `timeout`.
pub fn deadline(timeout: Duration) -> Fault {
    Fault::new(
        FaultKind::Deadline,
        format!(
            "the call did not finish within {} (limits.timeout); the plugin may be stuck in a loop or waiting on a slow destination",
            humantime::format_duration(timeout)
        ),
    )
}

/// The fault for a call that failed with `error`.
pub fn classify(error: &wasmtime::Error, evidence: Evidence) -> Fault {
    let backtrace = error.downcast_ref::<WasmBacktrace>();
    let trap = error.downcast_ref::<Trap>().copied();
    let kind = match trap {
        Some(_) if evidence.refused_memory.is_some() => FaultKind::OutOfMemory,
        Some(Trap::UnreachableCodeReached) => FaultKind::Panic,
        Some(Trap::Interrupt) => FaultKind::Deadline,
        Some(Trap::StackOverflow) => FaultKind::StackOverflow,
        Some(Trap::MemoryOutOfBounds) if backtrace.is_some_and(is_recursion) => {
            FaultKind::StackOverflow
        }
        Some(Trap::MemoryOutOfBounds | Trap::HeapMisaligned | Trap::TableOutOfBounds) => {
            FaultKind::MemoryFault
        }
        _ => FaultKind::Other,
    };
    let message = match kind {
        FaultKind::Panic => panic_message(&evidence.stderr_tail)
            .unwrap_or_else(|| "the plugin panicked (it executed `unreachable`)".into()),
        FaultKind::OutOfMemory => format!(
            "the plugin tried to grow its memory to {}, past limits.memory = {}",
            mib(evidence.refused_memory.unwrap_or(0)),
            mib(evidence.memory_limit)
        ),
        FaultKind::StackOverflow => {
            "the plugin overflowed its stack (runaway recursion)".to_owned()
        }
        FaultKind::Deadline => "the plugin was interrupted at its deadline".to_owned(),
        FaultKind::MemoryFault | FaultKind::Abort | FaultKind::Other => {
            let mut message = match trap {
                Some(trap) => format!("trap: {trap}"),
                None => format!("{error:#}"),
            };
            if let Some(detail) = panic_message(&evidence.stderr_tail) {
                message = format!("{message}; plugin said: {detail}");
            }
            message
        }
    };
    Fault {
        kind,
        message,
        backtrace: backtrace.map(format_backtrace),
    }
}

/// The panic text from a Rust plugin's stderr, if it printed one.
fn panic_message(tail: &[String]) -> Option<String> {
    let start = tail.iter().rposition(|line| line.contains("panicked at"))?;
    let text: Vec<&str> = tail[start..]
        .iter()
        .map(String::as_str)
        .filter(|line| !line.starts_with("note: run with `RUST_BACKTRACE"))
        .collect();
    Some(text.join(" "))
}

fn is_recursion(backtrace: &WasmBacktrace) -> bool {
    let frames = backtrace.frames();
    if frames.len() < RECURSION_MIN_FRAMES {
        return false;
    }
    let functions: HashSet<u32> = frames.iter().map(|f| f.func_index()).collect();
    functions.len() <= RECURSION_MAX_FUNCTIONS
}

/// The plugin's frames, innermost first, demangled, without the leading
/// frames of Rust's own panic and abort machinery.
fn format_backtrace(backtrace: &WasmBacktrace) -> String {
    let names: Vec<String> = backtrace
        .frames()
        .iter()
        .map(|frame| match frame.func_name() {
            Some(name) => format!("{:#}", rustc_demangle::demangle(name)),
            None => format!("<function {}>", frame.func_index()),
        })
        .collect();
    let first_own = names
        .iter()
        .position(|name| !is_runtime_frame(name))
        .unwrap_or(0);
    let shown = &names[first_own..];
    let mut lines: Vec<String> = shown
        .iter()
        .take(SHOWN_FRAMES)
        .enumerate()
        .map(|(i, name)| format!("  {i:>2}: {name}"))
        .collect();
    if shown.len() > SHOWN_FRAMES {
        lines.push(format!("  ... {} more frames", shown.len() - SHOWN_FRAMES));
    }
    lines.join("\n")
}

fn is_runtime_frame(name: &str) -> bool {
    const RUNTIME: [&str; 6] = [
        "std::",
        "core::",
        "alloc::",
        "__rustc::",
        "abort",
        "rust_panic",
    ];
    RUNTIME.iter().any(|prefix| name.starts_with(prefix))
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_text_is_taken_from_stderr() {
        let tail = vec![
            "starting".to_owned(),
            "thread '<unnamed>' panicked at src/lib.rs:55:27:".to_owned(),
            "fixture panic on a batch of 3 events".to_owned(),
            "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace"
                .to_owned(),
        ];
        assert_eq!(
            panic_message(&tail).unwrap(),
            "thread '<unnamed>' panicked at src/lib.rs:55:27: fixture panic on a batch of 3 events"
        );
        assert_eq!(panic_message(&tail[..1]), None);
    }

    #[test]
    fn deadline_names_the_setting() {
        let fault = deadline(Duration::from_millis(1500));
        assert_eq!(fault.kind, FaultKind::Deadline);
        assert!(
            fault.message.contains("within 1s 500ms (limits.timeout)"),
            "{}",
            fault.message
        );
    }
}
