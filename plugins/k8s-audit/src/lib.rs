//! `k8s-audit`: Kubernetes audit events to envelopes.
//!
//! The API server's webhook audit backend POSTs an `EventList`
//! (`audit.k8s.io/v1`) of `Event`s; its log backend writes one `Event` per
//! line. Both are records this mapper reads: each event of the allowed
//! stages and verbs (mutations only, by default) becomes one envelope.
//!
//! ```toml
//! [ingest.webhook.k8s]
//! auth = "bearer"                  # the webhook kubeconfig's token
//! secret = "${K8S_AUDIT_TOKEN}"
//! [ingest.webhook.k8s.mapper]
//! plugin = "k8s-audit"
//! [ingest.webhook.k8s.mapper.config]
//! cluster = "prod-eu"
//! tenant_from_namespace = true
//! ```
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `stages` | `["ResponseComplete", "Panic"]` | Stages kept; the others are dropped (`RequestReceived` and `ResponseStarted` repeat what `ResponseComplete` says). |
//! | `verbs` | `["create", "update", "patch", "delete", "deletecollection"]` | Verbs kept (`["*"]`: all, reads and watches too). |
//! | `ignore_users` | `[]` | Usernames whose events are dropped; a trailing `*` matches any suffix (`"system:node:*"`). |
//! | `cluster` | unset | Written to `metadata["k8s.cluster"]`, and the tenant when `tenant_from_namespace` is off. |
//! | `tenant_from_namespace` | `false` | The event's namespace is its tenant (cluster-scoped objects: `cluster`, else none). |
//! | `keep_objects` | `false` | Keep `requestObject` and `responseObject` (at `Request`/`RequestResponse` level) in the payload; off, only their absence is lost, and no object body (a Secret's data) reaches the spool. |
//!
//! Field by field:
//!
//! | envelope | from the Kubernetes event |
//! |---|---|
//! | `id` | `auditID` for the `ResponseComplete` stage, `auditID:stage` for the others (one request, one id per stage) |
//! | `source` | the relay source's name |
//! | `type` | `k8s.<resource>[.<subresource>].<verb>` (`k8s.pods.create`, `k8s.deployments.scale.patch`); `k8s.nonresource.<verb>` without `objectRef` |
//! | `time` | `requestReceivedTimestamp` (else `stageTimestamp`) |
//! | `tenant` | see `tenant_from_namespace` |
//! | `actor.id`, `actor.groups` | `user.username`, `user.groups` (who authenticated, even when impersonating) |
//! | `actor.kind` | `service` for `system:serviceaccount:*`, `system` for other `system:*` users, `anonymous` for `system:anonymous`, else `user` |
//! | `actor.ip`, `actor.user_agent` | `sourceIPs[0]`, `userAgent` |
//! | `action.name` | `verb` |
//! | `action.outcome` | `denied` for 401 and 403, `failure` for other codes ≥ 400 and the `Panic` stage, `success` below 400, `unknown` without `responseStatus` |
//! | `action.status_code` | `responseStatus.code` |
//! | `action.severity` | `high` for `Panic`, `medium` when denied or when the object is a secret, a service account or an RBAC role or binding, else `info` |
//! | `target.kind`, `target.name` | `objectRef.resource`, `objectRef.name` |
//! | `target.id` | `<namespace>/<name>` (or `<name>`, or the `requestURI` path for non-resource requests) |
//! | `reason` | `annotations["authorization.k8s.io/reason"]`, else `responseStatus.message` on failure |
//! | `request_id` | `auditID` |
//! | `metadata` | `k8s.stage`, `k8s.level`, `k8s.request_uri`, `k8s.api_group`, `k8s.api_version`, `k8s.namespace`, `k8s.impersonated_user`, `k8s.decision` (`authorization.k8s.io/decision`), `k8s.cluster` |
//! | `payload` | `{"annotations": ...}`, and the objects with `keep_objects` |

use auditrelay_plugin_api::mapper::{Mapped, Mapper, Record};
use auditrelay_plugin_api::prelude::*;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The `config` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Stages kept.
    #[serde(default = "default_stages")]
    pub stages: Vec<String>,
    /// Verbs kept (`*`: all).
    #[serde(default = "default_verbs")]
    pub verbs: Vec<String>,
    /// Usernames dropped (trailing `*`: any suffix).
    #[serde(default)]
    pub ignore_users: Vec<String>,
    /// The cluster's name.
    #[serde(default)]
    pub cluster: Option<String>,
    /// The namespace is the tenant.
    #[serde(default)]
    pub tenant_from_namespace: bool,
    /// Keep request and response objects in the payload.
    #[serde(default)]
    pub keep_objects: bool,
}

