//! Special-use IP addresses a metadata fetch must never connect to
//! ([RFC 6890] and the IANA special-purpose address registries).
//!
//! The CIMD draft (-01 onwards) requires the authorization server to refuse
//! `client_id` URLs that resolve to special-use addresses: otherwise any
//! stranger can make the server issue requests into its own network
//! (SSRF). The check belongs at connect time, on the address actually
//! connected to, so that DNS rebinding cannot slip past a pre-flight lookup;
//! see [`crate::cimd::MetadataFetcher`].
//!
//! [RFC 6890]: https://www.rfc-editor.org/rfc/rfc6890

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `ip` is a special-use address a metadata fetch must refuse.
///
/// IPv4 (SPEC-CHECKLIST section 7): `0.0.0.0/8`, `10.0.0.0/8`,
/// `100.64.0.0/10`, `127.0.0.0/8`, `169.254.0.0/16`, `172.16.0.0/12`,
/// `192.0.0.0/24`, `192.0.2.0/24`, `192.88.99.0/24`, `192.168.0.0/16`,
/// `198.18.0.0/15`, `198.51.100.0/24`, `203.0.113.0/24`, `224.0.0.0/4`,
/// `240.0.0.0/4` (which includes `255.255.255.255`).
///
/// IPv6, stricter than the registry where that costs nothing: only global
/// unicast (`2000::/3`) is acceptable, minus `2001::/23` (IETF protocol
/// assignments, including Teredo `2001::/32`), `2001:db8::/32`,
/// `2002::/16` (6to4: deprecated by [RFC 7526]; refused whole, whatever IPv4
/// it embeds) and `3fff::/20`. Outside `2000::/3`, so refused: `::/128`,
/// `::1/128`, `100::/64`, `fc00::/7`, `fe80::/10`, `ff00::/8` and every
/// unassigned or deprecated block. Two translation prefixes are judged by
/// the IPv4 address they embed: IPv4-mapped `::ffff:0:0/96` and the NAT64
/// well-known prefix `64:ff9b::/96`. The local-use NAT64 prefix
/// `64:ff9b:1::/48` ([RFC 8215]) is refused whole.
///
/// # Examples
/// ```
/// use std::net::IpAddr;
/// use authio_mcp::cimd::is_special_use;
///
/// let ip = |s: &str| s.parse::<IpAddr>().unwrap();
/// assert!(is_special_use(ip("10.1.2.3")));
/// assert!(is_special_use(ip("::ffff:127.0.0.1")));
/// assert!(is_special_use(ip("64:ff9b::a9fe:a9fe"))); // NAT64 of 169.254.169.254
/// assert!(!is_special_use(ip("93.184.215.14")));
/// assert!(!is_special_use(ip("2606:4700::6810:84e5")));
/// ```
///
/// [RFC 7526]: https://www.rfc-editor.org/rfc/rfc7526
/// [RFC 8215]: https://www.rfc-editor.org/rfc/rfc8215
pub fn is_special_use(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_special_use_v4(v4),
        IpAddr::V6(v6) => is_special_use_v6(v6),
    }
}

/// Whether `ip` is a loopback address (`127.0.0.0/8`, `::1`, or an
/// IPv4-mapped / NAT64 form of `127.0.0.0/8`): what a fetcher's
/// development switch may let through.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || embedded_ipv4(v6).is_some_and(|v4| v4.is_loopback()),
    }
}

