//! The flow key: the header fields a rule can match on, extracted once per packet by the data plane.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Address family of a [`FlowKey`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Family {
    /// IPv4: addresses live in the low 32 bits of the `u128` fields.
    #[default]
    V4 = 4,
    /// IPv6: the full 128 bits, network byte order read as a big-endian integer.
    V6 = 6,
}

/// The fields a rule matches on, in host order, as plain integers so that lookups are branch-light.
///
/// * Addresses are `u128`; an IPv4 address occupies the low 32 bits (`family == V4`).
/// * For TCP, UDP and SCTP `sport`/`dport` are the transport ports. For ICMP and ICMPv6, `sport`
///   holds the message type and `dport` the code, so a rule can name ICMP message types. For other
///   protocols, and for non-first fragments, both are 0.
/// * `vlan` is the outermost 802.1Q VLAN id (0 when untagged); `in_port` the receiving port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// Source address.
    pub src: u128,
    /// Destination address.
    pub dst: u128,
    /// Source port (TCP/UDP/SCTP) or ICMP type.
    pub sport: u16,
    /// Destination port (TCP/UDP/SCTP) or ICMP code.
    pub dport: u16,
    /// IP protocol number (IPv6: the upper-layer protocol after the extension headers).
    pub proto: u8,
    /// Address family.
    pub family: Family,
    /// Outermost VLAN id, 0 when untagged.
    pub vlan: u16,
    /// Receiving port index.
    pub in_port: u16,
}

impl FlowKey {
    /// A key for an IPv4 flow.
    pub fn v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, sport: u16, dport: u16) -> Self {
        FlowKey {
            src: u128::from(u32::from(src)),
            dst: u128::from(u32::from(dst)),
            sport,
            dport,
            proto,
            family: Family::V4,
            vlan: 0,
            in_port: 0,
        }
    }

    /// A key for an IPv6 flow.
    pub fn v6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, sport: u16, dport: u16) -> Self {
        FlowKey {
            src: u128::from(src),
            dst: u128::from(dst),
            sport,
            dport,
            proto,
            family: Family::V6,
            vlan: 0,
            in_port: 0,
        }
    }

    /// The source address as a standard-library address.
    pub fn src_addr(&self) -> IpAddr {
        self.addr(self.src)
    }

    /// The destination address as a standard-library address.
    pub fn dst_addr(&self) -> IpAddr {
        self.addr(self.dst)
    }

    /// The same flow seen from the other direction (addresses and ports swapped).
    pub fn reversed(&self) -> Self {
        FlowKey {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            ..*self
        }
    }

    fn addr(&self, raw: u128) -> IpAddr {
        match self.family {
            // Truncation is intended: a V4 key keeps its address in the low 32 bits.
            Family::V4 => IpAddr::V4(Ipv4Addr::from(raw as u32)),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(raw)),
        }
    }
}

impl std::fmt::Display for FlowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (s, d) = (self.src_addr(), self.dst_addr());
        match self.family {
            Family::V4 => write!(
                f,
                "{s}:{} -> {d}:{} proto {}",
                self.sport, self.dport, self.proto
            ),
            Family::V6 => write!(
                f,
                "[{s}]:{} -> [{d}]:{} proto {}",
                self.sport, self.dport, self.proto
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_round_trips_and_reverses() {
        let k = FlowKey::v4(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 1, 2),
            6,
            40000,
            443,
        );
        assert_eq!(k.src_addr(), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        let r = k.reversed();
        assert_eq!((r.sport, r.dport), (443, 40000));
        assert_eq!(r.reversed(), k);
        assert_eq!(k.to_string(), "10.0.0.1:40000 -> 10.0.1.2:443 proto 6");
    }

    #[test]
    fn v6_display_brackets_addresses() {
        let k = FlowKey::v6(Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED, 17, 53, 5353);
        assert_eq!(k.to_string(), "[::1]:53 -> [::]:5353 proto 17");
    }
}
