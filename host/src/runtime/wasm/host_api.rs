//! The relay's side of the `log`, `secrets` and `metrics` imports.

use super::bindings::auditrelay::plugin::{log, metrics, secrets, types};
use super::sandbox::PluginState;

/// Longest log message taken from a plugin; the rest is cut.
const MAX_LOG_MESSAGE: usize = 16 * 1024;
/// Secrets shorter than this are not masked (masking "a" would mangle
/// every line and hide nothing).
const MIN_MASKED_SECRET: usize = 4;

impl types::Host for PluginState {}

impl log::Host for PluginState {
    fn log(&mut self, level: log::Level, message: String) {
        let message = self.mask_secrets(cut(&message, MAX_LOG_MESSAGE));
        let plugin = &*self.sandbox.instance;
        match level {
            log::Level::Trace => tracing::trace!(target: "auditrelay::plugin", plugin, "{message}"),
            log::Level::Debug => tracing::debug!(target: "auditrelay::plugin", plugin, "{message}"),
            log::Level::Info => tracing::info!(target: "auditrelay::plugin", plugin, "{message}"),
            log::Level::Warn => tracing::warn!(target: "auditrelay::plugin", plugin, "{message}"),
            log::Level::Error => tracing::error!(target: "auditrelay::plugin", plugin, "{message}"),
        }
    }
}

impl secrets::Host for PluginState {
    fn get(&mut self, name: String) -> Option<String> {
        let value = self
            .sandbox
            .secrets
            .get(&name)
            .map(|s| s.expose().to_owned());
        if value.is_none() {
            tracing::debug!(
                plugin = &*self.sandbox.instance,
                secret = name,
                "plugin asked for a secret it was not granted"
            );
        }
        value
    }
}

impl metrics::Host for PluginState {
    fn counter_add(&mut self, name: String, delta: u64) {
        if let Some(metrics) = &self.sandbox.metrics
            && !metrics.custom_counter_add(&name, delta)
        {
            self.refuse_metric(&name);
        }
    }

    fn gauge_set(&mut self, name: String, value: f64) {
        if let Some(metrics) = &self.sandbox.metrics
            && !metrics.custom_gauge_set(&name, value)
        {
            self.refuse_metric(&name);
        }
    }
}

impl PluginState {
    /// Replaces every granted secret's value in `message` with `***`.
    fn mask_secrets(&self, message: &str) -> String {
        let mut message = message.to_owned();
        for secret in self.sandbox.secrets.values() {
            let value = secret.expose();
            if value.len() >= MIN_MASKED_SECRET && message.contains(value) {
                message = message.replace(value, "***");
            }
        }
        message
    }

    fn refuse_metric(&self, name: &str) {
        tracing::warn!(
            plugin = &*self.sandbox.instance,
            metric = cut(name, 80),
            "ignored a plugin metric: names must match [a-z][a-z0-9_]* (at most 64 bytes), and a plugin may define at most 64"
        );
    }
}

/// `text` cut to at most `max` bytes on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
