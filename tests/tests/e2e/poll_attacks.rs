//! An outside review of `[ingest.poll.<name>]`: an API that misbehaves
//! on purpose (or on a bad day), served by a small programmable server on
//! 127.0.0.1, against a relay polling it in this process. Each test is one
//! attack and states the guarantee it checks: nothing served is missed,
//! the credentials go nowhere else and show nowhere, and every bad
//! behaviour is a clear error the poller retries with backoff.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use auditrelay::status::SourceStatus;
use auditrelay_tests::webhooks::ARCHIVE;
use auditrelay_tests::{HitCounter, Home, files_under, leaked_form};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::sources::Sources;

// ---------------------------------------------------------------------
// A programmable API
// ---------------------------------------------------------------------

/// One request the API got.
#[derive(Clone, Debug)]
struct Asked {
    path: String,
    query: HashMap<String, String>,
    headers: HeaderMap,
}

type Handler = Arc<dyn Fn(&Asked) -> Response + Send + Sync>;

#[derive(Clone)]
struct Shared {
    handler: Arc<Mutex<Handler>>,
    asked: Arc<Mutex<Vec<Asked>>>,
}

/// A local API whose every answer is the current handler's.
struct Api {
    addr: SocketAddr,
    shared: Shared,
}

impl Api {
    async fn start(handler: impl Fn(&Asked) -> Response + Send + Sync + 'static) -> Api {
        let shared = Shared {
            handler: Arc::new(Mutex::new(Arc::new(handler))),
            asked: Arc::default(),
        };
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Api { addr, shared }
    }

