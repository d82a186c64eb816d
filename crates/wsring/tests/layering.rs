//! The crate graph is a design decision, so it is tested: every workspace
//! crate has a place in the layering below, and no crate depends (normally,
//! for tests or for builds) on a workspace crate its layer must not see.
//! `docs/ARCHITECTURE.md` draws the same graph.
//!
//! The graph comes from `cargo metadata --no-deps`, which lists each
//! package's declared dependencies without resolving anything.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// One crate's place: the workspace crates it may depend on, and those it
/// must never depend on with the reason (the message a violation prints).
struct Rule {
    krate: &'static str,
    may: &'static [&'static str],
    never: &'static [(&'static str, &'static str)],
}

const PROTOCOL: &str = "wsring-protocol";
const RING: &str = "wsring-ring";
const CLUSTER: &str = "wsring-cluster";
const REDIS: &str = "wsring-cluster-redis";
const NATS: &str = "wsring-cluster-nats";
const AMQP: &str = "wsring-cluster-amqp";
const TESTKIT: &str = "wsring-cluster-testkit";
const HTTP: &str = "wsring-http";
const AUTH: &str = "wsring-auth";
const NODE: &str = "wsring-node";
const GATEWAY: &str = "wsring-gateway";
const CLIENT: &str = "wsring-client";
const BENCH: &str = "wsring-bench";
const HOOKS: &str = "wsring-hooks";
const DEFLATE: &str = "wsring-deflate";
const BINARY: &str = "wsring";

const LEAF: &str = "wire types and the ring are leaves: every other crate builds on them";
const CORE: &str =
    "the cluster core is backend-neutral and knows nothing of HTTP or the roles above it";
const BACKEND: &str = "a backend implements the cluster traits and nothing else";
const PLUMBING: &str = "wsring-http is role-neutral plumbing, beneath both node and gateway";
const POLICY: &str =
    "wsring-auth is policy over the wire types: the roles call it, it calls nothing of theirs";
const SIBLINGS: &str =
    "gateway and node are siblings; what both need belongs in protocol, cluster or http";
const HOOKS_LEAF: &str =
    "wsring-hooks only carries requests to the application; the roles decide what to send";
const DEFLATE_LEAF: &str = "wsring-deflate is the extension's mechanics, shared by node and client: it knows no wsring type";
const SDK: &str =
    "the client SDK and the bench speak only the wire protocol, like any external client";

const TEST_ONLY: &str = "wsring-cluster-testkit is test code: a dev-dependency of the cluster core, \
     the backends and the binary's tests, never compiled into a production crate";

/// The crates that may take the test kit, and only as a dev-dependency.
const TESTKIT_USERS: &[&str] = &[CLUSTER, REDIS, NATS, AMQP, BINARY];

const ALL_BACKENDS: [(&str, &str); 3] = [(REDIS, BACKEND), (NATS, BACKEND), (AMQP, BACKEND)];

