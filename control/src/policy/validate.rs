//! DTO → [`ValidatedPolicy`]: checks every field and resolves every name, collecting *all*
//! problems (each with the path of the field) instead of stopping at the first.
//!
//! Invariants: a returned `ValidatedPolicy` has unique zone, conduit, IP set and endpoint names;
//! every zone resolves to at least one prefix; every conduit reference names a zone or `any`;
//! every port range is non-empty; protocol-specific fields appear only with their protocol.
//! Pure: no I/O, no clock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;
use septa_classifier::{Mode, PortRange};

use super::dto::{
    self, ConduitAction, ModeName, PolicyDocument, PortSpec, ProtoName, Selector, SelectorOperator,
};
use super::{ANY_ZONE, Conduit, Service, ValidatedPolicy, Zone, ZoneRef};
use crate::error::Diagnostic;

/// Upper bounds that keep a hostile document from exhausting memory in the compiler.
/// An endpoint's address with its labels.
type LabelledAddress = (IpNet, BTreeMap<String, String>);

pub(crate) const MAX_ZONES: usize = 1024;
pub(crate) const MAX_CONDUITS: usize = 4096;
pub(crate) const MAX_LIST: usize = 4096;

/// Checks a document; on failure returns every problem found, in document order.
pub fn validate(doc: PolicyDocument) -> Result<ValidatedPolicy, Vec<Diagnostic>> {
    let mut v = Validator { errs: Vec::new() };
    let policy = v.document(&doc);
    if v.errs.is_empty() {
        let (default_mode, zones, conduits) = policy;
        Ok(ValidatedPolicy {
            doc,
            default_mode,
            zones,
            conduits,
        })
    } else {
        Err(v.errs)
    }
}

struct Validator {
    errs: Vec<Diagnostic>,
}

pub(crate) fn mode(m: ModeName) -> Mode {
    match m {
        ModeName::Enforce => Mode::Enforce,
        ModeName::Monitor => Mode::Monitor,
    }
}

impl Validator {
    fn err(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.errs.push(Diagnostic::new(path, msg));
    }

    fn document(&mut self, doc: &PolicyDocument) -> (Mode, Vec<Zone>, Vec<Conduit>) {
        if doc.api_version != dto::API_VERSION {
            self.err(
                "apiVersion",
                format!(
                    "unsupported apiVersion {:?}, expected {:?}",
                    doc.api_version,
                    dto::API_VERSION
                ),
            );
        }
        if doc.kind != dto::KIND {
            self.err(
                "kind",
                format!("unsupported kind {:?}, expected {:?}", doc.kind, dto::KIND),
            );
        }
        self.name("metadata.name", &doc.metadata.name);
        for (k, val) in &doc.metadata.labels {
            self.label("metadata.labels", k, val);
        }
        let spec = &doc.spec;
        let default_mode = mode(spec.defaults.mode);

        let ip_sets = self.ip_sets(&spec.ip_sets);
        let endpoints = self.endpoints(&spec.endpoints);
        let zones = self.zones(&spec.zones, default_mode, &ip_sets, &endpoints);
        let conduits = self.conduits(&spec.conduits, &zones);
        (default_mode, zones, conduits)
    }

    /// DNS-label names: lowercase alphanumerics and `-`, 1..=63, not starting or ending with `-`.
    fn name(&mut self, path: &str, name: &str) -> bool {
        let ok = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !ok {
            self.err(
                path,
                format!("invalid name {name:?}: use 1-63 lowercase letters, digits and '-', not at either end"),
            );
        }
        ok
    }

    fn list_len(&mut self, path: &str, len: usize, max: usize) {
        if len > max {
            self.err(path, format!("too many entries ({len}, at most {max})"));
        }
    }

    /// [`Self::list_len`] with the path built only when the list is too long (the hot paths
    /// of large policies would otherwise format a path per list).
    fn list_len_at(&mut self, path: impl FnOnce() -> String, len: usize, max: usize) {
        if len > max {
            self.list_len(&path(), len, max);
        }
    }

