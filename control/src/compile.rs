//! The policy compiler: [`ValidatedPolicy`] → ordered classifier [`Rule`]s, a source map from
//! every rule back to the policy clause it came from, and the classifier's [`RuleTable`].
//!
//! Output is zone-shaped: for each conduit, each (from, to) zone pair, each service and each
//! address family, one rule per port combination whose source and destination are the zones'
//! prefix sets. Rule order is the precedence of [`crate::policy`]: denies, allows, zone
//! defaults, the default deny (an explicit catch-all rule, so every decision names a clause).
//!
//! A service with an `l7:` constraint compiles to [`Action::Inspect`] whose [`HookId`] indexes
//! [`CompiledPolicy::l7_constraints`]: one compiled function-code conduit per (conduit, service),
//! numbered densely from 0 in rule order, shared by every zone pair and address family of that
//! service. The worker checks inspected flows' messages against that list (docs/l7.md).
//!
//! Pure and deterministic: no I/O, no clock, no hash-order dependence; the same policy always
//! yields the same rules, ids and clauses. A policy that does not compile changes nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use ipnet::IpNet;
use septa_classifier::{
    Action, AddrMatch, CompileOptions, Family, HookId, Mode, PortRange, Prefix, Rule, RuleId,
    RuleTable, SourceRef,
};

use septa_l7::L7Constraint;

use crate::error::CompileError;
use crate::policy::{ConduitAction, ProtoName, Service, ValidatedPolicy, ZoneRef};

/// Most rules one policy may expand to.
pub const MAX_RULES: usize = 200_000;

/// What a rule's clause is, structurally.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ClauseKind {
    /// `spec.conduits[index].services[service]` for the zone pair `from` → `to`.
    Conduit {
        /// Conduit name.
        name: String,
        /// Position in `spec.conduits`.
        index: usize,
        /// Position in the conduit's `services`.
        service: usize,
        /// Source zone name.
        from: String,
        /// Destination zone name.
        to: String,
    },
    /// The default deny of flows from or to a zone whose mode differs from `defaults.mode`.
    ZoneDefault {
        /// Zone name.
        zone: String,
    },
    /// The final default deny.
    Default,
}

/// A policy clause, as a decision explains it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Clause {
    /// `metadata.name` of the policy.
    pub policy: String,
    /// Which clause.
    #[serde(flatten)]
    pub kind: ClauseKind,
    /// Field path of the clause in the document (e.g. `spec.conduits[3].services[0]`).
    pub path: String,
    /// One-line human-readable rendering.
    pub text: String,
}

impl fmt::Display for Clause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}: {})", self.text, self.policy, self.path)
    }
}

/// A compiled policy: what the data plane runs and what decisions are explained with.
#[derive(Debug)]
pub struct CompiledPolicy {
    rules: Vec<Rule>,
    clauses: Vec<Clause>,
    table: Arc<RuleTable>,
    l7: Arc<[L7Constraint]>,
}

impl CompiledPolicy {
    /// The ordered rule list (first match wins).
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The classifier table built from [`Self::rules`], shared with the data plane.
    pub fn table(&self) -> &Arc<RuleTable> {
        &self.table
    }

    /// The clause a rule came from.
    pub fn clause_of(&self, id: RuleId) -> Option<&Clause> {
        let rule = self
            .rules
            .get(usize::try_from(id.0).ok()?.checked_sub(1)?)?;
        self.clause_of_source(rule.source)
    }

    /// The clause behind a [`SourceRef`].
    pub fn clause_of_source(&self, s: SourceRef) -> Option<&Clause> {
        self.clauses.get(usize::try_from(s.0).ok()?)
    }

    /// The source map: every rule id with its clause, in rule order.
    pub fn source_map(&self) -> impl Iterator<Item = (RuleId, &Clause)> {
        self.rules
            .iter()
            .filter_map(|r| Some((r.id, self.clause_of_source(r.source)?)))
    }

    /// Every distinct clause, in order of first use.
    pub fn clauses(&self) -> &[Clause] {
        &self.clauses
    }

    /// The function-code conduits, indexed by the [`HookId`] of the rules' inspect actions.
    /// Publish them together with [`Self::table`]: hook ids mean nothing across policies.
    pub fn l7_constraints(&self) -> &Arc<[L7Constraint]> {
        &self.l7
    }

    /// The function-code conduit of an inspect action's hook.
    pub fn l7_constraint(&self, hook: HookId) -> Option<&L7Constraint> {
        self.l7.get(usize::try_from(hook.0).ok()?)
    }
}

/// Compiles a validated policy. Rule ids are 1, 2, ... in rule order.
pub fn compile(policy: &ValidatedPolicy) -> Result<CompiledPolicy, CompileError> {
    let (rules, clauses, l7) = compile_all(policy)?;
    let opts = CompileOptions {
        default_action: Action::Deny,
        default_mode: Mode::Enforce,
        ..Default::default()
    };
    let l7: Arc<[L7Constraint]> = l7.into();
    // The conduits travel inside the table: one publish swaps rules and hooks together.
    let table = septa_classifier::compile_with(&rules, &opts)?.with_l7_constraints(l7.clone());
    Ok(CompiledPolicy {
        rules,
        clauses,
        table: Arc::new(table),
        l7,
    })
}

