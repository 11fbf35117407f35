//! The outbox in SQLite (WAL mode, the application on the same machine):
//! committed rows read outside any write lock, settled in one short
//! `BEGIN IMMEDIATE` transaction once the spool holds them durably, so the
//! application's writers never wait for the relay's disk. One relay per
//! database file: a lock file beside it.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use auditrelay_outbox::Outbox;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AssertSqlSafe, Connection, SqliteConnection};

use tokio_util::sync::CancellationToken;

use super::{
    Failure, Plan, Row, Settlement, database, describe_error, read_backlog, table_problems,
};
use crate::config::OnSpooled;

/// After a cycle the table is looked at this often, [`QUICK_LOOKS`]
/// times (rows tend to come in runs); then ever less often, up to
/// `poll_interval`. A look is one `PRAGMA data_version`: microseconds.
const FIRST_LOOK: Duration = Duration::from_millis(1);
const QUICK_LOOKS: u32 = 20;
/// How long the application's lock may hold up a settle.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// One connection, and the lock file once this relay reads the table.
pub(super) struct Store {
    connection: SqliteConnection,
    path: PathBuf,
    lock: Option<File>,
    /// `PRAGMA data_version` when last looked: it changes when another
    /// connection commits.
    version: i64,
    warnings: Vec<String>,
    claim: String,
    reject: String,
    settle: String,
    backlog: String,
}

impl Store {
    pub async fn connect(
        url: &str,
        outbox: &Outbox,
        on_spooled: OnSpooled,
        setting: &str,
    ) -> Result<Store, Failure> {
        let options = SqliteConnectOptions::from_str(url)
            // The parser's message may quote the URL.
            .map_err(|_| {
                Failure::Database(format!(
                    "{setting}.url is not a SQLite URL that could be parsed (sqlite:///path/app.db)"
                ))
            })?
            // The application creates its database and the table; a
            // missing file is a wrong path, not a new outbox.
            .create_if_missing(false)
            .busy_timeout(BUSY_TIMEOUT);
        let path = options.get_filename().to_owned();
        let where_ = format!("sqlite {}", path.display());
        let mut connection = SqliteConnection::connect_with(&options)
            .await
            .map_err(|e| Failure::Database(format!("{where_}: {}", describe_error(&e, setting))))?;
        let (problems, warnings) = inspect(&mut connection, outbox)
            .await
            .map_err(|e| Failure::Database(format!("{where_}: {}", describe_error(&e, setting))))?;
        if !problems.is_empty() {
            return Err(Failure::Database(format!(
                "{where_}: {}",
                problems.join("; ")
            )));
        }
        let table = outbox.table();
        let rejected = outbox.rejected_table();
        Ok(Store {
            connection,
            path,
            lock: None,
            version: -1,
            warnings,
            claim: format!(
                // As bytes: SQLite lets a TEXT column hold a BLOB, invalid
                // UTF-8 or a number; each is read, and refused if need be.
                "SELECT seq, CASE WHEN length(CAST(envelope AS BLOB)) <= ?1 THEN CAST(envelope AS BLOB) END, \
                 length(CAST(envelope AS BLOB)) FROM {table} WHERE done_at IS NULL ORDER BY seq LIMIT ?2"
            ),
            reject: format!(
                "INSERT INTO {rejected} (seq, envelope, error, created_at) \
                 SELECT seq, envelope, ?2, created_at FROM {table} WHERE seq = ?1"
            ),
            settle: match on_spooled {
                OnSpooled::Delete => {
                    format!("DELETE FROM {table} WHERE seq IN (SELECT value FROM json_each(?1))")
                }
                OnSpooled::MarkDone => format!(
                    "UPDATE {table} SET done_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
                     WHERE seq IN (SELECT value FROM json_each(?1))"
                ),
            },
            backlog: format!(
                "SELECT count(*), COALESCE((julianday('now') - julianday(min(created_at))) * 86400.0, 0.0) \
                 FROM (SELECT created_at FROM {table} WHERE done_at IS NULL ORDER BY seq LIMIT ?1)"
            ),
        })
    }

