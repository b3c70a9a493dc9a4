//! Vector, truncation, mutation and stream tests of the L7 parsers, and conduit enforcement
//! through the stream state.

use proptest::prelude::*;
use septa_l7::functions::resolve;
use septa_l7::{FnSet, L7Constraint, L7Proto, L7Verdict, Role, Sender};

use super::samples::*;
use super::*;

fn ics_messages() -> Vec<(L7Proto, Side, Vec<u8>)> {
    use L7Proto::*;
    use Side::{Client as C, Server as S};
    vec![
        (Modbus, C, modbus_request(1, 1, 3, 0, 10)),
        (Modbus, C, modbus_request(2, 1, 16, 100, 3)),
        (Modbus, C, modbus_request(3, 9, 6, 7, 0x1234)),
        (Modbus, S, modbus(1, 1, 0x83, &[2])),
        (Dnp3, C, dnp3_request(10, 1, 1, DNP3_CLASS0)),
        (Dnp3, C, dnp3_request(10, 1, 13, &[])),
        (
            Dnp3,
            C,
            dnp3_request(
                10,
                1,
                2,
                &[
                    0x50, 1, 0, 7, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                ],
            ),
        ),
        (Dnp3, S, dnp3_response(1, 10, &[1, 2, 3])),
        (S7comm, C, s7_cotp_cr()),
        (S7comm, C, vec![3, 0, 0, 7, 2, 0xf0, 0]),
        (
            S7comm,
            C,
            s7_job(
                0x29,
                &[
                    0, 0, 0, 0, 0, 9, b'P', b'_', b'P', b'R', b'O', b'G', b'R', b'A', b'M',
                ],
            ),
        ),
        (
            S7comm,
            C,
            s7_job(0x04, &[1, 0x12, 10, 0x10, 2, 0, 1, 0, 1, 0x84, 0, 0, 0]),
        ),
        (S7comm, S, s7_ack_data(0x04)),
        (S7comm, C, s7_userdata(4)),
        (S7comm, C, s7plus()),
        (EnipCip, C, enip_register_session()),
        (EnipCip, C, enip_send_rr(0x0e, 9)),
        (EnipCip, C, enip_send_unit(0x4d, 9)),
        (Bacnet, C, bacnet_confirmed(12, 3)),
        (Bacnet, C, bacnet_confirmed(15, 4)),
        (Bacnet, C, bacnet_unconfirmed(8)),
        (Iec104, C, iec104_u(0x07)),
        (Iec104, C, iec104_i(45, 6, 3, 1)),
        (Iec104, S, iec104_i(13, 3, 3, 2)),
        (OpcUa, C, opcua_hello()),
        (OpcUa, C, opcua_msg(631, b'F', 1)),
        (OpcUa, C, opcua_msg(673, b'F', 2)),
        (OpcUa, S, opcua_msg(634, b'F', 1)),
    ]
}

fn checked(p: L7Proto, b: &[u8]) -> Result<()> {
    match p {
        L7Proto::Modbus => modbus::Packet::new_checked(b).map(|_| ()),
        L7Proto::Dnp3 => dnp3::Packet::new_checked(b).map(|_| ()),
        L7Proto::S7comm | L7Proto::S7commPlus => s7::Packet::new_checked(b).map(|_| ()),
        L7Proto::EnipCip => enip::Packet::new_checked(b).map(|_| ()),
        L7Proto::Bacnet => bacnet::Packet::new_checked(b).map(|_| ()),
        L7Proto::Iec104 => iec104::Packet::new_checked(b).map(|_| ()),
        L7Proto::OpcUa => opcua::Packet::new_checked(b).map(|_| ()),
        _ => unreachable!(),
    }
}

