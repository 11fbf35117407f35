//! The request-auditing middleware on the axum example
//! (`examples/axum-audit`), served on a real socket with an embedded relay
//! reading the example's SQLite outbox and delivering to the file plugin:
//! what counts is what the file holds.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use auditrelay::Relay;
use auditrelay::middleware::AuditLayer;
use auditrelay::outbox::OutboxIngest;
use auditrelay_example_axum_audit::{App, audit_layer};
use auditrelay_tests::{Home, ndjson_values};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The example served with an embedded relay.
struct Service {
    base: String,
    events: PathBuf,
    client: reqwest::Client,
    relay: Relay,
    stop: CancellationToken,
    _home: Home,
}

impl Service {
    /// Serves the example; `layer` adjusts its audit layer.
    async fn start(layer: impl FnOnce(AuditLayer) -> AuditLayer) -> Service {
        let home = Home::with_plugins(&["file"]);
        let url = format!("sqlite://{}", home.join("app.db").display());
        let db = sqlx::SqlitePool::connect(&format!("{url}?mode=rwc"))
            .await
            .unwrap();
        let app = App::new(db).await.unwrap();
        let config = home.config(&format!(
            "[ingest.http]\nenabled = false\n[ingest.outbox.app]\nurl = \"{url}\"\npoll_interval = \"10ms\"\n\
             [plugins.file]\ngrant_dir = \"{{home}}/events\"\n[plugins.file.config]\nfsync = false\n[plugins.file.batch]\nmax_wait = \"5ms\"\n"
        ));
        let relay = Relay::start(config.clone()).await.unwrap();
        let stop = CancellationToken::new();
        let reader = OutboxIngest::new(relay.clone(), "app", &config.ingest.outbox["app"]).unwrap();
        tokio::spawn(reader.run(stop.clone()));
        let router = app.router(layer(audit_layer("groups-api").emit_to(relay.clone())));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = stop.clone();
        tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(server.cancelled_owned())
            .await
            .unwrap();
        });
        Service {
            base,
            events: home.join("events"),
            client: reqwest::Client::new(),
            relay,
            stop,
            _home: home,
        }
    }

    /// A request as user `u-1`; its status.
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> u16 {
        let mut request = self
            .client
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .header("x-user", "u-1");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap().status().as_u16()
    }

    /// The events delivered, once `count` have arrived and nothing more
    /// came for a moment (so that "nothing else" can be asserted).
    async fn events(&self, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let events = ndjson_values(&self.events);
            if events.len() >= count || Instant::now() >= deadline {
                // Settle: anything still on its way arrives meanwhile.
                tokio::time::sleep(Duration::from_millis(300)).await;
                return ndjson_values(&self.events);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.relay.shutdown().await;
    }
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_recorded_with_who_what_and_how_it_ended() {
    let service = Service::start(|layer| layer).await;
    let group = json!({"id": "g1", "name": "Payments on-call"});
    assert_eq!(
        service
            .send(
                "POST",
                "/groups",
                Some(group.clone()),
                &[("x-request-id", "req-7")]
            )
            .await,
        201
    );
    assert_eq!(
        service
            .send(
                "POST",
                "/groups/g1/members",
                Some(json!({"member": "u-7"})),
                &[]
            )
            .await,
        201
    );
    // Already a member: refused, recorded as a failure after the response.
    assert_eq!(
        service
            .send(
                "POST",
                "/groups/g1/members",
                Some(json!({"member": "u-7"})),
                &[]
            )
            .await,
        409
    );
    // A handler that fails.
    assert_eq!(
        service.send("POST", "/groups/g1/archive", None, &[]).await,
        500
    );
    let events = service.events(4).await;
    assert_eq!(events.len(), 4, "{events:#?}");

    let created = of_type(&events, "group.create");
    assert_eq!(created.len(), 1, "{events:#?}");
    let created = created[0];
    assert_eq!(created["source"], "groups-api");
    assert_eq!(created["tenant"], "acme");
    assert_eq!(created["actor"]["id"], "u-1");
    assert_eq!(created["actor"]["ip"], "127.0.0.1");
    assert_eq!(created["action"]["outcome"], "success");
    assert_eq!(created["target"]["id"], "g1");
    assert_eq!(created["request_id"], "req-7");
    assert_eq!(created["metadata"]["route"], "POST /groups");

    let added = of_type(&events, "group.member.create");
    assert_eq!(added.len(), 2, "{events:#?}");
    let outcomes: Vec<_> = added
        .iter()
        .map(|e| e["action"]["outcome"].clone())
        .collect();
    assert!(
        outcomes.contains(&json!("success")) && outcomes.contains(&json!("failure")),
        "{added:#?}"
    );
    let refused = added
        .iter()
        .find(|e| e["action"]["outcome"] == "failure")
        .unwrap();
    assert_eq!(refused["action"]["status_code"], 409);
    assert_eq!(refused["metadata"]["route"], "POST /groups/{id}/members");

    let failed = of_type(&events, "group.archive.create");
    assert_eq!(failed.len(), 1, "{events:#?}");
    assert_eq!(failed[0]["action"]["outcome"], "failure");
    assert_eq!(failed[0]["action"]["status_code"], 500);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_transaction_records_nothing() {
    let service = Service::start(|layer| layer).await;
    assert_eq!(
        service
            .send(
                "POST",
                "/groups",
                Some(json!({"id": "g1", "name": "A"})),
                &[]
            )
            .await,
        201
    );
    assert_eq!(
        service.send("POST", "/groups/g1/rename", None, &[]).await,
        409
    );
    let events = service.events(1).await;
    let types: Vec<_> = events.iter().map(|e| e["type"].clone()).collect();
    assert_eq!(
        types,
        [json!("group.create")],
        "the rolled-back rename left an event"
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_health_checks_are_not_recorded_but_exports_are() {
    let service = Service::start(|layer| layer).await;
    assert_eq!(service.send("GET", "/health", None, &[]).await, 200);
    assert_eq!(service.send("GET", "/groups", None, &[]).await, 200);
    assert_eq!(
        service.send("GET", "/groups/g1/export", None, &[]).await,
        200
    );
    let events = service.events(1).await;
    let types: Vec<_> = events.iter().map(|e| e["type"].clone()).collect();
    assert_eq!(types, [json!("group.export.read")], "{events:#?}");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_address_is_believed_only_from_a_trusted_proxy() {
    // 127.0.0.1 is not in the example's trusted 10.0.0.0/8: a client
    // claiming to be forwarded is recorded as itself.
    let spoofed = [("x-forwarded-for", "6.6.6.6"), ("forwarded", "for=6.6.6.6")];
    let service = Service::start(|layer| layer).await;
    service
        .send("POST", "/groups/g1/archive", None, &spoofed)
        .await;
    let events = service.events(1).await;
    assert_eq!(events[0]["actor"]["ip"], "127.0.0.1", "{events:#?}");
    service.stop().await;

    // Trusted, the proxy's header names the client — the nearest entry
    // that is not itself a trusted proxy, not what the client claimed.
    let service =
        Service::start(|layer| layer.trust_proxies(["127.0.0.1", "10.0.0.0/8"]).unwrap()).await;
    let chain = [("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.2.3")];
    service
        .send("POST", "/groups/g1/archive", None, &chain)
        .await;
    let events = service.events(1).await;
    assert_eq!(events[0]["actor"]["ip"], "198.51.100.7", "{events:#?}");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_captured_up_to_the_limit_and_the_handler_still_reads_them() {
    let service = Service::start(|layer| layer.capture_bodies(64)).await;
    // A failure, recorded after the response: request and response.
    assert_eq!(
        service
            .send(
                "POST",
                "/groups/g1/archive",
                Some(json!({"why": "done"})),
                &[]
            )
            .await,
        500
    );
    let long = "x".repeat(200);
    assert_eq!(
        service
            .send(
                "POST",
                "/groups/g2/archive",
                Some(json!({"why": long})),
                &[]
            )
            .await,
        500
    );
    let events = service.events(2).await;
    let first = events
        .iter()
        .find(|e| e["target"].is_null() && e["payload"]["request_body"]["why"] == "done");
    assert!(first.is_some(), "{events:#?}");
    let first = first.unwrap();
    assert_eq!(first["payload"]["response_body"], "archiving g1 failed");
    let second = events
        .iter()
        .find(|e| e["payload"]["request_body"]["not_captured"].is_string())
        .unwrap_or_else(|| panic!("{events:#?}"));
    assert!(
        second["payload"]["request_body"]["not_captured"]
            .as_str()
            .unwrap()
            .contains("over the capture limit of 64"),
        "{second:#?}"
    );
    // The handler reads the captured body as sent (the group is created),
    // and an event written through the outbox carries it too.
    assert_eq!(
        service
            .send(
                "POST",
                "/groups",
                Some(json!({"id": "g3", "name": "C"})),
                &[]
            )
            .await,
        201
    );
    let events = service.events(3).await;
    let created = of_type(&events, "group.create");
    assert_eq!(created.len(), 1, "{events:#?}");
    assert_eq!(created[0]["payload"]["request_body"]["id"], "g3");
    service.stop().await;
}

// Defects an outside review found, each fixed since.

/// Most proxies (nginx's `$proxy_add_x_forwarded_for`, AWS ALB, HAProxy
/// `option forwardfor`) append to `X-Forwarded-For` and pass a client's
/// `Forwarded` header through untouched. The layer prefers `Forwarded`
/// whenever it is present, so the client picks its own address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_forwarded_header_does_not_override_the_proxys_x_forwarded_for() {
    let service = Service::start(|layer| layer.trust_proxies(["127.0.0.1"]).unwrap()).await;
    // Through the trusted proxy (127.0.0.1): the client sent `Forwarded`,
    // the proxy appended the client's real address to X-Forwarded-For.
    let through_proxy = [
        ("forwarded", "for=6.6.6.6"),
        ("x-forwarded-for", "198.51.100.7"),
    ];
    service
        .send("POST", "/groups/g1/archive", None, &through_proxy)
        .await;
    let events = service.events(1).await;
    assert_eq!(
        events[0]["actor"]["ip"], "198.51.100.7",
        "the client chose its own recorded address"
    );
    service.stop().await;
}

/// One non-ASCII byte the client puts in its own X-Forwarded-For (the
/// proxy appends ", <client>" on the same line) makes the whole line
/// unreadable as `str`: the real address is dropped and the proxy's own
/// address is recorded as the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_byte_does_not_erase_the_clients_address() {
    let service = Service::start(|layer| layer.trust_proxies(["127.0.0.1"]).unwrap()).await;
    let value = reqwest::header::HeaderValue::from_bytes(b"6.6.6.6\xff, 198.51.100.7").unwrap();
    let status = service
        .client
        .post(format!("{}/groups/g1/archive", service.base))
        .header("x-user", "u-1")
        .header("x-forwarded-for", value)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 500);
    let events = service.events(1).await;
    assert_eq!(events[0]["actor"]["ip"], "198.51.100.7", "{events:#?}");
    service.stop().await;
}

/// A client's User-Agent over 1024 bytes makes the event invalid: after
/// the response it is dropped (logged only), so the request goes
/// unaudited; through the outbox the handler's write fails and the
/// change itself is refused with a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_user_agent_neither_hides_the_request_nor_fails_it() {
    let service = Service::start(|layer| layer).await;
    let agent = "Mozilla/5.0 ".repeat(100); // 1200 bytes
    let headers = [("user-agent", agent.as_str())];
    let created = service
        .send(
            "POST",
            "/groups",
            Some(json!({"id": "g1", "name": "A"})),
            &headers,
        )
        .await;
    let archived = service
        .send("POST", "/groups/g1/archive", None, &headers)
        .await;
    let events = service.events(2).await;
    // The outbox path and the after-response path arrive in either order.
    let mut types: Vec<String> = events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    types.sort();
    assert_eq!(
        (created, archived, types),
        (
            201,
            500,
            vec!["group.archive.create".to_owned(), "group.create".to_owned()]
        ),
        "(create status, archive status, events recorded)"
    );
    service.stop().await;
}

/// With body capture, a request body nested deeper than 32 levels makes
/// the whole event invalid: the request is not audited at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deeply_nested_body_does_not_hide_the_request() {
    let service = Service::start(|layer| layer.capture_bodies(4096)).await;
    let mut deep = json!(1);
    for _ in 0..40 {
        deep = json!([deep]);
    }
    let status = service
        .send("POST", "/groups/g1/archive", Some(deep), &[])
        .await;
    assert_eq!(status, 500);
    let events = service.events(1).await;
    assert_eq!(events.len(), 1, "the request left no audit event");
    service.stop().await;
}

/// A route names its own action; paths excluded by prefix are not
/// recorded, whatever their method.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_can_name_its_own_action_and_paths_can_be_excluded() {
    let service = Service::start(|layer| {
        layer
            .action(
                axum::http::Method::POST,
                "/groups/{id}/archive",
                "group.archived",
            )
            .exclude(["/groups/g2"])
    })
    .await;
    assert_eq!(
        service.send("POST", "/groups/g1/archive", None, &[]).await,
        500
    );
    assert_eq!(
        service.send("POST", "/groups/g2/archive", None, &[]).await,
        500
    );
    // A prefix ends at a segment boundary: /groups/g20 is not under /groups/g2.
    assert_eq!(
        service.send("POST", "/groups/g20/archive", None, &[]).await,
        500
    );
    let events = service.events(2).await;
    let routes: Vec<_> = events.iter().map(|e| e["type"].clone()).collect();
    assert_eq!(
        routes,
        [json!("group.archived"), json!("group.archived")],
        "{events:#?}"
    );
    assert_eq!(events[0]["action"]["name"], "group.archived");
    service.stop().await;
}
