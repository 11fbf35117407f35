//! One source for the config documentation: `info()` (what
//! `auditrelay plugins` prints) documents every key the `Config` struct
//! reads, with defaults that parse to what the code uses, and the README's
//! table is rendered from it (`UPDATE_GOLDEN=1 cargo test` rewrites it).

use auditrelay_plugin_api::testing::config_docs;
use auditrelay_plugin_datadog::DatadogExporter;

#[test]
fn info_documents_every_config_key_as_the_code_reads_it() {
    config_docs::assert_config_documented::<DatadogExporter>(serde_json::json!({}));
}

#[test]
fn the_readme_table_is_what_info_says() {
    config_docs::assert_readme_documents::<DatadogExporter>(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/README.md"
    ));
}
