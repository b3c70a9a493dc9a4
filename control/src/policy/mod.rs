//! The policy model: zones, conduits, services and modes (ARCHITECTURE.md §4).
//!
//! Text becomes a [`ValidatedPolicy`] in two steps: [`parse_policy`] turns YAML or JSON into the serde
//! DTOs of [`dto`] (unknown fields are errors), and [`validate`] checks every rule and resolves
//! names, returning *every* problem with its path. Only a `ValidatedPolicy` reaches the compiler;
//! it cannot be built any other way.
//!
//! # Semantics and precedence
//!
//! A flow (source address, destination address, protocol, ports) is decided by the first clause
//! that matches, in this order:
//!
//! 1. **Explicit denies.** Conduits with `action: deny`, in document order. A deny always beats an
//!    allow, wherever the allow is written.
//! 2. **Allows.** Conduits with `action: allow`, in document order. A service with an `l7`
//!    constraint yields *inspect* (forward only through the L7 check), never a plain allow.
//! 3. **Zone defaults.** A flow no conduit matched that touches (as source or destination) a zone
//!    in `monitor` mode is denied in monitor mode, named after the first such zone in document
//!    order; when `defaults.mode` is `monitor`, one that touches a zone in `enforce` mode is then
//!    denied in enforce mode.
//! 4. **The default deny**, with `defaults.mode`.
//!
//! A conduit matches when the source is in one of its `from` zones, the destination in one of its
//! `to` zones and one service matches. Within a conduit, the zone pairs are tried in the order
//! `from × to` as written, then the services as written; the first match names the clause.
//! `any` is the zone of every address (`0.0.0.0/0` and `::/0`). Zones may overlap.
//!
//! A service matches on protocol (`tcp` 6, `udp` 17, `icmp` 1 for IPv4 and 58 for IPv6, `any`),
//! destination ports (`ports`), source ports (`sourcePorts`) and ICMP types (`icmpTypes`, carried
//! in the flow key's source port); an empty list matches everything.
//!
//! **Modes.** `enforce` applies the action; `monitor` forwards the flow and reports what the action
//! would have been. A zone's mode is its own `mode` or `defaults.mode`. A conduit's mode is its own
//! `mode` when written; otherwise `monitor` if either zone of the matching pair is in monitor
//! mode, else `enforce` (`any` contributes `defaults.mode` only when both sides are `any`).
//!
//! **Staged** policies are revisions stored but not published (see [`crate::lifecycle`]); they
//! can be evaluated with [`crate::decide()`] before they are enforced.

pub mod dto;
mod l7;
mod parse;
mod validate;
pub(crate) mod yaml_fast;

use ipnet::IpNet;
use septa_classifier::{Mode, PortRange};

pub use dto::{ConduitAction, PolicyDocument, ProtoName};
pub use l7::L7Rule;
pub use parse::{Format, YamlLocator, parse_document, parse_policy, parse_policy_value};
pub use validate::validate;

/// The reserved zone name for "every address".
pub const ANY_ZONE: &str = "any";

/// A policy whose every field has been checked and every name resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedPolicy {
    doc: PolicyDocument,
    default_mode: Mode,
    zones: Vec<Zone>,
    conduits: Vec<Conduit>,
}

/// A resolved zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    /// Its name.
    pub name: String,
    /// Its mode (`mode` or `defaults.mode`).
    pub mode: Mode,
    /// Every prefix of the zone, sorted, without duplicates.
    pub prefixes: Vec<IpNet>,
}

/// A zone named by a conduit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ZoneRef {
    /// `any`: every address.
    Any,
    /// Index into [`ValidatedPolicy::zones`].
    Zone(usize),
}

/// A resolved conduit.
#[derive(Clone, Debug, PartialEq)]
pub struct Conduit {
    /// Its name.
    pub name: String,
    /// Its position in `spec.conduits`.
    pub index: usize,
    /// Source zones.
    pub from: Vec<ZoneRef>,
    /// Destination zones.
    pub to: Vec<ZoneRef>,
    /// Allow or deny.
    pub action: ConduitAction,
    /// Explicit mode, if written.
    pub mode: Option<Mode>,
    /// Services, at least one.
    pub services: Vec<Service>,
}

/// A resolved service.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    /// Protocol.
    pub proto: ProtoName,
    /// Destination port ranges; empty = every port.
    pub ports: Vec<PortRange>,
    /// Source port ranges; empty = every port.
    pub source_ports: Vec<PortRange>,
    /// ICMP types; empty = every type.
    pub icmp_types: Vec<u8>,
    /// L7 constraint (function-code conduit); a service with one compiles to inspect.
    pub l7: Option<L7Rule>,
}

impl ValidatedPolicy {
    /// The document it was validated from.
    pub fn document(&self) -> &PolicyDocument {
        &self.doc
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        &self.doc.metadata.name
    }

    /// `defaults.mode`.
    pub fn default_mode(&self) -> Mode {
        self.default_mode
    }

    /// Zones in document order.
    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    /// Conduits in document order.
    pub fn conduits(&self) -> &[Conduit] {
        &self.conduits
    }

    /// The canonical JSON form: the document re-serialised (sorted maps, empty lists omitted).
    /// Revision hashes are computed over these bytes.
    pub fn canonical_json(&self) -> Vec<u8> {
        // Serialising plain DTOs to a Vec cannot fail.
        serde_json::to_vec(&self.doc).unwrap_or_default()
    }

    /// sha256 (hex) of [`Self::canonical_json`]: the revision hash this policy gets when stored.
    pub fn content_hash(&self) -> String {
        crate::audit::record::sha256_hex(&self.canonical_json())
    }

    /// Prefixes of a zone reference (`any` = both default routes).
    pub fn prefixes(&self, z: ZoneRef) -> Vec<IpNet> {
        match z {
            ZoneRef::Any => vec![any_v4(), any_v6()],
            ZoneRef::Zone(i) => self.zones[i].prefixes.clone(),
        }
    }

    /// Name of a zone reference.
    pub fn zone_name(&self, z: ZoneRef) -> &str {
        match z {
            ZoneRef::Any => ANY_ZONE,
            ZoneRef::Zone(i) => &self.zones[i].name,
        }
    }

    /// The mode of a conduit for one (from, to) zone pair (see the module docs).
    pub fn pair_mode(&self, c: &Conduit, from: ZoneRef, to: ZoneRef) -> Mode {
        if let Some(m) = c.mode {
            return m;
        }
        let zone_mode = |z: ZoneRef| match z {
            ZoneRef::Any => None,
            ZoneRef::Zone(i) => Some(self.zones[i].mode),
        };
        match (zone_mode(from), zone_mode(to)) {
            (None, None) => self.default_mode,
            (a, b) => {
                if a == Some(Mode::Monitor) || b == Some(Mode::Monitor) {
                    Mode::Monitor
                } else {
                    Mode::Enforce
                }
            }
        }
    }
}

pub(crate) fn any_v4() -> IpNet {
    IpNet::V4(ipnet::Ipv4Net::new_assert(
        std::net::Ipv4Addr::UNSPECIFIED,
        0,
    ))
}

pub(crate) fn any_v6() -> IpNet {
    IpNet::V6(ipnet::Ipv6Net::new_assert(
        std::net::Ipv6Addr::UNSPECIFIED,
        0,
    ))
}
