//! The ABI's entry points for any [`Plugin`], which `export_plugin!`
//! exports under their C names; and the host's callbacks seen as
//! [`HostServices`].

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use super::{Host, InitRequest, RetryableOutcome, Sink, Status};
use crate::batch::read_batch;
use crate::event::{DeliverError, Delivery};
use crate::host::{HostServices, Level, backend};
use crate::plugin::{InitContext, Plugin, parse_config};

/// One instance behind the opaque handle.
struct Instance<P> {
    plugin: P,
    host: Arc<dyn HostServices>,
    /// Set after a panic: the plugin's state may be broken.
    poisoned: bool,
}

/// [`HostServices`] over the C callbacks.
struct CHost(Host);

// The host promises its callbacks may be called from the calling thread,
// and calls never overlap.
unsafe impl Send for CHost {}
unsafe impl Sync for CHost {}

unsafe extern "C" fn collect(out: *mut c_void, bytes: *const u8, len: usize) {
    // SAFETY: `out` is the `Vec<u8>` this module passed; `bytes` is valid
    // for `len` bytes for this call (the ABI's rule).
    unsafe {
        let out = &mut *(out as *mut Vec<u8>);
        out.extend_from_slice(std::slice::from_raw_parts(bytes, len));
    }
}

impl HostServices for CHost {
    fn log(&self, level: Level, message: &str) {
        let level = level as u32;
        // SAFETY: the host's callback, valid while the instance lives.
        unsafe { (self.0.log)(self.0.ctx, level, message.as_ptr(), message.len()) }
    }

    fn secret(&self, name: &str) -> Option<String> {
        let mut value = Vec::new();
        // SAFETY: as above; `collect` matches `Sink` and `value` outlives the call.
        let found = unsafe {
            (self.0.secret)(
                self.0.ctx,
                name.as_ptr(),
                name.len(),
                &mut value as *mut Vec<u8> as *mut c_void,
                collect,
            )
        };
        (found == 1).then(|| String::from_utf8_lossy(&value).into_owned())
    }

    fn counter_add(&self, name: &str, delta: u64) {
        // SAFETY: as above.
        unsafe { (self.0.counter_add)(self.0.ctx, name.as_ptr(), name.len(), delta) }
    }

    fn gauge_set(&self, name: &str, value: f64) {
        // SAFETY: as above.
        unsafe { (self.0.gauge_set)(self.0.ctx, name.as_ptr(), name.len(), value) }
    }

    fn http(
        &self,
        request: &crate::http::Request,
    ) -> Result<crate::http::Response, crate::http::HttpError> {
        #[cfg(feature = "native-http")]
        {
            crate::http::native::send(request)
        }
        #[cfg(not(feature = "native-http"))]
        {
            let _ = request;
            Err(crate::http::HttpError::new(
                crate::http::HttpErrorKind::Other,
                "this native build has no HTTP transport: enable auditrelay-plugin-api's `native-http` feature from the plugin's `native` feature",
            ))
        }
    }
}

