//! The [`Mapper`] trait: records from other systems in, audit events out.
//!
//! A mapper turns what a system the relay does not control sends (a
//! webhook body, a line of its audit file, an element of a polled page)
//! into [`AuditEventEnvelope`]s. Allowlists, action maps, tenant inference
//! and payload trimming live in a mapper, not in the relay. It runs in the
//! same sandbox as an exporter, with less: no files, no HTTP.
//!
//! ```
//! use auditrelay_plugin_api::mapper::{Mapped, Mapper, Record};
//! use auditrelay_plugin_api::testing::MapperHarness;
//! use auditrelay_plugin_api::prelude::*;
//! use serde_json::json;
//!
//! /// Keeps sign-ins only.
//! struct SignIns;
//!
//! impl Mapper for SignIns {
//!     type Config = serde_json::Value;
//!     fn info() -> PluginInfo { PluginInfo::new("sign-ins", "0.1.0", "sign-ins only") }
//!     fn init(_config: Self::Config, _ctx: &InitContext) -> Result<Self, InitError> {
//!         Ok(SignIns)
//!     }
//!     fn map(&mut self, record: &Record<'_>) -> Mapped {
//!         let event: serde_json::Value = match record.json() {
//!             Ok(event) => event,
//!             Err(reason) => return Mapped::refused(reason),
//!         };
//!         if event["kind"] != "UserSignedIn" {
//!             return Mapped::dropped();
//!         }
//!         Mapped::event(&json!({
//!             "id": event["uid"], "source": record.source, "type": "user.login",
//!             "time": event["at"], "actor": {"id": event["user"]},
//!             "action": {"outcome": "success"},
//!         }))
//!     }
//! }
//!
//! let mut harness = MapperHarness::<SignIns>::new(json!({})).unwrap();
//! let mapped = harness.map_json(&json!({
//!     "uid": "e-1", "kind": "UserSignedIn", "user": "ana", "at": "2026-12-01T10:00:00Z",
//! }));
//! assert_eq!(mapped.envelopes().unwrap()[0].event_type, "user.login");
//! assert_eq!(harness.map_json(&json!({"kind": "PageViewed"})), Mapped::dropped());
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::envelope::AuditEventEnvelope;
use crate::plugin::{InitContext, InitError, PluginInfo};

/// A mapper plugin: maps each foreign record to zero or more audit events.
///
/// Built for `wasm32-wasip2` with [`export_mapper!`](crate::export_mapper),
/// it is a component of the WIT world `mapper-plugin`; natively it runs
/// under [`testing::MapperHarness`](crate::testing::MapperHarness).
///
/// Calls never overlap. If `map` panics (or loops past its deadline), the
/// relay discards the instance, starts a fresh one with
/// [`init`](Mapper::init) and maps that batch's records one at a time, so
/// only the record that crashes it is set aside.
pub trait Mapper: Sized + 'static {
    /// The mapper's `config` table, deserialized from the relay's TOML.
    /// Use `#[serde(deny_unknown_fields)]` so typos are reported by name.
    type Config: DeserializeOwned;

    /// Static description: name, version, config keys.
    fn info() -> PluginInfo;

    /// Checks the configuration. Errors are shown to the operator as
    /// they are: name the key and the fix.
    fn init(config: Self::Config, ctx: &InitContext) -> Result<Self, InitError>;

    /// Maps one record. The relay validates every envelope it returns as
    /// `POST /v1/events` would; one that fails sets the record aside.
    fn map(&mut self, record: &Record<'_>) -> Mapped;

    /// Releases resources before the instance is dropped.
    fn shutdown(&mut self) {}
}

/// One record as a source received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The source's name (`[ingest.<kind>.<name>]`): the usual envelope
    /// `source`.
    pub source: &'a str,
    /// The records' media type, e.g. `application/json`.
    pub content_type: &'a str,
    /// The bytes, unchanged.
    pub data: &'a [u8],
    /// What the source knows besides the bytes: selected request headers
    /// (lower-case names), `file.path`, `poll.url`.
    pub metadata: &'a [(String, String)],
}

impl<'a> Record<'a> {
    /// The value of metadata `name`, if the source gave it.
    pub fn meta(&self, name: &str) -> Option<&'a str> {
        self.metadata
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The bytes as UTF-8 text; the error is a reason for [`Mapped::refused`].
    pub fn text(&self) -> Result<&'a str, String> {
        std::str::from_utf8(self.data).map_err(|e| format!("the record is not UTF-8 text: {e}"))
    }

    /// The bytes read as JSON into `T`; the error names where the JSON is
    /// wrong, as a reason for [`Mapped::refused`].
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_slice(self.data)
            .map_err(|e| format!("the record is not the JSON expected: {e}"))
    }
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapped {
    /// The events the record stands for, each an envelope as JSON. None:
    /// dropped on purpose (counted, nothing kept).
    Envelopes(Vec<String>),
    /// The record cannot be mapped: the reason, for the operator. The
    /// relay sets the record aside as a dead letter with its bytes.
    Refused(String),
}

impl Mapped {
    /// The record is dropped on purpose (for example not allowlisted).
    pub fn dropped() -> Self {
        Mapped::Envelopes(Vec::new())
    }

    /// The record is one event: `envelope` is an [`AuditEventEnvelope`] or
    /// any value that serializes to one (a `serde_json::Value` built from
    /// the record).
    pub fn event(envelope: &impl Serialize) -> Self {
        Self::events([envelope])
    }

    /// The record is several events.
    pub fn events<T: Serialize>(envelopes: impl IntoIterator<Item = T>) -> Self {
        let mut json = Vec::new();
        for envelope in envelopes {
            match serde_json::to_string(&envelope) {
                Ok(text) => json.push(text),
                Err(e) => {
                    return Mapped::Refused(format!(
                        "the mapped event cannot be written as JSON: {e}"
                    ));
                }
            }
        }
        Mapped::Envelopes(json)
    }

    /// The record cannot be mapped, because of `reason`.
    pub fn refused(reason: impl Into<String>) -> Self {
        Mapped::Refused(reason.into())
    }

    /// The events read back as the relay reads them (strictly, every rule
    /// checked), for a mapper's tests: the first one the relay would
    /// refuse is the error, with its position and every problem found.
    pub fn envelopes(&self) -> Result<Vec<AuditEventEnvelope>, String> {
        match self {
            Mapped::Refused(reason) => Err(format!("the record was refused: {reason}")),
            Mapped::Envelopes(json) => json
                .iter()
                .enumerate()
                .map(|(at, text)| {
                    AuditEventEnvelope::from_json(text.as_bytes())
                        .map_err(|e| format!("mapped event {at} would be refused: {e}"))
                })
                .collect(),
        }
    }
}

/// Exports a [`Mapper`] implementation as the component's `mapper`
/// interface (world `mapper-plugin`). Use it once, in the crate's
/// `lib.rs`; a native build exports nothing (mappers run only sandboxed).
#[macro_export]
macro_rules! export_mapper {
    ($mapper:ty) => {
        #[cfg(target_arch = "wasm32")]
        $crate::__export_wasm_mapper!($mapper);
    };
}
