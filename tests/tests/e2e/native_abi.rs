//! The native plugin ABI (`plugin-api/include/auditrelay_plugin.h`),
//! exercised the way a host uses it: libraries loaded with libloading,
//! the version checked first, host services passed as C callbacks.
//!
//! - Rust plugins built as `cdylib`s by `export_plugin!` (the file
//!   exporter and the faulty fixture, from `scripts/build-plugins`);
//! - a plugin written in C from the header alone, compiled here with `cc`;
//! - panics become a status, never an unwind into the caller;
//! - nothing leaks across thousands of init/deliver/shutdown cycles.

use std::collections::HashMap;
use std::ffi::c_void;
use std::path::Path;
use std::sync::Mutex;

use auditrelay_plugin_api::batch::BatchBuilder;
use auditrelay_plugin_api::native::{ABI_VERSION, Host, Sink, Status};
use auditrelay_plugin_api::testing::sample_events;
use auditrelay_tests::{compile_c_plugin, native_plugin};
use libloading::{Library, Symbol};

/// What the plugin did through the host callbacks.
#[derive(Default)]
struct Recorder {
    logs: Mutex<Vec<(u32, String)>>,
    counters: Mutex<HashMap<String, u64>>,
    secrets: HashMap<String, String>,
}

fn text(bytes: *const u8, len: usize) -> String {
    // SAFETY: the ABI: borrowed, valid for `len` bytes during the call.
    String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(bytes, len) }).into_owned()
}

unsafe extern "C" fn log(ctx: *mut c_void, level: u32, message: *const u8, len: usize) {
    let recorder = unsafe { &*(ctx as *const Recorder) };
    recorder
        .logs
        .lock()
        .unwrap()
        .push((level, text(message, len)));
}

unsafe extern "C" fn secret(
    ctx: *mut c_void,
    name: *const u8,
    len: usize,
    out: *mut c_void,
    sink: Sink,
) -> i32 {
    let recorder = unsafe { &*(ctx as *const Recorder) };
    match recorder.secrets.get(&text(name, len)) {
        Some(value) => {
            unsafe { sink(out, value.as_ptr(), value.len()) };
            1
        }
        None => 0,
    }
}

unsafe extern "C" fn counter_add(ctx: *mut c_void, name: *const u8, len: usize, delta: u64) {
    let recorder = unsafe { &*(ctx as *const Recorder) };
    *recorder
        .counters
        .lock()
        .unwrap()
        .entry(text(name, len))
        .or_default() += delta;
}

unsafe extern "C" fn gauge_set(_: *mut c_void, _: *const u8, _: usize, _: f64) {}

unsafe extern "C" fn collect(out: *mut c_void, bytes: *const u8, len: usize) {
    let out = unsafe { &mut *(out as *mut Vec<u8>) };
    out.extend_from_slice(unsafe { std::slice::from_raw_parts(bytes, len) });
}

type Init = unsafe extern "C" fn(*const Host, *const u8, usize, *mut c_void, Sink) -> *mut c_void;
type Deliver = unsafe extern "C" fn(*mut c_void, u32, *const u8, usize, *mut c_void, Sink) -> i32;
type Flush = unsafe extern "C" fn(*mut c_void, *mut c_void, Sink) -> i32;
type Shutdown = unsafe extern "C" fn(*mut c_void);

/// A loaded plugin library and a host for it.
struct Plugin {
    library: Library,
    recorder: Box<Recorder>,
    host: Box<Host>,
}

impl Plugin {
    fn load(path: &Path, secrets: &[(&str, &str)]) -> Plugin {
        // SAFETY: loading runs the library's initialisers; these are ours.
        let library =
            unsafe { Library::new(path) }.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let recorder = Box::new(Recorder {
            secrets: secrets
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Recorder::default()
        });
        let host = Box::new(Host {
            ctx: &*recorder as *const Recorder as *mut c_void,
            log,
            secret,
            counter_add,
            gauge_set,
        });
        Plugin {
            library,
            recorder,
            host,
        }
    }

