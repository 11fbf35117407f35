//! Redaction: secrets and personal data taken out of every event before
//! it reaches the spool, so that no secret is ever on the relay's disk, in
//! a dead letter, or seen by any plugin.
//!
//! Rules come from `[[redact]]` (see [`RedactRule`]) after two built-in
//! ones, on unless `relay.redact_defaults = false`:
//!
//! - `default-keys` masks the value under every key, anywhere in `payload`
//!   and `metadata`, whose name ends in one of [`DEFAULT_KEYS`] (names
//!   compared without case and without `_`, `-`, `.` and spaces, so
//!   `apiKey`, `api_key` and `X-API-KEY` all end in `apikey`);
//! - `default-patterns` masks every built-in value pattern (bearer tokens,
//!   JWTs, AWS access key ids and secret keys, private key PEM blocks, card
//!   numbers passing the Luhn check, IBANs passing their check digits)
//!   wherever it appears in a string of `payload`, `metadata` or `reason`.
//!
//! Each redacted place is written down in the event itself, in metadata
//! key [`RECORD_KEY`]: a JSON array of `{"path", "rule", "action"}` —
//! never a value — so an auditor sees that a field was redacted, not
//! absent. Rules run in order; the first that selects a place acts on it.
//!
//! **Cost**: an event is first looked at as its canonical JSON — every
//! object key against the rules' key names, and each pattern's literal
//! hint — and only one that may hold something is read into a tree and
//! walked. Rules with `paths` or `regex` always need the walk for the
//! events they apply to.

mod names;
mod path;
mod patterns;
mod rule;

use std::collections::HashSet;

use auditrelay_plugin_api::envelope::AuditEventEnvelope;
use hmac::{Hmac, Mac};
use regex::Regex;
use serde::Serialize;
use serde_json::Value;
use sha2::Sha256;

use names::{Names, normalize};
use path::{Path, Step, Want};
use patterns::Matcher;
pub use rule::{RedactAction, RedactRule};

/// The metadata key holding an event's record of what was redacted. It
/// does not count toward the 64 metadata entries an event may have.
pub const RECORD_KEY: &str = auditrelay_plugin_api::envelope::REDACTION_RECORD_KEY;

/// What a masked value becomes.
pub const MASK: &str = "[REDACTED]";

/// The key names `default-keys` masks: every key whose name, compared
/// as rules compare names, ends in one of these (`user_password`,
/// `X-Api-Key`, `refresh_token`, `Set-Cookie`, `client_secret`).
pub const DEFAULT_KEYS: &[&str] = &[
    "*password",
    "*passwd",
    "*passphrase",
    "*pwd",
    "*secret",
    "*token",
    "*api_key",
    "*authorization",
    "*cookie",
    "*otp",
    "*private_key",
    "*credentials",
    "*credential",
    "*session_id",
];

/// The longest a record may be (a metadata value holds 4096 bytes).
const RECORD_BUDGET: usize = 3900;

/// Compiled redaction rules; see the [module docs](self).
pub struct Redaction {
    rules: Vec<Rule>,
    /// Every key name and ending some rule selects.
    names: Names,
    /// The hints of every pattern some rule uses.
    hints: patterns::Hints,
}

impl std::fmt::Debug for Redaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redaction")
            .field(
                "rules",
                &self.rules.iter().map(|r| &r.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

struct Rule {
    name: String,
    names: Names,
    paths: Vec<Vec<Want>>,
    values: Vec<Matcher>,
    /// Whether the literal look at the JSON cannot rule this one out.
    needs_walk: bool,
    action: Action,
    types: Vec<String>,
    sources: Vec<String>,
}

enum Action {
    Mask,
    Remove,
    Hash { key: Vec<u8>, id: String },
    Truncate(usize),
}

impl Action {
    fn label(&self) -> &'static str {
        match self {
            Action::Mask => "mask",
            Action::Remove => "remove",
            Action::Hash { .. } => "hash",
            Action::Truncate(_) => "truncate",
        }
    }
}

impl Rule {
    fn applies_to(&self, source: &str, event_type: &str) -> bool {
        (self.sources.is_empty() || self.sources.iter().any(|s| s == source))
            && (self.types.is_empty()
                || self.types.iter().any(|t| match t.strip_suffix('*') {
                    Some(prefix) => event_type.starts_with(prefix),
                    None => t == event_type,
                }))
    }
}

/// One redacted place, as the record lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Redacted {
    /// Where, e.g. `payload.user.password`.
    pub path: String,
    /// The rule's name.
    pub rule: String,
    /// `mask`, `remove`, `hash` or `truncate`.
    pub action: String,
}

