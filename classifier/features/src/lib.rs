//! `septa-features`: the versioned flow feature schema shared by the producer (the data plane's
//! sampler) and the consumer (`septa-ml`'s inference thread).
//!
//! It holds vocabulary only: the fixed-size [`FeatureRecord`] a worker copies into its SPSC ring, and
//! the one function, [`featurize`], that turns a record into the model's input vector. The training
//! pipeline (`classifier/ml/training/features.py`) mirrors `featurize` line for line, and the parity
//! test checks both against committed rows.
//!
//! It also holds what both ends of a worker's sample channel share ([`spread`]): the channel (two
//! single-producer rings, records and new flows), and the spread sketches (fan-out, fan-in) the
//! inference side builds from the new flows and fills each record's [`Spread`] from.
//!
//! Invariants: no dependency but `rtrb` (the rings; it has none of its own), no I/O, no
//! allocation after construction; [`FeatureRecord`] is `Copy` so a ring push is a plain copy. Any change to the meaning or order of a feature bumps
//! [`SCHEMA_VERSION`]; a model trained for another version is refused at load.

use std::net::{IpAddr, Ipv4Addr};

pub mod spread;

/// Version of the record layout and of [`featurize`]. Models carry the version they were trained for.
pub const SCHEMA_VERSION: u16 = 1;

/// Number of leading packets whose sizes and inter-arrival times are summarised.
pub const HEAD_PACKETS: u32 = 8;

/// Length of the model input vector.
pub const N_FEATURES: usize = 32;

/// Destination ports of industrial protocols (Modbus, DNP3, S7, EtherNet/IP, IEC 104, BACnet, OPC UA).
pub const ICS_PORTS: [u16; 8] = [502, 20000, 102, 44818, 2222, 2404, 47808, 4840];

/// Destination ports used for lateral movement (SMB, NetBIOS, RPC, RDP, WinRM, SSH).
pub const LATERAL_PORTS: [u16; 7] = [445, 139, 135, 3389, 5985, 5986, 22];

/// Why the sampler emitted a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum EmitReason {
    /// The flow reached [`HEAD_PACKETS`] packets.
    FirstPackets = 0,
    /// A long flow's periodic snapshot.
    Periodic = 1,
    /// The flow ended (FIN/RST or expiry).
    FlowEnd = 2,
}

/// Application protocol, as identified by the data plane's L7 inspection (Unknown when none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum L7Proto {
    Unknown = 0,
    Http = 1,
    Tls = 2,
    Dns = 3,
    Ssh = 4,
    Smb = 5,
    Rdp = 6,
    Kerberos = 7,
    Modbus = 8,
    Dnp3 = 9,
    S7comm = 10,
    EtherNetIp = 11,
    Bacnet = 12,
    Iec104 = 13,
    OpcUa = 14,
}

impl L7Proto {
    /// Lower-case label, the one policies and flow records use (`septa_l7::L7Proto::name`;
    /// S7comm-plus is counted as S7comm here); `unknown` for [`L7Proto::Unknown`].
    pub fn name(self) -> &'static str {
        match self {
            L7Proto::Unknown => "unknown",
            L7Proto::Http => "http",
            L7Proto::Tls => "tls",
            L7Proto::Dns => "dns",
            L7Proto::Ssh => "ssh",
            L7Proto::Smb => "smb",
            L7Proto::Rdp => "rdp",
            L7Proto::Kerberos => "kerberos",
            L7Proto::Modbus => "modbus",
            L7Proto::Dnp3 => "dnp3",
            L7Proto::S7comm => "s7comm",
            L7Proto::EtherNetIp => "enip",
            L7Proto::Bacnet => "bacnet",
            L7Proto::Iec104 => "iec104",
            L7Proto::OpcUa => "opcua",
        }
    }
}

/// Class of an industrial function code, the unit of the function histogram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FunctionClass {
    /// Reads and polls (Modbus 1–4, DNP3 READ, S7 read var).
    Read = 0,
    /// Writes (Modbus 5/6/15/16, DNP3 WRITE, S7 write var).
    Write = 1,
    /// Control/operate (DNP3 SELECT/OPERATE/DIRECT OPERATE).
    Control = 2,
    /// Restarts, stops, program downloads (DNP3 COLD RESTART, S7 STOP/download).
    Disruptive = 3,
    /// Diagnostics and everything else.
    Other = 4,
}

/// Number of [`FunctionClass`] buckets.
pub const FUNCTION_CLASSES: usize = 5;

/// The five-tuple of a flow as seen by the forward (first) packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
}

impl Default for FlowKey {
    fn default() -> Self {
        Self {
            src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            src_port: 0,
            dst_port: 0,
            proto: 0,
        }
    }
}

/// Sizes and inter-arrival times of the first [`HEAD_PACKETS`] packets (both directions).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HeadStats {
    pub count: u32,
    pub size_sum: u32,
    pub size_sumsq: u64,
    pub size_max: u16,
    /// Gaps between consecutive head packets, microseconds (count - 1 of them).
    pub iat_sum_us: u64,
    pub iat_sumsq_us2: u64,
}

