use std::sync::Arc;

use super::synth::{Scenario, score};
use super::*;
use crate::audit::Actor;
use crate::clock::ManualClock;
use crate::compile::CompiledPolicy;
use crate::history::{FlowVerdict, ObservedFlow, aggregate};
use crate::lifecycle::{CommitOptions, PolicyService, Publisher, ServiceConfig};
use crate::policy::{Format, parse_policy};

const DAY: i64 = 86_400_000;

/// A hospital-like network where the right zones and conduits are known. The `10.8.0.0/24`
/// subnet mixes two roles (web servers and admin workstations) that only behaviour separates.
fn hospital() -> Scenario {
    let mut s = Scenario::default();
    let clients = s.zone("clients", 1, 0, 10, 30);
    let web = s.zone("web", 2, 0, 10, 4);
    let app = s.zone("app", 3, 0, 10, 3);
    let db = s.zone("db", 4, 0, 10, 2);
    let dns = s.zone("dns", 5, 0, 53, 1);
    let plc = s.zone("plc", 6, 0, 10, 5);
    let hmi = s.zone("hmi", 7, 0, 10, 3);
    let portal = s.zone("portal", 8, 0, 10, 4);
    let admins = s.zone("admins", 8, 0, 100, 5);
    s.allow(clients, web, &[(6, 443), (6, 80)], 40);
    s.allow(clients, portal, &[(6, 8443)], 10);
    s.allow(web, app, &[(6, 8080)], 20);
    s.allow(app, db, &[(6, 5432)], 20);
    for z in [clients, web, app, admins] {
        s.allow(z, dns, &[(17, 53)], 5);
    }
    s.allow(hmi, plc, &[(6, 502)], 10);
    s.allow(admins, db, &[(6, 22)], 3);
    s.allow(admins, app, &[(6, 22)], 3);
    s
}

fn opts(from: i64, to: i64) -> RecommendOptions {
    RecommendOptions {
        from_ms: from,
        to_ms: to,
        ..RecommendOptions::default()
    }
}

#[test]
fn recommended_conduits_match_the_generating_policy() {
    let s = hospital();
    let flows = s.flows(30_000, 0, 14 * DAY, 7);
    let rec = recommend(&aggregate(&flows), &opts(0, 14 * DAY));
    let proposed = rec
        .policy(&BTreeSet::new())
        .expect("the proposal validates");
    crate::compile(&proposed).expect("and compiles");
    let generating = parse_policy(&s.policy_yaml("enforce"), Format::Yaml).unwrap();
    let sc = score(&s, &generating, &proposed);
    println!(
        "recommender precision={:.4} recall={:.4} tp={} fp={} fn={} zones={} conduits={}",
        sc.precision,
        sc.recall,
        sc.true_positives,
        sc.false_positives,
        sc.false_negatives,
        rec.zones.len(),
        rec.conduits.len()
    );
    assert!(sc.precision >= 0.99, "{sc:?}");
    assert!(sc.recall >= 0.99, "{sc:?}");
    assert_eq!(rec.coverage_pct, 100.0);
    assert_eq!(rec.observed_flows, 30_000);
    assert!(rec.caveats.is_empty(), "{:?}", rec.caveats);

    // The mixed subnet is split by behaviour, and written as host prefixes.
    let mixed: Vec<&ProposedZone> = rec
        .zones
        .iter()
        .filter(|z| z.subnet.to_string() == "10.8.0.0/24")
        .collect();
    assert_eq!(mixed.len(), 2, "{mixed:#?}");
    assert!(mixed.iter().all(|z| z.prefixes.len() == z.members.len()));
    let portal = mixed.iter().find(|z| z.members.len() == 4).unwrap();
    assert!(portal.name.contains("tcp-8443"), "{}", portal.name);
    // Whole subnets where a subnet holds one group.
    let db = rec
        .zones
        .iter()
        .find(|z| z.subnet.to_string() == "10.4.0.0/24")
        .unwrap();
    assert_eq!(db.prefixes, vec![db.subnet]);
    // Every endpoint has a confidence and a reason; uniform servers are fully typical.
    for e in &rec.endpoints {
        assert!(
            (0.0..=1.0).contains(&e.confidence) && !e.reason.is_empty(),
            "{e:?}"
        );
    }
    assert!(
        rec.endpoints
            .iter()
            .filter(|e| e.zone == db.name)
            .all(|e| e.confidence == 1.0)
    );
    // Each conduit lists what it covers; coverage adds up.
    let sum: u64 = rec.conduits.iter().map(|c| c.flows).sum();
    assert_eq!(sum, rec.covered_flows);
    assert!(
        rec.conduits
            .iter()
            .all(|c| !c.examples.is_empty() && c.coverage_pct > 0.0)
    );
}

