use std::collections::BTreeMap;
use std::io::{BufReader, Read};
use std::net::{TcpListener, UdpSocket};
use std::time::Duration;

use netflow_parser::NetflowParser;
use netflow_parser::variable_versions::enterprise_registry::EnterpriseFieldDef;
use netflow_parser::variable_versions::field_value::FieldDataType;

use super::ipfix::{IpfixEncoder, IpfixExporter, SEPTA_PEN};
use super::syslog::{Alert, SyslogExporter};
use super::*;
use crate::audit::record::AuditEntry;
use crate::audit::{Actor, Record};
use crate::history::FlowVerdict;

fn flow(src: &str, dst: &str, dport: u16, verdict: FlowVerdict, rule: u32) -> ObservedFlow {
    ObservedFlow {
        ts_ms: 1_764_103_625_123,
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        proto: 6,
        dport,
        l7: String::new(),
        verdict,
        rule,
        revision: "r".into(),
        flows: 1,
        packets: 12,
        bytes: 3456,
    }
}

fn parser() -> NetflowParser {
    parser_for(SEPTA_PEN)
}

fn parser_for(pen: u32) -> NetflowParser {
    NetflowParser::builder()
        .register_enterprise_fields(vec![
            EnterpriseFieldDef::new(pen, 1, "septaVerdict", FieldDataType::UnsignedDataNumber),
            EnterpriseFieldDef::new(pen, 2, "septaRuleId", FieldDataType::UnsignedDataNumber),
        ])
        .build()
        .unwrap()
}

/// Every data record of the parsed messages, as JSON.
fn records(parser: &mut NetflowParser, msgs: &[Vec<u8>]) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for m in msgs {
        let res = parser.parse_bytes(m);
        assert!(res.error.is_none(), "{:?}", res.error);
        let v = serde_json::to_value(&res.packets).unwrap();
        collect_records(&v, &mut out);
    }
    out
}

fn collect_records(v: &serde_json::Value, out: &mut Vec<serde_json::Value>) {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(serde_json::Value::Array(recs)) =
                m.get("Data").and_then(|d| d.get("fields"))
            {
                out.extend(recs.iter().cloned());
                return;
            }
            m.values().for_each(|x| collect_records(x, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_records(x, out)),
        _ => {}
    }
}

/// One parsed record as `name -> value` (IANA names; enterprise fields as `pen/id`).
fn fields_of(rec: &serde_json::Value) -> BTreeMap<String, serde_json::Value> {
    let mut m = BTreeMap::new();
    for pair in rec.as_array().unwrap() {
        let (k, v) = (&pair[0], &pair[1]);
        let name = match (k.get("IANA"), k.get("Enterprise")) {
            (Some(n), _) => n.as_str().unwrap().to_owned(),
            (_, Some(e)) => format!("{}/{}", e["enterprise_number"], e["field_number"]),
            _ => k.to_string(),
        };
        // Unwrap one level of variant ({"DataNumber": {"U16": 443}} -> 443).
        let mut v = v.clone();
        while let Some(obj) = v
            .as_object()
            .filter(|o| o.len() == 1 && !o.contains_key("secs"))
        {
            v = obj.values().next().unwrap().clone();
        }
        m.insert(name, v);
    }
    m
}

