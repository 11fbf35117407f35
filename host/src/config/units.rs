//! Human-readable units in TOML: durations such as `"500ms"` or `"1h 30m"`.
//! (Sizes such as `"64MiB"` use `bytesize::ByteSize`, which also accepts a
//! plain number of bytes.)

pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    /// Reads a duration from text like `"5s"`.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "{text:?} is not a duration: {e} (write e.g. \"500ms\", \"5s\", \"1h 30m\")"
            ))
        })
    }
}
