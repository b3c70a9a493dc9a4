//! The policy compiler against the policy's own meaning: random small policies × random flows;
//! the first match over the compiled rules (through the classifier's compiled table and its
//! naive reference scan) must give the verdict, mode and clause that [`semantics::evaluate`]
//! gives by walking the zones and conduits directly.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use septa_classifier::{Action, Decision, FlowKey, Mode, reference};
use septa_control::policy::dto::{
    Conduit, ConduitAction, Defaults, Metadata, ModeName, PolicyDocument, PortSpec, ProtoName,
    Service, Spec, Zone,
};
use septa_control::semantics::{self, Verdict};
use septa_control::{compile, policy};

const PREFIXES: &[&str] = &[
    "10.0.0.0/8",
    "10.1.0.0/16",
    "10.1.2.0/24",
    "10.1.2.3/32",
    "10.2.0.0/16",
    "192.168.0.0/24",
    "2001:db8::/32",
    "2001:db8:1::/48",
    "fd00::/8",
];

fn mode_name() -> impl Strategy<Value = Option<ModeName>> {
    prop_oneof![
        Just(None),
        Just(Some(ModeName::Enforce)),
        Just(Some(ModeName::Monitor))
    ]
}

fn port_spec() -> impl Strategy<Value = PortSpec> {
    prop_oneof![
        (18i64..30).prop_map(PortSpec::Number),
        (18u16..30, 0u16..4).prop_map(|(lo, w)| PortSpec::Text(format!("{lo}-{}", lo + w))),
    ]
}

fn service() -> impl Strategy<Value = Service> {
    let proto = prop_oneof![
        Just(ProtoName::Tcp),
        Just(ProtoName::Udp),
        Just(ProtoName::Icmp),
        Just(ProtoName::Any)
    ];
    (
        proto,
        prop::collection::vec(port_spec(), 0..3),
        prop::collection::vec(port_spec(), 0..2),
        prop::collection::vec(prop_oneof![Just(0u16), Just(3), Just(8)], 0..3),
        any::<bool>(),
    )
        .prop_map(|(proto, ports, sports, types, l7)| {
            let transport = matches!(proto, ProtoName::Tcp | ProtoName::Udp);
            Service {
                proto,
                ports: if transport { ports } else { vec![] },
                source_ports: if transport { sports } else { vec![] },
                icmp_types: if proto == ProtoName::Icmp {
                    types
                } else {
                    vec![]
                },
                l7: (transport && l7)
                    .then(|| serde_json::json!({"modbus": {"functions": ["read_coils"]}})),
            }
        })
}

fn document() -> impl Strategy<Value = PolicyDocument> {
    let zones = prop::collection::vec(
        (
            prop::collection::btree_set(0..PREFIXES.len(), 1..3),
            mode_name(),
        ),
        1..4,
    );
    (zones, mode_name()).prop_flat_map(|(zones, default_mode)| {
        let n = zones.len();
        let zref =
            prop_oneof![4 => (0..n).prop_map(|i| format!("z{i}")), 1 => Just("any".to_owned())];
        let conduit = (
            prop::collection::vec(zref.clone(), 1..3),
            prop::collection::vec(zref, 1..3),
            any::<bool>(),
            mode_name(),
            prop::collection::vec(service(), 1..3),
        );
        let zones = zones.clone();
        prop::collection::vec(conduit, 0..5).prop_map(move |cs| PolicyDocument {
            api_version: "septa.io/v1".into(),
            kind: "Policy".into(),
            metadata: Metadata {
                name: "prop".into(),
                description: None,
                labels: BTreeMap::new(),
            },
            spec: Spec {
                defaults: Defaults {
                    mode: default_mode.unwrap_or_default(),
                    ..Defaults::default()
                },
                ip_sets: vec![],
                endpoints: vec![],
                zones: zones
                    .iter()
                    .enumerate()
                    .map(|(i, (ps, m))| Zone {
                        name: format!("z{i}"),
                        description: None,
                        mode: *m,
                        subnets: ps.iter().map(|&p| PREFIXES[p].to_owned()).collect(),
                        ip_sets: vec![],
                        selector: None,
                    })
                    .collect(),
                conduits: cs
                    .into_iter()
                    .enumerate()
                    .map(|(i, (from, to, deny, mode, mut services))| {
                        if deny {
                            services.iter_mut().for_each(|s| s.l7 = None);
                        }
                        Conduit {
                            name: format!("c{i}"),
                            description: None,
                            from,
                            to,
                            action: if deny {
                                ConduitAction::Deny
                            } else {
                                ConduitAction::Allow
                            },
                            mode,
                            services,
                        }
                    })
                    .collect(),
            },
        })
    })
}

