//! The relay's signed checkpoints, and the events that carry them.
//!
//! Each interval the relay signs, per stream, a C2SP `tlog-checkpoint`
//! ([`super::checkpoint`]) as a signed note ([`super::note`]) with one
//! extension line of its own — canonical JSON after `auditrelay `:
//!
//! ```text
//! auditrelay/acme
//! 15000
//! 7d9xZ…base64 of the root…=
//! auditrelay {"head":"5f0c…","interval":60,"members":{"count":2,"sha256":"9a1e…"},"previous":"2026-12-02T18:59:00Z","stream":"acme","time":"2026-12-02T19:00:00Z"}
//!
//! — auditrelay Az3…signature…=
//! ```
//!
//! The stream, the time, the interval and the time of the stream's
//! previous checkpoint are signed with the tree, so a verifier knows which
//! window each checkpoint vouches for, sees when checkpoints were removed
//! (one names a predecessor that is not there) and tells that apart from
//! a relay that was not running (the predecessor is there, long before).
//! Each also names the round's [`Members`] — how many streams the relay
//! signed at that time, and a digest of their names — so a stream removed
//! whole, events and checkpoints, still shows: its round is one short.
//! The note travels in an event of type
//! `auditrelay.checkpoint` from source `auditrelay` (payload: the note and
//! its fields, for reading by eye and by query), through the same plugins
//! as the events, and is kept in the relay's checkpoint log.

use std::time::Duration;

use auditrelay_plugin_api::envelope::{Actor, AuditEventEnvelope, Outcome};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::checkpoint::Checkpoint;
use super::merkle::Hash;
use super::note::{self, NoteError, SigningKey, VerifierKey};

/// The source of checkpoint events.
pub const SOURCE: &str = "auditrelay";
/// The type of checkpoint events.
pub const EVENT_TYPE: &str = "auditrelay.checkpoint";
/// What begins the relay's extension line in a checkpoint.
const EXTENSION: &str = "auditrelay ";

/// What a checkpoint says beyond the tree: signed with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// The chain hash of the stream's event at `seq` = the tree's size
    /// (hex; absent for an empty tree): what the chain of a window of the
    /// stream must end at, so a verifier without the stream's beginning
    /// (`--partial`) still holds its events to a signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// Seconds between checkpoints of the stream.
    pub interval: u64,
    /// Every stream the relay signed in this round (absent in
    /// checkpoints made before rounds were signed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Members>,
    /// When the relay signed the stream's checkpoint before this one
    /// (`None` for its first): a verifier that does not find that one
    /// knows checkpoints were removed, and one that finds it more than an
    /// interval back knows the relay was not running in between.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Timestamp>,
    /// The stream.
    pub stream: String,
    /// When the relay signed it.
    pub time: Timestamp,
}

/// The streams of one round of checkpoints: the relay signs every stream
/// it has at one time, and each checkpoint of the round names them all.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Members {
    /// How many streams the round signed.
    pub count: u64,
    /// SHA-256 (hex) of their names, sorted, each followed by a line feed:
    /// an auditor who knows which tenants there are can check the list.
    pub sha256: String,
}

impl Members {
    /// The members of a round of `streams` (in any order; repeats count once).
    pub fn of<'a>(streams: impl IntoIterator<Item = &'a str>) -> Members {
        let mut names: Vec<&str> = streams.into_iter().collect();
        names.sort_unstable();
        names.dedup();
        let mut digest = Sha256::new();
        for name in &names {
            digest.update(name.as_bytes());
            digest.update(b"\n");
        }
        Members {
            count: names.len() as u64,
            sha256: hex::encode(digest.finalize()),
        }
    }
}

/// One round of checkpoints: when it was signed, and its streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Round {
    /// When the relay signed it.
    pub time: Timestamp,
    /// Its streams.
    pub members: Members,
}

