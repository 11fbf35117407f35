//! What went wrong when a plugin crashed, in words an operator can act on.

use std::fmt;

/// The cause of a plugin fault; also the `kind` label of
/// `auditrelay_plugin_traps_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// The plugin panicked (or executed `unreachable`).
    Panic,
    /// A call ran past `limits.timeout`.
    Deadline,
    /// The plugin asked for more memory than `limits.memory`.
    OutOfMemory,
    /// The plugin recursed too deep.
    StackOverflow,
    /// An out-of-bounds memory access or similar invalid operation (a
    /// segfault, for a native plugin).
    MemoryFault,
    /// A native plugin aborted its process.
    Abort,
    /// Any other trap, or a failure to start the instance.
    Other,
}

impl FaultKind {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            FaultKind::Panic => "panic",
            FaultKind::Deadline => "deadline",
            FaultKind::OutOfMemory => "out_of_memory",
            FaultKind::StackOverflow => "stack_overflow",
            FaultKind::MemoryFault => "memory_fault",
            FaultKind::Abort => "abort",
            FaultKind::Other => "other",
        }
    }
}

/// A plugin crash: its cause, the details, and where in the plugin it
/// happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// The cause.
    pub kind: FaultKind,
    /// What happened, e.g. the panic message the plugin printed.
    pub message: String,
    /// The plugin's own stack at the fault (wasm function names), if known.
    pub backtrace: Option<String>,
}

impl Fault {
    /// A fault of the given kind.
    pub fn new(kind: FaultKind, message: impl Into<String>) -> Self {
        Fault {
            kind,
            message: message.into(),
            backtrace: None,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plugin fault ({}): {}", self.kind.label(), self.message)
    }
}