/// An address near the prefix pool (inside one of them most of the time).
fn addr(v6: bool) -> impl Strategy<Value = IpAddr> {
    let bases: Vec<IpAddr> = PREFIXES
        .iter()
        .map(|p| p.split('/').next().unwrap().parse::<IpAddr>().unwrap())
        .filter(|a| a.is_ipv6() == v6)
        .collect();
    (prop::sample::select(bases), any::<u32>(), 0u8..4).prop_map(|(base, r, how)| match base {
        IpAddr::V4(b) => {
            let b = u32::from(b);
            let a = match how {
                0 => b,
                1 => b | (r & 0xff),
                2 => b | (r & 0xffff),
                _ => r,
            };
            IpAddr::V4(Ipv4Addr::from(a))
        }
        IpAddr::V6(b) => {
            let b = u128::from(b);
            let r = u128::from(r);
            let a = match how {
                0 => b,
                1 => b | r,
                2 => b | (r << 80),
                _ => r << 96 | r,
            };
            IpAddr::V6(Ipv6Addr::from(a))
        }
    })
}

fn flow() -> impl Strategy<Value = FlowKey> {
    any::<bool>().prop_flat_map(|v6| {
        (
            addr(v6),
            addr(v6),
            prop::sample::select(vec![1u8, 6, 6, 6, 17, 17, 58, 47]),
            17u16..32,
            17u16..32,
        )
            .prop_map(|(s, d, proto, sp, dp)| match (s, d) {
                (IpAddr::V4(s), IpAddr::V4(d)) => FlowKey::v4(s, d, proto, sp, dp),
                (IpAddr::V6(s), IpAddr::V6(d)) => FlowKey::v6(s, d, proto, sp, dp),
                _ => unreachable!("same family by construction"),
            })
    })
}

fn verdict(a: Action) -> Verdict {
    match a {
        Action::Allow => Verdict::Allow,
        Action::Deny => Verdict::Deny,
        Action::Inspect(_) => Verdict::Inspect,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn compiled_rules_agree_with_the_policy(doc in document(), flows in prop::collection::vec(flow(), 32)) {
        let p = policy::validate(doc).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        let compiled = compile(&p).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for k in &flows {
            let (want_v, want_m, want_clause) = semantics::evaluate(&p, k);
            let table = compiled.table().classify(k);
            let naive = reference::classify(compiled.rules(), Decision::fallback(Action::Deny, Mode::Enforce), k);
            prop_assert_eq!(table, naive, "table vs reference scan for {}", k);
            let clause = table.source.and_then(|s| compiled.clause_of_source(s)).map(|c| c.kind.clone());
            prop_assert_eq!(
                (verdict(table.action), table.mode, clause),
                (want_v, want_m, Some(want_clause)),
                "flow {}", k
            );
        }
    }

    #[test]
    fn compilation_is_deterministic(doc in document()) {
        let p = policy::validate(doc).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        let a = compile(&p).unwrap();
        let b = compile(&p).unwrap();
        prop_assert_eq!(a.rules(), b.rules());
        prop_assert_eq!(a.clauses(), b.clauses());
    }
}
