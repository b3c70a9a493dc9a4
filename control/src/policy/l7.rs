//! The `l7:` constraint of a conduit service: validation of the operator's mapping into a
//! compiled [`L7Constraint`] (function-code conduit), with every problem reported at its path.
//!
//! ```yaml
//! l7: {modbus: {functions: [read_*], units: [1, 2], addresses: ["0-99", 200]}}
//! l7: {dnp3: {functions: [read, select, operate], masters: [scada, 3]}}
//! l7: {s7: {deny: [stop, download], plus: false}}
//! l7: {iec104: {functions: ["M_*", C_IC_NA_1]}}
//! l7: {cip: {functions: [read]}}            # also bacnet, opcua
//! ```
//!
//! One protocol per service. `functions` (allowed; every function when absent) and `deny`
//! (removed from the allowed set) take names, numbers, classes (`read`, `read_*`), aliases
//! (`download`) and name prefixes (`M_*`); see `septa_l7::functions`. Only requests are
//! restricted: responses, acknowledgements and link control always pass.

use septa_l7::functions::{self, SelectorError};
use septa_l7::{AddrRange, FnSet, L7Constraint, L7Proto, MAX_MASTERS, MAX_RANGES, Net};
use serde_json::Value;

use super::{ANY_ZONE, Zone};
use crate::error::Diagnostic;

/// A validated `l7:` constraint: the document's mapping (for display and the canonical form)
/// and what it compiles to.
#[derive(Clone, Debug, PartialEq)]
pub struct L7Rule {
    /// The mapping as written.
    pub spec: Value,
    /// The compiled function-code conduit.
    pub constraint: L7Constraint,
}

const PROTOCOLS: &[(&str, L7Proto)] = &[
    ("modbus", L7Proto::Modbus),
    ("dnp3", L7Proto::Dnp3),
    ("s7", L7Proto::S7comm),
    ("s7comm", L7Proto::S7comm),
    ("cip", L7Proto::EnipCip),
    ("enip", L7Proto::EnipCip),
    ("bacnet", L7Proto::Bacnet),
    ("iec104", L7Proto::Iec104),
    ("opcua", L7Proto::OpcUa),
];

fn fields(p: L7Proto) -> &'static [&'static str] {
    match p {
        L7Proto::Modbus => &["functions", "deny", "units", "addresses"],
        L7Proto::Dnp3 => &["functions", "deny", "masters"],
        L7Proto::S7comm => &["functions", "deny", "plus"],
        _ => &["functions", "deny"],
    }
}