fn default_stages() -> Vec<String> {
    vec!["ResponseComplete".into(), "Panic".into()]
}
fn default_verbs() -> Vec<String> {
    ["create", "update", "patch", "delete", "deletecollection"]
        .map(String::from)
        .to_vec()
}

const STAGES: &[&str] = &[
    "RequestReceived",
    "ResponseStarted",
    "ResponseComplete",
    "Panic",
];

/// The mapper; see the crate docs.
pub struct K8sAudit {
    config: Config,
}

impl Mapper for K8sAudit {
    type Config = Config;

    fn info() -> PluginInfo {
        PluginInfo::new(
            "k8s-audit",
            env!("CARGO_PKG_VERSION"),
            "Maps Kubernetes audit events (audit.k8s.io/v1 Event, EventList) to audit envelopes",
        )
        .key(ConfigKey::optional(
            "stages",
            "stages kept",
            "[\"ResponseComplete\", \"Panic\"]",
        ))
        .key(ConfigKey::optional(
            "verbs",
            "verbs kept ([\"*\"]: all)",
            "[\"create\", \"update\", \"patch\", \"delete\", \"deletecollection\"]",
        ))
        .key(ConfigKey::optional(
            "ignore_users",
            "usernames dropped (trailing * matches any suffix)",
            "[]",
        ))
        .key(ConfigKey::unset(
            "cluster",
            "the cluster's name, in metadata k8s.cluster",
        ))
        .key(ConfigKey::optional(
            "tenant_from_namespace",
            "the event's namespace is its tenant",
            "false",
        ))
        .key(ConfigKey::optional(
            "keep_objects",
            "keep requestObject and responseObject in the payload",
            "false",
        ))
    }

    fn init(config: Config, _ctx: &InitContext) -> Result<Self, InitError> {
        let mut problems = Vec::new();
        for stage in &config.stages {
            if !STAGES.contains(&stage.as_str()) {
                problems.push(format!(
                    "config.stages: {stage:?} is not a stage; use {}",
                    STAGES.join(", ")
                ));
            }
        }
        if config.stages.is_empty() {
            problems.push("config.stages: keeps nothing; list at least one stage".into());
        }
        if config.verbs.is_empty() {
            problems.push("config.verbs: keeps nothing; list verbs, or [\"*\"] for all".into());
        }
        if problems.is_empty() {
            Ok(K8sAudit { config })
        } else {
            Err(InitError::new(problems.join("; ")))
        }
    }

