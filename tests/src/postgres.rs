//! A real PostgreSQL server for the outbox tests: a throw-away cluster per
//! test, started by the repository's own `scripts/start-postgres` (Debian's
//! `postgresql` package; `.ci/run` installs it) on 127.0.0.1, and stopped
//! when dropped.

use std::path::Path;
use std::process::Command;

use tempfile::TempDir;

/// A running cluster; dropping it stops it (a fast shutdown).
pub struct Postgres {
    admin_url: String,
    pid: i32,
    _dir: TempDir,
}

impl Postgres {
    /// Starts a cluster (about a second). Panics, naming the package, when
    /// PostgreSQL is not installed: these tests never skip silently.
    pub fn start() -> Postgres {
        // Under /tmp: the server runs as the user `postgres`, which must
        // reach the directory.
        let dir = tempfile::Builder::new()
            .prefix("auditrelay-pg")
            .tempdir_in("/tmp")
            .unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/start-postgres");
        let output = Command::new(script).arg(dir.path()).output().unwrap();
        assert!(
            output.status.success(),
            "starting PostgreSQL failed (install it with `apt-get install -y postgresql`; .ci/run does):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8(output.stdout).unwrap();
        let value = |key: &str| {
            stdout
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .unwrap_or_else(|| panic!("start-postgres printed no {key}: {stdout}"))
                .to_owned()
        };
        Postgres {
            admin_url: value("PG_URL="),
            pid: value("PG_PID=").parse().unwrap(),
            _dir: dir,
        }
    }

    /// A new, empty database; its URL (with the password).
    pub async fn database(&self, name: &str) -> String {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        self.url_of(name)
    }

    /// Drops a database, closing its connections (the relay's too).
    pub async fn drop_database(&self, name: &str) {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await
        .unwrap();
    }

    /// The URL of database `name`, as the superuser.
    pub fn url_of(&self, name: &str) -> String {
        let (server, _) = self.admin_url.rsplit_once('/').unwrap();
        format!("{server}/{name}")
    }

    /// The superuser's password (what must never show in the relay's
    /// output).
    pub fn password(&self) -> &'static str {
        "pg-Test-4f1d9e"
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SAFETY: a signal to the cluster's postmaster.
        unsafe { libc::kill(self.pid, libc::SIGINT) };
        // Wait (briefly) for it to go, so the directory can be removed.
        for _ in 0..100 {
            // SAFETY: signal 0 only asks whether the process exists.
            if unsafe { libc::kill(self.pid, 0) } != 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}
