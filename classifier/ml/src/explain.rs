//! Operator words for feature groups: each group is rendered from the raw record (counts, ports,
//! bytes) rather than from the model's scaled inputs, with a comparison to this host's baseline
//! when one is known and to the normal training median otherwise.

use septa_features::{FeatureRecord, FunctionClass, L7Proto};

/// Index of each group in `septa_features::FEATURE_GROUPS` (0, protocol and port, is the default arm).
pub(crate) mod group {
    pub const VOLUME: usize = 1;
    pub const TIMING: usize = 2;
    pub const SIZES: usize = 3;
    pub const FLAGS: usize = 4;
    pub const FAN_OUT: usize = 5;
    pub const FAN_IN: usize = 6;
    pub const FUNCTIONS: usize = 7;
}

/// What a description may compare against.
pub(crate) struct Context<'a> {
    /// Feature medians of normal training rows (model metadata).
    pub medians: &'a [f32],
    /// This source's usual `src_hosts_on_port`, learned from its unalarming records.
    pub host_fan_out: Option<f32>,
}

fn proto_name(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        58 => "icmpv6".into(),
        n => format!("ip-proto-{n}"),
    }
}

fn l7_name(l: L7Proto) -> &'static str {
    match l {
        L7Proto::Unknown => "unidentified traffic",
        L7Proto::Http => "HTTP",
        L7Proto::Tls => "TLS",
        L7Proto::Dns => "DNS",
        L7Proto::Ssh => "SSH",
        L7Proto::Smb => "SMB",
        L7Proto::Rdp => "RDP",
        L7Proto::Kerberos => "Kerberos",
        L7Proto::Modbus => "Modbus/TCP",
        L7Proto::Dnp3 => "DNP3",
        L7Proto::S7comm => "S7comm",
        L7Proto::EtherNetIp => "EtherNet/IP",
        L7Proto::Bacnet => "BACnet/IP",
        L7Proto::Iec104 => "IEC 60870-5-104",
        L7Proto::OpcUa => "OPC UA",
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn duration(us: u64) -> String {
    let s = us as f64 / 1e6;
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else if s < 120.0 {
        format!("{s:.1} s")
    } else {
        format!("{:.0} min", s / 60.0)
    }
}

/// Inverse of the features' `ln(1 + x)`.
fn unlog(v: f32) -> f32 {
    v.exp_m1().max(0.0)
}

/// `" (N× …)"` when `now` is well above `usual`.
fn versus(now: f32, usual: f32, what: &str) -> String {
    let usual = usual.max(1.0);
    let ratio = now / usual;
    if ratio >= 2.0 {
        format!(", {ratio:.0}× {what}")
    } else {
        String::new()
    }
}

pub(crate) fn describe(g: usize, r: &FeatureRecord, ctx: &Context<'_>) -> String {
    let k = &r.key;
    let port = format!("{}/{}", k.dst_port, proto_name(k.proto));
    let pkts = u64::from(r.packets[0]) + u64::from(r.packets[1]);
    match g {
        group::FAN_OUT
            if r.spread.src_ports >= 4 && r.spread.src_ports > r.spread.src_hosts_on_port =>
        {
            // More ports than hosts on this one: a port scan rather than a sweep.
            let s = &r.spread;
            format!(
                "{} ports on {} {} contacted in {} s ({} on {port})",
                s.src_ports,
                s.src_hosts,
                if s.src_hosts == 1 { "host" } else { "hosts" },
                s.window_s,
                s.src_hosts_on_port,
            )
        }
        group::FAN_OUT => {
            let s = &r.spread;
            let now = s.src_hosts_on_port as f32;
            let base = match ctx.host_fan_out {
                Some(b) => versus(now, b, "this host's baseline"),
                None => versus(now, unlog(ctx.medians[23]), "the normal median"),
            };
            format!(
                "fan-out to {} hosts on {port} in {} s{base} ({} hosts and {} ports overall)",
                s.src_hosts_on_port, s.window_s, s.src_hosts, s.src_ports
            )
        }
        group::FAN_IN => format!(
            "{} sources contacted {} in {} s{}",
            r.spread.dst_sources,
            k.dst,
            r.spread.window_s,
            versus(
                r.spread.dst_sources as f32,
                unlog(ctx.medians[24]),
                "the normal median"
            )
        ),
        group::FUNCTIONS => {
            let f = &r.functions;
            let total: u64 = f.iter().map(|&c| u64::from(c)).sum();
            let mut parts = Vec::new();
            let disruptive = f[FunctionClass::Disruptive as usize];
            if disruptive > 0 {
                parts.push(format!("{disruptive} restart/stop/program commands"));
            }
            let writes = f[FunctionClass::Write as usize];
            if writes > 0 {
                parts.push(format!(
                    "{writes} writes ({:.0}% of functions)",
                    100.0 * writes as f64 / total.max(1) as f64
                ));
            }
            let control = f[FunctionClass::Control as usize];
            if control > 0 {
                parts.push(format!("{control} control/operate commands"));
            }
            if parts.is_empty() {
                parts.push(format!("{total} function codes, all reads"));
            }
            format!(
                "{} to {} on {port}: {}",
                l7_name(r.l7),
                k.dst,
                parts.join(", ")
            )
        }
        group::VOLUME => {
            let total = r.bytes[0] + r.bytes[1];
            format!(
                "{} sent to {} and {} received in {} ({:.0}% outbound, {pkts} packets)",
                bytes(r.bytes[0]),
                k.dst,
                bytes(r.bytes[1]),
                duration(r.duration_us),
                100.0 * r.bytes[0] as f64 / total.max(1) as f64
            )
        }
        group::FLAGS => {
            let t = &r.tcp;
            let hs = if t.syn_ack > 0 {
                "handshake completed"
            } else {
                "handshake never completed"
            };
            format!(
                "{} SYN, {} RST, {} FIN in {pkts} packets, {hs}",
                t.syn, t.rst, t.fin
            )
        }
        group::TIMING => {
            let gaps = u64::from(r.head.count.saturating_sub(1)).max(1);
            format!(
                "lasted {}, first packets {:.1} ms apart",
                duration(r.duration_us),
                r.head.iat_sum_us as f64 / gaps as f64 / 1000.0
            )
        }
        group::SIZES => format!(
            "first packets average {} bytes (largest {})",
            u64::from(r.head.size_sum) / u64::from(r.head.count.max(1)),
            r.head.size_max
        ),
        _ => format!("{} on {port}", l7_name(r.l7)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    #[test]
    fn fan_out_against_host_baseline() {
        let mut r = FeatureRecord::default();
        r.key.proto = 6;
        r.key.dst_port = 445;
        r.spread.src_hosts_on_port = 212;
        r.spread.src_hosts = 215;
        r.spread.src_ports = 2;
        r.spread.window_s = 10;
        let medians = [0.0f32; 32];
        let text = describe(
            group::FAN_OUT,
            &r,
            &Context {
                medians: &medians,
                host_fan_out: Some(5.3),
            },
        );
        assert_eq!(
            text,
            "fan-out to 212 hosts on 445/tcp in 10 s, 40× this host's baseline (215 hosts and 2 ports overall)"
        );
        r.spread.src_hosts_on_port = 1;
        r.spread.src_hosts = 1;
        r.spread.src_ports = 16;
        let ctx = Context {
            medians: &medians,
            host_fan_out: None,
        };
        assert_eq!(
            describe(group::FAN_OUT, &r, &ctx),
            "16 ports on 1 host contacted in 10 s (1 on 445/tcp)"
        );
    }

    #[test]
    fn functions_and_volume_words() {
        let mut r = FeatureRecord::default();
        r.key.proto = 6;
        r.key.dst_port = 102;
        r.key.dst = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));
        r.l7 = L7Proto::S7comm;
        r.functions = [4, 0, 0, 1, 0];
        let medians = [0.0f32; 32];
        let ctx = Context {
            medians: &medians,
            host_fan_out: None,
        };
        assert_eq!(
            describe(group::FUNCTIONS, &r, &ctx),
            "S7comm to 10.0.0.9 on 102/tcp: 1 restart/stop/program commands"
        );
        r.bytes = [2_500_000_000, 1_000_000];
        r.packets = [100, 10];
        r.duration_us = 600_000_000;
        assert_eq!(
            describe(group::VOLUME, &r, &ctx),
            "2.5 GB sent to 10.0.0.9 and 1.0 MB received in 10 min (100% outbound, 110 packets)"
        );
    }
}
