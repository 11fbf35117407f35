//! Which events a plugin instance receives (`[plugins.<name>.filter]`).

use auditrelay_plugin_api::Event;

use crate::config::FilterSettings;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    fn parse(text: &str) -> Self {
        match text.strip_suffix('*') {
            Some(prefix) => Pattern::Prefix(prefix.to_owned()),
            None => Pattern::Exact(text.to_owned()),
        }
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            Pattern::Exact(exact) => value == exact,
            Pattern::Prefix(prefix) => value.starts_with(prefix.as_str()),
        }
    }
}

/// An event passes if it matches every non-empty list: its type one of
/// `types`, its tenant one of `tenants` (an event without a tenant matches
/// only `""`), its source one of `sources`. A trailing `*` matches any
/// suffix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    types: Vec<Pattern>,
    tenants: Vec<Pattern>,
    sources: Vec<Pattern>,
}

impl EventFilter {
    /// The filter the settings describe.
    pub fn new(settings: &FilterSettings) -> Self {
        EventFilter {
            types: settings.types.iter().map(|t| Pattern::parse(t)).collect(),
            tenants: settings.tenants.iter().map(|t| Pattern::parse(t)).collect(),
            sources: settings.sources.iter().map(|t| Pattern::parse(t)).collect(),
        }
    }

    /// Whether everything passes.
    pub fn is_open(&self) -> bool {
        self.types.is_empty() && self.tenants.is_empty() && self.sources.is_empty()
    }

    /// Whether `event` passes.
    pub fn matches(&self, event: &Event<'_>) -> bool {
        let type_ok =
            self.types.is_empty() || self.types.iter().any(|p| p.matches(event.event_type));
        let tenant = event.tenant.unwrap_or("");
        let tenant_ok = self.tenants.is_empty() || self.tenants.iter().any(|p| p.matches(tenant));
        let source_ok =
            self.sources.is_empty() || self.sources.iter().any(|p| p.matches(event.source));
        type_ok && tenant_ok && source_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(event_type: &'a str, tenant: Option<&'a str>) -> Event<'a> {
        Event {
            id: "e",
            source: "s",
            event_type,
            time_unix_nanos: 0,
            tenant,
            envelope: b"{}",
        }
    }

    #[test]
    fn matches_types_and_tenants_with_prefixes() {
        let filter = EventFilter::new(&FilterSettings {
            types: vec!["group.*".into(), "user.login".into()],
            tenants: vec!["acme".into(), "".into()],
            sources: Vec::new(),
        });
        assert!(filter.matches(&record("group.member_added", Some("acme"))));
        assert!(filter.matches(&record("user.login", None)));
        assert!(!filter.matches(&record("user.logout", Some("acme"))));
        assert!(!filter.matches(&record("group.deleted", Some("globex"))));
        assert!(EventFilter::default().matches(&record("anything", Some("x"))));
        assert!(EventFilter::default().is_open());
    }

    #[test]
    fn matches_sources_with_prefixes() {
        let filter = EventFilter::new(&FilterSettings {
            sources: vec!["poll.*".into(), "shop".into()],
            ..FilterSettings::default()
        });
        let from = |source| Event {
            source,
            ..record("user.login", None)
        };
        assert!(filter.matches(&from("shop")));
        assert!(filter.matches(&from("poll.idp")));
        assert!(!filter.matches(&from("shopping")));
        assert!(!filter.is_open());
    }
}
