//! Proves L7 inspection allocates nothing per segment: identification, stream framing (split
//! headers included), summaries, conduit checks and counters, for every industrial protocol,
//! measured by a counting global allocator (its own test binary).

use std::alloc::System;

use septa_dataplane::l7::samples::{self, sample_flows};
use septa_dataplane::l7::{
    L7Constraint, L7Counters, L7Proto, L7State, Sender, Side, Transport, identify,
};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// A conduit, the transport and the messages of one flow.
type Case = (L7Constraint, Transport, Vec<(Side, Vec<u8>)>);

#[test]
fn inspection_never_allocates() {
    // Inputs and per-flow/per-worker state are prepared before measuring.
    let flows = sample_flows(false);
    let mut cases: Vec<Case> = flows
        .into_iter()
        .filter(|f| f.proto.is_industrial())
        .map(|f| {
            let proto = if f.proto == L7Proto::S7commPlus {
                L7Proto::S7comm
            } else {
                f.proto
            };
            let mut c = L7Constraint::allow_all(proto);
            c.allow_plus = true;
            (c, f.transport, f.messages)
        })
        .collect();
    // A write that a read-only conduit denies, so the deny path is measured too.
    let mut ro = L7Constraint::allow_all(L7Proto::Modbus);
    ro.functions = septa_l7::functions::resolve(L7Proto::Modbus, "read")
        .unwrap()
        .into_iter()
        .collect();
    cases.push((
        ro,
        Transport::Tcp,
        vec![(Side::Client, samples::modbus_request(9, 1, 6, 1, 1))],
    ));
    let mut counters = L7Counters::boxed();
    let mut states: Vec<L7State> = cases.iter().map(|c| L7State::new(c.0.proto)).collect();

    let region = Region::new(GLOBAL);
    let mut denies = 0;
    for _ in 0..50 {
        for ((conduit, transport, msgs), state) in cases.iter().zip(states.iter_mut()) {
            for (side, payload) in msgs {
                let _ = identify(*side, *transport, (40000, 502), payload);
                // Each TCP message in two segments: the split header goes through the window.
                let cut = if *transport == Transport::Tcp {
                    payload.len() / 2
                } else {
                    0
                };
                for seg in [&payload[..cut], &payload[cut..]] {
                    let v = state.inspect(
                        *side,
                        *transport,
                        seg,
                        conduit,
                        Sender::default(),
                        &mut counters,
                    );
                    denies += usize::from(v != septa_l7::L7Verdict::Allow);
                }
            }
        }
    }
    let stats = region.change();
    assert_eq!(
        (stats.allocations, stats.reallocations),
        (0, 0),
        "{stats:?}"
    );
    // Exactly the Modbus write is denied, once per round.
    assert_eq!(denies, 50);
}
