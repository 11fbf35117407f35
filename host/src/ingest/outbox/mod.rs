//! The outbox source: audit events an application committed to an outbox
//! table in its own database transaction (`[ingest.outbox.<name>]`).
//!
//! One cycle: claim the oldest waiting rows, read each envelope, append
//! the valid ones to the spool and **wait until they are durable**, then,
//! in one database transaction, move the refused rows to the rejected
//! table (with why) and delete the others (or mark them done). A crash
//! anywhere before that transaction commits leaves every row in the table:
//! the next cycle spools it again, so nothing committed is lost and at
//! worst an event is spooled twice (`(source, id)` tells the copies apart).
//!
//! Rows are claimed, not followed with an "id > last seen" cursor: a row's
//! `seq` is drawn at insert, so a long transaction can commit a row below
//! one already read, and a cursor would skip it; claiming finds every row
//! that is there, whatever its number. One relay reads a table at a time
//! (PostgreSQL: a session advisory lock, the others stand by and take over
//! when its connection ends; SQLite: a lock file), so the rows of a key
//! reach the spool in the order they became visible. PostgreSQL rows are
//! also claimed `FOR UPDATE SKIP LOCKED`, so even two relays that each
//! believed they held the table would not both spool a row.
//!
//! Waking: PostgreSQL's trigger sends `NOTIFY` on commit, and the relay
//! also looks every `poll_interval`; SQLite is looked at every
//! millisecond for 20 ms after rows came and ever less often, up to
//! `poll_interval`, while it stays idle (`PRAGMA data_version` makes a
//! look cheap).

mod postgres;
mod sqlite;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditrelay_outbox::{Dialect, Outbox};
use auditrelay_plugin_api::envelope::ValidationError;
use tokio_util::sync::CancellationToken;

use crate::config::{OnSpooled, OutboxSettings};
use crate::dispatch::backoff::Backoff;
use crate::ingest::decode;
use crate::metrics::{OutboxMetrics, Via};
use crate::relay::{Arrivals, EmitError, Refusals, Refused, Relay, SourceReport};

/// Rows counted at most when reporting the backlog (counting is a scan).
const BACKLOG_COUNT_LIMIT: i64 = 100_000;
/// How often the backlog is counted.
const BACKLOG_EVERY: Duration = Duration::from_secs(1);
/// The longest a cycle waits for its events to be durable before giving
/// up (the rows stay; the next cycle tries again).
const DURABLE_WITHIN: Duration = Duration::from_secs(30);

/// Waits between attempts after a failure: 0.1 s doubling to 10 s.
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));

/// Columns the outbox table must have, and the rejected table.
const OUTBOX_COLUMNS: [&str; 4] = ["seq", "envelope", "created_at", "done_at"];
const REJECTED_COLUMNS: [&str; 4] = ["seq", "envelope", "error", "created_at"];

/// One configured outbox, read until stopped.
pub struct OutboxIngest {
    relay: Relay,
    name: String,
    settings: OutboxSettings,
    outbox: Outbox,
    report: SourceReport,
    metrics: OutboxMetrics,
    unsettled: Mutex<Unsettled>,
}

/// Rows this process spooled whose settle has not committed yet (it
/// failed: a read-only database, a lost connection). Claimed again, they
/// are settled without being spooled again — recognised by their seq and
/// the hash of their bytes, so a new row that reuses a seq (the table was
/// recreated) is never mistaken for one.
#[derive(Default)]
struct Unsettled {
    rows: HashSet<(i64, u64)>,
    /// The cycle under way: the rows it spooled (remembered only if its
    /// settle fails, so a cycle that settles hashes nothing) and those of
    /// `rows` it claimed again (forgotten once it settles).
    spooled: Vec<Row>,
    claimed_again: Vec<(i64, u64)>,
}

/// Most rows remembered as spooled and unsettled; past it the memory is
/// dropped, which costs duplicates, never events.
const MAX_UNSETTLED: usize = 100_000;

/// `(rows waiting, age of the oldest in seconds)` from the backlog query
/// both dialects run.
fn read_backlog<R: sqlx::Row>(row: &R) -> Result<(u64, f64), sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let rows: i64 = row.try_get(0)?;
    let oldest: f64 = row.try_get(1)?;
    Ok((rows as u64, oldest.max(0.0)))
}