#[test]
fn ipfix_round_trips_through_netflow_parser() {
    let flows = vec![
        flow("10.0.0.1", "10.0.0.2", 443, FlowVerdict::Allowed, 3),
        flow("10.0.0.1", "10.0.0.9", 22, FlowVerdict::Denied, 77),
        flow("fd00::1", "fd00::2", 502, FlowVerdict::WouldDeny, 65_536),
    ];
    let mut enc = IpfixEncoder::new(7, 20, 1400);
    let msgs = enc.encode(&flows, 1_764_103_625);
    assert_eq!(msgs.len(), 1);
    assert_eq!(&msgs[0][0..2], &[0, 10], "IPFIX version 10");
    let recs: Vec<_> = records(&mut parser(), &msgs)
        .iter()
        .map(fields_of)
        .collect();
    assert_eq!(recs.len(), 3);
    let pen = |id: u8| format!("{SEPTA_PEN}/{id}");
    assert_eq!(recs[0]["SourceIpv4address"], "10.0.0.1");
    assert_eq!(recs[0]["DestinationIpv4address"], "10.0.0.2");
    assert_eq!(recs[0]["DestinationTransportPort"], 443);
    assert_eq!(recs[0]["ProtocolIdentifier"], "Tcp");
    assert_eq!(recs[0]["PacketDeltaCount"], 12);
    assert_eq!(recs[0]["OctetDeltaCount"], 3456);
    assert_eq!(recs[0]["FlowStartMilliseconds"]["secs"], 1_764_103_625);
    assert_eq!(recs[0]["FlowStartMilliseconds"]["nanos"], 123_000_000);
    let verdict_rule: Vec<(serde_json::Value, serde_json::Value)> = recs
        .iter()
        .map(|r| (r[&pen(1)].clone(), r[&pen(2)].clone()))
        .collect();
    assert_eq!(
        verdict_rule,
        vec![
            (1.into(), 3.into()),
            (2.into(), 77.into()),
            (3.into(), 65_536.into())
        ]
    );
    assert_eq!(recs[2]["SourceIpv6address"], "fd00::1");
    assert_eq!(recs[2]["DestinationTransportPort"], 502);
}

#[test]
fn ipfix_splits_messages_counts_sequence_and_resends_templates() {
    let flows: Vec<_> = (0..100u16)
        .map(|i| flow("10.0.0.1", "10.0.0.2", 1000 + i, FlowVerdict::Allowed, 1))
        .collect();
    let mut enc = IpfixEncoder::new(1, 3, 512);
    let msgs = enc.encode(&flows, 1);
    assert!(msgs.len() > 3, "{}", msgs.len());
    assert!(msgs.iter().all(|m| m.len() <= 512));
    let mut expect_seq = 0u32;
    let mut p = parser();
    let mut total = 0;
    for (i, m) in msgs.iter().enumerate() {
        let seq = u32::from_be_bytes(m[8..12].try_into().unwrap());
        assert_eq!(seq, expect_seq, "message {i}");
        let has_template = m[16..18] == [0, 2];
        assert_eq!(has_template, i % 3 == 0, "message {i}");
        let n = records(&mut p, std::slice::from_ref(m)).len();
        expect_seq += n as u32;
        total += n;
    }
    assert_eq!(total, 100);
    // A collector that missed the first message (and its templates) decodes nothing until the
    // templates come again.
    let mut late = parser();
    assert_eq!(records(&mut late, &msgs[1..3]).len(), 0);
    assert!(!records(&mut late, &msgs[3..4]).is_empty());
}

#[test]
fn ipfix_exporter_sends_to_a_udp_collector_on_loopback() {
    let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
    collector
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut ex = IpfixExporter::new(collector.local_addr().unwrap(), 9).unwrap();
    let sent = ex
        .export(
            &[flow("10.0.0.1", "10.0.0.2", 443, FlowVerdict::Allowed, 3)],
            5,
        )
        .unwrap();
    assert_eq!(sent, 1);
    let mut buf = [0u8; 2048];
    let (n, _) = collector.recv_from(&mut buf).unwrap();
    let recs = records(&mut parser(), &[buf[..n].to_vec()]);
    assert_eq!(fields_of(&recs[0])["DestinationTransportPort"], 443);
}

