use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;
use crate::parse::{Fragment, parse};
use crate::testgen::FrameBuilder;

const A: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
const B: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 20);

fn table(capacity: usize) -> FragTable<u8> {
    FragTable::new(&FragConfig::new(capacity, 1000), [5, 6]).unwrap()
}

/// IPv4 UDP datagram `id`: the first fragment carries the 8-byte UDP header + `payload` bytes.
fn v4(id: u64, offset: u16, more: bool, payload: usize) -> Vec<u8> {
    FrameBuilder::new()
        .ipv4(A, B)
        .udp(40000, 514)
        .seq(id)
        .fragment(offset, more)
        .payload_len(payload)
        .build()
}

fn v6(offset: u16, more: bool, payload: usize) -> Vec<u8> {
    FrameBuilder::new()
        .ipv6(
            Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, 0, 1),
            Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 1),
        )
        .udp(40000, 514)
        .fragment(offset, more)
        .payload_len(payload)
        .build()
}

/// Feed one fragment the way the worker would: heads are recorded with verdict 7.
fn feed(t: &mut FragTable<u8>, frame: &[u8], now: u64) -> Result<(FlowKey, u8), DropReason> {
    let pkt = parse(frame)?;
    let info = fragment_info(&pkt, frame).expect("a fragment");
    match pkt.fragment {
        Fragment::First => t.head(&pkt, &info, pkt.key, 7, now).map(|()| (pkt.key, 7)),
        Fragment::NonFirst => t.follow(&pkt, &info, now),
        Fragment::None => unreachable!(),
    }
}

#[test]
fn fragment_info_reads_ipv4_and_ipv6_headers() {
    let f = v4(0x1234, 72, true, 64);
    let i = fragment_info(&parse(&f).unwrap(), &f).unwrap();
    assert_eq!(
        i,
        FragInfo {
            id: 0x1234,
            proto: 17,
            offset: 72,
            len: 64,
            more: true
        }
    );
    let f = v6(0, true, 64);
    let i = fragment_info(&parse(&f).unwrap(), &f).unwrap();
    assert_eq!(
        i,
        FragInfo {
            id: 0x5e97_0001,
            proto: 17,
            offset: 0,
            len: 72,
            more: true
        }
    );
    let f = v6(72, false, 20);
    let i = fragment_info(&parse(&f).unwrap(), &f).unwrap();
    assert_eq!((i.offset, i.len, i.more, i.proto), (72, 20, false, 17));
    let whole = FrameBuilder::new().ipv4(A, B).udp(1, 2).build();
    assert_eq!(fragment_info(&parse(&whole).unwrap(), &whole), None);
}

#[test]
fn in_order_fragments_follow_the_head_and_release_it() {
    let mut t = table(8);
    let (key, v) = feed(&mut t, &v4(1, 0, true, 64), 0).unwrap();
    assert_eq!((key.sport, key.dport, v), (40000, 514, 7));
    // Non-first fragments carry no ports: they get the head's full key and verdict.
    assert_eq!(feed(&mut t, &v4(1, 72, true, 64), 1), Ok((key, 7)));
    assert_eq!(t.len(), 1);
    assert_eq!(feed(&mut t, &v4(1, 136, false, 20), 2), Ok((key, 7)));
    assert!(t.is_empty(), "complete datagram released");
    assert_eq!(t.stats().completed, 1);
}

#[test]
fn out_of_order_tail_pieces_merge() {
    let mut t = table(8);
    feed(&mut t, &v4(1, 0, true, 64), 0).unwrap();
    feed(&mut t, &v4(1, 200, false, 20), 0).unwrap();
    feed(&mut t, &v4(1, 136, true, 64), 0).unwrap();
    assert_eq!(t.len(), 1);
    feed(&mut t, &v4(1, 72, true, 64), 0).unwrap();
    assert!(t.is_empty());
}

#[test]
fn ipv6_fragments() {
    let mut t = table(8);
    let (key, _) = feed(&mut t, &v6(0, true, 64), 0).unwrap();
    assert_eq!(feed(&mut t, &v6(72, false, 20), 0), Ok((key, 7)));
    assert!(t.is_empty());
    feed(&mut t, &v6(0, true, 64), 0).unwrap();
    assert_eq!(
        feed(&mut t, &v6(64, false, 20), 0),
        Err(DropReason::FragmentOverlap)
    );
}

