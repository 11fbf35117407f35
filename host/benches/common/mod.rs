//! What the benchmarks share: where plugins are, a batch as the spool
//! hands it over, the same plugin code called directly, and statistics.

#![allow(dead_code)] // each benchmark uses its own part

use std::path::{Path, PathBuf};
use std::time::Duration;

use auditrelay::envelope::AuditEventEnvelope;
use auditrelay::internals::{Batch, Record};
use auditrelay_plugin_api::testing::sample_envelope;
use auditrelay_plugin_api::{Event, InitContext, Plugin, parse_config};

/// Clears what would distort figures: a host backtrace per wasmtime error.
pub fn quiet_backtraces() {
    // SAFETY: called first thing in `main`, before any other thread exists.
    unsafe {
        std::env::remove_var("RUST_BACKTRACE");
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
}

/// The benchmark's name filter: the first argument that is not an option
/// (`cargo bench` passes `--bench`); empty for none.
pub fn name_filter() -> String {
    std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with("--"))
        .unwrap_or_default()
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// A scratch directory on tmpfs when there is one: the figures are about
/// the relay's and the plugins' CPU, not the disk's write-back speed.
pub fn scratch_dir() -> tempfile::TempDir {
    if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

pub fn plugin_dir() -> PathBuf {
    let dir = target_dir().join("plugins");
    assert!(
        dir.join("blackhole.wasm").exists(),
        "run scripts/build-plugins first"
    );
    dir
}

pub fn batch_of(n: usize) -> Batch {
    let records: Vec<Record> = (0..n)
        .map(|i| Record::from_envelope(&sample_envelope(i), &Default::default()).unwrap())
        .collect();
    Batch::of(0, &records)
}

/// The same plugin code, called the way a native host would: the plugin
/// API's `Event` views borrowed from the spool's batch, no copies.
pub struct Native<P: Plugin>(P);

impl<P: Plugin> Native<P> {
    /// Initialises the plugin from its config JSON.
    pub fn new(config_json: &str, granted_dir: Option<PathBuf>) -> Self {
        let config = parse_config::<P>(config_json).unwrap();
        let ctx = InitContext {
            instance: "bench".into(),
            granted_dir,
        };
        Native(P::init(config, &ctx).unwrap())
    }

    pub fn deliver(&mut self, batch: &Batch) {
        let events: Vec<Event<'_>> = batch.events().map(|(_, event)| event).collect();
        self.0.deliver(&events).unwrap();
    }
}

/// A directly called plugin of any type.
pub trait NativeDeliver {
    fn deliver(&mut self, batch: &Batch);
}

impl<P: Plugin> NativeDeliver for Native<P> {
    fn deliver(&mut self, batch: &Batch) {
        Native::deliver(self, batch)
    }
}

pub fn ns_per_event(elapsed: Duration, events: usize) -> f64 {
    elapsed.as_nanos() as f64 / events as f64
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A ~1 KB envelope like the middleware captures: a request body.
pub fn typical(i: usize) -> AuditEventEnvelope {
    let mut event = sample_envelope(i);
    event.payload = serde_json::json!({
        "request": {
            "method": "POST", "path": "/v1/groups/g-7/members",
            "body": {"member": format!("u-{i}"), "role": "member", "notify": true,
                     "comment": "added for the on-call rotation of the payments team this week",
                     "labels": ["oncall", "payments", "q4"], "expires_in_days": 30},
            "headers": {"content-type": "application/json", "user-agent": "curl/8.5.0",
                        "x-request-id": format!("req-{i:08}"), "accept": "*/*"}
        },
        "response": {"status": 201, "body": {"id": format!("m-{i}"), "created": true,
                     "group": {"id": "g-7", "name": "payments-oncall", "members": 12}}},
        "timing_ms": {"db": 3.25, "total": 11.5}
    });
    event.metadata.insert("app_version".into(), "3.1.0".into());
    event.metadata.insert("region".into(), "eu-west-1".into());
    event
}