/// Validates the `l7` value of the service at `base`; pushes one diagnostic per problem.
pub(super) fn validate(
    errs: &mut Vec<Diagnostic>,
    base: &str,
    value: &Value,
    zones: &[Zone],
) -> Option<L7Rule> {
    let before = errs.len();
    let mut err = |path: String, msg: String| errs.push(Diagnostic::new(path, msg));
    let path = format!("{base}.l7");
    let Some(map) = value.as_object() else {
        err(
            path,
            "l7 must be a mapping such as {modbus: {functions: [read_coils]}}".into(),
        );
        return None;
    };
    if map.len() != 1 {
        err(
            path,
            format!("l7 names exactly one protocol, found {}", map.len()),
        );
        return None;
    }
    let (key, body) = map.iter().next()?;
    let Some(&(_, proto)) = PROTOCOLS.iter().find(|(k, _)| k == key) else {
        let known: Vec<&str> = PROTOCOLS.iter().map(|(k, _)| *k).collect();
        err(
            format!("{path}.{key}"),
            format!(
                "unknown L7 protocol {key:?}; expected one of {}",
                known.join(", ")
            ),
        );
        return None;
    };
    let path = format!("{path}.{key}");
    let mut c = L7Constraint::allow_all(proto);
    let empty = serde_json::Map::new();
    let body = match body {
        Value::Null => &empty,
        Value::Object(m) => m,
        _ => {
            err(
                path,
                format!("{key} must be a mapping such as {{functions: [...]}}"),
            );
            return None;
        }
    };
    for (field, v) in body {
        let fpath = format!("{path}.{field}");
        match field.as_str() {
            "functions" | "deny" => {
                let Some(set) = selectors(&mut err, &fpath, proto, v) else {
                    continue;
                };
                if field == "functions" {
                    c.functions = set;
                } else {
                    set.iter().for_each(|code| c.functions.remove(code));
                }
            }
            "units" if proto == L7Proto::Modbus => {
                let mut units = FnSet::EMPTY;
                for_each_item(&mut err, &fpath, v, 256, |err, p, item| {
                    match item.as_u64() {
                        Some(u) if u <= 255 => units.insert(u as u8),
                        _ => err(p, format!("unit ids are numbers 0-255, not {item}")),
                    }
                });
                c.units = Some(units);
            }
            "addresses" if proto == L7Proto::Modbus => {
                for_each_item(
                    &mut err,
                    &fpath,
                    v,
                    MAX_RANGES,
                    |err, p, item| match address_range(item) {
                        Some(r) => c.ranges.push(r),
                        None => err(
                            p,
                            format!("an address is 0-65535 or a range \"lo-hi\", not {item}"),
                        ),
                    },
                );
            }
            "masters" if proto == L7Proto::Dnp3 => {
                for_each_item(
                    &mut err,
                    &fpath,
                    v,
                    MAX_MASTERS,
                    |err, p, item| match item {
                        Value::Number(n) => match n.as_u64() {
                            Some(a) if a <= 0xffef => c.masters.push(a as u16),
                            _ => err(p, format!("a DNP3 link address is 0-65519, not {n}")),
                        },
                        Value::String(z) if z == ANY_ZONE => {
                            err(p, "\"any\" admits every host; omit masters instead".into())
                        }
                        Value::String(z) => match zones.iter().find(|zone| &zone.name == z) {
                            Some(zone) => c.master_nets.extend(zone.prefixes.iter().map(net)),
                            None => err(p, format!("no zone named {z:?} in spec.zones")),
                        },
                        _ => err(
                            p,
                            format!("a master is a zone name or a link address, not {item}"),
                        ),
                    },
                );
            }
            "plus" if proto == L7Proto::S7comm => match v.as_bool() {
                Some(b) => c.allow_plus = b,
                None => err(fpath, format!("plus is true or false, not {v}")),
            },
            _ => err(
                fpath,
                format!(
                    "unknown field {field:?} for {key}; expected one of {}",
                    fields(proto).join(", ")
                ),
            ),
        }
    }
    (errs.len() == before).then(|| L7Rule {
        spec: value.clone(),
        constraint: c,
    })
}

fn for_each_item(
    err: &mut impl FnMut(String, String),
    path: &str,
    v: &Value,
    max: usize,
    mut f: impl FnMut(&mut dyn FnMut(String, String), String, &Value),
) {
    let Some(items) = v.as_array() else {
        err(path.to_owned(), format!("must be a list, not {v}"));
        return;
    };
    if items.is_empty() {
        err(
            path.to_owned(),
            "an empty list allows nothing; omit the field instead".into(),
        );
    }
    if items.len() > max {
        err(
            path.to_owned(),
            format!("at most {max} entries, found {}", items.len()),
        );
        return;
    }
    for (i, item) in items.iter().enumerate() {
        f(&mut *err, format!("{path}[{i}]"), item);
    }
}

fn selectors(
    err: &mut impl FnMut(String, String),
    path: &str,
    proto: L7Proto,
    v: &Value,
) -> Option<FnSet> {
    let mut set = FnSet::EMPTY;
    let mut ok = true;
    for_each_item(err, path, v, 256, |err, p, item| {
        let text = match item {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => {
                ok = false;
                return err(p, format!("a function is a name or a number, not {item}"));
            }
        };
        match functions::resolve(proto, &text) {
            Ok(codes) => codes.into_iter().for_each(|c| set.insert(c)),
            Err(e) => {
                ok = false;
                let names: Vec<&str> = functions::table(proto).iter().map(|f| f.name).collect();
                let why = match e {
                    SelectorError::Unknown => "unknown",
                    SelectorError::MatchesNothing => "matches no",
                };
                err(
                    p,
                    format!(
                        "{why} {proto} function {text:?}; use a number 0-255, a class (read, \
                         write, diagnostics, control, program, session, monitor), a pattern \
                         such as read_*, or one of: {}",
                        names.join(", ")
                    ),
                );
            }
        }
    });
    ok.then_some(set)
}

