//! Services the relay provides to plugins: logging, secrets, metrics and
//! standard output.
//!
//! Inside the WebAssembly sandbox these call the WIT imports
//! `auditrelay:plugin/{log, secrets, metrics}` (and WASI's stdout). In a
//! native build they go to
//! the [`HostServices`] installed for the current thread (the
//! [test harness](crate::testing) installs one), else the process-wide one
//! from [`set_native_host`], else a fallback that logs to stderr and has no
//! secrets.

#[cfg(not(target_arch = "wasm32"))]
use std::sync::Arc;

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the plugin handled.
    Warn,
    /// Something failed.
    Error,
}

impl Level {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// Writes one line to the relay's log, tagged with the plugin instance.
pub fn log(level: Level, message: &str) {
    backend::log(level, message)
}

/// Logs at debug level.
pub fn debug(message: impl AsRef<str>) {
    log(Level::Debug, message.as_ref())
}

/// Logs at info level.
pub fn info(message: impl AsRef<str>) {
    log(Level::Info, message.as_ref())
}

/// Logs at warn level.
pub fn warn(message: impl AsRef<str>) {
    log(Level::Warn, message.as_ref())
}

/// Logs at error level.
pub fn error(message: impl AsRef<str>) {
    log(Level::Error, message.as_ref())
}

/// The secret the operator granted under `name`, if any.
pub fn secret(name: &str) -> Option<String> {
    backend::secret(name)
}

/// Adds `delta` to the plugin counter `name` (`[a-z][a-z0-9_]*`, ≤ 64 bytes).
pub fn counter_add(name: &str, delta: u64) {
    backend::counter_add(name, delta)
}

/// Sets the plugin gauge `name` (`[a-z][a-z0-9_]*`, ≤ 64 bytes).
pub fn gauge_set(name: &str, value: f64) {
    backend::gauge_set(name, value)
}

/// Writes `bytes` to the plugin's standard output and flushes it.
///
/// The relay turns each line a plugin prints into a line of its own log
/// (at info, tagged with the instance); the
/// [test harness](crate::testing::Harness::stdout) records them. Use it
/// when printing *is* the plugin's job (the `stdout` exporter); for
/// diagnostics, [`log`] says more (a level) for less.
pub fn write_stdout(bytes: &[u8]) -> std::io::Result<()> {
    backend::write_stdout(bytes)
}

/// What a native host provides to plugins running outside the sandbox.
#[cfg(not(target_arch = "wasm32"))]
pub trait HostServices: Send + Sync {
    /// Writes a log line.
    fn log(&self, level: Level, message: &str);
    /// Looks up a granted secret.
    fn secret(&self, name: &str) -> Option<String>;
    /// Adds to a counter.
    fn counter_add(&self, name: &str, delta: u64);
    /// Sets a gauge.
    fn gauge_set(&self, name: &str, value: f64);
    /// Performs an outbound HTTP request on the plugin's behalf.
    fn http(
        &self,
        request: &crate::http::Request,
    ) -> Result<crate::http::Response, crate::http::HttpError>;
    /// Writes to the plugin's standard output; by default the process's.
    fn write_stdout(&self, bytes: &[u8]) -> std::io::Result<()> {
        backend::process_stdout(bytes)
    }
}

/// Installs the process-wide host for native plugins (first call wins).
#[cfg(not(target_arch = "wasm32"))]
pub fn set_native_host(host: Arc<dyn HostServices>) -> bool {
    backend::GLOBAL.set(host).is_ok()
}

#[cfg(target_arch = "wasm32")]
mod backend {
    use super::Level;
    use crate::guest::bindings::auditrelay::plugin::{log as wit_log, metrics, secrets};

    pub fn log(level: Level, message: &str) {
        let level = match level {
            Level::Trace => wit_log::Level::Trace,
            Level::Debug => wit_log::Level::Debug,
            Level::Info => wit_log::Level::Info,
            Level::Warn => wit_log::Level::Warn,
            Level::Error => wit_log::Level::Error,
        };
        wit_log::log(level, message)
    }

    pub fn secret(name: &str) -> Option<String> {
        secrets::get(name)
    }

    pub fn counter_add(name: &str, delta: u64) {
        metrics::counter_add(name, delta)
    }

    pub fn gauge_set(name: &str, value: f64) {
        metrics::gauge_set(name, value)
    }

    pub fn write_stdout(bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)?;
        out.flush()
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod backend {
    use std::cell::Cell;
    use std::marker::PhantomData;
    use std::sync::{Arc, OnceLock};

    use super::{HostServices, Level};
    use crate::http::{HttpError, HttpErrorKind, Request, Response};

    pub(super) static GLOBAL: OnceLock<Arc<dyn HostServices>> = OnceLock::new();

    thread_local! {
        // A pointer, not an `Arc`: installing costs no atomic operations on
        // the per-call path (the native ABI installs one for every call).
        static THREAD: Cell<Option<*const dyn HostServices>> = const { Cell::new(None) };
    }

    /// Installs `host` for the current thread until the guard drops. The
    /// guard borrows `host`, so it cannot outlive it; guards are dropped in
    /// reverse order (they live on the stack) and are never forgotten.
    pub(crate) fn install_for_thread<'a>(
        host: &'a (dyn HostServices + 'static),
    ) -> ThreadHostGuard<'a> {
        let previous = THREAD.with(|slot| slot.replace(Some(host as *const _)));
        ThreadHostGuard {
            previous,
            _host: PhantomData,
        }
    }

    pub(crate) struct ThreadHostGuard<'a> {
        previous: Option<*const dyn HostServices>,
        _host: PhantomData<&'a dyn HostServices>,
    }

    impl Drop for ThreadHostGuard<'_> {
        fn drop(&mut self) {
            THREAD.with(|slot| slot.set(self.previous));
        }
    }

    /// Runs `f` with this thread's host, or else the global one.
    fn with_current<R>(f: impl FnOnce(&dyn HostServices) -> R) -> Option<R> {
        match THREAD.with(Cell::get) {
            // SAFETY: installed by a live guard, which borrows the host.
            Some(host) => Some(f(unsafe { &*host })),
            None => GLOBAL.get().map(|host| f(&**host)),
        }
    }

    pub fn log(level: Level, message: &str) {
        if with_current(|host| host.log(level, message)).is_none() {
            eprintln!("[{}] {message}", level.as_str());
        }
    }

    pub fn secret(name: &str) -> Option<String> {
        with_current(|host| host.secret(name)).flatten()
    }

    pub fn counter_add(name: &str, delta: u64) {
        with_current(|host| host.counter_add(name, delta));
    }

    pub fn gauge_set(name: &str, value: f64) {
        with_current(|host| host.gauge_set(name, value));
    }

    pub fn write_stdout(bytes: &[u8]) -> std::io::Result<()> {
        with_current(|host| host.write_stdout(bytes)).unwrap_or_else(|| process_stdout(bytes))
    }

    /// The process's stdout: what a native plugin's prints reach without
    /// a host that takes them.
    pub fn process_stdout(bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)?;
        out.flush()
    }

    pub fn http(request: &Request) -> Result<Response, HttpError> {
        match with_current(|host| host.http(request)) {
            Some(response) => response,
            None => Err(HttpError::new(
                HttpErrorKind::Other,
                "no HTTP transport in this native build: run the plugin in the relay or install one with set_native_host",
            )),
        }
    }
}
