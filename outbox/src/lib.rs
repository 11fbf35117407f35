//! The auditrelay outbox: audit events written **in the application's own
//! database transaction**, read by the relay after they commit.
//!
//! An event emitted after `COMMIT` is lost when the process dies between
//! the two; one emitted before describes a change that may roll back. An
//! outbox row has neither problem: it commits or rolls back with the change
//! it describes, and the relay (`[ingest.outbox.<name>]`) spools it, waits
//! until it is durable, and only then deletes it (or marks it done).
//!
//! This crate is the table's contract, for applications and the relay
//! alike: [`Outbox::schema`] is the DDL (also `auditrelay outbox schema`),
//! [`Outbox::insert_sql`] the one statement an application in any language
//! runs in its transaction, and, with the `postgres` / `sqlite` features,
//! [`Outbox::write_postgres`] / [`Outbox::write_sqlite`] run it on a
//! [`sqlx`] transaction after validating the event.
//!
//! ```
//! use auditrelay_outbox::{Dialect, Outbox};
//!
//! let outbox = Outbox::new(Dialect::Postgres);
//! assert_eq!(outbox.insert_sql(), "INSERT INTO auditrelay_outbox (envelope) VALUES ($1)");
//! assert!(outbox.schema().contains("CREATE TABLE IF NOT EXISTS auditrelay_outbox_rejected"));
//! ```

use std::fmt;

use auditrelay_plugin_api::envelope::{AuditEventEnvelope, Limits, ValidationErrors};

/// The table name used unless configured otherwise.
pub const DEFAULT_TABLE: &str = "auditrelay_outbox";

/// Longest table name: the rejected table and the trigger add a suffix,
/// and PostgreSQL identifiers end at 63 bytes.
const MAX_TABLE_NAME: usize = 48;

/// The database an outbox lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// PostgreSQL 12 or later: rows claimed with `FOR UPDATE SKIP LOCKED`,
    /// a statement trigger sends `NOTIFY` on commit.
    Postgres,
    /// SQLite 3.35 or later in WAL mode, the application and the relay on
    /// one machine.
    Sqlite,
}

impl Dialect {
    /// The dialect a connection URL names (`postgres://`, `postgresql://`,
    /// `sqlite:`).
    pub fn of_url(url: &str) -> Option<Dialect> {
        let scheme = url.split_once(':')?.0;
        match scheme {
            "postgres" | "postgresql" => Some(Dialect::Postgres),
            "sqlite" => Some(Dialect::Sqlite),
            _ => None,
        }
    }

    /// `postgres` or `sqlite`.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::Sqlite => "sqlite",
        }
    }
}

impl std::str::FromStr for Dialect {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "postgres" | "postgresql" => Ok(Dialect::Postgres),
            "sqlite" => Ok(Dialect::Sqlite),
            other => Err(format!(
                "unknown dialect {other:?}: use \"postgres\" or \"sqlite\""
            )),
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A table name that is not a plain lower-case SQL identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "outbox table name {0:?} is not allowed: use 1 to {MAX_TABLE_NAME} lower-case letters, digits and underscores, starting with a letter or underscore"
)]
pub struct TableNameError(pub String);

