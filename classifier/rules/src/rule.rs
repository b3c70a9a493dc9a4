//! The rule IR: an ordered list of [`Rule`]s, first match wins.
//!
//! These are plain data types. Nothing here is validated on construction: [`crate::compile`] checks
//! every rule and names the offending rule index and field in its [`crate::CompileError`].

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::key::{Family, FlowKey};

/// Stable identifier of a rule, chosen by whoever builds the rule list (the control plane).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(pub u32);

/// Identifier of an L7 inspection hook (a conduit check that later issues register).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HookId(pub u32);

/// Opaque handle back to the policy clause a rule came from, used to explain decisions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceRef(pub u64);

/// What happens to a flow that a rule matches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Action {
    /// Forward the flow.
    Allow,
    /// Drop the flow.
    #[default]
    Deny,
    /// Forward the flow through the L7 inspection hook.
    Inspect(HookId),
}

/// Whether a rule's action is enforced or only reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Apply the action.
    #[default]
    Enforce,
    /// Log what the action would have done; forward the flow.
    Monitor,
}

/// An IPv4 or IPv6 prefix. `addr` uses the [`FlowKey`] convention: IPv4 in the low 32 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    /// Address family of the prefix.
    pub family: Family,
    /// Network address; bits beyond `len` must be zero.
    pub addr: u128,
    /// Prefix length: 0..=32 for IPv4, 0..=128 for IPv6.
    pub len: u8,
}

impl Prefix {
    /// An IPv4 prefix (not validated; see [`Prefix::is_valid`]).
    pub fn v4(addr: Ipv4Addr, len: u8) -> Self {
        Prefix {
            family: Family::V4,
            addr: u128::from(u32::from(addr)),
            len,
        }
    }

    /// An IPv6 prefix (not validated; see [`Prefix::is_valid`]).
    pub fn v6(addr: Ipv6Addr, len: u8) -> Self {
        Prefix {
            family: Family::V6,
            addr: u128::from(addr),
            len,
        }
    }

    /// Address width in bits of the prefix's family.
    pub fn width(&self) -> u8 {
        match self.family {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    /// True when the length fits the family and no bit beyond the length is set.
    pub fn is_valid(&self) -> bool {
        if self.len > self.width() {
            return false;
        }
        let (lo, hi) = self.range_unchecked();
        lo == self.addr && hi >= lo
    }

    /// The first and last address covered, in the [`FlowKey`] convention. Host bits are ignored.
    pub fn range(&self) -> (u128, u128) {
        self.range_unchecked()
    }

    fn range_unchecked(&self) -> (u128, u128) {
        let width = u32::from(self.width());
        let len = u32::from(self.len).min(width);
        let family_mask = if width == 128 {
            u128::MAX
        } else {
            (1u128 << width) - 1
        };
        let host = family_mask.checked_shr(len).unwrap_or(0);
        let net = self.addr & family_mask & !host;
        (net, net | host)
    }

    /// True when `addr` of family `family` lies in the prefix (IPv4 uses the low 32 bits).
    pub fn contains(&self, family: Family, addr: u128) -> bool {
        if family != self.family {
            return false;
        }
        let addr = match family {
            Family::V4 => addr & u128::from(u32::MAX),
            Family::V6 => addr,
        };
        let (lo, hi) = self.range_unchecked();
        lo <= addr && addr <= hi
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.family {
            // Truncation is intended: IPv4 lives in the low 32 bits.
            Family::V4 => write!(f, "{}/{}", Ipv4Addr::from(self.addr as u32), self.len),
            Family::V6 => write!(f, "{}/{}", Ipv6Addr::from(self.addr), self.len),
        }
    }
}

/// An address condition: anything, or any prefix of a set (a zone).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum AddrMatch {
    /// Every address of either family.
    #[default]
    Any,
    /// Addresses inside at least one of the prefixes. An empty set never matches (rejected).
    Prefixes(Vec<Prefix>),
}

impl AddrMatch {
    /// A single-prefix condition.
    pub fn prefix(p: Prefix) -> Self {
        AddrMatch::Prefixes(vec![p])
    }

