//! Test-traffic generator: builds Ethernet frames (VLAN/QinQ, IPv4, IPv6 with extension
//! headers, TCP, UDP, ICMPv4, ICMPv6, ARP) with valid checksums and a sequence number in the
//! payload, and writes them to pcap files.
//!
//! Used by unit and golden tests, and by the tooling that generates the bundled sample capture
//! and benchmark traffic. It allocates freely: it is never on the packet path. Sequence numbers
//! make loss and duplication exact: [`sequence_number`] reads them back from any frame built here.

use std::fs::File;
use std::io::BufWriter;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use smoltcp::wire::{
    ArpHardware, ArpOperation, ArpPacket, EthernetAddress, EthernetFrame, EthernetProtocol,
    Icmpv4Message, Icmpv4Packet, Icmpv6Message, Icmpv6Packet, IpAddress, IpProtocol, Ipv4Packet,
    Ipv6Packet, TcpPacket, TcpSeqNumber, UdpPacket,
};

use crate::error::PcapIoError;
use crate::parse::{self, vlan};

/// Marker that precedes the sequence number in generated payloads.
pub const SEQ_MAGIC: [u8; 4] = *b"SEPT";
/// Bytes of the marker plus the big-endian `u64` sequence number.
pub const SEQ_LEN: usize = SEQ_MAGIC.len() + 8;

/// Default source MAC (locally administered).
pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
/// Default destination MAC (locally administered).
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

/// An IPv6 extension header for [`FrameBuilder::ext`]. Each is emitted with minimal valid
/// contents (padding options, an empty routing header, a 12-byte ICV).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ipv6Ext {
    /// Hop-by-hop options (8 bytes, one PadN option).
    HopByHop,
    /// Routing header, experimental type 253, segments left 0 (8 bytes).
    Routing,
    /// Fragment header (8 bytes): offset in bytes (multiple of 8), more-fragments flag.
    Fragment {
        /// Offset of this fragment in bytes.
        offset: u16,
        /// More fragments follow.
        more: bool,
    },
    /// Destination options (8 bytes, one PadN option).
    DestinationOptions,
    /// Authentication header with a 12-byte ICV (24 bytes).
    Auth,
}

impl Ipv6Ext {
    fn protocol(self) -> u8 {
        match self {
            Ipv6Ext::HopByHop => 0,
            Ipv6Ext::Routing => 43,
            Ipv6Ext::Fragment { .. } => 44,
            Ipv6Ext::DestinationOptions => 60,
            Ipv6Ext::Auth => 51,
        }
    }

    fn emit(self, next: u8, out: &mut Vec<u8>) {
        match self {
            Ipv6Ext::HopByHop | Ipv6Ext::DestinationOptions => {
                // PadN with 4 data bytes fills the 8-byte header.
                out.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
            }
            Ipv6Ext::Routing => out.extend_from_slice(&[next, 0, 253, 0, 0, 0, 0, 0]),
            Ipv6Ext::Fragment { offset, more } => {
                let field = (offset & !7) | u16::from(more);
                out.extend_from_slice(&[next, 0]);
                out.extend_from_slice(&field.to_be_bytes());
                out.extend_from_slice(&0x5e97_0001u32.to_be_bytes());
            }
            Ipv6Ext::Auth => {
                // Payload length 4 = (24 / 4) - 2; SPI 0x100, sequence 1, zero ICV.
                out.extend_from_slice(&[next, 4, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]);
                out.extend_from_slice(&[0; 12]);
            }
        }
    }
}

#[derive(Clone, Debug)]
enum Net {
    None(u16),
    V4 { src: Ipv4Addr, dst: Ipv4Addr },
    V6 { src: Ipv6Addr, dst: Ipv6Addr },
}

#[derive(Clone, Copy, Debug)]
enum Transport {
    Raw(u8),
    Tcp { sport: u16, dport: u16, flags: u8 },
    Udp { sport: u16, dport: u16 },
    Icmp { ty: u8, code: u8 },
}

