//! Attacks on the webhook pieces, below HTTP: the replay cache's memory,
//! the signature's spellings, and what a mapper's answer can make the
//! relay say.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::replay::{ReplayCache, Replayed};
use super::verify::{Proof, Verifier};
use crate::config::WebhookSettings;

const SECRET: &str = "a-shared-secret-of-32-bytes-0123";
const NOW: i64 = 1_764_583_200;

fn settings() -> WebhookSettings {
    toml::from_str(&format!("auth = \"hmac\"\nsecret = \"{SECRET}\"\n")).unwrap()
}

fn v2(timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}:{}", hex::encode(Sha256::digest(body))).as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn headers(ts: &str, signature: &str) -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert(
        HeaderName::from_static("x-webhook-timestamp"),
        HeaderValue::from_str(ts).unwrap(),
    );
    map.insert(
        HeaderName::from_static("x-webhook-signature"),
        HeaderValue::from_str(signature).unwrap(),
    );
    map
}

fn signature_n(i: u32) -> [u8; 32] {
    let mut s = [0u8; 32];
    s[..4].copy_from_slice(&i.to_be_bytes());
    s
}

/// The cache forgets expired signatures only when a reservation happens to
/// see *exactly* a power of two (> 1024) of them. Three requests in flight
/// at a time (reserve, reserve, reserve, commit x3) make every reservation
/// see a multiple of three: the prune never runs, and every signature ever
/// accepted stays in memory (and in the replay file: compaction rewrites
/// what memory holds). Expected: bounded by the live ones.
#[test]
fn the_replay_cache_forgets_expired_signatures_when_requests_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replay");
    let window = 300;
    let cache = ReplayCache::open(&path, window, NOW).unwrap();
    // 30 000 accepted requests, one per 10 ms of signing time: after the
    // first 300 s (30 000 at 100/s) only the last 300 s' worth are live.
    let mut i = 0u32;
    let mut now = NOW;
    while i < 30_000 {
        let reservations: Vec<_> = (0..3)
            .map(|k| cache.reserve(signature_n(i + k), now, now).expect("fresh"))
            .collect();
        for r in reservations {
            r.commit().unwrap();
        }
        i += 3;
        // 3 requests per 3 s: everything older than 300 s is dead.
        now += 3;
    }
    let live = (window / 3 + 1) as usize * 3;
    let held = cache.len();
    let file_lines = std::fs::read_to_string(&path).unwrap().lines().count();
    assert!(
        held <= 2 * live.max(1024),
        "the replay cache holds {held} signatures (and its file {file_lines} lines) though only ~{live} are within the window"
    );
}

/// Same HMAC, spelled differently (case, `sha256=` prefix, whitespace):
/// one key in the cache, so the second spelling is a replay. Holds.
#[test]
fn one_signature_in_many_spellings_is_accepted_once() {
    let verifier = Verifier::new(&settings());
    let dir = tempfile::tempdir().unwrap();
    let cache = ReplayCache::open(&dir.path().join("replay"), 300, NOW).unwrap();
    let body = br#"{"event":"x"}"#;
    let ts = NOW.to_string();
    let sig = v2(&ts, body);
    let spellings = [
        sig.clone(),
        sig.to_uppercase(),
        format!("sha256={sig}"),
        format!("sha256={}", sig.to_uppercase()),
        format!("sha256= {sig}"),
        format!("{sig}\t"),
    ];
    let mut accepted = Vec::new();
    for (n, spelling) in spellings.iter().enumerate() {
        let Proof::Signed {
            signature,
            timestamp,
        } = verifier.verify(&headers(&ts, spelling), body, NOW).unwrap()
        else {
            panic!("signed")
        };
        match cache.reserve(signature, timestamp, NOW) {
            Ok(r) => {
                r.commit().unwrap();
                accepted.push(n);
            }
            Err(Replayed::Accepted(_)) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(accepted, [0], "one HMAC accepted under several spellings");
}

/// Timestamp spellings ("+123", "0123", " 123") are different signed
/// texts: a captured signature does not verify under another spelling.
/// Holds.
#[test]
fn a_timestamp_respelt_does_not_verify() {
    let verifier = Verifier::new(&settings());
    let body = br#"{"event":"x"}"#;
    let ts = NOW.to_string();
    let sig = v2(&ts, body);
    for respelt in [
        format!("+{ts}"),
        format!("0{ts}"),
        format!("{ts}.0"),
        format!("{ts} "),
    ] {
        let result = verifier.verify(&headers(&respelt, &sig), body, NOW);
        // " 123 " is trimmed by the verifier to the signed text: the same
        // signature, so the same cache key (a replay, refused by the cache).
        if respelt.trim() == ts {
            assert!(result.is_ok());
        } else {
            assert!(result.is_err(), "{respelt:?} verified");
        }
    }
}

/// `Reservation` is released when dropped: a request whose future is
/// dropped after its events were appended (client gone while waiting for
/// the group commit) leaves its signature usable. Shown at the cache
/// level; the HTTP-level test is webhook_attacks::attack_a_disconnect_*.
#[test]
fn a_dropped_reservation_leaves_the_signature_usable() {
    let dir = tempfile::tempdir().unwrap();
    let cache: Arc<ReplayCache> = ReplayCache::open(&dir.path().join("replay"), 300, NOW).unwrap();
    let r = cache.reserve([9; 32], NOW, NOW).unwrap();
    // ... events appended here, then the handler future is dropped ...
    drop(r);
    assert!(
        cache.reserve([9; 32], NOW, NOW).is_ok(),
        "documented behaviour: usable again"
    );
}

/// (c) A sender set up with the wrong scheme sends the shared secret
/// itself where the signature goes (GitLab-style token headers are
/// common): the 401 reason quotes the first 80 bytes of what was sent, and
/// `post_source` logs that reason at info — the secret lands in the
/// relay's log on every such request. Expected: a reason that does not
/// echo a credential header's value.
#[test]
fn a_secret_sent_as_the_signature_is_not_echoed_into_the_reason() {
    let verifier = Verifier::new(&settings());
    let ts = NOW.to_string();
    let rejection = verifier
        .verify(&headers(&ts, SECRET), b"{}", NOW)
        .unwrap_err();
    assert!(
        !rejection.reason.contains(SECRET),
        "the reason (logged) quotes the secret: {}",
        rejection.reason
    );
}

#[test]
fn a_secret_sent_as_the_hub_signature_is_not_echoed_into_the_reason() {
    let settings: WebhookSettings = toml::from_str(&format!(
        "auth = \"hub-signature\"\nsecret = \"{SECRET}\"\n"
    ))
    .unwrap();
    let verifier = Verifier::new(&settings);
    let mut map = HeaderMap::new();
    map.insert(
        HeaderName::from_static("x-hub-signature-256"),
        HeaderValue::from_str(&format!("sha256={SECRET}")).unwrap(),
    );
    let rejection = verifier.verify(&map, b"{}", NOW).unwrap_err();
    assert!(
        !rejection.reason.contains(SECRET),
        "the reason (logged) quotes the secret: {}",
        rejection.reason
    );
}