#[test]
fn ipfix_enterprise_number_is_configurable_and_defaults_to_the_documentation_pen() {
    let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
    collector
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let addr = collector.local_addr().unwrap();
    let default: ExportConfig =
        serde_json::from_str(&format!(r#"{{"ipfix": {{"collector": "{addr}"}}}}"#)).unwrap();
    assert_eq!(
        default.ipfix.unwrap().enterprise_number.get(),
        SEPTA_PEN,
        "absent: the documentation PEN"
    );
    let zero = serde_json::from_str::<ExportConfig>(&format!(
        r#"{{"ipfix": {{"collector": "{addr}", "enterprise_number": 0}}}}"#
    ));
    assert!(zero.is_err(), "0 is not an enterprise number");
    let cfg: ExportConfig = serde_json::from_str(&format!(
        r#"{{"ipfix": {{"collector": "{addr}", "domain": 3, "enterprise_number": 4242}}}}"#
    ))
    .unwrap();
    let mut ex = IpfixExporter::from_config(cfg.ipfix.as_ref().unwrap()).unwrap();
    ex.export(
        &[flow("10.0.0.1", "10.0.0.2", 502, FlowVerdict::Denied, 41)],
        5,
    )
    .unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = collector.recv_from(&mut buf).unwrap();
    let msg = buf[..n].to_vec();
    assert_eq!(&msg[12..16], &3u32.to_be_bytes(), "observation domain");
    let recs = records(&mut parser_for(4242), std::slice::from_ref(&msg));
    let f = fields_of(&recs[0]);
    assert_eq!(
        (f["4242/1"].clone(), f["4242/2"].clone()),
        (2.into(), 41.into())
    );
    assert!(
        !f.contains_key(&format!("{SEPTA_PEN}/1")),
        "nothing under the default PEN: {f:?}"
    );
}

fn audit_record(seq: u64, result: &str) -> Record {
    Record::new(
        seq,
        1_764_103_625_123,
        AuditEntry {
            actor: Actor::user("alice"),
            action: "policy.commit".into(),
            object: "policy/demo".into(),
            before: None,
            after: Some("ab".repeat(32)),
            reason: "open |ssh| = for ops\nnow".into(),
            result: result.into(),
            detail: "revision 2".into(),
        },
        "00".repeat(32),
    )
}

#[test]
fn timestamps_are_rfc3339_utc() {
    assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339_ms(1_764_103_625_123), "2025-11-25T20:47:05.123Z");
    assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
}

#[test]
fn syslog_udp_cef_reaches_a_loopback_receiver() {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut ex = SyslogExporter::new(
        rx.local_addr().unwrap(),
        SyslogTransport::Udp,
        SyslogFormat::Cef,
        "gw1",
    )
    .unwrap();
    let r = audit_record(4, "ok");
    ex.audit(&r).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = rx.recv_from(&mut buf).unwrap();
    let line = std::str::from_utf8(&buf[..n]).unwrap();
    // facility 13 (log audit) * 8 + notice (5) = 109
    let want_head = format!(
        "<109>1 2025-11-25T20:47:05.123Z gw1 septa - audit [septa@32473 seq=\"4\" hash=\"{}\"] CEF:0|Septa|Septa gateway|",
        r.hash
    );
    assert!(line.starts_with(&want_head), "{line}");
    assert!(line.contains("|policy.commit|policy.commit|3|"), "{line}");
    // CEF extension escaping: '=' and newlines in values, '|' is legal there.
    assert!(
        line.contains(r"reason=open |ssh| \= for ops\nnow"),
        "{line}"
    );
    assert!(line.contains("externalId=4 "), "{line}");
    assert!(!line.contains('\n'));
}

#[test]
fn syslog_sd_id_follows_the_configured_enterprise_number() {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let addr = rx.local_addr().unwrap();
    let sd_id = |json: String| -> String {
        let mut cfg: ExportConfig = serde_json::from_str(&json).unwrap();
        cfg.inherit_enterprise_number();
        let mut ex = SyslogExporter::from_config(cfg.syslog.as_ref().unwrap(), "gw1").unwrap();
        ex.audit(&audit_record(4, "ok")).unwrap();
        let mut buf = [0u8; 4096];
        let (n, _) = rx.recv_from(&mut buf).unwrap();
        let line = std::str::from_utf8(&buf[..n]).unwrap().to_owned();
        let at = line.find("[septa@").expect("an SD element");
        line[at + 1..at + line[at..].find(' ').unwrap()].to_owned()
    };
    let syslog = format!(r#""syslog": {{"target": "{addr}", "transport": "udp", "format": "cef""#);
    let ipfix = r#""ipfix": {"collector": "192.0.2.10:4739", "enterprise_number": 4242}"#;
    assert_eq!(
        sd_id(format!("{{{syslog}}}}}")),
        format!("septa@{SEPTA_PEN}"),
        "neither configured: the documentation PEN"
    );
    assert_eq!(
        sd_id(format!("{{{syslog}}}, {ipfix}}}")),
        "septa@4242",
        "IPFIX's number when syslog has none"
    );
    assert_eq!(
        sd_id(format!(
            r#"{{{syslog}, "enterprise_number": 777}}, {ipfix}}}"#
        )),
        "septa@777",
        "syslog's own number first"
    );
    let zero =
        serde_json::from_str::<ExportConfig>(&format!(r#"{{{syslog}, "enterprise_number": 0}}}}"#));
    assert!(zero.is_err(), "0 is not an enterprise number");
}

#[test]
fn syslog_tcp_json_uses_octet_counting_frames() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let mut all = Vec::new();
        BufReader::new(s).read_to_end(&mut all).unwrap();
        all
    });
    {
        let mut ex =
            SyslogExporter::new(addr, SyslogTransport::Tcp, SyslogFormat::Json, "gw1").unwrap();
        ex.audit(&audit_record(1, "refused: invalid")).unwrap();
        ex.alert(&Alert {
            ts_ms: 5,
            kind: "anomaly".into(),
            severity: 9,
            src: "10.0.0.1".into(),
            dst: "10.0.0.2".into(),
            message: "unusual Modbus writes".into(),
        })
        .unwrap();
    }
    let all = reader.join().unwrap();
    // Parse the octet-counted frames back: "LEN SP MSG" repeated.
    let mut rest = &all[..];
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let sp = rest.iter().position(|&b| b == b' ').unwrap();
        let len: usize = std::str::from_utf8(&rest[..sp]).unwrap().parse().unwrap();
        frames.push(String::from_utf8(rest[sp + 1..sp + 1 + len].to_vec()).unwrap());
        rest = &rest[sp + 1 + len..];
    }
    assert_eq!(frames.len(), 2);
    assert!(
        frames[0].starts_with("<108>1 "),
        "warning for a refusal: {}",
        frames[0]
    );
    let json = &frames[0][frames[0].find("] ").unwrap() + 2..];
    let back: Record = serde_json::from_str(json).unwrap();
    assert_eq!(back, audit_record(1, "refused: invalid"));
    // facility 14 (log alert) * 8 + alert (1) = 113
    assert!(
        frames[1].starts_with(
            "<113>1 1970-01-01T00:00:00.005Z gw1 septa - alert [septa@32473 kind=\"anomaly\"] {"
        ),
        "{}",
        frames[1]
    );
}

