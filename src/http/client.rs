//! Which address a request came from. Behind a load balancer the peer is the
//! proxy, so the client is read from `X-Forwarded-For`, but only where the
//! peer is a configured trusted proxy: anyone else could write that header
//! to dodge login throttling or forge the audit log's addresses.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The client's address, put in every request's extensions by the `observe`
/// middleware.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub IpAddr);

/// The client behind `peer`. Each proxy appends the address it received
/// from, so the list is read from the right: past the trusted proxies, the
/// first other address is the client (everything left of it is whatever the
/// client sent).
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer.to_canonical();
    if !is_trusted(&client) {
        return client;
    }
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    for hop in hops.rev() {
        // An unreadable hop was written by a trusted proxy's client: stop at
        // the last address known good.
        let Some(ip) = parse_hop(hop.trim()) else {
            break;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// `192.0.2.1`, `2001:db8::1`, or either with a port (`[2001:db8::1]:443`),
/// as some proxies write them.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(peer: &str, xff: &[&str], trusted: &[&str]) -> String {
        let mut headers = HeaderMap::new();
        for v in xff {
            headers.append("x-forwarded-for", v.parse().unwrap());
        }
        let trusted: Vec<IpNet> = trusted.iter().map(|t| t.parse().unwrap()).collect();
        client_address(peer.parse().unwrap(), &headers, &trusted).to_string()
    }

    #[test]
    fn header_ignored_from_untrusted_peers() {
        assert_eq!(
            resolve("198.51.100.7", &["203.0.113.5"], &[]),
            "198.51.100.7"
        );
        assert_eq!(
            resolve("198.51.100.7", &["203.0.113.5"], &["10.0.0.0/8"]),
            "198.51.100.7"
        );
    }

    #[test]
    fn rightmost_untrusted_hop_is_the_client() {
        let trusted = ["10.0.0.0/8"];
        assert_eq!(
            resolve("10.0.0.2", &["203.0.113.5"], &trusted),
            "203.0.113.5"
        );
        // A client's own forged entries stay left of the one its proxy wrote.
        assert_eq!(
            resolve("10.0.0.2", &["1.1.1.1, 203.0.113.5, 10.0.0.9"], &trusted),
            "203.0.113.5"
        );
        // Several headers are one list, in order.
        assert_eq!(
            resolve("10.0.0.2", &["1.1.1.1", "203.0.113.5"], &trusted),
            "203.0.113.5"
        );
        assert_eq!(
            resolve("10.0.0.2", &["[2001:db8::1]:4711", "10.1.1.1:80"], &trusted),
            "2001:db8::1"
        );
    }

    #[test]
    fn proxies_all_the_way_or_garbage_keep_the_last_trusted_address() {
        let trusted = ["10.0.0.0/8"];
        assert_eq!(resolve("10.0.0.2", &[], &trusted), "10.0.0.2");
        assert_eq!(resolve("10.0.0.2", &["10.0.0.3"], &trusted), "10.0.0.3");
        assert_eq!(
            resolve(
                "10.0.0.2",
                &["203.0.113.5, not-an-address, 10.0.0.3"],
                &trusted
            ),
            "10.0.0.3"
        );
    }

    #[test]
    fn mapped_ipv4_matches_ipv4_ranges() {
        assert_eq!(
            resolve("::ffff:10.0.0.2", &["203.0.113.5"], &["10.0.0.0/8"]),
            "203.0.113.5"
        );
    }
}
