//! Runs the audited service on 127.0.0.1:3000 with an embedded relay that
//! reads its outbox (SQLite, in a temporary directory) and writes events
//! where the relay's embedded default does (`auditrelay-data/events`).
//!
//! ```text
//! scripts/build-plugins
//! cargo run -p auditrelay-example-axum-audit
//! curl -X POST -H 'x-user: u-1' -H 'content-type: application/json' \
//!      -d '{"id":"g1","name":"Payments on-call"}' http://127.0.0.1:3000/groups
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use auditrelay::config::{OnSpooled, OutboxSettings, Secret};
use auditrelay::outbox::OutboxIngest;
use auditrelay::{Config, Relay};
use auditrelay_example_axum_audit::{App, audit_layer};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("app.db").display());
    let db = sqlx::SqlitePool::connect(&format!("{url}?mode=rwc")).await?;
    let app = App::new(db).await?;

    let mut config = Config::embedded_default();
    config.ingest.http.enabled = false;
    let outbox = OutboxSettings {
        enabled: true,
        url: Secret::new(url),
        table: auditrelay::outbox::DEFAULT_TABLE.into(),
        batch: 500,
        poll_interval: Duration::from_millis(20),
        on_spooled: OnSpooled::Delete,
    };
    let relay = Relay::start(config).await?;
    let stop = CancellationToken::new();
    let reader = tokio::spawn(OutboxIngest::new(relay.clone(), "app", &outbox)?.run(stop.clone()));

    let router = app.router(audit_layer("groups-api").emit_to(relay.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://127.0.0.1:3000 (Ctrl-C stops)");
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    stop.cancel();
    reader.await?;
    relay.shutdown().await;
    Ok(())
}
