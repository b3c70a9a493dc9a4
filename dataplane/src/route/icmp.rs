//! Frames the router builds itself: ICMP/ICMPv6 time exceeded (RFC 792, RFC 4443 §3.3), ARP
//! requests and IPv6 neighbour solicitations for unresolved next hops. Each builder writes one
//! Ethernet frame at the start of `out` with `smoltcp::wire` views and returns its length; `out`
//! must hold [`MAX_FRAME`] bytes.

use std::net::{Ipv4Addr, Ipv6Addr};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, ETHERNET_HEADER_LEN, EthernetAddress, EthernetFrame,
    EthernetProtocol, IPV4_HEADER_LEN, IPV6_HEADER_LEN, Icmpv4Message, Icmpv4Packet, Icmpv6Message,
    Icmpv6Packet, Icmpv6Repr, IpProtocol, Ipv4Packet, Ipv6Packet, NdiscRepr, RawHardwareAddress,
};

/// Largest frame a builder writes (an ICMPv6 error of the IPv6 minimum MTU, 1280, plus Ethernet).
pub const MAX_FRAME: usize = ETHERNET_HEADER_LEN + IPV6_MIN_MTU;
/// RFC 1812 §4.3.2.3: an ICMP error quotes as much of the offending datagram as fits in 576 bytes.
const IPV4_ERROR_MAX: usize = 576;
/// RFC 4443 §2.4(c): an ICMPv6 error must not exceed the IPv6 minimum MTU.
const IPV6_MIN_MTU: usize = 1280;
/// ICMP error header: type, code, checksum, 4 unused bytes.
const ICMP_ERROR_HEADER_LEN: usize = 8;
/// Ethernet frames shorter than this are padded (ARP requests).
const ETHERNET_MIN_FRAME: usize = 60;
/// TTL / hop limit of packets the router originates.
const ORIGIN_HOP_LIMIT: u8 = 64;
/// Neighbour discovery messages carry hop limit 255 (RFC 4861 §7.1.1).
const NDISC_HOP_LIMIT: u8 = 255;
/// ICMPv6 neighbour solicitation with a source link-layer address option: 8 + 16 + 8 bytes.
const NS_LEN: usize = 32;

fn ethernet(out: &mut [u8], dst: [u8; 6], src: [u8; 6], ethertype: EthernetProtocol) {
    let mut eth = EthernetFrame::new_unchecked(&mut out[..ETHERNET_HEADER_LEN]);
    eth.set_dst_addr(EthernetAddress(dst));
    eth.set_src_addr(EthernetAddress(src));
    eth.set_ethertype(ethertype);
}

/// ICMP time exceeded in transit (type 11 code 0) from `src` (the receiving port's address) to
/// the sender of `orig_ip` (the offending IPv4 packet, header first), quoting as much of it as
/// fits in 576 bytes.
pub fn time_exceeded_v4(
    out: &mut [u8],
    eth_dst: [u8; 6],
    eth_src: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    orig_ip: &[u8],
) -> usize {
    let quote = orig_ip
        .len()
        .min(IPV4_ERROR_MAX - IPV4_HEADER_LEN - ICMP_ERROR_HEADER_LEN);
    let ip_len = IPV4_HEADER_LEN + ICMP_ERROR_HEADER_LEN + quote;
    let total = ETHERNET_HEADER_LEN + ip_len;
    let frame = &mut out[..total];
    ethernet(frame, eth_dst, eth_src, EthernetProtocol::Ipv4);
    let (_, ip_bytes) = frame.split_at_mut(ETHERNET_HEADER_LEN);
    let (ip_header, icmp_bytes) = ip_bytes.split_at_mut(IPV4_HEADER_LEN);
    icmp_bytes[..ICMP_ERROR_HEADER_LEN].fill(0);
    let mut icmp = Icmpv4Packet::new_unchecked(&mut icmp_bytes[..]);
    icmp.set_msg_type(Icmpv4Message::TimeExceeded);
    icmp.set_msg_code(0);
    icmp.data_mut()[..quote].copy_from_slice(&orig_ip[..quote]);
    icmp.fill_checksum();
    ip_header.fill(0);
    let mut ip = Ipv4Packet::new_unchecked(&mut ip_header[..]);
    ip.set_version(4);
    ip.set_header_len(IPV4_HEADER_LEN as u8);
    // Bounded by 576 above.
    ip.set_total_len(ip_len as u16);
    ip.set_hop_limit(ORIGIN_HOP_LIMIT);
    ip.set_next_header(IpProtocol::Icmp);
    ip.set_src_addr(src);
    ip.set_dst_addr(dst);
    ip.fill_checksum();
    total
}

/// ICMPv6 time exceeded, hop limit exceeded in transit (type 3 code 0), quoting as much of
/// `orig_ip` (the offending IPv6 packet) as fits in the IPv6 minimum MTU.
pub fn time_exceeded_v6(
    out: &mut [u8],
    eth_dst: [u8; 6],
    eth_src: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    orig_ip: &[u8],
) -> usize {
    let quote = orig_ip
        .len()
        .min(IPV6_MIN_MTU - IPV6_HEADER_LEN - ICMP_ERROR_HEADER_LEN);
    let payload_len = ICMP_ERROR_HEADER_LEN + quote;
    let total = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + payload_len;
    let frame = &mut out[..total];
    ethernet(frame, eth_dst, eth_src, EthernetProtocol::Ipv6);
    ipv6_header(
        &mut frame[ETHERNET_HEADER_LEN..],
        src,
        dst,
        payload_len,
        ORIGIN_HOP_LIMIT,
    );
    let icmp_bytes = &mut frame[ETHERNET_HEADER_LEN + IPV6_HEADER_LEN..];
    icmp_bytes[..ICMP_ERROR_HEADER_LEN].fill(0);
    let mut icmp = Icmpv6Packet::new_unchecked(icmp_bytes);
    icmp.set_msg_type(Icmpv6Message::TimeExceeded);
    icmp.set_msg_code(0);
    icmp.payload_mut()[..quote].copy_from_slice(&orig_ip[..quote]);
    icmp.fill_checksum(&src, &dst);
    total
}