#[test]
fn flow_log_appends_json_lines_and_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = FlowLogConfig {
        path: dir.path().join("flows").join("flows.jsonl"),
        max_bytes: 600,
    };
    let mut log = FlowLog::open(&cfg).unwrap();
    let flows: Vec<_> = (0..6u16)
        .map(|i| flow("10.0.0.1", "10.0.0.2", 80 + i, FlowVerdict::Allowed, 1))
        .collect();
    log.write(&flows).unwrap();
    let read = |p: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let current = read(&cfg.path);
    let rotated = read(&dir.path().join("flows").join("flows.jsonl.1"));
    assert_eq!(current.len() + rotated.len(), 6, "nothing lost in rotation");
    assert!(!rotated.is_empty());
    assert_eq!(rotated[0]["dport"], 80);
    assert_eq!(rotated[0]["verdict"], "allowed");
    assert_eq!(current.last().unwrap()["dport"], 85);
}

#[test]
fn exports_are_off_unless_configured() {
    assert_eq!(
        ExportConfig::default(),
        ExportConfig {
            ipfix: None,
            syslog: None,
            flow_log: None
        }
    );
    let cfg: ExportConfig = serde_json::from_str(
        r#"{"syslog": {"target": "127.0.0.1:514", "transport": "tcp", "format": "cef"}}"#,
    )
    .unwrap();
    assert!(cfg.ipfix.is_none() && cfg.flow_log.is_none());
    assert_eq!(cfg.syslog.unwrap().format, SyslogFormat::Cef);
    assert!(
        serde_json::from_str::<ExportConfig>(r#"{"ipfix": {"colector": "1.2.3.4:4739"}}"#).is_err()
    );
}

fn entry(i: usize) -> AuditEntry {
    AuditEntry {
        actor: Actor::system("test"),
        action: "policy.commit".into(),
        object: "policy/t".into(),
        before: None,
        after: None,
        reason: format!("change {i}"),
        result: "ok".into(),
        detail: String::new(),
    }
}

fn small_log(dir: &std::path::Path) -> crate::audit::AuditLog {
    let mut cfg = crate::audit::log::AuditConfig::new(dir.join("audit"), dir.join("audit.key"));
    // Small segments: the tail must follow the log across files.
    cfg.segment_records = 3;
    crate::audit::AuditLog::open(cfg, std::sync::Arc::new(crate::clock::SystemClock)).unwrap()
}

#[test]
fn audit_tail_delivers_each_record_once_across_segments_and_retries_a_failed_send() {
    use super::audit_tail::AuditTail;
    let dir = tempfile::tempdir().unwrap();
    let mut log = small_log(dir.path());
    for i in 0..4 {
        log.append(entry(i)).unwrap();
    }
    let mut tail = AuditTail::at_end(dir.path().join("audit")).unwrap();
    let start = tail.next_seq();
    let mut got = Vec::new();
    assert_eq!(
        tail.poll(|r| {
            got.push(r.seq);
            Ok(())
        })
        .unwrap(),
        0,
        "history is not resent"
    );
    for i in 4..9 {
        log.append(entry(i)).unwrap();
    }
    // The receiver fails on the second record: the pass stops there.
    let mut calls = 0;
    let e = tail.poll(|r| {
        calls += 1;
        if calls == 2 {
            return Err(ExportError::io("send", std::io::Error::other("down")));
        }
        got.push(r.seq);
        Ok(())
    });
    assert!(e.is_err());
    assert_eq!(got, vec![start]);
    tail.poll(|r| {
        got.push(r.seq);
        Ok(())
    })
    .unwrap();
    let want: Vec<u64> = (start..start + 5).collect();
    assert_eq!(got, want, "in order, none lost, none twice");
    assert_eq!(tail.poll(|_| panic!("nothing new")).unwrap(), 0);
}

#[test]
fn syslog_feed_sends_new_audit_records_and_alerts_over_udp() {
    use super::audit_tail::{AlertSource, SyslogFeed};
    struct Alerts(std::sync::Mutex<Vec<(u64, Alert)>>);
    impl AlertSource for Alerts {
        fn alerts_after(&self, after: u64) -> Vec<(u64, Alert)> {
            let g = self.0.lock().unwrap();
            g.iter().filter(|(id, _)| *id > after).cloned().collect()
        }
    }
    let alert = |msg: &str| Alert {
        ts_ms: 1_700_000_000_000,
        kind: "anomaly".into(),
        severity: 7,
        src: "10.1.0.1".into(),
        dst: "10.2.0.1".into(),
        message: msg.into(),
    };
    // Alert 1 existed before the feed started (not resent); alert 2 comes later.
    let alerts = std::sync::Arc::new(Alerts(std::sync::Mutex::new(vec![(1, alert("old"))])));
    let dir = tempfile::tempdir().unwrap();
    let mut log = small_log(dir.path());
    log.append(entry(0)).unwrap();
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let cfg = SyslogConfig {
        target: rx.local_addr().unwrap(),
        transport: SyslogTransport::Udp,
        format: SyslogFormat::Json,
        ca_file: None,
        client_cert: None,
        client_key: None,
        server_name: None,
        enterprise_number: None,
    };
    let feed = SyslogFeed::spawn(
        cfg,
        &dir.path().join("audit"),
        Some(std::sync::Arc::clone(&alerts) as std::sync::Arc<dyn AlertSource>),
        "gw".into(),
        Duration::from_millis(20),
    )
    .unwrap();
    log.append(entry(1)).unwrap();
    alerts.0.lock().unwrap().push((2, alert("beaconing")));
    let mut msgs = Vec::new();
    let mut buf = [0u8; 4096];
    while msgs.len() < 2 {
        let (n, _) = rx.recv_from(&mut buf).expect("syslog datagrams");
        msgs.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    msgs.sort();
    assert!(
        msgs.iter()
            .any(|m| m.contains(" audit ") && m.contains("change 1")),
        "{msgs:?}"
    );
    assert!(
        !msgs
            .iter()
            .any(|m| m.contains("change 0") || m.contains("old")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains(" alert ") && m.contains("beaconing")),
        "{msgs:?}"
    );
    drop(feed);
}

/// A CA, a receiver certificate for 127.0.0.1 and a client certificate, as PEM files in `dir`.
struct Pki {
    ca: std::path::PathBuf,
    server: (String, String),
    client_cert: std::path::PathBuf,
    client_key: std::path::PathBuf,
    ca_der: rustls::pki_types::CertificateDer<'static>,
}

fn pki(dir: &std::path::Path, tag: &str) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("test CA {tag}"));
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        // A subject unlike the issuer's (OpenSSL takes issuer == subject for self-signed).
        params
            .distinguished_name
            .push(DnType::CommonName, names[0].clone());
        let cert = params.signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let server = leaf(vec!["127.0.0.1".into()]);
    let client = leaf(vec!["septa.example".into()]);
    let write = |name: &str, text: &str| {
        let p = dir.join(format!("{tag}-{name}"));
        std::fs::write(&p, text).unwrap();
        p
    };
    Pki {
        ca: write("ca.pem", &ca.pem()),
        server,
        client_cert: write("client.pem", &client.0),
        client_key: write("client.key", &client.1),
        ca_der: ca.der().clone(),
    }
}