/// The rule list and clause table, without building the classifier table.
pub fn compile_rules(policy: &ValidatedPolicy) -> Result<(Vec<Rule>, Vec<Clause>), CompileError> {
    compile_all(policy).map(|(rules, clauses, _)| (rules, clauses))
}

type Compiled = (Vec<Rule>, Vec<Clause>, Vec<L7Constraint>);

fn compile_all(policy: &ValidatedPolicy) -> Result<Compiled, CompileError> {
    let mut b = Builder {
        rules: Vec::new(),
        clauses: Vec::new(),
        policy: policy.name().to_owned(),
    };
    let mut l7: Vec<L7Constraint> = Vec::new();
    let mut hooks: BTreeMap<(usize, usize), HookId> = BTreeMap::new();
    // Every zone's prefixes per family, converted once (not once per conduit and service).
    let split = |z: ZoneRef| -> FamilySets {
        let nets = policy.prefixes(z);
        [Family::V4, Family::V6].map(|family| {
            nets.iter()
                .map(to_prefix)
                .filter(|p| p.family == family)
                .collect()
        })
    };
    let zone_sets: Vec<FamilySets> = (0..policy.zones().len())
        .map(|i| split(ZoneRef::Zone(i)))
        .collect();
    let any_sets = split(ZoneRef::Any);
    let sets = |z: ZoneRef| match z {
        ZoneRef::Any => &any_sets,
        ZoneRef::Zone(i) => &zone_sets[i],
    };
    for pass in [ConduitAction::Deny, ConduitAction::Allow] {
        for c in policy.conduits().iter().filter(|c| c.action == pass) {
            for &f in &c.from {
                for &t in &c.to {
                    let mode = policy.pair_mode(c, f, t);
                    for (si, s) in c.services.iter().enumerate() {
                        let (fname, tname) = (policy.zone_name(f), policy.zone_name(t));
                        let kind = ClauseKind::Conduit {
                            name: c.name.clone(),
                            index: c.index,
                            service: si,
                            from: fname.to_owned(),
                            to: tname.to_owned(),
                        };
                        let text = format!(
                            "conduit {} ({}) {fname} -> {tname}: {}{}",
                            c.name,
                            action_word(c.action),
                            service_text(s),
                            mode_suffix(mode),
                        );
                        let path = format!("spec.conduits[{}].services[{si}]", c.index);
                        let src = ClauseId(b.clause(kind, path, text));
                        let action = match (c.action, &s.l7) {
                            (ConduitAction::Deny, _) => Action::Deny,
                            (ConduitAction::Allow, None) => Action::Allow,
                            (ConduitAction::Allow, Some(rule)) => {
                                let next = HookId(u32::try_from(l7.len()).unwrap_or(u32::MAX));
                                let hook = *hooks.entry((c.index, si)).or_insert(next);
                                if hook == next {
                                    l7.push(rule.constraint.clone());
                                }
                                Action::Inspect(hook)
                            }
                        };
                        b.conduit_rules(sets(f), sets(t), s, action, mode, src)?;
                    }
                }
            }
        }
    }
    let default_mode = policy.default_mode();
    let zone_passes = [
        Some(Mode::Monitor),
        (default_mode == Mode::Monitor).then_some(Mode::Enforce),
    ];
    for zmode in zone_passes.into_iter().flatten() {
        for (zi, z) in policy
            .zones()
            .iter()
            .enumerate()
            .filter(|(_, z)| z.mode == zmode)
        {
            let text = format!("default deny for zone {}{}", z.name, mode_suffix(zmode));
            let kind = ClauseKind::ZoneDefault {
                zone: z.name.clone(),
            };
            let src = ClauseId(b.clause(kind, format!("spec.zones[{zi}].mode"), text));
            let set = AddrMatch::Prefixes(z.prefixes.iter().map(to_prefix).collect());
            b.push(
                Rule {
                    src: set.clone(),
                    action: Action::Deny,
                    mode: zmode,
                    ..Rule::default()
                },
                src,
            )?;
            b.push(
                Rule {
                    dst: set,
                    action: Action::Deny,
                    mode: zmode,
                    ..Rule::default()
                },
                src,
            )?;
        }
    }
    let text = format!("default deny{}", mode_suffix(default_mode));
    let src = ClauseId(b.clause(ClauseKind::Default, "spec.defaults".into(), text));
    b.push(
        Rule {
            action: Action::Deny,
            mode: default_mode,
            ..Rule::default()
        },
        src,
    )?;
    Ok((b.rules, b.clauses, l7))
}

#[derive(Clone, Copy)]
struct ClauseId(u32);