/// `(network, prefix length)` of every refused IPv4 block.
const V4_BLOCKS: [(u32, u32); 15] = [
    (0x0000_0000, 8),  // 0.0.0.0/8 "this network"
    (0x0a00_0000, 8),  // 10.0.0.0/8 private
    (0x6440_0000, 10), // 100.64.0.0/10 shared address space (CGN)
    (0x7f00_0000, 8),  // 127.0.0.0/8 loopback
    (0xa9fe_0000, 16), // 169.254.0.0/16 link local (cloud metadata)
    (0xac10_0000, 12), // 172.16.0.0/12 private
    (0xc000_0000, 24), // 192.0.0.0/24 IETF protocol assignments
    (0xc000_0200, 24), // 192.0.2.0/24 TEST-NET-1
    (0xc058_6300, 24), // 192.88.99.0/24 6to4 relay anycast
    (0xc0a8_0000, 16), // 192.168.0.0/16 private
    (0xc612_0000, 15), // 198.18.0.0/15 benchmarking
    (0xc633_6400, 24), // 198.51.100.0/24 TEST-NET-2
    (0xcb00_7100, 24), // 203.0.113.0/24 TEST-NET-3
    (0xe000_0000, 4),  // 224.0.0.0/4 multicast
    (0xf000_0000, 4),  // 240.0.0.0/4 reserved, and 255.255.255.255/32
];

/// `(network, prefix length)` of refused blocks inside `2000::/3`.
const V6_GLOBAL_BLOCKS: [(u128, u32); 4] = [
    (0x2001_0000 << 96, 23),      // 2001::/23 IETF protocol assignments (Teredo, ORCHID, ...)
    (0x2001_0db8 << 96, 32),      // 2001:db8::/32 documentation
    (0x2002_u128 << 112, 16),     // 2002::/16 6to4
    (0x3fff_0000_u128 << 96, 20), // 3fff::/20 documentation
];

fn in_v4(addr: u32, network: u32, len: u32) -> bool {
    let mask = u32::MAX.checked_shl(32u32.saturating_sub(len)).unwrap_or(0);
    (addr & mask) == (network & mask)
}

fn in_v6(addr: u128, network: u128, len: u32) -> bool {
    let mask = u128::MAX.checked_shl(128u32.saturating_sub(len)).unwrap_or(0);
    (addr & mask) == (network & mask)
}

fn is_special_use_v4(ip: Ipv4Addr) -> bool {
    let a = u32::from(ip);
    V4_BLOCKS.iter().any(|&(net, len)| in_v4(a, net, len))
}

fn is_special_use_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_ipv4(ip) {
        return is_special_use_v4(v4);
    }
    let a = u128::from(ip);
    // Only global unicast 2000::/3 may be fetched from.
    if !in_v6(a, 0x2000_u128 << 112, 3) {
        return true;
    }
    V6_GLOBAL_BLOCKS.iter().any(|&(net, len)| in_v6(a, net, len))
}

