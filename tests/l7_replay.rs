//! Function-code conduits through `septa replay --policy`: the same policy compiler, publish
//! path (the conduits travel inside the rule table) and worker as the appliance. A read-only
//! Modbus conduit forwards reads and drops a write (and the rest of that connection) under
//! `l7_denied`, naming the function; a DNP3 conduit without restarts drops a cold restart.

use std::path::PathBuf;
use std::process::Command;

use septa_dataplane::l7::Side;
use septa_dataplane::l7::samples::{conversation, dnp3_request, modbus, modbus_request};
use septa_dataplane::testgen;

const POLICY: &str = r#"apiVersion: septa.io/v1
kind: Policy
metadata:
  name: plant
spec:
  defaults: {action: deny, mode: enforce}
  zones:
    - {name: hmi, subnets: [10.30.2.0/24]}
    - {name: plc, subnets: [10.30.1.0/24]}
  conduits:
    - name: hmi-reads-plc
      from: [hmi]
      to: [plc]
      services:
        - proto: tcp
          ports: [502]
          l7: {modbus: {functions: [read_*]}}
        - proto: tcp
          ports: [20000]
          l7: {dnp3: {functions: [read]}}
"#;

const HMI: [u8; 4] = [10, 30, 2, 5];
const PLC: [u8; 4] = [10, 30, 1, 10];

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("septa-l7-replay-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The capture and, for checking the output, the frames that must be forwarded.
fn capture() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let modbus_msgs = [
        (Side::Client, modbus_request(1, 1, 3, 0, 2)),
        (Side::Server, modbus(1, 1, 3, &[4, 0, 1, 0, 2])),
        (Side::Client, modbus_request(2, 1, 6, 7, 1)),
        (Side::Client, modbus_request(3, 1, 3, 0, 2)),
    ];
    let (m, m_at) = conversation(HMI, PLC, (40000, 502), &modbus_msgs, false);
    let dnp3_msgs = [
        (Side::Client, dnp3_request(10, 1, 1, &[0x3c, 0x01, 0x06])),
        (Side::Client, dnp3_request(10, 1, 13, &[])),
    ];
    let (d, d_at) = conversation(HMI, PLC, (40001, 20000), &dnp3_msgs, false);
    let dropped = [m_at[2], m_at[3]];
    let forwarded: Vec<Vec<u8>> = m
        .iter()
        .enumerate()
        .filter(|(i, _)| !dropped.contains(i))
        .map(|(_, f)| f.clone())
        .chain(
            d.iter()
                .enumerate()
                .filter(|(i, _)| *i != d_at[1])
                .map(|(_, f)| f.clone()),
        )
        .collect();
    (m.into_iter().chain(d).collect(), forwarded)
}

#[test]
fn replay_enforces_function_code_conduits() {
    let dir = scratch();
    let (policy, input, out) = (
        dir.join("plant.yaml"),
        dir.join("in.pcap"),
        dir.join("out.pcap"),
    );
    std::fs::write(&policy, POLICY).unwrap();
    let (frames, forwarded) = capture();
    testgen::write_pcap(&input, frames.clone()).unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_septa"))
        .args(["replay", "--json", "--policy"])
        .arg(&policy)
        .arg("--pcap")
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let s = &v["summary"];
    assert_eq!(s["packets_in"], frames.len());
    assert_eq!(s["packets_out"], forwarded.len());
    assert_eq!(
        s["drops"],
        serde_json::json!([{"reason": "l7_denied", "packets": 3}]),
        "the write, the read after it (blocked flow), the cold restart"
    );
    let l7 = v["l7"].as_array().unwrap();
    let find = |proto: &str, f: u64| {
        l7.iter()
            .find(|c| c["proto"] == proto && c["function"] == f)
            .unwrap_or_else(|| panic!("{proto} {f} missing in {l7:?}"))
    };
    assert_eq!(find("modbus", 6)["name"], "write_single_register");
    assert_eq!(find("modbus", 6)["denied"], 1);
    assert_eq!(find("modbus", 3)["denied"], 0);
    assert_eq!(
        find("modbus", 3)["messages"],
        2,
        "the read and its response"
    );
    assert_eq!(find("dnp3", 13)["denied"], 1);
    assert_eq!(find("dnp3", 1)["denied"], 0);
    let out_frames = septa_dataplane::io::pcap::read_frames(&out).unwrap();
    assert!(
        out_frames == forwarded,
        "exactly the allowed frames, in order"
    );

    // The human report names the refused functions and why flows were dropped.
    let run = Command::new(env!("CARGO_BIN_EXE_septa"))
        .args(["replay", "--policy"])
        .arg(&policy)
        .arg("--pcap")
        .arg(&input)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&run.stdout);
    for want in [
        "modbus 6 (write_single_register)",
        "dnp3 13 (cold_restart)",
        "refused by its L7 conduit (a message it does not allow; the flow is blocked) by conduit hmi-reads-plc",
        "allowed message by message by its L7 conduit by conduit hmi-reads-plc",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
