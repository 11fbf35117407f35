//! The smallest useful exporter: counts events per type and logs the
//! counts. Build it into a plugin with
//!
//! ```text
//! cargo build --release --target wasm32-wasip2 -p auditrelay-example-minimal-plugin
//! cp target/wasm32-wasip2/release/auditrelay_example_minimal_plugin.wasm target/plugins/
//! ```
//!
//! and enable it with `[plugins.counter]` in the relay's TOML.

use std::collections::BTreeMap;

use auditrelay_plugin_api::prelude::*;
use serde::Deserialize;

/// The `config` table: unknown keys are refused by name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Log the counts every this many events.
    #[serde(default = "default_every")]
    pub every: u64,
}

fn default_every() -> u64 {
    1000
}

/// Counts events per type.
pub struct Counter {
    every: u64,
    seen: u64,
    by_type: BTreeMap<String, u64>,
}

impl Plugin for Counter {
    type Config = Config;

    fn info() -> PluginInfo {
        PluginInfo::new(
            "counter",
            env!("CARGO_PKG_VERSION"),
            "Counts events per type",
        )
        .key(ConfigKey::optional(
            "every",
            "Log the counts every this many events",
            "1000",
        ))
    }

    fn init(config: Config, _ctx: &InitContext) -> Result<Self, InitError> {
        if config.every == 0 {
            return Err(InitError::new("config.every must be at least 1"));
        }
        Ok(Counter {
            every: config.every,
            seen: 0,
            by_type: BTreeMap::new(),
        })
    }

    fn deliver(&mut self, events: &[Event<'_>]) -> Result<Delivery, DeliverError> {
        for event in events {
            *self.by_type.entry(event.event_type.to_owned()).or_default() += 1;
            self.seen += 1;
            if self.seen.is_multiple_of(self.every) {
                host::info(format!("{} events: {:?}", self.seen, self.by_type));
            }
        }
        host::counter_add("events", events.len() as u64);
        Ok(Delivery::Accepted)
    }
}

export_plugin!(Counter);

#[cfg(test)]
mod tests {
    use super::*;
    use auditrelay_plugin_api::testing::{Harness, sample_events};

    #[test]
    fn counts_and_logs_every_n_events() {
        let mut counter = Harness::<Counter>::builder()
            .config(serde_json::json!({"every": 2}))
            .init()
            .unwrap();
        assert_eq!(counter.deliver(&sample_events(5)), Ok(Delivery::Accepted));
        assert_eq!(counter.plugin().by_type["group.member_added"], 5);
        assert_eq!(counter.logs().len(), 2, "logged at 2 and 4");
        assert_eq!(counter.counter("events"), 5);
    }

    /// `info()` is the config's documentation (`auditrelay plugins` prints
    /// it): this keeps it true to the struct and its defaults.
    #[test]
    fn info_documents_the_config_as_the_code_reads_it() {
        auditrelay_plugin_api::testing::config_docs::assert_config_documented::<Counter>(
            serde_json::json!({}),
        );
    }

    #[test]
    fn a_bad_config_is_refused_by_name() {
        let err = Harness::<Counter>::builder()
            .config(serde_json::json!({"evry": 2}))
            .init()
            .err()
            .unwrap();
        assert!(err.0.starts_with("config.evry: unknown field"), "{err}");
    }
}