const RULES: &[Rule] = &[
    Rule {
        krate: PROTOCOL,
        may: &[],
        never: &[
            (RING, LEAF),
            (CLUSTER, LEAF),
            (HTTP, LEAF),
            (NODE, LEAF),
            (GATEWAY, LEAF),
        ],
    },
    Rule {
        krate: RING,
        may: &[],
        never: &[
            (PROTOCOL, LEAF),
            (CLUSTER, LEAF),
            (HTTP, LEAF),
            (NODE, LEAF),
            (GATEWAY, LEAF),
        ],
    },
    Rule {
        krate: CLUSTER,
        may: &[PROTOCOL, RING],
        never: &[
            ALL_BACKENDS[0],
            ALL_BACKENDS[1],
            ALL_BACKENDS[2],
            (HTTP, CORE),
            (NODE, CORE),
            (GATEWAY, CORE),
        ],
    },
    Rule {
        krate: REDIS,
        may: &[CLUSTER, PROTOCOL, RING],
        never: &[
            (NATS, BACKEND),
            (AMQP, BACKEND),
            (HTTP, BACKEND),
            (NODE, BACKEND),
            (GATEWAY, BACKEND),
        ],
    },
    Rule {
        krate: NATS,
        may: &[CLUSTER, PROTOCOL, RING],
        never: &[
            (REDIS, BACKEND),
            (AMQP, BACKEND),
            (HTTP, BACKEND),
            (NODE, BACKEND),
            (GATEWAY, BACKEND),
        ],
    },
    Rule {
        krate: AMQP,
        may: &[CLUSTER, PROTOCOL, RING],
        never: &[
            (REDIS, BACKEND),
            (NATS, BACKEND),
            (HTTP, BACKEND),
            (NODE, BACKEND),
            (GATEWAY, BACKEND),
        ],
    },
    Rule {
        // The test kit runs the conformance suite against the core's traits.
        krate: TESTKIT,
        may: &[CLUSTER, PROTOCOL, RING],
        never: &[
            ALL_BACKENDS[0],
            ALL_BACKENDS[1],
            ALL_BACKENDS[2],
            (HTTP, TEST_ONLY),
            (NODE, TEST_ONLY),
            (GATEWAY, TEST_ONLY),
        ],
    },
    Rule {
        krate: HTTP,
        may: &[PROTOCOL, AUTH],
        never: &[
            (CLUSTER, PLUMBING),
            (NODE, PLUMBING),
            (GATEWAY, PLUMBING),
            ALL_BACKENDS[0],
            ALL_BACKENDS[1],
            ALL_BACKENDS[2],
        ],
    },
    Rule {
        krate: AUTH,
        may: &[PROTOCOL],
        never: &[
            (CLUSTER, POLICY),
            (HTTP, POLICY),
            (NODE, POLICY),
            (GATEWAY, POLICY),
            ALL_BACKENDS[0],
            ALL_BACKENDS[1],
            ALL_BACKENDS[2],
        ],
    },
    Rule {
        krate: HOOKS,
        may: &[],
        never: &[
            (PROTOCOL, HOOKS_LEAF),
            (CLUSTER, HOOKS_LEAF),
            (HTTP, HOOKS_LEAF),
            (NODE, HOOKS_LEAF),
            (GATEWAY, HOOKS_LEAF),
            ALL_BACKENDS[0],
            ALL_BACKENDS[1],
            ALL_BACKENDS[2],
        ],
    },
    Rule {
        krate: DEFLATE,
        may: &[],
        never: &[
            (PROTOCOL, DEFLATE_LEAF),
            (CLUSTER, DEFLATE_LEAF),
            (HTTP, DEFLATE_LEAF),
            (NODE, DEFLATE_LEAF),
            (GATEWAY, DEFLATE_LEAF),
            (CLIENT, DEFLATE_LEAF),
        ],
    },
    Rule {
        krate: NODE,
        may: &[PROTOCOL, CLUSTER, HTTP, AUTH, HOOKS, DEFLATE],
        never: &[
            (GATEWAY, SIBLINGS),
            ALL_BACKENDS[0],
            ALL_BACKENDS[1],
            ALL_BACKENDS[2],
        ],
    },
    Rule {
        krate: GATEWAY,
        may: &[PROTOCOL, CLUSTER, HTTP, AUTH, HOOKS],
        never: &[
            (NODE, SIBLINGS),
            ALL_BACKENDS[0],
            ALL_BACKENDS[1],
            ALL_BACKENDS[2],
        ],
    },
    Rule {
        krate: CLIENT,
        may: &[PROTOCOL, DEFLATE],
        never: &[
            (NODE, SDK),
            (GATEWAY, SDK),
            (CLUSTER, SDK),
            (REDIS, SDK),
            (NATS, SDK),
            (AMQP, SDK),
            (HTTP, SDK),
        ],
    },
    Rule {
        krate: BENCH,
        may: &[PROTOCOL, CLIENT],
        never: &[
            (NODE, SDK),
            (GATEWAY, SDK),
            (CLUSTER, SDK),
            (REDIS, SDK),
            (NATS, SDK),
            (AMQP, SDK),
            (HTTP, SDK),
        ],
    },
    Rule {
        // The binary wires everything together.
        krate: BINARY,
        may: &[
            PROTOCOL, RING, CLUSTER, REDIS, NATS, AMQP, HTTP, AUTH, HOOKS, DEFLATE, NODE, GATEWAY,
            CLIENT, BENCH, TESTKIT,
        ],
        never: &[],
    },
];

/// Workspace crate → the workspace crates it declares as dependencies, with
/// the kinds (`normal`, `dev`, `build`) of each edge.
fn workspace_graph() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml");
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .args(["--manifest-path", manifest])
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let names: BTreeSet<String> = packages
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    let mut graph = BTreeMap::new();
    for p in packages {
        let from = p["name"].as_str().expect("package name").to_owned();
        let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for d in p["dependencies"].as_array().expect("dependencies") {
            let to = d["name"].as_str().expect("dependency name");
            // A crate may list itself (with extra features) for its tests.
            if to == from || !names.contains(to) {
                continue;
            }
            let kind = d["kind"].as_str().unwrap_or("normal").to_owned();
            deps.entry(to.to_owned()).or_default().insert(kind);
        }
        graph.insert(from, deps);
    }
    graph
}