impl Redaction {
    /// The built-in rules (with `defaults`), then `configured`
    /// (`[[redact]]`); every problem with them, each with its key, at once.
    pub fn new(
        defaults: bool,
        configured: &[RedactRule],
    ) -> Result<Redaction, Vec<(String, String)>> {
        let mut specs: Vec<(String, RedactRule)> = Vec::new();
        if defaults {
            specs.push(("relay.redact_defaults".into(), default_keys_rule()));
            specs.push(("relay.redact_defaults".into(), default_patterns_rule()));
        }
        for (i, rule) in configured.iter().enumerate() {
            specs.push((format!("redact[{i}]"), rule.clone()));
        }
        let mut problems = Vec::new();
        let mut rules = Vec::new();
        let mut names = HashSet::new();
        let mut hints = Vec::new();
        for (key, spec) in &specs {
            let mut problem = |field: &str, message: String| {
                problems.push((format!("{key}.{field}"), message));
            };
            if spec.name.trim().is_empty() {
                problem(
                    "name",
                    "must not be empty: it names the rule in each event's record".into(),
                );
            } else if !names.insert(spec.name.clone()) {
                problem("name", format!("{:?} names two rules", spec.name));
            }
            if spec.keys.is_empty()
                && spec.paths.is_empty()
                && spec.patterns.is_empty()
                && spec.regex.is_empty()
            {
                problem(
                    "keys",
                    "the rule selects nothing: give keys, paths, patterns or regex".into(),
                );
            }
            let mut paths = Vec::new();
            for text in &spec.paths {
                match path::parse(text) {
                    Ok(wanted) => paths.push(wanted),
                    Err(message) => problem("paths", message),
                }
            }
            let mut values = Vec::new();
            for name in &spec.patterns {
                match patterns::named(name) {
                    Some(pattern) => {
                        values.push(Matcher {
                            regex: Regex::new(pattern.exact).expect("built-in patterns compile"),
                            check: pattern.check,
                        });
                        hints.push(pattern.hint);
                    }
                    None => problem(
                        "patterns",
                        format!(
                            "{name:?} is no built-in pattern; they are: {}",
                            patterns::PATTERNS
                                .iter()
                                .map(|p| p.name)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ),
                }
            }
            for text in &spec.regex {
                match regex::RegexBuilder::new(text).size_limit(1 << 20).build() {
                    Ok(regex) => values.push(Matcher { regex, check: None }),
                    Err(error) => problem("regex", format!("{text:?} does not compile: {error}")),
                }
            }
            let action = match spec.action {
                RedactAction::Mask => Action::Mask,
                RedactAction::Remove => Action::Remove,
                RedactAction::Truncate if spec.keep == 0 => {
                    problem("keep", "must be at least 1 (to keep nothing, mask)".into());
                    Action::Mask
                }
                RedactAction::Truncate => Action::Truncate(spec.keep),
                RedactAction::Hash => match (&spec.hash_key, &spec.hash_key_id) {
                    (Some(secret), Some(id)) if secret.expose().len() >= 16 && !id.is_empty() => {
                        Action::Hash {
                            key: secret.expose().as_bytes().to_vec(),
                            id: id.clone(),
                        }
                    }
                    (Some(secret), Some(_)) if secret.expose().len() < 16 => {
                        problem(
                            "hash_key",
                            "must be at least 16 bytes (a short key lets anyone with the hashes guess the values back)".into(),
                        );
                        Action::Mask
                    }
                    _ => {
                        problem(
                            "hash_key",
                            "action = \"hash\" needs hash_key (a secret, e.g. \"${AUDIT_HASH_KEY}\") and hash_key_id".into(),
                        );
                        Action::Mask
                    }
                },
            };
            if matches!(action, Action::Remove) {
                for text in &spec.paths {
                    if ["actor.id", "target.id", "target.kind"].contains(&text.as_str()) {
                        problem(
                            "paths",
                            format!(
                                "{text} is required in an envelope: mask or hash it, it cannot be removed"
                            ),
                        );
                    }
                }
            }
            let mut names = Names::default();
            for key in &spec.keys {
                if !names.add(key) {
                    problem("keys", format!("{key:?} names no key"));
                }
            }
            rules.push(Rule {
                name: spec.name.clone(),
                needs_walk: !paths.is_empty() || !spec.regex.is_empty(),
                names,
                paths,
                values,
                action,
                types: spec.types.clone(),
                sources: spec.sources.clone(),
            });
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut names = Names::default();
        for rule in &rules {
            names.extend(&rule.names);
        }
        let hints = patterns::Hints::new(&hints);
        Ok(Redaction {
            rules,
            names,
            hints,
        })
    }

    /// Whether an event of `source` and `event_type`, encoded as `json`
    /// (canonical), may hold something to redact. `false` is certain.
    pub fn may_apply(&self, source: &str, event_type: &str, json: &[u8]) -> bool {
        let mut any = false;
        for rule in &self.rules {
            if rule.applies_to(source, event_type) {
                if rule.needs_walk {
                    return true;
                }
                any = true;
            }
        }
        if !any {
            return false;
        }
        (!self.names.is_empty() && self.has_key(json)) || self.hints.any(json)
    }

    /// Redacts `event` in place and records what was done in its
    /// metadata ([`RECORD_KEY`]); the places redacted.
    pub fn apply(&self, event: &mut AuditEventEnvelope) -> Vec<Redacted> {
        let rules: Vec<&Rule> = self
            .rules
            .iter()
            .filter(|r| r.applies_to(&event.source, &event.event_type))
            .collect();
        if rules.is_empty() {
            return Vec::new();
        }
        let mut done = Vec::new();
        let mut walk = Walk {
            rules: &rules,
            done: &mut done,
        };
        walk.fields(event);
        if !done.is_empty() {
            record(event, &done);
        }
        done
    }
}

fn default_keys_rule() -> RedactRule {
    RedactRule {
        keys: DEFAULT_KEYS.iter().map(|k| (*k).to_owned()).collect(),
        ..RedactRule::named("default-keys")
    }
}

fn default_patterns_rule() -> RedactRule {
    RedactRule {
        patterns: patterns::PATTERNS
            .iter()
            .map(|p| p.name.to_owned())
            .collect(),
        ..RedactRule::named("default-patterns")
    }
}

impl Redaction {
    /// Whether canonical `json` has an object key a rule selects (or one
    /// written with escapes, which is then looked at closely).
    fn has_key(&self, json: &[u8]) -> bool {
        let mut name = Vec::with_capacity(64);
        // A key ends in `":` (canonical JSON has no spaces); a `":` inside
        // a string value only costs a closer look.
        for colon in memchr::memchr_iter(b':', json) {
            if colon == 0 || json[colon - 1] != b'"' {
                continue;
            }
            let end = colon - 1;
            let Some(open) = memchr::memrchr(b'"', &json[..end]) else {
                continue;
            };
            let raw = &json[open + 1..end];
            // Escapes: the name is not what its bytes say; look closely.
            if raw.contains(&b'\\') || open > 0 && json[open - 1] == b'\\' {
                return true;
            }
            names::normalize_into(raw, &mut name);
            if self.names.selects(&name) {
                return true;
            }
        }
        false
    }
}

/// Writes the record of `done` into the event's metadata, appended to one
/// an earlier relay left (a value that is not such a record is replaced).
fn record(event: &mut AuditEventEnvelope, done: &[Redacted]) {
    let mut entries: Vec<Value> = event
        .metadata
        .get(RECORD_KEY)
        .and_then(|text| serde_json::from_str::<Vec<Value>>(text).ok())
        .unwrap_or_default();
    let mut size = serde_json::to_string(&entries).map_or(2, |t| t.len());
    let mut omitted = 0;
    for entry in done {
        let value = serde_json::to_value(entry).expect("a record entry serializes");
        let len = value.to_string().len() + 1;
        if size + len > RECORD_BUDGET {
            omitted += 1;
            continue;
        }
        size += len;
        entries.push(value);
    }
    if omitted > 0 {
        entries.push(serde_json::json!({ "omitted": omitted }));
    }
    event.metadata.insert(
        RECORD_KEY.to_owned(),
        serde_json::to_string(&entries).expect("a record serializes"),
    );
}

/// One pass of the rules over an event.
struct Walk<'r, 'd> {
    rules: &'r [&'r Rule],
    done: &'d mut Vec<Redacted>,
}

/// What a rule made of a whole value.
enum Outcome {
    Replace(String),
    Remove,
}

impl<'r> Walk<'r, '_> {
    fn note(&mut self, path: &Path, rule: &Rule) {
        self.done.push(Redacted {
            path: path.to_string(),
            rule: rule.name.clone(),
            action: rule.action.label().to_owned(),
        });
    }

