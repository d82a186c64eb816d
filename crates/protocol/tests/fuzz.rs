//! Property-based fuzzing of every parser that reads untrusted bytes: the
//! client frame parser, the connect query, and the inter-node envelope.
//! Each property feeds both arbitrary input and input shaped like the real
//! thing (so the deeper paths are reached), and requires that parsing never
//! panics and that whatever parses renders back to something that parses to
//! the same value.
//!
//! Runs on stable with proptest (cargo-fuzz needs a nightly toolchain). The
//! default is 256 cases per property; for a longer, bounded run:
//! `PROPTEST_CASES=100000 cargo test -p wsring-protocol --test fuzz --release`.

use bytes::Bytes;
use proptest::prelude::*;
use wsring_protocol::{ClientFrame, ConnectParams, Envelope, query_token};

/// Any JSON value, nested up to `depth` levels.
fn json(depth: u32) -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        ".{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(depth, 256, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z]{0,4}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A frame-shaped JSON object: a real or bogus `type`, and fields that are
/// sometimes right, sometimes of the wrong type, sometimes absent.
fn frame_like() -> impl Strategy<Value = String> {
    let kind = prop_oneof![
        Just("send"),
        Just("join"),
        Just("leave"),
        Just("publish"),
        Just("ping"),
        Just("welcome"),
        Just(""),
        Just("SEND"),
    ];
    let name = prop_oneof![
        "[A-Za-z0-9_.:@-]{1,12}".prop_map(serde_json::Value::from),
        ".{0,200}".prop_map(serde_json::Value::from),
        json(2),
    ];
    let id = prop_oneof![
        Just(serde_json::Value::Null),
        ".{0,140}".prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        json(1),
    ];
    (
        kind,
        prop::option::of(name.clone()),
        prop::option::of(name),
        prop::option::of(json(8)),
        prop::option::of(id),
        prop::option::of(any::<i64>()),
    )
        .prop_map(|(kind, to, room, data, id, resume)| {
            let mut o = serde_json::Map::new();
            o.insert("type".into(), kind.into());
            for (k, v) in [("to", to), ("room", room), ("data", data), ("id", id)] {
                if let Some(v) = v {
                    o.insert(k.into(), v);
                }
            }
            if let Some(r) = resume {
                o.insert("resume".into(), r.into());
            }
            serde_json::Value::Object(o).to_string()
        })
}

/// Checks one client frame: no panic, and a parsed frame survives a round
/// trip through its own rendering.
fn check_frame(text: &str) -> Result<(), TestCaseError> {
    if let Ok(frame) = ClientFrame::parse(text) {
        let rendered = frame.to_json();
        let again = ClientFrame::parse(&rendered).map(|f| f.to_json());
        prop_assert_eq!(again.ok(), Some(rendered), "{}", text);
    }
    Ok(())
}

proptest! {
    #[test]
    fn client_frames_from_arbitrary_text(text in ".{0,300}") {
        check_frame(&text)?;
    }

    #[test]
    fn client_frames_shaped_like_frames(text in frame_like()) {
        check_frame(&text)?;
    }

    #[test]
    fn deeply_nested_data_is_refused_not_overflowed(depth in 60usize..5000) {
        let text = format!(
            r#"{{"type":"send","to":"bob","data":{}{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let parsed = ClientFrame::parse(&text);
        // At most 64 levels in all: the frame object plus 63 in `data`.
        prop_assert_eq!(parsed.is_ok(), depth < 64, "depth {}", depth);
    }

    #[test]
    fn connect_queries(
        query in "([a-z]{0,6}=[A-Za-z0-9%+&=._:@-]{0,20}&?){0,5}",
        authenticated in prop::option::of("[A-Za-z0-9_.:@-]{0,10}"),
    ) {
        let auth = authenticated.as_deref();
        if let Ok(p) = ConnectParams::parse_as(Some(&query), auth) {
            // What a client renders, the server reads back the same.
            let again = ConnectParams::parse_as(Some(&p.to_query()), auth);
            prop_assert_eq!(again.as_ref().ok(), Some(&p));
            prop_assert_eq!(query_token(Some(&p.to_query())), p.token.clone());
        }
    }

    #[test]
    fn connect_queries_from_arbitrary_text(query in ".{0,200}") {
        let _ = ConnectParams::parse(Some(&query));
        let _ = query_token(Some(&query));
    }

    #[test]
    fn envelopes_from_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(e) = Envelope::decode(Bytes::from(bytes)) {
            prop_assert_eq!(Envelope::decode(e.encode()).ok(), Some(e));
        }
    }

    #[test]
    fn envelopes_shaped_like_envelopes(
        target in prop_oneof![
            "[a-z]{0,8}".prop_map(|u| format!(r#"{{"t":"user","user":"{u}""#)),
            "[a-z]{0,8}".prop_map(|r| format!(r#"{{"t":"room","room":"{r}""#)),
            Just(r#"{"t":"all""#.to_owned()),
            Just(r#"{"t":"nobody""#.to_owned()),
        ],
        seq in prop::option::of(any::<i64>()),
        frame in ".{0,100}",
    ) {
        let seq = seq.map(|s| format!(r#","seq":{s},"se":"e1""#)).unwrap_or_default();
        let wire = format!("{target}{seq}}}\n{frame}");
        if let Ok(e) = Envelope::decode(Bytes::from(wire)) {
            prop_assert_eq!(&e.frame[..], frame.as_bytes());
            prop_assert_eq!(Envelope::decode(e.encode()).ok(), Some(e));
        }
    }
}
