//! `auditrelay spool verify`

use std::process::ExitCode;

use crate::config::Config;

/// The spool commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Check every record's checksum and that every acknowledged record is
    /// there; exits 1 if anything is damaged, missing or lost, now or as
    /// recorded at an earlier start (safe while the relay runs)
    Verify,
}

/// Runs a spool command.
pub async fn spool(config: Config, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Verify => {
            let dir = config.relay.data_dir.spool();
            let spinner = super::spinner(format!("reading {}", dir.display()));
            let snapshot = tokio::task::spawn_blocking(move || crate::spool::inspect(&dir)).await?;
            spinner.finish_and_clear();
            let report = snapshot?.report;
            println!("{report}");
            println!("checked in {:.0} ms", report.elapsed.as_secs_f64() * 1000.0);
            let lost = report.lost_records();
            if report.is_clean() {
                println!("the spool is intact: every acknowledged record is there");
                Ok(ExitCode::SUCCESS)
            } else if report.findings().is_empty() {
                println!(
                    "nothing is wrong on disk now, but {} finding(s) from earlier starts are on record (listed above, in spool/findings.ndjson); move that file away once they are dealt with",
                    report.earlier.len()
                );
                Ok(ExitCode::FAILURE)
            } else if lost == 0 {
                println!(
                    "the spool is damaged, but no record a plugin instance still needs was lost"
                );
                Ok(ExitCode::FAILURE)
            } else {
                println!(
                    "{lost} record(s) that a plugin instance still needed are lost; the relay skips them and delivers the rest"
                );
                Ok(ExitCode::FAILURE)
            }
        }
    }
}
