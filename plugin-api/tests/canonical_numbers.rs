//! Canonical JSON writes numbers exactly as ECMAScript does (RFC 8785
//! §3.2.2.3), checked against 3,000 doubles written by Node.js
//! (`tests/data/es6-numbers.js` made `tests/data/es6-numbers.txt`).

use auditrelay_plugin_api::envelope::es6_number;

#[test]
fn numbers_match_ecmascript_for_3000_doubles() {
    let vectors = include_str!("data/es6-numbers.txt");
    let mut checked = 0;
    for line in vectors.lines() {
        let (bits, expected) = line.split_once(' ').expect("`<hex bits> <text>` lines");
        let value = f64::from_bits(u64::from_str_radix(bits, 16).unwrap());
        assert_eq!(es6_number(value), expected, "bits {bits}");
        checked += 1;
    }
    assert_eq!(checked, 3000);
}
