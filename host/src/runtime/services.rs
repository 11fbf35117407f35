//! The services the relay offers every plugin, whatever its kind: logging,
//! secrets and metrics.
//!
//! WASM plugins reach them through their imports, native ones through the
//! C ABI's `ar_host` callbacks (in-process) or the plugin runner's frames
//! (process isolation). All three end here, so a plugin's log line is
//! masked and attributed the same way and its metric names obey the same
//! rules whichever way it runs.

use std::collections::BTreeMap;
use std::sync::Arc;

use auditrelay_plugin_api::host::Level;

use crate::config::Secret;
use crate::metrics::PluginMetrics;

/// Longest log message taken from a plugin; the rest is cut.
const MAX_LOG_MESSAGE: usize = 16 * 1024;
/// Secrets shorter than this are not masked (masking "a" would mangle
/// every line and hide nothing).
const MIN_MASKED_SECRET: usize = 4;

/// One instance's logging, secrets and metrics.
#[derive(Clone)]
pub struct PluginServices {
    /// The instance name, as in `[plugins.<name>]`; every log line and
    /// metric carries it.
    pub instance: Arc<str>,
    /// Secrets the plugin may read, by name.
    pub secrets: Arc<BTreeMap<String, Secret>>,
    /// Where the plugin's own metrics go (none when only describing it).
    pub metrics: Option<PluginMetrics>,
}

impl PluginServices {
    /// Services for an instance that is only being described: no secrets,
    /// no metrics.
    pub fn describe_only() -> Self {
        PluginServices {
            instance: Arc::from("(describe)"),
            secrets: Arc::default(),
            metrics: None,
        }
    }

    /// Logs `message` under the plugin's name, cut to 16 KiB, with every
    /// granted secret's value replaced by `***`.
    pub fn log(&self, level: Level, message: &str) {
        let message = self.mask_secrets(cut(message, MAX_LOG_MESSAGE));
        let plugin = &*self.instance;
        match level {
            Level::Trace => tracing::trace!(target: "auditrelay::plugin", plugin, "{message}"),
            Level::Debug => tracing::debug!(target: "auditrelay::plugin", plugin, "{message}"),
            Level::Info => tracing::info!(target: "auditrelay::plugin", plugin, "{message}"),
            Level::Warn => tracing::warn!(target: "auditrelay::plugin", plugin, "{message}"),
            Level::Error => tracing::error!(target: "auditrelay::plugin", plugin, "{message}"),
        }
    }

    /// The secret called `name`, if the instance was granted it.
    pub fn secret(&self, name: &str) -> Option<&str> {
        let value = self.secrets.get(name).map(Secret::expose);
        if value.is_none() {
            tracing::debug!(
                plugin = &*self.instance,
                secret = cut(name, 80),
                "plugin asked for a secret it was not granted"
            );
        }
        value
    }

    /// Adds to one of the plugin's counters.
    pub fn counter_add(&self, name: &str, delta: u64) {
        if let Some(metrics) = &self.metrics
            && !metrics.custom_counter_add(name, delta)
        {
            self.refuse_metric(name);
        }
    }

    /// Sets one of the plugin's gauges.
    pub fn gauge_set(&self, name: &str, value: f64) {
        if let Some(metrics) = &self.metrics
            && !metrics.custom_gauge_set(name, value)
        {
            self.refuse_metric(name);
        }
    }

    /// Replaces every granted secret's value in `message` with `***`.
    pub fn mask_secrets(&self, message: &str) -> String {
        let mut message = message.to_owned();
        for secret in self.secrets.values() {
            let value = secret.expose();
            if value.len() >= MIN_MASKED_SECRET && message.contains(value) {
                message = message.replace(value, "***");
            }
        }
        message
    }

    fn refuse_metric(&self, name: &str) {
        tracing::warn!(
            plugin = &*self.instance,
            metric = cut(name, 80),
            "ignored a plugin metric: names must match [a-z][a-z0-9_]* (at most 64 bytes), and a plugin may define at most 64"
        );
    }
}

/// `text` cut to at most `max` bytes on a character boundary.
pub(crate) fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_and_short_ones_left_alone() {
        let services = PluginServices {
            instance: Arc::from("splunk"),
            secrets: Arc::new(BTreeMap::from([
                ("token".to_owned(), Secret::new("s3cr3t-token")),
                ("pin".to_owned(), Secret::new("42")),
            ])),
            metrics: None,
        };
        assert_eq!(
            services.mask_secrets("sent s3cr3t-token twice: s3cr3t-token, pin 42"),
            "sent *** twice: ***, pin 42"
        );
        assert_eq!(services.secret("token"), Some("s3cr3t-token"));
        assert_eq!(services.secret("other"), None);
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("héllo", 3), "hé");
        assert_eq!(cut("abc", 10), "abc");
    }
}