/// An event that could not be written to the outbox.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The event breaks the envelope's rules: nothing was written, and the
    /// transaction can still commit (or roll back) as the caller decides.
    #[error("the audit event is invalid: {0}")]
    Invalid(#[from] ValidationErrors),
    /// The database refused the `INSERT`: the transaction should roll back.
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    #[error("writing the audit event to the outbox failed: {0}")]
    Database(#[from] sqlx::Error),
}

/// One outbox table in one dialect: its DDL, its `INSERT`, and writing
/// events into it.
#[derive(Debug, Clone)]
pub struct Outbox {
    dialect: Dialect,
    table: String,
    insert: String,
    limits: Limits,
}

impl Outbox {
    /// The table [`DEFAULT_TABLE`] in `dialect`.
    pub fn new(dialect: Dialect) -> Outbox {
        Outbox::with_table(dialect, DEFAULT_TABLE).expect("the default name is valid")
    }

    /// Another table name (for several outboxes in one database).
    pub fn with_table(dialect: Dialect, table: &str) -> Result<Outbox, TableNameError> {
        check_table_name(table)?;
        let placeholder = match dialect {
            Dialect::Postgres => "$1",
            Dialect::Sqlite => "?1",
        };
        Ok(Outbox {
            dialect,
            table: table.to_owned(),
            insert: format!("INSERT INTO {table} (envelope) VALUES ({placeholder})"),
            limits: Limits::default(),
        })
    }

    /// Validates against these limits (the relay's `relay.max_event_bytes`
    /// and friends) instead of the defaults, so that an event the relay
    /// would refuse is refused in the application's transaction already.
    pub fn limits(mut self, limits: Limits) -> Outbox {
        self.limits = limits;
        self
    }

    /// The dialect.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Where the relay moves rows whose envelope it refuses, with why.
    pub fn rejected_table(&self) -> String {
        format!("{}_rejected", self.table)
    }

    /// The PostgreSQL `NOTIFY` channel the table's trigger signals on
    /// commit (the table's name).
    pub fn channel(&self) -> &str {
        &self.table
    }

    /// The statement that writes one event: bind the envelope's JSON (a
    /// string) as its only parameter, in the same transaction as the change
    /// it records.
    pub fn insert_sql(&self) -> &str {
        &self.insert
    }

    /// The envelope as the outbox stores it: validated, canonical JSON.
    pub fn row(&self, event: &AuditEventEnvelope) -> Result<String, ValidationErrors> {
        let json = event.to_validated_json(&self.limits)?;
        Ok(String::from_utf8(json).expect("canonical JSON is UTF-8"))
    }

    /// The DDL that creates the table, its index, the rejected table and
    /// (PostgreSQL) the `NOTIFY` trigger. Safe to run again: every
    /// statement is `IF NOT EXISTS` or `OR REPLACE`.
    pub fn schema(&self) -> String {
        let table = &self.table;
        let rejected = self.rejected_table();
        match self.dialect {
            Dialect::Postgres => format!(
                "\
-- auditrelay outbox ({table}). Applications insert one row per audit event in
-- the transaction that makes the change:
--   INSERT INTO {table} (envelope) VALUES ($1)
-- The relay spools committed rows, waits until they are durable, then deletes
-- them (or sets done_at, with on_spooled = \"mark_done\").
CREATE TABLE IF NOT EXISTS {table} (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    envelope   TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    done_at    TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS {table}_pending ON {table} (seq) WHERE done_at IS NULL;
-- Rows whose envelope the relay refused, with why; never dropped silently.
-- Keyed by its own id: seq numbers can repeat if the outbox table is recreated.
CREATE TABLE IF NOT EXISTS {rejected} (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq         BIGINT NOT NULL,
    envelope    TEXT,
    error       TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    rejected_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Wakes the relay on commit (notifications are delivered only then); the
-- relay also polls, so a lost notification costs latency, never events.
CREATE OR REPLACE FUNCTION {table}_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{table}', '');
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER {table}_notify AFTER INSERT ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION {table}_notify();
"
            ),
            Dialect::Sqlite => format!(
                "\
-- auditrelay outbox ({table}). Applications insert one row per audit event in
-- the transaction that makes the change:
--   INSERT INTO {table} (envelope) VALUES (?1)
-- The relay spools committed rows, waits until they are durable, then deletes
-- them (or sets done_at, with on_spooled = \"mark_done\").
-- WAL lets the relay read while the application writes.
PRAGMA journal_mode = WAL;
-- AUTOINCREMENT: a sequence number is never used twice, even after deletes.
CREATE TABLE IF NOT EXISTS {table} (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    envelope   TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    done_at    TEXT
);
CREATE INDEX IF NOT EXISTS {table}_pending ON {table} (seq) WHERE done_at IS NULL;
-- Rows whose envelope the relay refused, with why; never dropped silently.
-- Keyed by its own id: seq numbers can repeat if the outbox table is recreated.
CREATE TABLE IF NOT EXISTS {rejected} (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    seq         INTEGER NOT NULL,
    envelope    TEXT,
    error       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    rejected_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
"
            ),
        }
    }
}

#[cfg(feature = "postgres")]
impl Outbox {
    /// Validates `event` and inserts it on `connection` — pass the
    /// application's transaction (`&mut *tx`), so the row commits or rolls
    /// back with the change it records.
    pub async fn write_postgres(
        &self,
        connection: &mut sqlx::PgConnection,
        event: &AuditEventEnvelope,
    ) -> Result<(), WriteError> {
        debug_assert_eq!(self.dialect, Dialect::Postgres);
        let row = self.row(event)?;
        // The table name is a checked identifier; the event is bound.
        sqlx::query(sqlx::AssertSqlSafe(self.insert.as_str()))
            .bind(row)
            .execute(connection)
            .await?;
        Ok(())
    }
}

#[cfg(feature = "sqlite")]
impl Outbox {
    /// Validates `event` and inserts it on `connection` — pass the
    /// application's transaction (`&mut *tx`), so the row commits or rolls
    /// back with the change it records.
    pub async fn write_sqlite(
        &self,
        connection: &mut sqlx::SqliteConnection,
        event: &AuditEventEnvelope,
    ) -> Result<(), WriteError> {
        debug_assert_eq!(self.dialect, Dialect::Sqlite);
        let row = self.row(event)?;
        // The table name is a checked identifier; the event is bound.
        sqlx::query(sqlx::AssertSqlSafe(self.insert.as_str()))
            .bind(row)
            .execute(connection)
            .await?;
        Ok(())
    }
}

fn check_table_name(name: &str) -> Result<(), TableNameError> {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
    let rest_ok = bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if first_ok && rest_ok && name.len() <= MAX_TABLE_NAME {
        Ok(())
    } else {
        Err(TableNameError(name.to_owned()))
    }
}

#[cfg(test)]
mod tests;