    fn set(&self, handler: impl Fn(&Asked) -> Response + Send + Sync + 'static) {
        *self.shared.handler.lock().unwrap() = Arc::new(handler);
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn asked(&self) -> Vec<Asked> {
        self.shared.asked.lock().unwrap().clone()
    }

    fn hits(&self) -> usize {
        self.shared.asked.lock().unwrap().len()
    }

    /// Waits (at most 30 s) until the API has had `n` requests.
    async fn until_hits(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.hits() < n {
            assert!(
                Instant::now() < deadline,
                "the API got only {} requests",
                self.hits()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn answer(State(shared): State<Shared>, uri: Uri, headers: HeaderMap) -> Response {
    let url = reqwest::Url::parse(&format!("http://x{uri}")).unwrap();
    let asked = Asked {
        path: url.path().to_owned(),
        query: url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
        headers,
    };
    shared.asked.lock().unwrap().push(asked.clone());
    let handler = shared.handler.lock().unwrap().clone();
    handler(&asked)
}

fn page(value: Value) -> Response {
    axum::Json(value).into_response()
}

/// A body sent as a stream (no `Content-Length`): what `feed` sends down
/// the channel, ended when it drops the sender.
fn streamed(
    feed: impl FnOnce(
        tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    ) -> tokio::task::JoinHandle<()>,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    feed(tx);
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(Chunks(rx)))
        .unwrap()
}

struct Chunks(tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>);

impl futures_core::Stream for Chunks {
    type Item = Result<Vec<u8>, std::io::Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

// ---------------------------------------------------------------------
// Records, configs, the relay
// ---------------------------------------------------------------------

const T0: i64 = 1_780_000_000;

fn time(n: usize) -> String {
    jiff::Timestamp::from_second(T0 + n as i64)
        .unwrap()
        .to_string()
}

/// Audit record `n`: ids `evt-<n>`, `seq` n, `time` n seconds after T0.
fn record(n: usize) -> Value {
    json!({
        "id": format!("evt-{n:06}"),
        "seq": n,
        "time": time(n),
        "actor": format!("user{}", n % 5),
        "action": "login",
        "data": {"n": n},
    })
}

fn records(range: std::ops::Range<usize>) -> Vec<Value> {
    range.map(record).collect()
}

/// json-map for [`record`]s.
fn mapper(name: &str) -> String {
    format!(
        r#"
[ingest.poll.{name}.mapper]
plugin = "json-map"
[ingest.poll.{name}.mapper.config]
fields = {{ id = "/id", type = "/action", time = "/time", "actor.id" = "/actor", payload = "/data" }}
constants = {{ "action.outcome" = "success" }}
values.type = {{ login = "user.login" }}
"#
    )
}

/// A poller `name` of `url`, with `extra` keys (paging, auth) and json-map.
fn poller(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[ingest.poll.{name}]\nurl = \"{url}\"\ninterval = \"200ms\"\n{extra}\n{}",
        mapper(name)
    )
}

fn field_cursor(name: &str, field: &str, param: &str) -> String {
    format!("[ingest.poll.{name}.cursor]\nfield = \"/{field}\"\nparam = \"{param}\"\n")
}

async fn polling(tables: &str) -> Sources {
    let home = Home::with_plugins(&["file", "json-map"]);
    Sources::start(home, &format!("{ARCHIVE}{tables}")).await
}

/// The ids stored, copies included.
async fn stored_ids(sources: &Sources) -> Vec<String> {
    sources
        .stored()
        .await
        .iter()
        .filter_map(|e| e["id"].as_str().map(str::to_owned))
        .collect()
}

fn duplicates(ids: &[String]) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut twice: Vec<String> = ids.iter().filter(|id| !seen.insert(*id)).cloned().collect();
    twice.sort();
    twice.dedup();
    twice
}

/// Waits up to `within` for `done`; the last status either way.
async fn within(
    sources: &Sources,
    label: &str,
    within: Duration,
    done: impl Fn(&SourceStatus) -> bool,
) -> SourceStatus {
    let deadline = Instant::now() + within;
    loop {
        let status = sources.status(label);
        if done(&status) || Instant::now() >= deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn error_has(status: &SourceStatus, text: &str) -> bool {
    status.error.as_deref().is_some_and(|e| e.contains(text))
}

/// A keyset API over `store`: the records whose `field` is at least the
/// `param` value (numbers as numbers, times as times; an unreadable value
/// is a 400, as DRF answers), oldest first, `size` at a time.
fn keyset(store: Arc<Mutex<Vec<Value>>>, size: usize) -> impl Fn(&Asked) -> Response {
    move |asked: &Asked| {
        let all = store.lock().unwrap().clone();
        let mut matching = all;
        if let Some(since) = asked.query.get("seq__gte") {
            let Ok(since) = since.parse::<u64>() else {
                return (
                    StatusCode::BAD_REQUEST,
                    page(json!({"seq__gte": ["Enter a whole number."]})),
                )
                    .into_response();
            };
            matching.retain(|r| r["seq"].as_u64().unwrap() >= since);
        }
        if let Some(since) = asked.query.get("time__gte") {
            let Ok(since) = since.parse::<jiff::Timestamp>() else {
                return (
                    StatusCode::BAD_REQUEST,
                    page(json!({"time__gte": ["Enter a valid date/time."]})),
                )
                    .into_response();
            };
            matching.retain(|r| {
                r["time"]
                    .as_str()
                    .unwrap()
                    .parse::<jiff::Timestamp>()
                    .unwrap()
                    >= since
            });
        }
        matching.truncate(size);
        page(json!({ "results": matching }))
    }
}

// ---------------------------------------------------------------------
// (1) Nothing served is missed
// ---------------------------------------------------------------------

/// More records share one cursor value than a page holds (a bulk import,
/// a second-resolution clock). With `gte` the poll cannot move past them:
/// the rest of them, and everything after, is never read. The docs say
/// so, but the poller must then *say* so (guarantee 3), not sit in
/// `reading` with no error while records are never read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_ties_than_a_page_are_read_or_reported() {
    let tied: Vec<Value> = (0..25)
        .map(|n| {
            let mut r = record(n);
            r["time"] = json!(time(0));
            r
        })
        .chain(records(25..30))
        .collect();
    let api = Api::start(keyset(Arc::new(Mutex::new(tied)), 10)).await;
    let sources = polling(&format!(
        "{}{}",
        poller(
            "tied",
            &format!("{}/events?ordering=time", api.base()),
            "records = \"/results\""
        ),
        field_cursor("tied", "time", "time__gte")
    ))
    .await;
    // A dozen polls: long enough to read 30 records three times over.
    api.until_hits(12).await;
    let status = sources.status("poll.tied");
    let stored: HashSet<String> = stored_ids(&sources).await.into_iter().collect();
    assert!(
        stored.len() == 30 || status.error.is_some(),
        "{} of 30 records stored after {} requests, and the status says nothing is wrong: {status:?}",
        stored.len(),
        api.hits()
    );
    sources.stop().await;
}

/// An API that ignores the cursor parameter (a typo in `param`,
/// `created_gte` for `created__gte`; or a filter the API does not have)
/// answers the first page whatever is asked. Its records come back
/// *older* than the value asked from, which the poller can see; it must
/// report it instead of stalling silently after the first page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_ignoring_the_cursor_param_is_reported() {
    let all = records(0..30);
    let api = Api::start(move |_: &Asked| page(json!({ "results": all[..10] }))).await;
    let sources = polling(&format!(
        "{}{}",
        poller(
            "deaf",
            &format!("{}/events", api.base()),
            "records = \"/results\""
        ),
        field_cursor("deaf", "seq", "seq_gte")
    ))
    .await;
    api.until_hits(8).await;
    let status = sources.status("poll.deaf");
    let stored: HashSet<String> = stored_ids(&sources).await.into_iter().collect();
    assert!(
        stored.len() == 30 || status.error.is_some(),
        "the API ignores seq_gte: {} of 30 records stored, and the status says nothing is wrong: {status:?}",
        stored.len()
    );
    sources.stop().await;
}

/// "The last page is asked for again on the next poll", and with `gte`
/// the records sharing the last value are too; they are stored once only
/// while the spool's dedup window remembers them (`dedup_age`, 10 min by
/// default). A quiet API is polled for hours: once the window has passed,
/// every poll exports the last page again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_api_is_not_exported_again_after_the_dedup_window() {
    let store = Arc::new(Mutex::new(records(0..5)));
    let last_page = records(0..5);
    let keyset = keyset(store, 100);
    let api = Api::start(move |asked: &Asked| {
        if asked.path == "/links" {
            page(json!({ "results": last_page, "next": null }))
        } else {
            keyset(asked)
        }
    })
    .await;
    let base = api.base();
    let sources = polling(&format!(
        "[spool]\ndedup_age = \"1s\"\n{}{}{}",
        poller(
            "links",
            &format!("{base}/links"),
            "records = \"/results\"\nnext = \"/next\""
        ),
        poller("keys", &format!("{base}/keys"), "records = \"/results\""),
        field_cursor("keys", "seq", "seq__gte"),
    ))
    .await;
    sources.until("poll.links", |s| s.spooled_events >= 5).await;
    sources.until("poll.keys", |s| s.spooled_events >= 1).await;
    // The API gains nothing; the window (1 s here) passes a few times.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (links, keys) = (sources.status("poll.links"), sources.status("poll.keys"));
    let ids = stored_ids(&sources).await;
    assert!(
        links.spooled_events == 5 && keys.spooled_events == 5,
        "nothing new was served, yet poll.links spooled {} events and poll.keys {} (5 each were served once); \
         {} events exported, copies of {:?}",
        links.spooled_events,
        keys.spooled_events,
        ids.len(),
        duplicates(&ids)
    );
    sources.stop().await;
}

/// Changing how a poller pages — the docs' own advice when times tie:
/// "use a unique field then" — keeps the cursor (only `url` is compared),
/// so the saved timestamp is sent as the new numeric parameter. The API
/// refuses it, and the poller is stuck until its cursor is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_cursor_field_does_not_wedge_the_poller() {
    let store = Arc::new(Mutex::new(records(0..10)));
    let api = Api::start(keyset(store.clone(), 100)).await;
    let url = format!("{}/events", api.base());
    let by = |field: &str, param: &str| {
        format!(
            "{ARCHIVE}{}{}",
            poller("idp", &url, "records = \"/results\""),
            field_cursor("idp", field, param)
        )
    };
    let sources = Sources::start(
        Home::with_plugins(&["file", "json-map"]),
        &by("time", "time__gte"),
    )
    .await;
    sources.until("poll.idp", |s| s.spooled_events == 10).await;
    let home = sources.stop().await;

    store.lock().unwrap().extend(records(10..15));
    let sources = Sources::start(home, &by("seq", "seq__gte")).await;
    let status = within(&sources, "poll.idp", Duration::from_secs(10), |s| {
        s.spooled_events >= 5
    })
    .await;
    assert!(
        status.spooled_events >= 5 && status.error.is_none(),
        "after switching the cursor to /seq the 5 new records never arrived: {status:?}\nrequests: {:?}",
        api.asked()
            .iter()
            .rev()
            .take(2)
            .map(|a| &a.query)
            .collect::<Vec<_>>()
    );
    sources.stop().await;
}

/// Records without an id: json-map derives one from the content, so that
/// a record read twice (a page asked for again) is stored once. The price,
/// documented in docs/sources.md: two records the API served that are
/// alike byte for byte — two failed logins of one user in one second, from
/// an API without ids — are one event. This pins that behaviour down, so
/// a change to it is a decision, not an accident.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_alike_records_without_ids_are_one_event_by_design() {
    let api = Api::start(|_: &Asked| {
        let mut r = record(0);
        r.as_object_mut().unwrap().remove("id");
        page(json!({"results": [r.clone(), r, record(1)]}))
    })
    .await;
    let sources = polling(&poller(
        "noids",
        &format!("{}/events", api.base()),
        "records = \"/results\"\nnext = \"/next\"",
    ))
    .await;
    api.until_hits(3).await;
    let stored = stored_ids(&sources).await;
    assert_eq!(
        stored.len(),
        2,
        "the API served 3 records, two alike; stored: {stored:?} ({:?})",
        sources.status("poll.noids")
    );
    sources.stop().await;
}

