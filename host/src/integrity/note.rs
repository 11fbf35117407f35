//! C2SP signed notes (`c2sp.org/signed-note`), with Ed25519 keys: the
//! format transparency logs (the Go checksum database, Sigstore, sigsum)
//! sign their checkpoints in, so the relay's checkpoints can be checked
//! with their tools as well as with `auditrelay verify`.
//!
//! A note is UTF-8 text ending in a newline, a blank line, then one line
//! per signature: `— <key name> <base64(key id ‖ signature)>`. The key id
//! is the first four bytes of `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)`;
//! the signature covers the text, its last newline included. Keys are
//! written as the reference implementation writes them: a verifier key
//! `<name>+<hex id>+<base64(0x01 ‖ public key)>`, a signing key
//! `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 ‖ seed)>` — which is a
//! secret: its `Debug` shows the name and id only.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Signer;
use sha2::{Digest, Sha256};

/// The signature-type byte of Ed25519 keys.
const ED25519: u8 = 0x01;
/// What begins a signature line: an em dash and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";
/// Signature lines read at most (the reference implementation's bound).
const MAX_SIGNATURES: usize = 100;

/// Why a note, or a key, could not be read or trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The text is not a signed note (the reason).
    #[error("not a signed note: {0}")]
    Malformed(String),
    /// No signature of a known key is on it.
    #[error("no signature by a known key (signed by: {0})")]
    UnknownKey(String),
    /// A known key's signature does not verify: the text was changed, or
    /// the signature forged.
    #[error("the signature of {0} does not verify: the note was changed or forged")]
    BadSignature(String),
    /// A key could not be read (the reason).
    #[error("not a key: {0}")]
    BadKey(String),
}

fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', ED25519]);
    hasher.update(public);
    let digest = hasher.finalize();
    u32::from_be_bytes(digest[..4].try_into().expect("4 bytes"))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// A key that signs notes; a secret.
pub struct SigningKey {
    name: String,
    id: u32,
    key: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({}+{:08x}, ..)", self.name, self.id)
    }
}

impl SigningKey {
    /// A new random key named `name` (`host/path`, no spaces or `+`).
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        Self::from_seed(name, rand::random())
    }

    fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::BadKey(format!(
                "{name:?} cannot name a key (non-empty, no spaces, no '+')"
            )));
        }
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        Ok(SigningKey {
            name: name.to_owned(),
            id: key_id(name, key.verifying_key().as_bytes()),
            key,
        })
    }

    /// Reads `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 ‖ seed)>`. The
    /// error never quotes the text (it is a secret).
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let bad = |why: &str| {
            NoteError::BadKey(format!(
                "a signing key is PRIVATE+KEY+<name>+<id>+<key>: {why}"
            ))
        };
        let mut parts = text.trim().splitn(5, '+');
        let (Some("PRIVATE"), Some("KEY"), Some(name), Some(id), Some(key)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(bad("it does not start PRIVATE+KEY+ or has too few parts"));
        };
        let bytes = STANDARD
            .decode(key)
            .map_err(|_| bad("the key is not base64"))?;
        let [ED25519, seed @ ..] = bytes.as_slice() else {
            return Err(bad("the key is not an Ed25519 key"));
        };
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| bad("the key is not 32 bytes"))?;
        let key = Self::from_seed(name, seed)?;
        if u32::from_str_radix(id, 16).ok() != Some(key.id) || id.len() != 8 {
            return Err(bad("the id does not belong to the key"));
        }
        Ok(key)
    }

    /// The key as `parse` reads it (keep it secret).
    pub fn to_text(&self) -> String {
        let mut bytes = vec![ED25519];
        bytes.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.id,
            STANDARD.encode(bytes)
        )
    }

    /// The key that verifies this one's signatures.
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    /// `text` (ending in a newline, no blank line in it) signed.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        if !text.ends_with('\n') || text.contains("\n\n") {
            return Err(NoteError::Malformed(
                "a note's text ends in a newline and holds no blank line".into(),
            ));
        }
        let signature = self.key.sign(text.as_bytes());
        let mut blob = self.id.to_be_bytes().to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        Ok(format!(
            "{text}\n{SIGNATURE_PREFIX}{} {}\n",
            self.name,
            STANDARD.encode(blob)
        ))
    }
}

