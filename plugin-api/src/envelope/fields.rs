//! Picking a few fields out of an envelope's JSON without decoding it all.
//!
//! Exporters that index or tag by envelope fields (`actor.id`,
//! `action.outcome`, ...) need a handful of values per event. Decoding the
//! whole [`AuditEventEnvelope`](super::AuditEventEnvelope) for that costs
//! several microseconds inside the sandbox; this walks the JSON once,
//! copying only the requested values and skipping everything else.
//!
//! ```
//! use auditrelay_plugin_api::envelope::FieldPaths;
//!
//! let paths = FieldPaths::new(["actor.id", "action.outcome", "tenant"]).unwrap();
//! let json = br#"{"action":{"outcome":"denied"},"actor":{"id":"u-7","kind":"user"},"id":"x"}"#;
//! assert_eq!(
//!     paths.extract(json).unwrap(),
//!     vec![Some("u-7".into()), Some("denied".into()), None]
//! );
//! ```

use std::borrow::Cow;
use std::fmt;

use serde::Deserializer;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use crate::Event;

/// A fixed list of dotted paths (`actor.id`) to extract from envelopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPaths {
    paths: Vec<Vec<String>>,
}

impl FieldPaths {
    /// The paths, in the order [`extract`](Self::extract) returns them.
    /// An empty path or segment is an error naming it.
    pub fn new<I, S>(paths: I) -> Result<FieldPaths, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let paths = paths
            .into_iter()
            .map(|p| {
                let p = p.as_ref();
                let segments: Vec<String> = p.split('.').map(str::to_owned).collect();
                if segments.iter().any(String::is_empty) {
                    Err(format!(
                        "field path {p:?} is not a dotted path such as \"actor.id\""
                    ))
                } else {
                    Ok(segments)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        if paths.len() > MAX_PATHS {
            return Err(format!(
                "at most {MAX_PATHS} field paths, not {}",
                paths.len()
            ));
        }
        Ok(FieldPaths { paths })
    }

    /// How many paths there are.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The value at each path: strings as they are (borrowed from `json`
    /// unless they hold escapes), numbers and booleans as text; absent,
    /// `null`, objects and arrays as `None`.
    pub fn extract<'a>(
        &self,
        json: &'a [u8],
    ) -> Result<Vec<Option<Cow<'a, str>>>, serde_json::Error> {
        let mut values = vec![None; self.paths.len()];
        let all = if self.paths.len() == MAX_PATHS {
            u64::MAX
        } else {
            (1u64 << self.paths.len()) - 1
        };
        self.walk(json, all, &mut values)?;
        Ok(values)
    }

    /// Like [`extract`](Self::extract) for an event: the top-level `id`,
    /// `source`, `type` and `tenant` come from the event's routing fields,
    /// and the JSON is walked only for the rest, and only until they are
    /// all found (canonical JSON sorts keys, so `action` and `actor` come
    /// first).
    pub fn extract_event<'a>(
        &self,
        event: &Event<'a>,
    ) -> Result<Vec<Option<Cow<'a, str>>>, serde_json::Error> {
        let mut values = vec![None; self.paths.len()];
        let mut wanted = 0u64;
        for (i, path) in self.paths.iter().enumerate() {
            let routed = match path.as_slice() {
                [field] => match field.as_str() {
                    "id" => Some(Some(event.id)),
                    "source" => Some(Some(event.source)),
                    "type" => Some(Some(event.event_type)),
                    "tenant" => Some(event.tenant),
                    _ => None,
                },
                _ => None,
            };
            match routed {
                Some(value) => values[i] = value.map(Cow::Borrowed),
                None => wanted |= 1 << i,
            }
        }
        self.walk(event.envelope, wanted, &mut values)?;
        Ok(values)
    }

    fn walk<'a>(
        &self,
        json: &'a [u8],
        wanted: u64,
        values: &mut [Option<Cow<'a, str>>],
    ) -> Result<(), serde_json::Error> {
        if wanted == 0 {
            return Ok(());
        }
        let mut progress = Progress {
            resolved: 0,
            remaining: wanted.count_ones(),
        };
        let mut deserializer = serde_json::Deserializer::from_slice(json);
        let walked = Level {
            paths: &self.paths,
            wanted,
            depth: 0,
            values,
            progress: &mut progress,
        }
        .deserialize(&mut deserializer);
        match walked {
            // The walk stopped on purpose (see ALL_FOUND).
            Err(_) if progress.remaining == 0 => Ok(()),
            other => other,
        }
    }
}

