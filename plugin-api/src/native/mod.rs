//! The native plugin ABI, Rust side: what [`export_plugin!`] exports when
//! a plugin crate is built as a `cdylib` for the host target with its
//! `native` feature.
//!
//! The contract is `include/auditrelay_plugin.h` (version
//! [`ABI_VERSION`]); this module implements it for any [`Plugin`](crate::Plugin). Every
//! entry point catches panics: a panic becomes [`Status::Panicked`] with
//! its message, never an unwind across the boundary (which would abort the
//! host). Nothing changes owner across the boundary: inputs are borrowed
//! for the call, outputs go through the caller's [`Sink`].
//!
//! [`export_plugin!`]: crate::export_plugin

mod entry;

use std::ffi::c_void;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use entry::{deliver, describe, flush, init, shutdown};

/// The ABI version this crate implements (`AUDITRELAY_ABI_VERSION`).
pub const ABI_VERSION: u32 = 1;

/// Receives bytes borrowed for the duration of the call (`ar_sink`).
pub type Sink = unsafe extern "C" fn(out: *mut c_void, bytes: *const u8, len: usize);

/// The host's services (`ar_host`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Host {
    /// Passed back to every callback.
    pub ctx: *mut c_void,
    /// Writes a log line.
    pub log: unsafe extern "C" fn(ctx: *mut c_void, level: u32, message: *const u8, len: usize),
    /// Looks up a secret: 1 and `sink(out, value)` if granted, else 0.
    pub secret: unsafe extern "C" fn(
        ctx: *mut c_void,
        name: *const u8,
        name_len: usize,
        out: *mut c_void,
        sink: Sink,
    ) -> i32,
    /// Adds to a counter.
    pub counter_add:
        unsafe extern "C" fn(ctx: *mut c_void, name: *const u8, len: usize, delta: u64),
    /// Sets a gauge.
    pub gauge_set: unsafe extern "C" fn(ctx: *mut c_void, name: *const u8, len: usize, value: f64),
}

/// Outcome codes (`ar_status`).
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Every event was accepted.
    Accepted = 0,
    /// Some events were refused for good (sink: JSON list of rejections).
    PartiallyRejected = 1,
    /// Retry the batch (sink: JSON `{"message", "retry_after_ms"}`).
    Retryable = 2,
    /// Never deliverable as it is (sink: the message).
    Permanent = 3,
    /// The plugin panicked (sink: the panic message).
    Panicked = 4,
}

/// The JSON `auditrelay_init` receives.
#[derive(Debug, Serialize, Deserialize)]
pub struct InitRequest {
    /// The instance name.
    pub instance: String,
    /// The instance's `config` table.
    pub config: serde_json::Value,
    /// The granted directory, if any.
    pub granted_dir: Option<PathBuf>,
}

/// The JSON of a retryable outcome.
#[derive(Debug, Serialize, Deserialize)]
pub struct RetryableOutcome {
    /// What went wrong.
    pub message: String,
    /// How long to wait, if the destination said.
    pub retry_after_ms: Option<u64>,
}
