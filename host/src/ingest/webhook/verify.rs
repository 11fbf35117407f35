//! Whether a webhook request comes from its sender: a bearer token, the
//! GRC platform's v2 HMAC over `<timestamp>:<hex SHA-256 of the body>`, or
//! GitHub's `X-Hub-Signature-256` over the raw body. Every comparison is
//! constant-time; every refusal names the header and the fix, and never
//! quotes a credential header's value. [`Verifier::precheck`] runs what the
//! headers alone can tell before a body is read.

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::config::{Secret, WebhookAuth, WebhookSettings};
use crate::ingest::http::{bearer, constant_time_eq};

/// The header GitHub, Stalwart and others sign the body in.
pub const HUB_SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// Why a request was refused: the status and the reason for the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// `401` (no or wrong credentials, stale) or `409` (replayed).
    pub status: StatusCode,
    /// Names the header and the fix; never holds the secret.
    pub reason: String,
}

impl Rejection {
    fn unauthorized(reason: String) -> Self {
        Rejection {
            status: StatusCode::UNAUTHORIZED,
            reason,
        }
    }
}

/// What a verified request proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// A bearer token or a body signature without a time: may be resent.
    Credential,
    /// A v2 HMAC signature made at `timestamp` (Unix seconds): accepted
    /// once within the skew window.
    Signed {
        /// The signature's bytes (the replay cache's key).
        signature: [u8; 32],
        /// When the sender signed.
        timestamp: i64,
    },
}

/// Checks requests for one webhook source.
pub struct Verifier {
    auth: WebhookAuth,
    /// The HMAC key, or (bearer) the token.
    secret: Secret,
    signature_header: String,
    timestamp_header: String,
    max_skew: Duration,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// The verifier `settings` describe.
    pub fn new(settings: &WebhookSettings) -> Self {
        Verifier {
            auth: settings.auth,
            secret: settings.secret.clone(),
            signature_header: settings.signature_header.clone(),
            timestamp_header: settings.timestamp_header.clone(),
            max_skew: settings.max_skew,
        }
    }

    /// How long a v2 signature stays usable (and remembered).
    pub fn window(&self) -> Duration {
        self.max_skew
    }

    /// What can be checked before the body is read: the credential headers
    /// are there and well formed, a bearer token is right, a v2 signing
    /// time is within the window. A request refused here costs no body
    /// memory, so a sender without credentials cannot hold any.
    pub fn precheck(&self, headers: &HeaderMap, now: i64) -> Result<(), Rejection> {
        match self.auth {
            WebhookAuth::Bearer => self.bearer(headers).map(|_| ()),
            WebhookAuth::HubSignature => self.hub_signature_header(headers).map(|_| ()),
            WebhookAuth::Hmac => self.v2_headers(headers, now).map(|_| ()),
        }
    }

    /// Checks `headers` and `body` at `now` (Unix seconds).
    pub fn verify(&self, headers: &HeaderMap, body: &[u8], now: i64) -> Result<Proof, Rejection> {
        match self.auth {
            WebhookAuth::Bearer => self.bearer(headers),
            WebhookAuth::HubSignature => self.hub_signature(headers, body),
            WebhookAuth::Hmac => self.hmac_v2(headers, body, now),
        }
    }

