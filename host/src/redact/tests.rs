use auditrelay_plugin_api::envelope::{Actor, AuditEventEnvelope, Outcome};
use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::secret::Secret;

fn event(payload: Value) -> AuditEventEnvelope {
    AuditEventEnvelope::builder("billing-api", "invoice.paid")
        .actor(Actor::user("u-1").email("ana@example.test"))
        .outcome(Outcome::Success)
        .payload(payload)
        .build()
        .unwrap()
}

fn defaults() -> Redaction {
    Redaction::new(true, &[]).unwrap()
}

fn rule(name: &str) -> RedactRule {
    RedactRule::named(name)
}

/// Redacts `event` as the intake does: only when the look at its JSON says so.
fn redact(redaction: &Redaction, event: &mut AuditEventEnvelope) -> Vec<Redacted> {
    let json = event.to_canonical_json();
    let may = redaction.may_apply(&event.source, &event.event_type, &json);
    let done = redaction.apply(event);
    assert!(
        may || done.is_empty(),
        "the look at the JSON missed {done:?}"
    );
    done
}

fn text(event: &AuditEventEnvelope) -> String {
    String::from_utf8(event.to_canonical_json()).unwrap()
}

#[test]
fn secret_keys_are_masked_at_any_depth_in_any_spelling() {
    let mut e = event(json!({
        "user": {"Password": "hunter2", "profile": {"apiKey": "k-1", "name": "Ana"}},
        "sessions": [{"ACCESS-TOKEN": "t-1"}, {"refresh_token": {"value": "t-2"}}],
        "Set-Cookie": ["a=1", "b=2"],
        "note": "nothing here",
        "X-Api-Key": "k-2",
        // Not hex: the event's random id must not contain a secret by chance.
        "csrfToken": "csrf-v1",
        "tokens_used": 12,
    }));
    e.metadata
        .insert("Authorization".into(), "Basic dXNlcjpwYXNz".into());
    let done = redact(&defaults(), &mut e);
    let out = text(&e);
    for secret in [
        "hunter2",
        "k-1",
        "k-2",
        "csrf-v1",
        "t-1",
        "t-2",
        "a=1",
        "dXNlcjpwYXNz",
    ] {
        assert!(!out.contains(secret), "{secret} in {out}");
    }
    assert!(out.contains("Ana") && out.contains("nothing here"), "{out}");
    assert_eq!(
        e.payload["tokens_used"], 12,
        "a name that only starts like a secret stays"
    );
    let paths: Vec<&str> = done.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "metadata.Authorization",
            "payload.Set-Cookie",
            "payload.X-Api-Key",
            "payload.csrfToken",
            "payload.sessions[0].ACCESS-TOKEN",
            "payload.sessions[1].refresh_token",
            "payload.user.Password",
            "payload.user.profile.apiKey",
        ]
    );
    assert!(
        done.iter()
            .all(|d| d.rule == "default-keys" && d.action == "mask")
    );
    // The record is in the event, with no value in it.
    let record: Vec<Redacted> = serde_json::from_str(&e.metadata[RECORD_KEY]).unwrap();
    assert_eq!(record, done);
}

#[test]
fn secrets_in_values_are_cut_out_where_they_stand() {
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_nature-1";
    let pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADAN\n-----END PRIVATE KEY-----";
    let mut e = event(json!({
        "log": format!("login with Bearer abc123 then {jwt}"),
        "card": "paid by 4111-1111-1111-1111, ref 1234567890123",
        "iban": ["DE89 3704 0044 0532 0130 00"],
        "key": pem,
        "aws": "AKIAIOSFODNN7EXAMPLE",
    }));
    e.reason = Some("reset for card 5500 0000 0000 0004".into());
    e.metadata.insert("trace".into(), format!("jwt={jwt}"));
    redact(&defaults(), &mut e);
    let out = text(&e);
    for secret in [
        jwt,
        "abc123",
        "4111-1111-1111-1111",
        "DE89 3704",
        "MIIEvQIBADAN",
        "AKIAIOSFODNN7EXAMPLE",
        "5500 0000",
    ] {
        assert!(!out.contains(secret), "{secret} in {out}");
    }
    assert_eq!(
        e.payload["card"], "paid by [REDACTED], ref 1234567890123",
        "no Luhn, no card"
    );
    assert_eq!(e.reason.as_deref(), Some("reset for card [REDACTED]"));
    assert_eq!(e.metadata["trace"], "jwt=[REDACTED]");
}

