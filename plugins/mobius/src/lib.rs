//! `mobius`: mobius-auditlog-py's audit events to envelopes.
//!
//! mobius-auditlog-py (PyPI, 1.0.0) builds a CloudEvents-style
//! `AuditLogEvent` — a flat envelope (`id`, `specversion`, `timestamp`,
//! `tenantid`, `traceid`, `transactionid`) and sections (`subject`,
//! `kubernetes`, `objectref`, `action`, `network`, `eventdata`,
//! `security`) — and its publisher hands `event.to_dict()` to a sender.
//! A sender that POSTs that dict as JSON to a webhook source of the relay
//! needs nothing else: this mapper reads it (one event, or an array of
//! them), **checks its `security.hash`** (SHA-256 of the event's canonical
//! JSON without `security`, as the package computes it) and makes one
//! envelope of it.
//!
//! ```toml
//! [ingest.webhook.billing]
//! auth = "bearer"
//! secret = "${BILLING_AUDIT_TOKEN}"
//! [ingest.webhook.billing.mapper]
//! plugin = "mobius"
//! [ingest.webhook.billing.mapper.config]
//! require_hash = true
//! ```
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `require_hash` | `false` | Refuse an event without `security.hash` (the publisher seals every event it publishes; one without a hash was built or sent some other way). An event *with* a hash that does not match is refused whatever this says. |
//!
//! Field by field:
//!
//! | envelope | from the mobius event |
//! |---|---|
//! | `id` | `id` (required) |
//! | `source` | the relay source's name |
//! | `type` | `action.name` when it is a name (`group.member_added`: no `/`), lower-cased; for the middleware's events, whose `action.name` is the route, `<objectref.resource>.<verb>` with the verb from `action.method` (`POST` create, `PUT`/`PATCH` update, `DELETE` delete, `GET`/`HEAD` read, others lower-cased): `groups.create` |
//! | `time` | `timestamp` (required; Python's `isoformat()` with an offset is RFC 3339) |
//! | `tenant` | `tenantid` |
//! | `trace_id` | `traceid` |
//! | `request_id` | `transactionid` |
//! | `actor.id` | `subject.userid`; none: `anonymous` |
//! | `actor.kind` | `subject.type`, in any case: `user`; `service`, `serviceaccount`, `application`, `client` → `service`; `system`; `anonymous`; none → `user` with a user id, `anonymous` without; anything else → `user`, the value kept in `metadata["mobius.subject_type"]` |
//! | `actor.groups` | `subject.groups` |
//! | `actor.ip`, `actor.user_agent` | `network.sourceip`, `network.useragent` |
//! | `action.name` | `action.name` |
//! | `action.outcome` | `action.status`: `SUCCESS` → `success`, `FAILURE`/`ERROR` → `failure`, `DENIED`/`FORBIDDEN`/`UNAUTHORIZED` → `denied`, else `unknown` |
//! | `action.severity` | `action.severity`: `DEBUG`/`INFO` → `info`, `LOW` → `low`, `WARNING`/`WARN`/`MEDIUM` → `medium`, `ERROR`/`HIGH` → `high`, `CRITICAL`/`FATAL` → `critical` |
//! | `target.kind`, `target.id` | `objectref.resource`; `objectref.resourceid`, else the route (`action.name` when it is one), else the resource |
//! | `metadata` | `mobius.specversion`, `mobius.method` (`action.method`), `mobius.apiversion` (`objectref.apiversion`), `mobius.compliance_category`, `mobius.sensitive` (`eventdata.metadata.issensitive`), `mobius.hash` (`security.hash`, checked), `mobius.signed` (`true` when `security.signature` is there; the HMAC key is the publisher's, not checked here), `k8s.namespace`, `k8s.pod`, `k8s.container`, `k8s.node` |
//! | `payload` | `{"request": eventdata.requestpayload, "response": eventdata.responsepayload}`, each when present |
//!
//! The event is read as Python reads JSON (integers of any size, `NaN` and
//! `Infinity`, lone surrogates, duplicate keys: the last wins) so that the
//! hash is checked over exactly what was sealed. What JSON cannot carry is
//! then written as it can: `NaN`/`Infinity` as those strings (noted in
//! `metadata["mobius.non_finite"]`), integers past 64 bits as floats, lone
//! surrogates as U+FFFD. Members with empty values are dropped before
//! mapping, as before sealing: one added afterwards is not stored.

use auditrelay_plugin_api::mapper::{Mapped, Mapper, Record};
use auditrelay_plugin_api::prelude::*;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

mod python;

use python::Py;