    pub fn describe(&self) -> String {
        format!("sqlite {}", self.path.display())
    }

    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// One read → spool → settle.
    pub async fn cycle<F, Fut>(&mut self, plan: &Plan, spool: F) -> Result<usize, Failure>
    where
        F: FnOnce(Vec<Row>) -> Fut,
        Fut: Future<Output = Result<Settlement, Failure>>,
    {
        if self.lock.is_none() {
            self.lock = Some(self.take_lock()?);
        }
        // SQLite has one writer at a time, so a row's seq order is its
        // commit order, and every row read here is committed.
        let rows: Vec<Row> = sqlx::query(AssertSqlSafe(self.claim.as_str()))
            .bind(plan.read_limit)
            .bind(plan.batch)
            .fetch_all(&mut self.connection)
            .await
            .map_err(database)?
            .iter()
            .map(Row::read)
            .collect::<Result<_, _>>()
            .map_err(database)?;
        if rows.is_empty() {
            return Ok(0);
        }
        // Counted before the budget: rows left for the next cycle mean
        // it comes at once.
        let taken = rows.len();
        let mut rows = rows;
        Row::within(&mut rows, plan.budget);
        let settlement = spool(rows).await?;
        let done = format!(
            "[{}]",
            settlement
                .done
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
        let mut tx = self
            .connection
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(database)?;
        for (seq, why) in &settlement.rejected {
            sqlx::query(AssertSqlSafe(self.reject.as_str()))
                .bind(seq)
                .bind(why)
                .execute(&mut *tx)
                .await
                .map_err(database)?;
        }
        sqlx::query(AssertSqlSafe(self.settle.as_str()))
            .bind(done)
            .execute(&mut *tx)
            .await
            .map_err(database)?;
        tx.commit().await.map_err(database)?;
        Ok(taken)
    }

    pub async fn backlog(&mut self) -> Result<(u64, f64), sqlx::Error> {
        let row = sqlx::query(AssertSqlSafe(self.backlog.as_str()))
            .bind(super::BACKLOG_COUNT_LIMIT)
            .fetch_one(&mut self.connection)
            .await?;
        read_backlog(&row)
    }

    /// Until another connection commits, looking more slowly the longer
    /// nothing happens, at most `longest`.
    pub async fn wait(&mut self, longest: Duration, stop: &CancellationToken) -> bool {
        let started = tokio::time::Instant::now();
        let mut pause = FIRST_LOOK.min(longest);
        for look in 1.. {
            if super::sleep_or_stop(pause, stop).await {
                return true;
            }
            match sqlx::query_scalar::<_, i64>("PRAGMA data_version")
                .fetch_one(&mut self.connection)
                .await
            {
                Ok(version) if version != self.version => {
                    self.version = version;
                    return false;
                }
                Ok(_) => {}
                // The cycle will meet the error and say it.
                Err(_) => return false,
            }
            if started.elapsed() >= longest {
                return false;
            }
            if look >= QUICK_LOOKS {
                pause = (pause * 2).min(longest);
            }
        }
        unreachable!("the looks end by returning")
    }

    /// The lock file beside the database, held while this relay reads it.
    fn take_lock(&self) -> Result<File, Failure> {
        let mut name = self.path.clone().into_os_string();
        name.push("-auditrelay.lock");
        let path = PathBuf::from(name);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| {
                Failure::Database(format!(
                    "cannot open the lock file {}: {e} (the relay needs to write beside the database)",
                    path.display()
                ))
            })?;
        // SAFETY: flock on a descriptor this function owns.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked == 0 {
            Ok(file)
        } else {
            Err(Failure::Standby)
        }
    }
}

/// The table's problems (it cannot be read) and warnings (it can, worse).
pub(super) async fn inspect(
    connection: &mut SqliteConnection,
    outbox: &Outbox,
) -> Result<(Vec<String>, Vec<String>), sqlx::Error> {
    let fix = "create it with `auditrelay outbox schema --dialect sqlite | sqlite3 app.db`";
    let columns = |table: String| {
        sqlx::query_scalar::<_, String>("SELECT name FROM pragma_table_info(?1)").bind(table)
    };
    let has_outbox = columns(outbox.table().to_owned())
        .fetch_all(&mut *connection)
        .await?;
    let has_rejected = columns(outbox.rejected_table())
        .fetch_all(&mut *connection)
        .await?;
    let mut problems = table_problems(outbox, [&has_outbox, &has_rejected], fix);
    // The relay deletes (or marks) what it spooled: a database it may
    // only read would have it spool the same rows again and again.
    // A write is tried (and rolled back): a read-only connection or file
    // only says so when written to.
    let probe = format!(
        "BEGIN IMMEDIATE; INSERT INTO {} (seq, error, created_at) VALUES (-1, 'write probe', ''); ROLLBACK",
        outbox.rejected_table()
    );
    if problems.is_empty()
        && let Err(error) = sqlx::raw_sql(AssertSqlSafe(probe))
            .execute(&mut *connection)
            .await
    {
        // The failed statement leaves the transaction open.
        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *connection).await;
        problems.push(format!(
            "the relay cannot write to the database, and it must delete or mark the rows it spooled: {}",
            super::describe_error(&error, "ingest.outbox.<name>")
        ));
    }
    let mut warnings = Vec::new();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut *connection)
        .await?;
    if !mode.eq_ignore_ascii_case("wal") {
        warnings.push(format!(
            "the database is in journal_mode {mode}, not WAL: the relay's reads and the application's writes wait for each other (`PRAGMA journal_mode = WAL` once fixes it)"
        ));
    }
    Ok((problems, warnings))
}