impl Round {
    /// The round of `streams` signed at `time`.
    pub fn new<'a>(time: Timestamp, streams: impl IntoIterator<Item = &'a str>) -> Round {
        Round {
            time,
            members: Members::of(streams),
        }
    }
}

/// One stream's checkpoint, signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The tree and origin.
    pub checkpoint: Checkpoint,
    /// Stream, time and interval.
    pub window: Window,
    /// The whole signed note.
    pub note: String,
}

/// The payload of a checkpoint event.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointPayload {
    /// The signing key (`<name>+<id>`).
    pub key: String,
    /// The signed note: the only part a verifier trusts.
    pub note: String,
    /// Its origin.
    pub origin: String,
    /// Its root hash, hex.
    pub root: String,
    /// Its tree size.
    pub size: u64,
    /// Its stream.
    pub stream: String,
}

/// Signs checkpoints of the streams of one log.
pub struct Signer {
    key: SigningKey,
    log: String,
    interval: Duration,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key", &self.key)
            .field("log", &self.log)
            .finish()
    }
}

impl Signer {
    /// A signer with `key` for the log named `log`, every `interval`.
    pub fn new(key: SigningKey, log: String, interval: Duration) -> Self {
        Signer { key, log, interval }
    }

    /// The key that verifies its checkpoints.
    pub fn verifier(&self) -> VerifierKey {
        self.key.verifier()
    }

    /// The origin of `stream`'s checkpoints.
    pub fn origin(&self, stream: &str) -> String {
        if stream.is_empty() {
            self.log.clone()
        } else {
            // An origin is one line: a stream name never holds a line break
            // (tenants and sources are names), but make sure.
            format!("{}/{}", self.log, stream.replace(['\n', '\r'], " "))
        }
    }

    /// The checkpoint of `stream`'s tree of `size` leaves with `root`,
    /// whose last event's chain hash is `head`, signed in `round`, after
    /// the stream's checkpoint signed at `previous`.
    pub fn sign(
        &self,
        stream: &str,
        size: u64,
        root: Hash,
        head: Hash,
        round: &Round,
        previous: Option<Timestamp>,
    ) -> SignedCheckpoint {
        let window = Window {
            head: (size > 0).then(|| hex::encode(head)),
            interval: self.interval.as_secs().max(1),
            members: Some(round.members.clone()),
            previous,
            stream: stream.to_owned(),
            time: round.time,
        };
        let checkpoint = Checkpoint {
            origin: self.origin(stream),
            size,
            root,
            extensions: vec![format!(
                "{EXTENSION}{}",
                serde_json::to_string(&window).expect("a window serializes")
            )],
        };
        let note = self
            .key
            .sign(&checkpoint.to_text())
            .expect("a checkpoint body ends in a newline and holds no blank line");
        SignedCheckpoint {
            checkpoint,
            window,
            note,
        }
    }
}

impl SignedCheckpoint {
    /// Opens a note with `keys` and reads the checkpoint in it.
    pub fn open(note: &str, keys: &[VerifierKey]) -> Result<SignedCheckpoint, NoteError> {
        Self::read(note, note::open(note, keys)?)
    }

    /// Reads the checkpoint in a note without checking its signature: for
    /// the relay's own checkpoint log, which it reads back to name each
    /// stream's previous checkpoint whichever key signed it (so a key
    /// rotation does not break the run of `previous`).
    pub fn read_unverified(note: &str) -> Result<SignedCheckpoint, NoteError> {
        let body = note
            .rfind("\n\n")
            .map(|split| &note[..split + 1])
            .ok_or_else(|| NoteError::Malformed("no signature lines".into()))?;
        Self::read(note, body)
    }

    fn read(note: &str, text: &str) -> Result<SignedCheckpoint, NoteError> {
        let checkpoint = Checkpoint::parse(text)?;
        let window = checkpoint
            .extensions
            .iter()
            .find_map(|line| line.strip_prefix(EXTENSION))
            .ok_or_else(|| NoteError::Malformed("no auditrelay line in the checkpoint".into()))
            .and_then(|json| {
                serde_json::from_str::<Window>(json).map_err(|e| {
                    NoteError::Malformed(format!("the checkpoint's auditrelay line: {e}"))
                })
            })?;
        Ok(SignedCheckpoint {
            checkpoint,
            window,
            note: note.to_owned(),
        })
    }

