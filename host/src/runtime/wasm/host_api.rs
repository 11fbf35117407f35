//! The relay's side of the `log`, `secrets` and `metrics` imports: each
//! hands over to the instance's [`PluginServices`], which every kind of
//! plugin shares.
//!
//! [`PluginServices`]: crate::runtime::services::PluginServices

use auditrelay_plugin_api::host::Level;

use super::bindings::auditrelay::plugin::{log, metrics, secrets, types};
use super::sandbox::PluginState;

impl types::Host for PluginState {}

impl log::Host for PluginState {
    fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Trace => Level::Trace,
            log::Level::Debug => Level::Debug,
            log::Level::Info => Level::Info,
            log::Level::Warn => Level::Warn,
            log::Level::Error => Level::Error,
        };
        self.sandbox.services.log(level, &message);
    }
}

impl secrets::Host for PluginState {
    fn get(&mut self, name: String) -> Option<String> {
        self.sandbox.services.secret(&name).map(str::to_owned)
    }
}

impl metrics::Host for PluginState {
    fn counter_add(&mut self, name: String, delta: u64) {
        self.sandbox.services.counter_add(&name, delta);
    }

    fn gauge_set(&mut self, name: String, value: f64) {
        self.sandbox.services.gauge_set(&name, value);
    }
}
