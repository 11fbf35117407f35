//! Step `secrets never leak`: every text an instance emits (log lines,
//! errors, reasons, metric names, stdout, files, URLs, headers, bodies) is
//! searched for the granted secrets; each kind of sighting is reported
//! once, with a count.

use base64::Engine as _;

use super::Run;
use crate::http::percent_decode;
use crate::plugin::Plugin;
use crate::testing::compliance::SECRETS;
use crate::testing::compliance::instance::Instance;
use crate::testing::compliance::sent::{Sent, collect_files};

/// Where a secret was seen: (step, secret, kind of place), the first
/// sighting and how many there were.
pub(crate) struct Leak {
    key: (&'static str, String, String),
    first: String,
    count: usize,
}

impl Leak {
    /// The failure `run` reports for this leak by `exporter`.
    pub(crate) fn failure(&self, exporter: &str) -> String {
        let Leak {
            key: (step, secret, _),
            first,
            count,
        } = self;
        let more = match count {
            1 => String::new(),
            n => format!(" (and {} more like it)", n - 1),
        };
        format!(
            "{exporter}: step `{SECRETS}` (seen in step `{step}`): the value of secret `{secret}` appears in {first}{more}. Keep secrets out of messages, logs and URLs; send them only in the headers declared with .secret_in_header"
        )
    }
}

impl<P: Plugin> Run<'_, P> {
    /// Searches `text` for granted secrets other than `allowed`. A leak is
    /// reported once per step, secret and kind of place, with a count.
    pub(super) fn scan(&mut self, step: &'static str, place: &str, text: &str, allowed: &[&str]) {
        self.texts_scanned += 1;
        for (name, value) in &self.suite.secrets {
            if allowed.contains(&name.as_str()) {
                continue;
            }
            let Some((at, len, form)) =
                disguises(value).into_iter().find_map(|(form, text_form)| {
                    text.find(text_form.as_str())
                        .map(|at| (at, text_form.len(), form))
                })
            else {
                continue;
            };
            let place = match form {
                "" => place.to_owned(),
                form => format!("{place} ({form})"),
            };
            let place = place.as_str();
            let key = (step, name.clone(), without_numbers(place));
            if let Some(leak) = self.leaks.iter_mut().find(|leak| leak.key == key) {
                leak.count += 1;
                continue;
            }
            let start = text.floor_char_boundary(at.saturating_sub(40));
            let end = text.ceil_char_boundary((at + len + 40).min(text.len()));
            self.leaks.push(Leak {
                key,
                first: format!("{place}: …{}…", &text[start..end]),
                count: 1,
            });
        }
    }

    /// Searches everything an instance emitted: logs, metric names,
    /// stdout, files, requests.
    pub(super) fn scan_instance(&mut self, step: &'static str, instance: &Instance<P>) {
        if self.suite.secrets.is_empty() {
            return;
        }
        let harness = &instance.harness;
        for (level, line) in harness.logs() {
            self.scan(
                step,
                &format!("a log line ({})", level.as_str()),
                &line,
                &[],
            );
        }
        let names: Vec<String> = {
            let host = &harness.host;
            let mut names: Vec<String> = host.counters.lock().unwrap().keys().cloned().collect();
            names.extend(host.gauges.lock().unwrap().keys().cloned());
            names
        };
        for name in names {
            self.scan(step, "a metric name", &name, &[]);
        }
        let stdout = harness.stdout();
        if !stdout.is_empty() {
            self.scan(step, "stdout", &String::from_utf8_lossy(&stdout), &[]);
        }
        if let Some(dir) = &instance.dir {
            let mut files = Vec::new();
            collect_files(&dir.0, &dir.0, &mut files);
            for (path, bytes) in files {
                let place = format!("the written file {}", path.display());
                self.scan(step, &place, &String::from_utf8_lossy(&bytes), &[]);
            }
        }
        for (n, request) in harness.requests().iter().enumerate() {
            self.scan(step, &format!("the URL of request #{n}"), &request.url, &[]);
            let decoded_url = percent_decode(&request.url);
            if decoded_url != request.url {
                self.scan(step, &format!("the URL of request #{n}"), &decoded_url, &[]);
            }
            for (header, value) in &request.headers {
                let allowed: Vec<&str> = self
                    .suite
                    .secret_headers
                    .iter()
                    .filter(|(_, h)| h.eq_ignore_ascii_case(header))
                    .map(|(name, _)| name.as_str())
                    .collect();
                let place = format!(
                    "header `{header}` of request #{n} (declare it with .secret_in_header if it belongs there)"
                );
                self.scan(step, &place, value, &allowed);
            }
            let place = format!("the body of request #{n}");
            self.scan(step, &place, &String::from_utf8_lossy(&request.body), &[]);
            if let Ok(sent) = Sent::decode(request)
                && sent.body != request.body
            {
                self.scan(step, &place, &String::from_utf8_lossy(&sent.body), &[]);
            }
        }
    }
}

/// `place` with request numbers taken out, to group sightings.
fn without_numbers(place: &str) -> String {
    place
        .split('#')
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                part.to_owned()
            } else {
                part.trim_start_matches(|c: char| c.is_ascii_digit())
                    .to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("#n")
}

/// The forms a secret may be sent or logged in: as it is, base64
/// (standard and URL-safe, at each of the three alignments it can have
/// inside a longer encoded text, such as `user:secret` in a Basic
/// `Authorization`), and hex. Encoded forms shorter than 8 characters are
/// left out (they would match by chance).
fn disguises(secret: &str) -> Vec<(&'static str, String)> {
    let mut forms = vec![("", secret.to_owned())];
    let bytes = secret.as_bytes();
    for skip in 0..3 {
        let mut shifted = vec![0u8; skip];
        shifted.extend_from_slice(bytes);
        let encoded = base64::engine::general_purpose::STANDARD.encode(&shifted);
        // Only the characters that depend on the secret's bits alone.
        let first = (skip * 8).div_ceil(6);
        let last = ((skip + bytes.len()) * 8) / 6;
        if last > first + 8 {
            let core = &encoded[first..last];
            forms.push(("base64", core.to_owned()));
            forms.push(("base64url", core.replace('+', "-").replace('/', "_")));
        }
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    forms.push(("hex", hex.to_uppercase()));
    forms.push(("hex", hex));
    forms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_secrets_are_recognised_at_any_alignment() {
        let secret = "dd-secret-value-1234";
        let forms = disguises(secret);
        for prefix in ["", "u:", "us:", "user:"] {
            let basic =
                base64::engine::general_purpose::STANDARD.encode(format!("{prefix}{secret}"));
            assert!(
                forms
                    .iter()
                    .any(|(form, f)| form.starts_with("base64") && basic.contains(f.as_str())),
                "{prefix:?}: {basic}"
            );
        }
        let hex: String = secret.bytes().map(|b| format!("{b:02X}")).collect();
        assert!(forms.iter().any(|(_, f)| hex.contains(f.as_str())));
    }

    #[test]
    fn urls_are_searched_decoded_too() {
        assert_eq!(percent_decode("/a%20b%2Fc%zz"), "/a b/c%zz");
    }
}