/// Builds one frame. Defaults: MAC_A → MAC_B, untagged, no L3 (ethertype 0x88b5, local
/// experimental), payload = sequence marker 0.
#[derive(Clone, Debug)]
pub struct FrameBuilder {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    tags: Vec<(u16, u16)>,
    net: Net,
    ext: Vec<Ipv6Ext>,
    v4_fragment: Option<(u16, bool)>,
    transport: Transport,
    seq: u64,
    payload_len: usize,
    ttl: u8,
    tcp_seq: Option<u32>,
    tcp_ack: Option<u32>,
    ip_id: Option<u16>,
    body: Option<Vec<u8>>,
}

impl Default for FrameBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameBuilder {
    /// A builder with the defaults above.
    pub fn new() -> Self {
        FrameBuilder {
            src_mac: MAC_A,
            dst_mac: MAC_B,
            tags: Vec::new(),
            net: Net::None(0x88b5),
            ext: Vec::new(),
            v4_fragment: None,
            transport: Transport::Raw(59),
            seq: 0,
            payload_len: SEQ_LEN,
            ttl: 64,
            tcp_seq: None,
            tcp_ack: None,
            ip_id: None,
            body: None,
        }
    }

    /// Source and destination MAC.
    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Self {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    /// Push an 802.1Q tag (after any tags already pushed).
    pub fn vlan(mut self, id: u16) -> Self {
        self.tags.push((vlan::TPID_8021Q, id));
        self
    }

    /// Push a QinQ pair: an 802.1ad outer tag and an 802.1Q inner tag.
    pub fn qinq(mut self, outer: u16, inner: u16) -> Self {
        self.tags.push((vlan::TPID_8021AD, outer));
        self.tags.push((vlan::TPID_8021Q, inner));
        self
    }

    /// Non-IP frame with this ethertype; the payload is the sequence marker.
    pub fn ethertype(mut self, ethertype: u16) -> Self {
        self.net = Net::None(ethertype);
        self
    }

    /// IPv4 header.
    pub fn ipv4(mut self, src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        self.net = Net::V4 { src, dst };
        self
    }

    /// IPv6 header.
    pub fn ipv6(mut self, src: Ipv6Addr, dst: Ipv6Addr) -> Self {
        self.net = Net::V6 { src, dst };
        self
    }

    /// Append an IPv6 extension header (in the order given).
    pub fn ext(mut self, ext: Ipv6Ext) -> Self {
        self.ext.push(ext);
        self
    }

    /// Make the packet a fragment (offset in bytes, multiple of 8). IPv4: sets the header
    /// fields; IPv6: appends a fragment header. A non-first fragment carries no transport
    /// header, only payload.
    pub fn fragment(mut self, offset: u16, more: bool) -> Self {
        match self.net {
            Net::V6 { .. } => self.ext.push(Ipv6Ext::Fragment { offset, more }),
            _ => self.v4_fragment = Some((offset, more)),
        }
        self
    }

    /// TCP header with the given flags ([`parse::TcpFlags`] bits).
    pub fn tcp(mut self, sport: u16, dport: u16, flags: u8) -> Self {
        self.transport = Transport::Tcp {
            sport,
            dport,
            flags,
        };
        self
    }

    /// UDP header.
    pub fn udp(mut self, sport: u16, dport: u16) -> Self {
        self.transport = Transport::Udp { sport, dport };
        self
    }

    /// ICMP (IPv4) or ICMPv6 (IPv6) header with this type and code.
    pub fn icmp(mut self, ty: u8, code: u8) -> Self {
        self.transport = Transport::Icmp { ty, code };
        self
    }

    /// No transport header: IP protocol number `proto`, payload directly after IP.
    pub fn ip_proto(mut self, proto: u8) -> Self {
        self.transport = Transport::Raw(proto);
        self
    }

    /// Sequence number written in the payload.
    pub fn seq(mut self, seq: u64) -> Self {
        self.seq = seq;
        self
    }

    /// Payload length (at least [`SEQ_LEN`]; extra bytes are a counting pattern).
    pub fn payload_len(mut self, len: usize) -> Self {
        self.payload_len = len.max(SEQ_LEN);
        self
    }

    /// TCP sequence number (default: the low 32 bits of the payload sequence number, which no
    /// conntrack accepts beyond a SYN; [`TcpSession`] sets it consistently).
    pub fn tcp_seq(mut self, seq: u32) -> Self {
        self.tcp_seq = Some(seq);
        self
    }

    /// Transport payload bytes instead of the sequence marker (e.g. the packet an ICMP error
    /// quotes, see [`ip_packet`]); the frame then carries no sequence number.
    pub fn body(mut self, bytes: Vec<u8>) -> Self {
        self.body = Some(bytes);
        self
    }

    /// IPv4 identification (default: the low 16 bits of the payload sequence number); give the
    /// fragments of one datagram the same value.
    pub fn ip_id(mut self, id: u16) -> Self {
        self.ip_id = Some(id);
        self
    }

    /// TCP acknowledgement number (default 0).
    pub fn tcp_ack(mut self, ack: u32) -> Self {
        self.tcp_ack = Some(ack);
        self
    }

    /// Bytes of transport payload this builder emits (what a TCP segment's sequence space grows
    /// by, SYN and FIN aside).
    pub fn payload_bytes(&self) -> usize {
        self.payload_len
    }

    /// IPv4 TTL / IPv6 hop limit.
    pub fn ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }

