//! Sends generated flow records as IPFIX to a collector, for interop checks against real
//! collectors (`bench/scripts/ipfix-interop.sh` runs it against nfdump's `nfcapd`).
//!
//! `cargo run -p septa-control --example ipfix_send -- HOST:PORT [RECORDS]`
//!
//! Prints one line: `sent_records= messages= packets= bytes= allowed= denied= would_deny=`.

use std::net::SocketAddr;

use septa_control::export::ipfix::IpfixExporter;
use septa_control::history::FlowVerdict;
use septa_control::recommend::synth::Scenario;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let collector: SocketAddr = args
        .next()
        .ok_or("usage: ipfix_send HOST:PORT [RECORDS]")?
        .parse()?;
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1000);
    let mut flows = Scenario::tiered(4, 10).flows(n, 1_764_000_000_000, 1_764_000_600_000, 1);
    // A mix of verdicts, so the enterprise field carries all three values.
    for (i, f) in flows.iter_mut().enumerate() {
        f.verdict = match i % 3 {
            0 => FlowVerdict::Allowed,
            1 => FlowVerdict::Denied,
            _ => FlowVerdict::WouldDeny,
        };
        f.rule = (i % 7) as u32 + 1;
    }
    let mut ex = IpfixExporter::new(collector, 1)?;
    let mut messages = 0;
    for chunk in flows.chunks(200) {
        messages += ex.export(chunk, 1_764_000_600)?;
        // Pace the datagrams a little so a collector on a busy box keeps up.
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let count = |v: FlowVerdict| flows.iter().filter(|f| f.verdict == v).count();
    println!(
        "sent_records={} messages={messages} packets={} bytes={} allowed={} denied={} would_deny={}",
        flows.len(),
        flows.iter().map(|f| f.packets).sum::<u64>(),
        flows.iter().map(|f| f.bytes).sum::<u64>(),
        count(FlowVerdict::Allowed),
        count(FlowVerdict::Denied),
        count(FlowVerdict::WouldDeny)
    );
    Ok(())
}