    /// The first rule that selects the place at `path` (named `key`, if
    /// it is an object entry).
    fn selecting(&self, path: &Path, key: Option<&str>) -> Option<&'r Rule> {
        let normalized = key.map(|k| normalize(k.as_bytes()));
        self.rules
            .iter()
            .find(|rule| {
                normalized.as_ref().is_some_and(|n| rule.names.selects(n))
                    || rule.paths.iter().any(|p| path.is(p))
            })
            .copied()
    }

    fn fields(&mut self, event: &mut AuditEventEnvelope) {
        let actor = Path::root("actor");
        self.shaped_field(
            &actor.with(key("email")),
            &mut event.actor.email,
            Shape::Email,
        );
        self.shaped_field(&actor.with(key("ip")), &mut event.actor.ip, Shape::Ip);
        self.text_field(&actor.with(key("user_agent")), &mut event.actor.user_agent);
        self.required_field(&actor.with(key("id")), &mut event.actor.id);
        let groups = actor.with(key("groups"));
        if let Some(rule) = self.selecting(&groups, None) {
            self.note(&groups, rule);
            let outcome: Vec<Option<Outcome>> = event
                .actor
                .groups
                .iter()
                .map(|g| Some(whole(rule, &Value::String(g.clone()))))
                .collect();
            apply_to_strings(&mut event.actor.groups, outcome);
        } else {
            let mut outcomes = Vec::new();
            for (i, group) in event.actor.groups.iter().enumerate() {
                let at = groups.with(Step::Index(i));
                outcomes.push(self.selecting(&at, None).map(|rule| {
                    self.note(&at, rule);
                    whole(rule, &Value::String(group.clone()))
                }));
            }
            apply_to_strings(&mut event.actor.groups, outcomes);
        }
        if let Some(target) = &mut event.target {
            let at = Path::root("target");
            self.required_field(&at.with(key("id")), &mut target.id);
            self.required_field(&at.with(key("kind")), &mut target.kind);
            self.text_field(&at.with(key("name")), &mut target.name);
        }
        let reason = Path::root("reason");
        self.text_field(&reason, &mut event.reason);
        if let Some(text) = &mut event.reason {
            self.patterns(&reason, text);
        }
        self.metadata(event);
        let payload = Path::root("payload");
        if let Some(rule) = self.selecting(&payload, None) {
            self.note(&payload, rule);
            match whole(rule, &event.payload) {
                Outcome::Replace(text) => event.payload = Value::String(text),
                Outcome::Remove => event.payload = Value::Null,
            }
        } else if let Some(Outcome::Remove) = self.value(&payload, &mut event.payload) {
            event.payload = Value::Null;
        }
    }

    /// An optional text field a path may name.
    fn text_field(&mut self, path: &Path, field: &mut Option<String>) {
        let Some(text) = field else { return };
        if let Some(rule) = self.selecting(path, None) {
            self.note(path, rule);
            *field = match whole(rule, &Value::String(std::mem::take(text))) {
                Outcome::Replace(text) => Some(text),
                Outcome::Remove => None,
            };
        }
    }

    /// A field whose value must keep a shape to stay valid: what a rule
    /// makes of it is given that shape (see [`Shape`]).
    fn shaped_field(&mut self, path: &Path, field: &mut Option<String>, shape: Shape) {
        let Some(text) = field else { return };
        if let Some(rule) = self.selecting(path, None) {
            *field = shape.redact(&rule.action, text);
            self.done.push(Redacted {
                path: path.to_string(),
                rule: rule.name.clone(),
                action: if field.is_none() {
                    "remove"
                } else {
                    rule.action.label()
                }
                .to_owned(),
            });
        }
    }

    /// A required text field: never removed (the rules refuse that).
    fn required_field(&mut self, path: &Path, field: &mut String) {
        if let Some(rule) = self.selecting(path, None) {
            self.note(path, rule);
            if let Outcome::Replace(text) = whole(rule, &Value::String(std::mem::take(field))) {
                *field = text;
            } else {
                *field = MASK.to_owned();
            }
        }
    }

    fn metadata(&mut self, event: &mut AuditEventEnvelope) {
        let root = Path::root("metadata");
        let keys: Vec<String> = event
            .metadata
            .keys()
            .filter(|k| *k != RECORD_KEY)
            .cloned()
            .collect();
        for name in keys {
            let at = root.with(Step::Key(name.clone()));
            if let Some(rule) = self.selecting(&at, Some(&name)) {
                self.note(&at, rule);
                let value = Value::String(event.metadata.remove(&name).unwrap_or_default());
                if let Outcome::Replace(text) = whole(rule, &value) {
                    event.metadata.insert(name, text);
                }
            } else if let Some(text) = event.metadata.get_mut(&name) {
                self.patterns(&at, text);
            }
        }
    }

    /// Walks a value of `payload` at `path`; whether it must go itself.
    fn value(&mut self, path: &Path, value: &mut Value) -> Option<Outcome> {
        match value {
            Value::String(text) => {
                self.patterns(path, text);
                None
            }
            Value::Object(map) => {
                let names: Vec<String> = map.keys().cloned().collect();
                for name in names {
                    let at = path.with(Step::Key(name.clone()));
                    let remove = match self.selecting(&at, Some(&name)) {
                        Some(rule) => {
                            self.note(&at, rule);
                            match whole(rule, &map[&name]) {
                                Outcome::Replace(text) => {
                                    map[&name] = Value::String(text);
                                    false
                                }
                                Outcome::Remove => true,
                            }
                        }
                        None => matches!(
                            self.value(&at, map.get_mut(&name).expect("listed above")),
                            Some(Outcome::Remove)
                        ),
                    };
                    if remove {
                        map.remove(&name);
                    }
                }
                None
            }
            Value::Array(items) => {
                let mut keep = Vec::with_capacity(items.len());
                for (i, mut item) in std::mem::take(items).into_iter().enumerate() {
                    let at = path.with(Step::Index(i));
                    let outcome = match self.selecting(&at, None) {
                        Some(rule) => {
                            self.note(&at, rule);
                            Some(whole(rule, &item))
                        }
                        None => self.value(&at, &mut item),
                    };
                    match outcome {
                        Some(Outcome::Remove) => {}
                        Some(Outcome::Replace(text)) => keep.push(Value::String(text)),
                        None => keep.push(item),
                    }
                }
                *items = keep;
                None
            }
            _ => None,
        }
    }

    /// Applies every rule's value patterns to `text`, in rule order.
    fn patterns(&mut self, path: &Path, text: &mut String) {
        let rules = self.rules;
        for rule in rules {
            for matcher in &rule.values {
                let found = matcher.find(text);
                if found.is_empty() {
                    continue;
                }
                let mut out = String::with_capacity(text.len());
                let mut last = 0;
                for range in found {
                    out.push_str(&text[last..range.start]);
                    out.push_str(&part(rule, &text[range.clone()]));
                    last = range.end;
                }
                out.push_str(&text[last..]);
                *text = out;
                self.note(path, rule);
            }
        }
    }
}

