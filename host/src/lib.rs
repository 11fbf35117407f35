//! auditrelay delivers audit events, without loss and without slowing the
//! application, to sandboxed WebAssembly exporter plugins.
//!
//! An application builds an [`AuditEventEnvelope`](envelope::AuditEventEnvelope)
//! (who did what, when, why, with what outcome) **after its database
//! commit** and hands it to the relay, in-process with [`Relay::emit`] or
//! over HTTP ([`http`]). The relay validates it, encodes it once as
//! canonical JSON and appends it to the spool, a checksummed log on
//! disk; from there every enabled plugin instance reads through its own
//! saved cursor, at its own pace, and delivers to its destination.
//!
//! # How data flows
//!
//! Strictly one way; no module reaches back up the chain:
//!
//! ```text
//!  Relay::emit ───────┐                                     ┌─ worker ─ batch ─ runtime ─ plugin "file"
//!                     ├─ Arrivals ─ admit ─ spool ─ cursors ┤
//!  POST /v1/events ───┘  (each event                        └─ worker ─ batch ─ runtime ─ plugin "hec"
//!   (read strictly)       validated and
//!                         encoded once)
//! ```
//!
//! Every door hands its events to the relay the same way (`relay::intake`):
//! validated and encoded once, refused events counted and answered for,
//! appended all together, and — for a door that waits until they are
//! durable — without ever blocking a thread.
//!
//! Inside the crate (private modules; the source tree has one folder each):
//!
//! | module | does |
//! |---|---|
//! | `config` | the TOML configuration, strict, with `${ENV}` secrets |
//! | `ingest` | events from outside the process (HTTP) |
//! | `spool` | the durable log every plugin reads through its own cursor |
//! | `dispatch` | one worker per plugin instance: batches, retries, circuit breaker, dead letters |
//! | `runtime` | where plugin code runs: `runtime::wasm` sandboxes components, `runtime::native` runs `.so` plugins |
//! | `metrics` | Prometheus metrics |
//! | `cli` | the `auditrelay` command line (feature `cli`, on by default; off, the library carries no command-line dependencies) |
//!
//! # The API
//!
//! | item | for |
//! |---|---|
//! | [`Relay`] | start, emit, watch and stop the relay |
//! | [`Config`] and [`config`] | the configuration, loaded from TOML or built in code |
//! | [`envelope`] | the audit event and its canonical JSON (re-exported from the plugin API) |
//! | [`http`] | `POST /v1/events` and the operator endpoints, standalone or mounted in your axum router |
//! | [`status`] | what [`Relay::status`] and [`Relay::recovery`] report |
//! | [`dead_letters`] | an instance's refused events |
//! | [`StartError`], [`EmitError`], [`SpoolError`] | why starting or emitting failed |
//!
//! # In-process use
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use auditrelay::envelope::{Actor, AuditEventEnvelope, Outcome, Target};
//! use auditrelay::{Config, Relay};
//!
//! let relay = Relay::start(Config::load("relay.toml".as_ref())?).await?;
//!
//! // After the transaction that added the member has committed:
//! let event = AuditEventEnvelope::builder("access-api", "group.member_added")
//!     .actor(Actor::user("u-42").email("ana@acme.test"))
//!     .outcome(Outcome::Success)
//!     .target(Target::new("group", "g-7"))
//!     .tenant("acme")
//!     .reason("on-call rotation")
//!     .build()?;
//! relay.emit(event)?; // never waits on a plugin or the disk
//! // or: relay.emit_durable(event).await?; // returns once it is synced
//!
//! relay.shutdown().await; // delivers what it can, syncs, saves cursors
//! # Ok(()) }
//! ```
//!
//! # Guarantees and limits today
//!
//! - A plugin that panics, loops, runs out of memory, overflows its stack
//!   or calls a host it may not reach is caught and replaced; other plugins
//!   and the application do not notice.
//! - An event [`Relay::emit_durable`] returned for (or `POST /v1/events`
//!   answered `202` for) reaches every enabled plugin at least once, or
//!   sits in its dead letters — across outages, crashes, `kill -9` and a
//!   full disk. Duplicates are possible after a crash.
//! - Each plugin gets its events in spool order; a failing batch is retried
//!   (forever, by default) before anything after it; refused events go to
//!   dead letters, never nowhere.
//!
//! Set `RUST_LIB_BACKTRACE=0` when you embed the relay with
//! `RUST_BACKTRACE=1` set: otherwise every error inside wasmtime-wasi
//! captures a host backtrace, which is slow when plugins fail often. The
//! `auditrelay` binary does this itself.

