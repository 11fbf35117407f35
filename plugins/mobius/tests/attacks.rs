//! An outside review of the `mobius` mapper: events the real
//! mobius-auditlog-py 1.0.0 sealed must be taken (a false refusal drops an
//! audit event into `refused.ndjson`), and an event changed in any way after
//! it was sealed must be refused.
//!
//! `tests/samples/attacks/*.json` are exactly the bytes a sender POSTs, made
//! by `tests/samples/attacks/generate.py` with the real package (builder
//! events, and events its ASGI middleware emitted for a request body the
//! *client* of the audited service chose); `cases.json` records whether the
//! package's own `verify()` accepts each after it went through JSON — the
//! oracle for "valid".

use std::path::Path;

use auditrelay_mapper_mobius::Mobius;
use auditrelay_plugin_api::mapper::Mapped;
use auditrelay_plugin_api::testing::MapperHarness;
use serde_json::{Value, json};

fn dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/samples/attacks")
}

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(format!("{name}.json"))).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Whether the package's own `verify()` accepts `name` after JSON.
fn python_verifies(name: &str) -> bool {
    let cases: Value =
        serde_json::from_slice(&std::fs::read(dir().join("cases.json")).unwrap()).unwrap();
    cases[name]["python_verifies"] == json!(true)
}

fn harness(config: Value) -> MapperHarness<Mobius> {
    MapperHarness::<Mobius>::new(config)
        .unwrap()
        .source("billing")
}

fn map(config: Value, body: &[u8]) -> Mapped {
    harness(config).map_bytes(body, "application/json", &[])
}

fn refusal(mapped: &Mapped) -> Option<String> {
    match mapped {
        Mapped::Refused(reason) => Some(reason.clone()),
        Mapped::Envelopes(_) => None,
    }
}

/// The one envelope of a taken record.
fn envelope(mapped: &Mapped) -> Value {
    let events = mapped.envelopes().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(events.len(), 1);
    serde_json::from_slice(&events[0].to_canonical_json()).unwrap()
}

/// Each valid sample in `names` must be taken; every refusal is listed.
fn all_taken(names: &[&str]) {
    let mut refused = Vec::new();
    for name in names {
        assert!(
            python_verifies(name),
            "{name}: the package itself does not verify it; not a valid event"
        );
        let mapped = map(json!({"require_hash": true}), &sample(name));
        if let Some(reason) = refusal(&mapped) {
            refused.push(format!("{name}: {reason}"));
        }
    }
    assert!(
        refused.is_empty(),
        "valid events sealed by the real package were refused:\n{}",
        refused.join("\n")
    );
}

/// Emoji, control characters, U+2028, NFD text, 64-bit integers, the
/// floats Python writes in exponent form (1e+16, 5e-324, 1e-07), -0.0,
/// nested empty dicts and lists, None, `False`/`0`, a `security` key inside
/// the payload; from the builder and from the middleware; sent with
/// `ensure_ascii=False, indent=2` and with `default=str` (datetime, Decimal,
/// UUID).
#[test]
fn odd_but_valid_payloads_from_the_real_package_are_taken() {
    all_taken(&[
        "odd_payload_built",
        "odd_payload_middleware",
        "odd_payload_ensure_ascii_false",
        "odd_payload_default_str",
    ]);
    // And taken as sealed: the payload is what the package sealed.
    let event = envelope(&map(json!({}), &sample("odd_payload_built")));
    let sent: Value = serde_json::from_slice(&sample("odd_payload_built")).unwrap();
    assert_eq!(
        event["payload"]["request"]["big_ints"],
        sent["eventdata"]["requestpayload"]["big_ints"]
    );
    assert_eq!(
        event["payload"]["request"]["emoji"],
        sent["eventdata"]["requestpayload"]["emoji"]
    );
}

/// Python's `sort_keys` orders keys by code point; the mapper sorts them by
/// UTF-16 code units, which puts U+1F600 (D83D DE00) before U+FF71 and
/// U+E000. A payload with such keys — which any client of a service using
/// the middleware can send as its request body — is refused as "changed
/// after it was sealed".
#[test]
fn keys_beyond_the_bmp_are_ordered_as_python_orders_them() {
    all_taken(&["astral_keys_built", "astral_keys_middleware"]);
}

/// Python integers have no size: `2**64`, `-2**63 - 1`, a 30-digit order id
/// in a request body. serde_json (without `arbitrary_precision`) reads them
/// as f64, the mapper writes `1.8446744073709552e+19` where Python wrote
/// `18446744073709551616`, and the valid event is refused.
#[test]
fn integers_beyond_64_bits_are_taken() {
    all_taken(&[
        "int_2_64_built",
        "int_below_i64_built",
        "int_big_middleware",
    ]);
}