fn ipv6_header(buf: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr, payload_len: usize, hops: u8) {
    let mut ip = Ipv6Packet::new_unchecked(&mut buf[..IPV6_HEADER_LEN]);
    ip.set_version(6);
    ip.set_traffic_class(0);
    ip.set_flow_label(0);
    // At most the IPv6 minimum MTU here.
    ip.set_payload_len(payload_len as u16);
    ip.set_next_header(IpProtocol::Icmpv6);
    ip.set_hop_limit(hops);
    ip.set_src_addr(src);
    ip.set_dst_addr(dst);
}

/// A broadcast ARP request from (`mac`, `ip`) for `target`, padded to 60 bytes.
pub fn arp_request(out: &mut [u8], mac: [u8; 6], ip: Ipv4Addr, target: Ipv4Addr) -> usize {
    let frame = &mut out[..ETHERNET_MIN_FRAME];
    frame.fill(0);
    ethernet(frame, [0xff; 6], mac, EthernetProtocol::Arp);
    let repr = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress(mac),
        source_protocol_addr: ip,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    let end = ETHERNET_HEADER_LEN + repr.buffer_len();
    repr.emit(&mut ArpPacket::new_unchecked(
        &mut frame[ETHERNET_HEADER_LEN..end],
    ));
    ETHERNET_MIN_FRAME
}

/// The solicited-node multicast address of `target` (RFC 4291 §2.7.1): ff02::1:ffXX:XXXX.
pub fn solicited_node(target: Ipv6Addr) -> Ipv6Addr {
    let t = target.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, t[13], t[14], t[15],
    ])
}

/// A neighbour solicitation from (`mac`, `ip`) for `target`, sent to its solicited-node
/// multicast group, with a source link-layer address option.
pub fn neighbour_solicit(out: &mut [u8], mac: [u8; 6], ip: Ipv6Addr, target: Ipv6Addr) -> usize {
    let dst = solicited_node(target);
    let g = dst.octets();
    let eth_dst = [0x33, 0x33, g[12], g[13], g[14], g[15]];
    let total = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + NS_LEN;
    let frame = &mut out[..total];
    ethernet(frame, eth_dst, mac, EthernetProtocol::Ipv6);
    ipv6_header(
        &mut frame[ETHERNET_HEADER_LEN..],
        ip,
        dst,
        NS_LEN,
        NDISC_HOP_LIMIT,
    );
    let repr = Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
        target_addr: target,
        lladdr: Some(RawHardwareAddress::from_bytes(&mac)),
    });
    let mut icmp = Icmpv6Packet::new_unchecked(&mut frame[ETHERNET_HEADER_LEN + IPV6_HEADER_LEN..]);
    repr.emit(&ip, &dst, &mut icmp, &ChecksumCapabilities::default());
    total
}

/// What a frame the gateway's stack queued answers (for the router's counters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// An ICMP or ICMPv6 echo reply.
    EchoReply,
    /// An ARP reply.
    ArpReply,
    /// An ICMPv6 neighbour advertisement.
    NeighbourAdvert,
    /// Anything else (smoltcp's own errors, such as port unreachable).
    Other,
}

/// Classify a frame the stack queued, read with `smoltcp::wire` views (malformed: `Other`).
/// Slow path: runs once per answer, in [`super::Router::poll`].
pub fn classify_answer(frame: &[u8]) -> Answer {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return Answer::Other;
    };
    match eth.ethertype() {
        EthernetProtocol::Arp => match ArpPacket::new_checked(eth.payload()) {
            Ok(a) if a.operation() == ArpOperation::Reply => Answer::ArpReply,
            _ => Answer::Other,
        },
        EthernetProtocol::Ipv4 => match Ipv4Packet::new_checked(eth.payload()) {
            Ok(ip) if ip.next_header() == IpProtocol::Icmp => {
                match Icmpv4Packet::new_checked(ip.payload()) {
                    Ok(m) if m.msg_type() == Icmpv4Message::EchoReply => Answer::EchoReply,
                    _ => Answer::Other,
                }
            }
            _ => Answer::Other,
        },
        // smoltcp sends its answers without extension headers.
        EthernetProtocol::Ipv6 => match Ipv6Packet::new_checked(eth.payload()) {
            Ok(ip) if ip.next_header() == IpProtocol::Icmpv6 => {
                match Icmpv6Packet::new_checked(ip.payload()).map(|m| m.msg_type()) {
                    Ok(Icmpv6Message::EchoReply) => Answer::EchoReply,
                    Ok(Icmpv6Message::NeighborAdvert) => Answer::NeighbourAdvert,
                    _ => Answer::Other,
                }
            }
            _ => Answer::Other,
        },
        _ => Answer::Other,
    }
}
