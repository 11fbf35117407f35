//! A native exporter plugin: sends every event, as its canonical JSON, in
//! one datagram to a Unix socket — a local agent's inbox, say. WASI has no
//! Unix sockets, so this is a job for a native plugin: the same `Plugin`
//! trait and `export_plugin!` as a WASM plugin, built as a shared library.
//!
//! ```text
//! cargo build --release -p auditrelay-example-native-plugin --features native
//! cp target/release/libauditrelay_example_native_plugin.so target/plugins/
//! ```
//!
//! and enable it in the relay's TOML (`isolation = "process"`, the default,
//! runs it in a child process that the relay restarts if it crashes):
//!
//! ```toml
//! [plugins.agent]
//! plugin = "unix-datagram"
//! [plugins.agent.config]
//! socket = "/run/audit-agent.sock"
//! ```
//!
//! A native plugin is trusted code: it reaches the filesystem and network
//! as the relay's user. Prefer a WASM plugin whenever WASI can do the job.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

use auditrelay_plugin_api::prelude::*;
use serde::Deserialize;

/// The `config` table: unknown keys are refused by name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The receiving socket.
    pub socket: PathBuf,
}

/// Sends events to a Unix datagram socket.
pub struct UnixDatagramExporter {
    socket: UnixDatagram,
    target: PathBuf,
}

impl Plugin for UnixDatagramExporter {
    type Config = Config;

    fn info() -> PluginInfo {
        PluginInfo::new(
            "unix-datagram",
            env!("CARGO_PKG_VERSION"),
            "Sends each event as one datagram to a Unix socket (a native plugin)",
        )
        .key(ConfigKey::required(
            "socket",
            "Path of the receiving Unix datagram socket",
        ))
    }

    fn init(config: Config, _ctx: &InitContext) -> Result<Self, InitError> {
        let socket = UnixDatagram::unbound()
            .map_err(|e| InitError::new(format!("cannot create a datagram socket: {e}")))?;
        Ok(UnixDatagramExporter {
            socket,
            target: config.socket,
        })
    }

    fn deliver(&mut self, events: &[Event<'_>]) -> Result<Delivery, DeliverError> {
        for event in events {
            // Not there yet, or its queue is full: the batch is retried.
            self.socket
                .send_to(event.envelope, &self.target)
                .map_err(|e| {
                    DeliverError::retryable(format!(
                        "cannot send to {}: {e} (is the receiver running?)",
                        self.target.display()
                    ))
                })?;
        }
        host::counter_add("datagrams_sent", events.len() as u64);
        Ok(Delivery::Accepted)
    }
}

export_plugin!(UnixDatagramExporter);

#[cfg(test)]
mod tests {
    use super::*;
    use auditrelay_plugin_api::testing::{Harness, sample_events};

    #[test]
    fn every_event_arrives_as_one_datagram() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let mut plugin = Harness::<UnixDatagramExporter>::builder()
            .config(serde_json::json!({"socket": path}))
            .init()
            .unwrap();
        let events = sample_events(3);
        assert_eq!(plugin.deliver(&events), Ok(Delivery::Accepted));
        let mut buffer = vec![0u8; 64 * 1024];
        for event in &events {
            let n = receiver.recv(&mut buffer).unwrap();
            assert_eq!(&buffer[..n], &event.envelope[..]);
        }
        assert_eq!(plugin.counter("datagrams_sent"), 3);
    }

    #[test]
    fn info_documents_the_config_as_the_code_reads_it() {
        auditrelay_plugin_api::testing::config_docs::assert_config_documented::<UnixDatagramExporter>(
            serde_json::json!({"socket": "/run/agent.sock"}),
        );
    }

    #[test]
    fn a_missing_receiver_is_retried_and_named() {
        let mut plugin = Harness::<UnixDatagramExporter>::builder()
            .config(serde_json::json!({"socket": "/nonexistent/agent.sock"}))
            .init()
            .unwrap();
        match plugin.deliver(&sample_events(1)) {
            Err(DeliverError::Retryable { message, .. }) => {
                assert!(message.contains("/nonexistent/agent.sock"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }
}
