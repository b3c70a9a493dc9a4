//! The management-path guard: refuses a policy under which the operators' management network
//! could no longer reach the appliance's API (TCP to its address and port), because such a
//! policy cannot be corrected through the API afterwards.
//!
//! The check is exact, not sampled: for a fixed destination, protocol and port, every rule is an
//! interval over the source address and an interval over the source port, so the decision is
//! constant between consecutive rule boundaries. The guard evaluates the compiled table (the one
//! the data plane would run) at the start of every such region inside the management prefix ×
//! ephemeral source ports (1024-65535). Monitor-mode denies pass (they forward).
//!
//! Pure; never consulted for anything but refusing a policy.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use septa_classifier::{Action, AddrMatch, Family, FlowKey, Mode};

use crate::compile::{CompiledPolicy, to_prefix};

/// Where management traffic comes from and goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagementPath {
    /// The management network (sources that must keep access).
    pub source: IpNet,
    /// The appliance's API address and TCP port.
    pub api: SocketAddr,
}

/// Lowest source port a client uses (ephemeral range start).
const EPHEMERAL_LO: u16 = 1024;

impl ManagementPath {
    /// `Ok` when every management source can reach the API; otherwise a sentence naming one
    /// blocked flow and the clause that blocks it.
    pub fn check(&self, compiled: &CompiledPolicy) -> Result<(), String> {
        let family = match self.source {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        };
        if matches!(
            (family, self.api.ip()),
            (Family::V4, IpAddr::V6(_)) | (Family::V6, IpAddr::V4(_))
        ) {
            return Err(
                "management source and API address are of different address families".into(),
            );
        }
        let (lo, hi) = to_prefix(&self.source.trunc()).range();
        let mut addrs = vec![lo];
        let mut ports = vec![EPHEMERAL_LO];
        for r in compiled.rules() {
            if let AddrMatch::Prefixes(ps) = &r.src {
                for p in ps.iter().filter(|p| p.family == family) {
                    let (plo, phi) = p.range();
                    for b in [Some(plo), phi.checked_add(1)].into_iter().flatten() {
                        if lo < b && b <= hi {
                            addrs.push(b);
                        }
                    }
                }
            }
            for b in [Some(r.sport.lo), r.sport.hi.checked_add(1)]
                .into_iter()
                .flatten()
            {
                if b > EPHEMERAL_LO {
                    ports.push(b);
                }
            }
        }
        addrs.sort_unstable();
        addrs.dedup();
        ports.sort_unstable();
        ports.dedup();
        let dst = match self.api.ip() {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        };
        for &src in &addrs {
            for &sport in &ports {
                let key = FlowKey {
                    src,
                    dst,
                    sport,
                    dport: self.api.port(),
                    proto: 6,
                    family,
                    ..FlowKey::default()
                };
                let d = compiled.table().classify(&key);
                if d.action == Action::Deny && d.mode == Mode::Enforce {
                    let clause = d
                        .source
                        .and_then(|s| compiled.clause_of_source(s))
                        .map_or_else(|| "the table's fallback".to_owned(), ToString::to_string);
                    return Err(format!(
                        "{} (management {} -> API {}) is denied by {clause}",
                        key, self.source, self.api
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::compile;
    use crate::policy::{Format, parse_policy};

    fn compiled(conduits: &str) -> CompiledPolicy {
        let text = format!(
            "apiVersion: septa.io/v1\nkind: Policy\nmetadata: {{name: m}}\nspec:\n  zones:\n    - {{name: mgmt, subnets: [10.99.0.0/24]}}\n    - {{name: bad, subnets: [10.99.0.77/32]}}\n    - {{name: appliance, subnets: [10.0.0.1/32]}}\n  conduits:\n{conduits}"
        );
        compile(&parse_policy(&text, Format::Yaml).unwrap_or_else(|e| panic!("{e}"))).unwrap()
    }

    fn path() -> ManagementPath {
        ManagementPath {
            source: "10.99.0.0/24".parse().unwrap(),
            api: "10.0.0.1:8443".parse().unwrap(),
        }
    }

    const ADMIN: &str = "    - {name: admin, from: [mgmt], to: [appliance], services: [{proto: tcp, ports: [8443]}]}\n";

    #[test]
    fn allowed_path_passes() {
        path().check(&compiled(ADMIN)).unwrap();
    }

    #[test]
    fn default_deny_cuts_the_path() {
        let c = compiled(
            "    - {name: ssh, from: [mgmt], to: [appliance], services: [{proto: tcp, ports: [22]}]}\n",
        );
        let err = path().check(&c).unwrap_err();
        assert!(err.contains("default deny"), "{err}");
    }

    #[test]
    fn a_deny_of_one_host_and_two_source_ports_is_found() {
        let deny = "    - {name: block-one, action: deny, from: [bad], to: [any], services: [{proto: tcp, sourcePorts: [\"40000-40001\"]}]}\n";
        let err = path()
            .check(&compiled(&format!("{deny}{ADMIN}")))
            .unwrap_err();
        assert!(
            err.starts_with("10.99.0.77:40000 -> 10.0.0.1:8443"),
            "{err}"
        );
        assert!(err.contains("conduit block-one"), "{err}");
    }

    #[test]
    fn monitor_mode_denies_do_not_cut_the_path() {
        let deny = "    - {name: block-one, action: deny, mode: monitor, from: [bad], to: [any], services: [{proto: any}]}\n";
        path().check(&compiled(&format!("{deny}{ADMIN}"))).unwrap();
    }
}
