//! The client's IP address, for limits on refused requests: the connection's peer, or behind a
//! trusted proxy (`--trusted-proxy`) the address that proxy says it forwarded for.
//!
//! `X-Forwarded-For` and `Forwarded` are set by whoever sends the request, so they are read only
//! when the peer is a trusted proxy, and then from the right: each proxy appends the address it
//! received the request from, so the right-most address that is not a trusted proxy is the
//! first one no trusted party vouched for, which is the client as far as anyone can tell.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use http::{Extensions, HeaderMap};

use super::connections::PeerAddr;
use crate::config::Cidr;

/// The request's client address: its peer, or behind trusted proxies what they forwarded for.
/// `None` when the server does not know its peers (a router mounted in an application served
/// without `ConnectInfo`).
pub fn client_ip(extensions: &Extensions, headers: &HeaderMap, trusted: &[Cidr]) -> Option<IpAddr> {
    let peer = extensions
        .get::<PeerAddr>()
        .map(|peer| peer.0)
        .or_else(|| {
            extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0)
        })?
        .ip();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|range| range.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let mut chain = forwarded_for(headers);
    chain.reverse();
    Some(
        chain
            .into_iter()
            .find(|ip| !is_trusted(*ip))
            .unwrap_or(peer),
    )
}

/// The addresses in `Forwarded: for=…` (RFC 7239), else `X-Forwarded-For`, in order. An entry
/// that is not an address (`unknown`, an obfuscated name) ends the list: nothing before it can
/// be attributed.
fn forwarded_for(headers: &HeaderMap) -> Vec<IpAddr> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(|entry| entry.trim().to_owned())
            .collect()
    };
    let forwarded: Vec<String> = values("forwarded")
        .into_iter()
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (key, value) = pair.trim().split_once('=')?;
                key.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| value.trim().trim_matches('"').to_owned())
            })
        })
        .collect();
    let entries = if forwarded.is_empty() {
        values("x-forwarded-for")
    } else {
        forwarded
    };
    let parse = |entry: &str| -> Option<IpAddr> {
        // `[2001:db8::1]:4711`, `192.0.2.1:4711`, or a bare address.
        let host = entry
            .strip_prefix('[')
            .and_then(|rest| rest.split_once(']').map(|(host, _)| host))
            .unwrap_or(entry);
        host.parse()
            .ok()
            .or_else(|| host.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
    };
    let mut addresses = Vec::new();
    for entry in entries.iter().rev() {
        match parse(entry) {
            Some(ip) => addresses.push(ip),
            None => break,
        }
    }
    addresses.reverse();
    addresses
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(peer: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut builder = http::Request::get("/");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let (mut parts, ()) = builder.body(()).unwrap().into_parts();
        parts
            .extensions
            .insert(PeerAddr(format!("{peer}:5000").parse().unwrap()));
        parts
    }

    fn ranges(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|range| range.parse().unwrap()).collect()
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_peers() {
        let spoofed = parts("198.51.100.7", &[("x-forwarded-for", "203.0.113.5")]);
        assert_eq!(
            client_ip(
                &spoofed.extensions,
                &spoofed.headers,
                &ranges(&["127.0.0.1"])
            ),
            Some("198.51.100.7".parse().unwrap()),
            "an untrusted peer's header is ignored"
        );
        let proxied = parts(
            "127.0.0.1",
            &[("x-forwarded-for", "203.0.113.5, 198.51.100.7, 10.0.0.2")],
        );
        assert_eq!(
            client_ip(
                &proxied.extensions,
                &proxied.headers,
                &ranges(&["127.0.0.1", "10.0.0.0/8"])
            ),
            Some("198.51.100.7".parse().unwrap()),
            "the right-most address no trusted proxy vouches for"
        );
        let standard = parts(
            "127.0.0.1",
            &[(
                "forwarded",
                "for=\"[2001:db8::7]:4711\";proto=https, for=10.0.0.2",
            )],
        );
        assert_eq!(
            client_ip(
                &standard.extensions,
                &standard.headers,
                &ranges(&["127.0.0.1", "10.0.0.0/8"])
            ),
            Some("2001:db8::7".parse().unwrap())
        );
        let unknown = parts("127.0.0.1", &[("x-forwarded-for", "unknown, 10.0.0.2")]);
        assert_eq!(
            client_ip(
                &unknown.extensions,
                &unknown.headers,
                &ranges(&["127.0.0.1", "10.0.0.0/8"])
            ),
            Some("127.0.0.1".parse().unwrap()),
            "all trusted: the peer itself"
        );
    }
}
