//! wip
pub mod cli;
pub mod config;
pub mod dispatch;
pub mod ingest;
pub mod metrics;
mod relay;
pub mod runtime;
pub mod spool;

pub use auditrelay_plugin_api::envelope;
pub use config::Config;
pub use relay::{EmitError, Receipt, Relay, RelayStatus, ShutdownReport, StartError};
