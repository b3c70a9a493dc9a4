//! Fuzz the packet parser: any input must parse or be rejected with a drop reason, never panic,
//! and every offset it reports must lie inside the frame, in order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use septa_dataplane::parse::{Fragment, parse};

fuzz_target!(|frame: &[u8]| {
    if let Ok(p) = parse(frame) {
        assert!(p.l3_offset <= p.l3_end && p.l3_end <= frame.len());
        if let Some(l4) = p.l4_offset {
            assert!(p.l3_offset < l4 && l4 <= p.l3_end);
            let payload = p.payload_offset.expect("an L4 header has a payload offset");
            assert!(l4 <= payload && payload <= p.l3_end);
        }
        if p.fragment == Fragment::NonFirst {
            assert_eq!((p.key.sport, p.key.dport), (0, 0));
            assert!(p.l4_offset.is_none());
        }
        assert!(p.is_ip() || p.flow_key().is_none());
    }
});