#[test]
fn a_clean_event_is_not_even_walked() {
    let redaction = defaults();
    let mut e = event(json!({"member": "u-7", "role": "admin", "count": 12}));
    // (A random id can hold 13 digits in a row, which looks like a card
    // number to the quick look: then the walk decides, and finds nothing.)
    e.id = "0192f5e4-8c1a-7c3e-9b1d-2f6a1c0e4b7d".into();
    assert!(!redaction.may_apply(&e.source, &e.event_type, &e.to_canonical_json()));
}

#[test]
fn paths_hash_truncate_and_remove_with_scopes() {
    let rules = [
        RedactRule {
            paths: vec!["actor.email".into()],
            action: RedactAction::Hash,
            hash_key: Some(Secret::new("0123456789abcdef-key")),
            hash_key_id: Some("k1".into()),
            ..rule("pseudonymize")
        },
        RedactRule {
            paths: vec!["payload.items[*].pan".into()],
            action: RedactAction::Truncate,
            keep: 4,
            ..rule("pan")
        },
        RedactRule {
            keys: vec!["internal_note".into()],
            action: RedactAction::Remove,
            types: vec!["invoice.*".into()],
            ..rule("notes")
        },
        RedactRule {
            keys: vec!["internal_note".into()],
            sources: vec!["another-app".into()],
            ..rule("never")
        },
    ];
    let redaction = Redaction::new(false, &rules).unwrap();
    let mut e = event(json!({"items": [{"pan": "12345678"}, {"pan": "99"}], "internal_note": "x"}));
    let done = redact(&redaction, &mut e);
    let email = e.actor.email.clone().unwrap();
    assert!(
        email.ends_with("@k1.hmac-sha256.invalid")
            && email.len() == 64 + "@k1.hmac-sha256.invalid".len(),
        "{email}"
    );
    assert!(
        e.to_validated_json(&Default::default()).is_ok(),
        "still a valid envelope"
    );
    assert_eq!(
        e.payload,
        json!({"items": [{"pan": "1234…"}, {"pan": "9…"}]})
    );
    assert_eq!(
        done.iter()
            .map(|d| (d.path.as_str(), d.rule.as_str()))
            .collect::<Vec<_>>(),
        [
            ("actor.email", "pseudonymize"),
            ("payload.internal_note", "notes"),
            ("payload.items[0].pan", "pan"),
            ("payload.items[1].pan", "pan"),
        ]
    );
    // Equal values hash equal: still joinable.
    let mut again = event(json!({}));
    redact(&redaction, &mut again);
    assert_eq!(again.actor.email, Some(email));
    // Out of scope: another type keeps its note.
    let mut other = AuditEventEnvelope {
        event_type: "user.login".into(),
        ..event(json!({"internal_note": "x"}))
    };
    redact(&redaction, &mut other);
    assert_eq!(other.payload, json!({"internal_note": "x"}));
}

#[test]
fn a_record_left_by_an_earlier_relay_is_added_to_and_stays_small() {
    let mut e = event(json!({"password": "p"}));
    e.metadata.insert(
        RECORD_KEY.into(),
        r#"[{"path":"payload.x","rule":"upstream","action":"mask"}]"#.into(),
    );
    redact(&defaults(), &mut e);
    let record: Vec<Value> = serde_json::from_str(&e.metadata[RECORD_KEY]).unwrap();
    assert_eq!(record.len(), 2);
    assert_eq!(record[0]["rule"], "upstream");

    let many: serde_json::Map<String, Value> = (0..500)
        .map(|i| (format!("password_{i:03}"), json!("p")))
        .collect();
    let redaction = Redaction::new(
        false,
        &[RedactRule {
            regex: vec!["^p$".into()],
            ..rule("p")
        }],
    )
    .unwrap();
    let mut e = event(Value::Object(many));
    redact(&redaction, &mut e);
    let record = &e.metadata[RECORD_KEY];
    assert!(record.len() <= 4096, "{}", record.len());
    assert!(record.contains("\"omitted\""), "{record}");
    assert!(e.to_validated_json(&Default::default()).is_ok());
}

#[test]
fn every_problem_with_the_rules_is_named_at_once() {
    let rules = [
        rule(""),
        RedactRule {
            patterns: vec!["credit_card".into()],
            ..rule("a")
        },
        RedactRule {
            regex: vec!["(".into()],
            ..rule("a")
        },
        RedactRule {
            keys: vec!["x".into()],
            action: RedactAction::Hash,
            ..rule("b")
        },
        RedactRule {
            keys: vec!["x".into()],
            action: RedactAction::Hash,
            hash_key: Some(Secret::new("tiny-k3y")),
            hash_key_id: Some("k".into()),
            ..rule("c")
        },
        RedactRule {
            paths: vec!["actor.id".into(), "tenant".into()],
            action: RedactAction::Remove,
            ..rule("d")
        },
    ];
    let problems = Redaction::new(true, &rules).unwrap_err();
    let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "redact[0].name",
            "redact[0].keys",
            "redact[1].patterns",
            "redact[2].name",
            "redact[2].regex",
            "redact[3].hash_key",
            "redact[4].hash_key",
            "redact[5].paths",
            "redact[5].paths",
        ],
        "{problems:#?}"
    );
    let all = format!("{problems:?}");
    assert!(
        all.contains("card_number"),
        "the known patterns are listed: {all}"
    );
    assert!(!all.contains("tiny-k3y"), "a key is never shown: {all}");
}

