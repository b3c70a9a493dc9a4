//! The held-out rows committed beside the models (`configs/models/heldout-v1.json`, written by
//! `training/train.py`): raw records, their features and the outputs the training pipeline expects.
//! Used by the parity and quality tests and by `septa-bench ml`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use septa_features::{
    EmitReason, FeatureRecord, FlowKey, HeadStats, L7Proto, SCHEMA_VERSION, Spread, TcpFlagCounts,
};
use serde::Deserialize;

use crate::error::MlError;

#[derive(Debug, Deserialize)]
struct RawHead {
    count: u32,
    size_sum: u32,
    size_sumsq: u64,
    size_max: u16,
    iat_sum_us: u64,
    iat_sumsq_us2: u64,
}

#[derive(Debug, Deserialize)]
struct RawTcp {
    syn: u32,
    syn_ack: u32,
    fin: u32,
    rst: u32,
    psh: u32,
}

#[derive(Debug, Deserialize)]
struct RawSpread {
    src_hosts: u32,
    src_ports: u32,
    src_hosts_on_port: u32,
    dst_sources: u32,
    window_s: u32,
}

#[derive(Debug, Deserialize)]
struct Raw {
    proto: u8,
    sport: u16,
    dport: u16,
    l7: u8,
    duration_us: u64,
    packets: [u32; 2],
    bytes: [u64; 2],
    head: RawHead,
    tcp: RawTcp,
    functions: [u32; 5],
    spread: RawSpread,
}

/// One committed row.
#[derive(Debug, Deserialize)]
pub struct Row {
    pub profile: String,
    /// 1 for attack profiles.
    pub label: u8,
    raw: Raw,
    pub features: Vec<f32>,
    /// Expected classifier probability.
    pub classifier: f32,
    /// Expected classifier output (log-odds).
    pub classifier_logit: f32,
    /// Expected autoencoder score (mean squared error).
    pub autoencoder: f32,
    /// Expected index of the autoencoder's largest per-feature error.
    pub autoencoder_top: usize,
}

#[derive(Debug, Deserialize)]
struct File {
    schema_version: u16,
    rows: Vec<Row>,
}

fn l7(v: u8) -> L7Proto {
    use L7Proto::*;
    [
        Unknown, Http, Tls, Dns, Ssh, Smb, Rdp, Kerberos, Modbus, Dnp3, S7comm, EtherNetIp, Bacnet,
        Iec104, OpcUa,
    ]
    .get(usize::from(v))
    .copied()
    .unwrap_or(Unknown)
}

impl Row {
    /// The record the data plane would have produced; addresses are synthetic (row `index`).
    pub fn record(&self, index: usize) -> FeatureRecord {
        let r = &self.raw;
        let i = u32::try_from(index).unwrap_or(u32::MAX);
        FeatureRecord {
            schema_version: SCHEMA_VERSION,
            reason: EmitReason::FlowEnd,
            worker: 0,
            key: FlowKey {
                src: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (i & 0xffff))),
                dst: IpAddr::V4(Ipv4Addr::from(0x0a01_0000 | (i & 0xffff))),
                src_port: r.sport,
                dst_port: r.dport,
                proto: r.proto,
            },
            l7: l7(r.l7),
            duration_us: r.duration_us,
            packets: r.packets,
            bytes: r.bytes,
            head: HeadStats {
                count: r.head.count,
                size_sum: r.head.size_sum,
                size_sumsq: r.head.size_sumsq,
                size_max: r.head.size_max,
                iat_sum_us: r.head.iat_sum_us,
                iat_sumsq_us2: r.head.iat_sumsq_us2,
            },
            tcp: TcpFlagCounts {
                syn: r.tcp.syn,
                syn_ack: r.tcp.syn_ack,
                fin: r.tcp.fin,
                rst: r.tcp.rst,
                psh: r.tcp.psh,
            },
            functions: r.functions,
            spread: Spread {
                src_hosts: r.spread.src_hosts,
                src_ports: r.spread.src_ports,
                src_hosts_on_port: r.spread.src_hosts_on_port,
                dst_sources: r.spread.dst_sources,
                window_s: r.spread.window_s,
            },
        }
    }
}

/// Reads the held-out file.
pub fn load(path: &Path) -> Result<Vec<Row>, MlError> {
    let text = std::fs::read(path).map_err(|source| MlError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let f: File = serde_json::from_slice(&text).map_err(|source| MlError::Metadata {
        path: path.to_path_buf(),
        source,
    })?;
    if f.schema_version != SCHEMA_VERSION {
        return Err(MlError::Config(format!(
            "{}: held-out rows are schema v{}, this build is v{SCHEMA_VERSION}",
            path.display(),
            f.schema_version
        )));
    }
    Ok(f.rows)
}