/// The configured url changed between runs: the poller starts over from
/// its first page; the records read again are stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_url_starts_over_without_loss_or_copies() {
    let store = Arc::new(Mutex::new(records(0..12)));
    let api = Api::start(keyset(store.clone(), 5)).await;
    let table = |url: String| {
        format!(
            "{ARCHIVE}{}{}",
            poller("idp", &url, "records = \"/results\""),
            field_cursor("idp", "seq", "seq__gte")
        )
    };
    let sources = Sources::start(
        Home::with_plugins(&["file", "json-map"]),
        &table(format!("{}/events", api.base())),
    )
    .await;
    sources.until("poll.idp", |s| s.spooled_events == 12).await;
    let home = sources.stop().await;
    store.lock().unwrap().extend(records(12..20));
    let sources = Sources::start(home, &table(format!("{}/events?ordering=seq", api.base()))).await;
    sources.until("poll.idp", |s| s.spooled_events == 8).await;
    let ids = stored_ids(&sources).await;
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 20);
    assert_eq!(duplicates(&ids), Vec::<String>::new());
    sources.stop().await;
}

// ---------------------------------------------------------------------
// (2) Credentials
// ---------------------------------------------------------------------

const TOKEN: &str = "tok-Vq83LmZx21PwKs94-poller-secret";

