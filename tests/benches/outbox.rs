//! The outbox source against the database's own insert rate, in one run,
//! for PostgreSQL (a cluster started here, fsync on) and SQLite (WAL):
//!
//! - **insert**: application connections inserting one outbox row per
//!   transaction, no relay reading — the database's own rate;
//! - **insert + relay**: the same load while the relay reads the table
//!   (spooled with group commit, delivered to the WASM blackhole); rows per
//!   second until the table is empty — the relay is not the bottleneck
//!   while this stays near the first;
//! - **drain**: a backlog of rows already committed, read by the relay
//!   alone — how fast it empties a table;
//! - **commit → spooled**: one row committed every 3 ms; the time from
//!   `COMMIT` returning until the relay reports the event spooled (durable),
//!   p50 and p99.
//!
//! Each with the spool's default durability (`group`: a lone event waits
//! out the 5 ms group-commit window) and with `always` (a sync after each
//! write; under load writes still gather whatever arrived meanwhile).
//!
//! `cargo bench -p auditrelay-tests --bench outbox` (after
//! `scripts/build-plugins`; `scripts/bench outbox` does it). Unset
//! `RUST_BACKTRACE` first.

use std::time::{Duration, Instant};

use auditrelay::Relay;
use auditrelay::outbox::{Dialect, Outbox, OutboxIngest};
use auditrelay_tests::postgres::Postgres;
use auditrelay_tests::{Home, sample_envelope};
use sqlx::Connection;
use tokio_util::sync::CancellationToken;

/// Rows per throughput measurement.
const ROWS: usize = 40_000;
/// Application connections inserting at once (PostgreSQL; SQLite has one
/// writer at a time).
const WRITERS: usize = 4;
/// Commits timed for latency.
const SAMPLES: usize = 300;

fn main() {
    if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
        eprintln!("note: RUST_BACKTRACE is set; unset it for representative figures");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!("outbox: {ROWS} rows of ~500 B per throughput figure, one row per transaction\n");
        println!(
            "{:<18} {:>14} {:>16} {:>8} {:>14} {:>14} {:>14}",
            "database",
            "insert rows/s",
            "+ relay rows/s",
            "ratio",
            "drain rows/s",
            "c→spool p50",
            "c→spool p99"
        );
        let server = Postgres::start();
        let url = server.database("bench").await;
        // The spool's default (group commit: a lone event waits out the
        // 5 ms window) and a sync after every write (lowest latency).
        for durability in ["group", "always"] {
            bench(Dialect::Postgres, &url, WRITERS, durability).await;
        }
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("app.db").display());
        for durability in ["group", "always"] {
            bench(Dialect::Sqlite, &url, 1, durability).await;
        }
    });
}

/// The application's side: connections that insert outbox rows.
enum Writer {
    Postgres(sqlx::PgConnection),
    Sqlite(sqlx::SqliteConnection),
}

impl Writer {
    async fn connect(dialect: Dialect, url: &str) -> Writer {
        match dialect {
            Dialect::Postgres => Writer::Postgres(sqlx::PgConnection::connect(url).await.unwrap()),
            Dialect::Sqlite => {
                let url = format!("{url}?mode=rwc");
                Writer::Sqlite(sqlx::SqliteConnection::connect(&url).await.unwrap())
            }
        }
    }

    async fn run(&mut self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Writer::Postgres(db) => sqlx::raw_sql(sql).execute(db).await.map(drop),
            Writer::Sqlite(db) => sqlx::raw_sql(sql).execute(db).await.map(drop),
        }
        .unwrap();
    }

    /// One transaction holding one outbox row.
    async fn commit_one(&mut self, outbox: &Outbox, n: usize) {
        let event = sample_envelope(n);
        match self {
            Writer::Postgres(db) => {
                let mut tx = db.begin().await.unwrap();
                outbox.write_postgres(&mut tx, &event).await.unwrap();
                tx.commit().await.unwrap();
            }
            Writer::Sqlite(db) => {
                let mut tx = db.begin().await.unwrap();
                outbox.write_sqlite(&mut tx, &event).await.unwrap();
                tx.commit().await.unwrap();
            }
        }
    }

    async fn pending(&mut self) -> i64 {
        let sql = "SELECT count(*) FROM auditrelay_outbox";
        match self {
            Writer::Postgres(db) => sqlx::query_scalar(sql).fetch_one(db).await,
            Writer::Sqlite(db) => sqlx::query_scalar(sql).fetch_one(db).await,
        }
        .unwrap()
    }
}