#[test]
fn vectors_parse_to_the_expected_summaries() {
    let s = |p, side, b: &[u8]| summarize(p, side, b).unwrap();
    let m = s(
        L7Proto::Modbus,
        Side::Client,
        &modbus_request(1, 1, 16, 100, 3),
    );
    assert_eq!((m.role, m.function, m.unit), (Role::Request, 16, Some(1)));
    assert_eq!(
        m.ranges[0],
        Some(septa_l7::AddrRange {
            start: 100,
            count: 3
        })
    );
    let m = s(L7Proto::Modbus, Side::Server, &modbus(1, 1, 0x83, &[2]));
    assert!(m.exception && m.function == 3 && m.role == Role::Response);
    let m = s(L7Proto::Dnp3, Side::Client, &dnp3_request(10, 1, 13, &[]));
    assert_eq!(
        (m.function, m.unit, m.source, m.role),
        (13, Some(10), Some(1), Role::Request)
    );
    assert_eq!(
        s(L7Proto::Dnp3, Side::Server, &dnp3_response(1, 10, &[])).role,
        Role::Response
    );
    let m = s(L7Proto::S7comm, Side::Client, &s7_job(0x29, &[0; 4]));
    assert_eq!(
        (m.proto, m.function, m.role),
        (L7Proto::S7comm, 0x29, Role::Request)
    );
    assert_eq!(
        s(L7Proto::S7comm, Side::Client, &s7_cotp_cr()).role,
        Role::Other
    );
    assert_eq!(
        s(L7Proto::S7comm, Side::Client, &s7plus()).proto,
        L7Proto::S7commPlus
    );
    assert_eq!(
        s(L7Proto::S7comm, Side::Client, &s7_userdata(4)).function,
        0xe4
    );
    assert_eq!(
        s(L7Proto::EnipCip, Side::Client, &enip_send_rr(0x0e, 1)).function,
        0x0e
    );
    let m = s(L7Proto::EnipCip, Side::Client, &enip_send_unit(0x4d, 1));
    assert_eq!((m.function, m.role), (0x4d, Role::Request));
    assert_eq!(
        s(L7Proto::EnipCip, Side::Client, &enip_register_session()).role,
        Role::Other
    );
    assert_eq!(
        s(L7Proto::Bacnet, Side::Client, &bacnet_confirmed(15, 1)).function,
        15
    );
    assert_eq!(
        s(L7Proto::Bacnet, Side::Client, &bacnet_unconfirmed(8)).function,
        0x88
    );
    let m = s(L7Proto::Iec104, Side::Client, &iec104_i(45, 6, 3, 1));
    assert_eq!((m.function, m.unit, m.role), (45, Some(3), Role::Request));
    assert_eq!(
        s(L7Proto::Iec104, Side::Server, &iec104_i(45, 7, 3, 1)).role,
        Role::Response
    );
    assert_eq!(
        s(L7Proto::Iec104, Side::Client, &iec104_u(0x43)).role,
        Role::Other
    );
    let m = s(L7Proto::OpcUa, Side::Client, &opcua_msg(673, b'F', 1));
    assert_eq!(
        (
            septa_l7::functions::name(L7Proto::OpcUa, m.function),
            m.role
        ),
        ("write", Role::Request)
    );
    let m = s(L7Proto::OpcUa, Side::Server, &opcua_msg(634, b'F', 1));
    assert_eq!(
        (
            septa_l7::functions::name(L7Proto::OpcUa, m.function),
            m.role
        ),
        ("read", Role::Response)
    );
    assert_eq!(
        s(L7Proto::OpcUa, Side::Client, &opcua_msg(9999, b'F', 1)).function,
        opcua::UNKNOWN_SERVICE
    );
}

