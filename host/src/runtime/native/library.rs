//! One native plugin library, opened and checked against the ABI.
//!
//! [`NativeLibrary::open`] reads `auditrelay_abi_version` before it looks
//! at anything else: a library built for another ABI is refused with both
//! versions named, never called. The library is then kept loaded for the
//! life of the process.

use std::ffi::c_void;
use std::path::{Path, PathBuf};

use auditrelay_plugin_api::native::{ABI_VERSION, Host, Sink};
use libloading::Library;

use crate::runtime::PluginInfo;

type AbiVersionFn = unsafe extern "C" fn() -> u32;
type DescribeFn = unsafe extern "C" fn(out: *mut c_void, sink: Sink);
type InitFn = unsafe extern "C" fn(
    host: *const Host,
    context: *const u8,
    len: usize,
    out: *mut c_void,
    sink: Sink,
) -> *mut c_void;
type DeliverFn = unsafe extern "C" fn(
    instance: *mut c_void,
    count: u32,
    data: *const u8,
    len: usize,
    out: *mut c_void,
    sink: Sink,
) -> i32;
type FlushFn = unsafe extern "C" fn(instance: *mut c_void, out: *mut c_void, sink: Sink) -> i32;
type ShutdownFn = unsafe extern "C" fn(instance: *mut c_void);

/// A plugin instance's opaque handle, as `auditrelay_init` returned it.
#[derive(Debug)]
pub struct Handle(*mut c_void);

// The ABI lets a handle be used from any thread, one call at a time; the
// owner of a `Handle` makes the calls and never overlaps them.
unsafe impl Send for Handle {}

/// An opened, version-checked plugin library and its entry points.
pub struct NativeLibrary {
    path: PathBuf,
    describe: DescribeFn,
    init: InitFn,
    deliver: DeliverFn,
    flush: FlushFn,
    shutdown: ShutdownFn,
}

impl std::fmt::Debug for NativeLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeLibrary")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Appends the bytes a plugin hands to its sink to the `Vec<u8>` at `out`.
pub(super) unsafe extern "C" fn collect(out: *mut c_void, bytes: *const u8, len: usize) {
    if len == 0 {
        return;
    }
    // SAFETY: `out` is the `Vec<u8>` this module passed with the call;
    // the ABI makes `bytes` valid for `len` bytes until the sink returns.
    unsafe {
        let out = &mut *(out as *mut Vec<u8>);
        out.extend_from_slice(std::slice::from_raw_parts(bytes, len));
    }
}

fn as_out(buffer: &mut Vec<u8>) -> *mut c_void {
    buffer as *mut Vec<u8> as *mut c_void
}

impl NativeLibrary {
    /// Opens the library at `path`, checks its ABI version and finds its
    /// entry points. The library stays loaded until the process exits.
    ///
    /// Opening runs the library's initialisers: only the plugin runner (or
    /// an `in-process` instance, trusted by configuration) does this.
    pub fn open(path: &Path) -> Result<&'static NativeLibrary, String> {
        // SAFETY: loading a library runs its initialisers; native plugins
        // are trusted code (see the module documentation).
        let library = unsafe { Library::new(path) }.map_err(|e| {
            format!("cannot be loaded as a shared library: {e} (is it built for this platform, with its dependencies installed?)")
        })?;
        // Never unloaded: see the module documentation.
        let library: &'static Library = Box::leak(Box::new(library));

        // SAFETY: the symbol's type is the header's; a library without it
        // is refused before anything else is called.
        let abi_version = unsafe { library.get::<AbiVersionFn>(b"auditrelay_abi_version") }
            .map_err(|_| {
                "is not an auditrelay native plugin: it exports no auditrelay_abi_version (build it with auditrelay-plugin-api's export_plugin! and the crate's `native` feature, or implement include/auditrelay_plugin.h)".to_owned()
            })?;
        // SAFETY: as above; the function takes nothing and returns a u32.
        let version = unsafe { abi_version() };
        if version != ABI_VERSION {
            return Err(format!(
                "implements native plugin ABI version {version}, but this relay speaks ABI version {ABI_VERSION}: rebuild the plugin against auditrelay-plugin-api {} (AUDITRELAY_ABI_VERSION {ABI_VERSION} in include/auditrelay_plugin.h)",
                env!("CARGO_PKG_VERSION")
            ));
        }

