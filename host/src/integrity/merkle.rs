//! RFC 9162 (Certificate Transparency 2.0, §2.1) Merkle trees over the
//! events of one stream: the tree hash of a list of leaves, inclusion
//! proofs (one event is in a tree of a given size) and consistency
//! proofs (a larger tree only appended to a smaller one), and their
//! verification — the algorithms of §2.1.3 and §2.1.4, checked against
//! the Certificate Transparency test vectors.
//!
//! A leaf's hash is `SHA-256(0x00 ‖ entry)`, an inner node's
//! `SHA-256(0x01 ‖ left ‖ right)`, and the tree of no leaves hashes to
//! `SHA-256()`. A tree of `n` leaves splits at the largest power of two
//! below `n` — not the middle: a midpoint split builds a tree nobody
//! else's verifier agrees with.

use sha2::{Digest, Sha256};

/// A node hash.
pub type Hash = [u8; 32];

/// The hash of a leaf holding `entry`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(entry);
    hasher.finalize().into()
}

/// The hash of an inner node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The largest power of two smaller than `n` (`n` ≥ 2).
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The tree hash of `leaves` (leaf hashes, in order): MTH of §2.1.1.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The inclusion proof of leaf `index` in the tree of `leaves` (PATH of
/// §2.1.3.1); `None` if there is no such leaf.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    (index < leaves.len()).then(|| path(index, leaves))
}

fn path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = split(n);
    let mut proof;
    if m < k {
        proof = path(m, &leaves[..k]);
        proof.push(root(&leaves[k..]));
    } else {
        proof = path(m - k, &leaves[k..]);
        proof.push(root(&leaves[..k]));
    }
    proof
}

/// The consistency proof between the tree of the first `first` of
/// `leaves` and the tree of all of them (PROOF of §2.1.4.1); `None` if
/// `first` is larger than the tree.
pub fn consistency_proof(leaves: &[Hash], first: usize) -> Option<Vec<Hash>> {
    if first > leaves.len() {
        return None;
    }
    if first == 0 || first == leaves.len() {
        return Some(Vec::new());
    }
    Some(subproof(first, leaves, true))
}

fn subproof(m: usize, leaves: &[Hash], whole: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if whole {
            Vec::new()
        } else {
            vec![root(leaves)]
        };
    }
    let k = split(n);
    let mut proof;
    if m <= k {
        proof = subproof(m, &leaves[..k], whole);
        proof.push(root(&leaves[k..]));
    } else {
        proof = subproof(m - k, &leaves[k..], false);
        proof.push(root(&leaves[..k]));
    }
    proof
}