/// A field the envelope rules give a shape: a redacted value keeps it, so
/// the event stays valid.
#[derive(Clone, Copy)]
enum Shape {
    /// `actor.email`: masked to `redacted@redacted.invalid`, hashed to
    /// `<hex>@<key id>.hmac-sha256.invalid` (RFC 2606's reserved
    /// top-level domain: it never delivers anywhere).
    Email,
    /// `actor.ip`: hashed to an address in `fd00::/8` (unique local, never
    /// routed) made of the HMAC; masked or truncated, it is removed.
    Ip,
}

impl Shape {
    fn redact(self, action: &Action, text: &str) -> Option<String> {
        match (self, action) {
            (_, Action::Remove) => None,
            (Shape::Email, Action::Hash { key, id }) => {
                let digest = hmac(key, text.as_bytes());
                Some(format!("{}@{id}.hmac-sha256.invalid", hex::encode(digest)))
            }
            (Shape::Email, _) => Some("redacted@redacted.invalid".to_owned()),
            (Shape::Ip, Action::Hash { key, .. }) => {
                let digest = hmac(key, text.as_bytes());
                let mut octets = [0u8; 16];
                octets[0] = 0xfd;
                octets[1..].copy_from_slice(&digest[..15]);
                Some(std::net::Ipv6Addr::from(octets).to_string())
            }
            (Shape::Ip, _) => None,
        }
    }
}