#[test]
fn accessors_read_the_vectors() {
    let b = modbus_request(0x0102, 7, 3, 0, 10);
    let p = modbus::Packet::new_checked(&b[..]).unwrap();
    assert_eq!(
        (p.transaction_id(), p.protocol_id(), p.length(), p.unit_id()),
        (0x0102, 0, 6, 7)
    );
    assert_eq!(p.data(), &[0, 0, 0, 10]);
    let b = dnp3_request(10, 1, 1, DNP3_CLASS0);
    let p = dnp3::Packet::new_checked(&b[..]).unwrap();
    assert_eq!(
        (
            p.destination(),
            p.source(),
            p.from_master(),
            p.app_function()
        ),
        (10, 1, true, Some(1))
    );
    assert_eq!(p.total_len(), b.len());
    let b = s7_job(0x04, &[1]);
    let p = s7::Packet::new_checked(&b[..]).unwrap();
    assert_eq!(
        (p.protocol_id(), p.rosctr(), p.param_len(), p.params()),
        (Some(0x32), 1, 2, &[4u8, 1][..])
    );
    let b = iec104_i(100, 6, 0x0102, 5);
    let p = iec104::Packet::new_checked(&b[..]).unwrap();
    assert_eq!(
        (
            p.format(),
            p.send_seq(),
            p.type_id(),
            p.cause(),
            p.common_address()
        ),
        (iec104::Format::I, 5, 100, 6, 0x0102)
    );
    let b = enip_send_rr(0x01, 0x1234);
    let p = enip::Packet::new_checked(&b[..]).unwrap();
    assert_eq!(
        (p.command(), p.session(), p.total_len()),
        (0x6f, 0x1234, b.len())
    );
    let b = opcua_msg(631, b'F', 3);
    let p = opcua::Packet::new_checked(&b[..]).unwrap();
    assert_eq!(
        (p.message_type(), p.service_node_id(), p.secure_channel_id()),
        (opcua::MessageType::Msg, Some(631), Some(1))
    );
    let b = bacnet_confirmed(12, 1);
    let p = bacnet::Packet::new_checked(&b[..]).unwrap();
    assert_eq!(
        (p.function(), p.npdu_offset(), p.apdu_offset()),
        (0x0a, Some(4), Ok(Some(6)))
    );
}

#[test]
fn every_vector_is_checked_and_every_truncation_is_rejected() {
    for (p, side, v) in ics_messages() {
        checked(p, &v).unwrap_or_else(|e| panic!("{p} {v:02x?}: {e}"));
        assert_eq!(frame_len(p, &v), Ok(Some(v.len())), "{p} {v:02x?}");
        for i in 0..v.len() {
            let cut = &v[..i];
            assert!(
                checked(p, cut).is_err(),
                "{p} accepted a {i}-byte prefix of {v:02x?}"
            );
            // A prefix of a valid message never frames to another length.
            match frame_len(p, cut) {
                Ok(None) => {}
                Ok(Some(n)) => assert_eq!(n, v.len(), "{p} prefix {i}"),
                Err(e) => panic!("{p}: prefix {i} of a valid message rejected: {e}"),
            }
            // Summaries of a long enough prefix agree with the whole message's.
            let s = summarize(p, side, cut);
            if i >= summary_len(p).min(v.len()) && p != L7Proto::Bacnet {
                assert_eq!(s, summarize(p, side, &v), "{p} prefix {i}");
            }
        }
    }
}

#[test]
fn mutated_vectors_never_panic_and_crc_flips_are_caught() {
    for (p, side, v) in ics_messages() {
        for i in 0..v.len() {
            for bit in 0..8 {
                let mut m = v.clone();
                m[i] ^= 1 << bit;
                let _ = checked(p, &m);
                let _ = summarize(p, side, &m);
                let _ = frame_len(p, &m);
                if p == L7Proto::Dnp3 {
                    assert!(
                        checked(p, &m).is_err(),
                        "dnp3 CRC missed a flip at byte {i}"
                    );
                }
            }
        }
    }
}

#[test]
fn state_fits_in_64_bytes() {
    assert!(
        core::mem::size_of::<L7State>() <= 64,
        "{}",
        core::mem::size_of::<L7State>()
    );
}

fn allow_all(p: L7Proto) -> L7Constraint {
    if matches!(p, L7Proto::S7comm | L7Proto::S7commPlus) {
        return L7Constraint {
            allow_plus: true,
            ..L7Constraint::allow_all(L7Proto::S7comm)
        };
    }
    L7Constraint::allow_all(p)
}

fn conduit_proto(p: L7Proto) -> L7Proto {
    if p == L7Proto::S7commPlus {
        L7Proto::S7comm
    } else {
        p
    }
}

