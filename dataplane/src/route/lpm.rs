//! The routing table: longest-prefix match over IPv4 and IPv6 prefixes.
//!
//! Two structures behind one API, both allocation-free on lookup (inserts happen at setup):
//! * up to [`LINEAR_MAX`] prefixes per family, a vector sorted by prefix length, longest first,
//!   scanned with one mask-and-compare per entry. A gateway routes between a handful of
//!   connected subnets and static routes, and this is a few nanoseconds where the trie below
//!   measured about 80 ns per lookup (`docs/routed.md`).
//! * beyond that, `prefix-trie`'s [`PrefixMap`] (a path-compressed binary trie, a well-kept
//!   crate) answers in time independent of the table size.
//!
//! Both are tested against a naive reference with proptest, on both sides of the threshold.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::BitAnd;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;

use crate::io::PortId;

/// Where a prefix is routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// The egress port.
    pub port: PortId,
    /// The gateway to hand the packet to; `None` for a connected subnet (the destination itself
    /// is the neighbour).
    pub via: Option<IpAddr>,
}

/// Most prefixes per family looked up by linear scan; larger tables use the trie.
pub const LINEAR_MAX: usize = 32;

/// Prefixes sorted longest first: (network, mask, prefix length, next hop).
#[derive(Clone, Debug)]
struct Linear<T> {
    entries: Vec<(T, T, u8, NextHop)>,
}

impl<T> Default for Linear<T> {
    fn default() -> Self {
        Linear {
            entries: Vec::new(),
        }
    }
}

impl<T: Copy + PartialEq + BitAnd<Output = T>> Linear<T> {
    fn insert(&mut self, net: T, mask: T, len: u8, hop: NextHop) -> Option<NextHop> {
        if let Some(e) = self.entries.iter_mut().find(|e| e.2 == len && e.0 == net) {
            return Some(std::mem::replace(&mut e.3, hop));
        }
        let at = self.entries.partition_point(|e| e.2 >= len);
        self.entries.insert(at, (net, mask, len, hop));
        None
    }

    #[inline]
    fn lookup(&self, addr: T) -> Option<&(T, T, u8, NextHop)> {
        self.entries.iter().find(|e| addr & e.1 == e.0)
    }
}

/// Longest-prefix-match table for both families.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    v4: PrefixMap<Ipv4Net, NextHop>,
    v6: PrefixMap<Ipv6Net, NextHop>,
    v4_linear: Linear<u32>,
    v6_linear: Linear<u128>,
}

impl RouteTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add (or replace) the route for `prefix` (host bits are cleared first). Returns the
    /// next hop it replaced.
    pub fn insert(&mut self, prefix: IpNet, hop: NextHop) -> Option<NextHop> {
        match prefix.trunc() {
            IpNet::V4(p) => {
                let (net, mask) = (u32::from(p.network()), u32::from(p.netmask()));
                self.v4_linear.insert(net, mask, p.prefix_len(), hop);
                self.v4.insert(p, hop)
            }
            IpNet::V6(p) => {
                let (net, mask) = (u128::from(p.network()), u128::from(p.netmask()));
                self.v6_linear.insert(net, mask, p.prefix_len(), hop);
                self.v6.insert(p, hop)
            }
        }
    }

    /// The route of the longest prefix containing `dst`.
    #[inline]
    pub fn lookup_v4(&self, dst: Ipv4Addr) -> Option<(Ipv4Net, &NextHop)> {
        if self.v4_linear.entries.len() <= LINEAR_MAX {
            let (net, _, len, hop) = self.v4_linear.lookup(u32::from(dst))?;
            return Some((Ipv4Net::new_assert(Ipv4Addr::from(*net), *len), hop));
        }
        self.v4.get_lpm(&Ipv4Net::new_assert(dst, 32))
    }

    /// The route of the longest prefix containing `dst`.
    #[inline]
    pub fn lookup_v6(&self, dst: Ipv6Addr) -> Option<(Ipv6Net, &NextHop)> {
        if self.v6_linear.entries.len() <= LINEAR_MAX {
            let (net, _, len, hop) = self.v6_linear.lookup(u128::from(dst))?;
            return Some((Ipv6Net::new_assert(Ipv6Addr::from(*net), *len), hop));
        }
        self.v6.get_lpm(&Ipv6Net::new_assert(dst, 128))
    }

    /// The route of the longest prefix containing `dst`, either family.
    #[inline]
    pub fn lookup(&self, dst: IpAddr) -> Option<(IpNet, &NextHop)> {
        match dst {
            IpAddr::V4(a) => self.lookup_v4(a).map(|(p, h)| (IpNet::V4(p), h)),
            IpAddr::V6(a) => self.lookup_v6(a).map(|(p, h)| (IpNet::V6(p), h)),
        }
    }

    /// Every route, IPv4 first, each family in prefix order (for `check-config` and docs).
    pub fn iter(&self) -> impl Iterator<Item = (IpNet, NextHop)> + '_ {
        self.v4
            .iter()
            .map(|(p, h)| (IpNet::V4(p), *h))
            .chain(self.v6.iter().map(|(p, h)| (IpNet::V6(p), *h)))
    }
}