/// Next links to every other form of "somewhere else" — another port on
/// the same host, a name for it, another scheme, userinfo (alone and as
/// the `host@other` trick), scheme-relative, backslashes, a decimal IPv4,
/// an IPv4-mapped IPv6 — are refused; neither server gets a request with
/// the token beyond the configured pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_links_in_any_form_of_elsewhere_are_refused() {
    let elsewhere = HitCounter::start().await;
    let other = elsewhere.addr.port();
    // The API's own port is known once it runs: links are built per request.
    let api = Api::start(|_: &Asked| page(json!({}))).await;
    let port = api.addr.port();
    let forms: Vec<String> = vec![
        format!("http://127.0.0.1:{other}/stolen"),
        format!("http://localhost:{other}/stolen"),
        format!("https://127.0.0.1:{port}/stolen"),
        format!("http://user:pw@127.0.0.1:{port}/stolen"),
        format!("http://127.0.0.1:{port}@127.0.0.1:{other}/stolen"),
        format!("//127.0.0.1:{other}/stolen"),
        format!("http:\\\\127.0.0.1:{other}\\stolen"),
        format!("http://2130706433:{other}/stolen"),
        format!("http://[::ffff:127.0.0.1]:{other}/stolen"),
        format!("http://127.0.0.1:{port}\t@127.0.0.1:{other}/stolen"),
    ];
    let served = forms.clone();
    api.set(move |asked: &Asked| {
        let n: usize = asked.path.trim_start_matches("/f").parse().unwrap_or(0);
        page(json!({"results": [], "next": served.get(n)}))
    });
    let mut tables = String::from(ARCHIVE);
    for n in 0..forms.len() {
        tables.push_str(&format!(
            "[ingest.poll.f{n}]\nurl = \"{}/f{n}\"\nrecords = \"/results\"\nnext = \"/next\"\ninterval = \"200ms\"\nauth = \"bearer\"\nsecret = \"{TOKEN}\"\n",
            api.base()
        ));
    }
    let sources = Sources::start(Home::with_plugins(&["file"]), &tables).await;
    for (n, form) in forms.iter().enumerate() {
        let status = sources
            .until(&format!("poll.f{n}"), |s| s.state == "failing")
            .await;
        let error = status.error.unwrap();
        assert!(error.contains("not followed"), "{form:?}: {error}");
        assert_eq!(leaked_form(&error, TOKEN), None, "{error}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(elsewhere.hits(), 0, "a request went to the other server");
    let strays: Vec<String> = api
        .asked()
        .iter()
        .filter(|a| !a.path.starts_with("/f"))
        .map(|a| a.path.clone())
        .collect();
    assert_eq!(strays, Vec::<String>::new(), "a link was followed");
    sources.stop().await;
}

/// A cursor file edited by hand to point elsewhere is checked, not
/// followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_edited_to_a_foreign_url_is_not_followed() {
    let elsewhere = HitCounter::start().await;
    let api = Api::start(|_: &Asked| page(json!({"results": []}))).await;
    let url = format!("{}/events", api.base());
    let home = Home::with_plugins(&["file", "json-map"]);
    let dir = home.join("data/sources/edited");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("cursor.json"),
        // As the poller writes it (the same url and paging), but pointing
        // elsewhere.
        json!({
            "version": 1, "url": url, "paging": "records=\"/results\" next=/next",
            "next": format!("http://127.0.0.1:{}/steal", elsewhere.addr.port())
        })
        .to_string(),
    )
    .unwrap();
    let sources = Sources::start(
        home,
        &format!(
            "{ARCHIVE}{}",
            poller(
                "edited",
                &url,
                &format!("records = \"/results\"\nnext = \"/next\"\nauth = \"bearer\"\nsecret = \"{TOKEN}\"")
            )
        ),
    )
    .await;
    let status = sources.until("poll.edited", |s| s.state == "failing").await;
    assert!(error_has(&status, "not followed"), "{status:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(elsewhere.hits(), 0);
    sources.stop().await;
}

