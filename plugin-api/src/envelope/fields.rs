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
//!     vec![Some("u-7".to_owned()), Some("denied".to_owned()), None]
//! );
//! ```

use std::fmt;

use serde::Deserializer;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};

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
            .collect::<Result<_, _>>()?;
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

    /// The value at each path: strings as they are, numbers and booleans as
    /// text; absent, `null`, objects and arrays as `None`.
    pub fn extract(&self, json: &[u8]) -> Result<Vec<Option<String>>, serde_json::Error> {
        let mut values = vec![None; self.paths.len()];
        if self.paths.is_empty() {
            return Ok(values);
        }
        let wanted: Vec<usize> = (0..self.paths.len()).collect();
        let mut deserializer = serde_json::Deserializer::from_slice(json);
        Level {
            paths: &self.paths,
            wanted: &wanted,
            depth: 0,
            values: &mut values,
        }
        .deserialize(&mut deserializer)?;
        Ok(values)
    }
}

/// One object level of the walk: which paths are still possible below it.
struct Level<'p, 'v> {
    paths: &'p [Vec<String>],
    wanted: &'p [usize],
    depth: usize,
    values: &'v mut [Option<String>],
}

impl<'de> DeserializeSeed<'de> for Level<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Level<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let below: Vec<usize> = self
                .wanted
                .iter()
                .copied()
                .filter(|&i| self.paths[i][self.depth] == key)
                .collect();
            if below.is_empty() {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let (leaves, deeper): (Vec<usize>, Vec<usize>) = below
                .into_iter()
                .partition(|&i| self.paths[i].len() == self.depth + 1);
            if deeper.is_empty() {
                let value = map.next_value::<Scalar>()?.0;
                for i in leaves {
                    self.values[i] = value.clone();
                }
            } else {
                // A path ends here and another goes on: the deeper one wins,
                // since a scalar cannot have children.
                map.next_value_seed(Level {
                    paths: self.paths,
                    wanted: &deeper,
                    depth: self.depth + 1,
                    values: self.values,
                })?;
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
struct Scalar(Option<String>);

impl<'de> serde::Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_owned())))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Scalar, A::Error> {
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
        assert!(FieldPaths::new(["actor..id"]).is_err());
        assert!(paths.extract(b"{\"actor\":").is_err());
    }
}
