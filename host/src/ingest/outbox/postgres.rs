//! The outbox in PostgreSQL: rows claimed `FOR UPDATE SKIP LOCKED` in a
//! transaction that stays open until the spool holds them durably, one
//! reader per table (a session advisory lock), woken by `NOTIFY`.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use auditrelay_outbox::Outbox;
use sqlx::postgres::{PgConnectOptions, PgListener};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{
    Failure, Plan, Row, Settlement, database, describe_error, read_backlog, table_problems,
};
use crate::config::OnSpooled;

/// One connection that claims rows, and a listener that wakes it.
pub(super) struct Store {
    connection: PgConnection,
    /// Whether this connection holds the table's advisory lock.
    leader: bool,
    lock_key: String,
    where_: String,
    woken: Arc<Notify>,
    listener: tokio::task::JoinHandle<()>,
    warnings: Vec<String>,
    queries: Queries,
}

/// The statements of one table, written once.
struct Queries {
    claim: String,
    reject: String,
    settle: String,
    backlog: String,
}

impl Drop for Store {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl Store {
    pub async fn connect(
        url: &str,
        outbox: &Outbox,
        on_spooled: OnSpooled,
        setting: &str,
    ) -> Result<Store, Failure> {
        let options = PgConnectOptions::from_str(url)
            // The parser's message may quote the URL, password and all.
            .map_err(|_| {
                Failure::Database(format!(
                    "{setting}.url is not a PostgreSQL URL that could be parsed"
                ))
            })?
            .application_name("auditrelay outbox");
        let where_ = format!(
            "postgres {}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("(default database)")
        );
        let mut connection = PgConnection::connect_with(&options)
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
        let woken = Arc::new(Notify::new());
        let listener = tokio::spawn(listen(
            url.to_owned(),
            outbox.channel().to_owned(),
            woken.clone(),
        ));
        let table = outbox.table();
        let rejected = outbox.rejected_table();
        Ok(Store {
            connection,
            leader: false,
            lock_key: format!("auditrelay outbox {table}"),
            where_,
            woken,
            listener,
            warnings,
            queries: Queries {
                claim: format!(
                    "SELECT seq, CASE WHEN octet_length(envelope) <= $1 THEN convert_to(envelope, 'UTF8') END, octet_length(envelope)::BIGINT \
                     FROM {table} WHERE done_at IS NULL ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED"
                ),
                reject: format!(
                    "INSERT INTO {rejected} (seq, envelope, error, created_at) \
                     SELECT seq, envelope, $2, created_at FROM {table} WHERE seq = $1"
                ),
                settle: match on_spooled {
                    OnSpooled::Delete => format!("DELETE FROM {table} WHERE seq = ANY($1)"),
                    OnSpooled::MarkDone => {
                        format!("UPDATE {table} SET done_at = now() WHERE seq = ANY($1)")
                    }
                },
                backlog: format!(
                    "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::FLOAT8, 0) \
                     FROM (SELECT created_at FROM {table} WHERE done_at IS NULL ORDER BY seq LIMIT $1) AS waiting"
                ),
            },
        })
    }

    pub fn describe(&self) -> String {
        self.where_.clone()
    }

    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// One claim → spool → settle, in one transaction.
    pub async fn cycle<F, Fut>(&mut self, plan: &Plan, spool: F) -> Result<usize, Failure>
    where
        F: FnOnce(Vec<Row>) -> Fut,
        Fut: Future<Output = Result<Settlement, Failure>>,
    {
        if !self.leader {
            self.leader =
                sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
                    .bind(&self.lock_key)
                    .fetch_one(&mut self.connection)
                    .await
                    .map_err(database)?;
            if !self.leader {
                return Err(Failure::Standby);
            }
        }
        let mut tx = self.connection.begin().await.map_err(database)?;
        let rows: Vec<Row> = sqlx::query(AssertSqlSafe(self.queries.claim.as_str()))
            .bind(plan.read_limit)
            .bind(plan.batch)
            .fetch_all(&mut *tx)
            .await
            .map_err(database)?
            .iter()
            .map(Row::read)
            .collect::<Result<_, _>>()
            .map_err(database)?;
        if rows.is_empty() {
            tx.commit().await.map_err(database)?;
            return Ok(0);
        }
        // Counted before the budget: rows left for the next cycle mean
        // it comes at once.
        let taken = rows.len();
        let mut rows = rows;
        Row::within(&mut rows, plan.budget);
        // Dropping `tx` on an error rolls back: the rows stay.
        let settlement = spool(rows).await?;
        for (seq, why) in &settlement.rejected {
            sqlx::query(AssertSqlSafe(self.queries.reject.as_str()))
                .bind(seq)
                .bind(why)
                .execute(&mut *tx)
                .await
                .map_err(database)?;
        }
        sqlx::query(AssertSqlSafe(self.queries.settle.as_str()))
            .bind(&settlement.done)
            .execute(&mut *tx)
            .await
            .map_err(database)?;
        tx.commit().await.map_err(database)?;
        Ok(taken)
    }