/// Some APIs put the access token in their next links (Facebook's Graph
/// API does, in the body; here in a `Link` header). The page is masked,
/// but the `Link` header is not: the token is written, in clear, into
/// `cursor.json` (guarantee 2: never in the cursor file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_in_a_link_header_is_not_written_to_the_cursor() {
    let api = Api::start(|asked: &Asked| {
        let mut response = if asked.query.contains_key("page") {
            page(json!([record(1)]))
        } else {
            page(json!([record(0)]))
        };
        if !asked.query.contains_key("page") {
            let link = format!("</events?page=2&access_token={TOKEN}>; rel=\"next\"");
            response
                .headers_mut()
                .insert(header::LINK, link.parse().unwrap());
        }
        response
    })
    .await;
    let sources = polling(&poller(
        "graph",
        &format!("{}/events", api.base()),
        &format!("next = \"link-header\"\nauth = \"bearer\"\nsecret = \"{TOKEN}\""),
    ))
    .await;
    sources.until("poll.graph", |s| s.spooled_events == 2).await;
    let home = sources.stop().await;
    for (path, text) in files_under(home.path()) {
        assert_eq!(
            leaked_form(&text, TOKEN),
            None,
            "the token is in {}: {}",
            path.display(),
            auditrelay_tests::excerpt(&text, 300)
        );
    }
}

/// A record that holds the credential (a "token created" event) is masked
/// in the page's *text* before it is parsed. An API that escapes some
/// characters in its JSON — Go's encoding/json writes `&`, `<`, `>` as
/// `\u0026`…, PHP writes `/` as `\/` — hides the secret from the text
/// mask; parsed, the record holds it in clear, and it is spooled and
/// exported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_escaped_token_in_a_record_is_masked() {
    const SECRET: &str = "k9&Qz4<Lm2>Xr7&Pw5<Nt8>Ys3&Jd";
    let api = Api::start(|_: &Asked| {
        let mut r = record(0);
        r["data"] = json!({"issued": {"name": "ci", "value": SECRET}});
        // As Go's encoding/json writes it.
        let text = serde_json::to_string(&json!({ "results": [r] }))
            .unwrap()
            .replace('&', "\\u0026")
            .replace('<', "\\u003c")
            .replace('>', "\\u003e");
        ([(header::CONTENT_TYPE, "application/json")], text).into_response()
    })
    .await;
    let sources = polling(&poller(
        "goapi",
        &format!("{}/events", api.base()),
        &format!(
            "records = \"/results\"\nnext = \"/next\"\nauth = \"bearer\"\nsecret = \"{SECRET}\""
        ),
    ))
    .await;
    sources.until("poll.goapi", |s| s.spooled_events == 1).await;
    // Read as JSON: an exporter that escapes `&` itself would hide it from a
    // text search, not from whoever reads the event.
    let stored = sources.stored().await;
    let text = serde_json::to_string(&stored).unwrap();
    assert_eq!(
        leaked_form(&text, SECRET),
        None,
        "the secret is in the exported event: {}",
        auditrelay_tests::excerpt(&text, 400)
    );
    for (path, text) in files_under(sources.home.path()) {
        if path.ends_with("relay.toml") {
            continue;
        }
        assert_eq!(
            leaked_form(&text, SECRET),
            None,
            "the secret is in {}",
            path.display()
        );
    }
    sources.stop().await;
}