#[test]
fn recommendations_are_deterministic_whatever_the_input_order() {
    let s = hospital();
    let mut flows = s.flows(5_000, 0, 10 * DAY, 3);
    let a = recommend(&aggregate(&flows), &opts(0, 10 * DAY));
    flows.reverse();
    let mut aggs = aggregate(&flows);
    aggs.reverse();
    let b = recommend(&aggs, &opts(0, 10 * DAY));
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
    assert_eq!(
        a.policy(&BTreeSet::new()).unwrap().canonical_json(),
        b.policy(&BTreeSet::new()).unwrap().canonical_json()
    );
}

#[test]
fn a_short_window_and_uncoverable_traffic_get_caveats() {
    let s = hospital();
    let mut flows = s.flows(2_000, 0, DAY, 5);
    let mut gre = flows[0].clone();
    gre.proto = 47;
    gre.dport = 0;
    let mut denied = flows[1].clone();
    denied.dst = "10.9.9.9".parse().unwrap();
    denied.verdict = FlowVerdict::Denied;
    flows.push(gre);
    flows.push(denied);
    let rec = recommend(&aggregate(&flows), &opts(0, DAY));
    assert!(
        rec.caveats.iter().any(|c| c.contains("periodic flows")),
        "{:?}",
        rec.caveats
    );
    assert!(rec.caveats.iter().any(|c| c.contains("IP protocol 47")));
    assert!(
        rec.caveats
            .iter()
            .any(|c| c.contains("denied in enforce mode"))
    );
    assert_eq!(rec.excluded_denied, 1);
    assert_eq!(rec.observed_flows, 2_001);
    assert_eq!(rec.covered_flows, 2_000);
    assert!(rec.coverage_pct < 100.0);
    assert!(
        !rec.endpoints
            .iter()
            .any(|e| e.address.to_string() == "10.9.9.9")
    );
}

#[test]
fn labelled_endpoints_are_grouped_by_their_labels() {
    let mut s = Scenario::default();
    let a = s.zone("a", 1, 0, 10, 4);
    let b = s.zone("b", 2, 0, 10, 2);
    s.allow(a, b, &[(6, 502)], 1);
    let flows = s.flows(500, 0, 10 * DAY, 1);
    let mut o = opts(0, 10 * DAY);
    for (i, h) in s.zones[b].hosts.iter().enumerate() {
        let role = if i == 0 { "plc" } else { "rtu" };
        o.labels
            .insert(*h, BTreeMap::from([("role".to_owned(), role.to_owned())]));
    }
    let rec = recommend(&aggregate(&flows), &o);
    let labelled: Vec<&ProposedZone> = rec
        .zones
        .iter()
        .filter(|z| z.reason.contains("labels"))
        .collect();
    assert_eq!(labelled.len(), 2);
    assert!(labelled.iter().any(|z| z.name.ends_with("role-plc")));
    assert_eq!(rec.conduits.len(), 2, "one conduit per destination zone");
}