/// Feeds `stream` to a fresh state cut at `cuts`; returns (verdicts, messages, malformed).
fn feed(
    p: L7Proto,
    side: Side,
    stream: &[u8],
    cuts: &[usize],
    c: &L7Constraint,
) -> (Vec<L7Verdict>, u16, u16) {
    let mut st = L7State::new(conduit_proto(p));
    let mut counters = L7Counters::boxed();
    let mut out = Vec::new();
    let mut last = 0;
    for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
        out.push(st.inspect(
            side,
            Transport::Tcp,
            &stream[last..cut],
            c,
            Sender::default(),
            &mut counters,
        ));
        last = cut;
    }
    (out, st.messages(), st.malformed())
}

#[test]
fn split_messages_are_reassembled_at_every_cut() {
    for p in L7Proto::ALL
        .into_iter()
        .filter(|p| p.is_industrial() && *p != L7Proto::Bacnet)
    {
        let msgs: Vec<_> = ics_messages()
            .into_iter()
            .filter(|m| m.0 == p && m.1 == Side::Client)
            .collect();
        let stream: Vec<u8> = msgs.iter().flat_map(|m| m.2.clone()).collect();
        let c = allow_all(p);
        let n = msgs.len() as u16;
        for a in 0..=stream.len() {
            let (v, count, bad) = feed(p, Side::Client, &stream, &[a], &c);
            assert_eq!((count, bad), (n, 0), "{p} cut at {a}");
            assert!(
                v.iter().all(|v| *v == L7Verdict::Allow),
                "{p} cut at {a}: {v:?}"
            );
        }
        // One byte at a time.
        let cuts: Vec<usize> = (1..stream.len()).collect();
        let (_, count, bad) = feed(p, Side::Client, &stream, &cuts, &c);
        assert_eq!((count, bad), (n, 0), "{p} byte by byte");
    }
}

#[test]
fn garbage_makes_the_direction_unfollowable_and_is_counted() {
    let c = allow_all(L7Proto::Modbus);
    let mut st = L7State::new(L7Proto::Modbus);
    let mut k = L7Counters::boxed();
    let v = st.inspect(
        Side::Client,
        Transport::Tcp,
        b"GET / HTTP/1.1\r\n",
        &c,
        Sender::default(),
        &mut k,
    );
    assert!(matches!(v, L7Verdict::Deny(DenyReason::Malformed { .. })));
    assert!(st.lost(Side::Client));
    // Later valid data cannot be trusted to start at a boundary: still denied.
    let v = st.inspect(
        Side::Client,
        Transport::Tcp,
        &modbus_request(1, 1, 3, 0, 1),
        &c,
        Sender::default(),
        &mut k,
    );
    assert!(matches!(v, L7Verdict::Deny(_)));
    assert_eq!(k.malformed[L7Proto::Modbus as usize], 2);
    assert_eq!(st.malformed(), 2);
}

fn functions(p: L7Proto, sel: &[&str]) -> FnSet {
    sel.iter().flat_map(|s| resolve(p, s).unwrap()).collect()
}

#[test]
fn modbus_write_denied_read_allowed_through_the_stream() {
    let c = L7Constraint {
        functions: functions(L7Proto::Modbus, &["read_*"]),
        ..L7Constraint::allow_all(L7Proto::Modbus)
    };
    let mut st = L7State::new(L7Proto::Modbus);
    let mut k = L7Counters::boxed();
    let read = modbus_request(1, 1, 3, 0, 10);
    assert_eq!(
        st.inspect(
            Side::Client,
            Transport::Tcp,
            &read,
            &c,
            Sender::default(),
            &mut k
        ),
        L7Verdict::Allow
    );
    let resp = modbus(1, 1, 3, &[2, 0, 1]);
    assert_eq!(
        st.inspect(
            Side::Server,
            Transport::Tcp,
            &resp,
            &c,
            Sender::default(),
            &mut k
        ),
        L7Verdict::Allow
    );
    let write = modbus_request(2, 1, 6, 7, 1);
    let L7Verdict::Deny(r) = st.inspect(
        Side::Client,
        Transport::Tcp,
        &write,
        &c,
        Sender::default(),
        &mut k,
    ) else {
        panic!("write passed")
    };
    assert_eq!(
        r.to_string(),
        "modbus function 6 (write_single_register) not allowed"
    );
    assert_eq!(k.denied[L7Proto::Modbus as usize][6], 1);
    assert_eq!(k.messages[L7Proto::Modbus as usize][3], 2);
    // A write hidden behind a read in the same segment is still found.
    let mut both = read.clone();
    both.extend_from_slice(&modbus_request(3, 1, 16, 0, 2));
    let mut st = L7State::new(L7Proto::Modbus);
    assert!(matches!(
        st.inspect(
            Side::Client,
            Transport::Tcp,
            &both,
            &c,
            Sender::default(),
            &mut k
        ),
        L7Verdict::Deny(_)
    ));
}

