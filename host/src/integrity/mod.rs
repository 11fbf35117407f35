//! Tamper evidence an auditor can check without trusting the relay.
//!
//! Built so far, each checked against its specification's test vectors:
//! [`merkle`], RFC 9162 tree hashes with inclusion and consistency
//! proofs; [`note`], C2SP signed notes with Ed25519 keys; [`checkpoint`],
//! the C2SP `tlog-checkpoint` body a log signs. The hash chain per
//! stream, the relay signing checkpoints, `auditrelay verify` and
//! `auditrelay prove` build on them.

pub mod checkpoint;
pub mod merkle;
pub mod note;
