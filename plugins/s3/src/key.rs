//! Object keys: the `key_prefix` template, then a file name that a retried
//! batch reproduces exactly, so a retry overwrites instead of duplicating.

use auditrelay_plugin_api::Event;

/// A parsed `key_prefix` template.
#[derive(Debug, Clone)]
pub struct KeyTemplate {
    template: String,
    has_time: bool,
    uses_tenant: bool,
    uses_source: bool,
    uses_type: bool,
}

/// The placeholders an event can fill in.
const FIELDS: [&str; 3] = ["{tenant}", "{source}", "{type}"];

impl KeyTemplate {
    /// Parses and checks `template`; the error names the problem.
    pub fn parse(template: &str) -> Result<KeyTemplate, String> {
        if template.starts_with('/') {
            return Err(format!(
                "key_prefix {template:?} starts with `/`: S3 keys have no leading slash; remove it"
            ));
        }
        let mut rest = template.to_owned();
        for field in FIELDS {
            rest = rest.replace(field, "");
        }
        if let Some(start) = rest.find('{') {
            let end = rest[start..]
                .find('}')
                .map_or(rest.len(), |e| start + e + 1);
            return Err(format!(
                "key_prefix has unknown placeholder {:?}; use {{tenant}}, {{source}} or {{type}}",
                &rest[start..end]
            ));
        }
        let probe = jiff::Timestamp::UNIX_EPOCH;
        jiff::fmt::strtime::format(template, &probe.to_zoned(jiff::tz::TimeZone::UTC))
            .map_err(|e| format!("key_prefix {template:?} is not a valid strftime pattern: {e}"))?;
        Ok(KeyTemplate {
            template: template.to_owned(),
            has_time: template.contains('%'),
            uses_tenant: template.contains("{tenant}"),
            uses_source: template.contains("{source}"),
            uses_type: template.contains("{type}"),
        })
    }

    /// What decides an event's prefix: events with equal partitions share
    /// one. Unused fields are left out so more events share.
    pub fn partition<'a>(&self, event: &Event<'a>) -> Partition<'a> {
        Partition {
            second: if self.has_time {
                event.time_unix_nanos.div_euclid(1_000_000_000)
            } else {
                0
            },
            tenant: if self.uses_tenant { event.tenant } else { None },
            source: if self.uses_source {
                Some(event.source)
            } else {
                None
            },
            event_type: if self.uses_type {
                Some(event.event_type)
            } else {
                None
            },
        }
    }

    /// The prefix for events of `partition`, always ending in `/` unless empty.
    pub fn render(&self, partition: &Partition<'_>) -> String {
        let mut prefix = if self.has_time {
            let time = jiff::Timestamp::from_second(partition.second)
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
                .to_zoned(jiff::tz::TimeZone::UTC);
            jiff::fmt::strtime::format(&self.template, &time)
                .expect("the pattern was checked in parse")
        } else {
            self.template.clone()
        };
        if self.uses_tenant {
            prefix = prefix.replace("{tenant}", &segment(partition.tenant.unwrap_or("_none")));
        }
        if self.uses_source {
            prefix = prefix.replace("{source}", &segment(partition.source.unwrap_or("")));
        }
        if self.uses_type {
            prefix = prefix.replace("{type}", &segment(partition.event_type.unwrap_or("")));
        }
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        prefix
    }
}

/// The fields that pick an event's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Partition<'a> {
    second: i64,
    tenant: Option<&'a str>,
    source: Option<&'a str>,
    event_type: Option<&'a str>,
}

/// The object's file name: the first event's time and id, so the same
/// batch always gets the same key.
pub fn file_name(first: &Event<'_>, extension: &str) -> String {
    let time = first.time().strftime("%Y%m%dT%H%M%S%.3fZ");
    format!("{time}-{}.ndjson{extension}", segment(first.id))
}

/// Keeps characters that are safe in any S3 tool; others become `_`, so
/// an event field cannot add path segments or odd bytes to a key.
fn segment(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '.' | '_' | '-' | '=' => c,
            _ => '_',
        })
        .collect();
    match cleaned.as_str() {
        "" => "_".to_owned(),
        "." | ".." => cleaned.replace('.', "_"),
        _ => cleaned,
    }
}

#[cfg(test)]
mod tests {
    use auditrelay_plugin_api::testing::sample_events;

    use super::*;

    #[test]
    fn renders_time_and_fields_and_ends_with_a_slash() {
        let events = sample_events(1);
        let mut event = events[0].as_event();
        event.time_unix_nanos = 1_700_000_000_123_000_000; // 2023-11-14T22:13:20.123Z
        event.tenant = Some("acme/../evil");
        let template = KeyTemplate::parse("audit/{tenant}/%Y/%m/%d").unwrap();
        assert_eq!(
            template.render(&template.partition(&event)),
            "audit/acme_.._evil/2023/11/14/"
        );
        let name = file_name(&event, ".gz");
        assert!(name.starts_with("20231114T221320.123Z-"), "{name}");
        assert!(name.ends_with(".ndjson.gz"));
        event.tenant = None;
        assert_eq!(
            template.render(&template.partition(&event)),
            "audit/_none/2023/11/14/"
        );
        let flat = KeyTemplate::parse("").unwrap();
        assert_eq!(flat.render(&flat.partition(&event)), "");
    }

    #[test]
    fn bad_templates_are_refused_with_the_reason() {
        assert!(
            KeyTemplate::parse("/audit")
                .unwrap_err()
                .contains("leading slash")
        );
        assert!(
            KeyTemplate::parse("audit/{tenantt}/")
                .unwrap_err()
                .contains("{tenantt}")
        );
        assert!(
            KeyTemplate::parse("audit/%")
                .unwrap_err()
                .contains("strftime")
        );
    }
}
