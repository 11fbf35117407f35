//! `auditrelay keys`: the Ed25519 key that signs checkpoints.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::Config;
use crate::integrity::keys;

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
