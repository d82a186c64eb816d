//! The guard's UTF-8 verdicts against the standard library's, its frame
//! tracking over every way a byte stream can be split, and its behaviour as
//! a reader.

use super::*;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The index of the first byte at which `bytes` stops being the beginning
/// of valid UTF-8, if any (by the standard library's verdict on each
/// prefix).
fn first_invalid(bytes: &[u8]) -> Option<usize> {
    (0..bytes.len()).find(|&i| {
        std::str::from_utf8(&bytes[..=i])
            .err()
            .is_some_and(|e| e.error_len().is_some())
    })
}

/// Feeds `bytes` one at a time; the index of the byte that was refused.
fn refused_at(bytes: &[u8]) -> Option<usize> {
    let mut s = Utf8Stream::default();
    bytes.iter().position(|b| !s.feed(std::slice::from_ref(b)))
}

#[test]
fn utf8_fails_on_the_first_impossible_byte() {
    // κόσμε, then a UTF-16 surrogate (ED A0 80): refused at A0 (Autobahn 6.4.1).
    let mut bytes = "κόσμε".as_bytes().to_vec();
    let bad = bytes.len() + 1;
    bytes.extend_from_slice(b"\xed\xa0\x80edited");
    assert_eq!(refused_at(&bytes), Some(bad));
    // A code point above U+10FFFF: F4 90 is already impossible.
    assert_eq!(refused_at(b"a\xf4\x90\x80\x80"), Some(2));
    // Overlong encodings.
    assert_eq!(refused_at(b"\xc0\xaf"), Some(0));
    assert_eq!(refused_at(b"\xe0\x80\xaf"), Some(1));
    // A stray continuation byte, a lone lead byte before ASCII.
    assert_eq!(refused_at(b"ab\x80"), Some(2));
    assert_eq!(refused_at(b"\xe2\x82a"), Some(2));
    // Valid text in any pieces, the largest code point included.
    let good = "hello-µ@ßöäüàá-UTF-8!! \u{10FFFF} 𝄞".as_bytes();
    assert_eq!(refused_at(good), None);
    // An incomplete character at the end is not (yet) invalid.
    assert_eq!(refused_at(b"ok\xf0\x9f\x98"), None);
}

proptest! {
    #[test]
    fn utf8_agrees_with_std_however_split(
        bytes in proptest::collection::vec(any::<u8>(), 0..64),
        cut in 0usize..64,
    ) {
        let cut = cut.min(bytes.len());
        let mut s = Utf8Stream::default();
        let whole = s.feed(&bytes[..cut]) && s.feed(&bytes[cut..]);
        prop_assert_eq!(whole, first_invalid(&bytes).is_none());
        prop_assert_eq!(refused_at(&bytes), first_invalid(&bytes));
    }

    #[test]
    fn valid_text_passes_however_split(text in ".{0,40}", cut in 0usize..200) {
        let bytes = text.as_bytes();
        let cut = cut.min(bytes.len());
        let mut s = Utf8Stream::default();
        prop_assert!(s.feed(&bytes[..cut]) && s.feed(&bytes[cut..]));
    }
}

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A client frame: masked, with `fin`, `opcode` and `payload`.
pub(crate) fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

fn scanner() -> Scanner {
    Scanner::new(Some(1 << 20))
}

/// Feeds `stream` in two pieces split at `cut`: the offset in the whole
/// stream where the scanner cut it off, if it did.
fn scan_split(stream: &[u8], cut: usize) -> Option<usize> {
    let mut s = scanner();
    match s.feed(&stream[..cut]) {
        Err(at) => Some(at),
        Ok(()) => s.feed(&stream[cut..]).err().map(|at| cut + at),
    }
}

#[test]
fn fragmented_text_with_pings_between_fails_at_the_bad_fragment() {
    // "κόσμε" + surrogate split over three fragments, a ping and a pong in
    // between, after a valid binary message with bytes that are not UTF-8.
    let mut stream = frame(true, 0x2, b"\xff\xfe binary is not checked");
    stream.extend(frame(false, 0x1, "κό".as_bytes()));
    stream.extend(frame(true, 0x9, b"ping"));
    stream.extend(frame(false, 0x0, "σμε\u{0}".as_bytes()));
    stream.extend(frame(true, 0xA, b""));
    let bad_frame = stream.len();
    let bad_byte = bad_frame + 6 + 1; // header, mask, then ED A0
    stream.extend(frame(true, 0x0, b"\xed\xa0\x80edited"));
    for cut in 0..=stream.len() {
        let at = scan_split(&stream, cut).expect("refused");
        // Everything before the bad frame is handed on, nothing from the
        // bad byte on.
        assert!(
            at >= bad_frame && at <= bad_byte,
            "cut {cut}: stopped at {at}, bad frame at {bad_frame}, bad byte at {bad_byte}"
        );
    }
}

#[test]
fn a_character_split_across_fragments_is_valid() {
    let text = "€uro".as_bytes(); // E2 82 AC ...
    let mut stream = frame(false, 0x1, &text[..1]);
    stream.extend(frame(false, 0x0, &text[1..2]));
    stream.extend(frame(true, 0x0, &text[2..]));
    stream.extend(frame(true, 0x1, "next message".as_bytes()));
    for cut in 0..=stream.len() {
        assert_eq!(scan_split(&stream, cut), None, "cut {cut}");
    }
}

