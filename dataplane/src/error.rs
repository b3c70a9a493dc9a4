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
}