fn key(name: &str) -> Step {
    Step::Key(name.to_owned())
}

/// Replaces the strings of `items` per `outcomes` (removing where told).
fn apply_to_strings(items: &mut Vec<String>, outcomes: Vec<Option<Outcome>>) {
    let mut kept = Vec::with_capacity(items.len());
    for (item, outcome) in std::mem::take(items).into_iter().zip(outcomes) {
        match outcome {
            None => kept.push(item),
            Some(Outcome::Replace(text)) => kept.push(text),
            Some(Outcome::Remove) => {}
        }
    }
    *items = kept;
}

/// What `rule` makes of a whole value it selected.
fn whole(rule: &Rule, value: &Value) -> Outcome {
    match (&rule.action, value) {
        (Action::Remove, _) => Outcome::Remove,
        (Action::Mask, _) => Outcome::Replace(MASK.to_owned()),
        (Action::Hash { key, id }, Value::String(text)) => {
            Outcome::Replace(hash(key, id, text.as_bytes()))
        }
        (Action::Hash { key, id }, other) => {
            Outcome::Replace(hash(key, id, other.to_string().as_bytes()))
        }
        (Action::Truncate(keep), Value::String(text)) => Outcome::Replace(truncate(text, *keep)),
        (Action::Truncate(_), _) => Outcome::Replace(MASK.to_owned()),
    }
}

/// What `rule` makes of a match inside a string.
fn part(rule: &Rule, matched: &str) -> String {
    match &rule.action {
        Action::Remove => String::new(),
        Action::Mask => MASK.to_owned(),
        Action::Hash { key, id } => hash(key, id, matched.as_bytes()),
        Action::Truncate(keep) => truncate(matched, *keep),
    }
}

/// `hmac-sha256:<id>:<hex>` of `bytes` under `key`.
fn hash(key: &[u8], id: &str, bytes: &[u8]) -> String {
    format!("hmac-sha256:{id}:{}", hex::encode(hmac(key, bytes)))
}

fn hmac(key: &[u8], bytes: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(bytes);
    mac.finalize().into_bytes().into()
}

/// The first `keep` characters — never more than half of `text`, so a
/// short secret is not kept whole — then `…`.
fn truncate(text: &str, keep: usize) -> String {
    let count = text.chars().count();
    let kept: String = text.chars().take(keep.min(count / 2)).collect();
    format!("{kept}…")
}

#[cfg(test)]
mod tests;
