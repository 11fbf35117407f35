//! Pollers against a local API that pages as Authentik, Django REST
//! framework and GitHub do and fails as real APIs do
//! ([`auditrelay_tests::pager`]): nothing is missed across failures and
//! SIGKILLs, the credentials never leave for another server and never
//! show in what the relay says, and an API asked the wrong way fails
//! loudly instead of skipping. What arrived is counted in the file
//! exporter's output, not in what the relay reports.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use auditrelay_tests::pager::{Pager, TOKEN, authentik_id};
use auditrelay_tests::webhooks::ARCHIVE;
use auditrelay_tests::{
    HitCounter, Home, RelayProcess, files_under, free_port, leaked_form, ndjson_values, tally,
};
use serde_json::Value;

use crate::sources::Sources;

/// json-map's field map for Authentik events.
fn mapper(name: &str) -> String {
    format!(
        r#"
[ingest.poll.{name}.mapper]
plugin = "json-map"
[ingest.poll.{name}.mapper.config]
fields = {{ id = "/pk", type = "/action", time = "/created", "actor.id" = "/user/username", payload = "/context" }}
constants = {{ "action.outcome" = "success" }}
values.type = {{ login = "user.login", logout = "user.logout", model_updated = "model.updated", password_set = "user.password_set" }}
"#
    )
}

/// The three pollers, one per way of paging, all on `pager`.
fn pollers(pager: &Pager, secret: &str) -> String {
    let base = pager.base();
    let common = format!(
        "interval = \"200ms\"\nauth = \"bearer\"\nsecret = \"{secret}\"\ntimeout = \"1s\"\nmax_pages = 20\n"
    );
    format!(
        r#"
[ingest.poll.authentik]
url = "{base}/api/v3/events/events/?ordering=created&page_size=50"
records = "/results"
{common}
[ingest.poll.authentik.cursor]
field = "/created"
param = "created__gte"
{authentik}
[ingest.poll.drf]
url = "{base}/drf/events/?page_size=40"
records = "/results"
next = "/next"
{common}
{drf}
[ingest.poll.github]
url = "{base}/orgs/acme/audit-log?per_page=30"
next = "link-header"
{common}
{github}
"#,
        authentik = mapper("authentik"),
        drf = mapper("drf"),
        github = mapper("github"),
    )
}