/// Stops the walk once every wanted value is found; not a real error.
const ALL_FOUND: &str = "auditrelay: all fields found";

/// Paths per [`FieldPaths`]: sets of them are bit masks.
const MAX_PATHS: usize = 64;

/// The positions of the set bits of `mask`.
fn bits(mut mask: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (mask != 0).then(|| {
            let i = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            i
        })
    })
}

/// One object level of the walk: which paths are still possible below it.
struct Level<'p, 'v, 'de> {
    paths: &'p [Vec<String>],
    /// Bit i: path i may still be found below this level.
    wanted: u64,
    depth: usize,
    values: &'v mut [Option<Cow<'de, str>>],
    progress: &'v mut Progress,
}

/// Which wanted paths are resolved (found, or known to be absent).
struct Progress {
    resolved: u64,
    remaining: u32,
}

impl Progress {
    fn resolve(&mut self, paths: u64) {
        let new = paths & !self.resolved;
        self.resolved |= new;
        self.remaining -= new.count_ones();
    }
}

impl<'de> DeserializeSeed<'de> for Level<'_, '_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Level<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let depth = self.depth;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let below = bits(self.wanted)
                .filter(|&i| self.paths[i][depth] == key)
                .fold(0u64, |mask, i| mask | 1 << i);
            if below == 0 {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let leaves = bits(below)
                .filter(|&i| self.paths[i].len() == depth + 1)
                .fold(0u64, |mask, i| mask | 1 << i);
            let deeper = below & !leaves;
            if deeper == 0 {
                let value = map.next_value::<Scalar<'de>>()?.0;
                for i in bits(leaves) {
                    self.values[i] = value.clone();
                }
                self.progress.resolve(leaves);
            } else {
                // A path ends here and another goes on: the deeper one wins,
                // since a scalar cannot have children.
                map.next_value_seed(Level {
                    paths: self.paths,
                    wanted: deeper,
                    depth: depth + 1,
                    values: self.values,
                    progress: self.progress,
                })?;
                // Keys appear once: whatever was not found below is absent.
                self.progress.resolve(below);
            }
            if self.progress.remaining == 0 {
                return Err(serde::de::Error::custom(ALL_FOUND));
            }
        }
        Ok(())
    }

    // Anything but an object below a wanted path: nothing to find.
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

/// A leaf value as text, or `None` for null, objects and arrays.
struct Scalar<'de>(Option<Cow<'de, str>>);

impl<'de> serde::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Scalar<'de>, E> {
                Ok(Scalar(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar<'de>, E> {
                Ok(Scalar(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar<'de>, E> {
                Ok(Scalar(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar<'de>, E> {
                Ok(Scalar(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar<'de>, E> {
                Ok(Scalar(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar<'de>, E> {
                Ok(Scalar(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
                Ok(Scalar(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Scalar<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar(None))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::sample_envelope;

    #[test]
    fn extracts_nested_scalars_and_skips_the_rest() {
        let envelope = sample_envelope(3);
        let json = envelope.to_canonical_json();
        let paths = FieldPaths::new([
            "actor.id",
            "action.outcome",
            "tenant",
            "target",
            "payload.seq",
            "nope.deeper",
        ])
        .unwrap();
        let values = paths.extract(&json).unwrap();
        assert_eq!(
            values,
            vec![
                Some("u-3".into()),
                Some("success".into()),
                Some("acme".into()),
                None,
                Some("3".into()),
                None
            ]
        );
        let event = crate::EventBuf::from_envelope(&envelope);
        assert_eq!(paths.extract_event(&event.as_event()).unwrap(), values);
        // Stops early once found, yet still reports later absent paths.
        let early = FieldPaths::new(["action.name", "actor.kind", "type", "nope"]).unwrap();
        assert_eq!(
            early.extract_event(&event.as_event()).unwrap(),
            vec![
                Some("add_member".into()),
                Some("user".into()),
                Some("group.member_added".into()),
                None
            ]
        );
        assert!(FieldPaths::new(["actor..id"]).is_err());
        assert!(paths.extract(b"{\"actor\":").is_err());
    }
}
