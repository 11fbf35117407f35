use auditrelay_plugin_api::envelope::{Actor, AuditEventEnvelope, EnvelopeView, Outcome};
use serde_json::json;

use super::*;

fn content(id: &str, tenant: Option<&str>) -> Vec<u8> {
    let mut builder = AuditEventEnvelope::builder("billing-api", "invoice.paid")
        .id(id)
        .actor(Actor::user("u-1"))
        .outcome(Outcome::Success)
        .payload(json!({"amount": 12, "note": "a \"quoted\" word"}));
    if let Some(tenant) = tenant {
        builder = builder.tenant(tenant);
    }
    builder.build().unwrap().to_canonical_json()
}

#[test]
fn a_sealed_event_is_canonical_and_reads_back_with_its_seal_holding() {
    let mut head = Head::default();
    let first = seal(&content("e-1", Some("acme")), "acme", &mut head);
    let second = seal(&content("e-2", Some("acme")), "acme", &mut head);
    assert_eq!(head.seq, 2);
    for (json, seq) in [(&first, 1), (&second, 2)] {
        // The sealed bytes are what the envelope types encode.
        let view = EnvelopeView::read_json(json).unwrap();
        assert_eq!(&view.to_canonical_json(), json);
        let seal = view.integrity.clone().unwrap();
        assert_eq!(seal.seq, seq);
        assert_eq!(seal.stream, "acme");
        let opened = Opened::read(json).unwrap();
        assert!(opened.holds());
        assert_eq!(opened.seq, seq);
        assert_eq!(opened.id, format!("e-{seq}"));
        assert_eq!(hex::encode(opened.hash), seal.hash);
    }
    let (a, b) = (
        Opened::read(&first).unwrap(),
        Opened::read(&second).unwrap(),
    );
    assert_eq!(a.prev, GENESIS);
    assert_eq!(b.prev, a.hash);
    assert_eq!(head.hash, b.hash);
}

#[test]
fn the_hash_is_the_documented_one() {
    let plain = content("e-1", None);
    let sealed = seal(&plain, "", &mut Head::default());
    let opened = Opened::read(&sealed).unwrap();
    // As docs/integrity.md tells an auditor to compute it.
    let digest = hex::encode(Sha256::digest(&plain));
    let text = format!(
        r#"{{"digest":"{digest}","prev":"{}","seq":1,"stream":""}}"#,
        "0".repeat(64)
    );
    assert_eq!(
        opened.hash,
        <[u8; 32]>::from(Sha256::digest(text.as_bytes()))
    );
}

#[test]
fn a_reformatted_event_still_reads_and_an_edited_one_does_not_hold() {
    let sealed = seal(
        &content("e-1", Some("a\"b\\c")),
        "a\"b\\c",
        &mut Head::default(),
    );
    let value: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
    let pretty = serde_json::to_vec_pretty(&value).unwrap();
    let opened = Opened::read(&pretty).unwrap();
    assert!(opened.holds());
    assert_eq!(opened.stream, "a\"b\\c");
    assert_eq!(opened, Opened::read(&sealed).unwrap());

    let edited = String::from_utf8(sealed.clone())
        .unwrap()
        .replace("\"amount\":12", "\"amount\":13");
    let opened = Opened::read(edited.as_bytes()).unwrap();
    assert!(!opened.holds());
    // A seal moved into a string does not count as one.
    let plain = content("e-1", None);
    let mut smuggled = plain.clone();
    let at = smuggled.len() - 1;
    let member = &sealed[member_position(&plain).unwrap()..][..200];
    smuggled.splice(
        at..at,
        format!(",\"x\":{:?}", String::from_utf8_lossy(member)).into_bytes(),
    );
    assert!(Opened::read(&smuggled).is_none());
}

#[test]
fn anything_else_reads_as_no_seal_without_panicking() {
    for junk in [
        &b""[..],
        b"{",
        b"{}",
        b"[1,2]",
        b"{\"id\":\"x\",\"integrity\":{\"hash\":\"zz\"}}",
        b"{\"id\":\"x\",\"integrity\":",
        b"{\"a\":\"\\",
    ] {
        assert!(Opened::read(junk).is_none(), "{junk:?}");
    }
    let plain = content("e-1", None);
    assert!(Opened::read(&plain).is_none());
    let sealed = seal(&plain, "", &mut Head::default());
    for cut in 0..sealed.len() {
        let _ = Opened::read(&sealed[..cut]);
    }
}

#[test]
fn the_link_text_escapes_streams_and_writes_any_seq_as_json_does() {
    for (stream, seq) in [("acme", 9), ("a\"b\\c\u{1}é", 1_234_567), ("", u64::MAX)] {
        let digest = [0xab; 32];
        let prev = [0x01; 32];
        let text = format!(
            r#"{{"digest":"{}","prev":"{}","seq":{seq},"stream":{}}}"#,
            hex::encode(digest),
            hex::encode(prev),
            serde_json::to_string(stream).unwrap()
        );
        assert_eq!(
            link(&digest, &prev, seq, stream),
            <[u8; 32]>::from(Sha256::digest(text.as_bytes())),
            "{stream:?} {seq}"
        );
    }
    assert_eq!(
        parse_hash(&"A".repeat(64)),
        None,
        "upper case is not canonical"
    );
    assert_eq!(parse_hash(&"0".repeat(63)), None);
    assert_eq!(parse_hash(&"ab".repeat(32)), Some([0xab; 32]));
}