/// A key that verifies notes: public.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: u32,
    key: ed25519_dalek::VerifyingKey,
}

impl VerifierKey {
    /// Reads `<name>+<hex id>+<base64(0x01 ‖ public key)>`.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let bad = |why: &str| {
            NoteError::BadKey(format!(
                "{text:?} is no verifier key (<name>+<id>+<key>): {why}"
            ))
        };
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("too few parts"));
        };
        if !valid_name(name) {
            return Err(bad("the name is empty or holds a space or '+'"));
        }
        let bytes = STANDARD
            .decode(key)
            .map_err(|_| bad("the key is not base64"))?;
        let [ED25519, public @ ..] = bytes.as_slice() else {
            return Err(bad("the key is not an Ed25519 key"));
        };
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| bad("the key is not 32 bytes"))?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&public)
            .map_err(|_| bad("not a point on the curve"))?;
        if id.len() != 8 || u32::from_str_radix(id, 16).ok() != Some(key_id(name, &public)) {
            return Err(bad("the id does not belong to the key"));
        }
        Ok(VerifierKey {
            name: name.to_owned(),
            id: key_id(name, &public),
            key,
        })
    }

    /// The key as `parse` reads it.
    pub fn to_text(&self) -> String {
        let mut bytes = vec![ED25519];
        bytes.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.id, STANDARD.encode(bytes))
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `<name>+<id>`: the key without its key material, as checkpoint
    /// events name their signer.
    pub fn name_and_id(&self) -> String {
        format!("{}+{:08x}", self.name, self.id)
    }
}