    fn payload(&self) -> Vec<u8> {
        if let Some(b) = &self.body {
            return b.clone();
        }
        let mut p = Vec::with_capacity(self.payload_len);
        p.extend_from_slice(&SEQ_MAGIC);
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend((0..self.payload_len - SEQ_LEN).map(|i| i as u8));
        p
    }

    fn non_first_fragment(&self) -> bool {
        let v4 = matches!(self.v4_fragment, Some((off, _)) if off != 0);
        let v6 = self
            .ext
            .iter()
            .any(|e| matches!(e, Ipv6Ext::Fragment { offset, .. } if *offset != 0));
        v4 || v6
    }

    fn proto(&self) -> u8 {
        match (self.transport, &self.net) {
            (Transport::Raw(p), _) => p,
            (Transport::Tcp { .. }, _) => 6,
            (Transport::Udp { .. }, _) => 17,
            (Transport::Icmp { .. }, Net::V6 { .. }) => 58,
            (Transport::Icmp { .. }, _) => 1,
        }
    }

    fn transport_bytes(&self, src: IpAddress, dst: IpAddress) -> Vec<u8> {
        let payload = self.payload();
        if self.non_first_fragment() {
            return payload;
        }
        let header_len = match self.transport {
            Transport::Raw(_) => 0,
            Transport::Tcp { .. } => 20,
            Transport::Udp { .. } | Transport::Icmp { .. } => 8,
        };
        let mut buf = vec![0u8; header_len + payload.len()];
        buf[header_len..].copy_from_slice(&payload);
        match self.transport {
            Transport::Raw(_) => {}
            Transport::Tcp {
                sport,
                dport,
                flags,
            } => {
                let mut tcp = TcpPacket::new_unchecked(&mut buf[..]);
                tcp.set_src_port(sport);
                tcp.set_dst_port(dport);
                let seq = self.tcp_seq.unwrap_or(self.seq as u32);
                tcp.set_seq_number(TcpSeqNumber(seq as i32));
                tcp.set_ack_number(TcpSeqNumber(self.tcp_ack.unwrap_or(0) as i32));
                tcp.set_header_len(20);
                tcp.clear_flags();
                tcp.set_fin(flags & parse::TcpFlags::FIN != 0);
                tcp.set_syn(flags & parse::TcpFlags::SYN != 0);
                tcp.set_rst(flags & parse::TcpFlags::RST != 0);
                tcp.set_psh(flags & parse::TcpFlags::PSH != 0);
                tcp.set_ack(flags & parse::TcpFlags::ACK != 0);
                tcp.set_urg(flags & parse::TcpFlags::URG != 0);
                tcp.set_ece(flags & parse::TcpFlags::ECE != 0);
                tcp.set_cwr(flags & parse::TcpFlags::CWR != 0);
                tcp.set_window_len(65535);
                tcp.fill_checksum(&src, &dst);
            }
            Transport::Udp { sport, dport } => {
                let len = buf.len() as u16;
                let mut udp = UdpPacket::new_unchecked(&mut buf[..]);
                udp.set_src_port(sport);
                udp.set_dst_port(dport);
                udp.set_len(len);
                udp.fill_checksum(&src, &dst);
            }
            Transport::Icmp { ty, code } => match (src, dst) {
                (IpAddress::Ipv6(s), IpAddress::Ipv6(d)) => {
                    let mut icmp = Icmpv6Packet::new_unchecked(&mut buf[..]);
                    icmp.set_msg_type(Icmpv6Message::from(ty));
                    icmp.set_msg_code(code);
                    icmp.fill_checksum(&s, &d);
                }
                _ => {
                    let mut icmp = Icmpv4Packet::new_unchecked(&mut buf[..]);
                    icmp.set_msg_type(Icmpv4Message::from(ty));
                    icmp.set_msg_code(code);
                    icmp.fill_checksum();
                }
            },
        }
        buf
    }