#[test]
fn dnp3_cold_restart_denied_read_allowed() {
    let c = L7Constraint {
        functions: functions(L7Proto::Dnp3, &["read", "select", "operate"]),
        masters: vec![1],
        ..L7Constraint::allow_all(L7Proto::Dnp3)
    };
    let mut st = L7State::new(L7Proto::Dnp3);
    let mut k = L7Counters::boxed();
    let read = dnp3_request(10, 1, 1, DNP3_CLASS0);
    assert_eq!(
        st.inspect(
            Side::Client,
            Transport::Tcp,
            &read,
            &c,
            Sender::default(),
            &mut k
        ),
        L7Verdict::Allow
    );
    let cold = dnp3_request(10, 1, 13, &[]);
    let L7Verdict::Deny(r) = st.inspect(
        Side::Client,
        Transport::Tcp,
        &cold,
        &c,
        Sender::default(),
        &mut k,
    ) else {
        panic!("cold restart passed")
    };
    assert_eq!(r.to_string(), "dnp3 function 13 (cold_restart) not allowed");
    let rogue = dnp3_request(10, 66, 1, DNP3_CLASS0);
    assert!(matches!(
        st.inspect(
            Side::Client,
            Transport::Tcp,
            &rogue,
            &c,
            Sender::default(),
            &mut k
        ),
        L7Verdict::Deny(DenyReason::Master {
            address: Some(66),
            ..
        })
    ));
}

#[test]
fn s7_stop_denied_read_allowed_plus_gated() {
    let mut f = FnSet::ALL;
    for code in resolve(L7Proto::S7comm, "stop")
        .unwrap()
        .into_iter()
        .chain(resolve(L7Proto::S7comm, "download").unwrap())
    {
        f.remove(code);
    }
    let c = L7Constraint {
        functions: f,
        ..L7Constraint::allow_all(L7Proto::S7comm)
    };
    let mut st = L7State::new(L7Proto::S7comm);
    let mut k = L7Counters::boxed();
    for ok in [s7_cotp_cr(), s7_job(0x04, &[1]), s7_userdata(4)] {
        assert_eq!(
            st.inspect(
                Side::Client,
                Transport::Tcp,
                &ok,
                &c,
                Sender::default(),
                &mut k
            ),
            L7Verdict::Allow
        );
    }
    let L7Verdict::Deny(r) = st.inspect(
        Side::Client,
        Transport::Tcp,
        &s7_job(0x29, &[0; 4]),
        &c,
        Sender::default(),
        &mut k,
    ) else {
        panic!("stop passed")
    };
    assert_eq!(r.to_string(), "s7comm function 41 (plc_stop) not allowed");
    let v = st.inspect(
        Side::Client,
        Transport::Tcp,
        &s7plus(),
        &c,
        Sender::default(),
        &mut k,
    );
    assert_eq!(v, L7Verdict::Deny(DenyReason::S7Plus));
}

