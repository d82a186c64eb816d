//! The nesting limit on JSON from clients.
//!
//! `data` is relayed verbatim, so a message nested 32,000 levels deep would
//! pass through wsring untouched and crash the recipients' JSON parsers (many
//! recurse). Such input is refused up front with `bad_request`. The check is
//! one linear pass over the bytes with no allocation, run before parsing, so
//! it also bounds what the parser itself has to do.

/// Deepest nesting of arrays and objects accepted in a client frame or an
/// API body, counting the frame's own object as level 1.
pub const MAX_JSON_DEPTH: usize = 64;

/// `Err(depth)` if `json` nests arrays/objects deeper than `max` (strings,
/// including escaped quotes inside them, are skipped). Malformed JSON is not
/// diagnosed here; the parser does that.
pub fn check_depth(json: &[u8], max: usize) -> Result<(), usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(depth);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nested(n: usize) -> String {
        format!("{}{}", "[".repeat(n), "]".repeat(n))
    }

    #[test]
    fn counts_arrays_and_objects() {
        assert_eq!(check_depth(br#"{"a":[1,{"b":2}]}"#, 3), Ok(()));
        assert_eq!(check_depth(br#"{"a":[1,{"b":2}]}"#, 2), Err(3));
        assert_eq!(check_depth(nested(64).as_bytes(), 64), Ok(()));
        assert_eq!(check_depth(nested(65).as_bytes(), 64), Err(65));
        assert!(check_depth(nested(32_000).as_bytes(), MAX_JSON_DEPTH).is_err());
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let s = format!(r#"{{"data":"{}","q":"\"[[["}}"#, "[".repeat(1000));
        assert_eq!(check_depth(s.as_bytes(), 1), Ok(()));
    }

    /// Reference: the depth serde_json sees when it parses.
    fn parsed_depth(v: &serde_json::Value) -> usize {
        match v {
            serde_json::Value::Array(a) => 1 + a.iter().map(parsed_depth).max().unwrap_or(0),
            serde_json::Value::Object(o) => 1 + o.values().map(parsed_depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    proptest! {
        #[test]
        fn agrees_with_the_parser(s in r#"[\[\]{}"\\a:,0-9 ]{0,40}"#) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&s) {
                let d = parsed_depth(&v);
                prop_assert_eq!(check_depth(s.as_bytes(), d), Ok(()));
                if d > 0 {
                    prop_assert!(check_depth(s.as_bytes(), d - 1).is_err());
                }
            }
        }
    }
}
