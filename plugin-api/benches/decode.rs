//! What reading an envelope costs, natively, piece by piece, for the
//! benchmark envelope (`testing::sample_envelope`, canonical JSON).
//!
//! ```text
//! cargo bench -p auditrelay-plugin-api --bench decode
//! ```

use std::hint::black_box;
use std::time::Instant;

use auditrelay_plugin_api::envelope::{AuditEventEnvelope, EnvelopeView, Limits, strict};
use auditrelay_plugin_api::testing::sample_envelope;

const EVENTS: usize = 2_000;
const ROUNDS: usize = 15;

fn main() {
    let inputs: Vec<Vec<u8>> = (0..EVENTS)
        .map(|i| sample_envelope(i).to_canonical_json())
        .collect();
    let owned: Vec<AuditEventEnvelope> = inputs
        .iter()
        .map(|b| AuditEventEnvelope::from_json(b).unwrap())
        .collect();
    let average = inputs.iter().map(Vec::len).sum::<usize>() / EVENTS;
    println!("{EVENTS} envelopes of {average} B on average; median of {ROUNDS} rounds");
    let limits = Limits::default();
    type Row<'r> = (&'static str, Box<dyn Fn() + 'r>);
    let rows: Vec<Row> = vec![
        (
            "serde_json, ignore all (parse floor)",
            Box::new(|| {
                for b in &inputs {
                    black_box(serde_json::from_slice::<serde::de::IgnoredAny>(b).unwrap());
                }
            }),
        ),
        (
            "strict::check",
            Box::new(|| {
                for b in &inputs {
                    black_box(strict::check(black_box(b))).unwrap();
                }
            }),
        ),
        (
            "serde_json to owned (no checks)",
            Box::new(|| {
                for b in &inputs {
                    black_box(serde_json::from_slice::<AuditEventEnvelope>(b).unwrap());
                }
            }),
        ),
        (
            "validate owned",
            Box::new(|| {
                for e in &owned {
                    black_box(e.validate_with(&limits)).unwrap();
                }
            }),
        ),
        (
            "to_validated_json owned",
            Box::new(|| {
                for e in &owned {
                    black_box(e.to_validated_json(&limits).unwrap());
                }
            }),
        ),
        (
            "serde_json to view (no checks)",
            Box::new(|| {
                for b in &inputs {
                    black_box(serde_json::from_slice::<EnvelopeView>(b).unwrap());
                }
            }),
        ),
        (
            "EnvelopeView::read_json (no rules)",
            Box::new(|| {
                for b in &inputs {
                    black_box(EnvelopeView::read_json(b).unwrap());
                }
            }),
        ),
        (
            "EnvelopeView::from_json",
            Box::new(|| {
                for b in &inputs {
                    black_box(EnvelopeView::from_json(b).unwrap());
                }
            }),
        ),
        (
            "view read_json + to_validated_json",
            Box::new(|| {
                for b in &inputs {
                    black_box(
                        EnvelopeView::read_json(b)
                            .unwrap()
                            .to_validated_json(&limits)
                            .unwrap(),
                    );
                }
            }),
        ),
        (
            "owned read_json + to_validated_json",
            Box::new(|| {
                for b in &inputs {
                    black_box(
                        AuditEventEnvelope::read_json(b)
                            .unwrap()
                            .to_validated_json(&limits)
                            .unwrap(),
                    );
                }
            }),
        ),
        (
            "from_json (owned)",
            Box::new(|| {
                for b in &inputs {
                    black_box(AuditEventEnvelope::from_json(b).unwrap());
                }
            }),
        ),
    ];
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .unwrap_or_default();
    for (name, run) in rows.iter().filter(|(name, _)| name.contains(&filter)) {
        let mut times = Vec::new();
        for _ in 0..ROUNDS {
            let started = Instant::now();
            run();
            times.push(started.elapsed().as_nanos() as f64 / EVENTS as f64);
        }
        times.sort_by(f64::total_cmp);
        println!("{name:<40} {:>8.0} ns/event", times[ROUNDS / 2]);
    }
}
