//! The `auditrelay` command line.
//!
//! | command | does |
//! |---|---|
//! | `run` | runs the relay: HTTP ingest, plugins, until SIGINT/SIGTERM |
//! | `check` | validates the config and starts every enabled plugin once |
//! | `plugins` | lists the plugins found in `plugin_dir` |
//! | `emit` | sends events from a file or stdin to a running relay |
//! | `status` | every instance: state, circuit, lag, dead letters, last error |
//! | `dlq` | lists, shows, replays or purges an instance's dead letters |
//! | `spool verify` | checks every record of the spool |
//! | `outbox schema`, `outbox check` | prints the outbox DDL, checks a live database |
//! | `redact test` | shows what the redaction rules do to events |
//! | `keys generate`, `keys public` | makes the checkpoint signing key, prints its public half |
//! | `verify` | checks an export (files, gzip, a mirrored bucket) with the public key; or one proof |
//! | `prove` | an inclusion proof of one event, or a consistency proof of two checkpoints |
//! | `demo` | runs the relay on sample events and shows where they landed |
//!
//! Without `--config` every command uses the embedded default
//! configuration: everything local, events written by the `file` plugin.

mod check;
mod demo;
mod dlq;
mod emit;
mod keys;
mod outbox;
mod plugins;
mod prove;
mod redact;
mod relay_api;
mod run;
mod spool;
mod status;
mod tail;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{Config, ConfigError};

/// Deliver audit events, without loss, to sandboxed WebAssembly exporter plugins.
#[derive(Debug, Parser)]
#[command(name = "auditrelay", version, about, long_about = None)]
pub struct Cli {
    /// The relay's TOML configuration (default: the embedded default:
    /// plugins from ./target/plugins, events written under ./auditrelay-data)
    #[arg(
        short,
        long,
        global = true,
        env = "AUDITRELAY_CONFIG",
        value_name = "FILE"
    )]
    config: Option<PathBuf>,

    /// Log line format
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "AUDITRELAY_LOG_FORMAT")]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines
    Text,
    /// One JSON object per line (for log shippers)
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the relay until SIGINT or SIGTERM (a second signal exits at once)
    Run,
    /// Validate the configuration and start every enabled plugin once;
    /// exits non-zero with the reasons if anything is wrong
    Check,
    /// List the plugins found in plugin_dir, with what they describe
    Plugins(plugins::Args),
    /// Send events (JSON, a JSON array or NDJSON) from a file or stdin to a
    /// running relay's HTTP endpoint
    Emit(emit::Args),
    /// Show every plugin instance: state, circuit, lag, dead letters, last
    /// error (from the running relay, or from the files of a stopped one)
    Status(status::Args),
    /// Print the running relay's events as they become durable (its live
    /// stream, GET /v1/stream), filtered by type, tenant or source;
    /// reconnects without a gap
    Tail(tail::Args),
    /// List, show, replay or purge dead letters
    #[command(subcommand)]
    Dlq(dlq::Command),
    /// Work on the spool
    #[command(subcommand)]
    Spool(spool::Command),
    /// Create or check the outbox tables applications write their events to
    #[command(subcommand)]
    Outbox(outbox::Command),
    /// Try the redaction rules on events
    #[command(subcommand)]
    Redact(redact::Command),
    /// Make or show the key that signs checkpoints
    #[command(subcommand)]
    Keys(keys::Command),
    /// Check an export — files, gzip or zstd, a directory mirrored from a
    /// bucket — with the public key alone: names every modified, missing,
    /// inserted, reordered or duplicated event and every removed or forged
    /// checkpoint; exit 1 on any problem. With --proof, check one proof
    Verify(verify::Args),
    /// Print a proof an auditor checks alone (`verify --proof`): that an
    /// event is in a signed checkpoint, or (--stream --from) that a later
    /// checkpoint only appended to an earlier one
    Prove(prove::Args),
    /// Start the relay, send it sample events through the library API and
    /// over HTTP, wait until they are delivered and show where they landed
    Demo(demo::Args),
    /// Run one native plugin for the relay (started by the relay itself,
    /// for `isolation = "process"`; speaks a framed protocol on stdin/stdout)
    #[command(hide = true)]
    PluginRunner(crate::runtime::native::runner::Args),
    /// Compile one WASM plugin into the compiled-plugin cache (started by
    /// the relay itself, so a compile can be bounded in time and memory)
    #[command(hide = true)]
    PluginCompiler(crate::runtime::wasm::compiler::Args),
}

/// Runs the command line; the `auditrelay` binary's whole `main`.
pub fn main() -> ExitCode {
    // Errors (ours, wasmtime-wasi's) would capture a host backtrace each
    // whenever RUST_BACKTRACE is set, which costs time and memory on every
    // plugin trap. Panics still print backtraces as RUST_BACKTRACE says.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
    let cli = Cli::parse();
    // The runner is the plugin's process: no logging setup, no async
    // runtime, no threads; its stdout is the protocol.
    match cli.command {
        Command::PluginRunner(args) => return crate::runtime::native::runner::run(args),
        Command::PluginCompiler(args) => return crate::runtime::wasm::compiler::run(args),
        _ => {}
    }
    let quiet = !matches!(
        cli.command,
        Command::Run | Command::Demo(_) | Command::Check
    );
    init_logging(cli.log_format, quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run => run::run(load_config(&cli.config)?).await,
            Command::Check => check::check(load_config(&cli.config)?).await,
            Command::Plugins(args) => plugins::plugins(load_config(&cli.config)?, args).await,
            Command::Emit(args) => emit::emit(args).await,
            Command::Status(args) => status::status(load_config(&cli.config)?, args).await,
            Command::Tail(args) => tail::tail(load_config(&cli.config)?, args).await,
            Command::Dlq(command) => dlq::dlq(load_config(&cli.config)?, command).await,
            Command::Spool(command) => spool::spool(load_config(&cli.config)?, command).await,
            Command::Outbox(command) => outbox::outbox(load_config(&cli.config)?, command).await,
            Command::Redact(command) => redact::redact(load_config(&cli.config)?, command).await,
            Command::Keys(command) => keys::keys(load_config(&cli.config)?, command),
            Command::Verify(args) => verify::verify(load_config(&cli.config)?, args),
            Command::Prove(args) => prove::prove(load_config(&cli.config)?, args),
            Command::Demo(args) => demo::demo(load_config(&cli.config)?, args).await,
            Command::PluginRunner(_) | Command::PluginCompiler(_) => {
                unreachable!("handled before the runtime starts")
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: &Option<PathBuf>) -> Result<Config, ConfigError> {
    match path {
        Some(path) => Config::load(path),
        None => Ok(Config::embedded_default()),
    }
}

fn init_logging(format: LogFormat, quiet: bool) {
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// A spinner on stderr while something slow happens, if stderr is a
/// terminal; nothing otherwise.
fn spinner(message: impl Into<std::borrow::Cow<'static, str>>) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner().with_message(message);
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    bar
}