#[test]
fn endpoints_the_running_policy_places_keep_their_zone_with_the_reason() {
    let s = hospital();
    let flows = s.flows(20_000, 0, 14 * DAY, 3);
    let running = parse_policy(
        "apiVersion: septa.io/v1
kind: Policy
metadata: {name: running}
spec:
  endpoints:
    - {name: plc-a, address: 10.6.0.10, labels: {role: plc}}
  zones:
    - {name: campus, subnets: [10.0.0.0/8]}
    - {name: ward-pcs, subnets: [10.1.0.0/24]}
    - name: plc-cell
      selector: {matchLabels: {role: plc}}
",
        Format::Yaml,
    )
    .unwrap();
    let mut o = opts(0, 14 * DAY);
    o.known = Some(KnownZones::from_policy(&running));
    o.labels = KnownZones::labels(&running);
    let rec = recommend(&aggregate(&flows), &o);
    let of = |a: &str| {
        rec.endpoints
            .iter()
            .find(|e| e.address.to_string() == a)
            .unwrap_or_else(|| panic!("{a} not assigned"))
    };
    // The most specific running zone wins: a /24 over the /8, a labelled endpoint's /32.
    let pc = of("10.1.0.10");
    assert_eq!((pc.zone.as_str(), pc.confidence), ("ward-pcs", 1.0));
    assert_eq!(
        pc.reason,
        "kept in zone ward-pcs of the running policy (prefix 10.1.0.0/24)"
    );
    let plc = of("10.6.0.10");
    assert_eq!(plc.zone, "plc-cell");
    assert_eq!(
        plc.reason,
        "kept in zone plc-cell of the running policy (prefix 10.6.0.10/32; endpoint plc-a, labels role=plc)"
    );
    // Everything else is inside campus: kept there too, one zone, written as it runs.
    assert!(
        rec.endpoints.iter().all(|e| e.confidence == 1.0),
        "all placed"
    );
    let names: BTreeSet<&str> = rec.zones.iter().map(|z| z.name.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["campus", "plc-cell", "ward-pcs"]));
    let ward = rec.zones.iter().find(|z| z.name == "ward-pcs").unwrap();
    assert_eq!(ward.prefixes, vec!["10.1.0.0/24".parse::<IpNet>().unwrap()]);
    assert!(
        ward.reason.contains("of the running policy"),
        "{}",
        ward.reason
    );
    // Conduits run between the kept zones, and the proposal validates and compiles.
    assert!(
        rec.conduits
            .iter()
            .any(|c| c.from == "ward-pcs" && c.to == "campus"),
        "{:?}",
        rec.conduits
            .iter()
            .map(|c| (&c.from, &c.to))
            .collect::<Vec<_>>()
    );
    let proposed = rec
        .policy(&BTreeSet::new())
        .expect("the proposal validates");
    crate::compile(&proposed).expect("and compiles");

    // Without the running policy the same traffic is grouped from scratch.
    let fresh = recommend(&aggregate(&flows), &opts(0, 14 * DAY));
    assert!(fresh.zones.iter().all(|z| z.name != "ward-pcs"));
}

#[test]
fn unplaced_endpoints_are_still_grouped_and_never_take_a_running_zone_name() {
    let s = hospital();
    let flows = s.flows(20_000, 0, 14 * DAY, 5);
    let web_zone = |r: &Recommendation| {
        r.endpoints
            .iter()
            .find(|e| e.address.to_string() == "10.2.0.10")
            .unwrap()
            .clone()
    };
    // The name the web servers get from scratch, given to a running zone elsewhere.
    let fresh = web_zone(&recommend(&aggregate(&flows), &opts(0, 14 * DAY))).zone;
    let running = parse_policy(
        &format!(
            "apiVersion: septa.io/v1
kind: Policy
metadata: {{name: running}}
spec:
  zones:
    - {{name: {fresh}, subnets: [10.200.0.0/24]}}
    - {{name: plcs, subnets: [10.6.0.0/24]}}
"
        ),
        Format::Yaml,
    )
    .unwrap();
    let mut o = opts(0, 14 * DAY);
    o.known = Some(KnownZones::from_policy(&running));
    let rec = recommend(&aggregate(&flows), &o);
    let web = web_zone(&rec);
    assert_ne!(web.zone, fresh, "a running zone's name is taken");
    assert!(!web.reason.contains("running policy"), "{}", web.reason);
    assert!(rec.zones.iter().any(|z| z.name == "plcs"));
    assert!(
        rec.zones.iter().all(|z| z.name != fresh),
        "the unobserved running zone is not proposed"
    );
    rec.policy(&BTreeSet::new()).expect("validates");
}

struct AcceptAll;
impl Publisher for AcceptAll {
    fn publish(&self, _: Option<&Arc<CompiledPolicy>>) -> Result<(), String> {
        Ok(())
    }
}

