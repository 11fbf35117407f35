//! auditrelay exporter plugin: S3 and S3-compatible stores.
//!
//! Each batch becomes one object per key prefix: NDJSON, one canonical
//! envelope per line, gzip by default, written with PutObject and AWS
//! Signature V4. The object's name comes from its first event (time and
//! id), so a retried batch overwrites its own objects instead of adding
//! copies. Every key is in the plugin's README.

pub mod config;
pub mod key;
pub mod response;
pub mod sigv4;

use std::collections::HashMap;

use auditrelay_plugin_api::http::Request;
use auditrelay_plugin_api::prelude::*;
use base64::Engine as _;
use md5::{Digest, Md5};

use config::S3Config;
use key::KeyTemplate;
use sigv4::{Credentials, PathStyle, Scope, SigningRequest};

/// The exporter; see the crate docs.
pub struct S3Exporter {
    config: S3Config,
    template: KeyTemplate,
    credentials: Credentials,
    /// `https` or `http`.
    scheme: String,
    /// The authority requests go to (and that is signed as `host`).
    authority: String,
}

/// One object to write: a key and the positions of its events.
struct Object {
    prefix: String,
    events: Vec<usize>,
}

impl Plugin for S3Exporter {
    type Config = S3Config;

    fn info() -> PluginInfo {
        PluginInfo::new(
            "s3",
            env!("CARGO_PKG_VERSION"),
            "Writes batches as NDJSON objects to S3 or an S3-compatible store (SigV4)",
        )
        .key(ConfigKey::required(
            "bucket",
            "bucket name alone (no `s3://`, no path)",
        ))
        .key(ConfigKey::optional(
            "region",
            "the bucket's region; part of every signature",
            "\"us-east-1\"",
        ))
        .key(ConfigKey::unset(
            "endpoint",
            "`scheme://host[:port]` of an S3-compatible store; unset: `https://s3.<region>.amazonaws.com`",
        ))
        .key(ConfigKey::optional(
            "force_path_style",
            "`endpoint/bucket/key` instead of `bucket.endpoint/key`; most S3-compatible stores need `true`",
            "false",
        ))
        .key(ConfigKey::optional(
            "key_prefix",
            "strftime fields (UTC, from each event's `time`) and `{tenant}`, `{source}`, `{type}` (events without a tenant get `_none`); characters other than `A-Z a-z 0-9 . _ - =` in field values become `_`",
            "\"audit/%Y/%m/%d/\"",
        ))
        .key(ConfigKey::optional(
            "compression",
            "`\"gzip\"` (level 1), `\"zstd\"`, `\"none\"`, or `{ algorithm = \"gzip\", level = 6 }`",
            "\"gzip\"",
        ))
        .key(ConfigKey::unset(
            "access_key_id",
            "the access key id, if you prefer it in plain config; unset: the `aws_access_key_id` secret",
        ))
        .key(ConfigKey::unset(
            "storage_class",
            "`x-amz-storage-class`, e.g. `\"STANDARD_IA\"`, `\"GLACIER_IR\"`; unset: the bucket's default",
        ))
        .key(ConfigKey::optional("timeout", "limit for each PUT's response", "\"60s\""))
    }

    fn init(config: S3Config, _ctx: &InitContext) -> Result<Self, InitError> {
        if config.bucket.is_empty() || config.bucket.contains('/') {
            return Err(InitError::new(format!(
                "bucket {:?} is not a bucket name: set `bucket` to the name alone, without s3:// or a path",
                config.bucket
            )));
        }
        let template = KeyTemplate::parse(&config.key_prefix).map_err(InitError::new)?;
        let access_key_id = match &config.access_key_id {
            Some(id) => id.clone(),
            None => settings::required_secret("aws_access_key_id", "the S3 access key id")?,
        };
        let credentials = Credentials {
            access_key_id,
            secret_access_key: settings::required_secret(
                "aws_secret_access_key",
                "the S3 secret access key",
            )?,
            session_token: host::secret("aws_session_token").filter(|t| !t.is_empty()),
        };
        let endpoint = config
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", config.region));
        let (scheme, authority) = split_endpoint(&endpoint)?;
        let authority = if config.force_path_style {
            authority
        } else {
            format!("{}.{authority}", config.bucket)
        };
        Ok(S3Exporter {
            config,
            template,
            credentials,
            scheme,
            authority,
        })
    }

