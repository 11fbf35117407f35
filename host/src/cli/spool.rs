//! `auditrelay spool verify`

use std::process::ExitCode;

use crate::config::Config;

/// The spool commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Check every record's checksum; exits 1 if anything is damaged or
    /// missing (safe while the relay runs)
    Verify,
}

/// Runs a spool command.
pub async fn spool(config: Config, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Verify => {
            let dir = config.relay.data_dir.join("spool");
            let spinner = super::spinner(format!("reading {}", dir.display()));
            let snapshot = tokio::task::spawn_blocking(move || crate::spool::inspect(&dir)).await?;
            spinner.finish_and_clear();
            let report = snapshot?.report;
            println!("{report}");
            println!("checked in {:.0} ms", report.elapsed.as_secs_f64() * 1000.0);
            if report.is_clean() {
                println!("the spool is intact");
                Ok(ExitCode::SUCCESS)
            } else {
                println!(
                    "the spool is damaged: {} record(s) lost; the relay skips them and delivers the rest",
                    report.lost_records()
                );
                Ok(ExitCode::FAILURE)
            }
        }
    }
}