    fn symbol<T>(&self, name: &str) -> Symbol<'_, T> {
        // SAFETY: the types above are the header's.
        unsafe { self.library.get(name.as_bytes()) }.unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn abi_version(&self) -> u32 {
        unsafe { self.symbol::<unsafe extern "C" fn() -> u32>("auditrelay_abi_version")() }
    }

    fn describe(&self) -> serde_json::Value {
        let mut out = Vec::new();
        let describe =
            self.symbol::<unsafe extern "C" fn(*mut c_void, Sink)>("auditrelay_describe");
        unsafe { describe(&mut out as *mut Vec<u8> as *mut c_void, collect) };
        serde_json::from_slice(&out).expect("describe is JSON")
    }

    fn init(&self, context: serde_json::Value) -> Result<*mut c_void, String> {
        let context = serde_json::to_vec(&context).unwrap();
        let mut out = Vec::new();
        let init = self.symbol::<Init>("auditrelay_init");
        let handle = unsafe {
            init(
                &*self.host,
                context.as_ptr(),
                context.len(),
                &mut out as *mut Vec<u8> as *mut c_void,
                collect,
            )
        };
        if handle.is_null() {
            Err(String::from_utf8(out).unwrap())
        } else {
            assert!(out.is_empty(), "success writes nothing");
            Ok(handle)
        }
    }

    fn deliver(&self, handle: *mut c_void, batch: &BatchBuilder) -> (i32, String) {
        let mut out = Vec::new();
        let deliver = self.symbol::<Deliver>("auditrelay_deliver");
        let data = batch.data();
        let status = unsafe {
            deliver(
                handle,
                batch.count(),
                data.as_ptr(),
                data.len(),
                &mut out as *mut Vec<u8> as *mut c_void,
                collect,
            )
        };
        (status, String::from_utf8(out).unwrap())
    }

    fn flush(&self, handle: *mut c_void) -> i32 {
        let mut out = Vec::new();
        unsafe {
            self.symbol::<Flush>("auditrelay_flush")(
                handle,
                &mut out as *mut Vec<u8> as *mut c_void,
                collect,
            )
        }
    }

    fn shutdown(&self, handle: *mut c_void) {
        unsafe { self.symbol::<Shutdown>("auditrelay_shutdown")(handle) }
    }
}

fn batch_of(events: &[auditrelay_plugin_api::EventBuf]) -> BatchBuilder {
    events.iter().map(|e| e.as_event()).collect()
}

