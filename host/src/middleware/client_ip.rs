//! Who the client is, when proxies stand in between: `X-Forwarded-For` and
//! `Forwarded` are believed only as far as the proxies that wrote them are
//! trusted. A header from any other peer is ignored: anyone can send one.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

/// A network in CIDR notation (`10.0.0.0/8`, `::1/128`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Network {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{text:?} is not an IP address or network (10.0.0.0/8, fd00::/8)");
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix.parse::<u8>().map_err(|_| bad())?)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Network { addr, prefix })
    }
}

impl Network {
    /// Whether `ip` is in the network (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Which header the trusted proxies write the client's address into.
/// Only that one is read: proxies append to their own header and pass the
/// other through as the client sent it, so reading "whichever is present"
/// would let the client choose its recorded address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` (nginx, HAProxy, AWS and Google load balancers).
    #[default]
    XForwardedFor,
    /// `Forwarded` (RFC 7239: Envoy, some CDNs).
    Forwarded,
}

/// The client's address: the peer's, unless the peer is a trusted proxy;
/// then the nearest address in `header` that is not itself a trusted
/// proxy (read from the right: the left may be made up by the client).
pub fn client_ip(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted: &[Network],
    header: ForwardedHeader,
) -> Option<IpAddr> {
    let peer = canonical(peer?.ip());
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let mut client = peer;
    for hop in forwarded_for(headers, header).iter().rev() {
        match hop {
            // An entry that is not an address ("unknown", garbage): the
            // proxy that wrote it could not say; stop at what is known.
            None => break,
            Some(ip) => {
                client = *ip;
                if !is_trusted(*ip) {
                    break;
                }
            }
        }
    }
    Some(client)
}

/// The addresses `header` lists, left (client) to right (nearest proxy);
/// `None` for an entry that is not an address. Entries are split as bytes:
/// one unreadable entry (a byte that is not ASCII) is one unknown hop, not
/// the loss of the whole line and of the hops a proxy appended to it.
fn forwarded_for(headers: &HeaderMap, header: ForwardedHeader) -> Vec<Option<IpAddr>> {
    let name = match header {
        ForwardedHeader::XForwardedFor => "x-forwarded-for",
        ForwardedHeader::Forwarded => "forwarded",
    };
    let entries = headers
        .get_all(name)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(|entry| std::str::from_utf8(entry).ok());
    match header {
        ForwardedHeader::XForwardedFor => entries.map(|entry| entry.and_then(parse_node)).collect(),
        // An element without `for=` (only `proto=`, say) names no hop.
        ForwardedHeader::Forwarded => entries
            .filter_map(|element| match element {
                None => Some(None),
                Some(element) => element.split(';').find_map(|pair| {
                    let (key, value) = pair.trim().split_once('=')?;
                    key.eq_ignore_ascii_case("for").then(|| parse_node(value))
                }),
            })
            .collect(),
    }
}

/// `192.0.2.1`, `192.0.2.1:443`, `"[2001:db8::1]:443"`, `2001:db8::1`.
fn parse_node(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (ip, _) = rest.split_once(']')?;
        return ip.parse().ok().map(canonical);
    }
    let (ip, port) = text.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    ip.parse().ok().map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    const XFF: ForwardedHeader = ForwardedHeader::XForwardedFor;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn peer(ip: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(ip.parse().unwrap(), 40000))
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn a_header_from_an_untrusted_peer_is_not_believed() {
        let trusted: Vec<Network> = vec!["10.0.0.0/8".parse().unwrap()];
        let spoofed = headers(&[("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=1.2.3.4")]);
        assert_eq!(
            client_ip(peer("203.0.113.9"), &spoofed, &trusted, XFF),
            ip("203.0.113.9")
        );
        // No proxy trusted at all: never believed.
        assert_eq!(
            client_ip(peer("10.0.0.1"), &spoofed, &[], XFF),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_nearest_untrusted_hop_is_the_client() {
        let trusted: Vec<Network> =
            vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()];
        // The client made up "6.6.6.6"; 198.51.100.7 reached the first proxy.
        let chain = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.1.1")]);
        assert_eq!(
            client_ip(peer("10.0.0.2"), &chain, &trusted, XFF),
            ip("198.51.100.7")
        );
        // Split over two header lines, as proxies may append.
        let split = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(
            client_ip(peer("10.0.0.2"), &split, &trusted, XFF),
            ip("198.51.100.7")
        );
        let forwarded = headers(&[(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8::7]:4711\";proto=https, for=10.1.1.1",
        )]);
        assert_eq!(
            client_ip(
                peer("fd00::1"),
                &forwarded,
                &trusted,
                ForwardedHeader::Forwarded
            ),
            ip("2001:db8::7")
        );
        // Every hop trusted: the leftmost.
        let internal = headers(&[("x-forwarded-for", "10.9.9.9, 10.1.1.1")]);
        assert_eq!(
            client_ip(peer("10.0.0.2"), &internal, &trusted, XFF),
            ip("10.9.9.9")
        );
        // Garbage where an address should be: the last address known.
        let garbage = headers(&[("x-forwarded-for", "198.51.100.7, unknown, 10.1.1.1")]);
        assert_eq!(
            client_ip(peer("10.0.0.2"), &garbage, &trusted, XFF),
            ip("10.1.1.1")
        );
        // IPv4-mapped IPv6 peers count as their IPv4 address.
        assert_eq!(
            client_ip(peer("::ffff:10.0.0.2"), &chain, &trusted, XFF),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn only_the_configured_header_is_read_and_a_bad_byte_is_one_unknown_hop() {
        let trusted: Vec<Network> = vec!["10.0.0.0/8".parse().unwrap()];
        // The client sent `Forwarded`; the proxy appended to XFF.
        let both = headers(&[
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(
            client_ip(peer("10.0.0.2"), &both, &trusted, XFF),
            ip("198.51.100.7")
        );
        let forwarded = ForwardedHeader::Forwarded;
        assert_eq!(
            client_ip(peer("10.0.0.2"), &both, &trusted, forwarded),
            ip("6.6.6.6")
        );
        let mut garbage = HeaderMap::new();
        let value = axum::http::HeaderValue::from_bytes(b"6.6.6.6\xff, 198.51.100.7").unwrap();
        garbage.append("x-forwarded-for", value);
        assert_eq!(
            client_ip(peer("10.0.0.2"), &garbage, &trusted, XFF),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn networks_parse_and_match() {
        let net: Network = "192.168.0.0/16".parse().unwrap();
        assert!(net.contains("192.168.4.5".parse().unwrap()));
        assert!(!net.contains("192.169.0.1".parse().unwrap()));
        assert!(
            "0.0.0.0/0"
                .parse::<Network>()
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(
            "::1"
                .parse::<Network>()
                .unwrap()
                .contains("::1".parse().unwrap())
        );
        for bad in ["10.0.0.0/33", "nonsense", "10.0.0.0/x", "::/129"] {
            assert!(bad.parse::<Network>().is_err(), "{bad}");
        }
    }
}