/// `rows` rows from `writers` connections at once; rows per second.
async fn insert(dialect: Dialect, url: &str, writers: usize, rows: usize) -> f64 {
    let outbox = Outbox::new(dialect);
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (url, outbox) = (url.to_owned(), outbox.clone());
            tokio::spawn(async move {
                let mut writer = Writer::connect(dialect, &url).await;
                for n in (w..rows).step_by(writers) {
                    writer.commit_one(&outbox, n).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    rows as f64 / started.elapsed().as_secs_f64()
}

/// A relay reading the outbox at `url` into the WASM blackhole.
struct Reader {
    relay: Relay,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _home: Home,
}

impl Reader {
    async fn start(url: &str, durability: &str) -> Reader {
        let home = Home::with_plugins(&["blackhole"]);
        let config = home.config(&format!(
            "[spool]\ndurability = \"{durability}\"\n[ingest.http]\nenabled = false\n[ingest.outbox.bench]\nurl = \"{url}\"\n[plugins.blackhole]\n"
        ));
        let relay = Relay::start(config.clone()).await.unwrap();
        let stop = CancellationToken::new();
        let ingest =
            OutboxIngest::new(relay.clone(), "bench", &config.ingest.outbox["bench"]).unwrap();
        let task = tokio::spawn(ingest.run(stop.clone()));
        Reader {
            relay,
            stop,
            task,
            _home: home,
        }
    }

    fn spooled(&self) -> u64 {
        self.relay
            .status()
            .sources
            .first()
            .map_or(0, |s| s.spooled_events)
    }

    async fn wait_for(&self, spooled: u64) {
        while self.spooled() < spooled {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
        self.relay.shutdown().await;
    }
}

async fn bench(dialect: Dialect, url: &str, writers: usize, durability: &str) {
    let outbox = Outbox::new(dialect);
    let mut admin = Writer::connect(dialect, url).await;
    admin.run(&outbox.schema()).await;

    // The database alone.
    let alone = insert(dialect, url, writers, ROWS).await;
    admin.run("DELETE FROM auditrelay_outbox").await;

    // The same load while the relay reads.
    let reader = Reader::start(url, durability).await;
    let started = Instant::now();
    insert(dialect, url, writers, ROWS).await;
    reader.wait_for(ROWS as u64).await;
    let with_relay = ROWS as f64 / started.elapsed().as_secs_f64();
    reader.stop().await;

    // A backlog, drained by the relay alone.
    insert(dialect, url, writers, ROWS).await;
    let started = Instant::now();
    let reader = Reader::start(url, durability).await;
    reader.wait_for(ROWS as u64).await;
    let drain = ROWS as f64 / started.elapsed().as_secs_f64();
    while admin.pending().await > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Commit → spooled, one row at a time.
    let mut latencies = Vec::with_capacity(SAMPLES);
    let base = reader.spooled();
    for i in 0..SAMPLES {
        admin.commit_one(&outbox, i).await;
        let committed = Instant::now();
        reader.wait_for(base + i as u64 + 1).await;
        latencies.push(committed.elapsed());
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    reader.stop().await;
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    admin.run("DELETE FROM auditrelay_outbox").await;
    println!(
        "{:<18} {:>14.0} {:>16.0} {:>7.2}x {:>14.0} {:>11.2} ms {:>11.2} ms",
        format!("{dialect} ({durability})"),
        alone,
        with_relay,
        with_relay / alone,
        drain,
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
    );
}
