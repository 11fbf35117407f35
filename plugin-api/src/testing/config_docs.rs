//! One source of truth for a plugin's config documentation: the keys
//! [`Plugin::info`] declares, checked against the `Config` struct serde
//! actually reads, and rendered into the README table operators read.
//!
//! `info()` is the documentation (it is what `auditrelay plugins` prints);
//! these checks make sure it cannot drift from the code:
//!
//! - [`assert_config_documented`]: every field of `P::Config` is a
//!   documented key and every key a field, in the same order; a required
//!   key really is required; each default, written as TOML text, parses to
//!   exactly the value the code uses when the key is absent.
//! - [`assert_readme_documents`]: the plugin's README holds the table
//!   [`config_table`] renders from `info()`, verbatim (`UPDATE_GOLDEN=1`
//!   rewrites it in place).
//!
//! ```
//! use auditrelay_plugin_api::prelude::*;
//! use auditrelay_plugin_api::testing::config_docs;
//!
//! struct Ping;
//!
//! #[derive(Debug, serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config {
//!     url: String,
//!     #[serde(default = "default_retries")]
//!     retries: u32,
//! }
//!
//! fn default_retries() -> u32 { 3 }
//!
//! impl Plugin for Ping {
//!     type Config = Config;
//!     fn info() -> PluginInfo {
//!         PluginInfo::new("ping", "0.1.0", "posts a count")
//!             .key(ConfigKey::required("url", "where to post"))
//!             .key(ConfigKey::optional("retries", "attempts per batch", "3"))
//!     }
//!     fn init(_: Config, _: &InitContext) -> Result<Self, InitError> { Ok(Ping) }
//!     fn deliver(&mut self, _: &[Event<'_>]) -> Result<Delivery, DeliverError> {
//!         Ok(Delivery::Accepted)
//!     }
//! }
//!
//! config_docs::assert_config_documented::<Ping>(serde_json::json!({"url": "http://x.test"}));
//! assert!(config_docs::config_table(&Ping::info()).contains("| `retries` | `3` | attempts per batch |"));
//! ```

use std::fmt::{Debug, Write as _};
use std::path::Path;

use serde::de::{self, Deserialize, Visitor};

use crate::plugin::{ConfigKey, Plugin, PluginInfo, parse_config};

/// The header row every rendered table starts with.
const TABLE_HEADER: &str = "| key | default | meaning |";

