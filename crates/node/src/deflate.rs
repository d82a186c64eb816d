//! permessage-deflate (RFC 7692) for the node's sessions: the negotiation
//! of the extension in the opening handshake ([`negotiate`]), the
//! compression of outbound messages ([`compress_shared`]) and, in
//! [`inflate`], the decompression of inbound ones below the UTF-8 guard.
//!
//! tungstenite has no extension support (it fails any frame with RSV1
//! set), so the extension lives around it: outbound messages are
//! compressed here and written as ready-made frames with RSV1 set, and
//! inbound compressed messages are rewritten into plain frames before
//! tungstenite (and the UTF-8 guard) see them.
//!
//! Memory is the point of the defaults. The server never takes over its
//! compression context (`server_no_context_takeover`), so no compressor
//! belongs to a connection: compressors come from a small per-thread pool
//! and are reset after each message. By default the server also asks the
//! client not to take over its context (`client_no_context_takeover`), so
//! the inflater exists only while a compressed message is being read. An
//! idle connection with deflate negotiated holds no zlib state at all.
//!
//! A message fanned out to many sessions shares one buffer; its compressed
//! form is cached per thread by that buffer's identity, so a room of a
//! thousand costs one deflate per worker thread, not a thousand.

pub(crate) mod inflate;

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress, Status};
use std::cell::RefCell;
use std::collections::VecDeque;

/// The extension's registered name.
pub(crate) const NAME: &str = "permessage-deflate";

/// The tail a sync flush ends with, removed from every compressed message
/// and added back before inflating (RFC 7692 §7.2.1, §7.2.2).
pub(crate) const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The smallest window zlib compresses raw deflate with: an offer that
/// limits the server's window below this (`server_max_window_bits=8`) is
/// declined.
const MIN_SERVER_WINDOW_BITS: u8 = 9;

/// Compression level: zlib's default, the usual ratio/speed balance; the
/// fan-out cache makes the cost per delivered message small anyway.
const LEVEL: u32 = 6;

/// Compressors kept per thread (one per window size in use).
const POOL: usize = 4;

/// Compressed messages remembered per thread for the fan-out cache.
const CACHE_ENTRIES: usize = 8;

/// The node's deflate settings (from `NodeConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateSettings {
    /// Whether the node accepts permessage-deflate at all.
    pub enabled: bool,
    /// Outbound messages shorter than this many bytes are sent uncompressed.
    pub threshold: usize,
    /// Whether a client may keep its compression context across messages
    /// (the node then keeps an inflater per such connection).
    pub client_context_takeover: bool,
}

/// What one connection agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Agreed {
    /// The server compressor's window, in bits (9–15).
    pub server_window_bits: u8,
    /// Whether the client takes over its context from message to message,
    /// so the inflater persists for the connection.
    pub client_context_takeover: bool,
    /// Outbound messages shorter than this are sent uncompressed.
    pub threshold: usize,
}

/// One offer's parameters, each at most once.
#[derive(Debug, Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: offered without a value.
    client_max_window_bits: Option<Option<u8>>,
}

/// Splits `s` on `sep` outside double quotes.
fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&s[start..]);
    parts
}

/// A window-bits value: a decimal 8–15 without leading zeros, possibly as
/// a quoted string (RFC 7692 §7.1.2).
fn window_bits(value: &str) -> Option<u8> {
    let v = value.trim();
    let v = match v.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"')?,
        None => v,
    };
    if v.is_empty() || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u8 = v.parse().ok()?;
    (8..=15).contains(&n).then_some(n)
}

/// Parses one offer's parameters (the part after the extension name); an
/// unknown parameter, a repeated one, or a bad value makes it invalid.
fn parse_offer(params: &[&str]) -> Option<Offer> {
    let mut offer = Offer::default();
    for p in params {
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (p.trim(), None),
        };
        match (name.to_ascii_lowercase().as_str(), value) {
            ("server_no_context_takeover", None) if !offer.server_no_context_takeover => {
                offer.server_no_context_takeover = true;
            }
            ("client_no_context_takeover", None) if !offer.client_no_context_takeover => {
                offer.client_no_context_takeover = true;
            }
            ("server_max_window_bits", Some(v)) if offer.server_max_window_bits.is_none() => {
                offer.server_max_window_bits = Some(window_bits(v)?);
            }
            ("client_max_window_bits", v) if offer.client_max_window_bits.is_none() => {
                offer.client_max_window_bits = Some(match v {
                    Some(v) => Some(window_bits(v)?),
                    None => None,
                });
            }
            _ => return None,
        }
    }
    Some(offer)
}