/// TCP flag counts over the whole flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlagCounts {
    pub syn: u32,
    pub syn_ack: u32,
    pub fin: u32,
    pub rst: u32,
    pub psh: u32,
}

/// Per-source and per-destination spread over the sampler's window, estimated with bounded sketches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Spread {
    /// Distinct destination hosts this flow's source contacted in the window.
    pub src_hosts: u32,
    /// Distinct destination ports this flow's source contacted in the window.
    pub src_ports: u32,
    /// Distinct destination hosts this flow's source contacted on this destination port and protocol.
    pub src_hosts_on_port: u32,
    /// Distinct sources that contacted this flow's destination in the window.
    pub dst_sources: u32,
    /// Window length, seconds.
    pub window_s: u32,
}

/// One sampled flow: what a worker pushes to its ring. Fixed size and `Copy`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FeatureRecord {
    pub schema_version: u16,
    pub reason: EmitReason,
    pub worker: u16,
    pub key: FlowKey,
    pub l7: L7Proto,
    /// First to last packet, microseconds.
    pub duration_us: u64,
    /// Packets forward (source → destination) and reverse.
    pub packets: [u32; 2],
    /// L3 bytes forward and reverse.
    pub bytes: [u64; 2],
    pub head: HeadStats,
    pub tcp: TcpFlagCounts,
    /// Industrial function codes seen, by [`FunctionClass`].
    pub functions: [u32; FUNCTION_CLASSES],
    pub spread: Spread,
}

impl Default for FeatureRecord {
    fn default() -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            reason: EmitReason::FirstPackets,
            worker: 0,
            key: FlowKey::default(),
            l7: L7Proto::Unknown,
            duration_us: 0,
            packets: [0; 2],
            bytes: [0; 2],
            head: HeadStats::default(),
            tcp: TcpFlagCounts::default(),
            functions: [0; FUNCTION_CLASSES],
            spread: Spread::default(),
        }
    }
}

/// A named group of features, the unit of classifier explanations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeatureGroup {
    pub name: &'static str,
    pub features: &'static [usize],
}

/// Names of the input vector's positions, in order (also written to each model's metadata).
pub const FEATURE_NAMES: [&str; N_FEATURES] = [
    "is_tcp",
    "is_udp",
    "log_duration_s",
    "log_packets_fwd",
    "log_packets_rev",
    "log_bytes_fwd",
    "log_bytes_rev",
    "fwd_byte_share",
    "head_size_mean",
    "head_size_std",
    "head_size_max",
    "log_head_iat_mean_ms",
    "log_head_iat_std_ms",
    "syn_share",
    "fin_share",
    "rst_share",
    "psh_share",
    "handshake_done",
    "dport_well_known",
    "dport_ics",
    "dport_lateral",
    "log_src_hosts",
    "log_src_ports",
    "log_src_hosts_on_port",
    "log_dst_sources",
    "fn_read_share",
    "fn_write_share",
    "fn_control_share",
    "log_fn_disruptive",
    "log_fn_total",
    "l7_identified",
    "log_packet_rate",
];

/// Feature groups for explanations; every feature is in exactly one group.
pub const FEATURE_GROUPS: [FeatureGroup; 8] = [
    FeatureGroup {
        name: "protocol and port",
        features: &[0, 1, 18, 19, 20, 30],
    },
    FeatureGroup {
        name: "volume",
        features: &[3, 4, 5, 6, 7, 31],
    },
    FeatureGroup {
        name: "timing",
        features: &[2, 11, 12],
    },
    FeatureGroup {
        name: "packet sizes",
        features: &[8, 9, 10],
    },
    FeatureGroup {
        name: "TCP flags",
        features: &[13, 14, 15, 16, 17],
    },
    FeatureGroup {
        name: "fan-out",
        features: &[21, 22, 23],
    },
    FeatureGroup {
        name: "fan-in",
        features: &[24],
    },
    FeatureGroup {
        name: "industrial functions",
        features: &[25, 26, 27, 28, 29],
    },
];

fn ln1p(x: f64) -> f32 {
    x.max(0.0).ln_1p() as f32
}

fn share(part: u64, whole: u64) -> f32 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 / whole as f64) as f32
    }
}

/// Mean and population standard deviation from a count, sum and sum of squares.
fn mean_std(n: u64, sum: f64, sumsq: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 0.0);
    }
    let mean = sum / n as f64;
    let var = (sumsq / n as f64 - mean * mean).max(0.0);
    (mean, var.sqrt())
}