/// Checks that `P::info()` documents `P::Config` exactly; `minimal` is a
/// config holding every required key (and nothing else).
///
/// # Panics
///
/// With every problem found at once, each naming the key and the fix.
pub fn assert_config_documented<P: Plugin>(minimal: serde_json::Value)
where
    P::Config: Debug,
{
    let info = P::info();
    let fields = struct_fields::<P::Config>();
    let documented: Vec<&str> = info.config_keys.iter().map(|k| k.name.as_str()).collect();
    let mut problems = Vec::new();
    for field in fields {
        if !documented.contains(field) {
            problems.push(format!(
                "field `{field}` of the Config struct is not in info(): add a ConfigKey for it"
            ));
        }
    }
    for key in &documented {
        if !fields.contains(key) {
            problems.push(format!(
                "info() documents `{key}`, which the Config struct does not read: remove it or fix its name"
            ));
        }
    }
    let in_both = |names: &[&str]| -> Vec<String> {
        names
            .iter()
            .filter(|n| fields.contains(n) && documented.contains(n))
            .map(|n| (*n).to_owned())
            .collect()
    };
    if problems.is_empty() && in_both(fields) != in_both(&documented) {
        problems.push(format!(
            "info() lists the keys as {documented:?} but the Config struct declares {fields:?}: list them in the struct's order"
        ));
    }
    let Some(minimal) = minimal.as_object() else {
        panic!("`minimal` must be a JSON object, got {minimal}");
    };
    let without = |name: &str| {
        let mut object = minimal.clone();
        object.remove(name);
        serde_json::Value::Object(object)
    };
    match parse_as::<P>(&serde_json::Value::Object(minimal.clone())) {
        Err(error) => problems.push(format!(
            "the minimal config {minimal:?} is refused ({error}): give every required key, and only those"
        )),
        Ok(_) => {
            for key in &info.config_keys {
                problems.extend(check_key::<P>(key, minimal, &without(&key.name)));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} config documentation disagrees with its code:\n  - {}",
        info.name,
        problems.join("\n  - ")
    );
}

/// `config` parsed as the relay passes it to `init`, shown with `Debug`
/// (so two parses compare equal exactly when they hold the same values).
fn parse_as<P: Plugin>(config: &serde_json::Value) -> Result<String, String>
where
    P::Config: Debug,
{
    parse_config::<P>(&config.to_string())
        .map(|config| format!("{config:?}"))
        .map_err(|e| e.0)
}

/// What is wrong with one documented key, if anything.
fn check_key<P: Plugin>(
    key: &ConfigKey,
    minimal: &serde_json::Map<String, serde_json::Value>,
    without: &serde_json::Value,
) -> Option<String>
where
    P::Config: Debug,
{
    let parse = parse_as::<P>;
    let name = &key.name;
    if key.required {
        if key.default_value.is_some() {
            return Some(format!(
                "`{name}` is documented as required and with a default: pick one"
            ));
        }
        if !minimal.contains_key(name) {
            return Some(format!(
                "`{name}` is required: put it in the minimal config the check starts from"
            ));
        }
        return match parse(without) {
            Ok(_) => Some(format!(
                "`{name}` is documented as required, but a config without it is accepted: document its default, or drop its serde default"
            )),
            Err(error) if !error.contains(name.as_str()) => Some(format!(
                "`{name}` missing is refused with `{error}`, which does not name it"
            )),
            Err(_) => None,
        };
    }
    if minimal.contains_key(name) {
        return Some(format!(
            "`{name}` is optional: leave it out of the minimal config"
        ));
    }
    let absent = match parse(without) {
        Ok(absent) => absent,
        Err(error) => {
            return Some(format!(
                "`{name}` is documented as optional, but a config without it is refused ({error}): document it as required"
            ));
        }
    };
    let Some(text) = key.default_value.as_deref() else {
        // Documented as unset: leaving it out must mean "none", the same
        // as saying so.
        let mut none = minimal.clone();
        none.insert(name.clone(), serde_json::Value::Null);
        return match parse(&serde_json::Value::Object(none)) {
            Ok(unset) if unset == absent => None,
            Ok(unset) => Some(format!(
                "`{name}` is documented as unset, but leaving it out gives\n      {absent}\n    not what unset gives\n      {unset}\n    document its default"
            )),
            Err(error) => Some(format!(
                "`{name}` is documented as unset, but it has no unset value ({error}): document its default"
            )),
        };
    };
    let value = match toml_value(text) {
        Ok(value) => value,
        Err(error) => {
            return Some(format!(
                "the default of `{name}`, `{text}`, is not TOML text ({error}): quote strings, e.g. `\"{text}\"`"
            ));
        }
    };
    let mut explicit = minimal.clone();
    explicit.insert(name.clone(), value);
    match parse(&serde_json::Value::Object(explicit)) {
        Err(error) => Some(format!(
            "the documented default of `{name}`, `{text}`, is refused: {error}"
        )),
        Ok(set) if set != absent => Some(format!(
            "`{name} = {text}` (the documented default) gives\n      {set}\n    but leaving `{name}` out gives\n      {absent}"
        )),
        Ok(_) => None,
    }
}

/// Parses one TOML value, as the relay reads a plugin's `config` table.
fn toml_value(text: &str) -> Result<serde_json::Value, String> {
    let mut table: toml::Table =
        toml::from_str(&format!("value = {text}")).map_err(|e| e.message().to_owned())?;
    let value = table.remove("value").ok_or("no value")?;
    serde_json::to_value(value).map_err(|e| e.to_string())
}

/// The Markdown table of a plugin's config keys, as its README shows them:
/// name, default (TOML text; `required`; or `unset`, the description
/// saying what that means) and description.
pub fn config_table(info: &PluginInfo) -> String {
    let mut table = format!("{TABLE_HEADER}\n|---|---|---|\n");
    for key in &info.config_keys {
        let default = match (&key.default_value, key.required) {
            (_, true) => "required".to_owned(),
            (Some(text), false) => format!("`{text}`"),
            (None, false) => "unset".to_owned(),
        };
        let meaning = key.description.replace('|', "\\|");
        let _ = writeln!(
            table,
            "| `{}` | {} | {meaning} |",
            key.name,
            default.replace('|', "\\|")
        );
    }
    table
}

/// Checks that the README at `path` holds `P`'s [`config_table`] verbatim;
/// with `UPDATE_GOLDEN` set, replaces the README's table (the one under the
/// `| key | default | meaning |` header) with it first.
///
/// # Panics
///
/// If the README is missing, has no such table, or its table differs,
/// showing the table `info()` gives.
pub fn assert_readme_documents<P: Plugin>(path: impl AsRef<Path>) {
    let path = path.as_ref();
    let expected = config_table(&P::info());
    let readme = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let Some(start) = readme.find(TABLE_HEADER) else {
        panic!(
            "{} has no config table (a `{TABLE_HEADER}` line); add this one:\n\n{expected}",
            path.display()
        );
    };
    let end = readme[start..]
        .split_inclusive('\n')
        .take_while(|line| line.starts_with('|'))
        .map(str::len)
        .sum::<usize>()
        + start;
    if std::env::var_os("UPDATE_GOLDEN").is_some() && readme[start..end] != expected {
        let updated = format!("{}{expected}{}", &readme[..start], &readme[end..]);
        std::fs::write(path, updated)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return;
    }
    assert!(
        readme[start..end] == expected,
        "the config table in {} differs from what info() says; run with UPDATE_GOLDEN=1 to \
         rewrite it, or change info(). info() gives:\n\n{expected}\nthe README has:\n\n{}",
        path.display(),
        &readme[start..end]
    );
}

/// The field names serde reads for a struct, in declaration order: the
/// derive hands them to `deserialize_struct`, which this deserializer
/// records and then refuses.
///
/// # Panics
///
/// If `T` is not deserialized as a struct (a map, an enum, a
/// `#[serde(flatten)]`ed struct).
pub fn struct_fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields = None;
    let _ = T::deserialize(FieldRecorder {
        fields: &mut fields,
    });
    fields.unwrap_or_else(|| {
        panic!(
            "{} is not deserialized as a struct with named fields",
            std::any::type_name::<T>()
        )
    })
}