#[test]
fn overlapping_fragment_poisons_the_datagram() {
    let mut t = table(8);
    feed(&mut t, &v4(1, 0, true, 64), 0).unwrap();
    // Rewrites bytes 64..72 of the first fragment (the RFC 1858 overlap attack).
    assert_eq!(
        feed(&mut t, &v4(1, 64, true, 64), 0),
        Err(DropReason::FragmentOverlap)
    );
    // The rest of the datagram is dropped too.
    assert_eq!(
        feed(&mut t, &v4(1, 72, false, 20), 0),
        Err(DropReason::FragmentOverlap)
    );
    // Other datagrams are unaffected.
    feed(&mut t, &v4(2, 0, true, 64), 0).unwrap();
    assert!(feed(&mut t, &v4(2, 72, false, 20), 0).is_ok());
}

#[test]
fn duplicate_fragments_count_as_overlap() {
    let mut t = table(8);
    feed(&mut t, &v4(1, 0, true, 64), 0).unwrap();
    feed(&mut t, &v4(1, 72, true, 64), 0).unwrap();
    assert_eq!(
        feed(&mut t, &v4(1, 72, true, 64), 0),
        Err(DropReason::FragmentOverlap)
    );
    let mut t = table(8);
    feed(&mut t, &v4(1, 0, true, 64), 0).unwrap();
    assert_eq!(
        feed(&mut t, &v4(1, 0, true, 64), 0),
        Err(DropReason::FragmentOverlap)
    );
    assert_eq!(
        feed(&mut t, &v4(1, 72, false, 20), 0),
        Err(DropReason::FragmentOverlap)
    );
}

#[test]
fn non_first_fragment_without_head_is_dropped() {
    let mut t = table(8);
    assert_eq!(
        feed(&mut t, &v4(1, 72, false, 20), 0),
        Err(DropReason::FragmentNoHead)
    );
    assert!(t.is_empty(), "nothing is held for a missing head");
    // The head arriving afterwards starts a datagram; the dropped tail is simply missing.
    feed(&mut t, &v4(1, 0, true, 64), 1).unwrap();
    assert_eq!(t.len(), 1);
}

#[test]
fn tiny_fragments_are_dropped() {
    // RFC 1858/3128: a first TCP fragment without the full TCP header, and a TCP fragment at
    // offset 8, are the parser's to drop.
    let mut first = FrameBuilder::new()
        .ipv4(A, B)
        .tcp(1, 80, 0x02)
        .fragment(0, true)
        .build();
    first.truncate(14 + 20 + 8);
    first[14 + 3] = 28; // IPv4 total length
    first[14 + 10] = 0;
    first[14 + 11] = 0;
    let c = ipv4_header_checksum(&first[14..34]);
    first[24..26].copy_from_slice(&c.to_be_bytes());
    assert_eq!(parse(&first), Err(DropReason::TinyFragment));
    let at8 = FrameBuilder::new()
        .ipv4(A, B)
        .tcp(1, 80, 0)
        .fragment(8, false)
        .build();
    assert_eq!(parse(&at8), Err(DropReason::TinyFragment));
    // Here: a fragment with more following must carry a non-zero multiple of 8 bytes.
    let mut t = table(8);
    assert_eq!(
        feed(&mut t, &v4(1, 0, true, 60), 0),
        Err(DropReason::FragmentInvalid)
    );
    feed(&mut t, &v4(2, 0, true, 64), 0).unwrap();
    assert_eq!(
        feed(&mut t, &v4(2, 72, true, 61), 0),
        Err(DropReason::FragmentInvalid)
    );
}

fn ipv4_header_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[test]
fn oversize_datagram_is_dropped() {
    let mut t = table(8);
    feed(&mut t, &v4(1, 0, true, 64), 0).unwrap();
    // Ping of death: data past byte 65535.
    assert_eq!(
        feed(&mut t, &v4(1, 65_520, false, 20), 0),
        Err(DropReason::FragmentOversize)
    );
    assert_eq!(
        feed(&mut t, &v4(1, 72, false, 20), 0),
        Err(DropReason::FragmentOverlap),
        "poisoned"
    );
}

#[test]
fn data_past_the_declared_end_is_invalid() {
    let mut t = table(8);
    feed(&mut t, &v4(1, 0, true, 64), 0).unwrap();
    feed(&mut t, &v4(1, 200, false, 20), 0).unwrap();
    assert_eq!(
        feed(&mut t, &v4(1, 216, true, 64), 0),
        Err(DropReason::FragmentInvalid)
    );
    let mut t = table(8);
    feed(&mut t, &v4(1, 0, true, 64), 0).unwrap();
    feed(&mut t, &v4(1, 200, false, 20), 0).unwrap();
    // A second, different "last" fragment.
    assert_eq!(
        feed(&mut t, &v4(1, 300, false, 20), 0),
        Err(DropReason::FragmentInvalid)
    );
}

