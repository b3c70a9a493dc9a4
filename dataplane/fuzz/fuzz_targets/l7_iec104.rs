//! Fuzz the iec104 parser: any input is accepted or rejected with an error, never a panic; a
//! checked message frames to a length inside the input, and its summary is the summary of its
//! leading bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use septa_dataplane::l7::{L7Proto, Side, frame_len, iec104, summarize, summary_len};

fuzz_target!(|data: &[u8]| {
    let side = if data.first().is_some_and(|b| b & 1 == 1) {
        Side::Server
    } else {
        Side::Client
    };
    let summary = summarize(L7Proto::Iec104, side, data);
    let framed = frame_len(L7Proto::Iec104, data);
    if let Ok(p) = iec104::Packet::new_checked(data) {
        let n = framed
            .expect("a checked message frames")
            .expect("header complete");
        assert!(n <= data.len());
        let k = summary_len(L7Proto::Iec104).max(1).min(n);
        if L7Proto::Iec104 != L7Proto::Bacnet {
            assert_eq!(summarize(L7Proto::Iec104, side, &data[..k]), summary);
        }
        let _ = p.into_inner();
    }
});