fn rule(krate: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.krate == krate)
}

#[test]
fn every_workspace_crate_has_a_place_in_the_layering() {
    let graph = workspace_graph();
    let unplaced: Vec<&String> = graph.keys().filter(|k| rule(k).is_none()).collect();
    assert!(
        unplaced.is_empty(),
        "crates without a layering rule in crates/wsring/tests/layering.rs \
         (add one, and a line in docs/ARCHITECTURE.md): {unplaced:?}"
    );
    let stale: Vec<&str> = RULES
        .iter()
        .map(|r| r.krate)
        .filter(|k| !graph.contains_key(*k))
        .collect();
    assert!(
        stale.is_empty(),
        "rules for crates that no longer exist: {stale:?}"
    );
}

#[test]
fn rules_do_not_contradict_themselves() {
    for r in RULES {
        for (to, _) in r.never {
            assert!(
                !r.may.contains(to),
                "{} lists {to} both as allowed and as forbidden",
                r.krate
            );
        }
    }
}

#[test]
fn no_crate_depends_on_what_its_layer_must_not_see() {
    let graph = workspace_graph();
    let mut violations = Vec::new();
    for (from, deps) in &graph {
        let Some(r) = rule(from) else { continue };
        for (to, kinds) in deps {
            let kinds: Vec<&str> = kinds.iter().map(String::as_str).collect();
            if to == TESTKIT {
                if !TESTKIT_USERS.contains(&from.as_str()) || kinds != ["dev"] {
                    violations.push(format!(
                        "forbidden edge {from} -> {to} ({} dependency): {TEST_ONLY}; \
                         allowed as a dev-dependency of {TESTKIT_USERS:?} only",
                        kinds.join("+")
                    ));
                }
            } else if let Some((_, why)) = r.never.iter().find(|(n, _)| n == to) {
                violations.push(format!(
                    "forbidden edge {from} -> {to} ({} dependency): {why}",
                    kinds.join("+")
                ));
            } else if !r.may.contains(&to.as_str()) {
                violations.push(format!(
                    "forbidden edge {from} -> {to} ({} dependency): not in the layering; \
                     {from} may depend only on {:?}",
                    kinds.join("+"),
                    r.may
                ));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn gateway_and_node_are_siblings() {
    // Spelled out on its own because it is the edge most tempting to add.
    let graph = workspace_graph();
    for (a, b) in [(GATEWAY, NODE), (NODE, GATEWAY)] {
        assert!(
            !graph.get(a).is_some_and(|d| d.contains_key(b)),
            "forbidden edge {a} -> {b}: {SIBLINGS}"
        );
    }
}

#[test]
fn siblings_agree_on_shared_defaults() {
    // The gateway cannot read the node's defaults (it never imports the
    // node), so it restates them from their declarations; this holds the
    // two to the same values.
    let node = wsring_node::NodeConfig::new("n1");
    let gateway = wsring_gateway::GatewayConfig::default();
    assert_eq!(gateway.routing, node.routing, "routing");
    assert_eq!(gateway.durable, node.durable, "durable");
    assert_eq!(
        gateway.max_body_bytes, node.max_message_bytes,
        "largest API body vs largest client message"
    );
}

/// The node's protocol layer sits above its session core: `pusher/` may
/// call the core (sessions, commands, rooms, rosters, routing), but no file
/// of the core or of the native HTTP API imports it. Only the places that
/// plug a protocol in — the router (`lib.rs`) and the session loop
/// (`session/`) — name it.
#[test]
fn the_node_core_does_not_know_the_pusher_protocol() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../node/src");
    let mut checked = 0;
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read crates/node/src") {
            let path = entry.expect("dir entry").path();
            let rel = path.strip_prefix(&src).expect("under src").to_owned();
            let top = rel.components().next().map(|c| c.as_os_str().to_owned());
            if matches!(
                top.as_deref().and_then(|t| t.to_str()),
                Some("pusher" | "session" | "lib.rs")
            ) {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read source");
                for needle in ["crate::pusher", "super::pusher", "mod pusher"] {
                    assert!(
                        !text.contains(needle),
                        "crates/node/src/{} names the Pusher protocol layer (`{needle}`): \
                         the session core must not depend on a protocol",
                        rel.display()
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 20, "the core's files were found ({checked})");
}