/// The `config` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Refuse events without `security.hash`.
    #[serde(default)]
    pub require_hash: bool,
}

/// The mapper; see the crate docs.
pub struct Mobius {
    config: Config,
}

impl Mapper for Mobius {
    type Config = Config;

    fn info() -> PluginInfo {
        PluginInfo::new(
            "mobius",
            env!("CARGO_PKG_VERSION"),
            "Maps mobius-auditlog-py audit events (AuditLogEvent.to_dict()) to audit envelopes, checking their integrity hash",
        )
        .key(ConfigKey::optional(
            "require_hash",
            "refuse events without security.hash",
            "false",
        ))
    }

    fn init(config: Config, _ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Mobius { config })
    }

    fn map(&mut self, record: &Record<'_>) -> Mapped {
        // Read as Python reads it: the seal covers Python's text of it.
        let document = match python::loads(record.data) {
            Ok(document) => document,
            Err(reason) => return Mapped::refused(reason),
        };
        let (items, many) = match document {
            Py::Array(items) => (items, true),
            other => (vec![other], false),
        };
        let mut events = Vec::with_capacity(items.len());
        for (at, item) in items.iter().enumerate() {
            match self.event(item, record.source) {
                Ok(event) => events.push(event),
                Err(reason) if many => return Mapped::refused(format!("event {at}: {reason}")),
                Err(reason) => return Mapped::refused(reason),
            }
        }
        Mapped::events(events)
    }
}

fn text<'v>(value: &'v Value, pointer: &str) -> Option<&'v str> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

impl Mobius {
    /// The envelope of one mobius event.
    fn event(&self, event: &Py, source: &str) -> Result<Value, String> {
        if !matches!(event, Py::Object(_)) {
            return Err(
                "not a mobius audit event (an object with id, timestamp, subject, action, ...)"
                    .into(),
            );
        }
        let hash = check_hash(event, self.config.require_hash)?;
        // Mapped from what the seal covers: members added empty after
        // sealing (which the hash, over the pruned event, cannot see) are
        // not stored.
        let mut non_finite = false;
        let sealed = event.pruned().to_value(&mut non_finite);
        let item = &sealed;
        let id = text(item, "/id").ok_or("it has no id")?;
        let time = text(item, "/timestamp").ok_or("it has no timestamp")?;

        let action_name = text(item, "/action/name");
        let method = text(item, "/action/method");
        let resource = text(item, "/objectref/resource");
        let route = action_name.filter(|name| name.contains('/'));
        let event_type = match (action_name, route) {
            (Some(name), None) => name.to_lowercase(),
            _ => {
                let verb = match method.map(str::to_ascii_uppercase).as_deref() {
                    Some("POST") => "create".to_owned(),
                    Some("PUT" | "PATCH") => "update".to_owned(),
                    Some("DELETE") => "delete".to_owned(),
                    Some("GET" | "HEAD") => "read".to_owned(),
                    Some(other) => other.to_lowercase(),
                    None => "event".to_owned(),
                };
                format!("{}.{verb}", label(resource.unwrap_or("http")))
            }
        };

        let userid = text(item, "/subject/userid");
        let subject_type = text(item, "/subject/type");
        let mut metadata = Map::new();
        let kind = match subject_type.map(str::to_ascii_lowercase).as_deref() {
            Some("user") => "user",
            Some("service" | "serviceaccount" | "application" | "client") => "service",
            Some("system") => "system",
            Some("anonymous") => "anonymous",
            None if userid.is_none() => "anonymous",
            None => "user",
            Some(_) => {
                metadata.insert(
                    "mobius.subject_type".into(),
                    subject_type.unwrap_or_default().into(),
                );
                "user"
            }
        };
        let mut actor = json!({"id": userid.unwrap_or("anonymous"), "kind": kind});
        if let Some(Value::Array(groups)) = item.pointer("/subject/groups") {
            actor["groups"] =
                Value::Array(groups.iter().filter(|g| g.is_string()).cloned().collect());
        }
        if let Some(ip) = text(item, "/network/sourceip") {
            actor["ip"] = ip.into();
        }
        if let Some(agent) = text(item, "/network/useragent") {
            actor["user_agent"] = agent.into();
        }

        let status = text(item, "/action/status").map(str::to_ascii_uppercase);
        let outcome = match status.as_deref() {
            Some("SUCCESS" | "SUCCEEDED" | "OK") => "success",
            Some("FAILURE" | "FAILED" | "ERROR") => "failure",
            Some("DENIED" | "FORBIDDEN" | "UNAUTHORIZED") => "denied",
            _ => "unknown",
        };
        let severity = match text(item, "/action/severity")
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            Some("LOW") => "low",
            Some("WARNING" | "WARN" | "MEDIUM") => "medium",
            Some("ERROR" | "HIGH") => "high",
            Some("CRITICAL" | "FATAL") => "critical",
            _ => "info",
        };
        let mut action = json!({"outcome": outcome, "severity": severity});
        if let Some(name) = action_name {
            action["name"] = name.into();
        }