/// The IPv4 address carried by an IPv4-mapped (`::ffff:0:0/96`) or NAT64
/// well-known-prefix (`64:ff9b::/96`) address.
fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let a = u128::from(ip);
    let mapped = in_v6(a, 0xffff_u128 << 32, 96);
    let nat64 = in_v6(a, 0x0064_ff9b_u128 << 96, 96);
    if mapped || nat64 {
        let low = u32::try_from(a & 0xffff_ffff).ok()?;
        Some(Ipv4Addr::from(low))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn every_refused_ipv4_block_edges() {
        // first and last address of each block are refused; the neighbours
        // just outside are not (unless they fall in another block).
        let table = [
            ("0.0.0.0", "0.255.255.255", None, Some("1.0.0.0")),
            ("10.0.0.0", "10.255.255.255", Some("9.255.255.255"), Some("11.0.0.0")),
            (
                "100.64.0.0",
                "100.127.255.255",
                Some("100.63.255.255"),
                Some("100.128.0.0"),
            ),
            (
                "127.0.0.0",
                "127.255.255.255",
                Some("126.255.255.255"),
                Some("128.0.0.0"),
            ),
            (
                "169.254.0.0",
                "169.254.255.255",
                Some("169.253.255.255"),
                Some("169.255.0.0"),
            ),
            (
                "172.16.0.0",
                "172.31.255.255",
                Some("172.15.255.255"),
                Some("172.32.0.0"),
            ),
            ("192.0.0.0", "192.0.0.255", Some("191.255.255.255"), Some("192.0.1.0")),
            ("192.0.2.0", "192.0.2.255", Some("192.0.1.255"), Some("192.0.3.0")),
            (
                "192.88.99.0",
                "192.88.99.255",
                Some("192.88.98.255"),
                Some("192.88.100.0"),
            ),
            (
                "192.168.0.0",
                "192.168.255.255",
                Some("192.167.255.255"),
                Some("192.169.0.0"),
            ),
            (
                "198.18.0.0",
                "198.19.255.255",
                Some("198.17.255.255"),
                Some("198.20.0.0"),
            ),
            (
                "198.51.100.0",
                "198.51.100.255",
                Some("198.51.99.255"),
                Some("198.51.101.0"),
            ),
            (
                "203.0.113.0",
                "203.0.113.255",
                Some("203.0.112.255"),
                Some("203.0.114.0"),
            ),
            ("224.0.0.0", "239.255.255.255", Some("223.255.255.255"), None),
            ("240.0.0.0", "255.255.255.255", None, None),
        ];
        for (first, last, below, above) in table {
            assert!(is_special_use(ip(first)), "{first}");
            assert!(is_special_use(ip(last)), "{last}");
            if let Some(b) = below {
                assert!(!is_special_use(ip(b)), "{b}");
            }
            if let Some(a) = above {
                assert!(!is_special_use(ip(a)), "{a}");
            }
        }
        assert!(is_special_use(ip("169.254.169.254")));
    }

    #[test]
    fn ipv6_table() {
        let refused = [
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0.0.0.0",
            "::7f00:1", // IPv4-compatible (deprecated)
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::c0a8:101",
            "64:ff9b:1::808:808", // local-use NAT64, refused whole
            "64:ff9b:1:ffff::1",
            "100::",
            "100::ffff:ffff:ffff:ffff",
            "2001::",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2", // Teredo
            "2001:1ff:ffff::1",                     // end of 2001::/23
            "2001:db8::1",
            "2001:db8:ffff:ffff::1",
            "2002::",
            "2002:7f00:1::1",  // 6to4 of 127.0.0.1
            "2002:808:808::1", // 6to4 of 8.8.8.8: refused whole
            "3fff::1",
            "3fff:fff:ffff::1",
            "fc00::1",
            "fd12:3456:789a::1",
            "fe80::1",
            "febf:ffff::1",
            "fec0::1", // site-local (deprecated)
            "ff02::1",
            "ff0e::1",
            "4000::1", // unassigned, outside 2000::/3
            "e000::1",
        ];
        for r in refused {
            assert!(is_special_use(ip(r)), "{r}");
        }
        let allowed = [
            "2606:4700::6810:84e5",
            "2a00:1450:4001:80b::200e",
            "2001:200::1", // just past 2001::/23
            "2001:4860:4860::8888",
            "2003::1",
            "3ffe::1",
            "3fff:1000::1", // just past 3fff::/20
            "::ffff:8.8.8.8",
            "64:ff9b::808:808", // NAT64 of 8.8.8.8
            "8.8.8.8",
            "1.1.1.1",
            "93.184.215.14",
        ];
        for a in allowed {
            assert!(!is_special_use(ip(a)), "{a}");
        }
    }

    #[test]
    fn loopback_forms() {
        for l in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1", "64:ff9b::7f00:1"] {
            assert!(is_loopback(ip(l)), "{l}");
        }
        for n in ["10.0.0.1", "::", "8.8.8.8", "fe80::1"] {
            assert!(!is_loopback(ip(n)), "{n}");
        }
    }

    proptest! {
        #[test]
        fn mapped_and_nat64_agree_with_ipv4(raw in any::<u32>()) {
            let v4 = Ipv4Addr::from(raw);
            let expected = is_special_use(IpAddr::V4(v4));
            prop_assert_eq!(is_special_use(IpAddr::V6(v4.to_ipv6_mapped())), expected);
            let nat64 = Ipv6Addr::from((0x0064_ff9b_u128 << 96) | u128::from(raw));
            prop_assert_eq!(is_special_use(IpAddr::V6(nat64)), expected);
        }

        #[test]
        fn never_panics(raw in any::<u128>()) {
            let _ = is_special_use(IpAddr::V6(Ipv6Addr::from(raw)));
            let _ = is_loopback(IpAddr::V6(Ipv6Addr::from(raw)));
        }
    }
}
