use axum::http::HeaderValue;
use proptest::prelude::*;

use super::*;

const SECRET: &str = "a-shared-secret-of-32-bytes-0123";
const NOW: i64 = 1_764_583_200;

fn settings(auth: &str) -> WebhookSettings {
    toml::from_str(&format!("auth = \"{auth}\"\nsecret = \"{SECRET}\"\n")).unwrap()
}

/// The v2 signature, computed here from the scheme's description (not
/// with the verifier's code).
fn v2(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}:{}", hex::encode(Sha256::digest(body))).as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn signed(body: &[u8], at: i64) -> HeaderMap {
    let ts = at.to_string();
    headers(&[
        ("x-webhook-timestamp", &ts),
        ("x-webhook-signature", &v2(SECRET, &ts, body)),
    ])
}

fn reason<T: std::fmt::Debug>(result: Result<T, Rejection>) -> String {
    let rejection = result.expect_err("refused");
    assert_eq!(rejection.status, StatusCode::UNAUTHORIZED);
    assert!(!rejection.reason.contains(SECRET), "{}", rejection.reason);
    rejection.reason
}

#[test]
fn a_v2_signature_over_the_timestamp_and_the_body_digest_is_accepted() {
    let verifier = Verifier::new(&settings("hmac"));
    let body = br#"{"event":"scan.completed"}"#;
    let proof = verifier.verify(&signed(body, NOW - 10), body, NOW).unwrap();
    let Proof::Signed { timestamp, .. } = proof else {
        panic!("{proof:?}")
    };
    assert_eq!(timestamp, NOW - 10);
    // Upper-case hex and a `sha256=` prefix are the same signature.
    let ts = NOW.to_string();
    let upper = format!("sha256={}", v2(SECRET, &ts, body).to_uppercase());
    let sent = headers(&[
        ("x-webhook-timestamp", &ts),
        ("x-webhook-signature", &upper),
    ]);
    assert!(verifier.verify(&sent, body, NOW).is_ok());
}

#[test]
fn every_v2_failure_names_its_header() {
    let verifier = Verifier::new(&settings("hmac"));
    let body = b"{}";
    let ts = NOW.to_string();
    let good = v2(SECRET, &ts, body);
    let cases: Vec<(HeaderMap, &[u8], &str)> = vec![
        (
            headers(&[]),
            body,
            "x-webhook-signature and x-webhook-timestamp: missing",
        ),
        (
            headers(&[("x-webhook-timestamp", &ts)]),
            body,
            "x-webhook-signature: missing",
        ),
        (
            headers(&[("x-webhook-signature", &good)]),
            body,
            "x-webhook-timestamp: missing",
        ),
        (
            headers(&[
                ("x-webhook-timestamp", "yesterday"),
                ("x-webhook-signature", &good),
            ]),
            body,
            "x-webhook-timestamp: the 9 bytes sent are not a time in Unix seconds",
        ),
        (
            headers(&[("x-webhook-timestamp", &ts), ("x-webhook-signature", "abc")]),
            body,
            "x-webhook-signature: the 3 bytes sent are not an HMAC-SHA256 in hex",
        ),
        (
            headers(&[
                ("x-webhook-timestamp", &ts),
                (
                    "x-webhook-signature",
                    &v2("another-secret-of-32-bytes-01234", &ts, body),
                ),
            ]),
            body,
            "x-webhook-signature: does not match the body and x-webhook-timestamp (a wrong secret",
        ),
        (
            signed(body, NOW),
            b"{ }",
            "x-webhook-signature: does not match",
        ),
        (
            headers(&[
                ("x-webhook-timestamp", &(NOW + 1).to_string()),
                ("x-webhook-signature", &good),
            ]),
            body,
            "x-webhook-signature: does not match",
        ),
        (
            signed(body, NOW - 301),
            body,
            "x-webhook-timestamp: signed 301s ago, more than max_skew (300s)",
        ),
        (
            signed(body, NOW + 301),
            body,
            "x-webhook-timestamp: signed 301s ahead of the relay's clock",
        ),
        (
            headers(&[
                ("x-webhook-timestamp", &ts),
                ("x-webhook-signature", &good),
                ("x-webhook-signature", &good),
            ]),
            body,
            "x-webhook-signature: sent more than once",
        ),
    ];
    for (sent, body, expected) in cases {
        let reason = reason(verifier.verify(&sent, body, NOW));
        assert!(reason.starts_with(expected), "{expected:?}, got {reason:?}");
    }
    // What the headers alone tell is refused before a body is read: a
    // request without credentials holds no body memory.
    let stale = headers(&[("x-webhook-timestamp", "1"), ("x-webhook-signature", &good)]);
    assert!(reason(verifier.precheck(&stale, NOW)).contains("more than max_skew"));
    assert!(reason(verifier.precheck(&headers(&[]), NOW)).contains("missing"));
    assert!(verifier.precheck(&signed(body, NOW), NOW).is_ok());
    // A secret sent where the signature belongs is never quoted back.
    let misplaced = headers(&[
        ("x-webhook-timestamp", &ts),
        ("x-webhook-signature", SECRET),
    ]);
    let said = reason(verifier.verify(&misplaced, body, NOW));
    assert!(said.contains("the 32 bytes sent"), "{said}");
    for spelling in ["+1764583200", "01764583200", "1764583200.0", "-1"] {
        let sent = headers(&[
            ("x-webhook-timestamp", spelling),
            ("x-webhook-signature", &good),
        ]);
        assert!(
            reason(verifier.verify(&sent, body, NOW)).contains("not a time in Unix seconds")
                || spelling == "01764583200",
            "{spelling}"
        );
    }
}

