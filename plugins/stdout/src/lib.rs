//! `stdout`: prints every event, for a quick look at what flows.
//!
//! The relay writes a plugin's stdout into its own log, one line per event,
//! tagged with the instance name. Lines go out through
//! `host::write_stdout`, so the test harness sees them too.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `format` | `"summary"` | `"summary"`: one readable line per event; `"json"`: the canonical envelope. |

use std::fmt::Write as _;

use auditrelay_plugin_api::prelude::*;
use serde::Deserialize;

/// The `config` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How each event is printed.
    #[serde(default)]
    pub format: Format,
}

/// How each event is printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `time tenant type actor -> target outcome`.
    #[default]
    Summary,
    /// The canonical envelope JSON.
    Json,
}

/// Prints events; see the crate docs.
pub struct Stdout {
    format: Format,
}

impl Plugin for Stdout {
    type Config = Config;

    fn info() -> PluginInfo {
        PluginInfo::new(
            "stdout",
            env!("CARGO_PKG_VERSION"),
            "Prints every event into the relay's log, for a quick look",
        )
        .key(ConfigKey::optional(
            "format",
            "`\"summary\"` (one readable line per event) or `\"json\"` (the canonical envelope)",
            "\"summary\"",
        ))
    }

    fn init(config: Config, _ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Stdout {
            format: config.format,
        })
    }

    fn deliver(&mut self, events: &[Event<'_>]) -> Result<Delivery, DeliverError> {
        let mut out = String::with_capacity(events.len() * 128);
        for event in events {
            render(self.format, event, &mut out);
            out.push('\n');
        }
        host::write_stdout(out.as_bytes())?;
        Ok(Delivery::Accepted)
    }
}

/// Appends one event in `format` to `out`.
pub fn render(format: Format, event: &Event<'_>, out: &mut String) {
    match format {
        Format::Json => out.push_str(&event.envelope_str()),
        Format::Summary => {
            let envelope = event.parse_envelope().ok();
            let (actor, target, outcome) = match &envelope {
                Some(e) => (
                    e.actor.id.as_str(),
                    e.target
                        .as_ref()
                        .map(|t| format!("{}/{}", t.kind, t.id))
                        .unwrap_or_else(|| "-".into()),
                    e.action.outcome.as_str(),
                ),
                None => ("?", "?".into(), "?"),
            };
            let _ = write!(
                out,
                "{} {} {} {} -> {} {}",
                event.time(),
                event.tenant.unwrap_or("-"),
                event.event_type,
                actor,
                target,
                outcome
            );
        }
    }
}

export_plugin!(Stdout);

#[cfg(test)]
mod tests {
    use super::*;
    use auditrelay_plugin_api::testing::{Harness, sample_events};

    #[test]
    fn summary_names_who_did_what_to_what() {
        let event = &sample_events(1)[0];
        let mut line = String::new();
        render(Format::Summary, &event.as_event(), &mut line);
        assert!(
            line.ends_with(" acme group.member_added u-0 -> group/g-0 success"),
            "{line}"
        );
    }

    #[test]
    fn prints_one_line_per_event_through_the_host() {
        let mut harness = Harness::<Stdout>::builder()
            .config(serde_json::json!({"format": "json"}))
            .init()
            .unwrap();
        let events = sample_events(3);
        assert_eq!(harness.deliver(&events), Ok(Delivery::Accepted));
        let printed = harness.stdout();
        let lines: Vec<&[u8]> = printed.split(|&b| b == b'\n').collect();
        let expected: Vec<&[u8]> = events.iter().map(|e| e.envelope.as_slice()).collect();
        assert_eq!(lines[..3], expected[..]);
        assert_eq!(lines[3], b"", "every line ends with a newline");
    }

    #[test]
    fn json_is_the_canonical_envelope() {
        let event = &sample_events(1)[0];
        let mut line = String::new();
        render(Format::Json, &event.as_event(), &mut line);
        assert_eq!(line.as_bytes(), event.envelope.as_slice());
    }
}
