//! An application that records audit events the way auditrelay expects:
//! **in its own database transaction**, through the outbox. The event row
//! commits or rolls back with the change it describes, so the audit trail
//! holds an event exactly when the change happened — even if the process
//! dies right after `COMMIT`. The relay (embedded here; usually its own
//! process, `[ingest.outbox.<name>]`) spools committed rows and deletes
//! them once they are durable.
//!
//! ```text
//! scripts/build-plugins
//! cargo run -p auditrelay-example-emit-after-commit                    # SQLite, in a temporary directory
//! cargo run -p auditrelay-example-emit-after-commit -- --postgres postgres://user:pw@127.0.0.1/app
//! cargo run -p auditrelay-example-emit-after-commit -- --config examples/relay.toml
//! ```

use std::time::Duration;

use anyhow::Context;
use auditrelay::config::{OnSpooled, OutboxSettings, Secret};
use auditrelay::envelope::{Actor, AuditEventEnvelope, Outcome, Target};
use auditrelay::outbox::{Dialect, Outbox, OutboxIngest};
use auditrelay::{Config, Relay};
use sqlx::Connection;
use tokio_util::sync::CancellationToken;

/// The application's database connection, either kind.
enum Db {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

/// Adds `member` to `group` and writes the audit event in the same
/// transaction; `roll_back` abandons the change (and so the event).
async fn add_member(
    db: &mut Db,
    outbox: &Outbox,
    actor: &str,
    group: &str,
    member: &str,
    roll_back: bool,
) -> anyhow::Result<()> {
    let event = AuditEventEnvelope::builder("access-api", "group.member_added")
        .actor(Actor::user(actor))
        .action_name("add_member")
        .outcome(Outcome::Success)
        .target(Target::new("group", group))
        .tenant("acme")
        .reason("on-call rotation")
        .payload(serde_json::json!({ "member": member }))
        .build()?;
    macro_rules! transaction {
        ($conn:expr, $write:ident, $sql:literal) => {{
            let mut tx = $conn.begin().await?;
            // A unique constraint refuses a member added twice: the
            // transaction fails, and its event with it.
            sqlx::query($sql)
                .bind(group)
                .bind(member)
                .execute(&mut *tx)
                .await?;
            outbox.$write(&mut tx, &event).await?;
            if roll_back {
                tx.rollback().await?;
            } else {
                tx.commit().await?;
            }
        }};
    }
    match db {
        Db::Sqlite(conn) => transaction!(
            conn,
            write_sqlite,
            "INSERT INTO members (grp, member) VALUES (?1, ?2)"
        ),
        Db::Postgres(conn) => transaction!(
            conn,
            write_postgres,
            "INSERT INTO members (grp, member) VALUES ($1, $2)"
        ),
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let mut config = match flag("--config") {
        Some(path) => Config::load(path.as_ref()).with_context(|| format!("loading {path}"))?,
        None => Config::embedded_default(),
    };
    config.ingest.http.enabled = false;

    // The application's database: its own table, and the outbox (the DDL
    // `auditrelay outbox schema` prints, usually in a migration).
    let dir = tempfile::tempdir()?;
    let (url, dialect) = match flag("--postgres") {
        Some(url) => (url, Dialect::Postgres),
        None => (
            format!("sqlite://{}", dir.path().join("app.db").display()),
            Dialect::Sqlite,
        ),
    };
    let outbox = Outbox::new(dialect);
    let members = "CREATE TABLE IF NOT EXISTS members (grp TEXT NOT NULL, member TEXT NOT NULL, UNIQUE (grp, member))";
    let mut db = match dialect {
        Dialect::Sqlite => {
            Db::Sqlite(sqlx::SqliteConnection::connect(&format!("{url}?mode=rwc")).await?)
        }
        Dialect::Postgres => Db::Postgres(sqlx::PgConnection::connect(&url).await?),
    };
    for sql in [members.to_owned(), outbox.schema()] {
        let sql = sqlx::AssertSqlSafe(sql);
        match &mut db {
            Db::Sqlite(conn) => sqlx::raw_sql(sql).execute(conn).await.map(drop)?,
            Db::Postgres(conn) => sqlx::raw_sql(sql).execute(conn).await.map(drop)?,
        }
    }

    // The relay, reading that outbox.
    let settings = OutboxSettings {
        enabled: true,
        url: Secret::new(url),
        table: outbox.table().to_owned(),
        batch: 500,
        poll_interval: Duration::from_millis(20),
        on_spooled: OnSpooled::Delete,
    };
    config.ingest.outbox.insert("app".into(), settings.clone());
    let relay = Relay::start(config).await?;
    let stop = CancellationToken::new();
    let reader =
        tokio::spawn(OutboxIngest::new(relay.clone(), "app", &settings)?.run(stop.clone()));

    add_member(&mut db, &outbox, "u-1", "payments-oncall", "u-7", false).await?;
    add_member(&mut db, &outbox, "u-1", "admins", "u-9", false).await?;
    // Fails (u-9 is in admins already): no event, because nothing happened.
    if let Err(error) = add_member(&mut db, &outbox, "u-2", "admins", "u-9", false).await {
        println!("not committed, so not audited: {error}");
    }
    // Rolled back on purpose: no event either.
    add_member(&mut db, &outbox, "u-3", "admins", "u-11", true).await?;

    // Wait until the relay spooled both committed events, then stop.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while relay
        .status()
        .sources
        .iter()
        .map(|s| s.spooled_events)
        .sum::<u64>()
        < 2
    {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the relay did not spool the events: {:?}",
            relay.status().sources
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    reader.await?;
    let report = relay.shutdown().await; // delivers what it holds
    println!(
        "2 committed changes, 2 audit events spooled and delivered; undelivered: {:?}",
        report.undelivered
    );
    Ok(())
}
