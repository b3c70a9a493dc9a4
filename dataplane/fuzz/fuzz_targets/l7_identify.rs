//! Fuzz identification and TLS SNI extraction: never a panic; an SNI lies inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use septa_dataplane::l7::{Side, Transport, identify, tls_sni};

fuzz_target!(|data: &[u8]| {
    let ports = match data {
        [a, b, c, d, ..] => (u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d])),
        _ => (0, 0),
    };
    for t in [Transport::Tcp, Transport::Udp] {
        let _ = identify(Side::Client, t, ports, data);
        let _ = identify(Side::Server, t, ports, data);
    }
    if let Some(sni) = tls_sni(data) {
        let range = data.as_ptr_range();
        assert!(range.contains(&sni.as_ptr()) || sni.is_empty());
    }
});