    /// The frame.
    pub fn build(&self) -> Vec<u8> {
        let (ethertype, l3) = match self.net {
            Net::None(ethertype) => (ethertype, self.payload()),
            Net::V4 { src, dst } => (0x0800, self.ipv4_bytes(src, dst)),
            Net::V6 { src, dst } => (0x86dd, self.ipv6_bytes(src, dst)),
        };
        l2_wrap(self.src_mac, self.dst_mac, &self.tags, ethertype, &l3)
    }

    fn ipv4_bytes(&self, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        let l4 = self.transport_bytes(IpAddress::Ipv4(src), IpAddress::Ipv4(dst));
        let mut buf = vec![0u8; 20 + l4.len()];
        buf[20..].copy_from_slice(&l4);
        let total = buf.len() as u16;
        let mut ip = Ipv4Packet::new_unchecked(&mut buf[..]);
        ip.set_version(4);
        ip.set_header_len(20);
        ip.set_total_len(total);
        ip.set_ident(self.ip_id.unwrap_or(self.seq as u16));
        ip.clear_flags();
        if let Some((offset, more)) = self.v4_fragment {
            ip.set_frag_offset(offset);
            ip.set_more_frags(more);
        }
        ip.set_hop_limit(self.ttl);
        ip.set_next_header(IpProtocol::from(self.proto()));
        ip.set_src_addr(src);
        ip.set_dst_addr(dst);
        ip.fill_checksum();
        buf
    }

    fn ipv6_bytes(&self, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
        let l4 = self.transport_bytes(IpAddress::Ipv6(src), IpAddress::Ipv6(dst));
        let mut exts = Vec::new();
        for (i, ext) in self.ext.iter().enumerate() {
            let next = self.ext.get(i + 1).map_or(self.proto(), |e| e.protocol());
            ext.emit(next, &mut exts);
        }
        let first = self.ext.first().map_or(self.proto(), |e| e.protocol());
        let mut buf = vec![0u8; 40 + exts.len() + l4.len()];
        buf[40..40 + exts.len()].copy_from_slice(&exts);
        buf[40 + exts.len()..].copy_from_slice(&l4);
        let payload_len = (exts.len() + l4.len()) as u16;
        let mut ip = Ipv6Packet::new_unchecked(&mut buf[..]);
        ip.set_version(6);
        ip.set_traffic_class(0);
        ip.set_flow_label(0);
        ip.set_payload_len(payload_len);
        ip.set_next_header(IpProtocol::from(first));
        ip.set_hop_limit(self.ttl);
        ip.set_src_addr(src);
        ip.set_dst_addr(dst);
        buf
    }
}

