//! Helpers for a plugin's `Config` type: durations written as text, and
//! secrets read with errors that tell the operator what to set.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::plugin::InitError;

/// Deserializes durations written as text, such as `"90s"` or `"1h 30m"`.
/// Use it with `#[serde(deserialize_with = "settings::duration")]`.
pub fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!("{e} (write a duration such as \"90s\" or \"1h\")"))
    })
}

/// Reads the named secret, or fails with an error naming the `secrets` key
/// the operator must set in the plugin's table and what it is for.
pub fn required_secret(name: &str, purpose: &str) -> Result<String, InitError> {
    match crate::host::secret(name) {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(InitError::new(format!(
            "secret `{name}` ({purpose}) is not set: add `{name} = \"${{ENV_VAR}}\"` to this plugin's `secrets` table"
        ))),
    }
}
