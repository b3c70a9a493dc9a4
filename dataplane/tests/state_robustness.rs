//! No input makes the state modules panic: valid frames with random bytes overwritten (or cut)
//! go through the parser and, when it accepts them, through conntrack, ICMP-error parsing and
//! fragment tracking.

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use septa_dataplane::conntrack::{self, Conn, icmp_error_relation};
use septa_dataplane::flow::{FlowTable, FlowTableConfig};
use septa_dataplane::frag::{FragConfig, FragTable, fragment_info};
use septa_dataplane::parse::{Fragment, TcpFlags, parse};
use septa_dataplane::testgen::{FrameBuilder, Ipv6Ext};

fn seeds() -> Vec<Vec<u8>> {
    let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
    let (a6, b6) = (
        Ipv6Addr::LOCALHOST,
        Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2),
    );
    let syn = FrameBuilder::new()
        .ipv4(a, b)
        .tcp(1, 80, TcpFlags::SYN)
        .build();
    // An ICMP error quoting the SYN.
    let mut err = FrameBuilder::new()
        .ipv4(b, a)
        .icmp(3, 4)
        .payload_len(48)
        .build();
    let quote = &syn[14..14 + 48];
    let n = err.len();
    err[n - 48..].copy_from_slice(quote);
    let mut err6 = FrameBuilder::new()
        .ipv6(b6, a6)
        .icmp(2, 0)
        .payload_len(80)
        .build();
    let syn6 = FrameBuilder::new()
        .ipv6(a6, b6)
        .ext(Ipv6Ext::DestinationOptions)
        .tcp(1, 80, 2)
        .build();
    let n = err6.len();
    err6[n - 80..].copy_from_slice(&syn6[14..14 + 80]);
    vec![
        syn,
        syn6,
        err,
        err6,
        FrameBuilder::new()
            .ipv4(a, b)
            .udp(5, 53)
            .fragment(0, true)
            .payload_len(64)
            .build(),
        FrameBuilder::new()
            .ipv4(a, b)
            .udp(5, 53)
            .fragment(72, false)
            .build(),
        FrameBuilder::new()
            .ipv6(a6, b6)
            .udp(5, 53)
            .fragment(0, true)
            .payload_len(64)
            .build(),
        FrameBuilder::new()
            .ipv6(a6, b6)
            .ext(Ipv6Ext::HopByHop)
            .udp(5, 53)
            .fragment(72, false)
            .build(),
        FrameBuilder::new().ipv4(a, b).icmp(8, 0).build(),
    ]
}

proptest! {
    #[test]
    fn mutated_frames_never_panic(
        picks in proptest::collection::vec(
            (0usize..9, proptest::collection::vec((any::<u16>(), any::<u8>()), 0..6), any::<u16>()),
            1..40,
        )
    ) {
        let seeds = seeds();
        let mut flows: FlowTable<Conn> = FlowTable::new(&FlowTableConfig::new(16, 1000), [1, 1]).unwrap();
        let mut frags: FragTable<u8> = FragTable::new(&FragConfig::new(4, 1000), [2, 2]).unwrap();
        for (now, (seed, edits, cut)) in picks.into_iter().enumerate() {
            let mut f = seeds[seed].clone();
            for (pos, byte) in edits {
                let i = usize::from(pos) % f.len();
                f[i] = byte;
            }
            let keep = f.len() - usize::from(cut) % 8;
            f.truncate(keep);
            let Ok(pkt) = parse(&f) else { continue };
            let now = now as u64;
            let _ = icmp_error_relation(&pkt, &f);
            let _ = conntrack::track(&mut flows, &pkt, &f, now);
            if let Some(info) = fragment_info(&pkt, &f) {
                let _ = match pkt.fragment {
                    Fragment::First if info.offset == 0 && info.more => frags.head(&pkt, &info, pkt.key, 1, now),
                    Fragment::NonFirst => frags.follow(&pkt, &info, now).map(|_| ()),
                    _ => Ok(()),
                };
            }
            flows.expire(now * 10_000, 8, |_| {});
            frags.expire(now * 10_000, 8);
        }
    }
}

#[test]
fn seeds_reach_the_state_modules() {
    let seeds = seeds();
    let parsed: Vec<_> = seeds.iter().map(|f| parse(f).unwrap()).collect();
    for i in [2, 3] {
        let inner = icmp_error_relation(&parsed[i], &seeds[i]).unwrap();
        assert!(inner.is_some(), "seed {i} is an ICMP error with a quote");
    }
    for i in 4..8 {
        assert!(fragment_info(&parsed[i], &seeds[i]).is_some(), "seed {i}");
    }
}
