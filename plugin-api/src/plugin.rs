//! The [`Plugin`] trait every exporter implements.

use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::event::{DeliverError, Delivery, Event};

/// An exporter: receives batches of audit events and delivers them to one
/// destination.
///
/// The same implementation runs as a sandboxed WebAssembly component (built
/// for `wasm32-wasip2` with [`export_plugin!`](crate::export_plugin)) and
/// natively under [`testing::Harness`](crate::testing::Harness).
///
/// Calls never overlap. If any call panics, the relay discards the instance,
/// creates a new one with [`init`](Plugin::init) and retries the batch.
pub trait Plugin: Sized + 'static {
    /// The plugin's `config` table, deserialized from the relay's TOML.
    /// Use `#[serde(deny_unknown_fields)]` so typos are reported by name.
    type Config: DeserializeOwned;

    /// Static description: name, version, config keys.
    fn info() -> PluginInfo;

    /// Checks the configuration and prepares to deliver. Errors are shown
    /// to the operator as they are: name the key and the fix.
    fn init(config: Self::Config, ctx: &InitContext) -> Result<Self, InitError>;

    /// Delivers a batch in relay order. Return `Ok` only once the
    /// destination holds the events: the relay then forgets them. The
    /// events borrow from the batch; copy what must outlive the call.
    fn deliver(&mut self, events: &[Event<'_>]) -> Result<Delivery, DeliverError>;

    /// Pushes out anything held in memory. Called when the relay is idle and
    /// before [`shutdown`](Plugin::shutdown).
    fn flush(&mut self) -> Result<(), DeliverError> {
        Ok(())
    }

    /// Releases resources before the instance is dropped.
    fn shutdown(&mut self) {}
}

/// What the relay tells a plugin in [`Plugin::init`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InitContext {
    /// The instance name (`[plugins.<name>]` in the relay's TOML).
    pub instance: String,
    /// The directory the operator granted (`grant_dir`), as the plugin sees
    /// it. Inside the sandbox this is a guest path such as `/granted`.
    pub granted_dir: Option<PathBuf>,
}

/// A failed [`Plugin::init`]: the message is shown to the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InitError(pub String);

impl InitError {
    /// An init error with the given message.
    pub fn new(message: impl Into<String>) -> Self {
        InitError(message.into())
    }
}

impl From<String> for InitError {
    fn from(message: String) -> Self {
        InitError(message)
    }
}

impl From<&str> for InitError {
    fn from(message: &str) -> Self {
        InitError(message.to_owned())
    }
}

/// What a plugin says about itself (`describe` in WIT; the JSON of
/// `auditrelay_describe` in the native ABI).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    /// Short machine name, e.g. `file`.
    pub name: String,
    /// Semver version of the plugin.
    pub version: String,
    /// One sentence for operators.
    pub description: String,
    /// Every key of the `config` table.
    pub config_keys: Vec<ConfigKey>,
}

impl PluginInfo {
    /// Describes a plugin; add keys with [`key`](Self::key).
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        PluginInfo {
            name: name.into(),
            version: version.into(),
            description: description.into(),
            config_keys: Vec::new(),
        }
    }

    /// Documents one config key.
    pub fn key(mut self, key: ConfigKey) -> Self {
        self.config_keys.push(key);
        self
    }
}

/// Documentation of one config key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigKey {
    /// Key name as written in TOML.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Whether init fails without it.
    pub required: bool,
    /// The default, as TOML text.
    pub default_value: Option<String>,
}

impl ConfigKey {
    /// A key that must be set.
    pub fn required(name: impl Into<String>, description: impl Into<String>) -> Self {
        ConfigKey {
            name: name.into(),
            description: description.into(),
            required: true,
            default_value: None,
        }
    }

    /// An optional key with no default value: absent, the plugin does
    /// without it. Say in `description` what that means ("unset: each
    /// event's `source`").
    pub fn unset(name: impl Into<String>, description: impl Into<String>) -> Self {
        ConfigKey {
            name: name.into(),
            description: description.into(),
            required: false,
            default_value: None,
        }
    }

    /// A key with a default, given as TOML text (e.g. `"\"64MiB\""` or
    /// `"true"`): [`testing::config_docs`](crate::testing::config_docs)
    /// checks that it parses to the value the code uses.
    pub fn optional(
        name: impl Into<String>,
        description: impl Into<String>,
        default_value: impl Into<String>,
    ) -> Self {
        ConfigKey {
            name: name.into(),
            description: description.into(),
            required: false,
            default_value: Some(default_value.into()),
        }
    }
}

/// Parses a plugin's JSON config into `P::Config`, naming the bad key.
pub fn parse_config<P: Plugin>(config_json: &str) -> Result<P::Config, InitError> {
    parse_config_as(config_json)
}

/// Parses a plugin's (exporter's or mapper's) JSON config into `C`,
/// naming the bad key.
pub(crate) fn parse_config_as<C: DeserializeOwned>(config_json: &str) -> Result<C, InitError> {
    let json = if config_json.trim().is_empty() {
        "{}"
    } else {
        config_json
    };
    let mut deserializer = serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let inner = match inner.rfind(" at line ") {
            Some(at) => &inner[..at],
            None => &inner,
        };
        if path == "." {
            InitError(format!("config: {inner}"))
        } else {
            InitError(format!("config.{path}: {inner}"))
        }
    })
}