fn l2_wrap(src: [u8; 6], dst: [u8; 6], tags: &[(u16, u16)], ethertype: u16, l3: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 14 + 4 * tags.len() + l3.len()];
    let first_type = tags.first().map_or(ethertype, |t| t.0);
    let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.set_src_addr(EthernetAddress(src));
    eth.set_dst_addr(EthernetAddress(dst));
    eth.set_ethertype(EthernetProtocol::from(first_type));
    for (i, &(_, id)) in tags.iter().enumerate() {
        let inner = tags.get(i + 1).map_or(ethertype, |t| t.0);
        let off = 14 + 4 * i;
        let mut tag = vlan::VlanTag::new_unchecked(&mut buf[off..off + 4]);
        tag.set_vlan_id(id);
        tag.set_ethertype(EthernetProtocol::from(inner));
    }
    let off = 14 + 4 * tags.len();
    buf[off..].copy_from_slice(l3);
    buf
}

/// An ARP request (`who-has target tell sender`), broadcast, optionally VLAN-tagged.
pub fn arp_request(sender_mac: [u8; 6], sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
    let mut arp = [0u8; 28];
    let mut p = ArpPacket::new_unchecked(&mut arp[..]);
    p.set_hardware_type(ArpHardware::Ethernet);
    p.set_protocol_type(EthernetProtocol::Ipv4);
    p.set_hardware_len(6);
    p.set_protocol_len(4);
    p.set_operation(ArpOperation::Request);
    p.set_source_hardware_addr(&sender_mac);
    p.set_source_protocol_addr(&sender_ip.octets());
    p.set_target_hardware_addr(&[0; 6]);
    p.set_target_protocol_addr(&target_ip.octets());
    l2_wrap(sender_mac, [0xff; 6], &[], 0x0806, &arp)
}

/// The IP packet inside an Ethernet frame (after any VLAN tags, without Ethernet padding), for
/// quoting in ICMP errors. `None` if the frame does not parse as IP.
pub fn ip_packet(frame: &[u8]) -> Option<Vec<u8>> {
    let p = parse::parse(frame).ok()?;
    p.is_ip().then(|| frame[p.l3_offset..p.l3_end].to_vec())
}

/// The sequence number of a frame built by [`FrameBuilder`], if its payload starts with the
/// marker (non-first fragments and non-IP frames included).
pub fn sequence_number(frame: &[u8]) -> Option<u64> {
    let p = parse::parse(frame).ok()?;
    let start = match (p.l3, p.fragment) {
        (parse::L3::Other, _) => p.l3_offset,
        (_, parse::Fragment::NonFirst) => find_magic(frame, p.l3_offset)?,
        _ => p
            .payload_offset
            .or_else(|| find_magic(frame, p.l3_offset))?,
    };
    let bytes = frame.get(start..start + SEQ_LEN)?;
    if bytes[..4] != SEQ_MAGIC {
        return None;
    }
    Some(u64::from_be_bytes(bytes[4..].try_into().ok()?))
}

fn find_magic(frame: &[u8], from: usize) -> Option<usize> {
    frame
        .get(from..)?
        .windows(SEQ_MAGIC.len())
        .position(|w| w == SEQ_MAGIC)
        .map(|i| i + from)
}

/// Write `frames` to an Ethernet pcap file, 1 ms apart starting at t = 1 s.
pub fn write_pcap<I, F>(path: &Path, frames: I) -> Result<(), PcapIoError>
where
    I: IntoIterator<Item = F>,
    F: AsRef<[u8]>,
{
    let file = File::create(path).map_err(|e| PcapIoError::Open(path.to_owned(), e))?;
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(BufWriter::new(file), header).map_err(PcapIoError::Pcap)?;
    for (i, f) in frames.into_iter().enumerate() {
        let data = f.as_ref();
        let ts = Duration::from_secs(1) + Duration::from_millis(i as u64);
        w.write_packet(&PcapPacket::new(ts, data.len() as u32, data))
            .map_err(PcapIoError::Pcap)?;
    }
    Ok(())
}