#[test]
fn iec104_monitor_only_and_bacnet_udp() {
    let c = L7Constraint {
        functions: functions(L7Proto::Iec104, &["M_*", "C_IC_NA_1"]),
        ..L7Constraint::allow_all(L7Proto::Iec104)
    };
    let mut st = L7State::new(L7Proto::Iec104);
    let mut k = L7Counters::boxed();
    let mut ok = iec104_u(0x07);
    ok.extend(iec104_i(100, 6, 1, 0));
    assert_eq!(
        st.inspect(
            Side::Client,
            Transport::Tcp,
            &ok,
            &c,
            Sender::default(),
            &mut k
        ),
        L7Verdict::Allow
    );
    assert_eq!(
        st.inspect(
            Side::Server,
            Transport::Tcp,
            &iec104_i(13, 3, 1, 0),
            &c,
            Sender::default(),
            &mut k
        ),
        L7Verdict::Allow
    );
    let L7Verdict::Deny(r) = st.inspect(
        Side::Client,
        Transport::Tcp,
        &iec104_i(45, 6, 1, 1),
        &c,
        Sender::default(),
        &mut k,
    ) else {
        panic!()
    };
    assert_eq!(r.to_string(), "iec104 type 45 (C_SC_NA_1) not allowed");

    let c = L7Constraint {
        functions: functions(L7Proto::Bacnet, &["read", "who_is"]),
        ..L7Constraint::allow_all(L7Proto::Bacnet)
    };
    let mut st = L7State::new(L7Proto::Bacnet);
    assert_eq!(
        st.inspect(
            Side::Client,
            Transport::Udp,
            &bacnet_confirmed(12, 1),
            &c,
            Sender::default(),
            &mut k
        ),
        L7Verdict::Allow
    );
    let L7Verdict::Deny(r) = st.inspect(
        Side::Client,
        Transport::Udp,
        &bacnet_confirmed(15, 2),
        &c,
        Sender::default(),
        &mut k,
    ) else {
        panic!()
    };
    assert_eq!(
        r.to_string(),
        "bacnet service 15 (write_property) not allowed"
    );
}

#[test]
fn cip_and_opcua_services_enforced() {
    let c = L7Constraint {
        functions: functions(L7Proto::EnipCip, &["read"]),
        ..L7Constraint::allow_all(L7Proto::EnipCip)
    };
    let mut st = L7State::new(L7Proto::EnipCip);
    let mut k = L7Counters::boxed();
    let mut ok = enip_register_session();
    ok.extend(enip_send_rr(0x0e, 1));
    assert_eq!(
        st.inspect(
            Side::Client,
            Transport::Tcp,
            &ok,
            &c,
            Sender::default(),
            &mut k
        ),
        L7Verdict::Allow
    );
    let L7Verdict::Deny(r) = st.inspect(
        Side::Client,
        Transport::Tcp,
        &enip_send_unit(0x4d, 1),
        &c,
        Sender::default(),
        &mut k,
    ) else {
        panic!()
    };
    assert_eq!(r.to_string(), "enip service 77 (write_tag) not allowed");

    let c = L7Constraint {
        functions: functions(L7Proto::OpcUa, &["session", "read", "browse", "hello"]),
        ..L7Constraint::allow_all(L7Proto::OpcUa)
    };
    let mut st = L7State::new(L7Proto::OpcUa);
    let mut ok = opcua_hello();
    ok.extend(opcua_msg(631, b'F', 1));
    assert_eq!(
        st.inspect(
            Side::Client,
            Transport::Tcp,
            &ok,
            &c,
            Sender::default(),
            &mut k
        ),
        L7Verdict::Allow
    );
    // Continuation chunks of an allowed request carry no service and pass.
    let mut chunks = opcua_msg(631, b'C', 2);
    chunks.extend(opcua_msg(673, b'F', 2)); // continuation body that happens to look like Write
    assert_eq!(
        st.inspect(
            Side::Client,
            Transport::Tcp,
            &chunks,
            &c,
            Sender::default(),
            &mut k
        ),
        L7Verdict::Allow
    );
    let L7Verdict::Deny(r) = st.inspect(
        Side::Client,
        Transport::Tcp,
        &opcua_msg(673, b'F', 3),
        &c,
        Sender::default(),
        &mut k,
    ) else {
        panic!()
    };
    assert_eq!(r.to_string(), "opcua service 19 (write) not allowed");
}

