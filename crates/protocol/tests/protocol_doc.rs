//! `docs/PROTOCOL.md` is the contract; this test keeps it honest. Every
//! frame example in the document is parsed with the protocol types and must
//! serialise back to exactly the same text, and every frame type the types
//! define must have at least one example, so a new frame cannot ship
//! undocumented and a documented frame cannot drift from the code.
//!
//! The document marks its examples with the code block's info string:
//! `json server` (frames the server sends, one per line), `json client`
//! (frames a client sends) and `json http` (HTTP bodies, not frames). A JSON
//! block without one of these roles, or a frame written outside such a
//! block, fails the test: nothing frame-shaped escapes checking.
//! `clients/js/test/protocol.test.mjs` reads the same blocks for the JS client.

use std::collections::BTreeSet;

use serde_json::Value;
use wsring_protocol::{ClientFrame, OwnedServerFrame, close};

const DOC: &str = include_str!("../../../docs/PROTOCOL.md");

/// What a marked code block holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Server,
    Client,
    Http,
}

/// One example line: its role, its line number in the document, its text.
struct Example {
    role: Role,
    line: usize,
    text: &'static str,
}

/// Every non-empty line inside a marked JSON block, plus every line outside
/// code blocks (returned separately, for the "no stray frames" rule).
fn extract(doc: &'static str) -> (Vec<Example>, Vec<(usize, &'static str)>) {
    let mut examples = Vec::new();
    let mut prose = Vec::new();
    // `Some(role)` inside a marked block, `Some(None)` inside another block.
    let mut block: Option<Option<Role>> = None;
    for (i, line) in doc.lines().enumerate() {
        let n = i + 1;
        if let Some(info) = line.trim_start().strip_prefix("```") {
            block = match block {
                Some(_) => None,
                None => {
                    let mut words = info.split_whitespace();
                    let role = match (words.next(), words.next()) {
                        (Some("json"), Some("server")) => Some(Role::Server),
                        (Some("json"), Some("client")) => Some(Role::Client),
                        (Some("json"), Some("http")) => Some(Role::Http),
                        (Some("json"), other) => panic!(
                            "PROTOCOL.md:{n}: a json block needs a role (server, client or http), got {other:?}"
                        ),
                        _ => None,
                    };
                    Some(role)
                }
            };
            continue;
        }
        match block {
            Some(Some(role)) if !line.trim().is_empty() => examples.push(Example {
                role,
                line: n,
                text: line.trim(),
            }),
            Some(_) => {}
            None => prose.push((n, line)),
        }
    }
    assert!(block.is_none(), "PROTOCOL.md: unterminated code block");
    (examples, prose)
}

fn json(e: &Example) -> Value {
    serde_json::from_str(e.text)
        .unwrap_or_else(|err| panic!("PROTOCOL.md:{}: not JSON ({err}): {}", e.line, e.text))
}

#[test]
fn every_documented_frame_round_trips() {
    let (examples, _) = extract(DOC);
    let mut server = BTreeSet::new();
    let mut client = BTreeSet::new();
    for e in &examples {
        let want = json(e);
        let (kind, back) = match e.role {
            Role::Http => continue,
            Role::Server => {
                let f = OwnedServerFrame::parse(e.text).unwrap_or_else(|err| {
                    panic!(
                        "PROTOCOL.md:{}: not a server frame ({err}): {}",
                        e.line, e.text
                    )
                });
                server.insert(f.kind());
                (f.kind(), f.to_json())
            }
            Role::Client => {
                let f = ClientFrame::parse(e.text).unwrap_or_else(|err| {
                    panic!(
                        "PROTOCOL.md:{}: not a client frame ({err}): {}",
                        e.line, e.text
                    )
                });
                // The serde entry point agrees with the node's.
                let via_serde: ClientFrame = serde_json::from_str(e.text).expect("Deserialize");
                assert_eq!(via_serde.to_json(), f.to_json(), "PROTOCOL.md:{}", e.line);
                client.insert(f.kind());
                (f.kind(), f.to_json())
            }
        };
        assert_eq!(want["type"], kind, "PROTOCOL.md:{}", e.line);
        let back_value: Value = serde_json::from_str(&back).expect("serialised JSON");
        assert_eq!(
            back_value, want,
            "PROTOCOL.md:{}: JSON value changed",
            e.line
        );
        // The documented text is the wire text: same field order, no spaces.
        assert_eq!(back, e.text, "PROTOCOL.md:{}: wire text differs", e.line);
    }
    assert_eq!(
        server,
        BTreeSet::from(OwnedServerFrame::TYPES),
        "server frame types with an example in PROTOCOL.md vs. the types the protocol crate defines"
    );
    assert_eq!(
        client,
        BTreeSet::from(ClientFrame::TYPES),
        "client frame types with an example in PROTOCOL.md vs. the types the protocol crate defines"
    );
}

#[test]
fn no_frame_outside_a_marked_block() {
    let (_, prose) = extract(DOC);
    for (n, line) in prose {
        assert!(
            !line.contains(r#"{"type":"#),
            "PROTOCOL.md:{n}: a frame outside a `json server`/`json client` block is not checked: {line}"
        );
    }
}

#[test]
fn http_examples_are_json_and_not_frames() {
    let (examples, _) = extract(DOC);
    let http: Vec<_> = examples.iter().filter(|e| e.role == Role::Http).collect();
    assert!(!http.is_empty());
    for e in http {
        assert!(
            json(e).get("type").is_none(),
            "PROTOCOL.md:{}: a frame in a `json http` block",
            e.line
        );
    }
}

#[test]
fn every_close_code_is_documented() {
    for (code, reason) in [
        (close::SERVICE_RESTART, Some(close::REASON_MOVED)),
        (close::POLICY_VIOLATION, Some(close::REASON_SLOW)),
        (close::MESSAGE_TOO_BIG, None),
        (close::INVALID_PAYLOAD, None),
        (close::TRY_AGAIN_LATER, None),
        (close::GOING_AWAY, None),
        (close::DISCONNECTED, Some(close::REASON_DISCONNECTED)),
    ] {
        let row = DOC.lines().find(|l| {
            l.starts_with(&format!("| {code} |"))
                && reason.is_none_or(|r| l.contains(&format!("`{r}`")))
        });
        assert!(
            row.is_some(),
            "close code {code} ({reason:?}) has no row in PROTOCOL.md"
        );
    }
}
