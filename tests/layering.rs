//! Layering is enforced here, not by convention (Firecracker's dependency check): the crate map of
//! ARCHITECTURE.md §2 as forbidden edges over the resolved dependency graph with every feature on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// (crate, crates it must never reach through normal dependencies, transitively).
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "septa-control",
        &["septa-dpdk", "dpdk-sys", "septa-dataplane"],
    ),
    (
        "septa-dataplane",
        &[
            "tokio",
            "axum",
            "hyper",
            "tract-onnx",
            "tract-core",
            "septa-control",
            "septa-ml",
        ],
    ),
    (
        "septa-classifier",
        &[
            "tokio",
            "axum",
            "septa-dpdk",
            "dpdk-sys",
            "septa-dataplane",
            "septa-control",
            "septa-ml",
        ],
    ),
    (
        "septa-ml",
        &[
            "septa-dpdk",
            "dpdk-sys",
            "septa-dataplane",
            "septa-control",
            "axum",
            "tokio",
        ],
    ),
    // The feature schema is linked by the data plane: vocabulary only, no dependencies at all
    // (checked below too), so in particular never tract or a runtime.
    (
        "septa-features",
        &[
            "tract-onnx",
            "tract-core",
            "tokio",
            "serde",
            "septa-dataplane",
            "septa-ml",
            "septa-control",
            "septa-dpdk",
            "dpdk-sys",
        ],
    ),
    // The L7 vocabulary (function tables, conduit evaluator) is shared by the compiler and the
    // data plane: it reaches neither of them, nor any runtime.
    (
        "septa-l7",
        &[
            "tokio",
            "tract-onnx",
            "septa-dataplane",
            "septa-control",
            "septa-ml",
            "septa-dpdk",
            "dpdk-sys",
        ],
    ),
    (
        "septa-dpdk",
        &[
            "septa-dataplane",
            "septa-classifier",
            "septa-control",
            "septa-ml",
            "tokio",
        ],
    ),
    (
        "dpdk-sys",
        &[
            "septa-dpdk",
            "septa-dataplane",
            "septa-classifier",
            "septa-control",
            "septa-ml",
        ],
    ),
];

/// Only these may depend on `dpdk-sys` directly: everyone else goes through the safe wrapper.
const DPDK_SYS_USERS: &[&str] = &["septa-dpdk"];

/// `anyhow` belongs to binaries; libraries have typed errors.
const ANYHOW_USERS: &[&str] = &["septa", "septa-bench"];

struct Graph {
    names: BTreeMap<String, String>,
    /// package id -> normal (non-dev, non-build) dependency ids
    edges: BTreeMap<String, Vec<String>>,
    workspace: BTreeSet<String>,
}

fn metadata() -> Graph {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--all-features",
            "--locked",
        ])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let names = v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_owned(),
                p["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let workspace = v["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect();
    let mut edges = BTreeMap::new();
    for node in v["resolve"]["nodes"].as_array().unwrap() {
        let deps = node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kind"].is_null())
            })
            .map(|d| d["pkg"].as_str().unwrap().to_owned())
            .collect();
        edges.insert(node["id"].as_str().unwrap().to_owned(), deps);
    }
    Graph {
        names,
        edges,
        workspace,
    }
}

impl Graph {
    fn id(&self, name: &str) -> &str {
        self.workspace
            .iter()
            .find(|id| self.names[*id] == name)
            .unwrap_or_else(|| panic!("workspace crate {name} not found"))
    }

    /// Every crate reachable from `from`, with the path that reaches it.
    fn reachable(&self, from: &str) -> BTreeMap<String, Vec<String>> {
        let mut seen = BTreeMap::new();
        let mut stack = vec![(from.to_owned(), vec![self.names[from].clone()])];
        while let Some((id, path)) = stack.pop() {
            for dep in &self.edges[&id] {
                let name = self.names[dep].clone();
                if let std::collections::btree_map::Entry::Vacant(slot) = seen.entry(name.clone()) {
                    let mut p = path.clone();
                    p.push(name);
                    slot.insert(p.clone());
                    stack.push((dep.clone(), p));
                }
            }
        }
        seen
    }

    fn direct(&self, id: &str) -> BTreeSet<String> {
        self.edges[id]
            .iter()
            .map(|d| self.names[d].clone())
            .collect()
    }
}

#[test]
fn no_forbidden_dependency_edges() {
    let g = metadata();
    let mut violations = Vec::new();
    for (krate, banned) in FORBIDDEN {
        let reach = g.reachable(g.id(krate));
        for b in *banned {
            if let Some(path) = reach.get(*b) {
                violations.push(format!(
                    "{krate} must not depend on {b}: {}",
                    path.join(" -> ")
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layering violations:\n{}",
        violations.join("\n")
    );
}

#[test]
fn only_the_safe_wrapper_links_dpdk_sys_directly() {
    let g = metadata();
    for id in &g.workspace {
        let name = &g.names[id];
        if g.direct(id).contains("dpdk-sys") {
            assert!(
                DPDK_SYS_USERS.contains(&name.as_str()),
                "{name} depends on dpdk-sys directly"
            );
        }
        if g.direct(id).contains("anyhow") {
            assert!(
                ANYHOW_USERS.contains(&name.as_str()),
                "{name} is a library and uses anyhow"
            );
        }
    }
}

#[test]
fn every_crate_outside_dpdk_build_forbids_unsafe() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(root.join("Cargo.toml")).unwrap()).unwrap();
    assert_eq!(
        manifest["workspace"]["lints"]["rust"]["unsafe_code"].as_str(),
        Some("forbid"),
        "[workspace.lints.rust] unsafe_code must be forbid"
    );
    let members = manifest["workspace"]["members"].as_array().unwrap();
    for m in members {
        let dir = m.as_str().unwrap();
        let text = std::fs::read_to_string(root.join(dir).join("Cargo.toml")).unwrap();
        let pkg: toml::Table = toml::from_str(&text).unwrap();
        let inherits = pkg
            .get("lints")
            .and_then(|l| l.get("workspace"))
            .and_then(|w| w.as_bool())
            .unwrap_or(false);
        if dir.starts_with("dpdk-build/") {
            let clippy = &pkg["lints"]["clippy"];
            assert_eq!(
                clippy["undocumented_unsafe_blocks"].as_str(),
                Some("deny"),
                "{dir}"
            );
        } else {
            assert!(
                inherits,
                "{dir}/Cargo.toml must have `[lints] workspace = true`"
            );
        }
    }
}

/// The feature schema crate is linked by the data plane: its only dependency is `rtrb` (the
/// workers' sample rings), which has no dependency of its own, so nothing with a runtime, I/O or
/// allocation behind the workers' backs comes in through it.
#[test]
fn the_feature_schema_crate_depends_on_the_ring_crate_alone() {
    let g = metadata();
    let id = g.id("septa-features");
    let deps = g.direct(id);
    assert_eq!(
        deps,
        BTreeSet::from(["rtrb".to_owned()]),
        "septa-features is linked by the data plane and may depend on rtrb alone"
    );
    let reach: BTreeSet<String> = g.reachable(id).into_keys().collect();
    assert_eq!(
        reach,
        BTreeSet::from(["rtrb".to_owned()]),
        "rtrb must stay dependency-free"
    );
}
