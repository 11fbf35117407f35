//! The end-to-end tests: real plugins, real receivers, the real binary.
//! Each module is one concern. They are one test binary so that the relay
//! and wasmtime are linked once, not once per file.

mod bad_input;
mod cli;
mod dedup;
mod durability;
mod end_to_end;
mod exporters;
mod faults;
mod file_tail;
mod full_disk;
mod hostile;
mod hostile_native;
mod http_limits;
mod kill9;
mod mappers;
mod middleware;
mod mobius;
mod native_abi;
mod native_plugins;
mod outbox;
mod poll;
mod poll_attacks;
mod redaction;
mod sandbox;
mod sources;
mod stream;
mod stream_attacks;
mod verify;
mod webhook_attacks;
mod webhooks;
mod wit_versions;
