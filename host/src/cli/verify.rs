//! `auditrelay verify`: checks an export — the files a destination holds —
//! with the public key alone, or checks one proof `auditrelay prove` made.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::Config;
use crate::integrity::proof::Proof;
use crate::integrity::verify::{Verified, Verifier, input};

use super::keys::verifier_keys;

/// What `verify` reads.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Export files or directories: NDJSON, gzip or zstd, e.g. a bucket
    /// mirrored with `aws s3 sync` (directories are read in name order)
    #[arg(required_unless_present = "proof", value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// A public key (`name+id+key`), or a file of them one per line; repeat
    /// for every key of the period (rotation). Default: the public half of
    /// the configured integrity.key_file
    #[arg(long = "key", value_name = "KEY|FILE")]
    keys: Vec<String>,
    /// The export is a window of each stream, not all of it: events before
    /// the first one present are not reported missing
    #[arg(long)]
    partial: bool,
    /// Every stream must have a checkpoint signed at or after this time
    /// (RFC 3339, e.g. when the export was taken): without it, removing a
    /// log's newest checkpoints and the events after them looks like a
    /// shorter log
    #[arg(long, value_name = "TIME")]
    until: Option<jiff::Timestamp>,
    /// The export holds only these streams (comma-separated; a plugin
    /// whose filter.tenants lets only these through): each must be there,
    /// in every round, instead of every stream the relay signed
    #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
    streams: Option<Vec<String>>,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
    /// Check one proof file made by `auditrelay prove` ("-": stdin)
    /// instead of an export
    #[arg(long, value_name = "FILE", conflicts_with_all = ["paths", "partial", "until", "streams"])]
    proof: Option<PathBuf>,
}

/// Runs `verify`: exit 0 when everything holds, 1 on any problem found,
/// 2 when the export, the proof or the keys cannot be read (so a script
/// tells "tampered" from "could not check").
pub fn verify(config: Config, args: Args) -> anyhow::Result<ExitCode> {
    match checked(config, args) {
        Ok(code) => Ok(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            Ok(ExitCode::from(2))
        }
    }
}

fn checked(config: Config, args: Args) -> anyhow::Result<ExitCode> {
    let keys = verifier_keys(&config, &args.keys)?;
    if let Some(path) = &args.proof {
        return check_proof(path, &keys, args.json);
    }
    let verifier = Verifier::new(keys)
        .partial(args.partial)
        .until(args.until)
        .streams(args.streams);
    let verified = read(&args.paths, verifier)?;
    let report = &verified.report;
    if args.json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(if !report.unread_files.is_empty() {
        eprintln!(
            "error: {} file{} could not be read to the end, so the export was not checked whole: {}",
            report.unread_files.len(),
            if report.unread_files.len() == 1 {
                ""
            } else {
                "s"
            },
            report.unread_files.join(", ")
        );
        ExitCode::from(2)
    } else if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Reads every export file `paths` name into `verifier` and checks them;
/// paths that cannot be found fail first, all named at once.
pub(super) fn read(paths: &[PathBuf], mut verifier: Verifier) -> anyhow::Result<Verified> {
    let files = input::expand(paths)
        .map_err(|errors| anyhow::anyhow!("cannot read the export:\n  {}", errors.join("\n  ")))?;
    if files.is_empty() {
        anyhow::bail!(
            "no export files under {} (files ending in .ndjson, .jsonl, .json, .gz or .zst are read)",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let bar = super::spinner(format!("verifying {} files", files.len()));
    for file in &files {
        verifier.read_path(file);
    }
    bar.finish_and_clear();
    Ok(verifier.finish())
}

fn check_proof(
    path: &std::path::Path,
    keys: &[crate::integrity::note::VerifierKey],
    json: bool,
) -> anyhow::Result<ExitCode> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read the proof {}: {e}", path.display()))?
    };
    let proof: Proof = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a proof made by `auditrelay prove`: {e}",
            path.display()
        )
    })?;
    let checked = proof.check(keys);
    if json {
        let value = match &checked {
            Ok(proven) => serde_json::json!({"ok": true, "proves": proven.0}),
            Err(problems) => serde_json::json!({"ok": false, "problems": problems}),
        };
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        match &checked {
            Ok(proven) => println!("ok: {}", proven.0),
            Err(problems) => {
                println!("PROOF FAILS:");
                for problem in problems {
                    println!("  - {problem}");
                }
            }
        }
    }
    Ok(if checked.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