    fn map(&mut self, record: &Record<'_>) -> Mapped {
        let document: Value = match record.json() {
            Ok(document) => document,
            Err(reason) => return Mapped::refused(reason),
        };
        let items: Vec<&Value> = match document.get("kind").and_then(Value::as_str) {
            Some("EventList") => match document.get("items") {
                Some(Value::Array(items)) => items.iter().collect(),
                None | Some(Value::Null) => Vec::new(),
                Some(_) => return Mapped::refused("an EventList whose items is not an array"),
            },
            Some("Event") | None if document.get("auditID").is_some() => vec![&document],
            other => {
                return Mapped::refused(format!(
                    "not a Kubernetes audit Event or EventList (kind {other:?}); is the source sending audit.k8s.io/v1 events?"
                ));
            }
        };
        let mut events = Vec::new();
        for (at, item) in items.into_iter().enumerate() {
            match self.event(item, record.source) {
                Ok(Some(event)) => events.push(event),
                Ok(None) => {}
                Err(reason) => return Mapped::refused(format!("event {at}: {reason}")),
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

fn matches(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => value == pattern,
    }
}

impl K8sAudit {
    /// The envelope of one Kubernetes event; `None` when filtered out.
    fn event(&self, item: &Value, source: &str) -> Result<Option<Value>, String> {
        let audit_id = text(item, "/auditID").ok_or("it has no auditID")?;
        let stage = text(item, "/stage").ok_or("it has no stage")?;
        let verb = text(item, "/verb").ok_or("it has no verb")?;
        let username = text(item, "/user/username").unwrap_or("system:anonymous");
        let kept = self.config.stages.iter().any(|s| s == stage)
            && self.config.verbs.iter().any(|v| v == "*" || v == verb)
            && !self
                .config
                .ignore_users
                .iter()
                .any(|p| matches(p, username));
        if !kept {
            return Ok(None);
        }
        let time = text(item, "/requestReceivedTimestamp")
            .or_else(|| text(item, "/stageTimestamp"))
            .ok_or("it has neither requestReceivedTimestamp nor stageTimestamp")?;
        let resource = text(item, "/objectRef/resource");
        let namespace = text(item, "/objectRef/namespace");
        let name = text(item, "/objectRef/name");
        let event_type = match (resource, text(item, "/objectRef/subresource")) {
            (Some(resource), Some(sub)) => format!("k8s.{resource}.{sub}.{verb}"),
            (Some(resource), None) => format!("k8s.{resource}.{verb}"),
            (None, _) => format!("k8s.nonresource.{verb}"),
        };
        let code = item.pointer("/responseStatus/code").and_then(Value::as_u64);
        let outcome = match (stage, code) {
            ("Panic", _) => "failure",
            (_, Some(401 | 403)) => "denied",
            (_, Some(code)) if code >= 400 => "failure",
            (_, Some(_)) => "success",
            (_, None) => "unknown",
        };
        let kind = if username.starts_with("system:serviceaccount:") {
            "service"
        } else if username == "system:anonymous" {
            "anonymous"
        } else if username.starts_with("system:") {
            "system"
        } else {
            "user"
        };
        let mut actor = json!({"id": username, "kind": kind});
        if let Some(Value::Array(groups)) = item.pointer("/user/groups") {
            actor["groups"] =
                Value::Array(groups.iter().filter(|g| g.is_string()).cloned().collect());
        }
        if let Some(ip) = text(item, "/sourceIPs/0") {
            actor["ip"] = ip.into();
        }
        if let Some(agent) = text(item, "/userAgent") {
            actor["user_agent"] = agent.into();
        }
        // Denied requests and crashes deserve a look; changes to who may do
        // what (RBAC) and to secrets more than the rest.
        let sensitive = matches!(
            resource,
            Some(
                "secrets"
                    | "roles"
                    | "rolebindings"
                    | "clusterroles"
                    | "clusterrolebindings"
                    | "serviceaccounts"
            )
        );
        let severity = match outcome {
            "denied" => "medium",
            "failure" if stage == "Panic" => "high",
            _ if sensitive => "medium",
            _ => "info",
        };
        let mut action = json!({"name": verb, "outcome": outcome, "severity": severity});
        if let Some(code) = code {
            action["status_code"] = code.into();
        }
        let request_uri = text(item, "/requestURI");
        let target_id = match (namespace, name) {
            (Some(namespace), Some(name)) => Some(format!("{namespace}/{name}")),
            (None, Some(name)) => Some(name.to_owned()),
            (_, None) if resource.is_none() => {
                request_uri.map(|uri| uri.split('?').next().unwrap_or(uri).to_owned())
            }
            _ => None,
        };
        let id = if stage == "ResponseComplete" {
            audit_id.to_owned()
        } else {
            format!("{audit_id}:{stage}")
        };
        let mut envelope = json!({
            "id": id, "source": source, "type": event_type, "time": time,
            "actor": actor, "action": action, "request_id": audit_id,
        });
        let target_kind = resource.unwrap_or("nonresource");
        if let Some(target_id) = target_id {
            envelope["target"] = json!({"kind": target_kind, "id": target_id});
            if let Some(name) = name {
                envelope["target"]["name"] = name.into();
            }
        }
        let tenant = if self.config.tenant_from_namespace {
            namespace
                .map(str::to_owned)
                .or_else(|| self.config.cluster.clone())
        } else {
            self.config.cluster.clone()
        };
        if let Some(tenant) = tenant {
            envelope["tenant"] = tenant.into();
        }
        let annotation = |key: &str| {
            item.pointer("/annotations")
                .and_then(|a| a.get(key))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let reason = annotation("authorization.k8s.io/reason").or_else(|| {
            (outcome != "success")
                .then(|| text(item, "/responseStatus/message"))
                .flatten()
        });
        if let Some(reason) = reason {
            envelope["reason"] = cut(reason, 1000).into();
        }
        let mut metadata = Map::new();
        let mut meta = |key: &str, value: Option<&str>| {
            if let Some(value) = value {
                metadata.insert(format!("k8s.{key}"), cut(value, 1000).into());
            }
        };
        meta("stage", Some(stage));
        meta("level", text(item, "/level"));
        meta("request_uri", request_uri);
        meta("api_group", text(item, "/objectRef/apiGroup"));
        meta("api_version", text(item, "/objectRef/apiVersion"));
        meta("namespace", namespace);
        meta(
            "impersonated_user",
            text(item, "/impersonatedUser/username"),
        );
        meta("decision", annotation("authorization.k8s.io/decision"));
        meta("cluster", self.config.cluster.as_deref());
        envelope["metadata"] = Value::Object(metadata);
        let mut payload = Map::new();
        if let Some(annotations) = item.get("annotations").filter(|a| a.is_object()) {
            payload.insert("annotations".into(), annotations.clone());
        }
        if self.config.keep_objects {
            for key in ["requestObject", "responseObject"] {
                if let Some(object) = item.get(key) {
                    payload.insert(key.into(), object.clone());
                }
            }
        }
        if !payload.is_empty() {
            envelope["payload"] = Value::Object(payload);
        }
        Ok(Some(envelope))
    }
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

export_mapper!(K8sAudit);