/// The text of `note` if a signature of one of `keys` on it verifies.
/// A note some known key signed badly is refused, whatever else signed it.
pub fn open<'n>(note: &'n str, keys: &[VerifierKey]) -> Result<&'n str, NoteError> {
    let malformed = |why: &str| NoteError::Malformed(why.to_owned());
    let split = note
        .rfind("\n\n")
        .ok_or_else(|| malformed("no blank line before the signatures"))?;
    let (text, signatures) = (&note[..split + 1], &note[split + 2..]);
    if !signatures.ends_with('\n') {
        return Err(malformed(
            "the last signature line does not end in a newline",
        ));
    }
    let lines: Vec<&str> = signatures[..signatures.len() - 1].split('\n').collect();
    if lines.len() > MAX_SIGNATURES {
        return Err(malformed("more than 100 signatures"));
    }
    let mut signers = Vec::new();
    let mut verified = false;
    for line in lines {
        let rest = line.strip_prefix(SIGNATURE_PREFIX).ok_or_else(|| {
            malformed("a signature line does not start with an em dash and a space")
        })?;
        let (name, blob) = rest
            .split_once(' ')
            .ok_or_else(|| malformed("a signature line has no space between name and signature"))?;
        let blob = STANDARD
            .decode(blob)
            .map_err(|_| malformed("a signature is not base64"))?;
        if blob.len() < 5 {
            return Err(malformed("a signature is too short"));
        }
        let id = u32::from_be_bytes(blob[..4].try_into().expect("4 bytes"));
        signers.push(format!("{name}+{id:08x}"));
        let Some(key) = keys.iter().find(|k| k.name == name && k.id == id) else {
            continue;
        };
        let signature = ed25519_dalek::Signature::from_slice(&blob[4..])
            .map_err(|_| NoteError::BadSignature(key.name.clone()))?;
        key.key
            .verify_strict(text.as_bytes(), &signature)
            .map_err(|_| NoteError::BadSignature(key.name.clone()))?;
        verified = true;
    }
    if verified {
        Ok(text)
    } else {
        Err(NoteError::UnknownKey(signers.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the reference implementation (golang.org/x/mod/sumdb/note).
    const SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const SIGNED: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    #[test]
    fn the_reference_note_is_signed_and_opened_byte_for_byte() {
        let key = SigningKey::parse(SKEY).unwrap();
        assert_eq!(key.sign(TEXT).unwrap(), SIGNED);
        assert_eq!(key.to_text(), SKEY);
        let verifier = VerifierKey::parse(&key.verifier().to_text()).unwrap();
        assert_eq!(open(SIGNED, &[verifier]).unwrap(), TEXT);
    }

    #[test]
    fn changed_forged_and_unknown_notes_are_refused_by_kind() {
        let key = SigningKey::parse(SKEY).unwrap();
        let verifier = key.verifier();
        let changed = SIGNED.replacen("problem,", "problem;", 1);
        assert_eq!(
            open(&changed, std::slice::from_ref(&verifier)),
            Err(NoteError::BadSignature("PeterNeumann".into()))
        );
        let other = SigningKey::generate("PeterNeumann").unwrap();
        assert!(matches!(
            open(SIGNED, &[other.verifier()]),
            Err(NoteError::UnknownKey(_))
        ));
        // A second, unknown signature does not matter; a bad known one does.
        let cosigned = format!(
            "{SIGNED}{}",
            other.sign(TEXT).unwrap().rsplit("\n\n").next().unwrap()
        );
        assert_eq!(
            open(&cosigned, std::slice::from_ref(&verifier)).unwrap(),
            TEXT
        );
        for junk in [
            "",
            "text\n",
            "text\n\nno dash\n",
            "text\n\n\u{2014} name !!!\n",
            "text\n\n\u{2014} name\n",
        ] {
            assert!(
                matches!(
                    open(junk, std::slice::from_ref(&verifier)),
                    Err(NoteError::Malformed(_))
                ),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn keys_are_read_strictly_and_a_signing_key_never_shows() {
        let key = SigningKey::generate("audit.example/relay").unwrap();
        assert_eq!(
            SigningKey::parse(&key.to_text()).unwrap().verifier(),
            key.verifier()
        );
        assert!(!format!("{key:?}").contains(&key.to_text()[30..]));
        let text = key.to_text();
        let wrong_id = text.replace(&format!("+{:08x}+", key.id), "+00000000+");
        assert!(SigningKey::parse(&wrong_id).is_err());
        let error = SigningKey::parse(&format!("{text}x"))
            .unwrap_err()
            .to_string();
        assert!(!error.contains(&text[30..]), "{error}");
        assert!(SigningKey::generate("has space").is_err());
        assert!(VerifierKey::parse("name+0000+AQ==").is_err());
        assert!(key.sign("no newline").is_err());
        assert!(key.sign("a\n\nb\n").is_err());
    }

    proptest::proptest! {
        /// Any text, and any one-byte change of a good note: `open` and
        /// the checkpoint reader answer, never panic, and a changed note
        /// never opens as the original text.
        #[test]
        fn no_input_makes_open_panic_or_lie(junk in ".{0,300}", at in 0usize..400, byte in 0u8..=255) {
            let key = SigningKey::parse(SKEY).unwrap();
            let verifier = key.verifier();
            let _ = open(&junk, std::slice::from_ref(&verifier));
            let _ = super::super::checkpoint::Checkpoint::parse(&junk);
            let mut bytes = SIGNED.as_bytes().to_vec();
            let at = at % bytes.len();
            if bytes[at] != byte {
                bytes[at] = byte;
                if let Ok(text) = std::str::from_utf8(&bytes)
                    && let Ok(opened) = open(text, std::slice::from_ref(&verifier))
                {
                    proptest::prop_assert_eq!(opened, TEXT, "a changed note opened as other text");
                }
            }
        }
    }
}