#[test]
fn an_edited_proposal_stages_and_the_impact_preview_applies() {
    let s = hospital();
    let flows = s.flows(5_000, 0, 14 * DAY, 11);
    let rec = recommend(&aggregate(&flows), &opts(0, 14 * DAY));
    // The operator rejects one suggestion (the admins' ssh into the database).
    let ssh = rec
        .conduits
        .iter()
        .find(|c| c.services.iter().any(|s| s.ports == vec![22]) && c.to.starts_with("10-4-0-0"))
        .unwrap();
    let rejected = BTreeSet::from([ssh.name.clone()]);
    let doc = rec.document(&rejected);
    assert_eq!(doc.spec.conduits.len(), rec.conduits.len() - 1);
    let text = serde_json::to_string(&doc).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(14 * DAY));
    let mut svc = PolicyService::open(ServiceConfig::new(dir.path()), AcceptAll, clock).unwrap();
    let actor = Actor::user("alice");
    let monitor = "apiVersion: septa.io/v1\nkind: Policy\nmetadata: {name: observe}\nspec:\n  defaults: {mode: monitor}\n  zones: [{name: all, subnets: [10.0.0.0/8]}]\n";
    svc.commit(
        monitor,
        Format::Yaml,
        &actor,
        "observe first",
        CommitOptions::default(),
    )
    .unwrap();
    let staged = svc
        .stage(
            &text,
            Format::Json,
            &actor,
            "recommended from 14 days of flows",
        )
        .unwrap();
    let key = |src: &str, dst: &str, port: u16| {
        septa_classifier::FlowKey::v4(src.parse().unwrap(), dst.parse().unwrap(), 6, 40000, port)
    };
    let preview = svc
        .impact(
            staged.id,
            &[
                key("10.1.0.10", "10.2.0.10", 443),  // observed: becomes allowed
                key("10.8.0.100", "10.4.0.10", 22),  // rejected suggestion: enforced deny
                key("10.1.0.10", "10.4.0.10", 5432), // never observed: enforced deny
            ],
        )
        .unwrap();
    let outcome: Vec<(&str, &str)> = preview
        .iter()
        .map(|(_, then)| (then.action, then.mode))
        .collect();
    assert_eq!(
        outcome,
        vec![
            ("allow", "enforce"),
            ("deny", "enforce"),
            ("deny", "enforce")
        ]
    );
}

#[test]
fn history_rows_feed_the_recommender() {
    let s = hospital();
    let flows = s.flows(3_000, 0, 8 * DAY, 2);
    let dir = tempfile::tempdir().unwrap();
    let mut h = crate::history::FlowHistory::open(dir.path(), Default::default()).unwrap();
    for chunk in flows.chunks(500) {
        h.ingest(chunk).unwrap();
    }
    let mut rows = Vec::new();
    h.for_each(0, 8 * DAY, |a| rows.push(a)).unwrap();
    let from_db = recommend(&rows, &opts(0, 8 * DAY));
    let direct = recommend(&aggregate(&flows), &opts(0, 8 * DAY));
    assert_eq!(from_db.conduits, direct.conduits);
    assert_eq!(from_db.endpoints, direct.endpoints);
    let _: &ObservedFlow = &flows[0];
}

#[test]
fn precision_and_recall_by_observation_size() {
    let s = hospital();
    let generating = parse_policy(&s.policy_yaml("enforce"), Format::Yaml).unwrap();
    let mut last_recall = 0.0;
    for n in [100, 300, 1_000, 30_000] {
        let flows = s.flows(n, 0, 14 * DAY, 21);
        let rec = recommend(&aggregate(&flows), &opts(0, 14 * DAY));
        let sc = score(&s, &generating, &rec.policy(&BTreeSet::new()).unwrap());
        println!(
            "flows={n} precision={:.4} recall={:.4} conduits={}",
            sc.precision,
            sc.recall,
            rec.conduits.len()
        );
        assert!(sc.precision >= 0.9, "flows={n}: {sc:?}");
        assert!(sc.recall >= last_recall - 0.05, "flows={n}: {sc:?}");
        last_recall = sc.recall;
    }
    assert_eq!(last_recall, 1.0);
}