    fn deliver(&mut self, events: &[Event<'_>]) -> Result<Delivery, DeliverError> {
        // Objects go out in order; a failure retries the batch, and the
        // objects already written are then overwritten with the same bytes.
        for object in self.objects(events) {
            let first = &events[object.events[0]];
            let key = format!(
                "{}{}",
                object.prefix,
                key::file_name(first, self.config.compression.extension())
            );
            let mut body = Vec::with_capacity(
                object
                    .events
                    .iter()
                    .map(|&i| events[i].envelope.len() + 1)
                    .sum(),
            );
            for &i in &object.events {
                body.extend_from_slice(events[i].envelope);
                body.push(b'\n');
            }
            let body = self.config.compression.compress(body);
            self.put(&key, body)?;
            host::counter_add("s3_objects_written", 1);
        }
        Ok(Delivery::Accepted)
    }
}

impl S3Exporter {
    /// Groups the batch by rendered key prefix, in order of first appearance.
    fn objects(&self, events: &[Event<'_>]) -> Vec<Object> {
        let mut objects: Vec<Object> = Vec::new();
        let mut by_partition = HashMap::new();
        for (i, event) in events.iter().enumerate() {
            let partition = self.template.partition(event);
            let slot = *by_partition.entry(partition).or_insert_with(|| {
                let prefix = self.template.render(&partition);
                match objects.iter().position(|o| o.prefix == prefix) {
                    Some(existing) => existing,
                    None => {
                        objects.push(Object {
                            prefix,
                            events: Vec::new(),
                        });
                        objects.len() - 1
                    }
                }
            });
            objects[slot].events.push(i);
        }
        objects
    }

    /// PutObject with Content-MD5 (Object Lock buckets require it) and a
    /// signed payload hash.
    fn put(&self, key: &str, body: Vec<u8>) -> Result<(), DeliverError> {
        let path = if self.config.force_path_style {
            format!("/{}/{key}", self.config.bucket)
        } else {
            format!("/{key}")
        };
        let amz_date = sigv4::amz_date(jiff::Timestamp::now());
        let payload_sha256 = sigv4::sha256_hex(&body);
        let content_md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(&body));
        let mut headers = vec![
            ("content-md5".to_owned(), content_md5),
            ("content-type".to_owned(), "application/x-ndjson".to_owned()),
            ("x-amz-content-sha256".to_owned(), payload_sha256.clone()),
            ("x-amz-date".to_owned(), amz_date.clone()),
        ];
        if let Some(encoding) = self.config.compression.content_encoding() {
            headers.push(("content-encoding".to_owned(), encoding.to_owned()));
        }
        if let Some(token) = &self.credentials.session_token {
            headers.push(("x-amz-security-token".to_owned(), token.clone()));
        }
        if let Some(class) = &self.config.storage_class {
            headers.push(("x-amz-storage-class".to_owned(), class.clone()));
        }
        // `host` is signed but not sent: wasi:http derives it from the URL.
        let mut signed = headers.clone();
        signed.push(("host".to_owned(), self.authority.clone()));
        let signature = sigv4::sign(
            &SigningRequest {
                method: "PUT",
                path: &path,
                query: "",
                headers: &signed,
                payload_sha256: &payload_sha256,
            },
            &Scope {
                region: &self.config.region,
                service: "s3",
                amz_date: &amz_date,
            },
            &self.credentials,
            PathStyle::S3,
        );
        let url = format!(
            "{}://{}{}",
            self.scheme,
            self.authority,
            sigv4::uri_encode(&path, true)
        );
        let mut request = Request::put(url)
            .header("authorization", signature.authorization)
            .body(body)
            .timeout(self.config.timeout);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send()?;
        if response.is_success() {
            Ok(())
        } else {
            Err(response::classify(&response, &self.config.bucket, key))
        }
    }
}

/// Splits `https://host[:port]` into scheme and authority.
fn split_endpoint(endpoint: &str) -> Result<(String, String), InitError> {
    let (scheme, rest) = endpoint.split_once("://").ok_or_else(|| {
        InitError::new(format!(
            "endpoint {endpoint:?} must start with https:// (or http:// for a local store)"
        ))
    })?;
    let authority = rest.trim_end_matches('/');
    if !matches!(scheme, "http" | "https") || authority.is_empty() || authority.contains('/') {
        return Err(InitError::new(format!(
            "endpoint {endpoint:?} must be scheme://host[:port] with no path"
        )));
    }
    Ok((scheme.to_owned(), authority.to_owned()))
}

export_plugin!(S3Exporter);
