//! The file exporter through the exporter compliance suite
//! (`auditrelay_plugin_api::testing::compliance`): what it delivered is
//! what the NDJSON files in its granted directory hold. A retried batch
//! is appended again (the relay's at-least-once), so retries are not
//! checked for sameness.

use auditrelay_plugin_api::testing::compliance::{Compliance, ids_at};
use auditrelay_plugin_file::FileExporter;
use serde_json::json;

#[test]
fn file_complies() {
    Compliance::<FileExporter>::local()
        .granted_dir()
        .config(json!({"prefix": "audit", "rotate_bytes": "256KiB"}))
        // Granted though unused: it must not end up in a file or a log.
        .secret("unused_token", "file-canary-6b1d9e4f")
        .refuses(json!({"prefix": "../escape"}), "prefix")
        .refuses(json!({"prefix": ""}), "prefix")
        .refuses(json!({"rotate_bytes": "0B"}), "rotate_bytes")
        .refuses(json!({"rotate_bytes": "lots"}), "rotate_bytes")
        .refuses(json!({"rotate_after": "soon"}), "rotate_after")
        .refuses(json!({"fsync": "yes"}), "fsync")
        .delivered(|destination| {
            destination
                .files()
                .iter()
                .filter(|(name, _)| name.extension().is_some_and(|e| e == "ndjson"))
                .flat_map(|(_, bytes)| ids_at(bytes, "/id"))
                .collect()
        })
        .run();
}