/// The model input for a record. Pure and total: any record (even a zeroed one) gives finite values.
/// Mirrored by `training/features.py::featurize`; keep the two in step.
pub fn featurize(r: &FeatureRecord) -> [f32; N_FEATURES] {
    let mut v = [0f32; N_FEATURES];
    let tcp = r.key.proto == 6;
    v[0] = f32::from(u8::from(tcp));
    v[1] = f32::from(u8::from(r.key.proto == 17));
    let dur_s = r.duration_us as f64 / 1e6;
    v[2] = ln1p(dur_s);
    v[3] = ln1p(f64::from(r.packets[0]));
    v[4] = ln1p(f64::from(r.packets[1]));
    v[5] = ln1p(r.bytes[0] as f64);
    v[6] = ln1p(r.bytes[1] as f64);
    v[7] = share(r.bytes[0], r.bytes[0] + r.bytes[1]);
    let h = &r.head;
    let (size_mean, size_std) = mean_std(
        u64::from(h.count),
        f64::from(h.size_sum),
        h.size_sumsq as f64,
    );
    v[8] = (size_mean / 1500.0) as f32;
    v[9] = (size_std / 1500.0) as f32;
    v[10] = (f64::from(h.size_max) / 1500.0) as f32;
    let gaps = u64::from(h.count.saturating_sub(1));
    let (iat_mean, iat_std) = mean_std(gaps, h.iat_sum_us as f64, h.iat_sumsq_us2 as f64);
    v[11] = ln1p(iat_mean / 1000.0);
    v[12] = ln1p(iat_std / 1000.0);
    let pkts = u64::from(r.packets[0]) + u64::from(r.packets[1]);
    v[13] = share(u64::from(r.tcp.syn), pkts);
    v[14] = share(u64::from(r.tcp.fin), pkts);
    v[15] = share(u64::from(r.tcp.rst), pkts);
    v[16] = share(u64::from(r.tcp.psh), pkts);
    v[17] = f32::from(u8::from(tcp && r.tcp.syn_ack > 0));
    let dport = r.key.dst_port;
    v[18] = f32::from(u8::from(dport < 1024));
    v[19] = f32::from(u8::from(ICS_PORTS.contains(&dport)));
    v[20] = f32::from(u8::from(LATERAL_PORTS.contains(&dport)));
    v[21] = ln1p(f64::from(r.spread.src_hosts));
    v[22] = ln1p(f64::from(r.spread.src_ports));
    v[23] = ln1p(f64::from(r.spread.src_hosts_on_port));
    v[24] = ln1p(f64::from(r.spread.dst_sources));
    let f = &r.functions;
    let fn_total: u64 = f.iter().map(|&c| u64::from(c)).sum();
    v[25] = share(u64::from(f[FunctionClass::Read as usize]), fn_total);
    v[26] = share(u64::from(f[FunctionClass::Write as usize]), fn_total);
    v[27] = share(u64::from(f[FunctionClass::Control as usize]), fn_total);
    v[28] = ln1p(f64::from(f[FunctionClass::Disruptive as usize]));
    v[29] = ln1p(fn_total as f64);
    v[30] = f32::from(u8::from(r.l7 != L7Proto::Unknown));
    v[31] = ln1p(pkts as f64 / dur_s.max(0.001));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_partition_the_features() {
        let mut seen = [0u8; N_FEATURES];
        for g in FEATURE_GROUPS {
            for &i in g.features {
                seen[i] += 1;
            }
        }
        assert!(seen.iter().all(|&c| c == 1), "{seen:?}");
    }

    #[test]
    fn zeroed_record_is_finite() {
        let v = featurize(&FeatureRecord::default());
        assert!(v.iter().all(|x| x.is_finite()));
        assert_eq!(v[0], 0.0);
    }

    #[test]
    fn tcp_flow_features() {
        let mut r = FeatureRecord::default();
        r.key.proto = 6;
        r.key.dst_port = 445;
        r.packets = [3, 1];
        r.bytes = [180, 60];
        r.duration_us = 2_000_000;
        r.tcp = TcpFlagCounts {
            syn: 1,
            syn_ack: 1,
            fin: 0,
            rst: 2,
            psh: 0,
        };
        r.head = HeadStats {
            count: 4,
            size_sum: 240,
            size_sumsq: 4 * 60 * 60,
            size_max: 60,
            iat_sum_us: 3000,
            iat_sumsq_us2: 3 * 1000 * 1000,
        };
        r.spread.src_hosts_on_port = 212;
        let v = featurize(&r);
        assert_eq!(v[0], 1.0);
        assert_eq!(v[20], 1.0);
        assert_eq!(v[18], 1.0);
        assert!((v[7] - 0.75).abs() < 1e-6);
        assert!((v[8] - 0.04).abs() < 1e-6);
        assert!(v[9].abs() < 1e-6);
        assert!((v[11] - 2f32.ln()).abs() < 1e-6);
        assert!((v[15] - 0.5).abs() < 1e-6);
        assert_eq!(v[17], 1.0);
        assert!((v[23] - 213f32.ln()).abs() < 1e-5);
        assert!((v[31] - 3f32.ln()).abs() < 1e-6);
    }
}
