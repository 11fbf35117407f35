//! Tamper evidence an auditor can check without trusting the relay.
//!
//! Built so far: [`merkle`], RFC 9162 tree hashes with inclusion and
//! consistency proofs. The hash chain per stream, signed checkpoints,
//! `auditrelay verify` and `auditrelay prove` build on it (see the
//! issue "Redaction before the spool, and tamper evidence").

pub mod merkle;