/// Picks the first permessage-deflate offer in `offers` (the values of the
/// `Sec-WebSocket-Extensions` request headers, in order) the node can
/// honour, and returns what was agreed with the response header value.
/// `None`: no offer, or none the node can honour: the response carries no
/// extension and messages go uncompressed.
///
/// The answer always includes `server_no_context_takeover` (a server may
/// include it unasked, RFC 7692 §7.1.1.1) and, unless the client may take
/// over its context and did not offer not to, `client_no_context_takeover`
/// (a server may include it unasked, §7.1.1.2). `server_max_window_bits`
/// is echoed when offered (the node compresses with that window; 8 is
/// declined, as zlib's raw deflate needs 9 at least);
/// `client_max_window_bits` is never answered, which §7.1.2.2 allows: the
/// inflater's 15-bit window reads any smaller one.
pub(crate) fn negotiate<'a>(
    offers: impl IntoIterator<Item = &'a str>,
    settings: &DeflateSettings,
) -> Option<(Agreed, String)> {
    if !settings.enabled {
        return None;
    }
    for header in offers {
        for offer in split_outside_quotes(header, ',') {
            let parts = split_outside_quotes(offer, ';');
            let (name, params) = parts.split_first()?;
            if !name.trim().eq_ignore_ascii_case(NAME) {
                continue;
            }
            let Some(offer) = parse_offer(params) else {
                continue;
            };
            let server_window_bits = offer.server_max_window_bits.unwrap_or(15);
            if server_window_bits < MIN_SERVER_WINDOW_BITS {
                continue;
            }
            let client_context_takeover =
                settings.client_context_takeover && !offer.client_no_context_takeover;
            let mut answer = format!("{NAME}; server_no_context_takeover");
            if !client_context_takeover {
                answer.push_str("; client_no_context_takeover");
            }
            if let Some(bits) = offer.server_max_window_bits {
                answer.push_str(&format!("; server_max_window_bits={bits}"));
            }
            let agreed = Agreed {
                server_window_bits,
                client_context_takeover,
                threshold: settings.threshold,
            };
            return Some((agreed, answer));
        }
    }
    None
}

thread_local! {
    /// Reset compressors by window bits, reused across messages.
    static POOLED: RefCell<Vec<(u8, Compress)>> = const { RefCell::new(Vec::new()) };
    /// Recently compressed shared buffers: (original, window bits, compressed).
    static CACHE: RefCell<VecDeque<(Bytes, u8, Bytes)>> = const { RefCell::new(VecDeque::new()) };
    /// Messages this thread compressed (for tests and measurements).
    static COMPRESSIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Messages compressed on this thread so far.
#[cfg(test)]
pub(crate) fn compressions() -> u64 {
    COMPRESSIONS.with(|c| c.get())
}

/// Compresses one message as RFC 7692 §7.2.1 says: raw deflate, a sync
/// flush, the trailing `00 00 ff ff` removed; no context is kept.
pub(crate) fn compress(window_bits: u8, payload: &[u8]) -> Vec<u8> {
    COMPRESSIONS.with(|c| c.set(c.get() + 1));
    let mut compressor = POOLED
        .with(|p| {
            let mut p = p.borrow_mut();
            let i = p.iter().position(|(b, _)| *b == window_bits)?;
            Some(p.swap_remove(i).1)
        })
        .unwrap_or_else(|| {
            Compress::new_with_window_bits(Compression::new(LEVEL), false, window_bits)
        });
    let mut out = Vec::with_capacity(payload.len() / 2 + 64);
    loop {
        let consumed = (compressor.total_in() as usize).min(payload.len());
        let status = compressor.compress_vec(&payload[consumed..], &mut out, FlushCompress::Sync);
        let done = compressor.total_in() as usize >= payload.len();
        // Finished once all input is in and the flush had room to complete.
        if done && out.len() < out.capacity() {
            break;
        }
        if matches!(status, Err(_) | Ok(Status::StreamEnd)) {
            break;
        }
        out.reserve(out.capacity().max(64));
    }
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    }
    compressor.reset();
    POOLED.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL {
            p.push((window_bits, compressor));
        }
    });
    out
}

