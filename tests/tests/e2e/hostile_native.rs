//! A native plugin attacking its runner (`tests/fixtures/c-plugin/hostile.c`):
//! what it forks dies with its runner, even when the relay is killed; the
//! shared memory it touches or fills counts against `limits.memory`, even
//! after it killed its watchdog; replies it
//! forges on the protocol pipe count for nothing. A healthy instance beside
//! it receives every event.

use std::time::{Duration, Instant};

use auditrelay::Relay;
use auditrelay_tests::{
    Home, RelayProcess, compile_c_plugin, free_port, logs, metric, ndjson_lines, sample_envelope,
};

/// A home with the `file` plugin and the hostile C plugin, and the config
/// tables of a healthy instance and of `c-hostile` doing `attack`.
fn home_with(attack: &str, extra: &str) -> (Home, String) {
    let home = Home::with_plugins(&["file"]);
    compile_c_plugin("hostile.c", &home.plugin_dir());
    let tables = format!(
        r#"
[relay]
shutdown_timeout = "1s"
[plugins.healthy]
plugin = "file"
grant_dir = "{{home}}/healthy"
[plugins.healthy.batch]
max_wait = "5ms"
[plugins.attacker]
plugin = "c-hostile"
grant_dir = "{{home}}/attacker"
{extra}
[plugins.attacker.config]
attack = "{attack}"
[plugins.attacker.batch]
max_wait = "5ms"
[plugins.attacker.retry]
initial_backoff = "20ms"
max_backoff = "100ms"
"#
    );
    (home, tables)
}

/// Whether a process is gone (or a zombie nobody has reaped yet).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// The pids the plugin wrote, once it forked all four.
fn children(home: &std::path::Path) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(text) = std::fs::read_to_string(home.join("attacker/children"))
            && text.lines().count() == 4
        {
            return text.lines().map(|l| l.parse().unwrap()).collect();
        }
        assert!(Instant::now() < deadline, "the plugin never forked");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn all_gone(pids: &[i32]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pids.iter().all(|&pid| gone(pid)) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_native_plugin_forks_dies_with_its_runner_even_when_the_relay_is_killed() {
    // A relay that shuts down.
    let (home, tables) = home_with("fork", "");
    let relay = Relay::start(home.config(&tables)).await.unwrap();
    for i in 0..5 {
        relay.emit(sample_envelope(i)).unwrap();
    }
    let home_dir = home.path().to_owned();
    let pids = tokio::task::spawn_blocking(move || children(&home_dir))
        .await
        .unwrap();
    assert!(
        pids.iter().all(|&pid| !gone(pid)),
        "the forked processes run"
    );
    assert!(relay.idle(Duration::from_secs(30)).await);
    relay.shutdown().await;
    assert!(
        all_gone(&pids),
        "forked processes outlived the runner: {pids:?}"
    );
    assert_eq!(ndjson_lines(&home.join("healthy")).len(), 5);

    // A relay killed with SIGKILL: the runner dies with it, and its
    // watchdog takes the forked processes along.
    let (home, tables) = home_with("fork", "");
    let port = free_port();
    let config = home.config_file(&format!(
        "[ingest.http]\nlisten = \"127.0.0.1:{port}\"\n{tables}"
    ));
    let mut process = RelayProcess::start(&config, &[]);
    let events: Vec<_> = (0..3).map(sample_envelope).collect();
    let posted = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/events"))
        .json(&events)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 202);
    let home_dir = home.path().to_owned();
    let pids = tokio::task::spawn_blocking(move || children(&home_dir))
        .await
        .unwrap();
    process.kill_9();
    assert!(
        all_gone(&pids),
        "forked processes outlived a relay killed with SIGKILL: {pids:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_rlimit_data_cannot_see_counts_against_the_memory_limit() {
    // MAP_SHARED memory; a memfd written but never mapped; shared memory
    // touched after the plugin killed its runner's watchdog.
    for attack in ["shared", "memfd", "nowatch"] {
        let logs = logs();
        let (home, tables) = home_with(
            attack,
            "[plugins.attacker.limits]\nmemory = \"64MiB\"\ntimeout = \"10s\"",
        );
        let relay = Relay::start(home.config(&tables)).await.unwrap();
        for i in 0..5 {
            relay.emit(sample_envelope(i)).unwrap();
        }
        let crash = logs
            .wait_for("attacker", Duration::from_secs(30), |e| {
                e["cause"] == "out_of_memory"
            })
            .unwrap_or_else(|| panic!("{attack}: not killed: {:#?}", logs.of_plugin("attacker")));
        assert!(
            crash["message"]
                .as_str()
                .unwrap()
                .contains("counting shared memory"),
            "{attack}: {crash}"
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while ndjson_lines(&home.join("healthy")).len() < 5 {
            assert!(Instant::now() < deadline, "{attack}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(relay.status().plugin("attacker").unwrap().delivered, 0);
        relay.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_forged_on_the_protocol_pipe_count_for_nothing() {
    let logs = logs();
    let (home, tables) = home_with("forge", "");
    let relay = Relay::start(home.config(&tables)).await.unwrap();
    for i in 0..50 {
        relay.emit(sample_envelope(i)).unwrap();
    }
    let broken = logs
        .wait_for("attacker", Duration::from_secs(30), |e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("broke the protocol"))
        })
        .expect("the forged frames break the exchange");
    assert!(
        broken["message"]
            .as_str()
            .unwrap()
            .contains("plugin crashed"),
        "{broken}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while ndjson_lines(&home.join("healthy")).len() < 50 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let attacker = relay.status().plugin("attacker").unwrap().clone();
    assert_eq!(
        attacker.delivered, 0,
        "forged acceptances counted: {attacker:?}"
    );
    relay.shutdown().await;
}

/// The same plugin bug gets the same handling in every kind of instance:
/// an answer rejecting an event the batch does not hold is a fault, and
/// the instance that gave it is replaced, as after a crash — in a runner
/// process as in the relay's own process (the WASM case is in
/// `hostile.rs`). A healthy instance beside it gets every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impossible_answer_replaces_the_instance_in_either_isolation() {
    for isolation in ["process", "in-process"] {
        let (home, tables) = home_with("bad_rejections", &format!("isolation = \"{isolation}\""));
        let relay = Relay::start(home.config(&tables)).await.unwrap();
        for i in 0..10 {
            relay.emit(sample_envelope(i)).unwrap();
        }
        let restarts = "auditrelay_plugin_restarts_total{plugin=\"attacker\"}";
        let deadline = Instant::now() + Duration::from_secs(20);
        while metric(&relay.metrics_text(), restarts).unwrap_or(0.0) < 2.0 {
            assert!(
                Instant::now() < deadline,
                "{isolation}: the instance was not replaced after impossible answers: {:#?}",
                relay.status().plugin("attacker")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let attacker = relay.status().plugin("attacker").unwrap().clone();
        assert_eq!(attacker.delivered, 0, "{isolation}: {attacker:#?}");
        assert!(
            attacker
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("impossible rejection list")),
            "{isolation}: {attacker:#?}"
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while ndjson_lines(&home.join("healthy")).len() < 10 {
            assert!(
                Instant::now() < deadline,
                "{isolation}: the healthy instance fell behind"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        relay.shutdown().await;
    }
}
