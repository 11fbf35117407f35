//! `auditrelay dlq list|show|replay|purge`

use std::process::ExitCode;

use anyhow::bail;

use super::relay_api::{RelayApi, is_running};
use crate::config::Config;
use crate::dispatch::DeadLetters;
use crate::relay::dead_letter_dir;

/// The dead-letter commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// How many dead letters each instance (or the named one) has
    List {
        /// One instance (default: every enabled one)
        instance: Option<String>,
    },
    /// An instance's dead letters: when, why, which event
    Show {
        /// The instance (`[plugins.<name>]`)
        instance: String,
        /// Most to show
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// How many to skip
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// Print each as JSON, event included
        #[arg(long)]
        json: bool,
    },
    /// Deliver an instance's dead letters again (once its plugin is fixed);
    /// those refused again become dead letters again
    Replay {
        /// The instance
        instance: String,
    },
    /// Delete an instance's dead letters for good
    Purge {
        /// The instance
        instance: String,
        /// Yes, delete them
        #[arg(long)]
        yes: bool,
    },
}

fn store(config: &Config, instance: &str) -> anyhow::Result<DeadLetters> {
    if !config.plugins.contains_key(instance) {
        let known: Vec<&str> = config.plugins.keys().map(String::as_str).collect();
        bail!(
            "no [plugins.{instance}] in {} (instances: {})",
            config.origin,
            known.join(", ")
        );
    }
    Ok(DeadLetters::new(&dead_letter_dir(config), instance))
}

/// Runs a dead-letter command.
pub async fn dlq(config: Config, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::List { instance } => {
            let names: Vec<String> = match instance {
                Some(name) => vec![name],
                None => config
                    .enabled_plugins()
                    .map(|(n, _)| n.to_owned())
                    .collect(),
            };
            for name in names {
                let listing = store(&config, &name)?.list(0, 0)?;
                let extra = match (listing.replaying, listing.damaged) {
                    (true, _) => " (a replay is under way or waits for the next start)".to_owned(),
                    (false, 0) => String::new(),
                    (false, n) => format!(" ({n} damaged line(s))"),
                };
                println!("{name}: {} dead letter(s){extra}", listing.total);
            }
        }
        Command::Show {
            instance,
            limit,
            offset,
            json,
        } => {
            let listing = store(&config, &instance)?.list(offset, limit)?;
            for entry in &listing.events {
                if json {
                    println!("{entry}");
                    continue;
                }
                let event = &entry["event"];
                println!(
                    "{}  seq {}  {} {} ({})\n    reason: {}",
                    entry["dead_lettered_at"].as_str().unwrap_or("?"),
                    entry["seq"],
                    event["type"].as_str().unwrap_or("?"),
                    event["id"].as_str().unwrap_or("?"),
                    event["source"].as_str().unwrap_or("?"),
                    entry["reason"].as_str().unwrap_or("?"),
                );
            }
            eprintln!(
                "{} of {} dead letter(s) of {instance}",
                listing.events.len(),
                listing.total
            );
        }
        Command::Replay { instance } => {
            let store = store(&config, &instance)?;
            if is_running(&config) {
                RelayApi::new(&config)?
                    .call(
                        reqwest::Method::POST,
                        &format!("/v1/dead-letters/{instance}/replay"),
                    )
                    .await?;
                println!(
                    "{instance}: replaying its dead letters now (watch `auditrelay dlq list {instance}`)"
                );
            } else {
                match store.begin_replay()? {
                    Some(replay) => println!(
                        "{instance}: {} dead letter(s) will be delivered again when the relay starts",
                        replay.len()
                    ),
                    None => println!("{instance}: no dead letters"),
                }
            }
        }
        Command::Purge { instance, yes } => {
            let store = store(&config, &instance)?;
            if !yes {
                let total = store.list(0, 0)?.total;
                bail!(
                    "this deletes {total} dead letter(s) of {instance} for good; add --yes to do it"
                );
            }
            let purged = if is_running(&config) {
                let answer = RelayApi::new(&config)?
                    .call(
                        reqwest::Method::DELETE,
                        &format!("/v1/dead-letters/{instance}"),
                    )
                    .await?;
                answer["purged"].as_u64().unwrap_or(0) as usize
            } else {
                store.purge()?
            };
            println!("{instance}: deleted {purged} dead letter(s)");
        }
    }
    Ok(ExitCode::SUCCESS)
}