        fn symbol<T: Copy>(library: &'static Library, name: &str) -> Result<T, String> {
            // SAFETY: every `T` used below is the header's type for `name`,
            // and the library is never unloaded, so the pointer stays valid.
            unsafe { library.get::<T>(name.as_bytes()) }
                .map(|symbol| *symbol)
                .map_err(|_| {
                    format!("declares ABI version {ABI_VERSION} but does not export {name}; every function of include/auditrelay_plugin.h is required")
                })
        }
        Ok(Box::leak(Box::new(NativeLibrary {
            path: path.to_owned(),
            describe: symbol(library, "auditrelay_describe")?,
            init: symbol(library, "auditrelay_init")?,
            deliver: symbol(library, "auditrelay_deliver")?,
            flush: symbol(library, "auditrelay_flush")?,
            shutdown: symbol(library, "auditrelay_shutdown")?,
        })))
    }

    /// The plugin's description, as its JSON text.
    pub fn describe_json(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // SAFETY: `collect` matches `Sink` and `out` outlives the call.
        unsafe { (self.describe)(as_out(&mut out), collect) };
        out
    }

    /// Starts an instance with the ABI's init context (JSON).
    ///
    /// # Safety
    ///
    /// `host` and everything its callbacks reach must stay valid until
    /// [`shutdown`](Self::shutdown) returns for the new handle.
    pub unsafe fn init(&self, host: *const Host, context: &[u8]) -> Result<Handle, String> {
        let mut out = Vec::new();
        // SAFETY: the caller keeps `host` alive; `context` and `out` are
        // valid for the call.
        let handle = unsafe {
            (self.init)(
                host,
                context.as_ptr(),
                context.len(),
                as_out(&mut out),
                collect,
            )
        };
        if handle.is_null() {
            let message = String::from_utf8_lossy(&out).into_owned();
            Err(if message.is_empty() {
                "init returned no instance and no reason".to_owned()
            } else {
                message
            })
        } else {
            Ok(Handle(handle))
        }
    }

    /// Delivers `count` events in the batch wire layout; the status code
    /// and whatever the plugin wrote to the sink.
    pub fn deliver(&self, handle: &mut Handle, count: u32, data: &[u8]) -> (i32, Vec<u8>) {
        let mut out = Vec::new();
        // SAFETY: the handle is live (shutdown consumes it); `data` and
        // `out` are valid for the call.
        let status = unsafe {
            (self.deliver)(
                handle.0,
                count,
                data.as_ptr(),
                data.len(),
                as_out(&mut out),
                collect,
            )
        };
        (status, out)
    }

    /// Asks the instance to push out what it holds.
    pub fn flush(&self, handle: &mut Handle) -> (i32, Vec<u8>) {
        let mut out = Vec::new();
        // SAFETY: as for `deliver`.
        let status = unsafe { (self.flush)(handle.0, as_out(&mut out), collect) };
        (status, out)
    }

    /// Releases the instance.
    pub fn shutdown(&self, handle: Handle) {
        // SAFETY: the handle is live and, consumed here, never used again.
        unsafe { (self.shutdown)(handle.0) }
    }
}

/// Checks a description's JSON.
pub fn parse_info(json: &[u8]) -> Result<PluginInfo, String> {
    let info: PluginInfo = serde_json::from_slice(json).map_err(|e| {
        format!(
            "auditrelay_describe wrote an unreadable description ({e}): {:?}",
            crate::runtime::services::cut(&String::from_utf8_lossy(json), 200)
        )
    })?;
    if info.name.trim().is_empty() {
        return Err("auditrelay_describe gave an empty plugin name".into());
    }
    Ok(info)
}
