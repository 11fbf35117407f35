//! The stdout exporter through the exporter compliance suite
//! (`auditrelay_plugin_api::testing::compliance`): what it delivered is
//! what it printed (through `host::write_stdout`, which the harness
//! records). In `json` format each line is an envelope, so every event can
//! be found by id; `summary` lines carry no id and are counted. A retried
//! batch is printed again.

use auditrelay_plugin_api::testing::compliance::{Compliance, ids_at};
use auditrelay_plugin_stdout::Stdout;
use serde_json::json;

#[test]
fn stdout_complies_printing_json() {
    Compliance::<Stdout>::local()
        .config(json!({"format": "json"}))
        // Granted though unused: it must not be printed or logged.
        .secret("unused_token", "stdout-canary-2a7c5e1f")
        .refuses(json!({"format": "yaml"}), "format")
        .delivered(|destination| ids_at(&destination.harness().stdout(), "/id"))
        .run();
}

#[test]
fn stdout_complies_printing_summaries() {
    Compliance::<Stdout>::local()
        .config(json!({"format": "summary"}))
        .counted(|destination| {
            let printed = destination.harness().stdout();
            assert!(
                printed.is_empty() || printed.ends_with(b"\n"),
                "whole lines only"
            );
            printed.iter().filter(|&&b| b == b'\n').count() as u64
        })
        .run();
}