/// `source/id` of every event in the exporter's output, copies included.
fn arrived(home: &Home) -> Vec<String> {
    ndjson_values(&home.join("out"))
        .iter()
        .map(|event| {
            format!(
                "{}/{}",
                event["source"].as_str().unwrap_or_default(),
                event["id"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

fn expected(records: usize) -> HashSet<String> {
    ["authentik", "drf", "github"]
        .iter()
        .flat_map(|source| (0..records).map(move |n| format!("{source}/{}", authentik_id(n))))
        .collect()
}

/// Records: this many, appended while the relay polls.
const RECORDS: usize = 3_000;
/// SIGKILLs of the relay while they are appended.
const KILLS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_missed_across_failing_pages_and_kill_9() {
    let pager = Pager::start().await;
    pager.set(|s| s.fault_rate = 0.25);
    let home = Home::with_plugins(&["file", "json-map"]);
    let port = free_port();
    let config = home.config_file(&format!(
        "[ingest.http]\nlisten = \"127.0.0.1:{port}\"\n[spool]\ndurability = \"group\"\n{ARCHIVE}{}",
        pollers(&pager, "${PAGER_TOKEN}")
    ));
    let env = [("PAGER_TOKEN", TOKEN)];
    let mut relay = RelayProcess::start_with_env(&config, &env);
    let client = reqwest::Client::new();
    let mut said = String::new();
    let mut kills = 0;
    while pager.len() < RECORDS {
        pager.append(25);
        tokio::time::sleep(Duration::from_millis(60)).await;
        if pager.len() >= (kills + 1) * RECORDS / (KILLS + 1) && kills < KILLS {
            // What the relay says while pages fail, the echoing 500 among them.
            said.push_str(&status_and_metrics(&client, port).await);
            relay.kill_9();
            kills += 1;
            relay = RelayProcess::start_with_env(&config, &env);
        }
    }
    let expected = expected(RECORDS);
    let started = Instant::now();
    let mut result = tally(&expected, &arrived(&home));
    while result.lost > 0 && started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        result = tally(&expected, &arrived(&home));
    }
    said.push_str(&status_and_metrics(&client, port).await);
    assert!(
        relay.terminate(),
        "the last relay did not stop cleanly:\n{}",
        relay.log()
    );
    let (faults, pages) = {
        let state = pager.state.lock().unwrap();
        (state.faults.clone(), state.pages)
    };
    let result = tally(&expected, &arrived(&home));
    eprintln!(
        "poll: {RECORDS} records x 3 pollers, {KILLS} SIGKILLs, {pages} pages served, faults {faults:?}: \
         {} arrived, {} duplicates, {} lost",
        result.distinct, result.duplicates, result.lost
    );
    assert_eq!(
        result.lost,
        0,
        "records were missed, e.g. {:?}\n{}",
        {
            let got: HashSet<String> = arrived(&home).into_iter().collect();
            let mut lost: Vec<&String> = expected.difference(&got).collect();
            lost.sort();
            lost.into_iter().take(10).cloned().collect::<Vec<_>>()
        },
        relay.log()
    );
    assert_eq!(
        result.distinct,
        expected.len(),
        "events arrived that no record holds"
    );
    assert!(
        faults.values().sum::<usize>() >= 20,
        "too few faults to mean anything: {faults:?}"
    );
    assert!(faults.contains_key("echo-500"), "{faults:?}");

    // The token went out in every request and came back in the echoing
    // 500s: it shows nowhere the relay writes or speaks.
    let mut outputs = vec![
        ("the relay's log".to_owned(), relay.log()),
        ("status and metrics".into(), said),
    ];
    outputs.extend(
        files_under(home.path())
            .into_iter()
            .filter(|(path, _)| !path.ends_with("relay.toml"))
            .map(|(path, text)| (path.display().to_string(), text)),
    );
    for (place, text) in outputs {
        if let Some(form) = leaked_form(&text, TOKEN) {
            panic!("the token ({form}) is in {place}");
        }
    }
}

async fn status_and_metrics(client: &reqwest::Client, port: u16) -> String {
    let base = format!("http://127.0.0.1:{port}");
    let mut text = String::new();
    for path in ["/v1/status", "/metrics"] {
        if let Ok(response) = client.get(format!("{base}{path}")).send().await {
            text.push_str(&response.text().await.unwrap_or_default());
        }
    }
    text
}

/// A relay polling `tables` in this process.
async fn polling(tables: &str) -> Sources {
    let home = Home::with_plugins(&["file", "json-map"]);
    Sources::start(home, &format!("{ARCHIVE}{tables}")).await
}

fn ids(stored: &[Value]) -> Vec<String> {
    stored
        .iter()
        .map(|event| event["id"].as_str().unwrap().to_owned())
        .collect()
}

/// A next-page link to another server, and a redirect there: neither is
/// followed, so the token never reaches it; the poller says why, and goes
/// on once the API behaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_follow_a_link_or_a_redirect_elsewhere() {
    let pager = Pager::start().await;
    let elsewhere = HitCounter::start().await;
    pager.append(100);
    pager.set(|s| s.next_origin = Some(format!("http://{}", elsewhere.addr)));
    let base = pager.base();
    let sources = polling(&format!(
            "[ingest.poll.drf]\nurl = \"{base}/drf/events/?page_size=40\"\nrecords = \"/results\"\nnext = \"/next\"\ninterval = \"100ms\"\nauth = \"bearer\"\nsecret = \"{TOKEN}\"\n{}",
            mapper("drf")
        ),
    )
    .await;
    let status = sources.until("poll.drf", |s| s.state == "failing").await;
    let error = status.error.unwrap();
    assert!(
        error.contains(&format!("goes to http://{}", elsewhere.addr))
            && error.contains("not followed"),
        "{error}"
    );
    assert_eq!(
        ids(&sources.stored().await).len(),
        40,
        "the first page is stored"
    );

    pager.set(|s| {
        s.next_origin = None;
        s.redirect_to = Some(format!("http://{}/steal", elsewhere.addr));
    });
    let status = sources
        .until("poll.drf", |s| {
            s.error.as_deref().is_some_and(|e| e.contains("302"))
        })
        .await;
    assert!(
        status
            .error
            .as_deref()
            .unwrap()
            .contains("redirects are not followed"),
        "{status:?}"
    );
    pager.set(|s| s.redirect_to = None);
    sources
        .until("poll.drf", |s| {
            s.state == "reading" && s.spooled_events == 100
        })
        .await;
    assert_eq!(elsewhere.hits(), 0, "a request went to the other server");
    sources.stop().await;
}

/// An API asked for newest first would have its older records skipped if
/// the cursor moved past them: the poll fails, saying so, the cursor
/// stays, and once the API is asked the right way every record arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_first_fails_loudly_instead_of_skipping() {
    let pager = Pager::start().await;
    pager.append(25);
    pager.set(|s| s.newest_first = true);
    let base = pager.base();
    let sources = polling(&format!(
            "[ingest.poll.authentik]\nurl = \"{base}/api/v3/events/events/?page_size=10\"\nrecords = \"/results\"\ninterval = \"100ms\"\nauth = \"bearer\"\nsecret = \"{TOKEN}\"\n[ingest.poll.authentik.cursor]\nfield = \"/created\"\nparam = \"created__gte\"\n{}",
            mapper("authentik")
        ),
    )
    .await;
    let status = sources
        .until("poll.authentik", |s| s.state == "failing")
        .await;
    assert!(
        status.error.as_deref().unwrap().contains("newest first"),
        "{status:?}"
    );
    pager.set(|s| s.newest_first = false);
    sources
        .until("poll.authentik", |s| {
            s.state == "reading" && s.spooled_events == 25
        })
        .await;
    let mut got = ids(&sources.stored().await);
    got.sort();
    got.dedup();
    assert_eq!(got, (0..25).map(authentik_id).collect::<Vec<_>>());
    sources.stop().await;
}

/// A server that quotes the request's credentials back in its error page:
/// the status names the failure, masked. A record holding the token is
/// stored with it masked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_page_that_quotes_the_token_is_masked() {
    let pager = Pager::start().await;
    pager.append(5);
    pager.set(|s| {
        s.fault_rate = 1.0;
        s.only = Some("echo-500");
    });
    let base = pager.base();
    let sources = polling(&format!(
            "[ingest.poll.github]\nurl = \"{base}/orgs/acme/audit-log\"\nnext = \"link-header\"\ninterval = \"100ms\"\nauth = \"bearer\"\nsecret = \"{TOKEN}\"\n{}",
            mapper("github")
        ),
    )
    .await;
    let status = sources.until("poll.github", |s| s.state == "failing").await;
    let error = status.error.clone().unwrap();
    assert!(
        error.contains("500 Internal Server Error") && error.contains("***"),
        "{error}"
    );
    assert_eq!(leaked_form(&format!("{status:?}"), TOKEN), None, "{error}");
    // A record that holds the token (an API's "token created" event may):
    // it is masked before it is mapped, stored or kept.
    pager.set(|s| {
        s.fault_rate = 0.0;
        let mut event = auditrelay_tests::pager::authentik_event(5);
        event["context"] = serde_json::json!({"created": {"name": "ci", "value": TOKEN}});
        s.records.push(event);
    });
    sources
        .until("poll.github", |s| s.spooled_events == 6)
        .await;
    let stored = sources.stored().await;
    assert_eq!(stored.len(), 6);
    for (path, text) in files_under(sources.home.path()) {
        assert_eq!(
            leaked_form(&text, TOKEN),
            None,
            "the token is in {}",
            path.display()
        );
    }
    sources.stop().await;
}

/// Stopped and started again, a poller goes on from its cursor: it asks
/// for no record twice beyond the overlap of `gte`, and stores none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_goes_on_from_the_cursor() {
    let pager = Pager::start().await;
    pager.append(120);
    let base = pager.base();
    let tables = format!(
        "{ARCHIVE}[ingest.poll.authentik]\nurl = \"{base}/api/v3/events/events/?ordering=created&page_size=50\"\nrecords = \"/results\"\ninterval = \"100ms\"\nauth = \"bearer\"\nsecret = \"{TOKEN}\"\n[ingest.poll.authentik.cursor]\nfield = \"/created\"\nparam = \"created__gte\"\n{}",
        mapper("authentik")
    );
    let home = Home::with_plugins(&["file", "json-map"]);
    let sources = Sources::start(home, &tables).await;
    sources
        .until("poll.authentik", |s| s.spooled_events == 120)
        .await;
    let home = sources.stop().await;
    let cursor: Value = serde_json::from_slice(
        &std::fs::read(home.join("data/sources/authentik/cursor.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        cursor["after"],
        auditrelay_tests::pager::authentik_event(119)["created"],
        "{cursor}"
    );

    pager.append(30);
    let sources = Sources::start(home, &tables).await;
    sources
        .until("poll.authentik", |s| s.spooled_events == 30)
        .await;
    let stored = ids(&sources.stored().await);
    let distinct: HashSet<&String> = stored.iter().collect();
    assert_eq!(distinct.len(), 150);
    assert_eq!(stored.len(), 150, "an event was stored twice");
    sources.stop().await;
}