fn address_range(v: &Value) -> Option<AddrRange> {
    match v {
        Value::Number(n) => {
            let a = u16::try_from(n.as_u64()?).ok()?;
            Some(AddrRange::inclusive(a, a))
        }
        Value::String(s) => {
            let (lo, hi) = match s.split_once('-') {
                Some((lo, hi)) => (lo.trim().parse().ok()?, hi.trim().parse().ok()?),
                None => {
                    let a = s.trim().parse().ok()?;
                    (a, a)
                }
            };
            (lo <= hi).then(|| AddrRange::inclusive(lo, hi))
        }
        _ => None,
    }
}

fn net(n: &ipnet::IpNet) -> Net {
    match n {
        ipnet::IpNet::V4(v) => Net {
            v6: false,
            addr: u128::from(u32::from(v.network())),
            len: v.prefix_len(),
        },
        ipnet::IpNet::V6(v) => Net {
            v6: true,
            addr: u128::from(v.network()),
            len: v.prefix_len(),
        },
    }
}

#[cfg(test)]
mod tests {
    use septa_classifier::{Action, HookId};
    use septa_l7::{Message, Role, Sender, check};

    use crate::compile::compile;
    use crate::error::PolicyError;
    use crate::policy::{Format, parse_policy};

    const POLICY: &str = "\
apiVersion: septa.io/v1
kind: Policy
metadata:
  name: ics
spec:
  zones:
    - name: scada
      subnets: [10.0.0.0/24]
    - name: plc
      subnets: [10.3.0.0/24]
  conduits:
    - name: modbus-read
      from: [scada]
      to: [plc]
      services:
        - proto: tcp
          ports: [502]
          l7: {modbus: {functions: [read_*], units: [1], addresses: [\"0-99\"]}}
        - proto: tcp
          ports: [20000]
          l7:
            dnp3:
              functions: [read, select, operate]
              masters: [scada, 1]
    - name: s7-no-stop
      from: [scada]
      to: [plc]
      services:
        - proto: tcp
          ports: [102]
          l7: {s7: {deny: [stop, download]}}
        - proto: tcp
          ports: [2404]
          l7: {iec104: {functions: [\"M_*\", C_IC_NA_1]}}
";

    fn request(proto: septa_l7::L7Proto, function: u8) -> Message {
        Message {
            proto,
            role: Role::Request,
            function,
            ..Message::default()
        }
    }

    #[test]
    fn l7_constraints_compile_to_dense_hooks_that_enforce() {
        let p = parse_policy(POLICY, Format::Yaml).unwrap();
        let c = compile(&p).unwrap();
        assert_eq!(c.l7_constraints().len(), 4);
        // The conduits travel inside the published table: one swap changes rules and hooks.
        assert_eq!(c.table().l7_constraints(), &c.l7_constraints()[..]);
        let hooks: Vec<u32> = c
            .rules()
            .iter()
            .filter_map(|r| match r.action {
                Action::Inspect(h) => Some(h.0),
                _ => None,
            })
            .collect();
        assert_eq!(
            hooks,
            [0, 1, 2, 3],
            "one rule per service here (IPv4 zones only)"
        );
        let modbus = c.l7_constraint(HookId(0)).unwrap();
        let read = Message {
            unit: Some(1),
            ranges: [
                Some(septa_l7::AddrRange {
                    start: 0,
                    count: 10,
                }),
                None,
            ],
            ..request(septa_l7::L7Proto::Modbus, 3)
        };
        assert_eq!(
            check(modbus, &read, Sender::default()),
            septa_l7::L7Verdict::Allow
        );
        let write = Message {
            function: 6,
            ..read
        };
        let septa_l7::L7Verdict::Deny(r) = check(modbus, &write, Sender::default()) else {
            panic!()
        };
        assert_eq!(
            r.to_string(),
            "modbus function 6 (write_single_register) not allowed"
        );
        let dnp3 = c.l7_constraint(HookId(1)).unwrap();
        assert_eq!(
            (dnp3.masters.as_slice(), dnp3.master_nets.len()),
            (&[1u16][..], 1)
        );
        let s7 = c.l7_constraint(HookId(2)).unwrap();
        assert!(s7.functions.contains(0x04) && !s7.functions.contains(0x29));
        assert!(!s7.functions.contains(0x1b) && !s7.allow_plus);
        let iec = c.l7_constraint(HookId(3)).unwrap();
        assert!(iec.functions.contains(1) && iec.functions.contains(100));
        assert!(!iec.functions.contains(45));
        // The clause text shows the constraint as written.
        assert!(
            c.clauses()[0].text.contains("modbus"),
            "{}",
            c.clauses()[0].text
        );
    }

    fn diagnostics(text: &str) -> Vec<(String, Option<u64>, Option<u64>, String)> {
        match parse_policy(text, Format::Yaml) {
            Ok(_) => vec![],
            Err(PolicyError::Invalid(d)) => {
                d.0.into_iter()
                    .map(|d| (d.path, d.line, d.column, d.message))
                    .collect()
            }
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn every_l7_error_has_its_path_and_position() {
        let text = POLICY
            .replace("functions: [read_*]", "functions: [read_*, read_coil]")
            .replace("masters: [scada, 1]", "masters: [hmi, 70000]")
            .replace(
                "{s7: {deny: [stop, download]}}",
                "{s7: {deny: [stop], colour: red}}",
            )
            .replace(
                "{iec104: {functions: [\"M_*\", C_IC_NA_1]}}",
                "{iec105: {}}",
            );
        let d = diagnostics(&text);
        let got: Vec<(&str, Option<u64>, Option<u64>)> =
            d.iter().map(|(p, l, c, _)| (p.as_str(), *l, *c)).collect();
        assert_eq!(
            got,
            [
                (
                    "spec.conduits[0].services[0].l7.modbus.functions[1]",
                    Some(18),
                    Some(45)
                ),
                (
                    "spec.conduits[0].services[1].l7.dnp3.masters[0]",
                    Some(24),
                    Some(25)
                ),
                (
                    "spec.conduits[0].services[1].l7.dnp3.masters[1]",
                    Some(24),
                    Some(30)
                ),
                (
                    "spec.conduits[1].services[0].l7.s7.colour",
                    Some(31),
                    Some(43)
                ),
                ("spec.conduits[1].services[1].l7.iec105", Some(34), Some(24)),
            ],
            "{d:#?}"
        );
        assert!(
            d[0].3.contains("unknown modbus function \"read_coil\"")
                && d[0].3.contains("read_coils")
        );
        assert!(d[1].3.contains("no zone named \"hmi\""), "{}", d[1].3);
        assert!(
            d[3].3.contains("expected one of functions, deny, plus"),
            "{}",
            d[3].3
        );
    }

    #[test]
    fn shape_errors_are_named() {
        for (from, to, path, words) in [
            (
                "{modbus: {functions: [read_*], units: [1], addresses: [\"0-99\"]}}",
                "{modbus: {units: [300]}}",
                "l7.modbus.units[0]",
                "0-255",
            ),
            (
                "{modbus: {functions: [read_*], units: [1], addresses: [\"0-99\"]}}",
                "{modbus: {addresses: [\"9-1\"]}}",
                "l7.modbus.addresses[0]",
                "range",
            ),
            (
                "{modbus: {functions: [read_*], units: [1], addresses: [\"0-99\"]}}",
                "{modbus: {functions: []}}",
                "l7.modbus.functions",
                "empty list",
            ),
            (
                "{modbus: {functions: [read_*], units: [1], addresses: [\"0-99\"]}}",
                "{modbus: {}, dnp3: {}}",
                "l7",
                "exactly one protocol",
            ),
            (
                "{modbus: {functions: [read_*], units: [1], addresses: [\"0-99\"]}}",
                "{modbus: {functions: [zz_*]}}",
                "l7.modbus.functions[0]",
                "matches no",
            ),
            (
                "{modbus: {functions: [read_*], units: [1], addresses: [\"0-99\"]}}",
                "{modbus: {functions: read}}",
                "l7.modbus.functions",
                "must be a list",
            ),
            (
                "{modbus: {functions: [read_*], units: [1], addresses: [\"0-99\"]}}",
                "{modbus: {masters: [1]}}",
                "l7.modbus.masters",
                "unknown field",
            ),
        ] {
            let d = diagnostics(&POLICY.replace(from, to));
            assert_eq!(d.len(), 1, "{to}: {d:?}");
            assert_eq!(
                d[0].0,
                format!("spec.conduits[0].services[0].{path}"),
                "{to}"
            );
            assert!(d[0].3.contains(words), "{to}: {}", d[0].3);
            assert!(d[0].1.is_some(), "{to}: no line");
        }
    }
}