/// Outbox settings that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The URL names no database the outbox supports (it is not shown: it
    /// may hold a password).
    #[error("the outbox URL must start with postgres://, postgresql:// or sqlite:")]
    Url,
    /// The table name is not a plain identifier.
    #[error(transparent)]
    Table(#[from] auditrelay_outbox::TableNameError),
}

/// A row as a cycle reads it: its envelope's bytes only when it is small
/// enough to read at all.
struct Row {
    seq: i64,
    envelope: Option<Vec<u8>>,
    bytes: i64,
}

impl Row {
    /// The row as this process recognises it again: seq and a hash of its
    /// bytes.
    fn identity(&self) -> (i64, u64) {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.envelope.hash(&mut hasher);
        self.bytes.hash(&mut hasher);
        (self.seq, hasher.finish())
    }

    /// Keeps the longest prefix of `rows` within `budget` bytes (always
    /// the first row: one row is never larger than the spool takes).
    fn within(rows: &mut Vec<Row>, budget: i64) {
        let mut total = 0i64;
        let keep = rows
            .iter()
            .position(|row| {
                total = total.saturating_add(row.envelope.as_ref().map_or(0, |e| e.len() as i64));
                total > budget
            })
            .unwrap_or(rows.len())
            .max(1);
        rows.truncate(keep);
    }

    /// From `(seq, envelope or NULL, its length)`, as both dialects select
    /// it; a value of another type is an error, never a panic.
    fn read<R: sqlx::Row>(row: &R) -> Result<Row, sqlx::Error>
    where
        usize: sqlx::ColumnIndex<R>,
        for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        for<'r> Option<Vec<u8>>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    {
        Ok(Row {
            seq: row.try_get(0)?,
            envelope: row.try_get(1)?,
            bytes: row.try_get(2)?,
        })
    }
}

/// What a cycle does with the rows it claimed, once the spool holds the
/// valid ones durably.
struct Settlement {
    /// Every claimed row: delete it, or mark it done.
    done: Vec<i64>,
    /// The refused ones among them, with why: move them aside first.
    rejected: Vec<(i64, String)>,
}

/// Why a cycle did not finish.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// The database failed; the connection is dropped and made again.
    #[error("{0}")]
    Database(String),
    /// The spool did not take the events; the connection is kept.
    #[error("the spool did not take the events (the rows stay in the outbox): {0}")]
    Spool(#[from] EmitError),
    /// Another relay reads this table now.
    #[error("another relay reads this outbox table; standing by to take over")]
    Standby,
    /// The reader failed in a way it should not (a bug); it starts again.
    #[error("the outbox reader failed unexpectedly ({0}) and starts again; please report this")]
    Panicked(String),
}

/// An open outbox in one of the dialects.
enum Store {
    Postgres(postgres::Store),
    Sqlite(sqlite::Store),
}

/// What the store needs from the settings.
struct Plan {
    batch: i64,
    /// Rows longer than this are refused without being read.
    read_limit: i64,
    /// Most bytes of envelopes spooled in one cycle: the rows past it
    /// wait for the next one (the spool refuses a larger append).
    budget: i64,
}

impl OutboxIngest {
    /// An outbox to read into `relay`; registers it in the relay's status.
    /// Settings from [`Config`](crate::Config) were checked already; built
    /// by hand, a URL of another database or a table name that is not a
    /// plain identifier is refused here.
    pub fn new(
        relay: Relay,
        name: &str,
        settings: &OutboxSettings,
    ) -> Result<OutboxIngest, SettingsError> {
        let dialect = Dialect::of_url(settings.url.expose()).ok_or(SettingsError::Url)?;
        let outbox = Outbox::with_table(dialect, &settings.table)?.limits(*relay.limits());
        let report = relay.register_source(format!("outbox.{name}"));
        let metrics = relay.metrics().outbox(name);
        Ok(OutboxIngest {
            relay,
            name: name.to_owned(),
            settings: settings.clone(),
            outbox,
            report,
            metrics,
            unsettled: Mutex::default(),
        })
    }