    fn bearer(&self, headers: &HeaderMap) -> Result<Proof, Rejection> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(Rejection::unauthorized(
                "authorization: missing; send Authorization: Bearer <the source's secret>".into(),
            ));
        };
        let presented = bearer(value.as_bytes()).unwrap_or_default();
        let digest = |bytes: &[u8]| -> [u8; 32] { Sha256::digest(bytes).into() };
        if constant_time_eq(&digest(presented), &digest(self.secret.expose().as_bytes())) {
            Ok(Proof::Credential)
        } else {
            Err(Rejection::unauthorized(
                "authorization: not the bearer token this source expects; send Authorization: Bearer <the source's secret>".into(),
            ))
        }
    }

    /// The hub signature's bytes, from the headers alone.
    fn hub_signature_header(&self, headers: &HeaderMap) -> Result<Vec<u8>, Rejection> {
        let name = HUB_SIGNATURE_HEADER;
        let value = text_header(headers, name)?.ok_or_else(|| {
            Rejection::unauthorized(format!(
                "{name}: missing; sign the raw body with HMAC-SHA256 and send {name}: sha256=<hex>"
            ))
        })?;
        let hex = value.strip_prefix("sha256=").ok_or_else(|| {
            Rejection::unauthorized(format!(
                "{name}: must start with \"sha256=\", then the hex HMAC-SHA256 of the raw body"
            ))
        })?;
        signature_bytes(name, hex)
    }

    fn hub_signature(&self, headers: &HeaderMap, body: &[u8]) -> Result<Proof, Rejection> {
        let name = HUB_SIGNATURE_HEADER;
        let signature = self.hub_signature_header(headers)?;
        let mut mac = self.mac();
        mac.update(body);
        mac.verify_slice(&signature).map_err(|_| {
            Rejection::unauthorized(format!(
                "{name}: does not match the body (a wrong secret, or the body changed after signing)"
            ))
        })?;
        Ok(Proof::Credential)
    }

    /// The v2 signature, its timestamp as sent and as a time, from the
    /// headers alone; a signing time outside the window is refused here.
    fn v2_headers<'h>(
        &self,
        headers: &'h HeaderMap,
        now: i64,
    ) -> Result<(Vec<u8>, &'h str, i64), Rejection> {
        let (sig_name, ts_name) = (&self.signature_header, &self.timestamp_header);
        let signature = text_header(headers, sig_name)?;
        let timestamp = text_header(headers, ts_name)?;
        let (signature, timestamp) = match (signature, timestamp) {
            (Some(signature), Some(timestamp)) => (signature, timestamp),
            (signature, timestamp) => {
                let missing: Vec<&str> = [
                    (signature.is_none(), sig_name),
                    (timestamp.is_none(), ts_name),
                ]
                .into_iter()
                .filter_map(|(missing, name)| missing.then_some(name.as_str()))
                .collect();
                return Err(Rejection::unauthorized(format!(
                    "{}: missing; send {ts_name}: <Unix seconds> and {sig_name}: <hex HMAC-SHA256 of \"<timestamp>:<hex SHA-256 of the body>\">",
                    missing.join(" and ")
                )));
            }
        };
        let signed_at = signing_time(ts_name, timestamp)?;
        let signature = signature_bytes(
            sig_name,
            signature.strip_prefix("sha256=").unwrap_or(signature),
        )?;
        let skew = now.saturating_sub(signed_at);
        let max = i64::try_from(self.max_skew.as_secs()).unwrap_or(i64::MAX);
        if skew.abs() > max {
            let when = if skew > 0 {
                "ago"
            } else {
                "ahead of the relay's clock"
            };
            return Err(Rejection::unauthorized(format!(
                "{ts_name}: signed {}s {when}, more than max_skew ({max}s) allows; sign each request when sending it (and check the sender's clock)",
                skew.unsigned_abs()
            )));
        }
        Ok((signature, timestamp.trim(), signed_at))
    }

    fn hmac_v2(&self, headers: &HeaderMap, body: &[u8], now: i64) -> Result<Proof, Rejection> {
        let (signature, timestamp, signed_at) = self.v2_headers(headers, now)?;
        let mut mac = self.mac();
        mac.update(timestamp.as_bytes());
        mac.update(b":");
        mac.update(hex::encode(Sha256::digest(body)).as_bytes());
        mac.verify_slice(&signature).map_err(|_| {
            Rejection::unauthorized(format!(
                "{}: does not match the body and {} (a wrong secret, or the body or the timestamp changed after signing)",
                self.signature_header, self.timestamp_header
            ))
        })?;
        let mut bytes = [0; 32];
        bytes.copy_from_slice(&signature);
        Ok(Proof::Signed {
            signature: bytes,
            timestamp: signed_at,
        })
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(self.secret.expose().as_bytes())
            .expect("HMAC takes a key of any length")
    }
}

/// The value of header `name` as text; more than one value is refused (a
/// proxy may have added one).
fn text_header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, Rejection> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Rejection::unauthorized(format!(
            "{name}: sent more than once; send it once"
        )));
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| Rejection::unauthorized(format!("{name}: is not visible ASCII")))
}

/// 32 signature bytes from 64 hex digits.
/// A credential header's value is never quoted back (a sender may have put
/// the secret itself there): only its length.
fn signature_bytes(name: &str, hex: &str) -> Result<Vec<u8>, Rejection> {
    match hex::decode(hex.trim()) {
        Ok(bytes) if bytes.len() == 32 => Ok(bytes),
        _ => Err(Rejection::unauthorized(format!(
            "{name}: the {} bytes sent are not an HMAC-SHA256 in hex (64 hex digits)",
            hex.len()
        ))),
    }
}

/// The signing time in `value`: Unix seconds, digits only.
fn signing_time(name: &str, value: &str) -> Result<i64, Rejection> {
    let digits = value.trim();
    match digits.parse::<i64>() {
        Ok(at) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => Ok(at),
        _ => Err(Rejection::unauthorized(format!(
            "{name}: the {} bytes sent are not a time in Unix seconds (digits only)",
            value.len()
        ))),
    }
}

#[cfg(test)]
mod tests;
