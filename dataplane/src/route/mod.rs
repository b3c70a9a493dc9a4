//! Routed mode: the gateway as the IP router between the subnets of its routed ports.
//!
//! The worker hands every frame received on a routed port to [`Router::process`], which either
//! rewrites it in place for forwarding ([`RouteAction::Forward`]: next-hop MAC, egress MAC,
//! TTL/hop limit minus one with an RFC 1624 checksum update), takes it for the gateway's own
//! stack ([`RouteAction::Local`]) or drops it under one [`DropReason`]. Frames the gateway
//! sends itself (ARP/ND answers and echo replies from smoltcp, time-exceeded errors, ARP
//! requests and neighbour solicitations) wait in a bounded ring per port until the worker
//! drains them with [`Router::drain_tx`] after [`Router::poll`]. Design and the worker's calls:
//! `docs/routed.md`.
//!
//! Invariants: after [`Router::new`], the forwarding path ([`Router::process`] of a packet
//! that is forwarded or dropped) allocates nothing, takes no lock and logs nothing; every table
//! and queue is bounded; the slow path (smoltcp) only ever sees frames addressed to the
//! gateway and runs inside [`Router::poll`].

pub mod icmp;
pub mod lpm;
pub mod neighbour;
pub mod rewrite;
pub mod stack;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

pub use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use smoltcp::wire::{ArpPacket, ArpRepr, ETHERNET_HEADER_LEN, Icmpv6Packet, NdiscRepr};

use crate::counters::{PublishTimer, PublishedWords};
use crate::drop::DropReason;
use crate::error::RouteError;
use crate::io::PortId;
use crate::parse::{Fragment, L3, ParsedPacket};
use lpm::{NextHop, RouteTable};
use neighbour::NeighbourTable;
use stack::PortStack;

/// Microseconds per second (the router's clock is the worker's, in µs).
const US: u64 = 1_000_000;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;
const ICMPV6_NS: u8 = 135;
const ICMPV6_NA: u8 = 136;

/// One routed port: its MAC and the addresses the gateway owns on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoutedPort {
    /// The port.
    pub port: PortId,
    /// The gateway's MAC on this port (source of everything it sends there).
    pub mac: [u8; 6],
    /// The gateway's IPv4 address and the connected subnet's prefix length.
    pub v4: Option<Ipv4Net>,
    /// The gateway's IPv6 address and the connected subnet's prefix length.
    pub v6: Option<Ipv6Net>,
}

/// A static route: `prefix` is reached through the neighbour `via`, which must lie in a
/// connected subnet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaticRoute {
    /// Destination prefix.
    pub prefix: IpNet,
    /// Next-hop gateway.
    pub via: IpAddr,
}

/// Everything a [`Router`] is built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterConfig {
    /// The routed ports.
    pub ports: Vec<RoutedPort>,
    /// Static routes (connected routes come from the ports' addresses).
    pub routes: Vec<StaticRoute>,
    /// Neighbour-table entries (IPv4 and IPv6 together).
    pub neighbour_capacity: usize,
    /// Frames per port in each slow-path ring (to the stack, to the wire).
    pub queue_frames: usize,
    /// ICMP errors (time exceeded) sent per second at most, across all ports.
    pub icmp_errors_per_second: u32,
    /// Least time between two solicitations of one address (µs).
    pub solicit_interval: u64,
    /// Age after which a resolved neighbour is re-solicited while still used (µs).
    pub neighbour_refresh: u64,
}

impl RouterConfig {
    /// A configuration with the default bounds: 1024 neighbours, 64-frame rings, 100 ICMP
    /// errors per second, one solicitation per address per second, refresh after 60 s.
    pub fn new(ports: Vec<RoutedPort>, routes: Vec<StaticRoute>) -> Self {
        RouterConfig {
            ports,
            routes,
            neighbour_capacity: 1024,
            queue_frames: 64,
            icmp_errors_per_second: 100,
            solicit_interval: US,
            neighbour_refresh: 60 * US,
        }
    }
}

