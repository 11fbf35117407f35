//! `auditrelay outbox schema` and `auditrelay outbox check`

use std::process::ExitCode;

use auditrelay_outbox::{DEFAULT_TABLE, Dialect, Outbox};

use crate::config::Config;

/// The outbox commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print the DDL that creates an outbox table (run it with psql or
    /// sqlite3, or put it in the application's migrations)
    Schema {
        /// `postgres` or `sqlite`
        #[arg(long)]
        dialect: Dialect,
        /// The table's name
        #[arg(long, default_value = DEFAULT_TABLE)]
        table: String,
    },
    /// Connect to every outbox in the configuration (or the one named) and
    /// check that its tables are there and readable; exits 1 with the
    /// problems if not
    Check {
        /// Only this `[ingest.outbox.<name>]`
        name: Option<String>,
    },
}

/// Runs an outbox command.
pub async fn outbox(config: Config, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Schema { dialect, table } => {
            let outbox = Outbox::with_table(dialect, &table)?;
            print!("{}", outbox.schema());
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { name } => {
            let outboxes: Vec<_> = config
                .ingest
                .outbox
                .iter()
                .filter(|(n, _)| name.as_ref().is_none_or(|name| name == *n))
                .collect();
            if outboxes.is_empty() {
                anyhow::bail!(
                    "{}: {}",
                    config.origin,
                    match name {
                        Some(name) => format!("there is no [ingest.outbox.{name}]"),
                        None => "no [ingest.outbox.<name>] is configured".to_owned(),
                    }
                );
            }
            let mut ok = true;
            for (name, settings) in outboxes {
                match crate::ingest::outbox::check(name, settings).await {
                    Ok((place, warnings)) => {
                        println!(
                            "ingest.outbox.{name}: ok ({place}, table {})",
                            settings.table
                        );
                        for warning in warnings {
                            println!("  warning: {warning}");
                        }
                    }
                    Err(problem) => {
                        ok = false;
                        println!("ingest.outbox.{name}: {problem}");
                    }
                }
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
