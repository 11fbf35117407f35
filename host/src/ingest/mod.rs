//! Ways events come in besides [`Relay::emit`](crate::Relay::emit): HTTP,
//! and outbox tables in the application's database.
//!
//! Every source ends in the same place: validated, canonical
//! [`Record`](crate::spool::Record)s appended to the spool.

pub mod decode;
pub mod http;
pub mod outbox;
