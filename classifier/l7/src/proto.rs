//! Protocol identities.

use std::fmt;

/// A protocol the data plane can identify. The discriminant is stable (flow records, features).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum L7Proto {
    /// Nothing identified (yet).
    #[default]
    Unknown = 0,
    /// Modbus/TCP (MBAP).
    Modbus = 1,
    /// DNP3 over TCP or UDP.
    Dnp3 = 2,
    /// Siemens S7comm over ISO-on-TCP (TPKT/COTP).
    S7comm = 3,
    /// Siemens S7comm-plus (recognised by its 0x72 magic, not parsed further).
    S7commPlus = 4,
    /// EtherNet/IP encapsulation carrying CIP.
    EnipCip = 5,
    /// BACnet/IP (BVLC/NPDU/APDU).
    Bacnet = 6,
    /// IEC 60870-5-104.
    Iec104 = 7,
    /// OPC UA binary (UA TCP).
    OpcUa = 8,
    /// HTTP/1.x.
    Http = 9,
    /// TLS.
    Tls = 10,
    /// DNS.
    Dns = 11,
    /// SSH.
    Ssh = 12,
    /// SMB 1, 2 or 3 over NetBIOS session service framing.
    Smb = 13,
    /// RDP (X.224 connection request over TPKT).
    Rdp = 14,
    /// Kerberos.
    Kerberos = 15,
}

impl L7Proto {
    /// Every protocol, in discriminant order.
    pub const ALL: [L7Proto; 16] = [
        L7Proto::Unknown,
        L7Proto::Modbus,
        L7Proto::Dnp3,
        L7Proto::S7comm,
        L7Proto::S7commPlus,
        L7Proto::EnipCip,
        L7Proto::Bacnet,
        L7Proto::Iec104,
        L7Proto::OpcUa,
        L7Proto::Http,
        L7Proto::Tls,
        L7Proto::Dns,
        L7Proto::Ssh,
        L7Proto::Smb,
        L7Proto::Rdp,
        L7Proto::Kerberos,
    ];

    /// Number of protocols (the length of per-protocol counter arrays).
    pub const COUNT: usize = Self::ALL.len();

    /// Lower-case name as used in policies, flow records and metrics.
    pub fn name(self) -> &'static str {
        match self {
            L7Proto::Unknown => "unknown",
            L7Proto::Modbus => "modbus",
            L7Proto::Dnp3 => "dnp3",
            L7Proto::S7comm => "s7comm",
            L7Proto::S7commPlus => "s7comm-plus",
            L7Proto::EnipCip => "enip",
            L7Proto::Bacnet => "bacnet",
            L7Proto::Iec104 => "iec104",
            L7Proto::OpcUa => "opcua",
            L7Proto::Http => "http",
            L7Proto::Tls => "tls",
            L7Proto::Dns => "dns",
            L7Proto::Ssh => "ssh",
            L7Proto::Smb => "smb",
            L7Proto::Rdp => "rdp",
            L7Proto::Kerberos => "kerberos",
        }
    }

    /// The protocol with this discriminant.
    pub fn from_u8(v: u8) -> Option<L7Proto> {
        Self::ALL.get(usize::from(v)).copied()
    }

    /// Whether function-code conduits exist for this protocol.
    pub fn is_industrial(self) -> bool {
        matches!(
            self,
            L7Proto::Modbus
                | L7Proto::Dnp3
                | L7Proto::S7comm
                | L7Proto::S7commPlus
                | L7Proto::EnipCip
                | L7Proto::Bacnet
                | L7Proto::Iec104
                | L7Proto::OpcUa
        )
    }
}

impl fmt::Display for L7Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