/// Calls `sink(out, bytes)`.
///
/// # Safety
/// `sink` and `out` must be the pair the host passed for this call.
unsafe fn emit(out: *mut c_void, sink: Sink, bytes: &[u8]) {
    // SAFETY: forwarded from the caller.
    unsafe { sink(out, bytes.as_ptr(), bytes.len()) }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// `auditrelay_describe` for `P`.
///
/// # Safety
/// `out` and `sink` as the ABI describes.
pub unsafe fn describe<P: Plugin>(out: *mut c_void, sink: Sink) {
    let json = catch_unwind(|| serde_json::to_vec(&P::info()))
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    // SAFETY: forwarded.
    unsafe { emit(out, sink, &json) }
}

/// `auditrelay_init` for `P`.
///
/// # Safety
/// `host` must point to a valid `ar_host` that outlives the instance;
/// `context` must be valid for `len` bytes; `out`/`sink` as the ABI says.
pub unsafe fn init<P: Plugin>(
    host: *const Host,
    context: *const u8,
    len: usize,
    out: *mut c_void,
    sink: Sink,
) -> *mut c_void {
    // SAFETY: the caller's promises.
    let (host, context) = unsafe { (*host, std::slice::from_raw_parts(context, len)) };
    let started = catch_unwind(AssertUnwindSafe(|| -> Result<Instance<P>, String> {
        let request: InitRequest = serde_json::from_slice(context)
            .map_err(|e| format!("the relay sent an unreadable init context: {e}"))?;
        let host: Arc<dyn HostServices> = Arc::new(CHost(host));
        // Init is not the hot path: a clone keeps `host` free to move.
        let installed = host.clone();
        let _guard = backend::install_for_thread(&*installed);
        let config = parse_config::<P>(&request.config.to_string()).map_err(|e| e.0)?;
        let ctx = InitContext {
            instance: request.instance,
            granted_dir: request.granted_dir,
        };
        let plugin = P::init(config, &ctx).map_err(|e| e.0)?;
        Ok(Instance {
            plugin,
            host,
            poisoned: false,
        })
    }));
    let error = match started {
        Ok(Ok(instance)) => return Box::into_raw(Box::new(instance)) as *mut c_void,
        Ok(Err(message)) => message,
        Err(payload) => format!("init panicked: {}", panic_message(&*payload)),
    };
    // SAFETY: forwarded.
    unsafe { emit(out, sink, error.as_bytes()) };
    std::ptr::null_mut()
}

/// Writes `outcome` to the sink and returns its status.
unsafe fn report(outcome: Result<Delivery, DeliverError>, out: *mut c_void, sink: Sink) -> i32 {
    let (status, bytes) = match outcome {
        Ok(Delivery::Accepted) => (Status::Accepted, Vec::new()),
        Ok(Delivery::PartiallyRejected(rejected)) => (
            Status::PartiallyRejected,
            serde_json::to_vec(&rejected).unwrap_or_default(),
        ),
        Err(DeliverError::Retryable {
            message,
            retry_after,
        }) => (
            Status::Retryable,
            serde_json::to_vec(&RetryableOutcome {
                message,
                retry_after_ms: retry_after.map(|d| d.as_millis().min(u64::MAX as u128) as u64),
            })
            .unwrap_or_default(),
        ),
        Err(DeliverError::Permanent(message)) => (Status::Permanent, message.into_bytes()),
    };
    if !bytes.is_empty() {
        // SAFETY: forwarded.
        unsafe { emit(out, sink, &bytes) };
    }
    status as i32
}

/// Runs `call` on the instance behind `handle`, catching panics.
///
/// # Safety
/// `handle` must come from [`init`] for the same `P` and not be shut down.
unsafe fn with_instance<P: Plugin>(
    handle: *mut c_void,
    out: *mut c_void,
    sink: Sink,
    call: impl FnOnce(&mut P) -> Result<Delivery, DeliverError>,
) -> i32 {
    // SAFETY: the caller's promise; calls never overlap, so this is unique.
    let instance = unsafe { &mut *(handle as *mut Instance<P>) };
    if instance.poisoned {
        let message = b"the plugin panicked earlier; the relay must start a new instance";
        // SAFETY: forwarded.
        unsafe { emit(out, sink, message) };
        return Status::Panicked as i32;
    }
    let _guard = backend::install_for_thread(&*instance.host);
    match catch_unwind(AssertUnwindSafe(|| call(&mut instance.plugin))) {
        // SAFETY: forwarded.
        Ok(outcome) => unsafe { report(outcome, out, sink) },
        Err(payload) => {
            instance.poisoned = true;
            // SAFETY: forwarded.
            unsafe { emit(out, sink, panic_message(&*payload).as_bytes()) };
            Status::Panicked as i32
        }
    }
}

/// `auditrelay_deliver` for `P`.
///
/// # Safety
/// `handle` from [`init`] for `P`; `data` valid for `len` bytes; `out`/`sink`
/// as the ABI says.
pub unsafe fn deliver<P: Plugin>(
    handle: *mut c_void,
    count: u32,
    data: *const u8,
    len: usize,
    out: *mut c_void,
    sink: Sink,
) -> i32 {
    // SAFETY: the caller's promise.
    let data = unsafe { std::slice::from_raw_parts(data, len) };
    // SAFETY: forwarded.
    unsafe {
        with_instance::<P>(handle, out, sink, |plugin| {
            let events = read_batch(data, count)
                .map_err(|e| DeliverError::permanent(format!("unreadable batch: {e}")))?;
            plugin.deliver(&events)
        })
    }
}

/// `auditrelay_flush` for `P`.
///
/// # Safety
/// As [`deliver`].
pub unsafe fn flush<P: Plugin>(handle: *mut c_void, out: *mut c_void, sink: Sink) -> i32 {
    // SAFETY: forwarded.
    unsafe {
        with_instance::<P>(handle, out, sink, |plugin| {
            plugin.flush().map(|()| Delivery::Accepted)
        })
    }
}

/// `auditrelay_shutdown` for `P`.
///
/// # Safety
/// `handle` from [`init`] for `P`, not used again afterwards.
pub unsafe fn shutdown<P: Plugin>(handle: *mut c_void) {
    if handle.is_null() {
        return;
    }
    // SAFETY: the caller's promise: the handle is ours and unique.
    let mut instance = unsafe { Box::from_raw(handle as *mut Instance<P>) };
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let _guard = backend::install_for_thread(&*instance.host);
        if !instance.poisoned {
            instance.plugin.shutdown();
        }
    }));
    // Dropping the plugin may panic too; never let that unwind into C.
    let _ = catch_unwind(AssertUnwindSafe(move || drop(instance)));
}

/// Exports plugin type `$plugin` with the native ABI (C symbols).
#[macro_export]
#[doc(hidden)]
macro_rules! __export_native_plugin {
    ($plugin:ty) => {
        const _: () = {
            use ::std::ffi::c_void;
            use $crate::__private::native as abi;

            #[unsafe(no_mangle)]
            pub extern "C" fn auditrelay_abi_version() -> u32 {
                abi::ABI_VERSION
            }

            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn auditrelay_describe(out: *mut c_void, sink: abi::Sink) {
                unsafe { abi::describe::<$plugin>(out, sink) }
            }

            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn auditrelay_init(
                host: *const abi::Host,
                context: *const u8,
                len: usize,
                out: *mut c_void,
                sink: abi::Sink,
            ) -> *mut c_void {
                unsafe { abi::init::<$plugin>(host, context, len, out, sink) }
            }

            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn auditrelay_deliver(
                instance: *mut c_void,
                count: u32,
                data: *const u8,
                len: usize,
                out: *mut c_void,
                sink: abi::Sink,
            ) -> i32 {
                unsafe { abi::deliver::<$plugin>(instance, count, data, len, out, sink) }
            }

            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn auditrelay_flush(
                instance: *mut c_void,
                out: *mut c_void,
                sink: abi::Sink,
            ) -> i32 {
                unsafe { abi::flush::<$plugin>(instance, out, sink) }
            }

            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn auditrelay_shutdown(instance: *mut c_void) {
                unsafe { abi::shutdown::<$plugin>(instance) }
            }
        };
    };
}