/// What the worker does with a frame received on a routed port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteAction {
    /// Transmit it on `port`; the frame has been rewritten in place.
    Forward {
        /// The egress port.
        port: PortId,
    },
    /// Addressed to the gateway: a copy is queued for its stack, which answers in
    /// [`Router::poll`]. The worker frees the buffer; this is not a drop.
    Local,
    /// Drop it, counted under this reason. Some drops queue an answer (`ttl_exceeded` queues
    /// a time-exceeded error, `neighbour_unresolved` a solicitation), sent by
    /// [`Router::drain_tx`].
    Drop(DropReason),
}

/// Slow-path events the router counts (the drops themselves are counted by the worker under
/// their [`DropReason`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// Frames queued for the gateway's stack.
    pub local: u64,
    /// Time-exceeded errors queued.
    pub icmp_errors: u64,
    /// Time-exceeded errors not sent because of the rate limit (or no address to send from).
    pub icmp_suppressed: u64,
    /// ARP requests and neighbour solicitations queued.
    pub solicitations: u64,
    /// Frames the router generated but could not queue (transmit ring full).
    pub tx_ring_full: u64,
    /// Neighbour entries learnt or refreshed.
    pub neighbours_learnt: u64,
    /// Echo replies (ICMP and ICMPv6) the gateway's stacks queued: pings of its addresses
    /// answered.
    pub echo_replies: u64,
    /// ARP replies the gateway's stacks queued.
    pub arp_replies: u64,
    /// Neighbour advertisements the gateway's stacks queued.
    pub neighbour_adverts: u64,
}

/// A router's counters and neighbour-table occupancy as another thread reads them
/// ([`SharedRouterStats::load`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouterSnapshot {
    /// Slow-path counters.
    pub stats: RouterStats,
    /// Neighbour entries in use (resolved or being resolved).
    pub neighbours: u64,
    /// Most neighbour entries.
    pub neighbour_capacity: u64,
}

const SNAPSHOT_WORDS: usize = 11;

/// A router's [`RouterSnapshot`] as the worker last published it (in [`Router::poll`], every
/// [`crate::counters::PUBLISH_US`] of the worker clock): relaxed atomics on cache lines of their
/// own, never written per packet. All zero before the first publication.
#[derive(Debug, Default)]
pub struct SharedRouterStats(PublishedWords<SNAPSHOT_WORDS>);

impl SharedRouterStats {
    /// The snapshot last published.
    pub fn load(&self) -> RouterSnapshot {
        let [
            local,
            icmp_errors,
            icmp_suppressed,
            solicitations,
            tx_ring_full,
            neighbours_learnt,
            echo_replies,
            arp_replies,
            neighbour_adverts,
            neighbours,
            neighbour_capacity,
        ] = self.0.load();
        RouterSnapshot {
            stats: RouterStats {
                local,
                icmp_errors,
                icmp_suppressed,
                solicitations,
                tx_ring_full,
                neighbours_learnt,
                echo_replies,
                arp_replies,
                neighbour_adverts,
            },
            neighbours,
            neighbour_capacity,
        }
    }
}

/// Token bucket for ICMP errors (RFC 1812 §4.3.2.8 asks routers to rate-limit them).
#[derive(Clone, Copy, Debug)]
struct RateLimit {
    per_second: u64,
    burst: u64,
    /// Tokens × 1e6 (µs-scaled so refills need no division).
    tokens: u64,
    last: u64,
}

impl RateLimit {
    fn new(per_second: u32) -> Self {
        let per_second = u64::from(per_second);
        let burst = (per_second / 10).max(1);
        RateLimit {
            per_second,
            burst,
            tokens: burst * US,
            last: 0,
        }
    }