/// A small deterministic mix for the bundled sample capture and demos, addressed into the zones of
/// `configs/policies/demo.yaml`: an IT host (10.10.1.20) talking to an EHR application server
/// (10.10.5.10: a full TCP/443 connection, handshake, data both ways and an orderly close), DNS
/// to the management DNS server (10.99.0.53), ICMP echo from a management host, an HMI (10.30.2.5) and the IT host both reaching a PLC (10.30.1.10) on Modbus/TCP
/// (502), IPv6 ICMPv6 echo, a VLAN-tagged flow, an IPv4 fragment pair, and ARP. TCP sequence
/// and acknowledgement numbers are consistent ([`TcpSession`]), so connection tracking accepts
/// them. Sequence numbers run 0, 1, 2, ... in frame order (ARP, first, carries none).
pub fn demo_traffic() -> Vec<Vec<u8>> {
    let it = Ipv4Addr::new(10, 10, 1, 20);
    let dns = Ipv4Addr::new(10, 99, 0, 53);
    let admin = Ipv4Addr::new(10, 99, 0, 10);
    let ehr = Ipv4Addr::new(10, 10, 5, 10);
    let hmi = Ipv4Addr::new(10, 30, 2, 5);
    let plc = Ipv4Addr::new(10, 30, 1, 10);
    let v6a = Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, 0, 10);
    let v6b = Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 20);
    let fwd = || FrameBuilder::new();
    let rev = || FrameBuilder::new().macs(MAC_B, MAC_A);
    let mut frames = vec![arp_request(MAC_A, it, dns)];
    let mut tag = 0u64;
    fn push(frames: &mut Vec<Vec<u8>>, tag: &mut u64, b: FrameBuilder) {
        frames.push(b.seq(*tag).build());
        *tag += 1;
    }
    push(&mut frames, &mut tag, fwd().ipv4(it, dns).udp(40001, 53));
    push(&mut frames, &mut tag, rev().ipv4(dns, it).udp(53, 40001));
    let mut web = TcpSession::v4(it, 40002, ehr, 443).with_first_seq(tag);
    frames.extend(web.handshake());
    frames.push(web.data(Side::Client, 200 - SEQ_LEN));
    frames.push(web.data(Side::Server, 600 - SEQ_LEN));
    tag = web.next_tag();
    push(&mut frames, &mut tag, fwd().ipv4(admin, ehr).icmp(8, 0));
    push(&mut frames, &mut tag, rev().ipv4(ehr, admin).icmp(0, 0));
    let mut modbus = TcpSession::v4(hmi, 40003, plc, 502).with_first_seq(tag);
    frames.extend(modbus.handshake());
    frames.push(modbus.data(Side::Client, 12));
    frames.push(modbus.data(Side::Server, 12));
    tag = modbus.next_tag();
    let mut refused = TcpSession::v4(it, 40004, plc, 502).with_first_seq(tag);
    frames.push(refused.segment(Side::Client, parse::TcpFlags::SYN, 0));
    tag = refused.next_tag();
    push(&mut frames, &mut tag, fwd().ipv6(v6a, v6b).icmp(128, 0));
    push(&mut frames, &mut tag, rev().ipv6(v6b, v6a).icmp(129, 0));
    push(
        &mut frames,
        &mut tag,
        fwd().vlan(30).ipv4(hmi, plc).udp(40005, 20000),
    );
    push(
        &mut frames,
        &mut tag,
        fwd()
            .ipv4(it, ehr)
            .udp(40006, 514)
            .ip_id(0x5e97)
            .fragment(0, true)
            .payload_len(64),
    );
    push(
        &mut frames,
        &mut tag,
        fwd()
            .ipv4(it, ehr)
            .udp(40006, 514)
            .ip_id(0x5e97)
            .fragment(72, false),
    );
    let mut web = web.with_first_seq(tag);
    frames.extend(web.close(Side::Client));
    frames
}

