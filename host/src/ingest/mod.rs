//! Ways events come in besides [`Relay::emit`](crate::Relay::emit): HTTP,
//! outbox tables in the application's database, and webhooks and files
//! from other systems, mapped by mapper plugins.
//!
//! Every source ends in the same place: validated, canonical
//! [`Record`](crate::spool::Record)s appended to the spool.

pub mod cursor;
pub mod decode;
pub mod file;
mod foreign;
pub mod http;
mod lines;
pub mod outbox;
pub mod poll;
pub(crate) mod refused;
pub mod webhook;
