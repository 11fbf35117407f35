//! Native plugins in a running relay: discovered like WASM plugins, enabled
//! in TOML, run in either isolation, served the same host services; a
//! library for another ABI is refused by name before any of its code runs.
//! (Crashes in `process` isolation are in `faults.rs`.)

use std::sync::Arc;
use std::time::Duration;

use auditrelay::Relay;
use auditrelay::config::PluginSettings;
use auditrelay::internals::InProcessInstance;
use auditrelay::internals::PluginServices;
use auditrelay::internals::{self, Metrics};
use auditrelay_tests::{Home, compile_c_plugin, logs, metric, ndjson_lines, sample_envelope};

const EVENTS: usize = 2000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_plugin_delivers_the_same_bytes_as_wasm_in_a_runner_and_in_process() {
    let home = Home::with_plugins(&["file"]);
    home.add_native_plugin("auditrelay_plugin_file");
    let instance = |name: &str, kind: &str, isolation: &str| {
        format!(
            r#"
[plugins.{name}]
plugin = "file"
kind = "{kind}"
{isolation}
grant_dir = "{{home}}/{name}"
[plugins.{name}.config]
fsync = false
[plugins.{name}.batch]
max_wait = "5ms"
"#
        )
    };
    let config = home.config(
        &[
            instance("sandboxed", "wasm", ""),
            instance("runner", "native", ""),
            instance("inside", "native", "isolation = \"in-process\""),
        ]
        .concat(),
    );
    let relay = Relay::start(config).await.unwrap();
    let mut expected = Vec::new();
    for i in 0..EVENTS {
        let event = sample_envelope(i);
        expected.push(event.to_canonical_json());
        relay.emit(event).unwrap();
    }
    assert!(
        relay.idle(Duration::from_secs(60)).await,
        "{:#?}",
        relay.status()
    );
    for name in ["sandboxed", "runner", "inside"] {
        assert_eq!(
            ndjson_lines(&home.join(name)),
            expected,
            "{name}: every event, byte for byte, in order"
        );
        let status = relay.status();
        let plugin = status.plugin(name).unwrap();
        assert_eq!(plugin.delivered, EVENTS as u64);
        assert!(
            plugin.file.as_ref().unwrap().extension().unwrap()
                == if name == "sandboxed" { "wasm" } else { "so" }
        );
    }
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_c_plugin_gets_logging_secrets_and_metrics_in_both_isolations() {
    let home = Home::with_plugins(&[]);
    compile_c_plugin("counter.c", &home.plugin_dir());
    let logs = logs();
    let config = home.config(
        r#"
[plugins.c-runner]
plugin = "c-counter"
secrets = { prefix = "runner-Q7mZ2kR9" }
[plugins.c-runner.batch]
max_wait = "5ms"

[plugins.c-inside]
plugin = "c-counter"
isolation = "in-process"
secrets = { prefix = "inside-W4pX8nL3" }
[plugins.c-inside.batch]
max_wait = "5ms"
"#,
    );
    let relay = Relay::start(config).await.unwrap();
    for i in 0..100 {
        relay.emit(sample_envelope(i)).unwrap();
    }
    assert!(relay.idle(Duration::from_secs(30)).await);
    let metrics = relay.metrics_text();
    for (instance, prefix) in [("c-runner", "***"), ("c-inside", "***")] {
        assert_eq!(relay.status().plugin(instance).unwrap().delivered, 100);
        let counted = metric(
            &metrics,
            &format!(
                "auditrelay_plugin_custom_total{{plugin=\"{instance}\",name=\"events_counted\"}}"
            ),
        );
        assert_eq!(counted, Some(100.0), "{metrics}");
        // The plugin logs with its secret as prefix: attributed to the
        // instance, and the secret masked.
        let line = logs
            .wait_for(instance, Duration::from_secs(5), |e| {
                e["message"]
                    .as_str()
                    .is_some_and(|m| m.ends_with("events so far"))
            })
            .unwrap_or_else(|| panic!("{:#?}", logs.of_plugin(instance)));
        assert!(
            line["message"].as_str().unwrap().starts_with(prefix),
            "{line}"
        );
    }
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_logging_from_its_own_thread_between_calls_is_served_not_killed() {
    let home = Home::with_plugins(&[]);
    compile_c_plugin("chatty.c", &home.plugin_dir());
    let logs = logs();
    let config = home.config(
        r#"
[plugins.chatty]
plugin = "c-chatty"
[plugins.chatty.batch]
max_wait = "5ms"
max_events = 10
"#,
    );
    let relay = Relay::start(config).await.unwrap();
    // Batches come and go for two seconds while the thread chatters.
    for i in 0..200 {
        relay.emit(sample_envelope(i)).unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(relay.idle(Duration::from_secs(30)).await);
    let metrics = relay.metrics_text();
    let series = |name: &str| {
        metric(
            &metrics,
            &format!("auditrelay_plugin_custom_total{{plugin=\"chatty\",name=\"{name}\"}}"),
        )
    };
    assert_eq!(
        series("events_counted"),
        Some(200.0),
        "each event delivered once (a killed runner redelivers): {metrics}"
    );
    assert!(series("ticks").is_some_and(|t| t > 50.0), "{metrics}");
    let status = relay.status().plugin("chatty").unwrap().clone();
    assert_eq!(status.delivered, 200, "{status:?}");
    let crashes: Vec<_> = logs
        .of_plugin("chatty")
        .into_iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("crashed") || m.contains("protocol"))
        })
        .collect();
    assert!(crashes.is_empty(), "the runner was killed: {crashes:#?}");
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_library_for_another_abi_is_refused_naming_both_versions() {
    let home = Home::with_plugins(&["file"]);
    let library = compile_c_plugin("wrong_abi.c", &home.plugin_dir());
    let expected = "implements native plugin ABI version 2, but this relay speaks ABI version 1";

    // Listed as unusable, by file name; the relay runs the others.
    let config = home.config(
        r#"
[plugins.file]
grant_dir = "{home}/out"
[plugins.future]
path = "libwrong_abi.so"
"#,
    );
    let relay = Relay::start(config).await.unwrap();
    let status = relay.status();
    let future = status.plugin("future").unwrap();
    let error = future.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("libwrong_abi.so") && error.contains(expected),
        "{error}"
    );
    relay.emit(sample_envelope(1)).unwrap();
    assert!(relay.idle(Duration::from_secs(30)).await);
    assert_eq!(ndjson_lines(&home.join("out")).len(), 1);
    relay.shutdown().await;

    // Loaded into this very process, only the version function runs:
    // every other entry point of the fixture aborts.
    let settings: PluginSettings = toml::from_str("isolation = \"in-process\"").unwrap();
    let native = internals::native_settings(
        &settings,
        PluginServices::new(
            "future",
            Default::default(),
            Some(Arc::new(Metrics::new()).plugin("future")),
        ),
    );
    let error = InProcessInstance::start(&library, native)
        .err()
        .expect("refused")
        .to_string();
    assert!(error.contains(expected), "{error}");
}

