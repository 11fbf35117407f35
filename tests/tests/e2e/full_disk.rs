//! A full disk: the relay runs with its spool on a 2 MiB tmpfs (in a
//! private mount namespace, `unshare`, which a holder process keeps alive
//! so the relay can be killed and restarted on the same filesystem) while
//! its destination is down. When the disk fills it refuses new events at
//! once and clearly (HTTP 503 naming the cause, `"accepted": 0`: nothing
//! held only in memory is ever acknowledged), keeps running, survives
//! `kill -9` in that state, and once the destination is back and the spool
//! drains, every event the client saw acknowledged is delivered.

use std::collections::HashSet;
use std::io::BufRead;
use std::time::{Duration, Instant};

use auditrelay_tests::{Home, Receiver, RelayProcess, free_port, sample_envelope, tally};

/// A mount namespace with a 2 MiB tmpfs at `dir`, kept alive by a
/// sleeping process; relays enter it through `nsenter`.
struct SmallDisk {
    holder: std::process::Child,
}

impl SmallDisk {
    fn mount(dir: &std::path::Path) -> Self {
        let script =
            format!("mount -t tmpfs -o size=2m tmpfs {dir:?} && echo mounted && exec sleep 600");
        let mut holder = std::process::Command::new("unshare")
            .args(["-rm", "sh", "-c", &script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("unshare runs");
        let mut line = String::new();
        std::io::BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "mounted", "the tmpfs could not be mounted");
        SmallDisk { holder }
    }

    /// The command prefix that runs a program inside the namespace.
    fn enter(&self) -> Vec<String> {
        let pid = self.holder.id().to_string();
        ["nsenter", "-t", &pid, "-U", "-m", "--preserve-credentials"]
            .map(str::to_owned)
            .to_vec()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_refused_at_once_and_loses_nothing_acknowledged_even_across_kill_9() {
    let receiver = Receiver::start().await;
    let home = Home::with_plugins(&["faulty"]);
    let data = home.join("tmpfs");
    std::fs::create_dir_all(&data).unwrap();
    let port = free_port();
    let recover_at = jiff::Timestamp::now() + Duration::from_secs(15);
    // ack_timeout keeps its 30 s default: refusals must not wait for it.
    let config = home.config_file(&format!(
        r#"
[relay]
data_dir = {data:?}
max_buffered_bytes = "64KiB"
max_event_bytes = "16KiB"
[ingest.http]
listen = "127.0.0.1:{port}"
[spool]
segment_size = "128KiB"
[plugins.sink]
plugin = "faulty"
allowed_hosts = ["127.0.0.1:{receiver_port}"]
[plugins.sink.config]
fault = "retryable"
fault_until = "{recover_at}"
url = "{url}"
[plugins.sink.retry]
initial_backoff = "50ms"
max_backoff = "200ms"
circuit_open_for = "200ms"
"#,
        receiver_port = receiver.addr.port(),
        url = receiver.url(),
    ));
    let disk = SmallDisk::mount(&data);
    let enter = disk.enter();
    let prefix: Vec<&str> = enter.iter().map(String::as_str).collect();
    let mut relay = RelayProcess::start(&config, &prefix);

    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/v1/events");
    // Post until the relay has refused a few times. What counts is what
    // this client saw acknowledged (202), not what the relay reports.
    let mut acknowledged = HashSet::new();
    let mut refusals = Vec::new();
    let mut slowest_refusal = Duration::ZERO;
    for batch in 0..2000 {
        let events: Vec<_> = (batch * 50..batch * 50 + 50).map(sample_envelope).collect();
        let asked = Instant::now();
        let response = client.post(&url).json(&events).send().await.unwrap();
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap();
        match status.as_u16() {
            202 => acknowledged.extend(events.into_iter().map(|e| e.id)),
            503 => {
                slowest_refusal = slowest_refusal.max(asked.elapsed());
                assert_eq!(body["accepted"], 0, "a 503 acknowledges nothing: {body}");
                if refusals.is_empty() {
                    // The first refusal: the relay says why, and keeps running.
                    let state =
                        auditrelay_tests::status(&client, &format!("http://127.0.0.1:{port}"))
                            .await;
                    assert!(
                        state["spool_write_error"]
                            .as_str()
                            .is_some_and(|e| e.contains("No space left on device")),
                        "{state}"
                    );
                }
                refusals.push(body["error"].as_str().unwrap().to_owned());
                if refusals.len() == 20 {
                    break;
                }
            }
            other => panic!("unexpected answer {other}: {body}"),
        }
    }
    assert_eq!(refusals.len(), 20, "the 2 MiB disk never filled");
    assert!(
        refusals
            .iter()
            .all(|e| e.contains("No space left on device")),
        "every refusal should say the disk is full: {refusals:#?}"
    );
    assert!(
        refusals
            .iter()
            .all(|e| e.contains("the spool cannot write to disk")),
        "{refusals:#?}"
    );
    assert!(
        slowest_refusal < Duration::from_secs(10),
        "refusals waited for ack_timeout instead of answering at once: {slowest_refusal:?}"
    );
    assert!(
        relay.is_running(),
        "the relay died on a full disk:\n{}",
        relay.log()
    );
    assert!(
        relay.log().contains("the spool cannot write to disk"),
        "{}",
        relay.log()
    );

    // kill -9 while the disk is full, and start again on the same disk.
    relay.kill_9();
    let mut relay = RelayProcess::start(&config, &prefix);

    // The destination comes back: the spool drains, the disk frees up, and
    // everything acknowledged arrives.
    let delivered = receiver
        .wait_for_all(&acknowledged, Duration::from_secs(90))
        .await;
    let result = tally(&acknowledged, &receiver.ids());
    eprintln!(
        "full disk: {} events acknowledged durable before the disk filled, {} refusals (slowest {slowest_refusal:?}), \
         kill -9 while full; {} delivered, {} lost; last refusal: {}",
        result.acknowledged,
        refusals.len(),
        result.distinct,
        result.lost,
        refusals.last().unwrap()
    );
    assert!(delivered && result.lost == 0, "{result:?}\n{}", relay.log());
    // And it accepts again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = client
            .post(&url)
            .json(&[sample_envelope(99_999)])
            .send()
            .await
            .unwrap();
        if response.status() == 202 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the relay never accepted again:\n{}",
            relay.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(relay.terminate(), "{}", relay.log());
}
