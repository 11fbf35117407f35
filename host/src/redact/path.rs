//! Paths into an envelope: what `[[redact]] paths` names, and how each
//! redacted place is written down in the event's record.
//!
//! A path is dot-separated names, with `[n]` for an array element and
//! `[*]` for every element: `payload.items[*].card`. Only the fields an
//! emitter fills with data can be named: `actor.*`, `target.*`, `reason`,
//! `payload…` and `metadata.<key>` — never the event's identity (`id`,
//! `source`, `type`, `time`, `tenant`) or `action`.

use std::fmt;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    Key(String),
    Index(usize),
}

/// One step of a path a rule names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Want {
    Key(String),
    Index(usize),
    AnyIndex,
}

/// Where the redacted places of an event are, as they are written down.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Path(pub Vec<Step>);

impl Path {
    pub fn root(name: &str) -> Self {
        Path(vec![Step::Key(name.to_owned())])
    }

    pub fn with(&self, step: Step) -> Self {
        let mut steps = self.0.clone();
        steps.push(step);
        Path(steps)
    }

    /// Whether `wanted` names exactly this place.
    pub fn is(&self, wanted: &[Want]) -> bool {
        self.0.len() == wanted.len()
            && self
                .0
                .iter()
                .zip(wanted)
                .all(|(step, want)| match (step, want) {
                    (Step::Key(k), Want::Key(w)) => k == w,
                    (Step::Index(i), Want::Index(w)) => i == w,
                    (Step::Index(_), Want::AnyIndex) => true,
                    _ => false,
                })
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.0.iter().enumerate() {
            match step {
                Step::Index(n) => write!(f, "[{n}]")?,
                // A name that would read as more than one step is quoted.
                Step::Key(k) if k.is_empty() || k.contains(['.', '[', ']', '"', ' ']) => {
                    write!(f, "[{}]", serde_json::Value::String(k.clone()))?
                }
                Step::Key(k) if i == 0 => f.write_str(k)?,
                Step::Key(k) => write!(f, ".{k}")?,
            }
        }
        Ok(())
    }
}

/// The fields of `actor` and `target` a path may name.
const ACTOR_FIELDS: &[&str] = &["id", "email", "ip", "user_agent", "groups"];
const TARGET_FIELDS: &[&str] = &["id", "name", "kind"];

/// Reads a path a rule names; why not, if it cannot be one.
pub(super) fn parse(text: &str) -> Result<Vec<Want>, String> {
    let mut steps = Vec::new();
    for part in text.split('.') {
        let (name, mut indexes) = match part.find('[') {
            Some(at) => (&part[..at], &part[at..]),
            None => (part, ""),
        };
        if name.is_empty() {
            return Err(format!("{text:?} has an empty name (write `a.b[0].c`)"));
        }
        steps.push(Want::Key(name.to_owned()));
        while !indexes.is_empty() {
            let Some(close) = indexes.find(']').filter(|_| indexes.starts_with('[')) else {
                return Err(format!("{text:?}: `[` needs a number or `*`, then `]`"));
            };
            let inner = &indexes[1..close];
            steps.push(match inner {
                "*" => Want::AnyIndex,
                n => {
                    Want::Index(n.parse().map_err(|_| {
                        format!("{text:?}: [{inner}] is not an index (a number or *)")
                    })?)
                }
            });
            indexes = &indexes[close + 1..];
        }
    }
    let allowed = match steps.as_slice() {
        [Want::Key(root), Want::Key(field)] if root == "actor" => {
            ACTOR_FIELDS.contains(&field.as_str())
        }
        [
            Want::Key(root),
            Want::Key(_),
            Want::AnyIndex | Want::Index(_),
        ] if root == "actor" => {
            matches!(&steps[1], Want::Key(f) if f == "groups")
        }
        [Want::Key(root), Want::Key(field)] if root == "target" => {
            TARGET_FIELDS.contains(&field.as_str())
        }
        [Want::Key(root), Want::Key(_)] if root == "metadata" => true,
        [Want::Key(root)] if root == "reason" => true,
        [Want::Key(root), ..] if root == "payload" => true,
        _ => false,
    };
    if !allowed {
        return Err(format!(
            "{text:?} names no field a rule may redact: name actor.{{{}}}, target.{{{}}}, reason, metadata.<key> or payload... (the event's identity and action are never redacted)",
            ACTOR_FIELDS.join(","),
            TARGET_FIELDS.join(",")
        ));
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_and_refuse_with_a_reason() {
        assert_eq!(
            parse("payload.items[*].card").unwrap(),
            [
                Want::Key("payload".into()),
                Want::Key("items".into()),
                Want::AnyIndex,
                Want::Key("card".into())
            ]
        );
        assert!(parse("actor.email").is_ok());
        assert!(parse("actor.groups[*]").is_ok());
        assert!(parse("metadata.session").is_ok());
        for bad in [
            "id",
            "action.outcome",
            "tenant",
            "payload..x",
            "payload.a[x]",
            "actor.name",
            "metadata",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_are_written_so_they_read_back() {
        let path = Path::root("payload")
            .with(Step::Key("items".into()))
            .with(Step::Index(2))
            .with(Step::Key("a.b".into()));
        assert_eq!(path.to_string(), r#"payload.items[2]["a.b"]"#);
        assert!(path.is(&[
            Want::Key("payload".into()),
            Want::Key("items".into()),
            Want::AnyIndex,
            Want::Key("a.b".into())
        ]));
    }
}
