//! `auditrelay verify` on what real plugins wrote, with the chain on: an
//! export a plugin filtered to one tenant is held to that tenant
//! (`--streams`) rather than failing for the others, a tenant removed
//! whole from a full export is a gap, and a file that cannot be read
//! exits 2 ("not checked"), not 1 ("tampered").

use std::path::Path;
use std::process::Output;

use auditrelay::{Config, Relay};
use auditrelay_tests::{Home, relay_binary, sample_envelope};

#[tokio::test(flavor = "multi_thread")]
async fn verify_holds_exports_to_their_rounds_and_tells_unreadable_from_tampered() {
    let home = Home::with_plugins(&["file"]);
    let config = home.config_file(
        "[integrity]\nchain = true\n\
         [plugins.all]\nplugin = \"file\"\ngrant_dir = \"{home}/all\"\n\
         [plugins.acme]\nplugin = \"file\"\ngrant_dir = \"{home}/acme\"\n\
         [plugins.acme.filter]\ntenants = [\"acme\"]\n",
    );
    let relay = Relay::start(Config::load(&config).unwrap()).await.unwrap();
    for i in 0..60 {
        relay.emit_durable(sample_envelope(i)).await.unwrap();
    }
    relay.shutdown().await;
    drop(relay);

    let public = run(&["keys", "public", "-c", config.to_str().unwrap()], &[]);
    assert!(public.status.success());
    let key = home.join("relay.pub");
    std::fs::write(&key, &public.stdout).unwrap();
    let key = key.to_str().unwrap();
    let (all, acme) = (home.join("all"), home.join("acme"));

    let full = run(&["verify", "--key", key], &[&all]);
    assert_eq!(full.status.code(), Some(0), "{}", text(&full));
    assert!(
        text(&full).contains("stream globex: 20/20 events valid"),
        "{}",
        text(&full)
    );

    // The filtered export lacks two of each round's three streams: a gap,
    // with the way out named; held to its one tenant, it is whole.
    let filtered = run(&["verify", "--key", key], &[&acme]);
    assert_eq!(filtered.status.code(), Some(1), "{}", text(&filtered));
    assert!(text(&filtered).contains("--streams"), "{}", text(&filtered));
    let named = run(&["verify", "--key", key, "--streams", "acme"], &[&acme]);
    assert_eq!(named.status.code(), Some(0), "{}", text(&named));
    let wrong = run(
        &["verify", "--key", key, "--streams", "acme,globex"],
        &[&acme],
    );
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong));

    // globex removed whole from the full export — events and checkpoints.
    for file in std::fs::read_dir(&all).unwrap() {
        let path = file.unwrap().path();
        let kept: String = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter(|line| !line.contains("\"tenant\":\"globex\""))
            .map(|line| format!("{line}\n"))
            .collect();
        std::fs::write(&path, kept).unwrap();
    }
    let cut = run(&["verify", "--key", key], &[&all]);
    assert_eq!(cut.status.code(), Some(1), "{}", text(&cut));
    assert!(
        text(&cut).contains("covered 3 streams and the export holds 2 of them"),
        "{}",
        text(&cut)
    );

    // A file that cannot be read to its end: exit 2, the file named.
    std::fs::write(acme.join("torn.ndjson.gz"), b"\x1f\x8b\x08\x00torn").unwrap();
    let torn = run(&["verify", "--key", key, "--streams", "acme"], &[&acme]);
    assert_eq!(torn.status.code(), Some(2), "{}", text(&torn));
    assert!(
        String::from_utf8_lossy(&torn.stderr).contains("torn.ndjson.gz"),
        "{}",
        String::from_utf8_lossy(&torn.stderr)
    );
}

fn run(args: &[&str], paths: &[&Path]) -> Output {
    std::process::Command::new(relay_binary())
        .args(args)
        .args(paths)
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}