    /// The event that carries it; `tenant` is set when streams are tenants.
    pub fn to_envelope(&self, key: &VerifierKey, tenant: Option<&str>) -> AuditEventEnvelope {
        let digest = Sha256::digest(self.note.as_bytes());
        let payload = CheckpointPayload {
            key: key.name_and_id(),
            note: self.note.clone(),
            origin: self.checkpoint.origin.clone(),
            root: hex::encode(self.checkpoint.root),
            size: self.checkpoint.size,
            stream: self.window.stream.clone(),
        };
        let mut builder = AuditEventEnvelope::builder(SOURCE, EVENT_TYPE)
            .id(format!("checkpoint-{}", hex::encode(&digest[..16])))
            .time(self.window.time)
            .actor(Actor::new(
                auditrelay_plugin_api::envelope::ActorKind::System,
                SOURCE,
            ))
            .outcome(Outcome::Success)
            .action_name("checkpoint")
            .payload(serde_json::to_value(payload).expect("a payload serializes"));
        if let Some(tenant) = tenant.filter(|t| !t.is_empty()) {
            builder = builder.tenant(tenant);
        }
        builder
            .build()
            .expect("a checkpoint event keeps the envelope rules")
    }

    /// The note of a checkpoint event, if `event` is one.
    pub fn note_of(event: &AuditEventEnvelope) -> Option<&str> {
        if event.source != SOURCE || event.event_type != EVENT_TYPE {
            return None;
        }
        event.payload.get("note")?.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_event_opens_with_the_public_key_only() {
        let key = SigningKey::generate("audit.example/relay").unwrap();
        let signer = Signer::new(key, "audit.example/relay".into(), Duration::from_secs(60));
        let time: Timestamp = "2026-12-02T19:00:00Z".parse().unwrap();
        let previous: Timestamp = "2026-12-02T18:59:00Z".parse().unwrap();
        let round = Round::new(time, ["acme", "globex"]);
        let signed = signer.sign("acme", 15, [9; 32], [8; 32], &round, Some(previous));
        assert_eq!(signed.checkpoint.origin, "audit.example/relay/acme");
        let event = signed.to_envelope(&signer.verifier(), Some("acme"));
        assert_eq!(event.tenant.as_deref(), Some("acme"));
        let json = event.to_canonical_json();
        let back = AuditEventEnvelope::from_json(&json).unwrap();
        let note = SignedCheckpoint::note_of(&back).unwrap();
        let opened = SignedCheckpoint::open(note, &[signer.verifier()]).unwrap();
        assert_eq!(opened, signed);
        assert_eq!(opened.window.stream, "acme");
        assert_eq!(opened.window.interval, 60);
        assert_eq!(opened.window.previous, Some(previous));
        assert!(note.contains(r#"auditrelay {"head":"0808080808080808080808080808080808080808080808080808080808080808","interval":60,"members":{"count":2,"sha256":"2875cae04feec18358376021f3bfdb043192bdb6af7be00e69ab98b9e46f1dba"},"previous":"2026-12-02T18:59:00Z","stream":"acme","time":"2026-12-02T19:00:00Z"}"#), "{note}");
        // Another key's checkpoint does not open.
        let other = SigningKey::generate("audit.example/relay").unwrap();
        assert!(matches!(
            SignedCheckpoint::open(note, &[other.verifier()]),
            Err(NoteError::UnknownKey(_))
        ));
        // An edited size breaks the signature.
        let forged = note.replacen("\n15\n", "\n14\n", 1);
        assert!(matches!(
            SignedCheckpoint::open(&forged, &[signer.verifier()]),
            Err(NoteError::BadSignature(_))
        ));
    }
}