#[tokio::test]
async fn isolation_is_refused_on_a_wasm_plugin() {
    let home = Home::with_plugins(&["file"]);
    let config = home.config(
        r#"
[plugins.file]
isolation = "in-process"
"#,
    );
    let error = match Relay::start(config).await {
        Ok(relay) => {
            let status = relay.status();
            let error = status.plugin("file").unwrap().error.clone();
            relay.shutdown().await;
            error.unwrap_or_default()
        }
        Err(error) => error.to_string(),
    };
    assert!(error.contains("applies to native plugins only"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_native_plugin_reaches_a_unix_socket_from_its_runner() {
    let home = Home::with_plugins(&[]);
    home.add_native_plugin("auditrelay_example_native_plugin");
    let socket = home.join("agent.sock");
    let receiver = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let config = home.config(&format!(
        r#"
[plugins.agent]
plugin = "unix-datagram"
[plugins.agent.config]
socket = "{}"
[plugins.agent.batch]
max_wait = "5ms"
"#,
        socket.display()
    ));
    let relay = Relay::start(config).await.unwrap();
    let events: Vec<_> = (0..20).map(sample_envelope).collect();
    for event in &events {
        relay.emit(event.clone()).unwrap();
    }
    let mut buffer = vec![0u8; 64 * 1024];
    for event in &events {
        let n = receiver.recv(&mut buffer).unwrap();
        assert_eq!(buffer[..n], event.to_canonical_json());
    }
    assert!(relay.idle(Duration::from_secs(10)).await);
    relay.shutdown().await;
}