/// A TLS syslog receiver on loopback (rustls, client certificates required, signed by `ca`):
/// returns its address and a handle yielding every byte received on one connection.
fn tls_receiver(
    p: &Pki,
) -> (
    std::net::SocketAddr,
    std::thread::JoinHandle<std::io::Result<Vec<u8>>>,
) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(p.ca_der.clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        std::sync::Arc::clone(&provider),
    )
    .build()
    .unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(p.server.0.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(p.server.1.as_bytes()).unwrap(),
        )
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        let (tcp, _) = listener.accept()?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        let conn = rustls::ServerConnection::new(std::sync::Arc::new(cfg)).unwrap();
        let mut s = rustls::StreamOwned::new(conn, tcp);
        let mut all = Vec::new();
        match s.read_to_end(&mut all) {
            Ok(_) => Ok(all),
            // The client closed without close_notify: what arrived is what counts.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(all),
            Err(e) => Err(e),
        }
    });
    (addr, h)
}

fn tls_config(target: std::net::SocketAddr, p: &Pki) -> SyslogConfig {
    SyslogConfig {
        target,
        transport: SyslogTransport::Tls,
        format: SyslogFormat::Cef,
        ca_file: Some(p.ca.clone()),
        client_cert: Some(p.client_cert.clone()),
        client_key: Some(p.client_key.clone()),
        server_name: None,
        enterprise_number: None,
    }
}

