//! permessage-deflate (RFC 7692) for the node's sessions: the negotiation
//! of the extension in the opening handshake ([`negotiate`]) and the
//! compression of outbound messages ([`compress_shared`]); the parameter
//! grammar, the compressor and the inflating layer below the UTF-8 guard
//! are `wsring-deflate`'s, shared with the client SDK.
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
//!
//! Server context takeover is an operator's opt-in
//! ([`DeflateSettings::server_context_takeover`]): a session whose client
//! allows it keeps its own compressor (created with its first compressed
//! message, with a window of at most
//! [`DeflateSettings::server_max_window_bits`]), so each message may refer
//! to the ones before it and a chat stream shrinks further, at the price of
//! that compressor's memory for as long as the connection lives and of one
//! deflate per session instead of one per fan-out (the compressed bytes
//! depend on each session's history, so they cannot be shared).

use bytes::Bytes;
use std::cell::RefCell;
use std::collections::VecDeque;
pub(crate) use wsring_deflate::compress;
use wsring_deflate::{MIN_WINDOW_BITS, NAME, Params, elements};

/// Compressed messages remembered per thread for the fan-out cache.
const CACHE_ENTRIES: usize = 8;

/// The largest window RFC 7692 allows, and the default one.
pub const MAX_WINDOW_BITS: u8 = 15;

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
    /// Whether the node keeps its own compression context per session when
    /// the client allows it (a compressor per such connection, no shared
    /// compression for fan-out).
    pub server_context_takeover: bool,
    /// The largest window (9–15 bits) of a session's own compressor with
    /// server context takeover; below 15 it is stated in the response.
    pub server_max_window_bits: u8,
}

/// What one connection agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Agreed {
    /// The server compressor's window, in bits (9–15).
    pub server_window_bits: u8,
    /// Whether the server keeps its compression context from message to
    /// message (a compressor per session).
    pub server_context_takeover: bool,
    /// Whether the client takes over its context from message to message,
    /// so the inflater persists for the connection.
    pub client_context_takeover: bool,
    /// Outbound messages shorter than this are sent uncompressed.
    pub threshold: usize,
}

/// Picks the first permessage-deflate offer in `offers` (the values of the
/// `Sec-WebSocket-Extensions` request headers, in order) the node can
/// honour, and returns what was agreed with the response header value.
/// `None`: no offer, or none the node can honour: the response carries no
/// extension and messages go uncompressed.
///
/// The answer includes `server_no_context_takeover` (a server may include
/// it unasked, RFC 7692 §7.1.1.1) unless the node takes over its context,
/// which it does only when its settings allow it and the offer does not
/// forbid it; and, unless the client may take over its context and did not
/// offer not to, `client_no_context_takeover` (a server may include it
/// unasked, §7.1.1.2). `server_max_window_bits` is answered when offered
/// (the node compresses with that window, or a smaller one of its own
/// limit with context takeover; 8 is declined, as zlib's raw deflate needs
/// 9 at least), and stated unasked when the node takes over its context
/// with a limit below 15 (§7.1.2.1); `client_max_window_bits` is never
/// answered, which §7.1.2.2 allows: the inflater's 15-bit window reads any
/// smaller one.
pub(crate) fn negotiate<'a>(
    offers: impl IntoIterator<Item = &'a str>,
    settings: &DeflateSettings,
) -> Option<(Agreed, String)> {
    if !settings.enabled {
        return None;
    }
    for header in offers {
        for element in elements(header) {
            if !element.is_deflate() {
                continue;
            }
            let Some(offer) = Params::parse(&element.params) else {
                continue;
            };
            let offered_bits = offer.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS);
            if offered_bits < MIN_WINDOW_BITS {
                continue;
            }
            let server_context_takeover =
                settings.server_context_takeover && !offer.server_no_context_takeover;
            let limit = settings
                .server_max_window_bits
                .clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
            let server_window_bits = if server_context_takeover {
                offered_bits.min(limit)
            } else {
                offered_bits
            };
            let client_context_takeover =
                settings.client_context_takeover && !offer.client_no_context_takeover;
            let mut answer = NAME.to_owned();
            if !server_context_takeover {
                answer.push_str("; server_no_context_takeover");
            }
            if !client_context_takeover {
                answer.push_str("; client_no_context_takeover");
            }
            if offer.server_max_window_bits.is_some() || server_window_bits < MAX_WINDOW_BITS {
                answer.push_str(&format!("; server_max_window_bits={server_window_bits}"));
            }
            let agreed = Agreed {
                server_window_bits,
                server_context_takeover,
                client_context_takeover,
                threshold: settings.threshold,
            };
            return Some((agreed, answer));
        }
    }
    None
}