    /// Reads the outbox until `stop`: connects (again, with backoff, while
    /// the database is down), and runs cycles. A cycle under way when
    /// `stop` comes is finished first, so its rows are settled. Should the
    /// reader itself fail (a bug: a panic), that is reported like a
    /// database failure and the reader starts again, with backoff — it
    /// never stops reading silently.
    pub async fn run(self, stop: CancellationToken) {
        let this = Arc::new(self);
        let mut panics = 0u32;
        loop {
            let session = tokio::spawn(this.clone().session(stop.clone()));
            match session.await {
                Ok(()) => return,
                Err(error) => {
                    panics += 1;
                    let why = match error.try_into_panic() {
                        Ok(panic) => panic
                            .downcast_ref::<&str>()
                            .map(|s| (*s).to_owned())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "a panic".to_owned()),
                        Err(_) => "cancelled".to_owned(),
                    };
                    this.failing(&Failure::Panicked(why));
                    if sleep_or_stop(BACKOFF.delay(panics, None), &stop).await {
                        return;
                    }
                }
            }
        }
    }

    /// Connects and reads, again after each database failure, until
    /// `stop`.
    async fn session(self: Arc<Self>, stop: CancellationToken) {
        let backoff = BACKOFF;
        let mut failures = 0u32;
        let setting = self.setting();
        while !stop.is_cancelled() {
            let connected = tokio::select! {
                connected = Store::connect(self.settings.url.expose(), &self.outbox, self.settings.on_spooled, &setting) => connected,
                () = stop.cancelled() => return,
            };
            let mut store = match connected {
                Ok(store) => store,
                Err(error) => {
                    failures += 1;
                    self.failing(&error);
                    if sleep_or_stop(backoff.delay(failures, None), &stop).await {
                        return;
                    }
                    continue;
                }
            };
            for warning in store.warnings() {
                tracing::warn!(outbox = self.name, "{warning}");
            }
            tracing::info!(outbox = self.name, "reading {}", store.describe());
            self.report.update(|s| {
                s.state = "reading";
                s.error = None;
            });
            match self.read(&mut store, &stop, &backoff, &mut failures).await {
                Ok(()) => return,
                Err(error) => {
                    self.failing(&error);
                    if sleep_or_stop(backoff.delay(failures, None), &stop).await {
                        return;
                    }
                }
            }
        }
    }

    /// Cycles on one connection until `stop` (`Ok`) or until the database
    /// fails (`Err`: connect again).
    async fn read(
        &self,
        store: &mut Store,
        stop: &CancellationToken,
        backoff: &Backoff,
        failures: &mut u32,
    ) -> Result<(), Failure> {
        let plan = Plan {
            batch: self.settings.batch as i64,
            read_limit: (self.relay.limits().max_event_bytes as i64).saturating_mul(2),
            // Canonical JSON can be longer than what was read (an
            // exponent written out): at most 21/4 of it, so a sixth of the
            // spool's limit always fits.
            budget: (self.relay.max_batch_bytes() / 6) as i64,
        };
        let mut counted: Option<Instant> = None;
        while !stop.is_cancelled() {
            if counted.is_none_or(|at| at.elapsed() >= BACKLOG_EVERY) {
                counted = Some(Instant::now());
                let (rows, oldest) = store.backlog().await.map_err(database)?;
                self.metrics.backlog(rows, oldest);
                self.report.update(|s| {
                    s.pending_rows = Some(rows);
                    s.oldest_pending_seconds = Some(oldest);
                });
            }
            match self.cycle(store, &plan).await {
                Ok(taken) => {
                    if *failures > 0 {
                        *failures = 0;
                        tracing::info!(outbox = self.name, "reading again");
                    }
                    // From failing, or from standby: this relay reads now.
                    self.report.update(|s| {
                        if s.state != "reading" {
                            s.state = "reading";
                            s.error = None;
                        }
                    });
                    // A full batch: more are likely waiting.
                    if taken < self.settings.batch
                        && store.wait(self.settings.poll_interval, stop).await
                    {
                        return Ok(());
                    }
                }
                Err(Failure::Standby) => {
                    self.report.update(|s| {
                        s.state = "standby";
                        s.error = None;
                    });
                    if sleep_or_stop(
                        self.settings.poll_interval.max(Duration::from_secs(1)),
                        stop,
                    )
                    .await
                    {
                        return Ok(());
                    }
                }
                Err(error @ Failure::Spool(_)) => {
                    *failures += 1;
                    self.failing(&error);
                    if sleep_or_stop(backoff.delay(*failures, None), stop).await {
                        return Ok(());
                    }
                }
                Err(error @ (Failure::Database(_) | Failure::Panicked(_))) => {
                    *failures += 1;
                    return Err(error);
                }
            }
        }
        Ok(())
    }

    /// Claims, spools and settles one batch; the rows taken.
    async fn cycle(&self, store: &mut Store, plan: &Plan) -> Result<usize, Failure> {
        let result = match store {
            Store::Postgres(store) => store.cycle(plan, |rows| self.spool(rows)).await,
            Store::Sqlite(store) => store.cycle(plan, |rows| self.spool(rows)).await,
        };
        let mut unsettled = self.unsettled.lock().expect("never poisoned");
        let spooled = std::mem::take(&mut unsettled.spooled);
        let claimed_again = std::mem::take(&mut unsettled.claimed_again);
        if result.is_ok() {
            for identity in &claimed_again {
                unsettled.rows.remove(identity);
            }
        } else if !spooled.is_empty() {
            if unsettled.rows.len() + spooled.len() > MAX_UNSETTLED {
                unsettled.rows.clear();
            }
            unsettled.rows.extend(spooled.iter().map(Row::identity));
        }
        result
    }

    /// Appends the rows' valid envelopes to the spool and waits until they
    /// are durable; says what to do with every row.
    async fn spool(&self, rows: Vec<Row>) -> Result<Settlement, Failure> {
        let mut arrivals = Arrivals::new(self.relay.rules());
        // Rows are hashed only while some earlier settle failed.
        let claimed_again: Vec<Option<(i64, u64)>> = {
            let unsettled = self.unsettled.lock().expect("never poisoned");
            rows.iter()
                .map(|row| {
                    let identity = (!unsettled.rows.is_empty()).then(|| row.identity())?;
                    unsettled.rows.contains(&identity).then_some(identity)
                })
                .collect()
        };
        let already: Vec<bool> = claimed_again.iter().map(Option::is_some).collect();
        for (index, row) in rows.iter().enumerate() {
            match &row.envelope {
                // Spooled by an earlier cycle whose settle failed.
                Some(_) if already[index] => {}
                Some(json) => decode::push_json(&mut arrivals, index, json),
                None => arrivals.refuse(Refused {
                    index,
                    id: None,
                    errors: vec![ValidationError {
                        field: "(event)".into(),
                        problem: format!(
                            "the row's envelope is {} bytes, more than twice relay.max_event_bytes ({}); it was not read",
                            row.bytes,
                            self.relay.limits().max_event_bytes
                        ),
                    }],
                }),
            }
        }
        let admitted = self
            .relay
            .admit_durable(
                arrivals,
                Via::Outbox,
                Refusals::TakeTheValid,
                Some((DURABLE_WITHIN, "the outbox's wait for the spool (30s)")),
            )
            .await?;
        let rejected_at: HashSet<usize> = admitted.refused.iter().map(|r| r.index).collect();
        let rejected: Vec<(i64, String)> = admitted
            .refused
            .into_iter()
            .map(|refused| {
                let seq = rows[refused.index].seq;
                let why = escape_controls(
                    &refused
                        .errors
                        .iter()
                        .map(|e| format!("{}: {}", e.field, e.problem))
                        .collect::<Vec<_>>()
                        .join("; "),
                );
                tracing::warn!(
                    outbox = self.name,
                    "row seq {seq} refused, moved to {}: {why}",
                    self.outbox.rejected_table()
                );
                (seq, why)
            })
            .collect();
        let done = rows.iter().map(|r| r.seq).collect();
        let spooled_rows: Vec<Row> = rows
            .into_iter()
            .enumerate()
            .filter(|(index, _)| !already[*index] && !rejected_at.contains(index))
            .map(|(_, row)| row)
            .collect();
        let spooled = spooled_rows.len() as u64;
        {
            let mut unsettled = self.unsettled.lock().expect("never poisoned");
            unsettled.spooled = spooled_rows;
            unsettled.claimed_again = claimed_again.into_iter().flatten().collect();
        }
        self.metrics.rejected(rejected.len() as u64);
        self.report.update(|s| {
            s.spooled_events += spooled;
            s.rejected_rows += rejected.len() as u64;
            // Rows were claimed: this relay holds the table now.
            if s.state == "standby" {
                s.state = "reading";
            }
        });
        Ok(Settlement { done, rejected })
    }

    /// `ingest.outbox.<name>`, for messages.
    fn setting(&self) -> String {
        format!("ingest.outbox.{}", self.name)
    }

    fn failing(&self, error: &Failure) {
        self.metrics.error();
        tracing::warn!(outbox = self.name, "{error}; trying again");
        let error = error.to_string();
        self.report.update(|s| {
            s.state = "failing";
            s.error = Some(error);
        });
    }
}