#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;
pub mod config;
mod dispatch;
mod ingest;
pub mod integrity;
mod metrics;
pub mod middleware;
pub mod redact;
mod relay;
mod runtime;
mod secret;
mod spool;

pub use auditrelay_plugin_api::envelope;
pub use config::Config;
pub use relay::{EmitError, Receipt, Relay, RelayStatus, ShutdownReport, StartError};
pub use runtime::catalog::PluginDirError;
pub use spool::{SpoolError, SpoolOpenError};

/// What the relay reports about its plugin instances and its spool
/// ([`Relay::status`], [`Relay::recovery`], `GET /v1/status`).
pub mod status {
    pub use crate::dispatch::{PluginStatus, RunState};
    pub use crate::relay::SourceStatus;
    pub use crate::spool::{Damage, Finding, RecoveryReport};
}

/// An instance's dead letters: the events it refused or could not take,
/// with why ([`Relay::dead_letters`]).
pub mod dead_letters {
    pub use crate::dispatch::{DeadLetters, Listing};
}

/// Events over HTTP: `POST /v1/events` and the operator endpoints, served
/// on their own or mounted in an application's own axum server.
pub mod http {
    pub use crate::ingest::http::{HttpIngest, router};
}

/// The transactional outbox: the table's contract for the application
/// ([`Outbox`](outbox::Outbox): DDL, the `INSERT`, writes on a sqlx transaction) and the
/// reader that spools its committed rows ([`OutboxIngest`](outbox::OutboxIngest), what
/// `[ingest.outbox.<name>]` runs).
pub mod outbox {
    pub use crate::ingest::outbox::{OutboxIngest, SettingsError};
    pub use auditrelay_outbox::{DEFAULT_TABLE, Dialect, Outbox, TableNameError, WriteError};
}

/// Sources that read other systems' events where those systems leave them:
/// [`FileIngest`](sources::FileIngest) tails files through rotation (what
/// `[ingest.file.<name>]` runs), [`PollIngest`](sources::PollIngest) polls
/// HTTP APIs page by page (`[ingest.poll.<name>]`). Webhook sources are
/// served by [`http`].
pub mod sources {
    pub use crate::ingest::file::FileIngest;
    pub use crate::ingest::poll::{PollCursor, PollIngest};
}

/// Internals the benchmarks and the end-to-end tests drive directly. Not
/// part of the API: they change without notice.
#[doc(hidden)]
pub mod internals {
    pub use crate::metrics::Metrics;
    pub use crate::relay::start::{native_settings, sandbox};
    pub use crate::runtime::native::{ChildInstance, InProcessInstance, NativeSettings};
    pub use crate::runtime::services::PluginServices;
    pub use crate::runtime::wasm::{
        ForeignRecord, MapperInstance, RecordBatch, Sandbox, WasmInstance, WasmMapper, WasmPlugin,
        WasmRuntime,
    };
    pub use crate::runtime::{AnyExporter, Exporter};
    pub use crate::secret::Secret;
    pub use crate::spool::{
        Batch, Confirmation, DedupWindow, Durability, Record, Spool, SpoolOptions, StartFrom,
        WhenFull, format,
    };
}

/// Layers point down only (DESIGN.md's flow): a source reaches the relay,
/// the relay the dispatcher, the dispatcher the spool and the runtime, and
/// nothing reaches back up. The runtime knows wire batches, not spool or
/// config types; the spool knows nothing of plugins. A `use` (or a path in
/// code) that points up fails here, naming the file.
#[cfg(test)]
mod layers {
    /// Each module, with the modules it must never name.
    const RULES: [(&str, &[&str]); 8] = [
        (
            "integrity",
            &[
                "spool",
                "runtime",
                "dispatch",
                "relay",
                "ingest",
                "cli",
                "config",
                "metrics",
                "redact",
                "internals",
            ],
        ),
        (
            "redact",
            &[
                "spool",
                "runtime",
                "dispatch",
                "relay",
                "ingest",
                "cli",
                "config",
                "metrics",
                "internals",
            ],
        ),
        (
            "spool",
            &[
                "runtime",
                "dispatch",
                "relay",
                "ingest",
                "cli",
                "config",
                "metrics",
                "internals",
            ],
        ),
        (
            "runtime",
            &[
                "spool",
                "dispatch",
                "relay",
                "ingest",
                "cli",
                "config",
                "internals",
            ],
        ),
        ("dispatch", &["relay", "ingest", "cli", "internals"]),
        ("relay", &["ingest", "cli", "internals"]),
        (
            "metrics",
            &[
                "spool",
                "runtime",
                "dispatch",
                "relay",
                "ingest",
                "cli",
                "config",
                "internals",
            ],
        ),
        (
            "config",
            &["spool", "dispatch", "relay", "ingest", "cli", "internals"],
        ),
    ];