#[test]
fn too_many_holes_is_invalid() {
    let mut t = table(8);
    feed(&mut t, &v4(1, 0, true, 64), 0).unwrap();
    // Every other 64-byte piece: each adds a disjoint range.
    let mut off = 72 + 64;
    for _ in 1..MAX_RANGES {
        feed(&mut t, &v4(1, off, true, 64), 0).unwrap();
        off += 128;
    }
    assert_eq!(
        feed(&mut t, &v4(1, off, true, 64), 0),
        Err(DropReason::FragmentInvalid)
    );
}

#[test]
fn full_table_refuses_new_datagrams_until_one_expires() {
    let mut t = table(2);
    feed(&mut t, &v4(1, 0, true, 64), 0).unwrap();
    feed(&mut t, &v4(2, 0, true, 64), 10).unwrap();
    assert_eq!(
        feed(&mut t, &v4(3, 0, true, 64), 20),
        Err(DropReason::FragmentTableFull)
    );
    // 30 s later the oldest is reclaimed for the new head.
    feed(&mut t, &v4(3, 0, true, 64), 30_000).unwrap();
    assert_eq!(
        feed(&mut t, &v4(1, 72, false, 20), 30_001),
        Err(DropReason::FragmentNoHead)
    );
    assert!(feed(&mut t, &v4(2, 72, false, 20), 30_001).is_ok());
}

#[test]
fn heads_expire_after_the_timeout() {
    let mut t = table(4);
    feed(&mut t, &v4(1, 0, true, 64), 0).unwrap();
    feed(&mut t, &v4(2, 0, true, 64), 5_000).unwrap();
    assert_eq!(t.expire(29_999, 10), 0);
    assert_eq!(t.expire(30_000, 10), 1);
    // Lazily, too: a late fragment of an expired head.
    assert_eq!(
        feed(&mut t, &v4(2, 72, false, 20), 35_000),
        Err(DropReason::FragmentNoHead)
    );
    assert!(t.is_empty());
    assert_eq!(t.stats().expired, 2);
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn runs(covered: &[bool]) -> usize {
        covered
            .iter()
            .enumerate()
            .filter(|&(i, &b)| b && (i == 0 || !covered[i - 1]))
            .count()
    }

    proptest! {
        /// Random pieces (16..40 bytes: the builder writes at least 12) of one datagram after
        /// its 64-byte head, against a byte-coverage model
        /// of every rule: overlap (and poisoning), the declared end, the range limit, and
        /// release once complete.
        #[test]
        fn pieces_match_a_coverage_model(
            pieces in proptest::collection::vec((1u16..40, 2usize..6, any::<bool>()), 1..30)
        ) {
            let mut t = table(4);
            feed(&mut t, &v4(9, 0, true, 56), 0).unwrap(); // bytes 0..64
            let mut covered = vec![true; 64];
            let mut declared: Option<usize> = None;
            let mut poisoned = false;
            let mut done = false;
            for (unit, units, last) in pieces {
                let (start, len) = (usize::from(unit) * 8, units * 8);
                let end = start + len;
                let r = feed(&mut t, &v4(9, unit * 8, !last, len), 1);
                if done {
                    prop_assert_eq!(r, Err(DropReason::FragmentNoHead));
                    continue;
                }
                if poisoned {
                    prop_assert_eq!(r, Err(DropReason::FragmentOverlap));
                    continue;
                }
                let mut next = covered.clone();
                if next.len() < end {
                    next.resize(end, false);
                }
                let new_declared = if last { Some(end) } else { declared };
                let past_end = |d: usize| end > d || (covered.len() > d && covered[d..].iter().any(|&b| b));
                let expected = if declared.is_some_and(|d| last && d != end)
                    || new_declared.is_some_and(past_end)
                {
                    Err(DropReason::FragmentInvalid)
                } else if next[start..end].iter().any(|&b| b) {
                    Err(DropReason::FragmentOverlap)
                } else {
                    next[start..end].iter_mut().for_each(|b| *b = true);
                    if runs(&next) > MAX_RANGES { Err(DropReason::FragmentInvalid) } else { Ok(()) }
                };
                prop_assert_eq!(r.map(|_| ()), expected);
                if expected.is_err() {
                    poisoned = true;
                    continue;
                }
                covered = next;
                declared = new_declared;
                if let Some(d) = declared && covered.len() == d && covered.iter().all(|&b| b) {
                    done = true;
                }
                prop_assert_eq!(t.is_empty(), done);
            }
        }
    }
}
