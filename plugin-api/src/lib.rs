//! Write exporter plugins for [auditrelay], and build audit events.
//!
//! auditrelay takes audit events from applications after their database
//! commit and delivers them to exporter plugins: sandboxed WebAssembly
//! components that ship events to S3, Splunk, Datadog, a file, ... This
//! crate is everything a plugin author needs:
//!
//! - [`envelope`]: the [`AuditEventEnvelope`] (who did what, when, why, with
//!   what outcome), its validation, builder, canonical JSON and CloudEvents
//!   mapping. Applications use it too.
//! - [`Plugin`]: the one trait an exporter implements, and
//!   [`export_plugin!`] to turn it into a component.
//! - [`host`]: logging, secrets and metrics provided by the relay.
//! - [`prelude`]: the trait, its types and the export macro in one import.
//! - [`http`]: a blocking HTTP client over `wasi:http`; the relay lets it
//!   reach only the hosts the operator allowed. In native builds (feature
//!   `native-http`) the same client runs on a native transport.
//! - [`packing`]: items encoded back to back and cut into runs that fit a
//!   destination's limits (events per request, bytes per request).
//! - `compression` (feature `compression`): gzip / zstd request bodies
//!   for HTTP exporters.
//! - [`fs`]: files in the one directory the operator granted.
//! - [`settings`]: helpers for config types (durations, required secrets).
//! - [`testing`]: a harness to unit-test a plugin natively with `cargo test`,
//!   and [`testing::compliance`], the suite every exporter runs.
//!
//! # A minimal plugin
//!
//! ```
//! use auditrelay_plugin_api::prelude::*;
//!
//! /// Counts events and logs the count of each batch.
//! pub struct Counter {
//!     seen: u64,
//! }
//!
//! impl Plugin for Counter {
//!     type Config = serde_json::Value; // accepts any config
//!
//!     fn info() -> PluginInfo {
//!         PluginInfo::new("counter", env!("CARGO_PKG_VERSION"), "Counts events")
//!     }
//!
//!     fn init(_config: Self::Config, _ctx: &InitContext) -> Result<Self, InitError> {
//!         Ok(Counter { seen: 0 })
//!     }
//!
//!     fn deliver(&mut self, events: &[Event<'_>]) -> Result<Delivery, DeliverError> {
//!         self.seen += events.len() as u64;
//!         host::info(format!("{} events so far", self.seen));
//!         Ok(Delivery::Accepted)
//!     }
//! }
//!
//! export_plugin!(Counter);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (the crate
//! must be a `cdylib`), drop the `.wasm` into the relay's `plugin_dir` and
//! enable it with a `[plugins.counter]` table.
//!
//! # Delivery contract
//!
//! - Batches arrive in the relay's order; calls never overlap.
//! - Return [`Delivery::Accepted`] only once the destination holds the
//!   events. The relay then forgets them.
//! - Return [`DeliverError::Retryable`] for anything that may pass later:
//!   the relay retries the whole batch with backoff, forever by default, so a
//!   plugin may see an event more than once. `(source, id)` identifies it.
//! - Return [`DeliverError::Permanent`] (or
//!   [`Delivery::PartiallyRejected`] for single events) when retrying cannot
//!   help; the relay sets those events aside as dead letters.
//! - A panic is caught by the relay: the instance is replaced and the batch
//!   retried.
//!
//! [auditrelay]: https://github.com/auditrelay/auditrelay

// The generated wasm bindings name this crate by path, from inside it too.
extern crate self as auditrelay_plugin_api;

pub mod batch;
#[cfg(feature = "compression")]
pub mod compression;
pub mod envelope;
mod event;
pub mod fs;
pub mod host;
pub mod http;
pub mod mapper;
#[cfg(not(target_arch = "wasm32"))]
pub mod native;
pub mod packing;
mod plugin;
pub mod settings;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

#[cfg(target_arch = "wasm32")]
mod guest;

pub use envelope::AuditEventEnvelope;
pub use event::{DeliverError, Delivery, Event, EventBuf, RejectedEvent};
pub use plugin::{ConfigKey, InitContext, InitError, Plugin, PluginInfo, parse_config};

/// What nearly every plugin needs, in one import:
/// `use auditrelay_plugin_api::prelude::*;` — the [`Plugin`] trait and what
/// its methods take and return, [`export_plugin!`], [`host`] (logging,
/// secrets, metrics), [`settings`] (for its config type) and the envelope.
pub mod prelude {
    pub use crate::envelope::AuditEventEnvelope;
    pub use crate::{
        ConfigKey, DeliverError, Delivery, Event, InitContext, InitError, Plugin, PluginInfo,
        RejectedEvent, export_mapper, export_plugin,
    };
    pub use crate::{host, settings};
}

/// The WIT package version this crate implements.
pub const WIT_VERSION: &str = "1.1.0";

/// Exports a [`Plugin`] implementation as the plugin's entry point.
///
/// Use it once, in the plugin crate's `lib.rs`. The same plugin builds two
/// ways:
///
/// - for `wasm32-wasip2`: a component exporting the
///   `auditrelay:plugin/exporter` interface (`wit/plugin.wit`);
/// - for the host target with the plugin crate's `native` feature on: a
///   shared library exporting the C ABI of [`native`]
///   (`include/auditrelay_plugin.h`). Declare `native = []` under
///   `[features]` in the plugin's `Cargo.toml` and build with
///   `cargo build --release --features native`. A plugin that sends
///   [`http::Request`]s declares `native = ["auditrelay-plugin-api/native-http"]`
///   instead, for a native HTTP transport.
///
/// Without the feature a native build exports nothing, so several plugins
/// can be linked into one test or benchmark binary.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        $crate::__export_wasm_plugin!($plugin);
        #[cfg(all(not(target_arch = "wasm32"), feature = "native"))]
        $crate::__export_native_plugin!($plugin);
    };
}

/// Implementation details used by [`export_plugin!`]; not a stable API.
#[doc(hidden)]
pub mod __private {
    #[cfg(target_arch = "wasm32")]
    pub use crate::guest::mapper::{self as mapper_glue, bindings as mapper_bindings};
    #[cfg(target_arch = "wasm32")]
    pub use crate::guest::{bindings, deliver, describe, flush, init, shutdown};
    #[cfg(not(target_arch = "wasm32"))]
    pub use crate::native;
    #[cfg(target_arch = "wasm32")]
    pub use wit_bindgen;
}
