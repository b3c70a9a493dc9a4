//! The one table of drop reasons (Cilium `drop_reasons`, VPP error counters).
//!
//! Every packet the data plane drops is counted under exactly one of these. Numeric values and
//! names are a stable contract shared by counters, replay output, the API and metrics: never
//! renumber or rename a variant, only append.

use std::fmt;

macro_rules! drop_reasons {
    ($( $(#[doc = $doc:literal])+ $variant:ident = $value:literal => $name:literal, )+) => {
        /// Why a packet was dropped. `#[repr(u16)]`, values start at 1 so that 0 can mean
        /// "not dropped" in compact encodings.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u16)]
        pub enum DropReason {
            $( $(#[doc = $doc])+ $variant = $value, )+
        }

        impl DropReason {
            /// Every reason, in numeric order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)+];

            /// Stable snake_case name used in counters, JSON and metrics labels.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $name,)+
                }
            }

            /// One-line description for humans (the doc line of the variant).
            pub const fn description(self) -> &'static str {
                match self {
                    $(DropReason::$variant => concat!($($doc),+),)+
                }
            }
        }
    };
}

drop_reasons! {
    /// Frame ends before a length its headers declare (Ethernet, VLAN tag, ARP, IP header or IP total length).
    Truncated = 1 => "truncated",
    /// Ethernet header invalid: multicast or broadcast source MAC address.
    MalformedL2 = 2 => "malformed_l2",
    /// More than two stacked VLAN tags (only 802.1Q and QinQ are supported).
    VlanTooDeep = 3 => "vlan_too_deep",
    /// ARP packet that is not Ethernet/IPv4 ARP (hardware/protocol type or address length).
    MalformedArp = 4 => "malformed_arp",
    /// IPv4 header invalid: version, IHL below 5, total length below header length, multicast or broadcast source.
    MalformedIpv4 = 5 => "malformed_ipv4",
    /// IPv4 header checksum does not verify.
    Ipv4Checksum = 6 => "ipv4_checksum",
    /// IPv6 header invalid: version, multicast source, misplaced hop-by-hop or repeated fragment header, extension header overrunning the payload.
    MalformedIpv6 = 7 => "malformed_ipv6",
    /// IPv6 extension header chain longer than the parser's bound.
    Ipv6ExtChainTooLong = 8 => "ipv6_ext_chain_too_long",
    /// TCP, UDP, ICMP or SCTP header does not fit in the IP payload, or its length fields are inconsistent.
    MalformedL4 = 9 => "malformed_l4",
    /// First fragment too short to hold the transport header (RFC 1858, RFC 7112), or IPv4 TCP fragment at offset 8 overwriting the header.
    TinyFragment = 10 => "tiny_fragment",
    /// Denied by the policy decision.
    Policy = 11 => "policy",
    /// The transmit port did not take the packet (queue full or backend write error).
    TxFull = 12 => "tx_full",
    /// Received on a port that has no bridge peer, so there is nowhere to send it.
    NoPeerPort = 13 => "no_peer_port",
    /// New flow refused: the flow table is full of established flows and no half-open flow can be evicted.
    FlowTableFull = 14 => "flow_table_full",
    /// TCP segment outside the tracked sequence/acknowledgement window (data, ACK or RST), or a SYN-ACK that does not acknowledge the SYN.
    TcpOutOfWindow = 15 => "tcp_out_of_window",
    /// TCP flag combination no valid segment carries (e.g. SYN+FIN, SYN+RST, FIN without ACK, no SYN/ACK/RST at all).
    TcpInvalidFlags = 16 => "tcp_invalid_flags",
    /// TCP segment with no tracked connection that is not a connection-opening SYN (data or ACK before any handshake).
    TcpNoFlow = 17 => "tcp_no_flow",
    /// TCP segment not allowed in the connection's state (e.g. data before the handshake completes, SYN on an open or closing connection).
    TcpInvalidState = 18 => "tcp_invalid_state",
    /// ICMP/ICMPv6 error whose embedded packet belongs to no tracked flow, or is not addressed back to that packet's sender.
    IcmpErrorUnrelated = 19 => "icmp_error_unrelated",
    /// ICMP/ICMPv6 error too short to carry the embedded IP header and 8 bytes of its transport header.
    IcmpErrorMalformed = 20 => "icmp_error_malformed",
    /// ICMP/ICMPv6 echo reply with no tracked echo request.
    IcmpNoFlow = 21 => "icmp_no_flow",
    /// IP fragment overlapping (or duplicating) a fragment already seen of the same datagram (RFC 1858, RFC 5722).
    FragmentOverlap = 22 => "fragment_overlap",
    /// Non-first IP fragment with no tracked first fragment (Septa does not buffer out-of-order fragments).
    FragmentNoHead = 23 => "fragment_no_head",
    /// New fragmented datagram refused: the fragment-tracking table is full.
    FragmentTableFull = 24 => "fragment_table_full",
    /// IP fragment that would make the datagram larger than 65535 bytes (ping of death).
    FragmentOversize = 25 => "fragment_oversize",
    /// IP fragment with more following whose length is not a multiple of 8, data past the last fragment's end, or more disjoint pieces than tracked.
    FragmentInvalid = 26 => "fragment_invalid",
    /// Matched a conduit that requires L7 inspection, but no inspection hook is available, so the packet fails closed.
    L7Unavailable = 27 => "l7_unavailable",
    /// New flow refused because no policy is installed yet (fail-closed start; `dataplane.fail_open` admits them instead).
    NoPolicy = 28 => "no_policy",
    /// Routed mode: TTL or hop limit 1 or 0 on a packet to forward (a time-exceeded error is sent, rate-limited).
    TtlExceeded = 29 => "ttl_exceeded",
    /// Routed mode: no route (connected or static) covers the destination address.
    NoRoute = 30 => "no_route",
    /// Routed mode: the next hop's MAC address is not known yet (an ARP request or neighbour solicitation is sent, rate-limited).
    NeighbourUnresolved = 31 => "neighbour_unresolved",
    /// Routed mode: source or destination address that is never routed (RFC 1812 martians, loopback, link-local, unspecified, reserved, multicast beyond the link, directed broadcast, the gateway's own address as source, another port's gateway address).
    MartianAddress = 32 => "martian_address",
    /// Routed mode: frame not addressed to the gateway's MAC (nor broadcast/multicast), VLAN-tagged, or of an ethertype the gateway does not route.
    NotForGateway = 33 => "not_for_gateway",
    /// Routed mode: frame for the gateway's own stack (ARP, neighbour discovery, ping) dropped because the port's slow-path queue is full.
    GatewayQueueFull = 34 => "gateway_queue_full",
    /// L7 conduit: a message the conduit does not allow (function code, unit id, address range, DNP3 master, protocol); in enforce mode the whole flow is then blocked.
    L7Denied = 35 => "l7_denied",
    /// L7 conduit: a message that does not parse as the conduit's protocol, or a stream that could not be followed.
    L7Malformed = 36 => "l7_malformed",
}

impl DropReason {
    /// Number of reasons; counters size their arrays with it.
    pub const COUNT: usize = Self::ALL.len();

    /// Dense index into per-reason arrays (`0..COUNT`).
    #[inline]
    pub const fn index(self) -> usize {
        self as usize - 1
    }

    /// The reason with the given stable name.
    pub fn from_name(name: &str) -> Option<DropReason> {
        Self::ALL.iter().copied().find(|r| r.as_str() == name)
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for DropReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_dense_and_names_are_unique_snake_case() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r} out of order");
            assert_eq!(*r as u16 as usize, i + 1);
            let n = r.as_str();
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
            );
            assert_eq!(DropReason::from_name(n), Some(*r));
            assert!(!r.description().is_empty());
        }
        assert_eq!(DropReason::from_name("nope"), None);
    }

    #[test]
    fn stable_values() {
        assert_eq!(DropReason::Truncated as u16, 1);
        assert_eq!(DropReason::Policy as u16, 11);
        assert_eq!(DropReason::TxFull.as_str(), "tx_full");
    }
}