        let mut envelope = json!({
            "id": id, "source": source, "type": event_type, "time": time,
            "actor": actor, "action": action,
        });
        if let Some(tenant) = text(item, "/tenantid") {
            envelope["tenant"] = tenant.into();
        }
        if let Some(trace) = text(item, "/traceid") {
            envelope["trace_id"] = trace.into();
        }
        if let Some(transaction) = text(item, "/transactionid") {
            envelope["request_id"] = transaction.into();
        }
        if let Some(resource) = resource {
            let target_id = text(item, "/objectref/resourceid")
                .or(route)
                .unwrap_or(resource);
            envelope["target"] = json!({"kind": resource, "id": target_id});
        }

        let mut meta = |key: &str, value: Option<&str>| {
            if let Some(value) = value {
                metadata.insert(key.into(), value.into());
            }
        };
        meta("mobius.specversion", text(item, "/specversion"));
        meta("mobius.method", method);
        meta("mobius.apiversion", text(item, "/objectref/apiversion"));
        meta(
            "mobius.compliance_category",
            text(item, "/eventdata/metadata/compliancecategory"),
        );
        meta("mobius.hash", hash.as_deref());
        meta(
            "mobius.signed",
            hash.as_ref()
                .and(text(item, "/security/signature"))
                .map(|_| "true"),
        );
        meta(
            "mobius.non_finite",
            non_finite.then_some("NaN or Infinity written as strings"),
        );
        meta("k8s.namespace", text(item, "/kubernetes/namespacename"));
        meta("k8s.pod", text(item, "/kubernetes/podname"));
        meta("k8s.container", text(item, "/kubernetes/containername"));
        meta("k8s.node", text(item, "/kubernetes/nodename"));
        if let Some(sensitive) = item
            .pointer("/eventdata/metadata/issensitive")
            .and_then(Value::as_bool)
        {
            metadata.insert("mobius.sensitive".into(), sensitive.to_string().into());
        }
        envelope["metadata"] = Value::Object(metadata);

        let mut payload = Map::new();
        for (key, pointer) in [
            ("request", "/eventdata/requestpayload"),
            ("response", "/eventdata/responsepayload"),
        ] {
            if let Some(value) = item.pointer(pointer).filter(|v| !is_empty(v)) {
                payload.insert(key.into(), value.clone());
            }
        }
        if !payload.is_empty() {
            envelope["payload"] = Value::Object(payload);
        }
        Ok(envelope)
    }
}

/// `text` as one part of a dotted type: lower-case letters, digits, `_`
/// and `-`; anything else becomes `_`.
fn label(text: &str) -> String {
    text.chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// As the package prunes: `null`, `""`, `[]` and `{}` are absent.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Checks `security.hash` against the event's content, rebuilt as Python
/// wrote it; the hash when there is one (and it matches).
fn check_hash(item: &Py, required: bool) -> Result<Option<String>, String> {
    let claimed = match item.get("security") {
        None | Some(Py::Null) => None,
        Some(security @ Py::Object(_)) => match security.get("hash") {
            None | Some(Py::Null) => None,
            Some(Py::Str(hash))
                if hash.len() == 64
                    && hash
                        .iter()
                        .all(|&u| u < 0x80 && (u as u8).is_ascii_hexdigit()) =>
            {
                Some(String::from_utf16_lossy(hash))
            }
            Some(_) => {
                return Err("its security.hash is not a SHA-256 (64 hex digits): it is not what the publisher seals with".into());
            }
        },
        Some(_) => return Err("its security is not an object of hash and signature".into()),
    };
    let Some(claimed) = claimed else {
        if required {
            return Err("it has no security.hash (require_hash = true): was it published by the mobius publisher?".into());
        }
        return Ok(None);
    };
    let canonical = item.without("security").pruned().dumps();
    let actual = hex::encode(Sha256::digest(canonical.as_bytes()));
    if !actual.eq_ignore_ascii_case(&claimed) {
        return Err(format!(
            "its security.hash ({claimed}) is not the SHA-256 of its content ({actual}): it was changed after it was sealed"
        ));
    }
    Ok(Some(actual))
}

export_mapper!(Mobius);