/// Basic auth echoed back (an error page quoting the request's
/// `Authorization`): the base64 of `user:password` is masked, as is the
/// password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echoed_basic_authorization_is_masked() {
    use base64::Engine;
    const PASSWORD: &str = "pw-Zx81Qm4Lr09Kt-basic";
    let api = Api::start(|asked: &Asked| {
        let auth = asked
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("upstream failed; request had Authorization: {auth}"),
        )
            .into_response()
    })
    .await;
    let sources = polling(&poller(
        "basic",
        &format!("{}/events", api.base()),
        &format!(
            "records = \"/results\"\nnext = \"/next\"\nauth = \"basic\"\nusername = \"svc-audit\"\nsecret = \"{PASSWORD}\""
        ),
    ))
    .await;
    let status = sources.until("poll.basic", |s| s.state == "failing").await;
    let error = status.error.clone().unwrap();
    assert!(error.contains("500"), "{error}");
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("svc-audit:{PASSWORD}"));
    assert!(
        !error.contains(&pair),
        "the Authorization header is in the status: {error}"
    );
    // Whatever base64 is left in it must not decode to the password.
    for word in error.split(|c: char| !(c.is_ascii_alphanumeric() || "+/=".contains(c))) {
        if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(word) {
            assert!(
                !String::from_utf8_lossy(&bytes).contains(&PASSWORD[..8]),
                "{word} decodes to the password: {error}"
            );
        }
    }
    assert_eq!(leaked_form(&error, PASSWORD), None, "{error}");
    sources.stop().await;
}

/// `headers` values are "treated as secrets" and masked out of every
/// page — but the docs' own example is `Accept = "application/vnd.github+json"`,
/// and GitHub wants `X-GitHub-Api-Version = "2022-11-28"`. Any run of a
/// few of their characters in a record is masked: every date in the 20s
/// of November loses its `-11-2`, every "application/…" its "application".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_header_values_do_not_corrupt_records() {
    let served: Vec<Value> = (0..3)
        .map(|n| {
            let mut r = record(n);
            r["time"] = json!(format!("2026-11-28T10:00:0{n}Z"));
            r["data"] =
                json!({"content_type": "application/json", "note": "api version 2022-11-28"});
            r
        })
        .collect();
    let body = served.clone();
    let api = Api::start(move |_: &Asked| page(json!(body))).await;
    let sources = polling(&poller(
        "github",
        &format!("{}/orgs/acme/audit-log", api.base()),
        "next = \"link-header\"\nauth = \"bearer\"\nsecret = \"ghp_Xq83LmZx21PwKs94Hn7\"\n\
         headers = { Accept = \"application/vnd.github+json\", \"X-GitHub-Api-Version\" = \"2022-11-28\" }",
    ))
    .await;
    let status = within(&sources, "poll.github", Duration::from_secs(10), |s| {
        s.spooled_events + s.refused_records >= 3 || s.state == "failing"
    })
    .await;
    let stored = sources.stored().await;
    let refused = sources.refused("github");
    assert!(
        status.spooled_events == 3 && refused.is_empty(),
        "{status:?}\nrefused: {:?}",
        refused.iter().map(|r| &r["reason"]).collect::<Vec<_>>()
    );
    for (event, record) in stored.iter().zip(&served) {
        assert_eq!(event["payload"], record["data"], "{event}");
    }
    sources.stop().await;
}

/// A header value that is a word of JSON (`true`, a number) is masked out
/// of the page's text before it is parsed: the page is no longer JSON and
/// the poller is stuck on it for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_value_that_is_a_json_word_does_not_break_pages() {
    let api = Api::start(|_: &Asked| {
        page(json!({"results": [record(0)], "has_more": true, "next": null}))
    })
    .await;
    let sources = polling(&poller(
        "flags",
        &format!("{}/events", api.base()),
        "records = \"/results\"\nnext = \"/next\"\nheaders = { \"X-Api-Key\" = \"key-Rw73Hs02Ma\", \"X-Include-Archived\" = \"true\" }",
    ))
    .await;
    let status = within(&sources, "poll.flags", Duration::from_secs(10), |s| {
        s.spooled_events == 1 || s.state == "failing"
    })
    .await;
    assert!(
        status.spooled_events == 1 && status.error.is_none(),
        "a valid page was not stored: {status:?}"
    );
    sources.stop().await;
}

// ---------------------------------------------------------------------
// (3) Bad behaviour: a clear error, retried with backoff, bounded
// ---------------------------------------------------------------------

/// `429` with `Retry-After: 30`: the docs promise the next try comes
/// "when the API's Retry-After says"; the backoff caps it at
/// max(interval, 1 s), hammering a rate-limited API (and risking the
/// token's ban) once a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let api = Api::start(|_: &Asked| {
        (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "30")],
            "slow down",
        )
            .into_response()
    })
    .await;
    let sources = polling(&poller(
        "limited",
        &format!("{}/events", api.base()),
        "records = \"/results\"\nnext = \"/next\"",
    ))
    .await;
    let status = sources
        .until("poll.limited", |s| s.state == "failing")
        .await;
    assert!(error_has(&status, "429"), "{status:?}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        api.hits(),
        1,
        "asked to wait 30 s, the poller asked again {} times in 4 s",
        api.hits() - 1
    );
    sources.stop().await;
}