impl Store {
    async fn connect(
        url: &str,
        outbox: &Outbox,
        on_spooled: OnSpooled,
        setting: &str,
    ) -> Result<Store, Failure> {
        match outbox.dialect() {
            Dialect::Postgres => postgres::Store::connect(url, outbox, on_spooled, setting)
                .await
                .map(Store::Postgres),
            Dialect::Sqlite => sqlite::Store::connect(url, outbox, on_spooled, setting)
                .await
                .map(Store::Sqlite),
        }
    }

    /// Where it reads, without secrets (`postgres 127.0.0.1:5432/app`).
    fn describe(&self) -> String {
        match self {
            Store::Postgres(store) => store.describe(),
            Store::Sqlite(store) => store.describe(),
        }
    }

    /// What the schema check found that works but is worse than it
    /// should be.
    fn warnings(&self) -> &[String] {
        match self {
            Store::Postgres(store) => store.warnings(),
            Store::Sqlite(store) => store.warnings(),
        }
    }

    async fn backlog(&mut self) -> Result<(u64, f64), sqlx::Error> {
        match self {
            Store::Postgres(store) => store.backlog().await,
            Store::Sqlite(store) => store.backlog().await,
        }
    }

    /// Waits until rows may have arrived, at most `longest`; `true` when
    /// `stop` came first.
    async fn wait(&mut self, longest: Duration, stop: &CancellationToken) -> bool {
        match self {
            Store::Postgres(store) => store.wait(longest, stop).await,
            Store::Sqlite(store) => store.wait(longest, stop).await,
        }
    }
}

