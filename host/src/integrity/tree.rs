//! A stream's Merkle tree kept as it grows, in O(log n) hashes: the roots
//! of its perfect subtrees, largest first (a "compact range"). Appending
//! a leaf merges equal-sized subtrees, as binary addition carries; the
//! root folds them from the right, which is exactly RFC 9162's tree hash
//! (it splits at the largest power of two). This is what the relay keeps
//! per stream to sign checkpoints without keeping the leaves.

use serde::{Deserialize, Serialize};

use super::chain::{GENESIS, Head};
use super::merkle::{self, Hash};

/// One stream's tree and chain head.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// How many leaves (events) it has: the last event's `seq`.
    pub size: u64,
    /// The last event's chain hash (the next one's `prev`).
    #[serde(with = "hex_hash")]
    pub last: Hash,
    /// Roots of the perfect subtrees, largest first: one per set bit of
    /// `size`.
    #[serde(with = "hex_hashes")]
    pub frontier: Vec<Hash>,
}

impl Tree {
    /// Appends the event whose chain hash is `hash`.
    pub fn push(&mut self, hash: Hash) {
        let mut node = merkle::leaf_hash(&hash);
        // Each trailing one bit of `size` is a subtree of that size to merge with.
        let mut carries = self.size.trailing_ones();
        while carries > 0 {
            let left = self.frontier.pop().expect("one subtree per set bit");
            node = merkle::node_hash(&left, &node);
            carries -= 1;
        }
        self.frontier.push(node);
        self.size += 1;
        self.last = hash;
    }

    /// The root hash (RFC 9162's tree hash of all leaves so far).
    pub fn root(&self) -> Hash {
        let mut subtrees = self.frontier.iter().rev();
        match subtrees.next() {
            None => merkle::root(&[]),
            Some(last) => subtrees.fold(*last, |right, left| merkle::node_hash(left, &right)),
        }
    }

    /// The chain head: what the next event links to.
    pub fn head(&self) -> Head {
        Head {
            seq: self.size,
            hash: if self.size == 0 { GENESIS } else { self.last },
        }
    }

    /// Whether the frontier fits the size (a damaged saved tree does not).
    pub fn is_whole(&self) -> bool {
        self.frontier.len() == self.size.count_ones() as usize
    }
}

mod hex_hash {
    use super::Hash;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(hash: &Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(hash))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let text = String::deserialize(d)?;
        crate::integrity::chain::parse_hash(&text)
            .ok_or_else(|| D::Error::custom("not a hash (64 lower-case hex digits)"))
    }
}

mod hex_hashes {
    use super::Hash;
    use serde::{Deserialize, Deserializer, Serializer, de::Error, ser::SerializeSeq};

    pub fn serialize<S: Serializer>(hashes: &[Hash], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(hashes.len()))?;
        for hash in hashes {
            seq.serialize_element(&hex::encode(hash))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|text| {
                crate::integrity::chain::parse_hash(text)
                    .ok_or_else(|| D::Error::custom("not a hash (64 lower-case hex digits)"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_root_is_the_tree_hash_at_every_size() {
        let mut tree = Tree::default();
        let mut leaves = Vec::new();
        assert_eq!(tree.root(), merkle::root(&[]));
        for i in 0u32..300 {
            let hash: Hash = sha2::Digest::finalize(sha2::Digest::chain_update(
                <sha2::Sha256 as sha2::Digest>::new(),
                i.to_be_bytes(),
            ))
            .into();
            tree.push(hash);
            leaves.push(merkle::leaf_hash(&hash));
            assert_eq!(tree.root(), merkle::root(&leaves), "size {}", i + 1);
            assert!(tree.is_whole());
            assert_eq!(
                tree.head(),
                Head {
                    seq: i as u64 + 1,
                    hash
                }
            );
        }
        let json = serde_json::to_string(&tree).unwrap();
        assert_eq!(serde_json::from_str::<Tree>(&json).unwrap(), tree);
    }
}