    pub async fn backlog(&mut self) -> Result<(u64, f64), sqlx::Error> {
        let row = sqlx::query(AssertSqlSafe(self.queries.backlog.as_str()))
            .bind(super::BACKLOG_COUNT_LIMIT)
            .fetch_one(&mut self.connection)
            .await?;
        read_backlog(&row)
    }

    /// Until a `NOTIFY` (or one that came while the cycle ran), at most
    /// `longest`.
    pub async fn wait(&mut self, longest: Duration, stop: &CancellationToken) -> bool {
        tokio::select! {
            () = self.woken.notified() => false,
            () = tokio::time::sleep(longest) => false,
            () = stop.cancelled() => true,
        }
    }
}

/// Listens on the table's channel for as long as the store lives, and
/// wakes it on each notification. Losing the listener costs latency
/// only: the store also polls.
async fn listen(url: String, channel: String, woken: Arc<Notify>) {
    loop {
        let listening = async {
            let mut listener = PgListener::connect(&url).await?;
            listener.listen(&channel).await?;
            loop {
                listener.recv().await?;
                woken.notify_one();
            }
        };
        let result: Result<(), sqlx::Error> = listening.await;
        if let Err(error) = result {
            tracing::debug!(
                "outbox listener on {channel}: {}; listening again in 1s",
                describe_error(&error, "ingest.outbox")
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The table's problems (it cannot be read) and warnings (it can, worse).
pub(super) async fn inspect(
    connection: &mut PgConnection,
    outbox: &Outbox,
) -> Result<(Vec<String>, Vec<String>), sqlx::Error> {
    let columns = |table: String| {
        sqlx::query_scalar::<_, String>(
            "SELECT column_name::TEXT FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1",
        )
        .bind(table)
    };
    let fix = "create it with `auditrelay outbox schema --dialect postgres | psql`";
    let has_outbox = columns(outbox.table().to_owned())
        .fetch_all(&mut *connection)
        .await?;
    let has_rejected = columns(outbox.rejected_table())
        .fetch_all(&mut *connection)
        .await?;
    let mut problems = table_problems(outbox, [&has_outbox, &has_rejected], fix);
    // The relay deletes (or marks) what it spooled, and moves refused
    // rows aside: without those rights it would spool the same rows again
    // and again.
    if problems.is_empty() {
        let (outbox_rights, rejected_rights): (bool, bool) = sqlx::query_as(
            "SELECT has_table_privilege($1, 'SELECT, UPDATE, DELETE'), has_table_privilege($2, 'INSERT')",
        )
        .bind(outbox.table())
        .bind(outbox.rejected_table())
        .fetch_one(&mut *connection)
        .await?;
        if !outbox_rights || !rejected_rights {
            problems.push(format!(
                "the relay's user needs SELECT, UPDATE and DELETE on {} and INSERT on {} (it deletes or marks the rows it spooled, and moves refused ones aside): GRANT them",
                outbox.table(),
                outbox.rejected_table()
            ));
        }
    }
    let mut warnings = Vec::new();
    let trigger: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
         WHERE c.relname = $1 AND t.tgname = $2 AND NOT t.tgisinternal",
    )
    .bind(outbox.table())
    .bind(format!("{}_notify", outbox.table()))
    .fetch_optional(&mut *connection)
    .await?;
    if trigger.is_none() && problems.is_empty() {
        warnings.push(format!(
            "table {} has no {}_notify trigger: new rows are found by polling only (every poll_interval); `auditrelay outbox schema` creates it",
            outbox.table(),
            outbox.table()
        ));
    }
    Ok((problems, warnings))
}
