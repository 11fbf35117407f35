//! `allowed_hosts`: the destinations a plugin may reach over HTTP.
//!
//! | pattern | allows |
//! |---|---|
//! | `api.example.com` | that host on the scheme's default port (443 for https, 80 for http) |
//! | `api.example.com:8088` | that host on port 8088 |
//! | `api.example.com:*` | that host on any port |
//! | `*.example.com` | any subdomain (not `example.com` itself), default port |
//! | `*.example.com:8088`, `*.example.com:*` | subdomains on that port / any port |
//!
//! Matching is on the host name in the request URL. Name resolution is
//! the host's: allow only names you trust to resolve where you expect.

/// Which port a pattern allows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PortRule {
    /// The scheme's default port.
    Default,
    /// Exactly this port.
    Exact(u16),
    /// Any port.
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct HostPattern {
    /// Lower-case host, without `*.` for wildcards.
    host: String,
    /// `*.host`: any subdomain.
    wildcard: bool,
    port: PortRule,
}

/// The parsed `allowed_hosts` of one plugin instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    patterns: Vec<HostPattern>,
}

impl AllowList {
    /// Parses patterns; the error names the index of the bad entry.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Self, (usize, String)> {
        let patterns = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| parse_pattern(p.as_ref()).map_err(|e| (i, e)))
            .collect::<Result<_, _>>()?;
        Ok(AllowList { patterns })
    }

    /// Whether nothing is allowed.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `host` on `port` may be reached over `scheme` (`http`/`https`).
    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let default_port = match scheme {
            "https" => 443,
            "http" => 80,
            _ => return false,
        };
        let port = port.unwrap_or(default_port);
        self.patterns.iter().any(|p| {
            let host_ok = if p.wildcard {
                host.len() > p.host.len() + 1
                    && host.ends_with(&p.host)
                    && host.as_bytes()[host.len() - p.host.len() - 1] == b'.'
            } else {
                host == p.host
            };
            let port_ok = match p.port {
                PortRule::Default => port == default_port,
                PortRule::Exact(allowed) => port == allowed,
                PortRule::Any => true,
            };
            host_ok && port_ok
        })
    }
}

/// Parses one `allowed_hosts` entry; the error says how to write it.
fn parse_pattern(pattern: &str) -> Result<HostPattern, String> {
    if pattern.contains("://") || pattern.contains('/') {
        return Err(format!(
            "{pattern:?} looks like a URL: write only the host, e.g. \"api.example.com\" or \"api.example.com:8443\""
        ));
    }
    let (host, port) = match pattern.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (pattern, None),
    };
    let port = match port {
        None => PortRule::Default,
        Some("*") => PortRule::Any,
        Some(port) => PortRule::Exact(port.parse::<u16>().map_err(|_| {
            format!("{pattern:?}: the port must be a number up to 65535, or * for any port")
        })?),
    };
    let (wildcard, bare) = match host.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, host),
    };
    let valid = !bare.is_empty()
        && !bare.starts_with('.')
        && !bare.ends_with('.')
        && bare
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    if !valid {
        return Err(format!(
            "{pattern:?} is not a host pattern: use a lower-case host name or IPv4 address, optionally \"*.\" in front and \":port\" or \":*\" after"
        ));
    }
    Ok(HostPattern {
        host: bare.to_owned(),
        wildcard,
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(patterns: &[&str]) -> AllowList {
        AllowList::parse(patterns).unwrap()
    }

    #[test]
    fn exact_hosts_use_the_default_port_unless_told() {
        let allow = list(&["hec.example.com", "api.example.com:8088", "127.0.0.1:*"]);
        assert!(allow.allows("https", "hec.example.com", None));
        assert!(allow.allows("https", "HEC.example.com.", Some(443)));
        assert!(!allow.allows("https", "hec.example.com", Some(8443)));
        assert!(allow.allows("http", "hec.example.com", Some(80)));
        assert!(allow.allows("https", "api.example.com", Some(8088)));
        assert!(!allow.allows("https", "api.example.com", None));
        assert!(allow.allows("http", "127.0.0.1", Some(9000)));
        assert!(!allow.allows("http", "127.0.0.2", Some(9000)));
        assert!(!allow.allows("ftp", "hec.example.com", None));
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let allow = list(&["*.example.com"]);
        assert!(allow.allows("https", "a.example.com", None));
        assert!(allow.allows("https", "a.b.example.com", None));
        assert!(!allow.allows("https", "example.com", None));
        assert!(!allow.allows("https", "badexample.com", None));
        assert!(!allow.allows("https", "a.example.com.evil.test", None));
    }

    #[test]
    fn empty_list_denies_everything() {
        assert!(!AllowList::default().allows("https", "example.com", None));
    }

    #[test]
    fn bad_patterns_say_how_to_write_them() {
        assert!(
            parse_pattern("https://a.com")
                .unwrap_err()
                .contains("looks like a URL")
        );
        assert!(
            parse_pattern("a.com:http")
                .unwrap_err()
                .contains("port must be a number")
        );
        assert!(parse_pattern("A.com").unwrap_err().contains("lower-case"));
        assert!(
            parse_pattern("*")
                .unwrap_err()
                .contains("not a host pattern")
        );
        assert!(parse_pattern("a.*.com").is_err());
    }
}