/// A database error, said with what it means here.
fn database(error: sqlx::Error) -> Failure {
    Failure::Database(describe_error(&error, "ingest.outbox.<name>"))
}

/// sqlx's words, with the fix where the cause is known. Never the URL.
fn describe_error(error: &sqlx::Error, setting: &str) -> String {
    match error {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            let hint = match code.as_ref() {
                "28P01" | "28000" => format!(
                    " (check the user and password in {setting}.url; use ${{ENV}} for the password)"
                ),
                "3D000" => format!(" (the database in {setting}.url does not exist)"),
                "42P01" => {
                    " (the outbox table is missing: create it with `auditrelay outbox schema`)"
                        .to_owned()
                }
                _ => String::new(),
            };
            format!("the database refused: {}{hint}", db.message())
        }
        sqlx::Error::Io(io) => format!("cannot reach the database: {io}"),
        sqlx::Error::Tls(tls) => format!("TLS with the database failed: {tls}"),
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            "cannot reach the database (timed out)".to_owned()
        }
        other => format!("database error: {other}"),
    }
}

/// The problems of an outbox's two tables, from the column names each
/// has (none: the table does not exist); `fix` says how to create them.
fn table_problems(outbox: &Outbox, has: [&[String]; 2], fix: &str) -> Vec<String> {
    let tables = [
        (outbox.table().to_owned(), &OUTBOX_COLUMNS),
        (outbox.rejected_table(), &REJECTED_COLUMNS),
    ];
    let mut problems = Vec::new();
    for ((table, wanted), has) in tables.iter().zip(has) {
        if has.is_empty() {
            problems.push(format!("table {table} does not exist: {fix}"));
            continue;
        }
        let missing: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|c| !has.iter().any(|h| h == c))
            .collect();
        if !missing.is_empty() {
            problems.push(format!(
                "table {table} lacks column(s) {}: it is not an auditrelay outbox table ({fix})",
                missing.join(", ")
            ));
        }
    }
    problems
}

/// `text` with control characters written as `\u{..}`: a refusal may
/// quote a NUL from the row (an unknown key), which PostgreSQL text cannot
/// hold, and a log line must not be split or forged.
fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.push_str(&format!("\\u{{{:04x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Sleeps `duration`; `true` when `stop` came first.
async fn sleep_or_stop(duration: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(duration) => false,
        () = stop.cancelled() => true,
    }
}

/// What `auditrelay outbox check` finds for one configured outbox.
pub async fn check(name: &str, settings: &OutboxSettings) -> Result<(String, Vec<String>), String> {
    let dialect = Dialect::of_url(settings.url.expose()).ok_or("unknown URL scheme")?;
    let outbox = Outbox::with_table(dialect, &settings.table).map_err(|e| e.to_string())?;
    match Store::connect(
        settings.url.expose(),
        &outbox,
        settings.on_spooled,
        &format!("ingest.outbox.{name}"),
    )
    .await
    {
        Ok(store) => Ok((store.describe(), store.warnings().to_vec())),
        Err(error) => Err(error.to_string()),
    }
}