/// Whether `proof` shows the leaf `leaf` at `index` in the tree of
/// `size` leaves whose hash is `root` (§2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// Whether `proof` shows the tree of `second` leaves hashing to
/// `second_root` holds the tree of `first` leaves hashing to `first_root`
/// as its beginning (§2.1.4.2). Equal sizes need an empty proof and equal
/// roots; the empty tree is the beginning of every tree.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> bool {
    if first > second {
        return false;
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    if first == 0 {
        return proof.is_empty() && *first_root == root(&[]);
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *first_root && sr == *second_root && s == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The Certificate Transparency reference entries (RFC 6962 test data).
    const ENTRIES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];

    /// The tree hash for each size 0..=8.
    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn hash(text: &str) -> Hash {
        hex::decode(text).unwrap().try_into().unwrap()
    }

    fn leaves() -> Vec<Hash> {
        ENTRIES
            .iter()
            .map(|e| leaf_hash(&hex::decode(e).unwrap()))
            .collect()
    }

    #[test]
    fn tree_hashes_match_the_reference_for_every_size() {
        let leaves = leaves();
        for (n, want) in ROOTS.iter().enumerate() {
            assert_eq!(hex::encode(root(&leaves[..n])), *want, "size {n}");
        }
    }

    #[test]
    fn inclusion_proofs_match_the_reference() {
        let leaves = leaves();
        for (index, want) in [
            (
                0,
                [
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                [
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
        ] {
            let proof = inclusion_proof(&leaves, index).unwrap();
            assert_eq!(proof, want.map(hash), "leaf {index}");
            assert!(verify_inclusion(
                &leaves[index],
                index as u64,
                8,
                &proof,
                &hash(ROOTS[8])
            ));
        }
    }

    #[test]
    fn consistency_proofs_match_the_reference() {
        let leaves = leaves();
        for (first, second, want) in [
            (
                2,
                8,
                vec![
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                vec![
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                vec![
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ] {
            let proof = consistency_proof(&leaves[..second], first).unwrap();
            let want: Vec<Hash> = want.into_iter().map(hash).collect();
            assert_eq!(proof, want, "{first} -> {second}");
            assert!(verify_consistency(
                first as u64,
                second as u64,
                &hash(ROOTS[first]),
                &hash(ROOTS[second]),
                &proof
            ));
        }
    }

    #[test]
    fn degenerate_cases_are_decided_as_the_rfc_says() {
        let leaves = leaves();
        let (r4, r8) = (root(&leaves[..4]), root(&leaves));
        assert!(verify_consistency(4, 4, &r4, &r4, &[]));
        assert!(!verify_consistency(4, 4, &r4, &r8, &[]));
        assert!(!verify_consistency(4, 4, &r4, &r4, &[r4]));
        assert!(verify_consistency(0, 8, &root(&[]), &r8, &[]));
        assert!(!verify_consistency(0, 8, &r4, &r8, &[]));
        assert!(!verify_consistency(8, 4, &r8, &r4, &[]));
        assert!(!verify_consistency(4, 8, &r4, &r8, &[]));
        assert!(!verify_inclusion(&leaves[0], 8, 8, &[], &r8));
        assert!(inclusion_proof(&leaves, 8).is_none());
        assert!(consistency_proof(&leaves, 9).is_none());
    }

    proptest! {
        /// In random trees every leaf's proof verifies, and a proof with
        /// one byte flipped, one hash dropped, or given for the wrong
        /// index or size does not.
        #[test]
        fn proofs_of_random_trees_verify_and_tampered_ones_do_not(
            n in 1usize..80, pick in any::<prop::sample::Index>(), first_pick in any::<prop::sample::Index>(),
        ) {
            let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&(i as u64).to_le_bytes())).collect();
            let top = root(&leaves);
            let index = pick.index(n);
            let proof = inclusion_proof(&leaves, index).unwrap();
            prop_assert!(verify_inclusion(&leaves[index], index as u64, n as u64, &proof, &top));
            if !proof.is_empty() {
                let mut flipped = proof.clone();
                flipped[0][7] ^= 1;
                prop_assert!(!verify_inclusion(&leaves[index], index as u64, n as u64, &flipped, &top));
                prop_assert!(!verify_inclusion(&leaves[index], index as u64, n as u64, &proof[1..], &top));
            }
            if n > 1 {
                let other = (index + 1) % n;
                prop_assert!(!verify_inclusion(&leaves[index], other as u64, n as u64, &proof, &top));
            }
            let first = first_pick.index(n + 1);
            let consistency = consistency_proof(&leaves, first).unwrap();
            let first_root = root(&leaves[..first]);
            prop_assert!(verify_consistency(first as u64, n as u64, &first_root, &top, &consistency));
            if !consistency.is_empty() {
                let mut flipped = consistency.clone();
                let last = flipped.len() - 1;
                flipped[last][0] ^= 0x80;
                prop_assert!(!verify_consistency(first as u64, n as u64, &first_root, &top, &flipped));
            }
            if first > 0 && first < n {
                // A rewritten beginning is caught.
                let mut forged = leaves.clone();
                forged[0] = leaf_hash(b"forged");
                prop_assert!(!verify_consistency(first as u64, n as u64, &root(&forged[..first]), &top, &consistency));
            }
        }
    }
}
