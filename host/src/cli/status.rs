//! `auditrelay status`

use std::process::ExitCode;

use bytesize::ByteSize;
use serde_json::Value;

use super::relay_api::{RelayApi, is_running};
use crate::config::Config;
use crate::dispatch::DeadLetters;
use crate::relay::dead_letter_dir;

/// Options of `auditrelay status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of a table
    #[arg(long)]
    json: bool,
}

/// Shows every enabled instance: the running relay's view, or what the
/// files of a stopped one say.
pub async fn status(config: Config, args: Args) -> anyhow::Result<ExitCode> {
    let running = is_running(&config);
    let (status, state) = if running {
        match RelayApi::new(&config)?
            .call(reqwest::Method::GET, "/v1/status")
            .await
        {
            Ok(status) => (status, "running"),
            Err(error) => {
                tracing::debug!(%error, "the running relay did not answer");
                (
                    offline(&config)?,
                    "running but not answering on HTTP (shutting down?); from its files",
                )
            }
        }
    } else {
        (offline(&config)?, "stopped")
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "relay: {state}; spool: {} event(s) not yet handled by every instance, {} on disk{}",
        status["spool_events"],
        ByteSize::b(status["spool_bytes"].as_u64().unwrap_or(0)),
        match status["spool_write_error"].as_str() {
            Some(error) => format!(", CANNOT WRITE: {error}"),
            None => String::new(),
        }
    );
    let header = [
        "instance",
        "state",
        "circuit",
        "delivered",
        "dead",
        "lag",
        "lag bytes",
        "last success",
        "last error",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for plugin in status["plugins"].as_array().into_iter().flatten() {
        let text = |key: &str| match &plugin[key] {
            Value::Null => "-".to_owned(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        rows.push(vec![
            text("instance"),
            text("state"),
            text("circuit"),
            text("delivered"),
            text("dead_letters"),
            text("lag_events"),
            ByteSize::b(plugin["lag_bytes"].as_u64().unwrap_or(0)).to_string(),
            text("last_success"),
            plugin["last_error"]
                .as_str()
                .or(plugin["error"].as_str())
                .map_or("-".to_owned(), |e| e.chars().take(80).collect()),
        ]);
    }
    print_table(&rows);
    let sources = status["sources"].as_array().cloned().unwrap_or_default();
    if !sources.is_empty() {
        println!();
        let mut rows = vec![
            [
                "source",
                "state",
                "spooled",
                "refused",
                "pending",
                "oldest pending",
                "error",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for source in &sources {
            let text = |key: &str| match &source[key] {
                Value::Null => "-".to_owned(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            rows.push(vec![
                text("name"),
                text("state"),
                text("spooled_events"),
                (source["rejected_rows"].as_u64().unwrap_or(0)
                    + source["refused_records"].as_u64().unwrap_or(0))
                .to_string(),
                match (
                    source["pending_rows"].as_u64(),
                    source["pending_bytes"].as_u64(),
                ) {
                    (Some(rows), _) => format!("{rows} rows"),
                    (None, Some(bytes)) => bytesize::ByteSize(bytes).to_string(),
                    (None, None) => "-".to_owned(),
                },
                source["oldest_pending_seconds"]
                    .as_f64()
                    .map_or("-".to_owned(), |s| format!("{s:.1}s")),
                source["error"]
                    .as_str()
                    .map_or("-".to_owned(), |e| e.chars().take(80).collect()),
            ]);
        }
        print_table(&rows);
    }
    Ok(ExitCode::SUCCESS)
}

/// The status of a stopped relay, from its spool and dead-letter files.
fn offline(config: &Config) -> anyhow::Result<Value> {
    let snapshot = crate::spool::inspect(&config.relay.data_dir.spool())?;
    let next_seq = snapshot.report.next_seq;
    let mut plugins = Vec::new();
    let mut oldest = next_seq;
    for (instance, _) in config.enabled_plugins() {
        let dead = DeadLetters::new(&dead_letter_dir(config), instance).list(0, 0)?;
        let cursor = snapshot.cursors.get(instance).copied();
        oldest = oldest.min(cursor.unwrap_or(next_seq));
        plugins.push(serde_json::json!({
            "instance": instance,
            "state": "stopped",
            "circuit": null,
            "delivered": null,
            "dead_letters": dead.total,
            "lag_events": cursor.map_or(0, |c| next_seq.saturating_sub(c)),
            "lag_bytes": null,
            "last_success": null,
            "last_error": if cursor.is_none() { Some("never ran: starts as its start_from says") } else { None },
        }));
    }
    Ok(serde_json::json!({
        "plugins": plugins,
        "spool_events": next_seq - oldest,
        "spool_bytes": snapshot.disk_bytes,
        "spool_write_error": null,
    }))
}

fn print_table(rows: &[Vec<String>]) {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}