/// JSON that Python's `json` writes and reads back, and serde_json does
/// not: `NaN`/`Infinity` (a request body with `1e400` is `inf` to
/// `json.loads`), a lone surrogate escape (`"\ud800"`), nesting deeper than
/// serde_json's 128 levels (Python reads ~1000). Each valid event is
/// refused as "not the JSON expected". The mapper's own `python_float`
/// writes `NaN` and `Infinity`, so they were meant to be hashed.
#[test]
fn json_that_python_writes_and_reads_is_taken() {
    all_taken(&[
        "nan_built",
        "infinity_middleware",
        "lone_surrogate_middleware",
        "deep_middleware",
        "deep_built",
    ]);
}

fn sealed() -> Value {
    serde_json::from_slice(&sample("odd_payload_built")).unwrap()
}

fn set(event: &mut Value, pointer: &str, value: Value) {
    *event
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{pointer}")) = value;
}

/// Every change of content, one at a time, on a valid sealed event: each is
/// refused (checked as a list, so every one that is taken is named).
#[test]
fn any_change_after_sealing_is_refused() {
    let original = sealed();
    assert!(refusal(&map(json!({}), &serde_json::to_vec(&original).unwrap())).is_none());
    let p = "/eventdata/requestpayload";
    let mut changes: Vec<(String, Vec<u8>)> = Vec::new();
    let mut change = |what: &str, edit: &dyn Fn(&mut Value)| {
        let mut event = original.clone();
        edit(&mut event);
        changes.push((what.to_owned(), serde_json::to_vec(&event).unwrap()));
    };
    change("an emoji", &|e| {
        set(e, &format!("{p}/emoji"), json!("😁 👩‍👩‍👧 🇳🇿"))
    });
    change("NFD made NFC", &|e| {
        set(e, &format!("{p}/nfd"), json!("\u{e9} vs \u{e9}"))
    });
    change("a control character dropped", &|e| {
        let text = e
            .pointer(&format!("{p}/controls"))
            .unwrap()
            .as_str()
            .unwrap()[1..]
            .to_owned();
        set(e, &format!("{p}/controls"), json!(text))
    });
    change("U+2028 made U+2029", &|e| {
        set(
            e,
            &format!("{p}/separators"),
            json!("\u{2029}\u{2029}\u{feff}\u{fffe}\u{ffff}"),
        )
    });
    change("2**53 + 1 made 2**53 (the same f64)", &|e| {
        set(e, &format!("{p}/big_ints/0"), json!(9007199254740992u64))
    });
    change("2**64 - 1 made 2**64 - 2", &|e| {
        set(e, &format!("{p}/big_ints/3"), json!(u64::MAX - 1))
    });
    change("1e16 made the next float", &|e| {
        set(e, &format!("{p}/floats/0"), json!(1.0000000000000002e16))
    });
    change("1e16 made the integer 10000000000000000", &|e| {
        set(e, &format!("{p}/floats/0"), json!(10000000000000000u64))
    });
    change("-0.0 made 0.0", &|e| {
        set(e, &format!("{p}/floats/2"), json!(0.0))
    });
    change("5e-324 made 1e-323", &|e| {
        set(e, &format!("{p}/floats/3"), json!(1e-323))
    });
    change("0 made 0.0", &|e| {
        set(e, &format!("{p}/falsy/1"), json!(0.0))
    });
    change("false made 0", &|e| {
        set(e, &format!("{p}/falsy/0"), json!(0))
    });
    change("a None in a list made a string", &|e| {
        set(e, &format!("{p}/nested_empty/h/2"), json!("x"))
    });
    change("a nested None given a value", &|e| {
        set(e, &format!("{p}/nested_empty/h/4"), json!({"i": "x"}))
    });
    change("the payload's own security key", &|e| {
        set(e, &format!("{p}/security/hash"), json!("other"))
    });
    change("subject.type in other case", &|e| {
        set(e, "/subject/type", json!("user"))
    });
    change("a group added", &|e| {
        set(e, "/subject/groups", json!(["billing-admins", "root"]))
    });
    change("an unknown top-level key", &|e| {
        e["Security"] = json!({"hash": "x"});
    });
    change("tenantid moved into security", &|e| {
        let tenant = e.as_object_mut().unwrap().remove("tenantid").unwrap();
        e["security"]["tenantid"] = tenant;
    });
    change("a list item moved", &|e| {
        let list = e
            .pointer_mut(&format!("{p}/floats"))
            .unwrap()
            .as_array_mut()
            .unwrap();
        list.swap(0, 1);
    });
    let sealed_text = String::from_utf8(serde_json::to_vec(&original).unwrap()).unwrap();
    // Duplicate keys: the last one is what both Python and the mapper read.
    let tenant_at = sealed_text.find("\"tenantid\":\"acme\"").unwrap();
    let mut duplicate = sealed_text.clone();
    duplicate.insert_str(
        tenant_at + "\"tenantid\":\"acme\"".len(),
        ",\"tenantid\":\"globex\"",
    );
    changes.push((
        "a duplicate tenantid after the first".into(),
        duplicate.into_bytes(),
    ));
    let groups_at = sealed_text.find("\"subject\":{").unwrap() + "\"subject\":{".len();
    let mut duplicate = sealed_text.clone();
    duplicate.insert_str(groups_at, "\"userid\":\"mallory\",");
    let end = duplicate.find("\"userid\":\"u-1001\"").unwrap();
    duplicate.replace_range(
        end..end + "\"userid\":\"u-1001\"".len(),
        "\"userid\":\"mallory\"",
    );
    changes.push((
        "subject.userid twice, both mallory".into(),
        duplicate.into_bytes(),
    ));

    let mut taken = Vec::new();
    for (what, body) in &changes {
        if refusal(&map(json!({}), body)).is_none() {
            taken.push(what.clone());
        }
    }
    // Not events, and arrays with one changed event.
    for body in [
        &b"null"[..],
        b"\"event\"",
        b"42",
        b"true",
        b"[[]]",
        b"[null]",
    ] {
        if refusal(&map(json!({}), body)).is_none() {
            taken.push(format!("the record {}", String::from_utf8_lossy(body)));
        }
    }
    let good = serde_json::to_string(&original).unwrap();
    let bad = String::from_utf8(changes[0].1.clone()).unwrap();
    for array in [format!("[{good},{bad}]"), format!("[{bad},{good}]")] {
        match refusal(&map(json!({}), array.as_bytes())) {
            Some(reason) if reason.contains("changed after it was sealed") => {}
            other => taken.push(format!("an array with one changed event: {other:?}")),
        }
    }
    assert!(
        taken.is_empty(),
        "changed after sealing, and taken:\n{}",
        taken.join("\n")
    );
}