#[test]
fn syslog_over_tls_reaches_a_rustls_receiver_with_client_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki(dir.path(), "a");
    let (addr, rx) = tls_receiver(&p);
    {
        let mut ex = SyslogExporter::from_config(&tls_config(addr, &p), "gw1").unwrap();
        ex.audit(&audit_record(7, "ok")).unwrap();
        ex.alert(&Alert {
            ts_ms: 5,
            kind: "anomaly".into(),
            severity: 9,
            src: "10.0.0.1".into(),
            dst: "10.0.0.2".into(),
            message: "scan".into(),
        })
        .unwrap();
    }
    let all = String::from_utf8(rx.join().unwrap().unwrap()).unwrap();
    // RFC 5425 §4.3: octet-counted frames, "MSG-LEN SP SYSLOG-MSG".
    let mut rest = all.as_str();
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let (len, tail) = rest.split_once(' ').unwrap();
        let len: usize = len.parse().unwrap();
        frames.push(&tail[..len]);
        rest = &tail[len..];
    }
    assert_eq!(frames.len(), 2, "{all}");
    assert!(
        frames[0].starts_with(
            "<109>1 2025-11-25T20:47:05.123Z gw1 septa - audit [septa@32473 seq=\"7\""
        ),
        "{}",
        frames[0]
    );
    assert!(
        frames[1].contains(" alert ") && frames[1].contains("msg=scan"),
        "{}",
        frames[1]
    );
}

#[test]
fn syslog_tls_refuses_a_receiver_the_ca_does_not_vouch_for() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = pki(dir.path(), "real");
    let other = pki(dir.path(), "other");
    let (addr, rx) = tls_receiver(&receiver);
    // Trusting another CA: the handshake fails, nothing is sent.
    let mut cfg = tls_config(addr, &receiver);
    cfg.ca_file = Some(other.ca.clone());
    let err = SyslogExporter::from_config(&cfg, "gw1")
        .err()
        .expect("refused");
    assert!(err.to_string().contains("TLS handshake"), "{err}");
    assert!(
        rx.join().unwrap().is_err(),
        "the receiver saw no clean session"
    );
}

