//! The blackhole exporter through the exporter compliance suite
//! (`auditrelay_plugin_api::testing::compliance`): it keeps no events, so
//! what it delivered is what it counted, with and without decoding each
//! envelope.

use auditrelay_plugin_api::testing::compliance::Compliance;
use auditrelay_plugin_blackhole::Blackhole;
use serde_json::json;

#[test]
fn blackhole_complies() {
    for decode in [false, true] {
        Compliance::<Blackhole>::local()
            .config(json!({"decode": decode}))
            .refuses(json!({"decode": "sometimes"}), "decode")
            .counted(|destination| destination.harness().plugin().events())
            .run();
    }
}
