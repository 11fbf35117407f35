//! What one plugin instance may touch, and the store state that enforces it.
//!
//! Deny by default: a plugin sees no environment variables, no arguments,
//! no sockets, no stdin and no filesystem. The operator can grant exactly
//! three things per instance: hosts to reach over HTTP (`allowed_hosts`),
//! named secrets (`secrets`) and one directory (`grant_dir`), which the
//! plugin sees as [`GUEST_GRANTED_DIR`] and cannot leave. Memory is capped
//! per instance; CPU time per call is capped by the deadline.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::http_gate::HttpGate;
use super::quota::{GrantQuota, OpenFiles};
use crate::runtime::output::{OutputSink, Stream};
use crate::runtime::services::PluginServices;
use auditrelay_plugin_api::http::AllowList;

/// Where the granted directory appears inside the sandbox.
pub const GUEST_GRANTED_DIR: &str = "/granted";

/// The grants and limits of one plugin instance.
#[derive(Clone)]
pub struct Sandbox {
    /// The instance's name, secrets and metrics.
    pub services: PluginServices,
    /// The instance's `config` table as JSON, handed to `init`.
    pub config_json: String,
    /// Destinations the plugin may reach over HTTP.
    pub allowed_hosts: Arc<AllowList>,
    /// The one host directory the plugin may use.
    pub grant_dir: Option<PathBuf>,
    /// What the plugin may write into `grant_dir` (shared by every store
    /// the instance runs in).
    pub quota: Option<Arc<GrantQuota>>,
    /// Linear memory cap, in bytes.
    pub memory_limit: u64,
    /// Wall-clock limit for each call into the plugin.
    pub call_timeout: Duration,
    /// Outgoing HTTP requests in flight at once.
    pub http_requests: usize,
}

impl Sandbox {
    /// A sandbox with nothing granted, for calling `describe`.
    pub fn describe_only() -> Self {
        Sandbox {
            services: PluginServices::describe_only(),
            config_json: "{}".into(),
            allowed_hosts: Arc::default(),
            grant_dir: None,
            quota: None,
            memory_limit: 64 * 1024 * 1024,
            call_timeout: Duration::from_secs(10),
            http_requests: 0,
        }
    }

    /// The instance name, as in `[plugins.<name>]`.
    pub fn instance(&self) -> &Arc<str> {
        self.services.instance()
    }

    /// Fresh store state for a new instance.
    pub(super) fn state(&self) -> Result<PluginState, String> {
        let stdout = OutputSink::new(self.services.clone(), Stream::Stdout);
        let stderr = OutputSink::new(self.services.clone(), Stream::Stderr);
        let mut wasi = WasiCtxBuilder::new();
        // File I/O in the granted directory runs inline on the plugin's
        // thread (the relay's own, never the application's) instead of a
        // tokio blocking-pool round trip per operation, which cost ~20 µs
        // each. Must be set before the directory is preopened.
        wasi.allow_blocking_current_thread(true)
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if let Some(dir) = &self.grant_dir {
            wasi.preopened_dir(dir, GUEST_GRANTED_DIR, FsPerms::ReadWrite)
                .map_err(|e| {
                    format!(
                        "cannot open grant_dir {} for plugin {}: {e} (create it, or fix its permissions)",
                        dir.display(),
                        self.instance()
                    )
                })?;
        }
        // Every resource a plugin makes (streams, pollables, requests,
        // descriptors) lives in the relay's memory, outside its linear
        // memory cap: so their number is capped too.
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        Ok(PluginState {
            quota: self.quota.clone(),
            open_files: Arc::default(),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table,
            gate: HttpGate::new(
                self.services.clone(),
                self.allowed_hosts.clone(),
                self.http_requests,
            ),
            limiter: MemoryLimiter::new(self.memory_limit),
            stdout,
            stderr,
            sandbox: self.clone(),
        })
    }
}

/// Most resources (streams, pollables, requests, descriptors…) a plugin
/// may hold at once.
pub const MAX_RESOURCES: usize = 4096;

/// The `T` of each plugin's `Store<T>`.
pub struct PluginState {
    pub(super) quota: Option<Arc<GrantQuota>>,
    /// What it holds open in its granted directory.
    pub(super) open_files: Arc<std::sync::Mutex<OpenFiles>>,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    gate: HttpGate,
    pub(super) limiter: MemoryLimiter,
    pub(super) stdout: OutputSink,
    pub(super) stderr: OutputSink,
    pub(super) sandbox: Sandbox,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for PluginState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.gate,
        }
    }
}

/// Caps the linear memory of all of an instance's memories together, and
/// remembers whether the cap was hit so a following trap is reported as
/// out-of-memory rather than as the panic it turns into.
pub struct MemoryLimiter {
    limit: usize,
    used: usize,
    refused: Option<usize>,
}

impl MemoryLimiter {
    fn new(limit: u64) -> Self {
        MemoryLimiter {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            used: 0,
            refused: None,
        }
    }

    /// The size a refused growth asked for, if any since the last call.
    pub fn take_refused(&mut self) -> Option<usize> {
        self.refused.take()
    }

    /// Bytes of linear memory in use.
    pub fn used(&self) -> usize {
        self.used
    }

    /// The cap.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// Most table elements one instance may have (function tables of big
/// plugins hold a few thousand).
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        if self.used.saturating_add(growth) > self.limit {
            // Refuse rather than trap: a plugin may handle the failure
            // (try_reserve). Most abort, which the caller then reports as
            // out-of-memory thanks to `refused`.
            self.refused = Some(desired);
            return Ok(false);
        }
        self.used += growth;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