#[test]
fn each_message_starts_afresh() {
    // A message that ends inside a character is tungstenite's to refuse
    // (1007 at its end); the next message is checked from its own start.
    let mut stream = frame(true, 0x1, b"ends in \xe2\x82");
    stream.extend(frame(true, 0x1, b"\xacbad start"));
    assert_eq!(scan_split(&stream, stream.len()), Some(stream.len() - 10));
}

#[test]
fn long_headers_and_payloads_are_followed() {
    let big = "ü".repeat(40_000); // 80,000 bytes: a 64-bit length
    let mid = "x".repeat(300); // a 16-bit length
    let mut stream = frame(true, 0x1, big.as_bytes());
    stream.extend(frame(true, 0x1, mid.as_bytes()));
    let bad = stream.len();
    stream.extend(frame(true, 0x1, b"\xff"));
    for cut in [0, 1, 2, 5, 9, 13, 14, 15, 1000, 80_013, 80_014, 80_020, bad] {
        // Cut off where the bad frame's payload starts.
        assert_eq!(scan_split(&stream, cut), Some(bad + 6), "cut {cut}");
    }
}

#[test]
fn what_tungstenite_refuses_is_left_to_tungstenite() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("reserved bit", {
            let mut f = frame(true, 0x1, b"\xff");
            f[0] |= 0x40;
            f
        }),
        ("unmasked", vec![0x81, 0x01, 0xff]),
        ("reserved opcode", frame(true, 0x3, b"")),
        ("continuation without a message", frame(true, 0x0, b"\xff")),
        ("text inside a fragmented message", {
            let mut f = frame(false, 0x1, b"a");
            f.extend(frame(true, 0x1, b"\xff"));
            f
        }),
        ("fragmented ping", frame(false, 0x9, b"")),
        ("after a close frame", {
            let mut f = frame(true, 0x8, &[0x03, 0xe8]);
            f.extend(frame(true, 0x1, b"\xff"));
            f
        }),
        ("frame over the limit", frame(true, 0x1, &[0xff; 2048])),
    ];
    for (what, stream) in cases {
        // The last case's frame is over this scanner's 1 KiB frame limit.
        let mut s = Scanner::new(Some(1024));
        assert_eq!(s.feed(&stream), Ok(()), "{what}");
        assert!(matches!(s.stage, Stage::Passive), "{what}");
    }
}

#[test]
fn text_past_the_message_limit_is_still_checked() {
    // tungstenite refuses a message over its limit only once the frame that
    // takes it over is complete; invalid text in it fails at once.
    // One frame, under the frame limit, over a 1 KiB message limit, whose
    // first bytes are not UTF-8 and whose rest has not arrived.
    let mut s = Scanner::new(Some(2048));
    let whole = frame(true, 0x1, &[0xff; 1500]);
    assert_eq!(s.feed(&whole[..8 + 16]), Err(8));
    // In fragments under the frame limit.
    let mut s = Scanner::new(Some(1024));
    let mut stream = frame(false, 0x1, &[b'a'; 1000]);
    let bad = stream.len();
    stream.extend(frame(true, 0x0, &[0xff; 1000]));
    assert_eq!(s.feed(&stream), Err(bad + 8));
}

#[tokio::test]
async fn the_guard_hands_on_what_came_before_then_fails_then_drains() {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let config = WebSocketConfig::default();
    let mut guard = TextGuard::new(server, &config);
    // A whole valid message, then the start of a text frame whose payload
    // turns invalid before the frame is complete.
    let good = frame(true, 0x1, b"fine");
    let mut partial = frame(true, 0x1, b"abc\xf5 and the rest never comes");
    partial.truncate(good.len() + 10);
    client.write_all(&good).await.expect("write");
    client.write_all(&partial).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    let err = loop {
        match guard.read(&mut buf).await {
            Ok(0) => panic!("end of stream before the verdict"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break e,
        }
    };
    assert!(InvalidText::is(&err), "{err}");
    assert!(got.starts_with(&good), "the valid message got through");
    assert!(
        got.len() < good.len() + partial.len(),
        "the bad bytes did not"
    );
    // Afterwards the client's bytes are swallowed until it closes.
    client.write_all(b"more data").await.expect("write");
    drop(client);
    assert_eq!(guard.read(&mut buf).await.expect("end of stream"), 0);
}

#[tokio::test]
async fn the_guard_passes_valid_traffic_unchanged() {
    let (mut client, server) = tokio::io::duplex(1024);
    let mut guard = TextGuard::new(server, &WebSocketConfig::default());
    let mut stream = frame(false, 0x1, "κόσ".as_bytes());
    stream.extend(frame(true, 0x9, b""));
    stream.extend(frame(true, 0x0, "με".as_bytes()));
    stream.extend(frame(true, 0x2, &[0xff; 3000]));
    let sent = stream.clone();
    let writer = tokio::spawn(async move {
        for piece in stream.chunks(7) {
            client.write_all(piece).await.expect("write");
        }
    });
    let mut got = Vec::new();
    guard.read_to_end(&mut got).await.expect("read");
    writer.await.expect("writer");
    assert_eq!(got, sent);
}