#[test]
fn a_hub_signature_covers_the_raw_body() {
    let verifier = Verifier::new(&settings("hub-signature"));
    let body = br#"{"action":"opened"}"#;
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let sent = headers(&[("x-hub-signature-256", &good)]);
    assert_eq!(verifier.verify(&sent, body, NOW), Ok(Proof::Credential));
    assert!(
        reason(verifier.verify(&sent, b"{}", NOW))
            .starts_with("x-hub-signature-256: does not match the body")
    );
    let bare = headers(&[("x-hub-signature-256", good.trim_start_matches("sha256="))]);
    assert!(reason(verifier.verify(&bare, body, NOW)).contains("must start with \"sha256=\""));
    assert!(
        reason(verifier.verify(&headers(&[]), body, NOW))
            .starts_with("x-hub-signature-256: missing")
    );
}

#[test]
fn a_bearer_token_is_compared_whole() {
    let verifier = Verifier::new(&settings("bearer"));
    let with = |value: &str| headers(&[("authorization", value)]);
    assert_eq!(
        verifier.verify(&with(&format!("Bearer {SECRET}")), b"", NOW),
        Ok(Proof::Credential)
    );
    assert_eq!(
        verifier.verify(&with(&format!("bearer {SECRET}")), b"", NOW),
        Ok(Proof::Credential)
    );
    for wrong in [
        format!("Bearer {}", &SECRET[..31]),
        format!("Bearer {SECRET}x"),
        format!("Basic {SECRET}"),
        "Bearer ".into(),
    ] {
        assert!(
            reason(verifier.verify(&with(&wrong), b"", NOW))
                .starts_with("authorization: not the bearer token")
        );
    }
    assert!(reason(verifier.verify(&headers(&[]), b"", NOW)).starts_with("authorization: missing"));
}

proptest! {
    /// Any change to a signed body, however small, is refused.
    #[test]
    fn a_body_changed_after_signing_is_always_refused(
        body in proptest::collection::vec(any::<u8>(), 0..256),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let verifier = Verifier::new(&settings("hmac"));
        let sent = signed(&body, NOW);
        let mut changed = body.clone();
        if changed.is_empty() {
            changed.push(byte);
        } else {
            let i = at.index(changed.len());
            changed[i] = changed[i].wrapping_add(byte.max(1));
        }
        prop_assert!(verifier.verify(&sent, &body, NOW).is_ok());
        prop_assert!(verifier.verify(&sent, &changed, NOW).is_err());
    }

    /// Whatever the headers hold, verifying answers without a panic.
    #[test]
    fn arbitrary_header_values_never_panic(
        signature in "[ -~]{0,100}",
        timestamp in "[ -~]{0,30}",
    ) {
        let verifier = Verifier::new(&settings("hmac"));
        if let (Ok(s), Ok(t)) = (HeaderValue::from_str(&signature), HeaderValue::from_str(&timestamp)) {
            let mut sent = HeaderMap::new();
            sent.insert("x-webhook-signature", s);
            sent.insert("x-webhook-timestamp", t);
            let _ = verifier.verify(&sent, b"{}", NOW);
        }
    }
}
