//! A minor WIT version only adds: an exporter built against
//! `auditrelay:plugin@1.0.0` (before the mapper world) loads, logs, delivers
//! and refuses through this relay, which speaks 1.1.0, unchanged.

use std::time::{Duration, Instant};

use auditrelay::Relay;
use auditrelay_tests::{Home, logs, sample_envelope};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exporter_built_against_wit_1_0_0_runs_unchanged() {
    let logs = logs();
    let home = Home::with_plugins(&["exporter-1-0-0"]);
    let config = home.config(
        r#"
[plugins.old]
plugin = "exporter-1-0-0"
[plugins.old.batch]
max_events = 1
max_wait = "5ms"
"#,
    );
    let relay = Relay::start(config).await.expect("a 1.0.0 exporter starts");
    for i in 0..20 {
        relay.emit(sample_envelope(i)).unwrap();
    }
    let mut poison = sample_envelope(20);
    poison.reason = Some("refuse-me".into());
    relay.emit(poison).unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    let (delivered, dead) = loop {
        let plugin = relay
            .status()
            .plugin("old")
            .cloned()
            .expect("the instance runs");
        if plugin.delivered + plugin.dead_letters >= 21 || Instant::now() > deadline {
            break (plugin.delivered, plugin.dead_letters);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let status = relay.status();
    let plugin = status.plugin("old").unwrap();
    assert_eq!(plugin.version.as_deref(), Some("1.0.0"));
    relay.shutdown().await;
    assert_eq!((delivered, dead), (20, 1));
    let said = logs
        .of_plugin("old")
        .iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m == "1.0.0 exporter delivered 1 events")
        })
        .count();
    assert_eq!(said, 20, "its 1.0.0 log import works");
}
