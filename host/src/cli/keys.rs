//! `auditrelay keys`: the Ed25519 key that signs checkpoints.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::Config;
use crate::integrity::keys;
use crate::integrity::note::VerifierKey;

/// The key commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Make a new signing key (mode 0600; never overwrites one) and print
    /// its public half
    Generate {
        /// Where to write it; `integrity.key_file` (or its default) when absent
        #[arg(long)]
        out: Option<PathBuf>,
        /// The key's name (no spaces or '+'); `integrity.log` when absent
        #[arg(long)]
        name: Option<String>,
    },
    /// Print the public key that verifies the relay's checkpoints: give it
    /// to whoever runs `auditrelay verify`
    Public {
        /// The signing key file; `integrity.key_file` (or its default) when absent
        file: Option<PathBuf>,
    },
}

/// Runs a key command.
pub fn keys(config: Config, command: Command) -> anyhow::Result<ExitCode> {
    let configured = config.integrity.key_path(&config.relay.data_dir);
    match command {
        Command::Generate { out, name } => {
            let path = out.unwrap_or(configured);
            let name = name.unwrap_or_else(|| config.integrity.log.clone());
            keys::check_log_name(&name).map_err(anyhow::Error::msg)?;
            let key = keys::generate(&path, &name)?;
            eprintln!("wrote a signing key to {} (keep it secret)", path.display());
            println!("{}", key.verifier().to_text());
        }
        Command::Public { file } => {
            let key = keys::load(&file.unwrap_or(configured))?;
            println!("{}", key.verifier().to_text());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The public keys a verifier trusts: each `--key` given (a public key's
/// text, or a file holding public keys one per line, or a signing key
/// file), else the public half of the configured signing key.
pub(super) fn verifier_keys(config: &Config, given: &[String]) -> anyhow::Result<Vec<VerifierKey>> {
    if given.is_empty() {
        let path = config.integrity.key_path(&config.relay.data_dir);
        if !path.exists() {
            anyhow::bail!(
                "no public key to check signatures with: give --key <name+id+key> (print it with `auditrelay keys public` where the relay runs), or run this with the relay's config where {} is readable",
                path.display()
            );
        }
        return Ok(vec![keys::load(&path)?.verifier()]);
    }
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for arg in given {
        let path = std::path::Path::new(arg);
        if !path.is_file() {
            match VerifierKey::parse(arg.trim()) {
                Ok(key) => found.push(key),
                Err(error) => problems.push(format!(
                    "--key {arg:?}: no such file, and {error} (a public key reads <name>+<8 hex id>+<base64>)"
                )),
            }
            continue;
        }
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) => {
                problems.push(format!("--key {}: {error}", path.display()));
                continue;
            }
        };
        if text.trim_start().starts_with("PRIVATE+KEY+") {
            match keys::load(path) {
                Ok(key) => found.push(key.verifier()),
                Err(error) => problems.push(format!("--key {error}")),
            }
            continue;
        }
        let lines = text
            .lines()
            .map(str::trim)
            .enumerate()
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
        let before = found.len();
        for (i, line) in lines {
            match VerifierKey::parse(line) {
                Ok(key) => found.push(key),
                Err(error) => problems.push(format!("--key {}:{}: {error}", path.display(), i + 1)),
            }
        }
        if found.len() == before && problems.is_empty() {
            problems.push(format!("--key {}: the file holds no key", path.display()));
        }
    }
    if !problems.is_empty() {
        anyhow::bail!("{}", problems.join("\n"));
    }
    Ok(found)
}