/// Frame `seq` of a mix over `flows` flows (`flows` ≥ 1): packet `seq` belongs to flow
/// `seq % flows`. Flow `i` runs from a distinct source (10.0.0.0/8 for IPv4, fd00::/64 for
/// IPv6) to one server; every fourth flow is IPv6, the others alternate TCP and UDP.
pub fn mixed_frame(flows: usize, seq: u64) -> Vec<u8> {
    let flow = (seq % flows.max(1) as u64) as u32;
    let sport = 1024 + (flow % 60_000) as u16;
    let b = FrameBuilder::new().seq(seq);
    let b = if flow % 4 == 3 {
        let src = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, (flow >> 16) as u16, flow as u16);
        b.ipv6(src, Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, 0, 1))
    } else {
        let src = Ipv4Addr::from(0x0a00_0000 | (flow & 0x00ff_ffff));
        b.ipv4(src, Ipv4Addr::new(192, 168, 0, 1))
    };
    match flow % 2 {
        0 => b.tcp(sport, 443, parse::TcpFlags::ACK),
        _ => b.udp(sport, 53),
    }
    .build()
}

/// Write `packets` frames of [`mixed_frame`] over `flows` flows to an Ethernet pcap at `path`
/// (benchmark and sample traffic). Returns the number of frames written.
pub fn write_mixed_capture(
    path: &Path,
    flows: usize,
    packets: usize,
) -> Result<usize, PcapIoError> {
    write_pcap(path, (0..packets as u64).map(|seq| mixed_frame(flows, seq)))?;
    Ok(packets)
}

/// Which end of a [`TcpSession`] sends a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The end that sends the first SYN.
    Client,
    /// The other end.
    Server,
}

impl Side {
    fn index(self) -> usize {
        match self {
            Side::Client => 0,
            Side::Server => 1,
        }
    }

    /// The other end.
    pub fn peer(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}

/// Frames of one TCP connection whose sequence and acknowledgement numbers are consistent, so
/// that connection tracking accepts them: handshakes, data, FIN and RST sequences, and, through
/// [`TcpSession::segment`] with explicit numbers, deliberately wrong ones.
///
/// Every frame carries the payload sequence marker (so loss and duplication stay exact), SYNs
/// included: their payload is acknowledged like TCP Fast Open data (the SYN-ACK acknowledges
/// ISN + 1 + payload, as conntrack expects). Payload sequence numbers run on from `first_seq`.
#[derive(Clone, Debug)]
pub struct TcpSession {
    ends: [FrameBuilder; 2],
    ports: [u16; 2],
    next: [u32; 2],
    tag: u64,
}

impl TcpSession {
    /// A connection between `client` and `server` (builders with addresses, MACs, VLANs and
    /// IPv6 extension headers set, each as sent by that end), from port `ports[0]` to
    /// `ports[1]`, with initial sequence numbers `isn` (client, server).
    pub fn new(client: FrameBuilder, server: FrameBuilder, ports: [u16; 2], isn: [u32; 2]) -> Self {
        TcpSession {
            ends: [client, server],
            ports,
            next: isn,
            tag: 0,
        }
    }

    /// IPv4 between `client:cport` (MAC_A) and `server:sport` (MAC_B), ISNs 1000 and 500000.
    pub fn v4(client: Ipv4Addr, cport: u16, server: Ipv4Addr, sport: u16) -> Self {
        Self::new(
            FrameBuilder::new().ipv4(client, server),
            FrameBuilder::new().macs(MAC_B, MAC_A).ipv4(server, client),
            [cport, sport],
            [1000, 500_000],
        )
    }

    /// IPv6 between `client:cport` and `server:sport`, ISNs 1000 and 500000.
    pub fn v6(client: Ipv6Addr, cport: u16, server: Ipv6Addr, sport: u16) -> Self {
        Self::new(
            FrameBuilder::new().ipv6(client, server),
            FrameBuilder::new().macs(MAC_B, MAC_A).ipv6(server, client),
            [cport, sport],
            [1000, 500_000],
        )
    }

    /// Apply `f` to both ends' builders (e.g. add a VLAN tag).
    pub fn map(mut self, f: impl Fn(FrameBuilder) -> FrameBuilder) -> Self {
        self.ends = self.ends.map(f);
        self
    }