    /// The module behind a name the crate root re-exports (`crate::Config`
    /// is `config`'s, `crate::status` the dispatcher's), so a path through
    /// the root is judged like the direct one.
    fn module_of(name: &str) -> &str {
        match name {
            "Relay" | "Receipt" | "RelayStatus" | "ShutdownReport" | "StartError" | "EmitError" => {
                "relay"
            }
            "Config" => "config",
            "SpoolError" | "SpoolOpenError" => "spool",
            "PluginDirError" => "runtime",
            "status" | "dead_letters" => "dispatch",
            "http" | "outbox" => "ingest",
            other => other,
        }
    }

    fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// How many `super::` reach the crate root from `file` (under
    /// `src/<module>/`): one per directory below the module, plus one for
    /// a file that is not a `mod.rs`.
    fn depth(file: &std::path::Path, module_dir: &std::path::Path) -> usize {
        let below = file.strip_prefix(module_dir).unwrap();
        let dirs = below.components().count() - 1;
        dirs + usize::from(below.file_name().unwrap() != "mod.rs")
    }

    /// The crate-level modules `code` names, each with its byte offset:
    /// `crate::name`, every top-level item of `crate::{a::x, b}`, and the
    /// same after enough `super::` to climb out of the module.
    fn crate_modules_named(code: &str, depth: usize) -> Vec<(usize, String)> {
        let ident = |rest: &str| -> String {
            rest.chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        };
        let mut named = Vec::new();
        let mut at = 0;
        while at < code.len() {
            let rest = &code[at..];
            let root = if rest.starts_with("crate::") {
                Some("crate::".len())
            } else if rest.starts_with("super::") {
                let chain = rest
                    .split("super::")
                    .skip(1)
                    .take_while(|part| part.is_empty())
                    .count()
                    + 1;
                (chain > depth).then(|| chain * "super::".len())
            } else {
                None
            };
            let Some(skip) = root else {
                at += rest.chars().next().map_or(1, char::len_utf8);
                continue;
            };
            let after = &rest[skip..];
            if let Some(group) = after.strip_prefix('{') {
                // Top-level items of the group: a depth count of braces.
                let mut level = 0;
                let mut item_start = true;
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => level += 1,
                        '}' if level == 0 => break,
                        '}' => level -= 1,
                        ',' if level == 0 => item_start = true,
                        c if item_start && !c.is_whitespace() => {
                            item_start = false;
                            named.push((at + skip + 1 + i, ident(&group[i..])));
                        }
                        _ => {}
                    }
                }
            } else {
                named.push((at + skip, ident(after)));
            }
            at += skip;
        }
        named
    }

    #[test]
    fn the_scan_sees_grouped_and_relative_paths() {
        let code = "use crate::{config::X, spool};\nuse super::super::relay::Y;\nuse super::Z;\n\
                    use crate::internals::Batch;\nlet c: crate::Config;\nuse crate::status::PluginStatus;";
        let named = crate_modules_named(code, 1);
        let names: Vec<&str> = named.iter().map(|(_, name)| module_of(name)).collect();
        assert_eq!(
            names,
            [
                "config",
                "spool",
                "relay",
                "internals",
                "config",
                "dispatch"
            ]
        );
    }

    #[test]
    fn no_module_names_a_layer_above_it() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut upward = Vec::new();
        for (module, above) in RULES {
            let mut files = Vec::new();
            sources(&src.join(module), &mut files);
            assert!(!files.is_empty(), "no sources under src/{module}");
            for file in files {
                let text = std::fs::read_to_string(&file).unwrap();
                // Comments go (doc links make no dependency), lines stay.
                let code: String = text
                    .lines()
                    .map(|line| match line.trim_start().starts_with("//") {
                        true => "\n".to_owned(),
                        false => format!("{line}\n"),
                    })
                    .collect();
                for (offset, name) in crate_modules_named(&code, depth(&file, &src.join(module))) {
                    if above.contains(&module_of(&name)) {
                        let line = code[..offset].matches('\n').count();
                        upward.push(format!(
                            "{}:{}: {module} names {name}: {}",
                            file.strip_prefix(&src).unwrap().display(),
                            line + 1,
                            code.lines().nth(line).unwrap_or("").trim()
                        ));
                    }
                }
            }
        }
        assert!(
            upward.is_empty(),
            "layers that point up:\n{}",
            upward.join("\n")
        );
    }
}