#[test]
fn syslog_tls_settings_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki(dir.path(), "k");
    let target: std::net::SocketAddr = "127.0.0.1:6514".parse().unwrap();
    let check = |cfg: &mut SyslogConfig| cfg.check(Some(dir.path())).unwrap_err();
    let mut cfg = tls_config(target, &p);
    assert_eq!(cfg.check(None), Ok(()), "a usable TLS configuration");
    cfg.ca_file = None;
    assert_eq!(check(&mut cfg).0, "export.syslog.ca_file");
    let mut cfg = tls_config(target, &p);
    cfg.ca_file = Some("missing-ca.pem".into());
    let (key, msg) = check(&mut cfg);
    assert_eq!(key, "export.syslog.ca_file");
    assert!(
        msg.contains(&dir.path().join("missing-ca.pem").display().to_string()),
        "{msg}"
    );
    let mut cfg = tls_config(target, &p);
    cfg.ca_file = Some(p.client_key.clone());
    assert_eq!(check(&mut cfg).0, "export.syslog.ca_file", "a key is no CA");
    let mut cfg = tls_config(target, &p);
    cfg.client_key = None;
    assert_eq!(check(&mut cfg).0, "export.syslog.client_key");
    let mut cfg = tls_config(target, &p);
    cfg.client_key = Some(p.ca.clone());
    assert_eq!(
        check(&mut cfg).0,
        "export.syslog.client_key",
        "a certificate is no key"
    );
    let mut cfg = tls_config(target, &p);
    cfg.server_name = Some("not a name!".into());
    assert_eq!(check(&mut cfg).0, "export.syslog.server_name");
    let mut cfg = tls_config(target, &p);
    cfg.transport = SyslogTransport::Tcp;
    assert_eq!(
        check(&mut cfg).0,
        "export.syslog.ca_file",
        "TLS settings need tls"
    );
    // The same from the TOML-shaped input.
    let parsed: ExportConfig = serde_json::from_str(
        r#"{"syslog": {"target": "127.0.0.1:6514", "transport": "tls", "format": "json", "ca_file": "ca.pem"}}"#,
    )
    .unwrap();
    let s = parsed.syslog.unwrap();
    assert_eq!(s.transport, SyslogTransport::Tls);
    assert_eq!(s.ca_file.as_deref(), Some(std::path::Path::new("ca.pem")));
}

#[test]
fn syslog_over_tls_interoperates_with_openssl_s_server() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("skipped: no openssl binary");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = pki(dir.path(), "o");
    let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    std::fs::write(&cert, &p.server.0).unwrap();
    std::fs::write(&key, &p.server.1).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new("openssl")
        .args([
            "s_server",
            "-ign_eof",
            "-naccept",
            "1",
            "-Verify",
            "1",
            "-verify_return_error",
        ])
        .arg("-accept")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .arg("-CAfile")
        .arg(&p.ca)
        // Open and silent: s_server ends the session at end of input.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("ACCEPT") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "s_server ended before listening"
        );
    }
    {
        let target = format!("127.0.0.1:{port}").parse().unwrap();
        let mut ex = match SyslogExporter::from_config(&tls_config(target, &p), "gw1") {
            Ok(ex) => ex,
            Err(e) => {
                let mut rest = String::new();
                let _ = out.read_to_string(&mut rest);
                panic!("{e}: s_server said {rest}");
            }
        };
        ex.audit(&audit_record(11, "ok")).unwrap();
    }
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    drop(server.stdin.take());
    let _ = server.wait();
    let start = rest.find("<109>1 ").expect(&rest);
    let len: usize = rest[..start]
        .trim_end()
        .rsplit(char::is_whitespace)
        .next()
        .and_then(|l| l.parse().ok())
        .expect(&rest);
    // RFC 5425 octet counting: exactly the frame, which ends with the CEF msg (the detail).
    let frame = &rest[start..start + len];
    assert!(frame.contains("seq=\"11\""), "{rest}");
    assert!(frame.ends_with("msg=revision 2"), "{rest}");
}