#[test]
fn generated_capture_is_identified_from_payload_alone() {
    // Unusual ports: the payload must decide (UDP BACnet/DNS/Kerberos keep theirs).
    for odd in [true, false] {
        let flows = samples::sample_flows(odd);
        for f in &flows {
            let (side, payload) = &f.messages[0];
            let ports = match side {
                Side::Client => (f.client_port, f.server_port),
                Side::Server => (f.server_port, f.client_port),
            };
            let got = identify(*side, f.transport, ports, payload);
            assert_eq!(got, f.proto, "odd ports {odd}: {:?}", f.proto);
        }
    }
    assert_eq!(
        identify(Side::Client, Transport::Tcp, (40000, 502), &[]),
        L7Proto::Modbus
    );
    assert_eq!(
        identify(Side::Client, Transport::Tcp, (40000, 5555), b"\x00\x01"),
        L7Proto::Unknown
    );
}

#[test]
fn tls_sni_is_extracted_zero_copy() {
    let hello = tls_client_hello("plc.example.test");
    assert_eq!(tls_sni(&hello), Some(&b"plc.example.test"[..]));
    for i in 0..hello.len() {
        assert_eq!(tls_sni(&hello[..i]), None, "prefix {i}");
    }
    assert_eq!(tls_sni(&http_get("x")), None);
}

proptest! {
    #[test]
    fn parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..160), side in any::<bool>()) {
        let side = if side { Side::Client } else { Side::Server };
        for p in L7Proto::ALL {
            let _ = frame_len(p, &bytes);
            let _ = summarize(p, side, &bytes);
            if p.is_industrial() {
                let _ = checked(p, &bytes);
            }
        }
        let _ = identify(side, Transport::Tcp, (1, 2), &bytes);
        let _ = identify(side, Transport::Udp, (1, 2), &bytes);
        let _ = tls_sni(&bytes);
    }

    #[test]
    fn stream_never_panics_and_stays_bounded(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 0..8),
        proto in 1u8..9,
        sides in any::<u8>(),
    ) {
        let p = L7Proto::from_u8(proto).unwrap();
        let c = allow_all(p);
        let mut st = L7State::new(conduit_proto(p));
        let mut k = L7Counters::boxed();
        for (i, ch) in chunks.iter().enumerate() {
            let side = if sides >> (i % 8) & 1 == 0 { Side::Client } else { Side::Server };
            let t = if p == L7Proto::Bacnet { Transport::Udp } else { Transport::Tcp };
            let _ = st.inspect(side, t, ch, &c, Sender::default(), &mut k);
        }
    }

    #[test]
    fn valid_streams_with_random_cuts_parse_completely(cuts in prop::collection::vec(0usize..400, 0..6)) {
        let msgs: Vec<_> = ics_messages().into_iter().filter(|m| m.0 == L7Proto::Dnp3 && m.1 == Side::Client).collect();
        let stream: Vec<u8> = msgs.iter().flat_map(|m| m.2.clone()).collect();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.sort_unstable();
        let (_, count, bad) = feed(L7Proto::Dnp3, Side::Client, &stream, &cuts, &allow_all(L7Proto::Dnp3));
        prop_assert_eq!((count, bad), (msgs.len() as u16, 0));
    }
}

/// The copy of the counters other threads read is the worker's once stored.
#[test]
fn published_counters_are_the_workers() {
    use L7Proto::{Dnp3, Modbus, S7comm};
    let mut c = L7Counters::boxed();
    c.messages[Modbus as usize][16] = 3;
    c.denied[Modbus as usize][16] = 3;
    c.messages[Modbus as usize][1] = 7;
    c.malformed[Dnp3 as usize] = 2;
    c.denied_other[S7comm as usize] = 1;
    let shared = SharedL7Counters::default();
    assert_eq!(*shared.load(), L7Counters::default());
    shared.store(&c);
    assert_eq!(shared.load(), c);
}
