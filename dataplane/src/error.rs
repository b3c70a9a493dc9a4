//! Typed errors of the data-plane crate. Nothing here is raised per packet: per-packet failures
//! are [`DropReason`](crate::DropReason)s and counters.

use std::path::PathBuf;

/// Errors of the pcap backend.
#[derive(Debug, thiserror::Error)]
pub enum PcapIoError {
    /// The file could not be opened or created.
    #[error("cannot open {0}: {1}")]
    Open(PathBuf, #[source] std::io::Error),
    /// The file is neither pcap nor pcapng.
    #[error("{0} is not a pcap or pcapng file")]
    NotPcap(PathBuf),
    /// The capture uses a link type other than Ethernet.
    #[error("{path}: unsupported link type {linktype} (only Ethernet captures are supported)")]
    LinkType {
        /// The file.
        path: PathBuf,
        /// The link type found, as pcap-file names it.
        linktype: String,
    },
    /// Reading or writing a record failed.
    #[error("pcap: {0}")]
    Pcap(#[source] pcap_file::PcapError),
    /// Flushing the output failed.
    #[error("writing output: {0}")]
    Io(#[source] std::io::Error),
}

/// Errors of the bridge configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BridgeError {
    /// A port was paired with itself.
    #[error("port {0} cannot be bridged to itself")]
    SelfPair(u16),
    /// A port appears in two pairs.
    #[error("port {0} is in more than one bridge pair")]
    Duplicate(u16),
    /// A port id is not below the port count.
    #[error("port {port} does not exist (the backend has {count} ports)")]
    NoSuchPort {
        /// The port named.
        port: u16,
        /// Ports available.
        count: u16,
    },
}

/// Errors of the offline (pcap replay) runtime.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Opening, reading or writing a capture failed.
    #[error(transparent)]
    Pcap(#[from] PcapIoError),
    /// The bridge could not be set up (a bug: the pcap backend always has two ports).
    #[error(transparent)]
    Bridge(#[from] BridgeError),
    /// The worker's connection-state settings are invalid.
    #[error(transparent)]
    State(#[from] StateConfigError),
}

/// Invalid connection-state configuration of a worker ([`crate::worker::StateConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StateConfigError {
    /// Flow table sizing or timers.
    #[error(transparent)]
    Flow(#[from] crate::flow::FlowConfigError),
    /// Fragment table sizing.
    #[error(transparent)]
    Frag(#[from] crate::frag::FragConfigError),
}

/// Invalid routed-mode configuration ([`crate::route::RouterConfig`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// A bound that must be positive is 0.
    #[error("routing: `{0}` must be at least 1")]
    Zero(&'static str),
    /// A port is listed twice.
    #[error("routing: port {0} is configured twice")]
    DuplicatePort(u16),
    /// A routed port has neither an IPv4 nor an IPv6 address.
    #[error("routing: port {0} needs an address or address6")]
    NoAddress(u16),
    /// A routed port's MAC is multicast or all-zero.
    #[error("routing: port {0} has a multicast or zero MAC address")]
    BadMac(u16),
    /// An address is the subnet's network/broadcast address, or is never routable.
    #[error(
        "routing: port {port}: {addr} cannot be a gateway address (network, broadcast, multicast, link-local or reserved)"
    )]
    BadAddress {
        /// The port.
        port: u16,
        /// The address with its prefix.
        addr: ipnet::IpNet,
    },
    /// Two ports' subnets overlap.
    #[error("routing: port {port}: subnet {prefix} overlaps {other} of port {other_port}")]
    Overlap {
        /// The port.
        port: u16,
        /// Its subnet.
        prefix: ipnet::IpNet,
        /// The overlapping subnet.
        other: ipnet::IpNet,
        /// Its port.
        other_port: u16,
    },
    /// A static route's prefix and next hop are of different families.
    #[error(
        "routing: route {prefix} via {via}: prefix and next hop are of different address families"
    )]
    FamilyMismatch {
        /// The prefix.
        prefix: ipnet::IpNet,
        /// The next hop.
        via: std::net::IpAddr,
    },
    /// A static route's next hop is in no connected subnet.
    #[error("routing: route {prefix} via {via}: the next hop is in no routed port's subnet")]
    ViaNotConnected {
        /// The prefix.
        prefix: ipnet::IpNet,
        /// The next hop.
        via: std::net::IpAddr,
    },
    /// A static route has the same prefix as a connected subnet.
    #[error("routing: route {prefix} replaces a connected subnet")]
    ShadowsConnected {
        /// The prefix.
        prefix: ipnet::IpNet,
    },
}
