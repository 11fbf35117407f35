//! The outbox, against real databases (SQLite files, and PostgreSQL
//! clusters started per test) and the real binary: the application writes
//! rows in its own transactions, as an application would; what counts is
//! what the application committed and what an independent receiver got,
//! not what the relay reports.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditrelay::envelope::{AuditEventEnvelope, EnvelopeError, Limits};
use auditrelay::outbox::{Dialect, Outbox};
use auditrelay_tests::postgres::Postgres;
use auditrelay_tests::{
    Home, Receiver, RelayProcess, free_port, leaked_form, sample_envelope, sink_tables, status,
    tally,
};
use rand::Rng;
use sqlx::Connection;

/// The application's database, and whatever keeps it alive.
struct Database {
    dialect: Dialect,
    /// What the application connects with.
    app_url: String,
    /// What the relay is configured with.
    relay_url: String,
    postgres: Option<Postgres>,
}

impl Database {
    async fn postgres() -> Database {
        let server = Postgres::start();
        let url = server.database("app").await;
        Database {
            dialect: Dialect::Postgres,
            app_url: url.clone(),
            relay_url: url,
            postgres: Some(server),
        }
    }

    fn sqlite(home: &Home) -> Database {
        let path = home.join("app.db");
        Database {
            dialect: Dialect::Sqlite,
            app_url: format!("sqlite://{}?mode=rwc", path.display()),
            relay_url: format!("sqlite://{}", path.display()),
            postgres: None,
        }
    }

    async fn of(dialect: Dialect, home: &Home) -> Database {
        match dialect {
            Dialect::Postgres => Database::postgres().await,
            Dialect::Sqlite => Database::sqlite(home),
        }
    }

    /// The application's connection, its tables created (the outbox's with
    /// the shipped DDL) unless `schema` is false.
    async fn app(&self, schema: bool) -> App {
        let outbox = Outbox::new(self.dialect);
        let mut app = match self.dialect {
            Dialect::Postgres => {
                let mut db = sqlx::PgConnection::connect(&self.app_url).await.unwrap();
                // The relay is what gets killed, not the database: commits
                // need not wait for the disk to count as committed.
                sqlx::query("SET synchronous_commit = off")
                    .execute(&mut db)
                    .await
                    .unwrap();
                App::Postgres(db, outbox)
            }
            Dialect::Sqlite => {
                let mut db = sqlx::SqliteConnection::connect(&self.app_url)
                    .await
                    .unwrap();
                sqlx::query("PRAGMA synchronous = NORMAL")
                    .execute(&mut db)
                    .await
                    .unwrap();
                App::Sqlite(db, outbox)
            }
        };
        app.run(
            "CREATE TABLE IF NOT EXISTS members (event_id TEXT PRIMARY KEY, grp TEXT NOT NULL)",
        )
        .await;
        if schema {
            let ddl = Outbox::new(self.dialect).schema();
            app.run(&ddl).await;
        }
        app
    }
}

/// An application: a business change and its audit event, in one
/// transaction.
enum App {
    Postgres(sqlx::PgConnection, Outbox),
    Sqlite(sqlx::SqliteConnection, Outbox),
}