/// The docs: "An event *with* a hash that does not match is refused
/// whatever [`require_hash`] says." A changed event whose `security.hash` is
/// a number, a list, an object or `true` — or whose `security` is a string —
/// is not refused but taken as unsealed (the default `require_hash =
/// false`): `text()` reads only non-empty strings, so a hash of another
/// type counts as no hash. Its `mobius.signed` still says `"true"` when a
/// signature is there, though nothing was checked.
#[test]
fn a_hash_of_another_type_is_not_taken_for_no_hash() {
    let original = sealed();
    let hash = original["security"]["hash"].clone();
    let signature = original["security"]["signature"].clone();
    let mut taken = Vec::new();
    for (what, security) in [
        ("a number", json!({"hash": 0, "signature": signature})),
        ("a list", json!({"hash": [hash], "signature": signature})),
        (
            "an object",
            json!({"hash": {"sha256": hash}, "signature": signature}),
        ),
        ("true", json!({"hash": true, "signature": signature})),
        ("security a string", json!(hash)),
    ] {
        let mut event = original.clone();
        event["subject"]["userid"] = json!("mallory");
        event["security"] = security;
        let mapped = map(json!({}), &serde_json::to_vec(&event).unwrap());
        if refusal(&mapped).is_none() {
            let envelope = envelope(&mapped);
            taken.push(format!(
                "hash {what}: taken as actor {} with mobius.signed = {}",
                envelope["actor"]["id"], envelope["metadata"]["mobius.signed"]
            ));
        }
    }
    assert!(
        taken.is_empty(),
        "a changed event with a malformed hash was taken:\n{}",
        taken.join("\n")
    );
}

/// The hash is checked over the *pruned* event (as the package prunes:
/// `null`, `""`, `[]`, `{}` dropped), but the envelope's payload is copied
/// from the record *unpruned*: keys added after sealing with an empty value
/// — `"approved_by": null`, `"reason": ""`, `"scopes": []`, `"extra": {}`,
/// or `{"override": null}` inside a list's dict — pass the check and are
/// stored and exported as part of the sealed event.
#[test]
fn what_the_seal_does_not_cover_is_not_stored_as_sealed() {
    let original = sealed();
    let mut event = original.clone();
    let payload = event
        .pointer_mut("/eventdata/requestpayload")
        .unwrap()
        .as_object_mut()
        .unwrap();
    payload.insert("approved_by".into(), Value::Null);
    payload.insert("reason".into(), json!(""));
    payload.insert("scopes".into(), json!([]));
    payload.insert("extra".into(), json!({"by": null}));
    event
        .pointer_mut("/eventdata/requestpayload/nested_empty/h/0")
        .unwrap()
        .as_object_mut()
        .unwrap()
        .insert("override".into(), Value::Null);
    let mapped = map(
        json!({"require_hash": true}),
        &serde_json::to_vec(&event).unwrap(),
    );
    let Some(stored) = mapped.envelopes().ok().map(|_| envelope(&mapped)) else {
        return; // refused: nothing unsealed is stored
    };
    let request = &stored["payload"]["request"];
    let unsealed: Vec<String> = ["approved_by", "reason", "scopes", "extra"]
        .into_iter()
        .filter(|key| request.get(*key).is_some())
        .map(|key| format!("{key}: {}", request[key]))
        .chain(
            request
                .pointer("/nested_empty/h/0/override")
                .map(|v| format!("nested_empty.h[0].override: {v}")),
        )
        .collect();
    assert!(
        unsealed.is_empty(),
        "taken as sealed (mobius.hash = {}), with keys added after sealing stored in its payload:\n{}",
        stored["metadata"]["mobius.hash"],
        unsealed.join("\n")
    );
}
