//! What reached the destination, as an exporter's readers see it: a
//! request with its body decoded ([`Sent`]), the ids in a JSON body
//! ([`ids_at`]) and a local exporter's instance and directory
//! ([`Destination`]).

use std::path::{Path, PathBuf};

use serde_json::Value;

#[cfg(doc)] // only named in doc links
use super::Compliance;
use crate::http::Request;
use crate::plugin::Plugin;
use crate::testing::Harness;

/// A request the exporter sent, as the suite hands it to
/// [`events_in`](Compliance::events_in): the body decoded by its
/// `Content-Encoding` (gzip and zstd need plugin-api's `compression`
/// feature, which every exporter that compresses has on).
#[derive(Debug, Clone)]
pub struct Sent {
    pub(super) request: Request,
    pub(super) body: Vec<u8>,
}

impl Sent {
    /// Decodes the body of `request`.
    pub fn decode(request: &Request) -> Result<Sent, String> {
        let body = decode_body(request.header_value("content-encoding"), &request.body)?;
        Ok(Sent {
            request: request.clone(),
            body,
        })
    }

    /// The request as sent (its `body` as on the wire).
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The body, decoded.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The strings at JSON `pointer` in the body: see [`ids_at`].
    pub fn ids_at(&self, pointer: &str) -> Vec<String> {
        ids_at(&self.body, pointer)
    }
}

/// The string at JSON `pointer` (RFC 6901, e.g. `/audit/id`) in each JSON
/// value of `bytes`: the elements of a top-level array, or each value of
/// an NDJSON or concatenated stream. Values without a string there are
/// skipped; reading stops at the first byte that is not JSON.
///
/// ```
/// use auditrelay_plugin_api::testing::compliance::ids_at;
///
/// assert_eq!(ids_at(br#"[{"e":{"id":"a"}},{"e":{"id":"b"}}]"#, "/e/id"), ["a", "b"]);
/// assert_eq!(ids_at(b"{\"id\":\"a\"}\n{\"id\":\"b\"}\n", "/id"), ["a", "b"]);
/// assert_eq!(ids_at(br#"{"acks":[0]}"#, "/id"), Vec::<String>::new());
/// ```
pub fn ids_at(bytes: &[u8], pointer: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut take = |value: &Value| {
        if let Some(id) = value.pointer(pointer).and_then(Value::as_str) {
            ids.push(id.to_owned());
        }
    };
    // A line that does not parse (a torn write) is skipped, not the end:
    // what follows it is read too, so a duplicate after it is seen.
    let mut rest = bytes;
    while !rest.is_empty() {
        let mut values = serde_json::Deserializer::from_slice(rest).into_iter::<Value>();
        let mut torn = false;
        for value in values.by_ref() {
            match value {
                Ok(Value::Array(items)) => items.iter().for_each(&mut take),
                Ok(value) => take(&value),
                Err(_) => {
                    torn = true;
                    break;
                }
            }
        }
        if !torn {
            break;
        }
        let at = values.byte_offset();
        match rest[at..].iter().position(|&b| b == b'\n') {
            Some(newline) => rest = &rest[at + newline + 1..],
            None => break,
        }
    }
    ids
}

/// What a [`Compliance::local`] exporter's reader looks at: the plugin
/// instance of one step and its granted directory.
pub struct Destination<'a, P: Plugin> {
    pub(super) harness: &'a Harness<P>,
    pub(super) dir: Option<&'a Path>,
}

impl<P: Plugin> Destination<'_, P> {
    /// The harness the plugin runs in ([`Harness::stdout`],
    /// [`Harness::plugin`], counters, logs).
    pub fn harness(&self) -> &Harness<P> {
        self.harness
    }

    /// The directory granted to this instance.
    ///
    /// # Panics
    ///
    /// If the suite was not asked for one with [`Compliance::granted_dir`].
    pub fn granted_dir(&self) -> &Path {
        self.dir
            .expect("no granted directory: call Compliance::granted_dir()")
    }

    /// Every file under the granted directory (none without one), by
    /// path relative to it, in name order.
    pub fn files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut files = Vec::new();
        if let Some(dir) = self.dir {
            collect_files(dir, dir, &mut files);
        }
        files.sort();
        files
    }
}

pub(super) fn collect_files(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(root, &path, out);
        } else if let Ok(bytes) = std::fs::read(&path) {
            let relative = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            out.push((relative, bytes));
        }
    }
}

/// Decodes `body` by its `Content-Encoding`: every gzip member and every
/// zstd frame, as a receiving service would, and bytes after them are an
/// error (a single-member reader would not see a second copy of the
/// events, or a secret, hidden behind the first).
fn decode_body(encoding: Option<&str>, body: &[u8]) -> Result<Vec<u8>, String> {
    match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("identity") => Ok(body.to_vec()),
        #[cfg(feature = "compression")]
        Some("gzip") => {
            use std::io::Read as _;
            let mut plain = Vec::new();
            flate2::read::MultiGzDecoder::new(body)
                .read_to_end(&mut plain)
                .map_err(|e| format!("Content-Encoding is gzip but the body is not gzip: {e}"))?;
            Ok(plain)
        }
        #[cfg(feature = "compression")]
        Some("zstd") => {
            use std::io::Read as _;
            let mut plain = Vec::new();
            let mut rest = body;
            while !rest.is_empty() {
                ruzstd::decoding::StreamingDecoder::new(&mut rest)
                    .map_err(|e| format!("Content-Encoding is zstd but the body is not zstd: {e}"))?
                    .read_to_end(&mut plain)
                    .map_err(|e| {
                        format!("Content-Encoding is zstd but the body is not zstd: {e}")
                    })?;
            }
            Ok(plain)
        }
        #[cfg(not(feature = "compression"))]
        Some(encoding @ ("gzip" | "zstd")) => Err(format!(
            "the body is {encoding}: enable auditrelay-plugin-api's `compression` feature to let the suite read it"
        )),
        Some(other) => Err(format!("unknown Content-Encoding {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_that_does_not_parse_hides_nothing_after_it() {
        let torn = b"{\"id\":\"a\"}\n{\"id\":\"b\n{\"id\":\"a\"}\n";
        assert_eq!(
            ids_at(torn, "/id"),
            ["a", "a"],
            "the duplicate after the torn line"
        );
    }

    #[cfg(feature = "compression")]
    #[test]
    fn every_gzip_member_and_zstd_frame_is_read_and_trailing_bytes_refused() {
        use crate::compression::{Algorithm, Compression};
        for algorithm in [Algorithm::Gzip, Algorithm::Zstd] {
            let compression = Compression::new(algorithm, 1).unwrap();
            let encoding = compression.content_encoding();
            let mut body = compression.compress(b"{\"id\":\"a\"}\n".to_vec());
            body.extend(compression.compress(b"{\"id\":\"a\"}\n{\"id\":\"secret\"}\n".to_vec()));
            let plain = decode_body(encoding, &body).unwrap();
            assert_eq!(ids_at(&plain, "/id"), ["a", "a", "secret"], "{algorithm:?}");
            body.extend_from_slice(b"trailing garbage");
            assert!(decode_body(encoding, &body).is_err(), "{algorithm:?}");
        }
    }
}
