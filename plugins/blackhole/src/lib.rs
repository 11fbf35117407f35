//! `blackhole`: accepts and counts every event, optionally decoding each
//! envelope first. For throughput tests and for measuring the relay itself.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `decode` | `false` | Decode and validate every envelope (about the work a real exporter does per event). Invalid ones are rejected individually. |
//! | `owned` | `false` | With `decode`: into the owned `AuditEventEnvelope` (what a plugin that keeps events pays) instead of the borrowed `EnvelopeView`. |

use auditrelay_plugin_api::envelope::{AuditEventEnvelope, EnvelopeView};
use auditrelay_plugin_api::prelude::*;
use serde::Deserialize;

/// The `config` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Decode and validate every envelope.
    #[serde(default)]
    pub decode: bool,
    /// Decode into the owned envelope rather than a borrowed view.
    #[serde(default)]
    pub owned: bool,
}

/// Counts events; see the crate docs.
pub struct Blackhole {
    decode: bool,
    owned: bool,
    events: u64,
}

impl Blackhole {
    /// Events accepted so far.
    pub fn events(&self) -> u64 {
        self.events
    }
}

impl Plugin for Blackhole {
    type Config = Config;

    fn info() -> PluginInfo {
        PluginInfo::new(
            "blackhole",
            env!("CARGO_PKG_VERSION"),
            "Accepts and counts every event; for throughput tests",
        )
        .key(ConfigKey::optional(
            "decode",
            "decode and validate every envelope before accepting it (measures what a field-reading plugin pays)",
            "false",
        ))
        .key(ConfigKey::optional(
            "owned",
            "with decode: into the owned AuditEventEnvelope (what a plugin that keeps events pays) instead of the borrowed EnvelopeView",
            "false",
        ))
    }

    fn init(config: Config, _ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Blackhole {
            decode: config.decode,
            owned: config.owned,
            events: 0,
        })
    }

    fn deliver(&mut self, events: &[Event<'_>]) -> Result<Delivery, DeliverError> {
        let mut rejected = Vec::new();
        if self.decode {
            for (index, event) in events.iter().enumerate() {
                let read = if self.owned {
                    AuditEventEnvelope::from_json(event.envelope).map(drop)
                } else {
                    EnvelopeView::from_json(event.envelope).map(drop)
                };
                if let Err(error) = read {
                    rejected.push(RejectedEvent {
                        index: index as u32,
                        reason: error.to_string(),
                    });
                }
            }
        }
        self.events += (events.len() - rejected.len()) as u64;
        host::counter_add("events", events.len() as u64);
        if rejected.is_empty() {
            Ok(Delivery::Accepted)
        } else {
            Ok(Delivery::PartiallyRejected(rejected))
        }
    }
}

export_plugin!(Blackhole);

#[cfg(test)]
mod tests {
    use super::*;
    use auditrelay_plugin_api::testing::{Harness, sample_events};

    #[test]
    fn counts_and_reports_events() {
        let mut harness = Harness::<Blackhole>::builder()
            .config(serde_json::json!({"decode": true}))
            .init()
            .unwrap();
        assert_eq!(harness.deliver(&sample_events(5)), Ok(Delivery::Accepted));
        assert_eq!(harness.plugin().events(), 5);
        assert_eq!(harness.counter("events"), 5);
    }

    #[test]
    fn rejects_undecodable_envelopes_individually() {
        let mut events = sample_events(3);
        events[1].envelope = b"{not json".to_vec();
        let mut harness = Harness::<Blackhole>::builder()
            .config(serde_json::json!({"decode": true}))
            .init()
            .unwrap();
        match harness.deliver(&events).unwrap() {
            Delivery::PartiallyRejected(rejected) => {
                assert_eq!(rejected.len(), 1);
                assert_eq!(rejected[0].index, 1);
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
        assert_eq!(harness.plugin().events(), 2);
    }

    #[test]
    fn unknown_config_key_is_named() {
        let err = Harness::<Blackhole>::builder()
            .config(serde_json::json!({"decod": true}))
            .init()
            .err()
            .unwrap();
        assert!(
            err.0.starts_with("config.decod: unknown field `decod`"),
            "{err}"
        );
    }
}