    /// Kubernetes label syntax: optional `prefix/` then a name of alphanumerics, `-`, `_`, `.`.
    fn label(&mut self, path: &str, key: &str, value: &str) {
        let seg_ok = |s: &str, allow_empty: bool| {
            if s.is_empty() {
                return allow_empty;
            }
            s.len() <= 63
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
                && s.as_bytes()[0].is_ascii_alphanumeric()
                && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
        };
        let name = key.rsplit_once('/').map_or(key, |(prefix, name)| {
            if prefix.is_empty() || prefix.len() > 253 || !seg_ok(prefix, false) {
                self.err(
                    format!("{path}.{key}"),
                    format!("invalid label key prefix {prefix:?}"),
                );
            }
            name
        });
        if !seg_ok(name, false) {
            self.err(
                format!("{path}.{key}"),
                format!("invalid label key {key:?}"),
            );
        }
        if !seg_ok(value, true) {
            self.err(
                format!("{path}.{key}"),
                format!("invalid label value {value:?}"),
            );
        }
    }

    /// Unique names over a list; reports the second and later uses.
    fn unique<'a>(&mut self, base: &str, names: impl Iterator<Item = &'a str>) {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, n) in names.enumerate() {
            if let Some(first) = seen.insert(n, i) {
                self.err(
                    format!("{base}[{i}].name"),
                    format!("duplicate name {n:?} (first used at {base}[{first}])"),
                );
                seen.insert(n, first);
            }
        }
    }

    /// IP sets by name; `None` for a set with an invalid address (already reported), so that the
    /// zones using it do not report a second, derived error.
    fn ip_sets(&mut self, sets: &[dto::IpSet]) -> BTreeMap<String, Option<Vec<IpNet>>> {
        self.list_len("spec.ipSets", sets.len(), MAX_LIST);
        self.unique("spec.ipSets", sets.iter().map(|s| s.name.as_str()));
        let mut out = BTreeMap::new();
        for (i, s) in sets.iter().enumerate() {
            let base = format!("spec.ipSets[{i}]");
            self.name(&format!("{base}.name"), &s.name);
            if s.addresses.is_empty() {
                self.err(
                    format!("{base}.addresses"),
                    "an IP set needs at least one address",
                );
            }
            self.list_len(&format!("{base}.addresses"), s.addresses.len(), MAX_LIST);
            let nets: Option<Vec<IpNet>> = s
                .addresses
                .iter()
                .enumerate()
                .map(|(j, a)| self.address_or_prefix(&format!("{base}.addresses[{j}]"), a))
                .collect::<Vec<_>>()
                .into_iter()
                .collect();
            out.entry(s.name.clone()).or_insert(nets);
        }
        out
    }

    /// Endpoints with valid addresses, and whether every endpoint was valid.
    fn endpoints(&mut self, eps: &[dto::Endpoint]) -> (Vec<LabelledAddress>, bool) {
        let before = self.errs.len();
        self.list_len("spec.endpoints", eps.len(), MAX_LIST * 16);
        self.unique("spec.endpoints", eps.iter().map(|e| e.name.as_str()));
        let mut out = Vec::new();
        for (i, e) in eps.iter().enumerate() {
            let base = format!("spec.endpoints[{i}]");
            self.name(&format!("{base}.name"), &e.name);
            for (k, val) in &e.labels {
                self.label(&format!("{base}.labels"), k, val);
            }
            match e.address.parse::<IpAddr>() {
                Ok(a) => out.push((IpNet::from(a), e.labels.clone())),
                Err(_) => self.err(
                    format!("{base}.address"),
                    format!("{:?} is not an IPv4 or IPv6 address", e.address),
                ),
            }
        }
        (out, self.errs.len() == before)
    }

    fn address_or_prefix(&mut self, path: &str, s: &str) -> Option<IpNet> {
        if s.contains('/') {
            self.prefix(path, s)
        } else {
            match s.parse::<IpAddr>() {
                Ok(a) => Some(IpNet::from(a)),
                Err(_) => {
                    self.err(path, format!("{s:?} is not an IP address or prefix"));
                    None
                }
            }
        }
    }

    fn prefix(&mut self, path: &str, s: &str) -> Option<IpNet> {
        match s.parse::<IpNet>() {
            Ok(n) if n.trunc() == n => Some(n),
            Ok(n) => {
                self.err(
                    path,
                    format!(
                        "{s:?} has host bits set beyond /{}; did you mean {}?",
                        n.prefix_len(),
                        n.trunc()
                    ),
                );
                None
            }
            Err(_) => {
                self.err(
                    path,
                    format!("{s:?} is not a prefix such as 10.0.0.0/24 or 2001:db8::/32"),
                );
                None
            }
        }
    }

    fn zones(
        &mut self,
        zones: &[dto::Zone],
        default_mode: Mode,
        ip_sets: &BTreeMap<String, Option<Vec<IpNet>>>,
        (endpoints, endpoints_ok): &(Vec<LabelledAddress>, bool),
    ) -> Vec<Zone> {
        if zones.is_empty() {
            self.err("spec.zones", "a policy needs at least one zone");
        }
        self.list_len("spec.zones", zones.len(), MAX_ZONES);
        self.unique("spec.zones", zones.iter().map(|z| z.name.as_str()));
        let mut out = Vec::new();
        for (i, z) in zones.iter().enumerate() {
            let base = format!("spec.zones[{i}]");
            if self.name(&format!("{base}.name"), &z.name) && z.name == ANY_ZONE {
                self.err(
                    format!("{base}.name"),
                    "\"any\" is reserved for the zone of every address",
                );
            }
            self.list_len(&format!("{base}.subnets"), z.subnets.len(), MAX_LIST);
            let mut prefixes: BTreeSet<IpNet> = BTreeSet::new();
            for (j, s) in z.subnets.iter().enumerate() {
                if let Some(n) = self.prefix(&format!("{base}.subnets[{j}]"), s) {
                    prefixes.insert(n);
                }
            }
            let mut derived_ok = true;
            for (j, s) in z.ip_sets.iter().enumerate() {
                match ip_sets.get(s) {
                    Some(Some(nets)) => prefixes.extend(nets.iter().copied()),
                    Some(None) => derived_ok = false,
                    None => self.err(
                        format!("{base}.ipSets[{j}]"),
                        format!("no IP set named {s:?} in spec.ipSets"),
                    ),
                }
            }
            let mut selector_ok = true;
            if let Some(sel) = &z.selector {
                selector_ok = self.selector(&format!("{base}.selector"), sel) && *endpoints_ok;
                if selector_ok {
                    prefixes.extend(
                        endpoints
                            .iter()
                            .filter(|(_, l)| selects(sel, l))
                            .map(|(a, _)| *a),
                    );
                }
            }
            if prefixes.is_empty()
                && selector_ok
                && derived_ok
                && !self
                    .errs
                    .iter()
                    .any(|e| e.path.starts_with(&format!("{base}.")))
            {
                self.err(
                    base.clone(),
                    format!(
                        "zone {:?} has no addresses (no subnets, IP sets, or selected endpoints)",
                        z.name
                    ),
                );
            }
            out.push(Zone {
                name: z.name.clone(),
                mode: z.mode.map_or(default_mode, mode),
                prefixes: prefixes.into_iter().collect(),
            });
        }
        out
    }

    fn selector(&mut self, base: &str, sel: &Selector) -> bool {
        let before = self.errs.len();
        if sel.match_labels.is_empty() && sel.match_expressions.is_empty() {
            self.err(base, "an empty selector would select every endpoint; give matchLabels or matchExpressions");
        }
        for (k, v) in &sel.match_labels {
            self.label(&format!("{base}.matchLabels"), k, v);
        }
        for (i, e) in sel.match_expressions.iter().enumerate() {
            let p = format!("{base}.matchExpressions[{i}]");
            self.label(&p, &e.key, "");
            match e.operator {
                SelectorOperator::In | SelectorOperator::NotIn if e.values.is_empty() => {
                    self.err(
                        format!("{p}.values"),
                        format!("operator {:?} needs at least one value", e.operator),
                    );
                }
                SelectorOperator::Exists | SelectorOperator::DoesNotExist
                    if !e.values.is_empty() =>
                {
                    self.err(
                        format!("{p}.values"),
                        format!("operator {:?} takes no values", e.operator),
                    );
                }
                _ => {}
            }
            for (j, v) in e.values.iter().enumerate() {
                let before_v = self.errs.len();
                self.label(&format!("{p}.values[{j}]"), "x", v);
                if self.errs.len() > before_v {
                    self.errs.truncate(before_v);
                    self.err(
                        format!("{p}.values[{j}]"),
                        format!("invalid label value {v:?}"),
                    );
                }
            }
        }
        self.errs.len() == before
    }

    fn conduits(&mut self, conduits: &[dto::Conduit], zones: &[Zone]) -> Vec<Conduit> {
        self.list_len("spec.conduits", conduits.len(), MAX_CONDUITS);
        self.unique("spec.conduits", conduits.iter().map(|c| c.name.as_str()));
        let by_name: HashMap<&str, usize> = zones
            .iter()
            .enumerate()
            .map(|(i, z)| (z.name.as_str(), i))
            .collect();
        let mut out = Vec::new();
        for (i, c) in conduits.iter().enumerate() {
            let base = format!("spec.conduits[{i}]");
            self.name(&format!("{base}.name"), &c.name);
            let refs = |me: &mut Self, field: &str, names: &[String]| -> Vec<ZoneRef> {
                if names.is_empty() {
                    me.err(
                        format!("{base}.{field}"),
                        "needs at least one zone (or \"any\")",
                    );
                }
                me.list_len_at(|| format!("{base}.{field}"), names.len(), MAX_ZONES);
                names
                    .iter()
                    .enumerate()
                    .filter_map(|(j, n)| {
                        if n == ANY_ZONE {
                            Some(ZoneRef::Any)
                        } else if let Some(&z) = by_name.get(n.as_str()) {
                            Some(ZoneRef::Zone(z))
                        } else {
                            me.err(
                                format!("{base}.{field}[{j}]"),
                                format!("no zone named {n:?} in spec.zones"),
                            );
                            None
                        }
                    })
                    .collect()
            };
            let from = refs(self, "from", &c.from);
            let to = refs(self, "to", &c.to);
            if c.services.is_empty() {
                self.err(
                    format!("{base}.services"),
                    "needs at least one service (use proto: any for all traffic)",
                );
            }
            self.list_len_at(|| format!("{base}.services"), c.services.len(), MAX_LIST);
            let services = c
                .services
                .iter()
                .enumerate()
                .filter_map(|(j, s)| {
                    self.service(&format!("{base}.services[{j}]"), s, c.action, zones)
                })
                .collect();
            out.push(Conduit {
                name: c.name.clone(),
                index: i,
                from,
                to,
                action: c.action,
                mode: c.mode.map(mode),
                services,
            });
        }
        out
    }

    fn service(
        &mut self,
        base: &str,
        s: &dto::Service,
        action: ConduitAction,
        zones: &[Zone],
    ) -> Option<Service> {
        let before = self.errs.len();
        let transport = matches!(s.proto, ProtoName::Tcp | ProtoName::Udp);
        if !transport && !s.ports.is_empty() {
            self.err(format!("{base}.ports"), "ports apply to tcp and udp only");
        }
        if !transport && !s.source_ports.is_empty() {
            self.err(
                format!("{base}.sourcePorts"),
                "sourcePorts apply to tcp and udp only",
            );
        }
        if s.proto != ProtoName::Icmp && !s.icmp_types.is_empty() {
            self.err(format!("{base}.icmpTypes"), "icmpTypes apply to icmp only");
        }
        let mut icmp_types = Vec::new();
        for (j, t) in s.icmp_types.iter().enumerate() {
            match u8::try_from(*t) {
                Ok(t) => icmp_types.push(t),
                Err(_) => self.err(
                    format!("{base}.icmpTypes[{j}]"),
                    format!("ICMP type {t} is out of range 0-255"),
                ),
            }
        }
        self.list_len_at(|| format!("{base}.ports"), s.ports.len(), MAX_LIST);
        self.list_len_at(
            || format!("{base}.sourcePorts"),
            s.source_ports.len(),
            MAX_LIST,
        );
        let ports = self.ports(base, "ports", &s.ports);
        let source_ports = self.ports(base, "sourcePorts", &s.source_ports);
        let mut l7 = None;
        if let Some(spec) = &s.l7 {
            if action == ConduitAction::Deny {
                self.err(
                    format!("{base}.l7"),
                    "l7 constraints narrow an allow; a deny conduit cannot have one",
                );
            } else if !transport {
                self.err(format!("{base}.l7"), "l7 constraints need proto tcp or udp");
            } else {
                l7 = super::l7::validate(&mut self.errs, base, spec, zones);
            }
        }
        (self.errs.len() == before).then_some(Service {
            proto: s.proto,
            ports,
            source_ports,
            icmp_types,
            l7,
        })
    }

    /// `base.field[j]` port specs; paths are formatted only for errors.
    fn ports(&mut self, base: &str, field: &str, specs: &[PortSpec]) -> Vec<PortRange> {
        let mut out = Vec::with_capacity(specs.len());
        for (j, p) in specs.iter().enumerate() {
            let bad = |me: &mut Self, what: String| {
                me.err(
                    format!("{base}.{field}[{j}]"),
                    format!("{what}: expected a port 0-65535 or a range such as \"8000-8080\""),
                );
            };
            let parse_one = |t: &str| t.trim().parse::<u16>().ok();
            match p {
                PortSpec::Number(n) => match u16::try_from(*n) {
                    Ok(n) => out.push(PortRange::exact(n)),
                    Err(_) => bad(self, format!("{n} is out of range")),
                },
                PortSpec::Text(t) => match t.split_once('-') {
                    None => match parse_one(t) {
                        Some(n) => out.push(PortRange::exact(n)),
                        None => bad(self, format!("{t:?} is not a port")),
                    },
                    Some((a, b)) => match (parse_one(a), parse_one(b)) {
                        (Some(lo), Some(hi)) if lo <= hi => out.push(PortRange { lo, hi }),
                        (Some(lo), Some(hi)) => {
                            bad(self, format!("range {lo}-{hi} is empty (first > last)"))
                        }
                        _ => bad(self, format!("{t:?} is not a port range")),
                    },
                },
            }
        }
        out
    }
}