    /// True when the address satisfies the condition.
    pub fn matches(&self, family: Family, addr: u128) -> bool {
        match self {
            AddrMatch::Any => true,
            AddrMatch::Prefixes(ps) => ps.iter().any(|p| p.contains(family, addr)),
        }
    }
}

/// An inclusive port range (or ICMP type/code range, see [`FlowKey`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    /// First value, inclusive.
    pub lo: u16,
    /// Last value, inclusive; `lo <= hi` is required.
    pub hi: u16,
}

impl PortRange {
    /// Every port.
    pub const ANY: PortRange = PortRange {
        lo: 0,
        hi: u16::MAX,
    };

    /// Exactly one port.
    pub const fn exact(port: u16) -> Self {
        PortRange { lo: port, hi: port }
    }

    /// True when `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }
}

impl Default for PortRange {
    fn default() -> Self {
        PortRange::ANY
    }
}

/// One rule of an ordered policy. Every condition must hold for the rule to match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Rule {
    /// Identifier reported in decisions; unique within a rule list.
    pub id: RuleId,
    /// Source address condition.
    pub src: AddrMatch,
    /// Destination address condition.
    pub dst: AddrMatch,
    /// Source port range.
    pub sport: PortRange,
    /// Destination port range.
    pub dport: PortRange,
    /// IP protocol number, `None` for any.
    pub proto: Option<u8>,
    /// Receiving port, `None` for any.
    pub in_port: Option<u16>,
    /// Outermost VLAN id, `None` for any (0 = untagged).
    pub vlan: Option<u16>,
    /// What to do on a match.
    pub action: Action,
    /// Enforce or only monitor.
    pub mode: Mode,
    /// Back-reference to the policy clause.
    pub source: SourceRef,
}

impl Rule {
    /// A rule matching everything with the given id and action; narrow it by setting fields.
    pub fn any(id: u32, action: Action) -> Self {
        Rule {
            id: RuleId(id),
            action,
            ..Rule::default()
        }
    }

    /// True when the key satisfies every condition (the definition the compiler must agree with).
    pub fn matches(&self, key: &FlowKey) -> bool {
        self.src.matches(key.family, key.src)
            && self.dst.matches(key.family, key.dst)
            && self.sport.contains(key.sport)
            && self.dport.contains(key.dport)
            && self.proto.is_none_or(|p| p == key.proto)
            && self.in_port.is_none_or(|p| p == key.in_port)
            && self.vlan.is_none_or(|v| v == key.vlan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_validity_and_containment() {
        let p = Prefix::v4(Ipv4Addr::new(10, 1, 0, 0), 16);
        assert!(p.is_valid());
        assert!(p.contains(
            Family::V4,
            u128::from(u32::from(Ipv4Addr::new(10, 1, 200, 3)))
        ));
        assert!(!p.contains(
            Family::V4,
            u128::from(u32::from(Ipv4Addr::new(10, 2, 0, 0)))
        ));
        assert!(!p.contains(Family::V6, 0x0a01_0000));
        assert!(!Prefix::v4(Ipv4Addr::new(10, 1, 0, 1), 16).is_valid());
        assert!(!Prefix::v4(Ipv4Addr::new(10, 1, 0, 0), 33).is_valid());
        assert!(Prefix::v4(Ipv4Addr::UNSPECIFIED, 0).is_valid());
        assert!(Prefix::v6(Ipv6Addr::UNSPECIFIED, 0).is_valid());
        assert!(Prefix::v6(Ipv6Addr::LOCALHOST, 128).is_valid());
        assert_eq!(Prefix::v6(Ipv6Addr::UNSPECIFIED, 0).range(), (0, u128::MAX));
        assert_eq!(p.to_string(), "10.1.0.0/16");
    }

    #[test]
    fn v4_keys_ignore_high_bits() {
        let p = Prefix::v4(Ipv4Addr::new(10, 0, 0, 0), 8);
        assert!(p.contains(Family::V4, (7u128 << 64) | 0x0a00_0001));
    }
}
