//! Where the crate's HTTP clients may connect: a resolver that drops
//! special-use addresses, and the check of the peer actually connected to.

use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::cimd::{FetchError, address_refused};

/// Resolves with the system resolver, then drops special-use addresses
/// ([`address_refused`]); refuses a name with nothing left. Shared by every
/// HTTP client of the crate that fetches URLs others choose (CIMD
/// documents, the upstream provider's endpoints).
pub(super) struct FilteringResolver {
    pub(super) allow_loopback: bool,
}

impl Resolve for FilteringResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let allow_loopback = self.allow_loopback;
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let first_refused = found.first().map(SocketAddr::ip);
            let usable: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| !address_refused(a.ip(), allow_loopback))
                .collect();
            if usable.is_empty() {
                return Err(Box::new(Blocked(first_refused)) as Box<dyn StdError + Send + Sync>);
            }
            Ok(Box::new(usable.into_iter()) as Addrs)
        })
    }
}

/// The resolver's refusal, found again in reqwest's error chain.
#[derive(Debug)]
pub(super) struct Blocked(pub(super) Option<IpAddr>);

/// Whether `e` (a reqwest error) was caused by [`FilteringResolver`]'s
/// refusal.
pub(super) fn is_blocked(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = source {
        if err.downcast_ref::<Blocked>().is_some() {
            return true;
        }
        source = next_cause(err);
    }
    false
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the host resolves only to special-use addresses")
    }
}

impl StdError for Blocked {}

/// The next error in a chain. An `io::Error` wrapping another error
/// reports that error's source, skipping the wrapped error itself (where
/// rustls errors hide): step into it instead.
pub(super) fn next_cause<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    if let Some(inner) = err.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref) {
        return Some(inner);
    }
    err.source()
}

/// The connected peer must be known and allowed; an unknown peer is
/// refused (fail closed).
pub(super) fn check_peer(peer: Option<std::net::SocketAddr>, allow_loopback: bool) -> Result<(), FetchError> {
    match peer {
        Some(p) if !address_refused(p.ip(), allow_loopback) => Ok(()),
        peer => Err(FetchError::BlockedAddress {
            address: peer.map(|p| p.ip()),
        }),
    }
}

#[cfg(test)]
mod peer_tests {
    use super::*;

    #[test]
    fn the_connected_peer_is_checked_and_unknown_peers_fail_closed() {
        let at = |s: &str| Some(s.parse::<std::net::SocketAddr>().unwrap());
        assert!(check_peer(at("93.184.216.34:443"), false).is_ok());
        assert!(check_peer(at("[2606:4700::1111]:443"), false).is_ok());
        for refused in [
            "127.0.0.1:443",
            "10.0.0.5:443",
            "169.254.169.254:443",
            "[::1]:443",
            "[::ffff:10.0.0.1]:443",
        ] {
            assert!(
                matches!(check_peer(at(refused), false), Err(FetchError::BlockedAddress { .. })),
                "{refused}"
            );
        }
        assert!(matches!(
            check_peer(None, false),
            Err(FetchError::BlockedAddress { address: None })
        ));
        // The development switch lets loopback through, nothing else.
        assert!(check_peer(at("127.0.0.1:443"), true).is_ok());
        assert!(check_peer(at("10.0.0.5:443"), true).is_err());
    }
}
