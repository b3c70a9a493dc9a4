//! A worker's flow-table and sampler counters reach their readers (`/metrics`, the health
//! report) every `counters::PUBLISH_US` of worker clock; what was counted after the last
//! publication must reach them when the worker stops too, and after a flush.

use std::net::Ipv4Addr;
use std::sync::atomic::AtomicBool;

use septa_classifier::{Action, Rule, TableCell, compile};
use septa_dataplane::events;
use septa_dataplane::io::memory::MemoryIo;
use septa_dataplane::sample::{Sampler, SamplerConfig};
use septa_dataplane::testgen::TcpSession;
use septa_dataplane::worker::Clock;
use septa_dataplane::{Bridge, Decision, StateConfig, Worker, WorkerState};

fn session(cport: u16) -> TcpSession {
    TcpSession::v4(
        Ipv4Addr::new(10, 1, 0, 1),
        cport,
        Ipv4Addr::new(10, 2, 0, 1),
        443,
    )
}

fn handshakes(w: &mut Worker, io: &mut MemoryIo, ports: std::ops::Range<u16>) {
    for p in ports {
        for f in session(p).handshake() {
            io.push_rx(0, f);
        }
    }
    while io.rx_pending(0) > 0 {
        w.poll(io, &mut ());
    }
}

#[test]
fn the_last_interval_is_published_at_stop_and_after_a_flush() {
    let cell = TableCell::new(compile(&[Rule::any(1, Action::Allow)]).unwrap());
    let (sink, _source) = events::ring(1 << 12);
    let mut state = WorkerState::new(&StateConfig::new(64), sink).unwrap();
    // The clock stands still: after the first poll no publication is due again.
    state.set_clock(Clock::Manual);
    state.set_now(1_000);
    let (tx, _rx) = septa_features::spread::sample_channel(1024, 16);
    let mut sc = SamplerConfig::new(64);
    sc.one_in = 1;
    state.set_sampler(Sampler::new(0, sc, tx).unwrap());
    let mut w = Worker::with_state(
        Bridge::new(2, &[(0, 1)]).unwrap(),
        Decision::Table(cell.reader()),
        state,
    );
    let flows = w.state().flows().shared_stats();
    let sampler = w.state().sampler().unwrap().shared_counters();
    let mut io = MemoryIo::new(2);

    handshakes(&mut w, &mut io, 1000..1002);
    assert_eq!(
        flows.load().stats.inserted,
        2,
        "published at the first poll"
    );
    assert_eq!(sampler.load().flows, 2);
    handshakes(&mut w, &mut io, 2000..2005);
    assert_eq!(w.state().flows().len(), 7);
    assert_eq!(
        flows.load().stats.inserted,
        2,
        "not due: the clock has not moved"
    );
    assert_eq!(sampler.load().flows, 2);

    // Stop (the flag is already set: no further poll).
    w.run(&mut io, &AtomicBool::new(true));
    assert_eq!(flows.load().stats.inserted, 7);
    assert_eq!(flows.load().active, 7);
    assert_eq!(sampler.load().flows, 7);

    // The final flush empties the table (its flows count as expired): its readers see that.
    while w.flush(4) > 0 {}
    assert_eq!(flows.load().active, 0);
    assert_eq!(flows.load().stats.expired, 7);
}