/// Kubernetes selector semantics over one endpoint's labels.
pub(crate) fn selects(sel: &Selector, labels: &BTreeMap<String, String>) -> bool {
    sel.match_labels
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
        && sel.match_expressions.iter().all(|e| {
            let have = labels.get(&e.key);
            match e.operator {
                SelectorOperator::In => have.is_some_and(|v| e.values.contains(v)),
                SelectorOperator::NotIn => have.is_none_or(|v| !e.values.contains(v)),
                SelectorOperator::Exists => have.is_some(),
                SelectorOperator::DoesNotExist => have.is_none(),
            }
        })
}

#[cfg(test)]
mod tests {
    use crate::policy::{Format, parse_policy};

    const BASE: &str = "\
apiVersion: septa.io/v1
kind: Policy
metadata:
  name: base
spec:
  ipSets:
    - name: servers
      addresses: [10.1.0.5, 10.1.0.0/28]
  endpoints:
    - name: plc-1
      address: 10.3.0.10
      labels: {role: plc}
  zones:
    - name: a
      subnets: [10.0.0.0/24]
    - name: b
      ipSets: [servers]
    - name: c
      selector:
        matchLabels: {role: plc}
  conduits:
    - name: a-to-b
      from: [a]
      to: [b]
      services:
        - proto: tcp
          ports: [443, \"8000-8080\"]
";

    fn errors(text: &str) -> Vec<(String, String)> {
        match parse_policy(text, Format::Yaml) {
            Ok(_) => vec![],
            Err(e) => e
                .diagnostics()
                .into_iter()
                .map(|d| (d.path, d.message))
                .collect(),
        }
    }

    #[test]
    fn base_is_valid_and_resolves_zones() {
        let p = parse_policy(BASE, Format::Yaml).unwrap();
        let names: Vec<_> = p.zones().iter().map(|z| z.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(p.zones()[1].prefixes.len(), 2);
        assert_eq!(p.zones()[2].prefixes[0].to_string(), "10.3.0.10/32");
        assert_eq!(p.conduits()[0].services[0].ports.len(), 2);
    }

    #[test]
    fn demo_policy_validates() {
        let text = include_str!("../../../configs/policies/demo.yaml");
        let p = parse_policy(text, Format::Yaml).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.name(), "demo-hospital");
        let plc = p.zones().iter().find(|z| z.name == "ot-plc").unwrap();
        assert_eq!(
            plc.prefixes.len(),
            2,
            "the decommissioned PLC is excluded by DoesNotExist"
        );
    }

    /// Each vector: a replacement applied to BASE and the path every error must name.
    #[test]
    fn every_invalid_field_is_named() {
        let vectors: &[(&str, &str, &str)] = &[
            (
                "apiVersion: septa.io/v1",
                "apiVersion: septa.io/v2",
                "apiVersion",
            ),
            ("kind: Policy", "kind: Polizy", "kind"),
            ("  name: base", "  name: Base_1", "metadata.name"),
            (
                "[10.1.0.5, 10.1.0.0/28]",
                "[10.1.0.5, 10.1.0.1/28]",
                "spec.ipSets[0].addresses[1]",
            ),
            (
                "[10.1.0.5, 10.1.0.0/28]",
                "[10.1.0.500]",
                "spec.ipSets[0].addresses[0]",
            ),
            (
                "address: 10.3.0.10",
                "address: 10.3.0.0/24",
                "spec.endpoints[0].address",
            ),
            (
                "labels: {role: plc}",
                "labels: {\"ro le\": plc}",
                "spec.endpoints[0].labels",
            ),
            (
                "subnets: [10.0.0.0/24]",
                "subnets: [10.0.0.0/33]",
                "spec.zones[0].subnets[0]",
            ),
            (
                "subnets: [10.0.0.0/24]",
                "subnets: [10.0.0.1/24]",
                "spec.zones[0].subnets[0]",
            ),
            (
                "ipSets: [servers]",
                "ipSets: [servrs]",
                "spec.zones[1].ipSets[0]",
            ),
            (
                "matchLabels: {role: plc}",
                "matchLabels: {role: hmi}",
                "spec.zones[2]",
            ),
            (
                "matchLabels: {role: plc}",
                "matchLabels: {}",
                "spec.zones[2].selector",
            ),
            (
                "matchLabels: {role: plc}",
                "matchExpressions: [{key: role, operator: In}]",
                "spec.zones[2].selector.matchExpressions[0].values",
            ),
            (
                "matchLabels: {role: plc}",
                "matchExpressions: [{key: role, operator: Exists, values: [x]}]",
                "spec.zones[2].selector.matchExpressions[0].values",
            ),
            ("- name: c\n", "- name: a\n", "spec.zones[2].name"),
            ("- name: c\n", "- name: any\n", "spec.zones[2].name"),
            ("to: [b]", "to: [d]", "spec.conduits[0].to[0]"),
            ("from: [a]", "from: []", "spec.conduits[0].from"),
            (
                "[443, \"8000-8080\"]",
                "[443, \"8080-8000\"]",
                "spec.conduits[0].services[0].ports[1]",
            ),
            (
                "[443, \"8000-8080\"]",
                "[70000]",
                "spec.conduits[0].services[0].ports[0]",
            ),
            (
                "[443, \"8000-8080\"]",
                "[-1]",
                "spec.conduits[0].services[0].ports[0]",
            ),
            (
                "[443, \"8000-8080\"]",
                "[http]",
                "spec.conduits[0].services[0].ports[0]",
            ),
            (
                "proto: tcp",
                "proto: icmp",
                "spec.conduits[0].services[0].ports",
            ),
            (
                "ports: [443, \"8000-8080\"]",
                "ports: [443]\n          icmpTypes: [8]",
                "spec.conduits[0].services[0].icmpTypes",
            ),
            (
                "ports: [443, \"8000-8080\"]",
                "ports: [443]\n          l7: [read]",
                "spec.conduits[0].services[0].l7",
            ),
            (
                "      from: [a]",
                "      action: deny\n      from: [a]\n      services: []\n      x:",
                "spec.conduits[0]",
            ),
        ];
        for (from, to, path) in vectors {
            assert!(BASE.contains(from), "vector source {from:?} not in BASE");
            let text = BASE.replacen(from, to, 1);
            let errs = errors(&text);
            assert!(!errs.is_empty(), "{to:?} was accepted");
            assert!(
                errs.iter().all(|(p, _)| p.starts_with(path)),
                "{to:?}: expected errors under {path:?}, got {errs:?}"
            );
        }
    }

    #[test]
    fn all_errors_are_reported_at_once() {
        let text = BASE
            .replace("kind: Policy", "kind: Nope")
            .replace("subnets: [10.0.0.0/24]", "subnets: [10.0.0.0/99]")
            .replace("to: [b]", "to: [zz]")
            .replace("[443, \"8000-8080\"]", "[443, \"9-1\"]");
        let errs = errors(&text);
        let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "kind",
                "spec.zones[0].subnets[0]",
                "spec.conduits[0].to[0]",
                "spec.conduits[0].services[0].ports[1]"
            ],
            "{errs:?}"
        );
    }

    #[test]
    fn json_and_yaml_share_the_model_and_canonical_form() {
        let y = parse_policy(BASE, Format::Yaml).unwrap();
        let json = String::from_utf8(y.canonical_json()).unwrap();
        let j = parse_policy(&json, Format::Json).unwrap();
        assert_eq!(y, j);
        assert_eq!(j.canonical_json(), json.as_bytes());
    }
}