    fn take(&mut self, now: u64) -> bool {
        let elapsed = now.saturating_sub(self.last);
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed.saturating_mul(self.per_second)).min(self.burst * US);
        if self.per_second > 0 && self.tokens >= US {
            self.tokens -= US;
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
struct PortState {
    cfg: RoutedPort,
    stack: PortStack,
}

/// The routed-mode engine of one worker (single-threaded, owned by the worker like its flow
/// table).
#[derive(Debug)]
pub struct Router {
    /// Indexed by port id; `None` for ports that are not routed.
    ports: Vec<Option<PortState>>,
    routes: RouteTable,
    neighbours: NeighbourTable,
    icmp_limit: RateLimit,
    solicit_interval: u64,
    neighbour_refresh: u64,
    stats: RouterStats,
    /// Where [`Router::poll`] publishes `stats` for other threads.
    shared: Arc<SharedRouterStats>,
    publish_timer: PublishTimer,
}

impl Router {
    /// Check `cfg` and build the router: connected routes from the port addresses, the static
    /// routes, one smoltcp interface per port. `now` is the worker clock (µs). Allocates every
    /// table and ring here.
    pub fn new(cfg: &RouterConfig, now: u64) -> Result<Self, RouteError> {
        if cfg.neighbour_capacity == 0 {
            return Err(RouteError::Zero("neighbour_capacity"));
        }
        if cfg.queue_frames == 0 {
            return Err(RouteError::Zero("queue_frames"));
        }
        let mut routes = RouteTable::new();
        let max_port = cfg
            .ports
            .iter()
            .map(|p| p.port)
            .max()
            .map_or(0, |p| usize::from(p) + 1);
        let mut ports: Vec<Option<PortState>> = (0..max_port).map(|_| None).collect();
        for p in &cfg.ports {
            if ports[usize::from(p.port)].is_some() {
                return Err(RouteError::DuplicatePort(p.port));
            }
            if p.v4.is_none() && p.v6.is_none() {
                return Err(RouteError::NoAddress(p.port));
            }
            if p.mac[0] & 1 != 0 || p.mac == [0; 6] {
                return Err(RouteError::BadMac(p.port));
            }
            let nets = p.v4.map(IpNet::V4).into_iter().chain(p.v6.map(IpNet::V6));
            for net in nets {
                check_address(p.port, net)?;
                let prefix = net.trunc();
                if let Some((other, hop)) = routes
                    .iter()
                    .find(|(q, _)| q.contains(&prefix) || prefix.contains(q))
                {
                    return Err(RouteError::Overlap {
                        port: p.port,
                        prefix,
                        other,
                        other_port: hop.port,
                    });
                }
                routes.insert(
                    prefix,
                    NextHop {
                        port: p.port,
                        via: None,
                    },
                );
            }
            ports[usize::from(p.port)] = Some(PortState {
                cfg: *p,
                stack: PortStack::new(p.mac, p.v4, p.v6, cfg.queue_frames, now),
            });
        }
        let connected = routes.clone();
        for r in &cfg.routes {
            let same_family = matches!(
                (r.prefix, r.via),
                (IpNet::V4(_), IpAddr::V4(_)) | (IpNet::V6(_), IpAddr::V6(_))
            );
            if !same_family {
                return Err(RouteError::FamilyMismatch {
                    prefix: r.prefix,
                    via: r.via,
                });
            }
            let Some((_, hop)) = connected.lookup(r.via) else {
                return Err(RouteError::ViaNotConnected {
                    prefix: r.prefix,
                    via: r.via,
                });
            };
            let hop = NextHop {
                port: hop.port,
                via: Some(r.via),
            };
            if let Some(old) = routes.insert(r.prefix, hop)
                && old.via.is_none()
            {
                return Err(RouteError::ShadowsConnected { prefix: r.prefix });
            }
        }
        Ok(Router {
            ports,
            routes,
            neighbours: NeighbourTable::new(cfg.neighbour_capacity),
            icmp_limit: RateLimit::new(cfg.icmp_errors_per_second),
            solicit_interval: cfg.solicit_interval,
            neighbour_refresh: cfg.neighbour_refresh,
            stats: RouterStats::default(),
            shared: Arc::default(),
            publish_timer: PublishTimer::default(),
        })
    }

    /// Is `port` a routed port (frames from it go to [`Router::process`])?
    #[inline]
    pub fn is_routed(&self, port: PortId) -> bool {
        matches!(self.ports.get(usize::from(port)), Some(Some(_)))
    }

    /// The routing table (connected and static routes).
    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }

    /// The neighbour table.
    pub fn neighbours(&self) -> &NeighbourTable {
        &self.neighbours
    }

    /// Slow-path counters.
    pub fn stats(&self) -> &RouterStats {
        &self.stats
    }

    /// The counters as other threads read them: published by [`Router::poll`] every
    /// [`crate::counters::PUBLISH_US`] of the worker clock.
    pub fn shared_stats(&self) -> Arc<SharedRouterStats> {
        Arc::clone(&self.shared)
    }

    /// Decide one frame received on `port`, already parsed by [`crate::parse`]; rewrites it in
    /// place when it is forwarded. `now` is the worker clock (µs).
    #[inline]
    pub fn process(
        &mut self,
        port: PortId,
        frame: &mut [u8],
        parsed: &ParsedPacket,
        now: u64,
    ) -> RouteAction {
        let Some(Some(ps)) = self.ports.get(usize::from(port)) else {
            return RouteAction::Drop(DropReason::NoPeerPort);
        };
        let cfg = ps.cfg;
        // Routed ports are untagged: neither smoltcp nor the rewrite handle VLAN tags.
        if parsed.vlans.count != 0 || frame.len() < ETHERNET_HEADER_LEN {
            return RouteAction::Drop(DropReason::NotForGateway);
        }
        let dst_mac: [u8; 6] = [frame[0], frame[1], frame[2], frame[3], frame[4], frame[5]];
        let to_us = dst_mac == cfg.mac;
        let group = dst_mac[0] & 1 != 0;
        if !to_us && !group {
            return RouteAction::Drop(DropReason::NotForGateway);
        }
        match parsed.l3 {
            L3::Arp => {
                self.learn_arp(&cfg, frame, parsed, now);
                self.deliver(port, frame)
            }
            L3::Ipv4 => self.route_v4(&cfg, frame, parsed, to_us, now),
            L3::Ipv6 => self.route_v6(&cfg, frame, parsed, to_us, now),
            L3::Other => RouteAction::Drop(DropReason::NotForGateway),
        }
    }

    fn deliver(&mut self, port: PortId, frame: &[u8]) -> RouteAction {
        let Some(Some(ps)) = self.ports.get_mut(usize::from(port)) else {
            return RouteAction::Drop(DropReason::NoPeerPort);
        };
        if ps.stack.dev.rx.push(frame) {
            self.stats.local += 1;
            RouteAction::Local
        } else {
            RouteAction::Drop(DropReason::GatewayQueueFull)
        }
    }

    fn route_v4(
        &mut self,
        cfg: &RoutedPort,
        frame: &mut [u8],
        parsed: &ParsedPacket,
        to_us: bool,
        now: u64,
    ) -> RouteAction {
        // The parser checked the header, so the key holds 32-bit addresses.
        let src = Ipv4Addr::from(parsed.key.src as u32);
        let dst = Ipv4Addr::from(parsed.key.dst as u32);
        let local_net = cfg.v4;
        if dst.is_broadcast()
            || local_net.is_some_and(|n| n.prefix_len() < 31 && n.broadcast() == dst)
            || dst.is_multicast()
        {
            // The link's broadcast/multicast (smoltcp ignores what it does not handle; a
            // 0.0.0.0 source, as in DHCP, is fine here). Multicast is never routed.
            return self.deliver(cfg.port, frame);
        }
        if martian_v4(src) || src.is_unspecified() || self.owns(IpAddr::V4(src)) {
            return RouteAction::Drop(DropReason::MartianAddress);
        }
        if local_net.is_some_and(|n| n.addr() == dst) {
            return self.deliver(cfg.port, frame);
        }
        if martian_v4(dst) || dst.is_unspecified() || !to_us {
            return RouteAction::Drop(if to_us {
                DropReason::MartianAddress
            } else {
                DropReason::NotForGateway
            });
        }
        if self.owns(IpAddr::V4(dst)) {
            // Another port's address: only the ingress port's stack answers (documented).
            return RouteAction::Drop(DropReason::MartianAddress);
        }
        let l3 = parsed.l3_offset;
        if rewrite::hop_limit(&frame[l3..], false) <= 1 {
            self.time_exceeded(cfg, frame, parsed, now);
            return RouteAction::Drop(DropReason::TtlExceeded);
        }
        let Some((prefix, hop)) = self.routes.lookup_v4(dst) else {
            return RouteAction::Drop(DropReason::NoRoute);
        };
        let hop = *hop;
        // A directed broadcast to another connected subnet is not forwarded (RFC 2644).
        if hop.via.is_none() && prefix.prefix_len() < 31 && prefix.broadcast() == dst {
            return RouteAction::Drop(DropReason::MartianAddress);
        }
        let next = hop.via.unwrap_or(IpAddr::V4(dst));
        self.forward(frame, l3, false, hop.port, next, now)
    }

    fn route_v6(
        &mut self,
        cfg: &RoutedPort,
        frame: &mut [u8],
        parsed: &ParsedPacket,
        to_us: bool,
        now: u64,
    ) -> RouteAction {
        let src = Ipv6Addr::from(parsed.key.src);
        let dst = Ipv6Addr::from(parsed.key.dst);
        if dst.is_multicast() {
            // Link-scope multicast (neighbour discovery, all-nodes) goes to the stack, whatever
            // the source (duplicate address detection sends from ::); the gateway routes no
            // multicast.
            if dst.segments()[0] & 0xff0f != 0xff02 {
                return RouteAction::Drop(DropReason::MartianAddress);
            }
            self.learn_ndisc(cfg, frame, parsed, now);
            return self.deliver(cfg.port, frame);
        }
        if martian_v6(src) || self.owns(IpAddr::V6(src)) {
            return RouteAction::Drop(DropReason::MartianAddress);
        }
        if !to_us {
            return RouteAction::Drop(DropReason::NotForGateway);
        }
        if cfg.v6.is_some_and(|n| n.addr() == dst) {
            self.learn_ndisc(cfg, frame, parsed, now);
            return self.deliver(cfg.port, frame);
        }
        // Link-local addresses are never forwarded (RFC 4291 §2.5.6), in either position.
        if martian_v6(dst)
            || is_link_local_v6(dst)
            || is_link_local_v6(src)
            || self.owns(IpAddr::V6(dst))
        {
            return RouteAction::Drop(DropReason::MartianAddress);
        }
        let l3 = parsed.l3_offset;
        if rewrite::hop_limit(&frame[l3..], true) <= 1 {
            self.time_exceeded(cfg, frame, parsed, now);
            return RouteAction::Drop(DropReason::TtlExceeded);
        }
        let Some((_, hop)) = self.routes.lookup_v6(dst) else {
            return RouteAction::Drop(DropReason::NoRoute);
        };
        let hop = *hop;
        let next = hop.via.unwrap_or(IpAddr::V6(dst));
        self.forward(frame, l3, true, hop.port, next, now)
    }

    /// Resolve `next` and rewrite the frame for `egress`.
    #[inline]
    fn forward(
        &mut self,
        frame: &mut [u8],
        l3: usize,
        v6: bool,
        egress: PortId,
        next: IpAddr,
        now: u64,
    ) -> RouteAction {
        let key = ip_key(next);
        let Some(Some(out)) = self.ports.get(usize::from(egress)) else {
            return RouteAction::Drop(DropReason::NoRoute);
        };
        let egress_mac = out.cfg.mac;
        match self.neighbours.lookup(key, v6) {
            Some(n) => {
                if now.saturating_sub(n.confirmed) > self.neighbour_refresh {
                    // Still used while a fresh answer is asked for.
                    self.solicit(egress, next, now);
                }
                rewrite::set_macs(frame, n.mac, egress_mac);
                if v6 {
                    rewrite::decrement_ipv6_hop_limit(&mut frame[l3..]);
                } else {
                    rewrite::decrement_ipv4_ttl(&mut frame[l3..]);
                }
                RouteAction::Forward { port: egress }
            }
            None => {
                self.solicit(egress, next, now);
                RouteAction::Drop(DropReason::NeighbourUnresolved)
            }
        }
    }

    /// Queue an ARP request / neighbour solicitation for `target` on `port`, at most one per
    /// address per solicitation interval.
    fn solicit(&mut self, port: PortId, target: IpAddr, now: u64) {
        let v6 = target.is_ipv6();
        if !self
            .neighbours
            .should_solicit(ip_key(target), v6, port, now, self.solicit_interval)
        {
            return;
        }
        let Some(Some(ps)) = self.ports.get_mut(usize::from(port)) else {
            return;
        };
        let mac = ps.cfg.mac;
        let queued = match (target, ps.cfg.v4, ps.cfg.v6) {
            (IpAddr::V4(t), Some(own), _) => ps
                .stack
                .dev
                .tx
                .push_built(|b| icmp::arp_request(b, mac, own.addr(), t)),
            (IpAddr::V6(t), _, Some(own)) => ps
                .stack
                .dev
                .tx
                .push_built(|b| icmp::neighbour_solicit(b, mac, own.addr(), t)),
            _ => return,
        };
        if queued {
            self.stats.solicitations += 1;
        } else {
            self.stats.tx_ring_full += 1;
        }
    }

    /// Queue a time-exceeded error for the packet in `frame` back to its sender, unless RFC
    /// 1812 §4.3.2.7 forbids one (ICMP errors, non-first fragments) or the rate limit is spent.
    fn time_exceeded(&mut self, cfg: &RoutedPort, frame: &[u8], parsed: &ParsedPacket, now: u64) {
        let v6 = parsed.l3 == L3::Ipv6;
        let is_error = match (v6, parsed.key.proto) {
            // The parser puts the ICMP type in `sport`.
            (false, IPPROTO_ICMP) => matches!(parsed.key.sport, 3 | 4 | 5 | 11 | 12),
            (true, IPPROTO_ICMPV6) => parsed.key.sport < 128,
            _ => false,
        };
        if is_error || parsed.fragment == Fragment::NonFirst {
            return;
        }
        let own = if v6 {
            cfg.v6.map(|n| IpAddr::V6(n.addr()))
        } else {
            cfg.v4.map(|n| IpAddr::V4(n.addr()))
        };
        let Some(own) = own else {
            self.stats.icmp_suppressed += 1;
            return;
        };
        if !self.icmp_limit.take(now) {
            self.stats.icmp_suppressed += 1;
            return;
        }
        let Some(Some(ps)) = self.ports.get_mut(usize::from(cfg.port)) else {
            return;
        };
        // Back to the previous hop the packet came from (its source MAC), from our MAC.
        let prev: [u8; 6] = [frame[6], frame[7], frame[8], frame[9], frame[10], frame[11]];
        let orig = &frame[parsed.l3_offset..parsed.l3_end.min(frame.len())];
        let mac = cfg.mac;
        let queued = match own {
            IpAddr::V4(a) => {
                let to = Ipv4Addr::from(parsed.key.src as u32);
                ps.stack
                    .dev
                    .tx
                    .push_built(|b| icmp::time_exceeded_v4(b, prev, mac, a, to, orig))
            }
            IpAddr::V6(a) => {
                let to = Ipv6Addr::from(parsed.key.src);
                ps.stack
                    .dev
                    .tx
                    .push_built(|b| icmp::time_exceeded_v6(b, prev, mac, a, to, orig))
            }
        };
        if queued {
            self.stats.icmp_errors += 1;
        } else {
            self.stats.tx_ring_full += 1;
        }
    }

    /// Learn the sender of an ARP request or reply, if it is on this port's subnet.
    fn learn_arp(&mut self, cfg: &RoutedPort, frame: &[u8], parsed: &ParsedPacket, now: u64) {
        let Some(net) = cfg.v4 else { return };
        let Ok(arp) = ArpPacket::new_checked(&frame[parsed.l3_offset..]) else {
            return;
        };
        let Ok(ArpRepr::EthernetIpv4 {
            source_hardware_addr,
            source_protocol_addr,
            ..
        }) = ArpRepr::parse(&arp)
        else {
            return;
        };
        if net.contains(&source_protocol_addr)
            && source_protocol_addr != net.addr()
            && source_hardware_addr.is_unicast()
        {
            self.neighbours.learn(
                u128::from(u32::from(source_protocol_addr)),
                false,
                source_hardware_addr.0,
                cfg.port,
                now,
            );
            self.stats.neighbours_learnt += 1;
        }
    }

    /// Learn from a neighbour solicitation (its source link-layer option) or advertisement
    /// (its target link-layer option, else the Ethernet source), if the address is on this
    /// port's subnet.
    fn learn_ndisc(&mut self, cfg: &RoutedPort, frame: &[u8], parsed: &ParsedPacket, now: u64) {
        let Some(net) = cfg.v6 else { return };
        if parsed.key.proto != IPPROTO_ICMPV6 {
            return;
        }
        let ty = parsed.key.sport as u8;
        if ty != ICMPV6_NS && ty != ICMPV6_NA {
            return;
        }
        let Some(l4) = parsed.l4_offset else { return };
        let Some(bytes) = frame.get(l4..parsed.l3_end) else {
            return;
        };
        let Ok(pkt) = Icmpv6Packet::new_checked(bytes) else {
            return;
        };
        let eth_src: [u8; 6] = [frame[6], frame[7], frame[8], frame[9], frame[10], frame[11]];
        let mac_of =
            |ll: smoltcp::wire::RawHardwareAddress| <[u8; 6]>::try_from(ll.as_bytes()).ok();
        let (ip, mac) = match NdiscRepr::parse(&pkt) {
            Ok(NdiscRepr::NeighborSolicit {
                lladdr: Some(ll), ..
            }) => (Ipv6Addr::from(parsed.key.src), mac_of(ll)),
            Ok(NdiscRepr::NeighborAdvert {
                target_addr,
                lladdr,
                ..
            }) => (target_addr, lladdr.map_or(Some(eth_src), mac_of)),
            _ => return,
        };
        let Some(mac) = mac else {
            return;
        };
        if net.contains(&ip) && ip != net.addr() && mac[0] & 1 == 0 {
            self.neighbours
                .learn(u128::from(ip), true, mac, cfg.port, now);
            self.stats.neighbours_learnt += 1;
        }
    }

    fn owns(&self, ip: IpAddr) -> bool {
        self.ports.iter().flatten().any(|p| match ip {
            IpAddr::V4(a) => p.cfg.v4.is_some_and(|n| n.addr() == a),
            IpAddr::V6(a) => p.cfg.v6.is_some_and(|n| n.addr() == a),
        })
    }

    /// Run the gateway's stacks over the frames [`RouteAction::Local`] queued (ARP and
    /// neighbour-discovery answers, echo replies), and publish the counters when
    /// [`crate::counters::PUBLISH_US`] have passed since the last time ([`Self::shared_stats`]).
    /// Call once per poll, before [`Router::drain_tx`]; returns at once when nothing is queued
    /// and no publication is due.
    pub fn poll(&mut self, now: u64) {
        for ps in self.ports.iter_mut().flatten() {
            let answers = ps.stack.poll(now);
            let tx = &ps.stack.dev.tx;
            // The stack only appends: its answers are the last `answers` frames of the ring.
            for i in tx.len() - answers..tx.len() {
                match tx.get(i).map(icmp::classify_answer) {
                    Some(icmp::Answer::EchoReply) => self.stats.echo_replies += 1,
                    Some(icmp::Answer::ArpReply) => self.stats.arp_replies += 1,
                    Some(icmp::Answer::NeighbourAdvert) => self.stats.neighbour_adverts += 1,
                    Some(icmp::Answer::Other) | None => {}
                }
            }
        }
        self.publish(now);
    }

    /// The counters into [`Self::shared_stats`] now, due or not (at stop: the counts of the
    /// last interval too).
    pub fn publish_now(&mut self, now: u64) {
        self.publish_timer.force();
        self.publish(now);
    }

    #[inline]
    fn publish(&mut self, now: u64) {
        if self.publish_timer.due(now, crate::counters::PUBLISH_US) {
            let s = self.stats;
            self.shared.0.store(&[
                s.local,
                s.icmp_errors,
                s.icmp_suppressed,
                s.solicitations,
                s.tx_ring_full,
                s.neighbours_learnt,
                s.echo_replies,
                s.arp_replies,
                s.neighbour_adverts,
                // Walks the table (1024 slots by default): fine once per publication.
                self.neighbours.len() as u64,
                self.neighbours.capacity() as u64,
            ]);
        }
    }

    /// Hand the frames waiting for `port` to `send`, oldest first, until it returns `false`
    /// (no transmit buffer: the frame stays queued for the next call). Returns how many were
    /// taken.
    pub fn drain_tx(&mut self, port: PortId, mut send: impl FnMut(&[u8]) -> bool) -> usize {
        let Some(Some(ps)) = self.ports.get_mut(usize::from(port)) else {
            return 0;
        };
        let ring = &mut ps.stack.dev.tx;
        let mut sent = 0;
        while let Some(frame) = ring.front() {
            if !send(frame) {
                break;
            }
            ring.pop();
            sent += 1;
        }
        sent
    }
}

/// Reject an address that is the subnet's network or broadcast address, or a martian.
fn check_address(port: PortId, net: IpNet) -> Result<(), RouteError> {
    let bad = match net {
        IpNet::V4(n) => {
            martian_v4(n.addr())
                || n.addr().is_multicast()
                || n.addr().is_broadcast()
                || n.addr().is_unspecified()
                || (n.prefix_len() < 31 && (n.addr() == n.network() || n.addr() == n.broadcast()))
        }
        IpNet::V6(n) => {
            martian_v6(n.addr())
                || n.addr().is_multicast()
                || is_link_local_v6(n.addr())
                || n.prefix_len() == 0
        }
    };
    if bad {
        Err(RouteError::BadAddress { port, addr: net })
    } else {
        Ok(())
    }
}

/// IPv4 addresses never routed, as source or destination (RFC 1812 §5.3.7, RFC 3927, RFC 6890):
/// 0.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16 link-local, 240.0.0.0/4 reserved (the parser already
/// drops multicast and limited-broadcast sources).
fn martian_v4(a: Ipv4Addr) -> bool {
    let o = a.octets();
    o[0] == 0 || o[0] == 127 || (o[0] == 169 && o[1] == 254) || (o[0] >= 240 && !a.is_broadcast())
}

/// IPv6 addresses never routed: unspecified, loopback, IPv4-mapped (RFC 4291 §2.5), and (as
/// source) multicast, which the parser drops.
fn martian_v6(a: Ipv6Addr) -> bool {
    a.is_unspecified() || a.is_loopback() || a.to_ipv4_mapped().is_some()
}

fn is_link_local_v6(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

fn ip_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}
