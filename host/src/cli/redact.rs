//! `auditrelay redact test`: what the configured redaction rules do to
//! events, shown without a running relay.

use std::collections::BTreeMap;
use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;

use auditrelay_plugin_api::envelope::REDACTION_RECORD_KEY;

use crate::config::Config;
use crate::ingest::decode::{Format, decode};
use crate::redact::Redacted;
use crate::relay::Rules;

/// The redaction commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Read events (JSON, a JSON array or NDJSON) from a file or stdin and
    /// print each as it would be spooled, with what was redacted on stderr
    Test {
        /// The events; stdin when absent
        file: Option<std::path::PathBuf>,
    },
}

/// Runs a redaction command.
pub async fn redact(config: Config, command: Command) -> anyhow::Result<ExitCode> {
    let Command::Test { file } = command;
    let input = match file {
        Some(path) => std::fs::read(&path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
        None => {
            let mut bytes = Vec::new();
            std::io::stdin().read_to_end(&mut bytes)?;
            bytes
        }
    };
    let rules = Arc::new(Rules::of(&config).map_err(|problems| {
        let lines: Vec<String> = problems
            .iter()
            .map(|(k, m)| format!("  - {k}: {m}"))
            .collect();
        anyhow::anyhow!("the redaction rules are invalid:\n{}", lines.join("\n"))
    })?);
    let (records, refused) = decode(&input, format_of(&input), rules)?.into_parts();
    let mut by_rule: BTreeMap<String, usize> = BTreeMap::new();
    let mut redacted_events = 0;
    for record in &records {
        println!("{}", String::from_utf8_lossy(record.json()));
        let event: serde_json::Value = serde_json::from_slice(record.json())?;
        let Some(text) = event["metadata"][REDACTION_RECORD_KEY].as_str() else {
            continue;
        };
        redacted_events += 1;
        let done: Vec<serde_json::Value> = serde_json::from_str(text).unwrap_or_default();
        for entry in done {
            if let Ok(entry) = serde_json::from_value::<Redacted>(entry) {
                eprintln!(
                    "event {}: {} {} ({})",
                    event["id"].as_str().unwrap_or("?"),
                    entry.action,
                    entry.path,
                    entry.rule
                );
                *by_rule.entry(entry.rule).or_default() += 1;
            }
        }
    }
    for refusal in &refused {
        let problems: Vec<String> = refusal.errors.iter().map(|e| e.to_string()).collect();
        eprintln!("event {} refused: {}", refusal.index, problems.join("; "));
    }
    let rules: Vec<String> = by_rule
        .iter()
        .map(|(rule, n)| format!("{rule} {n}"))
        .collect();
    eprintln!(
        "{} events, {redacted_events} redacted{}{}",
        records.len() + refused.len(),
        if rules.is_empty() {
            String::new()
        } else {
            format!(" ({})", rules.join(", "))
        },
        if refused.is_empty() {
            String::new()
        } else {
            format!(", {} refused", refused.len())
        },
    );
    Ok(if refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A JSON array or one object (possibly over several lines), else NDJSON.
fn format_of(input: &[u8]) -> Format {
    let text = input.trim_ascii_start();
    if text.starts_with(b"[") || serde_json::from_slice::<serde::de::IgnoredAny>(input).is_ok() {
        Format::Json
    } else {
        Format::Ndjson
    }
}