/// A zone's prefixes split by family: `[IPv4, IPv6]`.
type FamilySets = [Vec<Prefix>; 2];

struct Builder {
    rules: Vec<Rule>,
    clauses: Vec<Clause>,
    policy: String,
}

impl Builder {
    fn clause(&mut self, kind: ClauseKind, path: String, text: String) -> u32 {
        self.clauses.push(Clause {
            policy: self.policy.clone(),
            kind,
            path,
            text,
        });
        // Bounded by MAX_RULES (every clause yields at least one rule or none at all).
        u32::try_from(self.clauses.len() - 1).unwrap_or(u32::MAX)
    }

    fn push(&mut self, mut rule: Rule, src: ClauseId) -> Result<(), CompileError> {
        if self.rules.len() >= MAX_RULES {
            return Err(CompileError::TooManyRules { limit: MAX_RULES });
        }
        rule.id = RuleId(u32::try_from(self.rules.len() + 1).unwrap_or(u32::MAX));
        rule.source = SourceRef(u64::from(src.0));
        self.rules.push(rule);
        Ok(())
    }

    fn conduit_rules(
        &mut self,
        from: &FamilySets,
        to: &FamilySets,
        s: &Service,
        action: Action,
        mode: Mode,
        src: ClauseId,
    ) -> Result<(), CompileError> {
        for (fi, family) in [Family::V4, Family::V6].into_iter().enumerate() {
            let (sp, dp) = (&from[fi], &to[fi]);
            if sp.is_empty() || dp.is_empty() {
                continue;
            }
            let (proto, sports, dports): (Option<u8>, Vec<PortRange>, Vec<PortRange>) =
                match s.proto {
                    ProtoName::Tcp | ProtoName::Udp => (
                        Some(if s.proto == ProtoName::Tcp { 6 } else { 17 }),
                        or_any(&s.source_ports),
                        or_any(&s.ports),
                    ),
                    ProtoName::Icmp => (
                        Some(if family == Family::V4 { 1 } else { 58 }),
                        or_any(
                            &s.icmp_types
                                .iter()
                                .map(|&t| PortRange::exact(u16::from(t)))
                                .collect::<Vec<_>>(),
                        ),
                        vec![PortRange::ANY],
                    ),
                    ProtoName::Any => (None, vec![PortRange::ANY], vec![PortRange::ANY]),
                };
            for &dport in &dports {
                for &sport in &sports {
                    let rule = Rule {
                        src: AddrMatch::Prefixes(sp.clone()),
                        dst: AddrMatch::Prefixes(dp.clone()),
                        sport,
                        dport,
                        proto,
                        action,
                        mode,
                        ..Rule::default()
                    };
                    self.push(rule, src)?;
                }
            }
        }
        Ok(())
    }
}

fn or_any(r: &[PortRange]) -> Vec<PortRange> {
    if r.is_empty() {
        vec![PortRange::ANY]
    } else {
        r.to_vec()
    }
}

/// An `ipnet` prefix in the classifier's convention (IPv4 in the low 32 bits).
pub(crate) fn to_prefix(n: &IpNet) -> Prefix {
    match n {
        IpNet::V4(v) => Prefix::v4(v.network(), v.prefix_len()),
        IpNet::V6(v) => Prefix::v6(v.network(), v.prefix_len()),
    }
}

fn action_word(a: ConduitAction) -> &'static str {
    match a {
        ConduitAction::Allow => "allow",
        ConduitAction::Deny => "deny",
    }
}

fn mode_suffix(m: Mode) -> &'static str {
    match m {
        Mode::Enforce => "",
        Mode::Monitor => " [monitor]",
    }
}

fn ranges_text(r: &[PortRange]) -> String {
    r.iter()
        .map(|p| {
            if p.lo == p.hi {
                p.lo.to_string()
            } else {
                format!("{}-{}", p.lo, p.hi)
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `tcp/443,8000-8080 from ports 1024-65535 l7 {...}` style rendering of a service.
pub(crate) fn service_text(s: &Service) -> String {
    let mut t = match s.proto {
        ProtoName::Tcp => "tcp".to_owned(),
        ProtoName::Udp => "udp".to_owned(),
        ProtoName::Icmp => "icmp".to_owned(),
        ProtoName::Any => "any protocol".to_owned(),
    };
    if !s.ports.is_empty() {
        t.push('/');
        t.push_str(&ranges_text(&s.ports));
    }
    if !s.source_ports.is_empty() {
        t.push_str(" from ports ");
        t.push_str(&ranges_text(&s.source_ports));
    }
    if !s.icmp_types.is_empty() {
        let types: Vec<String> = s.icmp_types.iter().map(u8::to_string).collect();
        t.push_str(" types ");
        t.push_str(&types.join(","));
    }
    if let Some(l7) = &s.l7 {
        t.push_str(" l7 ");
        t.push_str(&l7.spec.to_string());
    }
    t
}