/// [`compress`] for a buffer that may be shared by a fan-out: the result is
/// remembered per thread by the buffer's identity (its address and length,
/// held alive by the cache so neither can be reused), so the next session
/// delivering the same message reuses it.
pub(crate) fn compress_shared(window_bits: u8, payload: &Bytes) -> Bytes {
    let hit = CACHE.with(|c| {
        c.borrow()
            .iter()
            .find(|(orig, bits, _)| {
                *bits == window_bits
                    && orig.as_ptr() == payload.as_ptr()
                    && orig.len() == payload.len()
            })
            .map(|(_, _, z)| z.clone())
    });
    if let Some(z) = hit {
        return z;
    }
    let z = Bytes::from(compress(window_bits, payload));
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= CACHE_ENTRIES {
            c.pop_front();
        }
        c.push_back((payload.clone(), window_bits, z.clone()));
    });
    z
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    fn on() -> DeflateSettings {
        DeflateSettings {
            enabled: true,
            threshold: 256,
            client_context_takeover: false,
        }
    }

    fn answer(offer: &str) -> Option<String> {
        negotiate([offer], &on()).map(|(_, a)| a)
    }

    const BASE: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    #[test]
    fn a_plain_offer_is_accepted_without_context_takeover() {
        assert_eq!(answer("permessage-deflate").as_deref(), Some(BASE));
        let (agreed, _) = negotiate(["permessage-deflate"], &on()).expect("agreed");
        assert_eq!(agreed.server_window_bits, 15);
        assert!(!agreed.client_context_takeover);
    }

    #[test]
    fn every_parameter_combination_is_honoured() {
        let params = [
            "server_no_context_takeover",
            "client_no_context_takeover",
            "server_max_window_bits=10",
            "client_max_window_bits",
        ];
        for mask in 0..16u32 {
            let mut offer = String::from("permessage-deflate");
            for (i, p) in params.iter().enumerate() {
                if mask & (1 << i) != 0 {
                    offer.push_str("; ");
                    offer.push_str(p);
                }
            }
            for takeover in [false, true] {
                let settings = DeflateSettings {
                    client_context_takeover: takeover,
                    ..on()
                };
                let (agreed, a) = negotiate([offer.as_str()], &settings).expect(&offer);
                assert!(a.contains("server_no_context_takeover"), "{offer}: {a}");
                let client_nct = mask & 2 != 0 || !takeover;
                assert_eq!(
                    a.contains("client_no_context_takeover"),
                    client_nct,
                    "{offer}: {a}"
                );
                assert_eq!(agreed.client_context_takeover, !client_nct);
                assert_eq!(
                    a.contains("server_max_window_bits=10"),
                    mask & 4 != 0,
                    "{offer}: {a}"
                );
                assert_eq!(
                    agreed.server_window_bits,
                    if mask & 4 != 0 { 10 } else { 15 }
                );
                assert!(!a.contains("client_max_window_bits"), "{offer}: {a}");
            }
        }
    }

    #[test]
    fn invalid_offers_are_declined() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=1x",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover=true",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "permessage-deflate; unknown_parameter",
            "permessage-deflate; server_max_window_bits=8",
            "x-webkit-deflate-frame",
            "",
        ] {
            assert_eq!(answer(bad), None, "{bad:?}");
        }
        let off = DeflateSettings {
            enabled: false,
            ..on()
        };
        assert!(negotiate(["permessage-deflate"], &off).is_none());
    }

    #[test]
    fn the_first_offer_that_can_be_honoured_wins() {
        let a = answer(
            "permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=\"12\", permessage-deflate",
        );
        assert_eq!(a, Some(format!("{BASE}; server_max_window_bits=12")));
        // Across header lines too, and past other extensions.
        let (agreed, _) = negotiate(
            [
                "foo; bar=\"a,b\"",
                "PERMESSAGE-DEFLATE; Client_Max_Window_Bits=9",
            ],
            &on(),
        )
        .expect("second line");
        assert_eq!(agreed.server_window_bits, 15);
    }

    /// Inflates one message as a peer would: tail added back, raw inflate.
    pub(crate) fn inflate(z: &[u8]) -> Vec<u8> {
        let mut d = Decompress::new(false);
        let mut input = z.to_vec();
        input.extend_from_slice(&TAIL);
        let mut out = Vec::with_capacity(1 << 20);
        d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .expect("inflate");
        out
    }

    #[test]
    fn compression_round_trips_at_every_window() {
        let msg = br#"{"type":"message","room":"general","from":"alice","text":"hello hello hello world"}"#
            .repeat(20);
        for bits in 9..=15 {
            let z = compress(bits, &msg);
            assert!(z.len() < msg.len() / 4, "{bits}: {}", z.len());
            assert!(!z.ends_with(&TAIL));
            assert_eq!(inflate(&z), msg, "{bits}");
        }
        // An empty message and incompressible bytes round-trip too.
        assert_eq!(inflate(&compress(15, b"")), b"");
        let noise: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        assert_eq!(inflate(&compress(15, &noise)), noise);
    }

    #[test]
    fn a_shared_buffer_is_compressed_once() {
        let msg = Bytes::from("x".repeat(1000));
        let before = compressions();
        let first = compress_shared(15, &msg);
        for _ in 0..999 {
            assert_eq!(compress_shared(15, &msg.clone()), first);
        }
        assert_eq!(compressions() - before, 1);
        // Same content in another buffer, or another window: compressed anew.
        compress_shared(15, &Bytes::from("x".repeat(1000)));
        compress_shared(12, &msg);
        assert_eq!(compressions() - before, 3);
    }

    /// The bytes a WebSocket frame of `payload` bytes takes from the server.
    fn frame_bytes(payload: usize) -> usize {
        payload
            + match payload {
                0..=125 => 2,
                126..=65535 => 4,
                _ => 10,
            }
    }

    /// A chat stream as a node delivers it: message events of a busy room,
    /// shaped like a chat application's (an id, the author with a display
    /// name and avatar URL, text of varying length, a timestamp, sometimes
    /// reactions or a reply), mixed with presence and ack frames. 1,000
    /// frames from a fixed seed.
    pub(crate) fn chat_corpus() -> Vec<String> {
        const WORDS: [&str; 40] = [
            "hello", "team", "the", "deploy", "is", "done", "can", "you", "review", "my", "pull",
            "request", "thanks", "lunch", "meeting", "at", "noon", "great", "work", "on",
            "release", "notes", "bug", "fixed", "in", "staging", "prod", "looks", "good", "to",
            "me", "ship", "it", "tomorrow", "morning", "sounds", "like", "a", "plan", "ok",
        ];
        const NAMES: [&str; 8] = [
            "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
        ];
        let mut seed: u64 = 0x5eed;
        let mut next = move |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let mut out = Vec::new();
        for i in 0..1000u64 {
            let who = NAMES[next(8) as usize];
            match next(10) {
                0 => out.push(format!(
                    r#"{{"type":"presence","room":"eng-general","user":"{who}","event":"join"}}"#
                )),
                1 => out.push(format!(r#"{{"type":"ack","id":"m{i}"}}"#)),
                _ => {
                    let words = 3 + next(40);
                    let text: Vec<&str> = (0..words).map(|_| WORDS[next(40) as usize]).collect();
                    let extra = match next(4) {
                        0 => format!(
                            r#","reactions":[{{"emoji":"thumbsup","count":{},"users":["{}","{}"]}}]"#,
                            next(9) + 1,
                            NAMES[next(8) as usize],
                            NAMES[next(8) as usize]
                        ),
                        1 => format!(
                            r#","reply_to":{{"id":"msg_{:012x}","author":"{}"}}"#,
                            next(1 << 40),
                            NAMES[next(8) as usize]
                        ),
                        _ => String::new(),
                    };
                    out.push(format!(
                        r#"{{"type":"message","from":"{who}","room":"eng-general","data":{{"id":"msg_{:012x}","author":{{"id":"user_{who}","name":"{}","avatar":"https://cdn.example.com/avatars/{who}/{:08x}.png"}},"text":"{}","sent_at":"2026-12-07T18:{:02}:{:02}.{:03}Z","edited":false{extra}}}}}"#,
                        next(1 << 40),
                        who.to_uppercase(),
                        next(1 << 32),
                        text.join(" "),
                        next(60),
                        next(60),
                        next(1000)
                    ));
                }
            }
        }
        out
    }

    /// Wire bytes of [`chat_corpus`] with deflate (threshold 256, no context
    /// takeover, as the node sends) against without; printed for
    /// BENCHMARKS.md.
    #[test]
    fn a_chat_stream_takes_a_fraction_of_the_bytes() {
        let corpus = chat_corpus();
        let plain: usize = corpus.iter().map(|m| frame_bytes(m.len())).sum();
        let deflated: usize = corpus
            .iter()
            .map(|m| {
                if m.len() < 256 {
                    return frame_bytes(m.len());
                }
                let z = compress(15, m.as_bytes());
                frame_bytes(z.len().min(m.len()))
            })
            .sum();
        let ratio = deflated as f64 / plain as f64;
        println!(
            "chat corpus: {} frames, {plain} bytes plain, {deflated} bytes with deflate: {ratio:.3}x",
            corpus.len()
        );
        assert!(ratio < 0.75, "{ratio}");
    }
}