#[test]
fn a_rust_plugin_built_as_a_cdylib_speaks_the_abi() {
    let plugin = Plugin::load(&native_plugin("auditrelay_plugin_file"), &[]);
    assert_eq!(plugin.abi_version(), ABI_VERSION);
    let description = plugin.describe();
    assert_eq!(description["name"], "file");
    assert!(
        description["config_keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["name"] == "rotate_bytes")
    );

    let dir = tempfile::tempdir().unwrap();
    let handle = plugin
        .init(serde_json::json!({"instance": "archive", "config": {"fsync": false}, "granted_dir": dir.path()}))
        .unwrap();
    let events = sample_events(100);
    assert_eq!(
        plugin.deliver(handle, &batch_of(&events)),
        (Status::Accepted as i32, String::new())
    );
    assert_eq!(plugin.flush(handle), Status::Accepted as i32);
    plugin.shutdown(handle);
    let written = auditrelay_tests::ndjson_lines(dir.path());
    let expected: Vec<Vec<u8>> = events.iter().map(|e| e.envelope.clone()).collect();
    assert_eq!(written, expected, "every event, byte for byte, in order");

    // A bad config is refused through the sink, naming the key.
    let error = plugin
        .init(serde_json::json!({"instance": "x", "config": {"rotate_bytes": "lots"}, "granted_dir": dir.path()}))
        .unwrap_err();
    assert!(error.contains("rotate_bytes"), "{error}");
}

#[test]
fn a_panic_is_a_status_and_the_instance_is_replaced() {
    let plugin = Plugin::load(&native_plugin("auditrelay_fixture_faulty"), &[]);
    let handle = plugin
        .init(serde_json::json!({"instance": "f", "config": {"fault": "panic"}}))
        .unwrap();
    let batch = batch_of(&sample_events(3));
    let (status, message) = plugin.deliver(handle, &batch);
    assert_eq!(status, Status::Panicked as i32);
    assert!(
        message.contains("fixture panic on a batch of 3 events"),
        "{message}"
    );
    let (status, message) = plugin.deliver(handle, &batch);
    assert_eq!(
        status,
        Status::Panicked as i32,
        "a panicked instance stays refused"
    );
    assert!(message.contains("new instance"), "{message}");
    plugin.shutdown(handle);

    // Retryable and partially rejected outcomes carry their JSON.
    let handle = plugin
        .init(serde_json::json!({"instance": "f", "config": {"fault": "retryable"}}))
        .unwrap();
    let (status, json) = plugin.deliver(handle, &batch);
    assert_eq!(status, Status::Retryable as i32);
    let outcome: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(outcome["message"].is_string(), "{json}");
    plugin.shutdown(handle);
    let handle = plugin
        .init(serde_json::json!({"instance": "f", "config": {"fault": "reject_odd"}}))
        .unwrap();
    let (status, json) = plugin.deliver(handle, &batch);
    assert_eq!(status, Status::PartiallyRejected as i32);
    let rejected: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(
        rejected
            .iter()
            .map(|r| r["index"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1]
    );
    plugin.shutdown(handle);
}

#[test]
fn a_plugin_written_in_c_from_the_header_loads_and_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let library = compile_c_plugin("counter.c", dir.path());

    let plugin = Plugin::load(&library, &[("prefix", "c")]);
    assert_eq!(plugin.abi_version(), ABI_VERSION);
    assert_eq!(plugin.describe()["name"], "c-counter");

    let unconfigured = Plugin::load(&library, &[]);
    assert!(
        unconfigured
            .init(serde_json::json!({"instance": "c", "config": {}}))
            .unwrap_err()
            .contains("prefix")
    );

    let handle = plugin
        .init(serde_json::json!({"instance": "c", "config": {}}))
        .unwrap();
    let mut events = sample_events(5);
    let refused =
        auditrelay_plugin_api::envelope::AuditEventEnvelope::builder("app", "test.refused")
            .actor(auditrelay_plugin_api::envelope::Actor::user("u"))
            .outcome(auditrelay_plugin_api::envelope::Outcome::Success)
            .build()
            .unwrap();
    events.insert(2, auditrelay_plugin_api::EventBuf::from_envelope(&refused));
    let (status, json) = plugin.deliver(handle, &batch_of(&events));
    assert_eq!(status, Status::PartiallyRejected as i32);
    let rejected: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["index"], 2);
    assert_eq!(
        plugin.recorder.counters.lock().unwrap()["events_counted"],
        5
    );
    let logs = plugin.recorder.logs.lock().unwrap().clone();
    assert!(
        logs.contains(&(2, "c: 5 events so far".to_owned())),
        "{logs:?}"
    );
    plugin.shutdown(handle);
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split(' ').nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn thousands_of_cycles_leak_nothing() {
    let plugin = Plugin::load(&native_plugin("auditrelay_plugin_blackhole"), &[]);
    let batch = batch_of(&sample_events(50));
    let cycle = || {
        let handle = plugin
            .init(serde_json::json!({"instance": "b", "config": {}}))
            .unwrap();
        assert_eq!(plugin.deliver(handle, &batch).0, Status::Accepted as i32);
        plugin.shutdown(handle);
    };
    for _ in 0..500 {
        cycle();
    }
    let before = resident_bytes();
    for _ in 0..5000 {
        cycle();
    }
    let grown = resident_bytes().saturating_sub(before);
    assert!(
        grown < 4 * 1024 * 1024,
        "resident memory grew {grown} bytes over 5000 cycles"
    );
}
