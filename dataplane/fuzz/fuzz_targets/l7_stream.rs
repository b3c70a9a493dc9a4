//! Fuzz the per-flow L7 stream state: the input picks a protocol, then is cut into segments
//! from alternating sides; the state never panics and its counters never exceed the bytes fed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use septa_dataplane::l7::{L7Constraint, L7Counters, L7Proto, L7State, Sender, Side, Transport};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let proto = L7Proto::from_u8(1 + sel % 8).unwrap_or(L7Proto::Modbus);
    let conduit_proto = if proto == L7Proto::S7commPlus {
        L7Proto::S7comm
    } else {
        proto
    };
    let c = L7Constraint::allow_all(conduit_proto);
    let transport = if proto == L7Proto::Bacnet {
        Transport::Udp
    } else {
        Transport::Tcp
    };
    let mut st = L7State::new(conduit_proto);
    let mut counters = L7Counters::boxed();
    let cut = usize::from(sel >> 3) + 1;
    for (i, seg) in rest.chunks(cut).enumerate() {
        let side = if i % 3 == 2 {
            Side::Server
        } else {
            Side::Client
        };
        let _ = st.inspect(side, transport, seg, &c, Sender::default(), &mut counters);
    }
    assert!(usize::from(st.messages()) + usize::from(st.malformed()) <= rest.len() + 1);
});
