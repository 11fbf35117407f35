//! `[[redact]]`: the rules as the configuration writes them.

use serde::Deserialize;

use crate::secret::Secret;

/// `[[redact]]`: one redaction rule. What it selects — `keys`, `paths`,
/// `patterns`, `regex`, any of them — gets its `action`, in events of its
/// `types` and `sources` (all when empty). See [`crate::redact`](super).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactRule {
    /// Names the rule in each event's record of what was redacted.
    pub name: String,
    /// Key names anywhere in `payload` and `metadata`, compared without
    /// case and without `_`, `-`, `.` and spaces (`apiKey` is `API-KEY`);
    /// `*name` selects every name ending in `name`.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Fields by path: `actor.email`, `payload.card.number`,
    /// `payload.items[*].iban`, `metadata.session`, `reason`.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Built-in value patterns, in strings of `payload`, `metadata` and
    /// `reason`: `bearer_token`, `jwt`, `aws_access_key_id`,
    /// `aws_secret_key`, `private_key`, `card_number`, `iban`.
    #[serde(default)]
    pub patterns: Vec<String>,
    /// Regular expressions (the `regex` crate's syntax) over the same strings.
    #[serde(default)]
    pub regex: Vec<String>,
    /// What is done to what the rule selects.
    #[serde(default)]
    pub action: RedactAction,
    /// With `action = "truncate"`: characters kept.
    #[serde(default = "default_redact_keep")]
    pub keep: usize,
    /// With `action = "hash"`: the HMAC-SHA-256 key (a secret; `${ENV}`).
    #[serde(default)]
    pub hash_key: Option<Secret>,
    /// With `action = "hash"`: the key's id, written into each hash so a
    /// rotated key is told apart.
    #[serde(default)]
    pub hash_key_id: Option<String>,
    /// Only events whose `type` is one of these (`user.*` for a prefix).
    #[serde(default)]
    pub types: Vec<String>,
    /// Only events from these `source`s.
    #[serde(default)]
    pub sources: Vec<String>,
}

impl RedactRule {
    /// A rule named `name` that selects nothing yet and masks: set what
    /// it selects with struct update syntax.
    pub fn named(name: impl Into<String>) -> Self {
        RedactRule {
            name: name.into(),
            keys: Vec::new(),
            paths: Vec::new(),
            patterns: Vec::new(),
            regex: Vec::new(),
            action: RedactAction::Mask,
            keep: default_redact_keep(),
            hash_key: None,
            hash_key_id: None,
            types: Vec::new(),
            sources: Vec::new(),
        }
    }
}

/// `[[redact]] action`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedactAction {
    /// Replaced by `"[REDACTED]"` (a value pattern: the match only).
    #[default]
    Mask,
    /// The key (or array element) is removed; a value pattern's match is
    /// cut out.
    Remove,
    /// Replaced by `hmac-sha256:<key id>:<hex>`: equal values stay equal
    /// (joinable), but cannot be guessed back without the key.
    Hash,
    /// The first `keep` characters stay, the rest becomes `…`.
    Truncate,
}

fn default_redact_keep() -> usize {
    4
}
