//! Fuzz the enip parser: any input is accepted or rejected with an error, never a panic; a
//! checked message frames to a length inside the input, and its summary is the summary of its
//! leading bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use septa_dataplane::l7::{L7Proto, Side, enip, frame_len, summarize, summary_len};

fuzz_target!(|data: &[u8]| {
    let side = if data.first().is_some_and(|b| b & 1 == 1) {
        Side::Server
    } else {
        Side::Client
    };
    let summary = summarize(L7Proto::EnipCip, side, data);
    let framed = frame_len(L7Proto::EnipCip, data);
    if let Ok(p) = enip::Packet::new_checked(data) {
        let n = framed
            .expect("a checked message frames")
            .expect("header complete");
        assert!(n <= data.len());
        let k = summary_len(L7Proto::EnipCip).max(1).min(n);
        if L7Proto::EnipCip != L7Proto::Bacnet {
            assert_eq!(summarize(L7Proto::EnipCip, side, &data[..k]), summary);
        }
        let _ = p.into_inner();
    }
});
