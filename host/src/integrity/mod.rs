//! Tamper evidence an auditor can check without trusting the relay.
//!
//! - [`chain`]: each event sealed to the one before it in its stream,
//!   as the spool appends it (the envelope's `integrity` member).
//! - [`tree`] and [`merkle`]: the events of a stream as the leaves of an
//!   RFC 9162 Merkle tree, with inclusion and consistency proofs.
//! - [`signed`], over [`checkpoint`] and [`note`]: the tree's size and
//!   root signed with Ed25519 every interval (C2SP signed notes holding
//!   `tlog-checkpoint`s), with keys from [`keys`].
//! - [`verify`]: an export checked with the public key alone — what
//!   `auditrelay verify` runs; [`proof`]: inclusion and consistency
//!   proofs made from it (`auditrelay prove`) and checked alone
//!   (`auditrelay verify --proof`).
//!
//! `docs/integrity.md` is the guide: what each mechanism proves, against
//! whom, and how to check an S3 bucket with the public key only.

pub mod chain;
pub mod checkpoint;
pub mod keys;
pub mod merkle;
pub mod note;
pub mod proof;
pub mod signed;
pub mod tree;
pub mod verify;
