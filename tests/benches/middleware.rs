//! What the request-auditing middleware adds to a request, in one run:
//! the same axum router (one `POST /groups/{id}/members` route whose
//! handler does nothing) called in process, without the layer, with it
//! (emitting each event to a relay with the WASM blackhole), and with body
//! capture too. Per request: p50 and p99 wall time, and the p50 added.
//!
//! `cargo bench -p auditrelay-tests --bench middleware` (after
//! `scripts/build-plugins`; `scripts/bench middleware` does it).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use auditrelay::Relay;
use auditrelay::envelope::Actor;
use auditrelay::middleware::AuditLayer;
use auditrelay_tests::Home;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::routing::post;
use tower::ServiceExt;

/// Requests per round.
const REQUESTS: usize = 20_000;
/// Alternating rounds; the median round is reported.
const ROUNDS: usize = 5;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let home = Home::with_plugins(&["blackhole"]);
        let config = home.config("[ingest.http]\nenabled = false\n[plugins.blackhole]\n");
        let relay = Relay::start(config).await.unwrap();
        let layer = || {
            AuditLayer::new("bench-api")
                .emit_to(relay.clone())
                .actor(|request| {
                    let user = request.headers().get("x-user")?.to_str().ok()?;
                    Some(Actor::user(user))
                })
                .trust_proxies(["10.0.0.0/8"])
                .unwrap()
        };
        let routes = || Router::new().route("/groups/{id}/members", post(|| async { "added" }));
        let ways = [
            ("without the layer", routes()),
            ("with the layer", routes().route_layer(layer())),
            ("with body capture (4 KiB)", routes().route_layer(layer().capture_bodies(4096))),
        ];
        let mut rounds: Vec<Vec<(Duration, Duration)>> = vec![Vec::new(); ways.len()];
        for _ in 0..ROUNDS {
            for (i, (_, router)) in ways.iter().enumerate() {
                rounds[i].push(run(router.clone()).await);
            }
        }
        println!("audit middleware: {REQUESTS} requests per round, median of {ROUNDS} rounds, in process (no network)\n");
        println!("{:<28} {:>10} {:>10} {:>14}", "router", "p50", "p99", "p50 added");
        let median = |mut r: Vec<(Duration, Duration)>| {
            r.sort();
            r[r.len() / 2]
        };
        let base = median(rounds[0].clone()).0;
        for (i, (label, _)) in ways.iter().enumerate() {
            let (p50, p99) = median(rounds[i].clone());
            println!(
                "{label:<28} {:>7.2} µs {:>7.2} µs {:>11.2} µs",
                p50.as_secs_f64() * 1e6,
                p99.as_secs_f64() * 1e6,
                (p50.as_secs_f64() - base.as_secs_f64()) * 1e6
            );
        }
        relay.shutdown().await;
    });
}

/// One round: p50 and p99 per request.
async fn run(router: Router) -> (Duration, Duration) {
    let peer: SocketAddr = "203.0.113.9:40000".parse().unwrap();
    let mut times = Vec::with_capacity(REQUESTS);
    for n in 0..REQUESTS {
        let mut request = Request::post(format!("/groups/g{}/members", n % 13))
            .header("x-user", "u-1")
            .header("user-agent", "bench/1.0")
            .header("content-type", "application/json")
            .body(Body::from(r#"{"member":"u-7"}"#))
            .unwrap();
        request.extensions_mut().insert(ConnectInfo(peer));
        let started = Instant::now();
        let response = router.clone().oneshot(request).await.unwrap();
        times.push(started.elapsed());
        assert!(response.status().is_success());
    }
    times.sort();
    (times[REQUESTS / 2], times[REQUESTS * 99 / 100])
}