/// Two pages linking to each other: each poll reads them in turn until
/// `max_pages`, storing copies, forever, with the status saying all is
/// well. A link back to a page already read in this poll is a cycle, and
/// should be reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_link_cycle_is_reported() {
    let api = Api::start(|asked: &Asked| {
        if asked.path == "/b" {
            page(json!({"results": [record(1)], "next": "/a"}))
        } else {
            page(json!({"results": [record(0)], "next": "/b"}))
        }
    })
    .await;
    let sources = polling(&poller(
        "cycle",
        &format!("{}/a", api.base()),
        "records = \"/results\"\nnext = \"/next\"",
    ))
    .await;
    let status = within(&sources, "poll.cycle", Duration::from_secs(5), |s| {
        s.error.is_some()
    })
    .await;
    assert!(
        status.error.is_some(),
        "A -> B -> A: {} requests in 5 s and no error: {status:?}",
        api.hits()
    );
    sources.stop().await;
}

/// A server that trickles its answer (a byte every 100 ms, never done) is
/// cut off at `timeout` — the timeout is the whole request's — with a
/// clear error, and the poller goes on once the API answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_answer_is_cut_off_at_the_timeout() {
    let api = Api::start(|_: &Asked| {
        streamed(|tx| {
            tokio::spawn(async move {
                let _ = tx.send(Ok(b"{\"results\": [".to_vec())).await;
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if tx.send(Ok(b" ".to_vec())).await.is_err() {
                        return;
                    }
                }
            })
        })
    })
    .await;
    let sources = polling(&poller(
        "trickle",
        &format!("{}/events", api.base()),
        "records = \"/results\"\nnext = \"/next\"\ntimeout = \"1s\"",
    ))
    .await;
    let status = sources
        .until("poll.trickle", |s| s.state == "failing")
        .await;
    let error = status.error.unwrap();
    assert!(error.to_lowercase().contains("timed out"), "{error}");
    api.set(|_: &Asked| page(json!({"results": [record(0)]})));
    sources
        .until("poll.trickle", |s| {
            s.state == "reading" && s.spooled_events == 1
        })
        .await;
    sources.stop().await;
}

/// An endless chunked answer (no `Content-Length`) stops at
/// `max_page_bytes`, with an error saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_chunked_answer_stops_at_max_page_bytes() {
    let api = Api::start(|_: &Asked| {
        streamed(|tx| {
            tokio::spawn(async move {
                let _ = tx.send(Ok(b"{\"results\": [".to_vec())).await;
                let chunk = format!("{},", record(0)).repeat(64).into_bytes();
                while tx.send(Ok(chunk.clone())).await.is_ok() {}
            })
        })
    })
    .await;
    let sources = polling(&poller(
        "endless",
        &format!("{}/events", api.base()),
        "records = \"/results\"\nnext = \"/next\"\nmax_page_bytes = \"64KiB\"",
    ))
    .await;
    let status = sources
        .until("poll.endless", |s| s.state == "failing")
        .await;
    assert!(
        error_has(&status, "larger than max_page_bytes"),
        "{status:?}"
    );
    sources.stop().await;
}

/// Pages of every bad shape, one after another: a JSON bomb (deep
/// nesting), `records` pointing at a string, an HTML `200`, a `401`,
/// records that are not objects (no cursor field in any), a cursor field
/// that is a number in one record and a string in the next. Each is a
/// clear error in the status, none panics, and a good page afterwards is
/// stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_page_shape_is_a_clear_error() {
    let shape = Arc::new(Mutex::new(0usize));
    let current = shape.clone();
    let api = Api::start(move |asked: &Asked| match *current.lock().unwrap() {
        0 => {
            let depth = 100_000;
            let text = format!(
                "{{\"results\": [{}{}]}}",
                "[".repeat(depth),
                "]".repeat(depth)
            );
            ([(header::CONTENT_TYPE, "application/json")], text).into_response()
        }
        1 => page(json!({"results": "none today"})),
        2 => (
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body>Sign in</body></html>",
        )
            .into_response(),
        3 => (
            StatusCode::UNAUTHORIZED,
            page(json!({"detail": "Invalid token."})),
        )
            .into_response(),
        4 => page(json!({"results": [1, "two", null, [3], true]})),
        5 => {
            let mut b = record(1);
            b["seq"] = json!("1");
            page(json!({"results": [record(0), b]}))
        }
        // A good page at last, honouring the cursor as a keyset API does.
        _ => {
            let from = asked
                .query
                .get("seq__gte")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            page(json!({"results": records(from.clamp(2, 4)..4)}))
        }
    })
    .await;
    let sources = polling(&format!(
        "{}{}",
        poller(
            "shapes",
            &format!("{}/events", api.base()),
            "records = \"/results\"\nmax_page_bytes = \"1MiB\""
        ),
        field_cursor("shapes", "seq", "seq__gte")
    ))
    .await;
    let expected = [
        "not JSON",
        "is a string, not an array",
        "not JSON",
        "check auth",
        "no record has /seq",
        "a number in one record and a string",
    ];
    for (n, text) in expected.iter().enumerate() {
        *shape.lock().unwrap() = n;
        let hits = api.hits();
        api.until_hits(hits + 2).await;
        let status = sources.until("poll.shapes", |s| error_has(s, text)).await;
        assert_eq!(status.state, "failing");
    }
    *shape.lock().unwrap() = 99;
    sources
        .until("poll.shapes", |s| s.state == "reading" && s.error.is_none())
        .await;
    let ids: HashSet<String> = stored_ids(&sources).await.into_iter().collect();
    assert!(ids.contains("evt-000003"), "{ids:?}");
    sources.stop().await;
}