    /// Payload sequence number of the next frame.
    pub fn with_first_seq(mut self, seq: u64) -> Self {
        self.tag = seq;
        self
    }

    /// Payload sequence number the next frame will carry.
    pub fn next_tag(&self) -> u64 {
        self.tag
    }

    /// The next sequence number `side` will send.
    pub fn next_seq(&self, side: Side) -> u32 {
        self.next[side.index()]
    }

    /// A builder for a segment from `side` with `flags` and explicit numbers, advancing
    /// nothing (for crafted out-of-window or stray segments). Carries the next payload tag,
    /// which it consumes.
    pub fn raw(&mut self, side: Side, flags: u8, seq: u32, ack: u32) -> Vec<u8> {
        let i = side.index();
        let (sport, dport) = match side {
            Side::Client => (self.ports[0], self.ports[1]),
            Side::Server => (self.ports[1], self.ports[0]),
        };
        let b = self.ends[i]
            .clone()
            .tcp(sport, dport, flags)
            .tcp_seq(seq)
            .tcp_ack(ack)
            .seq(self.tag);
        self.tag += 1;
        b.build()
    }

    /// A segment from `side` with `flags` and `extra` payload bytes beyond the marker, numbered
    /// from the session's state (ACK field = the peer's next sequence number when ACK is set),
    /// advancing `side`'s sequence number by what it occupies (the payload, plus one for SYN
    /// and for FIN; RST: nothing).
    pub fn segment(&mut self, side: Side, flags: u8, extra: usize) -> Vec<u8> {
        let i = side.index();
        let ack = if flags & parse::TcpFlags::ACK != 0 {
            self.next[side.peer().index()]
        } else {
            0
        };
        let seq = self.next[i];
        let len = (SEQ_LEN + extra) as u32;
        let (sport, dport) = match side {
            Side::Client => (self.ports[0], self.ports[1]),
            Side::Server => (self.ports[1], self.ports[0]),
        };
        let b = self.ends[i]
            .clone()
            .tcp(sport, dport, flags)
            .tcp_seq(seq)
            .tcp_ack(ack)
            .payload_len(SEQ_LEN + extra)
            .seq(self.tag);
        self.tag += 1;
        let has = |m: u8| flags & m != 0;
        let used = if has(parse::TcpFlags::RST) {
            0
        } else {
            len + u32::from(has(parse::TcpFlags::SYN)) + u32::from(has(parse::TcpFlags::FIN))
        };
        self.next[i] = seq.wrapping_add(used);
        b.build()
    }

    /// SYN, SYN-ACK, ACK.
    pub fn handshake(&mut self) -> Vec<Vec<u8>> {
        use parse::TcpFlags as F;
        vec![
            self.segment(Side::Client, F::SYN, 0),
            self.segment(Side::Server, F::SYN | F::ACK, 0),
            self.segment(Side::Client, F::ACK, 0),
        ]
    }

    /// A data segment (PSH+ACK) from `side` with `extra` bytes beyond the marker.
    pub fn data(&mut self, side: Side, extra: usize) -> Vec<u8> {
        self.segment(side, parse::TcpFlags::PSH | parse::TcpFlags::ACK, extra)
    }

    /// FIN+ACK from `side`.
    pub fn fin(&mut self, side: Side) -> Vec<u8> {
        self.segment(side, parse::TcpFlags::FIN | parse::TcpFlags::ACK, 0)
    }

    /// RST+ACK from `side`, in window.
    pub fn rst(&mut self, side: Side) -> Vec<u8> {
        self.segment(side, parse::TcpFlags::RST | parse::TcpFlags::ACK, 0)
    }

    /// An orderly close started by `side`: FIN, ACK, FIN, ACK.
    pub fn close(&mut self, side: Side) -> Vec<Vec<u8>> {
        vec![
            self.fin(side),
            self.segment(side.peer(), parse::TcpFlags::ACK, 0),
            self.fin(side.peer()),
            self.segment(side, parse::TcpFlags::ACK, 0),
        ]
    }
}