/// JSON trees built from names and values that are, or look like, secrets.
fn tree() -> impl Strategy<Value = Value> {
    let names = prop::sample::select(vec![
        "password",
        "Pass_Word",
        "PASSWD",
        "apiKey",
        "API-KEY",
        "api.key",
        "token",
        "tok en",
        "name",
        "note",
        "items",
        "pass\"word",
        "pässword",
        "set-cookie",
        "id",
    ]);
    let strings = prop::sample::select(vec![
        "plain",
        "4111 1111 1111 1111",
        "4111 1111 1111 1112",
        "Bearer x.y",
        "eyJa.eyJb.c",
        "AKIAIOSFODNN7EXAMPLE",
        "-----BEGIN PRIVATE KEY-----\nabc",
        "DE89370400440532013000",
        "aws_secret_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "ünïcode \"quoted\" \\ back",
    ]);
    let leaf = prop_oneof![
        strings.prop_map(|s| Value::String(s.into())),
        any::<i64>().prop_map(Value::from),
        Just(Value::Null),
    ];
    leaf.prop_recursive(4, 40, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((names.clone(), inner), 0..5).prop_map(|entries| Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect()
            )),
        ]
    })
}

proptest! {
    /// The look at the JSON never misses what the walk would redact, and
    /// after the walk no secret of the vocabulary is left.
    #[test]
    fn the_quick_look_never_misses_and_nothing_is_left(payload in tree()) {
        let redaction = defaults();
        let mut e = event(payload);
        redact(&redaction, &mut e);
        let out = text(&e);
        for secret in ["4111 1111 1111 1111", "x.y", "eyJa", "AKIAIOSFODNN7EXAMPLE", "BEGIN PRIVATE", "DE8937", "wJalrXUtnFEMI"] {
            prop_assert!(!out.contains(secret), "{} in {}", secret, out);
        }
        // Redacting again finds no pattern left: only masks already there
        // are masked again.
        let mut again = e.clone();
        let more = redaction.apply(&mut again);
        prop_assert!(more.iter().all(|d| d.rule == "default-keys"), "{:?}", more);
    }
}

#[test]
fn the_record_fits_an_event_whose_metadata_is_full() {
    let mut e = event(json!({"token": "t"}));
    for i in 0..64 {
        e.metadata.insert(format!("k{i:02}"), "v".into());
    }
    redact(&defaults(), &mut e);
    assert!(e.metadata.contains_key(RECORD_KEY));
    assert!(
        e.to_validated_json(&Default::default()).is_ok(),
        "65 entries, one the record"
    );
}

#[test]
fn fields_with_a_shape_stay_valid_whatever_is_done_to_them() {
    for action in [
        RedactAction::Mask,
        RedactAction::Hash,
        RedactAction::Truncate,
        RedactAction::Remove,
    ] {
        let rules = [RedactRule {
            paths: vec![
                "actor.email".into(),
                "actor.ip".into(),
                "actor.id".into(),
                "target.id".into(),
            ],
            action,
            hash_key: Some(Secret::new("0123456789abcdef-key")),
            hash_key_id: Some("k1".into()),
            ..rule("people")
        }];
        let Ok(redaction) = Redaction::new(false, &rules) else {
            assert_eq!(
                action,
                RedactAction::Remove,
                "only removing a required field is refused"
            );
            continue;
        };
        let mut e = event(json!({}));
        e.actor.ip = Some("203.0.113.9".into());
        e.target = Some(auditrelay_plugin_api::envelope::Target::new("group", "g-7"));
        let done = redact(&redaction, &mut e);
        assert_eq!(done.len(), 4, "{action:?}: {done:?}");
        let json = e.to_validated_json(&Default::default());
        assert!(json.is_ok(), "{action:?}: {json:?}");
        let out = text(&e);
        assert!(
            !out.contains("ana@example.test")
                && !out.contains("203.0.113.9")
                && !out.contains("\"u-1\""),
            "{action:?}: {out}"
        );
    }
}
