//! The key names a rule selects, compared the way rules compare names
//! (ASCII lower case, without `_`, `-`, `.` and spaces): exact names, and
//! endings (`*token`). Looked up once per object key of every event, so
//! an ending is found by the key's last byte, and the exact names are
//! hashed once (a fixed hash: events look names up, never add any).

use std::collections::HashSet;

/// A name as rules compare it.
pub(super) fn normalize(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len());
    normalize_into(name, &mut out);
    out
}

/// [`normalize`] into a buffer that is reused.
pub(super) fn normalize_into(name: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend(
        name.iter()
            .filter(|b| !matches!(b, b'_' | b'-' | b'.' | b' '))
            .map(u8::to_ascii_lowercase),
    );
}

/// Names and endings, normalised.
#[derive(Default)]
pub(super) struct Names {
    exact: HashSet<Vec<u8>, foldhash::fast::FixedState>,
    /// Endings, by their last byte.
    endings: Vec<Vec<Vec<u8>>>,
}

impl Names {
    /// Adds `spec` (`name`, or `*ending`); `false` if it names nothing.
    pub fn add(&mut self, spec: &str) -> bool {
        match spec.strip_prefix('*') {
            Some(ending) => {
                let ending = normalize(ending.as_bytes());
                let Some(&last) = ending.last() else {
                    return false;
                };
                if self.endings.is_empty() {
                    self.endings = vec![Vec::new(); 256];
                }
                self.endings[usize::from(last)].push(ending);
                true
            }
            None => {
                let name = normalize(spec.as_bytes());
                let named = !name.is_empty();
                self.exact.insert(name);
                named
            }
        }
    }

    /// Adds every name and ending of `other`.
    pub fn extend(&mut self, other: &Names) {
        self.exact.extend(other.exact.iter().cloned());
        for bucket in &other.endings {
            for ending in bucket {
                if self.endings.is_empty() {
                    self.endings = vec![Vec::new(); 256];
                }
                self.endings[usize::from(*ending.last().expect("never empty"))]
                    .push(ending.clone());
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.endings.is_empty()
    }

    /// Whether the normalised `name` is one of these.
    pub fn selects(&self, name: &[u8]) -> bool {
        let Some(&last) = name.last() else {
            return false;
        };
        self.endings
            .get(usize::from(last))
            .is_some_and(|bucket| bucket.iter().any(|e| name.ends_with(e)))
            || (!self.exact.is_empty() && self.exact.contains(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_endings_match_in_any_spelling() {
        let mut names = Names::default();
        assert!(names.add("*api_key") && names.add("internal_note"));
        assert!(!names.add("*") && !names.add("_-"));
        for key in [
            "apiKey",
            "X-API-KEY",
            "stripe.api_key",
            "internalNote",
            "INTERNAL-NOTE",
        ] {
            assert!(names.selects(&normalize(key.as_bytes())), "{key}");
        }
        for key in ["api_key_id", "note", "internal_notes", ""] {
            assert!(!names.selects(&normalize(key.as_bytes())), "{key}");
        }
    }
}