/// Refused records filling `max_refused_bytes`: the poller stops where it
/// is, saying why; once the file is moved away it goes on, and every
/// record is either spooled or kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_records_past_max_refused_bytes_stop_the_poller_clearly() {
    // No actor: json-map refuses every one.
    let store: Vec<Value> = (0..20)
        .map(|n| {
            let mut r = record(n);
            r.as_object_mut().unwrap().remove("actor");
            r["data"] = json!({"pad": "x".repeat(400)});
            r
        })
        .collect();
    let api = Api::start(keyset(Arc::new(Mutex::new(store)), 5)).await;
    let sources = polling(&format!(
        "{}{}",
        poller(
            "full",
            &format!("{}/events", api.base()),
            "records = \"/results\"\nmax_refused_bytes = \"4KiB\""
        ),
        field_cursor("full", "seq", "seq__gte")
    ))
    .await;
    let status = sources.until("poll.full", |s| s.state == "failing").await;
    assert!(
        error_has(&status, "refused.ndjson"),
        "the error does not say where: {status:?}"
    );
    // 4 KiB holds a few records: move the file away each time it fills.
    let dir = sources.home.join("data/sources/full");
    let mut moved = 0;
    loop {
        let status = within(&sources, "poll.full", Duration::from_secs(15), |s| {
            error_has(s, "max_refused_bytes") || s.refused_records >= 20
        })
        .await;
        if status.refused_records >= 20 {
            break;
        }
        assert!(moved < 20, "the poller never got through: {status:?}");
        std::fs::rename(
            dir.join("refused.ndjson"),
            dir.join(format!("refused.ndjson.{moved}")),
        )
        .unwrap();
        moved += 1;
        let before = status.refused_records;
        let status = within(&sources, "poll.full", Duration::from_secs(15), |s| {
            s.refused_records > before
        })
        .await;
        assert!(
            status.refused_records > before,
            "the file was moved away, yet: {status:?}"
        );
    }
    let kept: HashSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("refused.ndjson")
        })
        .flat_map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap()
                .lines()
                .map(|l| {
                    let line: Value = serde_json::from_str(l).unwrap();
                    let data: Value = serde_json::from_str(line["data"].as_str().unwrap()).unwrap();
                    data["id"].as_str().unwrap().to_owned()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        kept.len(),
        20,
        "every refused record is kept once the files are moved ({moved} moves)"
    );
    sources.stop().await;
}

/// Stopping the relay while a request hangs (headers sent, the body never
/// done): nothing of the page is stored yet, so there is nothing to
/// finish, but the stop waits for the request's `timeout` (up to 10 min)
/// — and so does `auditrelay run`'s shutdown (it awaits every poller
/// before `shutdown_timeout` even starts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_does_not_wait_for_a_hung_request() {
    let api = Api::start(|_: &Asked| {
        streamed(|tx| {
            tokio::spawn(async move {
                let _ = tx.send(Ok(b"{\"results\": [".to_vec())).await;
                tokio::time::sleep(Duration::from_secs(3600)).await;
                drop(tx);
            })
        })
    })
    .await;
    let sources = polling(&poller(
        "hung",
        &format!("{}/events", api.base()),
        "records = \"/results\"\nnext = \"/next\"\ntimeout = \"10m\"",
    ))
    .await;
    api.until_hits(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let stopped = tokio::time::timeout(Duration::from_secs(30), sources.stop()).await;
    assert!(
        stopped.is_ok(),
        "stop() had not returned after {:?}: it waits for the hung request's 10 min timeout",
        started.elapsed()
    );
}
