//! Checkpoints in the C2SP `tlog-checkpoint` format: the body a log signs
//! (as a [signed note](super::note)) to commit to its tree — its origin,
//! its size and its root hash — one per line:
//!
//! ```text
//! audit.example/relay/acme
//! 15000
//! 7d9xZ…base64 of the root…=
//! ```
//!
//! Further lines (extensions) may follow; a reader keeps them but needs
//! none of them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::merkle::Hash;
use super::note::NoteError;

/// What a log commits to at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Which log (and stream): unique, e.g. `audit.example/relay/acme`.
    pub origin: String,
    /// How many leaves the tree has.
    pub size: u64,
    /// Its root hash.
    pub root: Hash,
    /// Extension lines, as they were.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The body to sign.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        );
        for line in &self.extensions {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// Reads a body (the text of an opened note).
    pub fn parse(text: &str) -> Result<Checkpoint, NoteError> {
        let bad = |why: &str| NoteError::Malformed(format!("not a checkpoint: {why}"));
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("it does not end in a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| bad("no origin line"))?;
        let size = lines.next().ok_or_else(|| bad("no size line"))?;
        // Decimal, no sign, no leading zeros (one number, one spelling).
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || size.len() > 1 && size.starts_with('0')
        {
            return Err(bad("the size is not a decimal number"));
        }
        let size: u64 = size.parse().map_err(|_| bad("the size is too large"))?;
        let root = lines.next().ok_or_else(|| bad("no root hash line"))?;
        let root: Hash = STANDARD
            .decode(root)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| bad("the root hash is not 32 bytes of base64"))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(bad("it holds an empty line"));
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::merkle;
    use super::super::note::{SigningKey, open};
    use super::*;

    #[test]
    fn a_checkpoint_round_trips_through_a_signed_note() {
        let leaves: Vec<Hash> = (0..15u64)
            .map(|i| merkle::leaf_hash(&i.to_le_bytes()))
            .collect();
        let checkpoint = Checkpoint {
            origin: "audit.example/relay/acme".into(),
            size: 15,
            root: merkle::root(&leaves),
            extensions: vec!["time 2026-12-02T17:00:00Z".into()],
        };
        let key = SigningKey::generate("audit.example/relay").unwrap();
        let note = key.sign(&checkpoint.to_text()).unwrap();
        let text = open(&note, &[key.verifier()]).unwrap();
        assert_eq!(Checkpoint::parse(text).unwrap(), checkpoint);
    }

    #[test]
    fn malformed_bodies_are_refused_with_the_reason() {
        let root = STANDARD.encode([7u8; 32]);
        for (body, why) in [
            ("o\n1\n", "no root hash line"),
            ("\n1\nAA==\n", "no origin line"),
            (&format!("o\n01\n{root}\n") as &str, "decimal"),
            (&format!("o\n-1\n{root}\n"), "decimal"),
            ("o\n1\nAAAA\n", "32 bytes"),
            (&format!("o\n1\n{root}"), "newline"),
            (&format!("o\n99999999999999999999\n{root}\n"), "too large"),
        ] {
            let error = Checkpoint::parse(body).unwrap_err().to_string();
            assert!(error.contains(why), "{body:?}: {error}");
        }
    }
}
