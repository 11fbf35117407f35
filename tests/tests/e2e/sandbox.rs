//! What a plugin can and cannot touch.

use std::time::Duration;

use auditrelay::Relay;
use auditrelay_tests::{HitCounter, Home, logs, sample_envelope};

const SECRET: &str = "hec-token-5f1e2d3c";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_sees_no_files_environment_or_sockets_it_was_not_granted() {
    let logs = logs();
    let home = Home::with_plugins(&["faulty"]);
    std::fs::write(
        home.join("outside.txt"),
        "host file next to the granted directory",
    )
    .unwrap();
    let instance = "prober";
    let config = home.config(&format!(
        r#"
[plugins.{instance}]
plugin = "faulty"
grant_dir = "{{home}}/granted"
[plugins.{instance}.secrets]
granted = "{SECRET}"
[plugins.{instance}.config]
fault = "probe_sandbox"
"#
    ));
    let relay = Relay::start(config).await.unwrap();
    relay.emit(sample_envelope(0)).unwrap();
    assert!(relay.idle(Duration::from_secs(30)).await);
    relay.shutdown().await;

    let probes: Vec<(String, String)> = logs
        .of_plugin(instance)
        .iter()
        .filter_map(|e| e["message"].as_str())
        .filter_map(|m| m.strip_prefix("probe "))
        .filter_map(|m| {
            m.split_once(": ")
                .map(|(what, verdict)| (what.to_owned(), verdict.to_owned()))
        })
        .collect();
    let verdict = |what: &str| -> String {
        probes
            .iter()
            .find(|(w, _)| w == what)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no probe {what:?} in {probes:?}"))
    };
    for what in [
        "read /etc/passwd",
        "read /",
        "read .",
        "read /proc/self/environ",
        "escape granted dir",
        "env vars",
        "env HOME",
        "tcp connect",
        "secret not_granted",
    ] {
        assert!(
            verdict(what).starts_with("denied"),
            "{what}: {}",
            verdict(what)
        );
    }
    assert!(verdict("secret granted").starts_with("allowed"));
    assert!(
        !home.join("escape.txt").exists(),
        "the plugin wrote outside its granted directory"
    );

    // The plugin logged the secret's value; the relay masked it.
    let all = logs.events();
    let leaked = all.iter().any(|e| e.to_string().contains(SECRET));
    assert!(!leaked, "a secret value reached the log");
    assert!(
        all.iter()
            .any(|e| e["plugin"] == instance && e["message"] == "logging the secret: ***"),
        "the masked line is missing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_reaches_exactly_the_hosts_it_was_allowed() {
    let server = HitCounter::start().await;
    let addr = server.addr;

    let home = Home::with_plugins(&["faulty"]);
    let config = home.config(&format!(
        r#"
[plugins.allowed]
plugin = "faulty"
allowed_hosts = ["127.0.0.1:{port}"]
[plugins.allowed.config]
fault = "http_post"
url = "http://{addr}/collect"

[plugins.other-port]
plugin = "faulty"
allowed_hosts = ["127.0.0.1:{other}"]
[plugins.other-port.config]
fault = "http_post"
url = "http://{addr}/collect"
"#,
        port = addr.port(),
        other = addr.port().wrapping_add(1),
    ));
    let relay = Relay::start(config).await.unwrap();
    for i in 0..3 {
        relay.emit(sample_envelope(i)).unwrap();
    }
    assert!(relay.idle(Duration::from_secs(30)).await);
    let status = relay.status();
    relay.shutdown().await;
    let allowed = status.plugin("allowed").unwrap();
    let other = status.plugin("other-port").unwrap();
    assert_eq!(allowed.delivered, 3, "{allowed:#?}");
    assert!(server.hits() >= 1);
    // Allowing a host on one port does not open its other ports.
    assert_eq!(other.delivered, 0);
    assert_eq!(other.dead_letters, 3);
}