thread_local! {
    /// Recently compressed shared buffers: (original, window bits, compressed).
    static CACHE: RefCell<VecDeque<(Bytes, u8, Bytes)>> = const { RefCell::new(VecDeque::new()) };
}

/// Messages compressed on this thread so far.
#[cfg(test)]
pub(crate) fn compressions() -> u64 {
    wsring_deflate::compressions()
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
    use wsring_deflate::TAIL;

    fn on() -> DeflateSettings {
        DeflateSettings {
            enabled: true,
            threshold: 256,
            client_context_takeover: false,
            server_context_takeover: false,
            server_max_window_bits: 15,
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

    #[test]
    fn server_context_takeover_is_opt_in_and_honours_the_offer() {
        let takeover = DeflateSettings {
            server_context_takeover: true,
            ..on()
        };
        let (agreed, a) = negotiate(["permessage-deflate"], &takeover).expect("agreed");
        assert_eq!(a, "permessage-deflate; client_no_context_takeover");
        assert!(agreed.server_context_takeover);
        assert_eq!(agreed.server_window_bits, 15);
        // A client that forbids it gets what the default gives.
        let (agreed, a) = negotiate(
            ["permessage-deflate; server_no_context_takeover"],
            &takeover,
        )
        .expect("agreed");
        assert_eq!(a, BASE);
        assert!(!agreed.server_context_takeover);
        // The node's window limit is stated unasked, and caps an offer.
        let small = DeflateSettings {
            server_max_window_bits: 10,
            ..takeover
        };
        for (offer, bits) in [
            ("permessage-deflate", 10),
            ("permessage-deflate; server_max_window_bits=12", 10),
            ("permessage-deflate; server_max_window_bits=9", 9),
        ] {
            let (agreed, a) = negotiate([offer], &small).expect(offer);
            assert_eq!(
                a,
                format!(
                    "permessage-deflate; client_no_context_takeover; server_max_window_bits={bits}"
                ),
                "{offer}"
            );
            assert_eq!(agreed.server_window_bits, bits, "{offer}");
        }
        // Without takeover no compressor is kept, so the limit does not apply.
        let (agreed, a) =
            negotiate(["permessage-deflate; server_no_context_takeover"], &small).expect("agreed");
        assert_eq!((agreed.server_window_bits, a.as_str()), (15, BASE));
        // Off by default, with a 15-bit limit.
        let defaults = crate::NodeConfig::new("n1").deflate_settings();
        assert!(!defaults.server_context_takeover);
        assert_eq!(defaults.server_max_window_bits, 15);
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
        // With server context takeover (`--deflate-server-context-takeover`):
        // one compressor for the stream, every message from the threshold up
        // sent compressed.
        for bits in [15, 10] {
            let mut c = wsring_deflate::compressor(bits);
            let kept: usize = corpus
                .iter()
                .map(|m| {
                    if m.len() < 256 {
                        return frame_bytes(m.len());
                    }
                    frame_bytes(wsring_deflate::compress_with(&mut c, m.as_bytes()).len())
                })
                .sum();
            let r = kept as f64 / plain as f64;
            println!("with context takeover, {bits}-bit window: {kept} bytes: {r:.3}x");
            assert!(r < ratio, "{r} against {ratio}");
        }
    }
}