impl App {
    async fn run(&mut self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            App::Postgres(db, _) => sqlx::raw_sql(sql).execute(db).await.map(drop),
            App::Sqlite(db, _) => sqlx::raw_sql(sql).execute(db).await.map(drop),
        }
        .unwrap();
    }

    /// Adds a member and writes `event` in the same transaction, then
    /// commits it or rolls it back.
    async fn change(&mut self, event: &AuditEventEnvelope, commit: bool) {
        macro_rules! transaction {
            ($db:expr, $write:ident, $outbox:expr, $placeholders:literal) => {{
                let mut tx = $db.begin().await.unwrap();
                sqlx::query(concat!(
                    "INSERT INTO members (event_id, grp) VALUES ",
                    $placeholders
                ))
                .bind(&event.id)
                .bind("payments-oncall")
                .execute(&mut *tx)
                .await
                .unwrap();
                $outbox.$write(&mut tx, event).await.unwrap();
                if commit {
                    tx.commit().await.unwrap();
                } else {
                    tx.rollback().await.unwrap();
                }
            }};
        }
        match self {
            App::Postgres(db, outbox) => transaction!(db, write_postgres, outbox, "($1, $2)"),
            App::Sqlite(db, outbox) => transaction!(db, write_sqlite, outbox, "(?1, ?2)"),
        }
    }

    /// A row written with the documented plain `INSERT`, nothing checked.
    async fn insert_raw(&mut self, envelope: &str) {
        match self {
            App::Postgres(db, outbox) => sqlx::query(sqlx::AssertSqlSafe(outbox.insert_sql()))
                .bind(envelope)
                .execute(db)
                .await
                .map(drop),
            App::Sqlite(db, outbox) => sqlx::query(sqlx::AssertSqlSafe(outbox.insert_sql()))
                .bind(envelope)
                .execute(db)
                .await
                .map(drop),
        }
        .unwrap();
    }

    async fn pending(&mut self) -> i64 {
        let sql = "SELECT count(*) FROM auditrelay_outbox WHERE done_at IS NULL";
        match self {
            App::Postgres(db, _) => sqlx::query_scalar(sql).fetch_one(db).await,
            App::Sqlite(db, _) => sqlx::query_scalar(sql).fetch_one(db).await,
        }
        .unwrap()
    }

    /// The rejected table: (seq, error), by seq.
    async fn rejected(&mut self) -> Vec<(i64, String)> {
        let sql = "SELECT seq, error FROM auditrelay_outbox_rejected ORDER BY seq";
        match self {
            App::Postgres(db, _) => sqlx::query_as(sql).fetch_all(db).await,
            App::Sqlite(db, _) => sqlx::query_as(sql).fetch_all(db).await,
        }
        .unwrap()
    }

    /// Waits until the relay settled every row.
    async fn wait_until_drained(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.pending().await == 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

/// A relay configuration: the outbox `app` at `url` (`extra` in its
/// table), HTTP on `port` (for status), delivering to `receiver`.
fn relay_config(home: &Home, receiver: &Receiver, url: &str, port: u16, extra: &str) -> PathBuf {
    relay_config_with(home, receiver, url, port, extra, "")
}

/// [`relay_config`] with `relay` in the `[relay]` table too.
fn relay_config_with(
    home: &Home,
    receiver: &Receiver,
    url: &str,
    port: u16,
    extra: &str,
    relay: &str,
) -> PathBuf {
    home.config_file(&format!(
        "[relay]\nmax_event_bytes = \"1MiB\"\n{relay}\n[ingest.http]\nlisten = \"127.0.0.1:{port}\"\n[ingest.outbox.app]\nurl = \"{url}\"\npoll_interval = \"20ms\"\n{extra}\n{}",
        sink_tables(receiver, "fault = \"none\"")
    ))
}

/// What most tests start from: a receiver, a relay home, the
/// application's database (its tables created when `schema`, the
/// outbox's with the shipped DDL) and a port for the relay's HTTP.
async fn setup(dialect: Dialect, schema: bool) -> (Receiver, Home, Database, App, u16) {
    let receiver = Receiver::start().await;
    let home = Home::with_plugins(&["faulty"]);
    let database = Database::of(dialect, &home).await;
    let app = database.app(schema).await;
    (receiver, home, database, app, free_port())
}

/// The outbox's entry in `/v1/status`.
async fn outbox_status(port: u16) -> serde_json::Value {
    let client = reqwest::Client::new();
    let status = status(&client, &format!("http://127.0.0.1:{port}")).await;
    status["sources"]
        .as_array()
        .and_then(|sources| sources.iter().find(|s| s["name"] == "outbox.app"))
        .cloned()
        .unwrap_or_else(|| panic!("no outbox.app in {status}"))
}

/// Waits until the outbox's status satisfies `done`; the last one seen.
async fn wait_for_status(
    port: u16,
    timeout: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let status = outbox_status(port).await;
        if done(&status) || Instant::now() >= deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const TRANSACTIONS: usize = 20_000;
const KILLS: usize = 10;

/// Every committed row reaches the destination although the relay is
/// SIGKILLed again and again while the application commits; no rolled
/// back transaction produces an event.
async fn commits_survive_repeated_kill_9(dialect: Dialect) {
    let (receiver, home, database, mut app, port) = setup(dialect, true).await;
    let config = relay_config(&home, &receiver, &database.relay_url, port, "");
    let mut relay = RelayProcess::start(&config, &[]);

    // The application: commits in order, every 10th rolled back; an
    // event counts as committed when COMMIT returned.
    let committed = Arc::new(Mutex::new(HashSet::new()));
    let rolled_back = Arc::new(Mutex::new(HashSet::new()));
    let kills_done = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let (committed, rolled_back, kills_done) =
            (committed.clone(), rolled_back.clone(), kills_done.clone());
        async move {
            let mut n = 0;
            while n < TRANSACTIONS || !kills_done.load(Ordering::Relaxed) {
                let event = sample_envelope(n);
                let commit = n % 10 != 3;
                app.change(&event, commit).await;
                if commit {
                    committed.lock().unwrap().insert(event.id);
                } else {
                    rolled_back.lock().unwrap().insert(event.id);
                }
                n += 1;
            }
            app
        }
    });
    for _ in 0..KILLS {
        let pause = rand::rng().random_range(200..800);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        relay.kill_9();
        relay = RelayProcess::start(&config, &[]);
    }
    kills_done.store(true, Ordering::Relaxed);
    let mut app = writer.await.unwrap();

    let committed = committed.lock().unwrap().clone();
    let rolled_back = rolled_back.lock().unwrap().clone();
    let delivered = receiver
        .wait_for_all(&committed, Duration::from_secs(180))
        .await;
    let drained = app.wait_until_drained(Duration::from_secs(30)).await;
    assert!(
        relay.terminate(),
        "the last relay did not stop cleanly:\n{}",
        relay.log()
    );
    let arrived = receiver.ids();
    let result = tally(&committed, &arrived);
    let phantom = arrived
        .iter()
        .filter(|id| rolled_back.contains(*id))
        .count();
    eprintln!(
        "outbox ({dialect}), kill -9 x{KILLS}: {} transactions committed, {} rolled back; {} delivered, {} duplicates, {} lost, {phantom} from rolled-back transactions",
        result.acknowledged,
        rolled_back.len(),
        result.distinct,
        result.duplicates,
        result.lost
    );
    assert!(result.acknowledged >= TRANSACTIONS * 9 / 10, "{result:?}");
    assert!(delivered, "not everything committed arrived: {result:?}");
    assert_eq!(result.lost, 0, "committed events were lost: {result:?}");
    assert_eq!(phantom, 0, "rolled-back transactions produced events");
    assert_eq!(
        result.distinct,
        committed.len(),
        "events nobody committed arrived"
    );
    assert!(drained, "rows were left in the outbox");
    assert!(app.rejected().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_commits_survive_repeated_kill_9() {
    commits_survive_repeated_kill_9(Dialect::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_commits_survive_repeated_kill_9() {
    commits_survive_repeated_kill_9(Dialect::Sqlite).await;
}

/// Rows whose envelope is malformed, invalid or far too large are moved to
/// the rejected table with why, and the rows around them flow on.
async fn bad_rows_are_moved_aside_and_the_rest_flow(dialect: Dialect) {
    let (receiver, home, database, mut app, port) = setup(dialect, true).await;
    let config = relay_config(&home, &receiver, &database.relay_url, port, "");

    let good: Vec<_> = (0..4).map(sample_envelope).collect();
    let json = |e: &AuditEventEnvelope| serde_json::to_string(e).unwrap();
    app.insert_raw(&json(&good[0])).await;
    app.insert_raw("this is not json").await; // seq 2
    app.insert_raw(&json(&good[1])).await;
    app.insert_raw(r#"{"id": "x", "source": "app"}"#).await; // seq 4
    let mut huge = sample_envelope(10);
    huge.payload = serde_json::json!({ "blob": "x".repeat(3 * 1024 * 1024) });
    app.insert_raw(&json(&huge)).await; // seq 5: over twice max_event_bytes
    app.insert_raw(&json(&good[2])).await;
    let mut big = sample_envelope(11);
    big.payload = serde_json::json!({ "blob": "y".repeat(1024 * 1024 + 10) });
    app.insert_raw(&json(&big)).await; // seq 7: read, refused for its size
    app.insert_raw(&json(&good[3])).await;

    let relay = RelayProcess::start(&config, &[]);
    let expected: HashSet<String> = good.iter().map(|e| e.id.clone()).collect();
    assert!(
        receiver
            .wait_for_all(&expected, Duration::from_secs(30))
            .await,
        "the good rows did not arrive:\n{}",
        relay.log()
    );
    assert!(app.wait_until_drained(Duration::from_secs(10)).await);
    assert_eq!(receiver.ids().len(), 4, "only the good rows are delivered");
    let rejected = app.rejected().await;
    let seqs: Vec<i64> = rejected.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, [2, 4, 5, 7], "{rejected:?}");
    assert!(rejected[0].1.contains("malformed JSON"), "{rejected:?}");
    assert!(rejected[1].1.contains("missing field"), "{rejected:?}");
    assert!(
        rejected[2]
            .1
            .contains("more than twice relay.max_event_bytes"),
        "{rejected:?}"
    );
    assert!(
        rejected[3]
            .1
            .contains("bytes as canonical JSON; the limit is 1048576"),
        "{rejected:?}"
    );
    let log = relay.log();
    for seq in seqs {
        assert!(log.contains(&format!("row seq {seq} refused")), "{log}");
    }
    let status = wait_for_status(port, Duration::from_secs(5), |s| s["rejected_rows"] == 4).await;
    assert_eq!(status["state"], "reading", "{status}");
    assert_eq!(status["spooled_events"], 4, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_bad_rows_are_moved_aside_and_the_rest_flow() {
    bad_rows_are_moved_aside_and_the_rest_flow(Dialect::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_bad_rows_are_moved_aside_and_the_rest_flow() {
    bad_rows_are_moved_aside_and_the_rest_flow(Dialect::Sqlite).await;
}

/// A database without the outbox table: the status says so with the fix,
/// and once the table is created the relay reads it, without a restart.
async fn a_missing_table_is_reported_then_read_once_created(dialect: Dialect) {
    let (receiver, home, database, mut app, port) = setup(dialect, false).await;
    let config = relay_config(&home, &receiver, &database.relay_url, port, "");
    let relay = RelayProcess::start(&config, &[]);

    let status = wait_for_status(port, Duration::from_secs(10), |s| s["state"] == "failing").await;
    let error = status["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("table auditrelay_outbox does not exist")
            && error.contains("auditrelay outbox schema"),
        "{status}"
    );

    app.run(&Outbox::new(dialect).schema()).await;
    let event = sample_envelope(1);
    app.change(&event, true).await;
    let expected = HashSet::from([event.id.clone()]);
    assert!(
        receiver
            .wait_for_all(&expected, Duration::from_secs(30))
            .await,
        "{}",
        relay.log()
    );
    let status = wait_for_status(port, Duration::from_secs(5), |s| s["state"] == "reading").await;
    assert_eq!(status["error"], serde_json::Value::Null, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_missing_table_is_reported_then_read_once_created() {
    a_missing_table_is_reported_then_read_once_created(Dialect::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_missing_table_is_reported_then_read_once_created() {
    a_missing_table_is_reported_then_read_once_created(Dialect::Sqlite).await;
}

/// The password comes from `${ENV}`; a wrong one is reported naming the
/// setting. Neither the right nor the wrong password shows anywhere: not
/// in the log, the status or the metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_names_the_setting_and_never_the_password() {
    let receiver = Receiver::start().await;
    let home = Home::with_plugins(&["faulty"]);
    let server = Postgres::start();
    let good = server.database("app").await;
    let database = Database {
        dialect: Dialect::Postgres,
        app_url: good.clone(),
        relay_url: good.clone(),
        postgres: None,
    };
    let mut app = database.app(true).await;
    let wrong = "Wr0ng-Pa55word-7f3a9c";
    let url = good.replace(server.password(), "${OUTBOX_PASSWORD}");
    let port = free_port();
    let config = relay_config(&home, &receiver, &url, port, "");
    let mut texts = Vec::new();
    let mut observe = async |relay: &mut RelayProcess| {
        let get = |path: &str| {
            let url = format!("http://127.0.0.1:{port}{path}");
            async move { reqwest::get(url).await.unwrap().text().await.unwrap() }
        };
        let (status, metrics) = (get("/v1/status").await, get("/metrics").await);
        assert!(relay.terminate());
        texts.extend([relay.log(), status, metrics.clone()]);
        metrics
    };

    // The right password, from the environment: the outbox is read.
    let mut relay =
        RelayProcess::start_with_env(&config, &[("OUTBOX_PASSWORD", server.password())]);
    let event = sample_envelope(1);
    app.change(&event, true).await;
    assert!(
        receiver
            .wait_for_all(&HashSet::from([event.id]), Duration::from_secs(20))
            .await,
        "{}",
        relay.log()
    );
    observe(&mut relay).await;

    let mut relay = RelayProcess::start_with_env(&config, &[("OUTBOX_PASSWORD", wrong)]);
    let status = wait_for_status(port, Duration::from_secs(10), |s| s["state"] == "failing").await;
    let error = status["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("password authentication failed") && error.contains("ingest.outbox.app.url"),
        "{status}"
    );
    let metrics = observe(&mut relay).await;
    assert!(
        metrics.contains("auditrelay_outbox_errors_total{outbox=\"app\"}"),
        "{metrics}"
    );
    for text in &texts {
        for secret in [wrong, server.password()] {
            assert_eq!(
                leaked_form(text, secret),
                None,
                "a password shows in:\n{text}"
            );
        }
    }
}

/// The database goes away under the relay (dropped, connections cut): the
/// relay reports it, keeps trying with backoff, and reads again once the
/// database is back; rows committed before the drop and after the return
/// all arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_database_is_retried_and_reading_resumes() {
    let (receiver, home, database, mut app, port) = setup(Dialect::Postgres, true).await;
    let server = database.postgres.as_ref().unwrap();
    let config = relay_config(&home, &receiver, &database.relay_url, port, "");
    let relay = RelayProcess::start(&config, &[]);

    let before = sample_envelope(1);
    app.change(&before, true).await;
    assert!(
        receiver
            .wait_for_all(&HashSet::from([before.id.clone()]), Duration::from_secs(20))
            .await
    );
    drop(app);
    server.drop_database("app").await;
    let status = wait_for_status(port, Duration::from_secs(10), |s| s["state"] == "failing").await;
    assert!(
        status["error"]
            .as_str()
            .unwrap_or_default()
            .contains("database"),
        "{status}"
    );

    server.database("app").await;
    let mut app = database.app(true).await;
    let after = sample_envelope(2);
    app.change(&after, true).await;
    assert!(
        receiver
            .wait_for_all(&HashSet::from([after.id.clone()]), Duration::from_secs(30))
            .await,
        "{}",
        relay.log()
    );
    wait_for_status(port, Duration::from_secs(5), |s| s["state"] == "reading").await;
}

/// A long transaction's row has a lower seq than rows committed after it
/// began: a reader with an "id > last seen" cursor would skip it. Claiming
/// finds it when it commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_commits_late_with_a_lower_seq_is_not_skipped() {
    let receiver = Receiver::start().await;
    let home = Home::with_plugins(&["faulty"]);
    let database = Database::postgres().await;
    let mut app = database.app(true).await;
    let mut long = sqlx::PgConnection::connect(&database.app_url)
        .await
        .unwrap();
    let port = free_port();
    let config = relay_config(&home, &receiver, &database.relay_url, port, "");
    let relay = RelayProcess::start(&config, &[]);

    let outbox = Outbox::new(Dialect::Postgres);
    let late = sample_envelope(1);
    let mut tx = long.begin().await.unwrap();
    outbox.write_postgres(&mut tx, &late).await.unwrap(); // seq 1, not committed
    let early = sample_envelope(2);
    app.change(&early, true).await; // seq 2, committed
    assert!(
        receiver
            .wait_for_all(&HashSet::from([early.id.clone()]), Duration::from_secs(20))
            .await
    );
    // The relay has read past seq 1 by now; then it commits.
    tokio::time::sleep(Duration::from_millis(200)).await;
    tx.commit().await.unwrap();
    assert!(
        receiver
            .wait_for_all(&HashSet::from([late.id.clone()]), Duration::from_secs(20))
            .await,
        "the late row was skipped:\n{}",
        relay.log()
    );
    assert_eq!(receiver.ids(), [early.id, late.id]);
}

/// Two relays on one outbox: one reads, the other stands by, no row is
/// spooled by both; when the reader dies, the other takes over.
async fn a_second_relay_stands_by_and_takes_over(dialect: Dialect) {
    let database_home = Home::with_plugins(&[]);
    let database = Database::of(dialect, &database_home).await;
    let mut app = database.app(true).await;
    let receiver = Receiver::start().await;
    let (home_a, home_b) = (
        Home::with_plugins(&["faulty"]),
        Home::with_plugins(&["faulty"]),
    );
    let (port_a, port_b) = (free_port(), free_port());
    let mut relay_a = RelayProcess::start(
        &relay_config(&home_a, &receiver, &database.relay_url, port_a, ""),
        &[],
    );
    wait_for_status(port_a, Duration::from_secs(10), |s| s["state"] == "reading").await;
    let relay_b = RelayProcess::start(
        &relay_config(&home_b, &receiver, &database.relay_url, port_b, ""),
        &[],
    );
    let standby =
        wait_for_status(port_b, Duration::from_secs(10), |s| s["state"] == "standby").await;
    assert_eq!(standby["state"], "standby", "{standby}");

    let mut committed = HashSet::new();
    for n in 0..200 {
        let event = sample_envelope(n);
        app.change(&event, true).await;
        committed.insert(event.id);
    }
    assert!(
        receiver
            .wait_for_all(&committed, Duration::from_secs(30))
            .await
    );
    assert!(app.wait_until_drained(Duration::from_secs(10)).await);
    let result = tally(&committed, &receiver.ids());
    assert_eq!(result.duplicates, 0, "both relays spooled rows: {result:?}");
    assert_eq!(outbox_status(port_b).await["spooled_events"], 0);

    relay_a.kill_9();
    for n in 200..300 {
        let event = sample_envelope(n);
        app.change(&event, true).await;
        committed.insert(event.id);
    }
    assert!(
        receiver
            .wait_for_all(&committed, Duration::from_secs(30))
            .await,
        "the standby relay did not take over:\n{}",
        relay_b.log()
    );
    let status = wait_for_status(port_b, Duration::from_secs(5), |s| s["state"] == "reading").await;
    assert_eq!(status["state"], "reading", "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_second_relay_stands_by_and_takes_over() {
    a_second_relay_stands_by_and_takes_over(Dialect::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_second_relay_stands_by_and_takes_over() {
    a_second_relay_stands_by_and_takes_over(Dialect::Sqlite).await;
}

/// With `on_spooled = "mark_done"` rows stay, marked, and are not read
/// again by the next relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marked_rows_stay_and_are_not_spooled_again() {
    let (receiver, home, database, mut app, port) = setup(Dialect::Sqlite, true).await;
    let config = relay_config(
        &home,
        &receiver,
        &database.relay_url,
        port,
        "on_spooled = \"mark_done\"",
    );
    let mut relay = RelayProcess::start(&config, &[]);
    let mut committed = HashSet::new();
    for n in 0..20 {
        let event = sample_envelope(n);
        app.change(&event, true).await;
        committed.insert(event.id);
    }
    assert!(
        receiver
            .wait_for_all(&committed, Duration::from_secs(20))
            .await
    );
    assert!(app.wait_until_drained(Duration::from_secs(10)).await);
    assert!(relay.terminate());
    let relay = RelayProcess::start(&config, &[]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.ids().len(),
        20,
        "marked rows were read again:\n{}",
        relay.log()
    );
    let App::Sqlite(db, _) = &mut app else {
        unreachable!()
    };
    let marked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM auditrelay_outbox WHERE done_at IS NOT NULL")
            .fetch_one(db)
            .await
            .unwrap();
    assert_eq!(marked, 20);
}

/// SQLite lets a TEXT column hold anything: a BLOB of invalid UTF-8, a
/// number, text with a NUL. Each such row is refused and moved aside (it
/// once crashed the reader, which then read nothing, silently); the rows
/// around them flow on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_rows_of_any_type_are_refused_and_the_rest_flow() {
    let receiver = Receiver::start().await;
    let home = Home::with_plugins(&["faulty"]);
    let database = Database::sqlite(&home);
    let mut app = database.app(true).await;
    let good: Vec<_> = (0..3).map(sample_envelope).collect();
    let json = |e: &AuditEventEnvelope| serde_json::to_string(e).unwrap();
    app.insert_raw(&json(&good[0])).await;
    app.run("INSERT INTO auditrelay_outbox (envelope) VALUES (X'FFFE00')")
        .await; // seq 2
    app.run("INSERT INTO auditrelay_outbox (envelope) VALUES (12345)")
        .await; // seq 3
    app.insert_raw(&json(&good[1])).await;
    app.run("INSERT INTO auditrelay_outbox (envelope) VALUES (1.5e300)")
        .await; // seq 5
    app.insert_raw("{\"id\":\"a\u{0}b\"}").await; // seq 6
    app.insert_raw(&json(&good[2])).await;

    let port = free_port();
    let config = relay_config(&home, &receiver, &database.relay_url, port, "");
    let relay = RelayProcess::start(&config, &[]);
    let expected: HashSet<String> = good.iter().map(|e| e.id.clone()).collect();
    assert!(
        receiver
            .wait_for_all(&expected, Duration::from_secs(30))
            .await,
        "the good rows did not arrive:\n{}",
        relay.log()
    );
    assert!(
        app.wait_until_drained(Duration::from_secs(10)).await,
        "{}",
        relay.log()
    );
    let rejected = app.rejected().await;
    let seqs: Vec<i64> = rejected.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, [2, 3, 5, 6], "{rejected:?}");
    assert!(rejected[0].1.contains("not UTF-8"), "{rejected:?}");
    assert!(!relay.log().contains("panicked"), "{}", relay.log());
    let status = outbox_status(port).await;
    assert_eq!(status["state"], "reading", "{status}");
}

/// One application connection committing in sequence: the events reach
/// the destination in commit order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_in_commit_order() {
    let (receiver, home, database, mut app, port) = setup(Dialect::Postgres, true).await;
    let config = relay_config(&home, &receiver, &database.relay_url, port, "batch = 7");
    let relay = RelayProcess::start(&config, &[]);
    let mut order = Vec::new();
    for n in 0..500 {
        let event = sample_envelope(n);
        app.change(&event, true).await;
        order.push(event.id);
    }
    let committed: HashSet<String> = order.iter().cloned().collect();
    assert!(
        receiver
            .wait_for_all(&committed, Duration::from_secs(30))
            .await,
        "{}",
        relay.log()
    );
    assert_eq!(receiver.ids(), order);
}

// Defects an outside review found, each fixed since.

/// SQLite's TEXT affinity keeps a BLOB a BLOB, and TEXT may hold invalid
/// UTF-8: such a row must be moved to the rejected table like any other
/// refused row, and the rows around it must flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_blob_envelope_is_rejected_and_the_rest_flow() {
    let (receiver, home, database, mut app, port) = setup(Dialect::Sqlite, true).await;
    let config = relay_config(&home, &receiver, &database.relay_url, port, "");
    let json = |e: &AuditEventEnvelope| serde_json::to_string(e).unwrap();
    let good: Vec<_> = (0..2).map(sample_envelope).collect();
    app.insert_raw(&json(&good[0])).await; // seq 1
    app.run("INSERT INTO auditrelay_outbox (envelope) VALUES (x'7b7d')")
        .await; // seq 2: a BLOB
    app.insert_raw(&json(&good[1])).await; // seq 3
    let relay = RelayProcess::start(&config, &[]);
    let expected: HashSet<String> = good.iter().map(|e| e.id.clone()).collect();
    let arrived = receiver
        .wait_for_all(&expected, Duration::from_secs(20))
        .await;
    let status = outbox_status(port).await;
    assert!(
        arrived,
        "one BLOB row stopped the outbox (status says {}):\n{}",
        status["state"],
        relay.log()
    );
    let seqs: Vec<i64> = app.rejected().await.iter().map(|r| r.0).collect();
    assert_eq!(seqs, [2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_an_invalid_utf8_envelope_is_rejected_and_the_rest_flow() {
    let (receiver, home, database, mut app, port) = setup(Dialect::Sqlite, true).await;
    let config = relay_config(&home, &receiver, &database.relay_url, port, "");
    let json = |e: &AuditEventEnvelope| serde_json::to_string(e).unwrap();
    let good = sample_envelope(0);
    app.run("INSERT INTO auditrelay_outbox (envelope) VALUES (CAST(x'7bff7d' AS TEXT))")
        .await; // seq 1: TEXT, not UTF-8
    app.insert_raw(&json(&good)).await; // seq 2
    let relay = RelayProcess::start(&config, &[]);
    let arrived = receiver
        .wait_for_all(&HashSet::from([good.id.clone()]), Duration::from_secs(20))
        .await;
    let status = outbox_status(port).await;
    assert!(
        arrived,
        "one non-UTF-8 row stopped the outbox (status says {}):\n{}",
        status["state"],
        relay.log()
    );
}

/// A refused row whose reason contains NUL (an unknown key "x\u0000y":
/// serde quotes it raw): PostgreSQL TEXT cannot hold NUL, so moving the
/// row aside must not fail the cycle forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_refusal_reason_with_nul_does_not_block_the_outbox() {
    let (receiver, home, database, mut app, port) = setup(Dialect::Postgres, true).await;
    let config = relay_config(&home, &receiver, &database.relay_url, port, "");
    let mut bad = serde_json::to_value(sample_envelope(5)).unwrap();
    bad["x\u{0}y"] = serde_json::json!(1);
    let bad = serde_json::to_string(&bad).unwrap();
    assert!(bad.contains("\\u0000") && !bad.contains('\0'));
    app.insert_raw(&bad).await; // seq 1: valid TEXT, refused by the relay
    let good = sample_envelope(0);
    app.insert_raw(&serde_json::to_string(&good).unwrap()).await; // seq 2
    let relay = RelayProcess::start(&config, &[]);
    let arrived = receiver
        .wait_for_all(&HashSet::from([good.id.clone()]), Duration::from_secs(20))
        .await;
    let status = outbox_status(port).await;
    assert!(
        arrived,
        "the row behind a NUL-reason refusal never arrived; status: {status}\n{}",
        relay.log()
    );
    let drained = app.wait_until_drained(Duration::from_secs(10)).await;
    let status = outbox_status(port).await;
    let log = relay.log();
    let last: Vec<&str> = log.lines().rev().take(3).collect();
    assert!(
        drained && app.rejected().await.len() == 1,
        "rows still pending: {}; the good event arrived {} times; status: {status}\nlast log lines: {last:#?}",
        app.pending().await,
        receiver.ids().len()
    );
}

/// Valid events, each well under max_event_bytes, whose batch together
/// exceeds relay.max_buffered_bytes (64MiB by default): the spool refuses
/// the whole batch every time, so the outbox never moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_batch_larger_than_max_buffered_bytes_is_not_stuck_forever() {
    let (receiver, home, database, mut app, port) = setup(Dialect::Sqlite, true).await;
    // 12 rows of 900 KB: more than the spool takes in one append.
    let config = relay_config_with(
        &home,
        &receiver,
        &database.relay_url,
        port,
        "",
        "max_buffered_bytes = \"4MiB\"",
    );
    let mut expected = HashSet::new();
    for n in 0..12 {
        let mut event = sample_envelope(n);
        // 900 KB that do not compress: each event is valid on its own.
        let blob: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(900_000)
            .map(char::from)
            .collect();
        event.payload = serde_json::json!({ "blob": blob });
        app.insert_raw(&serde_json::to_string(&event).unwrap())
            .await;
        expected.insert(event.id);
    }
    let relay = RelayProcess::start(&config, &[]);
    let arrived = receiver
        .wait_for_all(&expected, Duration::from_secs(60))
        .await;
    let status = outbox_status(port).await;
    assert!(
        arrived,
        "{} of 12 valid events arrived; status: {status}\n{}",
        receiver.ids().len(),
        auditrelay_tests::excerpt(&relay.log(), 3000)
    );
}

/// A password with characters a URL cannot carry as they are (`@`, `/`),
/// given through `${ENV}`: the configuration is refused, naming the setting
/// and the fix, and no piece of the password shows. (Read as it was, the
/// URL put pieces of the password where the host and database go, and the
/// status showed them.)
#[test]
fn a_password_that_needs_encoding_is_refused_without_showing_it() {
    let receiver_port = free_port();
    let home = Home::with_plugins(&["faulty"]);
    let password = "p@ssw0rdTail/2024Secret";
    let url = "postgres://app:${OUTBOX_PASSWORD}@127.0.0.1:5432/app";
    let config = home.config_file(&format!(
        "[ingest.outbox.app]\nurl = \"{url}\"\n[plugins.sink]\nplugin = \"faulty\"\nallowed_hosts = [\"127.0.0.1:{receiver_port}\"]\n[plugins.sink.config]\nurl = \"http://127.0.0.1:{receiver_port}/events\"\n"
    ));
    let output = std::process::Command::new(auditrelay_tests::relay_binary())
        .args(["check", "-c", config.to_str().unwrap()])
        .env("OUTBOX_PASSWORD", password)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        said.contains("ingest.outbox.app.url") && said.contains("percent-encode"),
        "{said}"
    );
    for piece in ["ssw0rdTail", "2024Secret"] {
        assert!(
            !said.contains(piece),
            "a piece of the password ({piece}) shows in:\n{said}"
        );
    }
}

/// A refused row whose seq is already in the rejected table (the outbox
/// table was recreated, so AUTOINCREMENT started again): `INSERT OR
/// IGNORE` drops it, then the row is deleted — gone without a trace,
/// though the log says it was moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_refused_row_is_never_dropped_silently() {
    let receiver = Receiver::start().await;
    let home = Home::with_plugins(&["faulty"]);
    let database = Database::sqlite(&home);
    let mut app = database.app(true).await;
    // What an earlier incarnation of the outbox table left behind.
    app.run(
        "INSERT INTO auditrelay_outbox_rejected (seq, envelope, error, created_at) \
         VALUES (1, 'old', 'old', '2024-01-01T00:00:00Z')",
    )
    .await;
    app.insert_raw("this is not json").await; // seq 1 again
    let port = free_port();
    let config = relay_config(&home, &receiver, &database.relay_url, port, "");
    let relay = RelayProcess::start(&config, &[]);
    assert!(app.wait_until_drained(Duration::from_secs(10)).await);
    let App::Sqlite(db, _) = &mut app else {
        unreachable!()
    };
    let kept: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM auditrelay_outbox_rejected WHERE envelope = 'this is not json'",
    )
    .fetch_one(db)
    .await
    .unwrap();
    assert_eq!(
        kept,
        1,
        "the refused row is gone from both tables:\n{}",
        relay.log()
    );
}

/// The settle transaction fails every time (here: a read-only URL; on
/// PostgreSQL, a role without DELETE on the table): each cycle spools
/// the same rows again, forever, growing the spool and the destination's
/// copies without bound. `outbox check` says "ok" for such a URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_settle_that_always_fails_does_not_respool_forever() {
    let receiver = Receiver::start().await;
    let home = Home::with_plugins(&["faulty"]);
    let database = Database::sqlite(&home);
    let mut app = database.app(true).await;
    let event = sample_envelope(0);
    app.insert_raw(&serde_json::to_string(&event).unwrap())
        .await;
    let port = free_port();
    let url = format!("{}?mode=ro", database.relay_url);
    let config = relay_config(&home, &receiver, &url, port, "");
    let mut relay = RelayProcess::start(&config, &[]);
    // Refused at connect now: nothing is spooled that cannot be settled.
    let status = wait_for_status(port, Duration::from_secs(10), |s| s["state"] == "failing").await;
    assert!(
        status["error"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot write to the database"),
        "{status}"
    );
    assert!(relay.terminate());
    assert_eq!(receiver.ids().len(), 0);
}

/// A settle that fails on a database the relay can write (a trigger
/// refusing deletes): the row is spooled once, not again on every retry,
/// and settles once the trigger is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_settle_that_keeps_failing_spools_its_rows_once() {
    let receiver = Receiver::start().await;
    let home = Home::with_plugins(&["faulty"]);
    let database = Database::postgres().await;
    let mut app = database.app(true).await;
    app.run(
        "CREATE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN RAISE EXCEPTION 'deletes are not allowed here'; END $$; \
         CREATE TRIGGER refuse_delete BEFORE DELETE ON auditrelay_outbox \
         FOR EACH ROW EXECUTE FUNCTION refuse_delete();",
    )
    .await;
    let event = sample_envelope(1);
    app.change(&event, true).await;
    let port = free_port();
    let config = relay_config(&home, &receiver, &database.relay_url, port, "");
    let relay = RelayProcess::start(&config, &[]);
    let status = wait_for_status(port, Duration::from_secs(10), |s| {
        s["error"]
            .as_str()
            .is_some_and(|e| e.contains("deletes are not allowed"))
    })
    .await;
    assert_eq!(status["state"], "failing", "{status}");
    // Several retries (backoff from 0.1 s) pass meanwhile.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.ids().len(), 1, "{}", relay.log());
    app.run("DROP TRIGGER refuse_delete ON auditrelay_outbox")
        .await;
    assert!(
        app.wait_until_drained(Duration::from_secs(20)).await,
        "{}",
        relay.log()
    );
    assert_eq!(receiver.ids(), [event.id]);
}

/// Fuzzing the reader: 300 rows, half of them envelopes with random byte
/// edits (invalid UTF-8, broken JSON, changed fields), stored as BLOBs.
/// Exactly the rows an independent strict reading accepts arrive; every
/// other row is in the rejected table; nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_random_rows_are_each_delivered_or_rejected() {
    use auditrelay_plugin_api::testing::{Edit, mutate};
    use rand::{Rng, SeedableRng};
    let seed: u64 = rand::rng().random();
    eprintln!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (receiver, home, database, mut app, port) = setup(Dialect::Sqlite, true).await;
    let App::Sqlite(db, _) = &mut app else {
        unreachable!()
    };
    let (mut accepted, mut refused) = (HashSet::new(), 0usize);
    for n in 0..300 {
        let mut bytes = serde_json::to_vec(&sample_envelope(n)).unwrap();
        if n % 2 == 1 {
            let edits: Vec<Edit> = (0..rng.random_range(1..4))
                .map(|_| match rng.random_range(0..3) {
                    0 => Edit::Replace(rng.random(), rng.random()),
                    1 => Edit::Insert(rng.random(), rng.random()),
                    _ => Edit::Remove(rng.random()),
                })
                .collect();
            bytes = mutate(bytes, &edits);
        }
        // What the relay takes: valid events, and those whose optional
        // fields alone break rules, taken without them (the default
        // `relay.invalid_optional = "set_aside"`).
        match AuditEventEnvelope::from_json(&bytes) {
            Ok(event) => {
                accepted.insert(event.id);
            }
            Err(EnvelopeError::Invalid(errors)) => {
                match AuditEventEnvelope::read_json(&bytes)
                    .ok()
                    .and_then(|event| event.set_aside(&errors.0, &Limits::default()))
                {
                    Some((kept, _)) => {
                        accepted.insert(kept.id);
                    }
                    None => refused += 1,
                }
            }
            Err(_) => refused += 1,
        }
        sqlx::query("INSERT INTO auditrelay_outbox (envelope) VALUES (?1)")
            .bind(bytes)
            .execute(&mut *db)
            .await
            .unwrap();
    }
    let config = relay_config(&home, &receiver, &database.relay_url, port, "batch = 17");
    let relay = RelayProcess::start(&config, &[]);
    assert!(
        app.wait_until_drained(Duration::from_secs(30)).await,
        "seed {seed}\n{}",
        relay.log()
    );
    assert!(
        receiver
            .wait_for_all(&accepted, Duration::from_secs(30))
            .await,
        "seed {seed}"
    );
    let arrived: HashSet<String> = receiver.ids().into_iter().collect();
    assert_eq!(
        arrived, accepted,
        "seed {seed}: what arrived is not what reads as valid"
    );
    assert_eq!(app.rejected().await.len(), refused, "seed {seed}");
    assert!(
        !relay.log().contains("panicked"),
        "seed {seed}\n{}",
        relay.log()
    );
}
