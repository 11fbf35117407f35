//! The `ar_host` callbacks a native plugin calls, over any [`Services`]:
//! the relay's own [`PluginServices`] for in-process instances, frames to
//! the relay for the plugin runner.

use std::ffi::c_void;

use auditrelay_plugin_api::host::Level;
use auditrelay_plugin_api::native::{Host, Sink};

use crate::runtime::services::PluginServices;

/// What the callbacks need from whoever serves them.
pub trait Services: Sync {
    /// A log line from the plugin.
    fn log(&self, level: Level, message: &str);
    /// Calls `found` with the secret's value, if granted; whether it was.
    fn with_secret(&self, name: &str, found: &mut dyn FnMut(&str)) -> bool;
    /// Adds to a counter.
    fn counter_add(&self, name: &str, delta: u64);
    /// Sets a gauge.
    fn gauge_set(&self, name: &str, value: f64);
}

impl Services for PluginServices {
    fn log(&self, level: Level, message: &str) {
        PluginServices::log(self, level, message)
    }

    fn with_secret(&self, name: &str, found: &mut dyn FnMut(&str)) -> bool {
        self.secret(name).map(found).is_some()
    }

    fn counter_add(&self, name: &str, delta: u64) {
        PluginServices::counter_add(self, name, delta)
    }

    fn gauge_set(&self, name: &str, value: f64) {
        PluginServices::gauge_set(self, name, value)
    }
}

/// The callback table for `services`, which must outlive every call the
/// plugin makes through it (until `auditrelay_shutdown` returns).
pub fn vtable<S: Services>(services: &S) -> Host {
    Host {
        ctx: services as *const S as *mut c_void,
        log: log::<S>,
        secret: secret::<S>,
        counter_add: counter_add::<S>,
        gauge_set: gauge_set::<S>,
    }
}

/// The level a plugin passed, read leniently: unknown levels are errors.
pub(super) fn level(code: u32) -> Level {
    match code {
        0 => Level::Trace,
        1 => Level::Debug,
        2 => Level::Info,
        3 => Level::Warn,
        _ => Level::Error,
    }
}

/// Borrowed text from the plugin, invalid UTF-8 replaced.
///
/// # Safety
///
/// `bytes` must be valid for `len` bytes (or `len` zero).
unsafe fn text<'a>(bytes: *const u8, len: usize) -> std::borrow::Cow<'a, str> {
    if len == 0 || bytes.is_null() {
        return std::borrow::Cow::Borrowed("");
    }
    // SAFETY: the caller's promise, the ABI's rule for borrowed bytes.
    String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(bytes, len) })
}

unsafe extern "C" fn log<S: Services>(ctx: *mut c_void, code: u32, message: *const u8, len: usize) {
    // SAFETY: `ctx` is the `S` given to `vtable`, alive for the call; the
    // message is borrowed for the call (the ABI).
    unsafe { (*(ctx as *const S)).log(level(code), &text(message, len)) }
}

unsafe extern "C" fn secret<S: Services>(
    ctx: *mut c_void,
    name: *const u8,
    name_len: usize,
    out: *mut c_void,
    sink: Sink,
) -> i32 {
    // SAFETY: as for `log`; `sink(out, ..)` is the plugin's to receive the
    // value, which is borrowed only while the sink runs.
    unsafe {
        let services = &*(ctx as *const S);
        let found = services.with_secret(&text(name, name_len), &mut |value| {
            sink(out, value.as_ptr(), value.len())
        });
        i32::from(found)
    }
}

unsafe extern "C" fn counter_add<S: Services>(
    ctx: *mut c_void,
    name: *const u8,
    len: usize,
    delta: u64,
) {
    // SAFETY: as for `log`.
    unsafe { (*(ctx as *const S)).counter_add(&text(name, len), delta) }
}

unsafe extern "C" fn gauge_set<S: Services>(
    ctx: *mut c_void,
    name: *const u8,
    len: usize,
    value: f64,
) {
    // SAFETY: as for `log`.
    unsafe { (*(ctx as *const S)).gauge_set(&text(name, len), value) }
}
