//! mobius-auditlog-py, the real package from PyPI (scripts/test installs it
//! in `<target>/py`), publishing through an HTTP sender to a webhook
//! source mapped by the `mobius` mapper: its events arrive mapped as
//! docs/sources.md says field by field, and the one changed after it was
//! sealed is refused and kept with why.

use auditrelay_tests::target_dir;
use auditrelay_tests::webhooks::{ARCHIVE, serve};

const TOKEN: &str = "mobius-sender-token-5d1c";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_by_the_real_package_arrive_mapped_and_checked() {
    let python = target_dir().join("py/bin/python");
    assert!(
        python.exists(),
        "{} is missing: scripts/test makes it (python3 -m venv {0} && {0}/bin/pip install mobius-auditlog-py==1.0.0)",
        target_dir().join("py").display()
    );
    let served = serve(
        &["file", "mobius"],
        &format!(
            "{ARCHIVE}\n[ingest.webhook.billing]\nauth = \"bearer\"\nsecret = \"{TOKEN}\"\n[ingest.webhook.billing.mapper]\nplugin = \"mobius\"\n[ingest.webhook.billing.mapper.config]\nrequire_hash = true\n"
        ),
    )
    .await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/mobius_events.py");
    let url = format!("{}/v1/sources/billing", served.base);
    let output = tokio::process::Command::new(&python)
        .arg(&script)
        .args(["post", &url, TOKEN])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut stored = served.stored().await;
    // The package's publisher sends from two threads, in no set order.
    stored.sort_by_key(|e| e["type"].as_str().map(str::to_owned));
    let types: Vec<&str> = stored.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["group.member_added", "invoices.delete"],
        "{stored:#?}"
    );
    let built = &stored[0];
    assert_eq!(built["source"], "billing");
    assert_eq!(built["tenant"], "acme");
    assert_eq!(built["actor"]["id"], "u-1001");
    assert_eq!(built["payload"]["request"]["note"], "Zoë — café ✓");
    assert_eq!(built["metadata"]["mobius.signed"], "true");
    let request = &stored[1];
    assert_eq!(request["actor"]["kind"], "service");
    assert_eq!(request["action"]["outcome"], "failure");
    assert_eq!(request["metadata"]["k8s.namespace"], "billing");

    let refused = served.refused("billing");
    assert_eq!(refused.len(), 1, "{refused:#?}");
    let reason = refused[0]["reason"].as_str().unwrap();
    assert!(reason.contains("changed after it was sealed"), "{reason}");
}