struct FieldRecorder<'a> {
    fields: &'a mut Option<&'static [&'static str]>,
}

#[derive(Debug)]
struct Recorded;

impl std::fmt::Display for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fields recorded")
    }
}

impl std::error::Error for Recorded {}

impl de::Error for Recorded {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        Recorded
    }
}

impl<'de> de::Deserializer<'de> for FieldRecorder<'_> {
    type Error = Recorded;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Recorded> {
        Err(Recorded)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Recorded> {
        *self.fields = Some(fields);
        Err(Recorded)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Sample {
        first: u32,
        #[serde(rename = "second-name")]
        second: String,
    }

    #[test]
    fn struct_fields_are_read_from_the_derive_in_order() {
        assert_eq!(struct_fields::<Sample>(), ["first", "second-name"]);
    }

    #[test]
    #[should_panic(expected = "not deserialized as a struct")]
    fn a_map_has_no_fields_to_read() {
        struct_fields::<std::collections::BTreeMap<String, u32>>();
    }

    use crate::event::{DeliverError, Delivery, Event};
    use crate::plugin::{InitContext, InitError};

    /// A config whose documentation drifted from it in every way the check
    /// knows.
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct DriftedConfig {
        url: String,
        #[serde(default = "three")]
        retries: u32,
        #[serde(default)]
        label: String,
        #[serde(default)]
        undocumented: bool,
        #[serde(default = "three")]
        said_required: u32,
        #[serde(default = "some_label")]
        said_unset: Option<String>,
    }

    fn some_label() -> Option<String> {
        Some("audit".into())
    }

    fn three() -> u32 {
        3
    }

    struct Drifted;

    impl Plugin for Drifted {
        type Config = DriftedConfig;
        fn info() -> PluginInfo {
            PluginInfo::new("drifted", "0.1.0", "documentation out of date")
                .key(ConfigKey::required("url", "where to"))
                .key(ConfigKey::optional("retries", "attempts", "5"))
                .key(ConfigKey::optional("label", "a label", "audit"))
                .key(ConfigKey::required("said_required", "said to be required"))
                .key(ConfigKey::unset("said_unset", "said to have no default"))
                .key(ConfigKey::optional("renamed", "gone from the struct", "1"))
        }
        fn init(_: DriftedConfig, _: &InitContext) -> Result<Self, InitError> {
            Ok(Drifted)
        }
        fn deliver(&mut self, _: &[Event<'_>]) -> Result<Delivery, DeliverError> {
            Ok(Delivery::Accepted)
        }
    }

    #[test]
    fn every_drift_is_reported_at_once() {
        let panic = std::panic::catch_unwind(|| {
            assert_config_documented::<Drifted>(serde_json::json!({"url": "x", "said_required": 1}))
        })
        .expect_err("the drift is found");
        let message = panic.downcast_ref::<String>().unwrap();
        for expected in [
            "field `undocumented` of the Config struct is not in info()",
            "info() documents `renamed`, which the Config struct does not read",
            "`retries = 5` (the documented default) gives",
            "the default of `label`, `audit`, is not TOML text",
            "`said_required` is documented as required, but a config without it is accepted",
            "`said_unset` is documented as unset, but leaving it out gives",
        ] {
            assert!(
                message.contains(expected),
                "{expected:?} missing from:\n{message}"
            );
        }
    }

    #[test]
    fn the_readme_table_is_rendered_from_info() {
        let table = config_table(&Drifted::info());
        assert!(table.starts_with("| key | default | meaning |\n|---|---|---|\n"));
        assert!(table.contains("| `url` | required | where to |\n"));
        assert!(table.contains("| `retries` | `5` | attempts |\n"));
        let unset = PluginInfo::new("p", "1", "d").key(ConfigKey::unset("a", "x | y"));
        assert!(config_table(&unset).contains("| `a` | unset | x \\| y |\n"));
    }

    #[test]
    fn a_readme_table_that_differs_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let readme = dir.path().join("README.md");
        let stale =
            "# p\n\n| key | default | meaning |\n|---|---|---|\n| `old` | `1` | x |\n\nAfter.\n";
        std::fs::write(&readme, stale).unwrap();
        let refused = std::panic::catch_unwind(|| assert_readme_documents::<Drifted>(&readme));
        assert!(refused.is_err(), "a stale table is refused");
        assert_eq!(
            std::fs::read_to_string(&readme).unwrap(),
            stale,
            "and left alone"
        );
    }

    #[test]
    fn defaults_are_toml_values() {
        assert_eq!(toml_value("\"64MiB\"").unwrap(), "64MiB");
        assert_eq!(toml_value("[]").unwrap(), serde_json::json!([]));
        assert_eq!(
            toml_value("{ a = \"b\" }").unwrap(),
            serde_json::json!({"a": "b"})
        );
        assert!(toml_value("64MiB").is_err(), "a bare word is not TOML");
    }
}
