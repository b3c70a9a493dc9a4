//! Random rule lists × random keys: `compile` either rejects the list with an error that names a
//! rule, or the compiled table (trees and zone path, single and burst lookups) agrees with
//! `reference::classify` on every key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use septa_classifier::{
    Action, AddrMatch, CompileOptions, Decision, Family, FlowKey, HookId, Mode, PortRange, Prefix, Rule, RuleId,
    NO_RULE, Strategy, compile_with, reference,
};

/// Reads the input byte by byte; runs out as zeros.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    /// Addresses from a small alphabet so that rules and keys collide often.
    fn addr(&mut self, family: Family) -> u128 {
        let base: u128 = match self.u8() % 4 {
            0 => 0,
            1 => 0x0a00_0000,
            2 => 0xc0a8_0000,
            _ => u128::MAX,
        };
        let v = base ^ u128::from(self.u16());
        match family {
            Family::V4 => v & u128::from(u32::MAX),
            Family::V6 => v.rotate_left(96),
        }
    }
    fn family(&mut self) -> Family {
        if self.u8() % 4 == 0 { Family::V6 } else { Family::V4 }
    }
    fn addr_match(&mut self) -> AddrMatch {
        match self.u8() % 4 {
            0 => AddrMatch::Any,
            n => AddrMatch::Prefixes(
                (0..n - 1)
                    .map(|_| {
                        let family = self.family();
                        let addr = self.addr(family);
                        let len = self.u8();
                        let p = Prefix { family, addr, len: len % 130 };
                        // Mostly well-formed (host bits cleared), sometimes raw to exercise errors.
                        if len & 0x80 == 0 { Prefix { addr: p.range().0, ..p } } else { p }
                    })
                    .collect(),
            ),
        }
    }
    fn ports(&mut self) -> PortRange {
        match self.u8() % 4 {
            0 => PortRange::ANY,
            1 => PortRange::exact(self.u16() % 64),
            _ => PortRange { lo: self.u16() % 64, hi: self.u16() % 64 },
        }
    }
    fn opt<T>(&mut self, v: T) -> Option<T> {
        // Mostly absent: optional fields are rare in real policies.
        (self.u8() % 8 == 0).then_some(v)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let n_rules = usize::from(b.u8() % 48);
    let rules: Vec<Rule> = (0..n_rules)
        .map(|i| {
            let (src, dst, sport, dport) = (b.addr_match(), b.addr_match(), b.ports(), b.ports());
            let p = b.u8() % 3 * 11;
            let proto = b.opt(p);
            let (v, i) = (u16::from(b.u8() % 2), u16::from(b.u8() % 2));
            let (vlan, in_port) = (b.opt(v), b.opt(i));
            let action = match b.u8() % 3 {
                0 => Action::Allow,
                1 => Action::Deny,
                _ => Action::Inspect(HookId(1)),
            };
            Rule { id: RuleId(i as u32), src, dst, sport, dport, proto, vlan, in_port, action, mode: Mode::Enforce, ..Rule::default() }
        })
        .collect();
    let keys: Vec<FlowKey> = (0..usize::from(b.u8() % 40) + 1)
        .map(|_| {
            let family = b.family();
            FlowKey {
                src: b.addr(family),
                dst: b.addr(family),
                sport: b.u16() % 64,
                dport: b.u16() % 64,
                proto: b.u8() % 3 * 11,
                family,
                vlan: u16::from(b.u8() % 2),
                in_port: u16::from(b.u8() % 2),
            }
        })
        .collect();
    for strategy in [Strategy::Tree, Strategy::Auto] {
        let leaf_size = 1 + usize::from(data.len() % 5);
        let table = match compile_with(&rules, &CompileOptions { strategy, leaf_size, ..CompileOptions::default() }) {
            Ok(t) => t,
            Err(e) => {
                assert!(e.index() < rules.len(), "{e}");
                return;
            }
        };
        let mut burst = vec![Decision::default(); keys.len()];
        table.classify_burst(&keys, &mut burst);
        let mut idx = vec![0u32; keys.len()];
        table.match_burst(&keys, &mut idx);
        for ((k, got), &m) in keys.iter().zip(&burst).zip(&idx) {
            let want = reference::classify(&rules, table.default_decision(), k);
            assert_eq!(table.classify(k), want, "{k}");
            assert_eq!(*got, want, "burst {k}");
            let want_idx = reference::first_match(&rules, k).map_or(NO_RULE, |i| i as u32);
            assert_eq!(m, want_idx, "match_burst {k}");
        }
    }
});
