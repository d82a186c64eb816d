//! permessage-deflate (RFC 7692) as both ends of a wsring connection need
//! it: the grammar of the extension's parameters ([`elements`],
//! [`Params`]), the compression of one message ([`compress`],
//! [`compress_with`]) and, in [`Inflate`], a stream layer that inflates
//! the peer's compressed messages below tungstenite.
//!
//! tungstenite has no extension support (it fails any frame with RSV1
//! set), so the extension lives around it: the sender compresses a
//! message itself and writes it as a ready-made frame with RSV1 set, and
//! the receiver's [`Inflate`] rewrites compressed frames into plain ones
//! before tungstenite reads them. The node uses both halves; the client
//! SDK and the bench only inflate (a client may leave its own messages
//! uncompressed, RFC 7692 §6).
//!
//! What each side agreed on (windows, context takeover) is the caller's:
//! this crate only parses and applies it.

mod inflate;

pub use inflate::{CHUNK, Inflate, Peer};

use flate2::{Compress, Compression, FlushCompress, Status};
use std::cell::{Cell, RefCell};

/// The extension's registered name.
pub const NAME: &str = "permessage-deflate";

/// The tail a sync flush ends with, removed from every compressed message
/// and added back before inflating (RFC 7692 §7.2.1, §7.2.2).
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The smallest window zlib compresses raw deflate with: a peer that
/// limits the compressor's window below this (`server_max_window_bits=8`)
/// cannot be honoured.
pub const MIN_WINDOW_BITS: u8 = 9;

/// Compression level: zlib's default, the usual ratio/speed balance.
const LEVEL: u32 = 6;

/// Compressors kept per thread (one per window size in use).
const POOL: usize = 4;

/// One permessage-deflate offer's or response's parameters, each at most
/// once (RFC 7692 §7.1).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Params {
    /// `server_no_context_takeover`.
    pub server_no_context_takeover: bool,
    /// `client_no_context_takeover`.
    pub client_no_context_takeover: bool,
    /// `server_max_window_bits=N`.
    pub server_max_window_bits: Option<u8>,
    /// `client_max_window_bits[=N]`; `Some(None)`: without a value.
    pub client_max_window_bits: Option<Option<u8>>,
}

impl Params {
    /// Parses the parameters of one element (the parts after its name);
    /// an unknown parameter, a repeated one, or a bad value makes the
    /// element invalid (`None`).
    pub fn parse(params: &[&str]) -> Option<Params> {
        let mut out = Params::default();
        for p in params {
            let (name, value) = match p.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (p.trim(), None),
            };
            match (name.to_ascii_lowercase().as_str(), value) {
                ("server_no_context_takeover", None) if !out.server_no_context_takeover => {
                    out.server_no_context_takeover = true;
                }
                ("client_no_context_takeover", None) if !out.client_no_context_takeover => {
                    out.client_no_context_takeover = true;
                }
                ("server_max_window_bits", Some(v)) if out.server_max_window_bits.is_none() => {
                    out.server_max_window_bits = Some(window_bits(v)?);
                }
                ("client_max_window_bits", v) if out.client_max_window_bits.is_none() => {
                    out.client_max_window_bits = Some(match v {
                        Some(v) => Some(window_bits(v)?),
                        None => None,
                    });
                }
                _ => return None,
            }
        }
        Some(out)
    }
}

/// One element of a `Sec-WebSocket-Extensions` value: an extension name
/// and its parameters, unparsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element<'a> {
    /// The extension's name, trimmed.
    pub name: &'a str,
    /// Its `;`-separated parameters, untrimmed.
    pub params: Vec<&'a str>,
}

impl Element<'_> {
    /// Whether this element names permessage-deflate.
    pub fn is_deflate(&self) -> bool {
        self.name.eq_ignore_ascii_case(NAME)
    }
}

/// The elements of one `Sec-WebSocket-Extensions` header value, in order
/// (commas and semicolons inside quoted strings do not split).
pub fn elements(header: &str) -> impl Iterator<Item = Element<'_>> {
    split_outside_quotes(header, ',')
        .into_iter()
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut parts = split_outside_quotes(e, ';').into_iter();
            let name = parts.next().unwrap_or_default().trim();
            Element {
                name,
                params: parts.collect(),
            }
        })
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

thread_local! {
    /// Reset compressors by window bits, reused across messages.
    static POOLED: RefCell<Vec<(u8, Compress)>> = const { RefCell::new(Vec::new()) };
    /// Messages this thread compressed (for tests and measurements).
    static COMPRESSIONS: Cell<u64> = const { Cell::new(0) };
}

/// Messages compressed on this thread so far (by [`compress`] and
/// [`compress_with`]); tests count deflate work with it.
pub fn compressions() -> u64 {
    COMPRESSIONS.with(Cell::get)
}

/// A raw-deflate compressor with a `window_bits` window (9–15) at the
/// default level, for a sender that keeps its context ([`compress_with`]).
pub fn compressor(window_bits: u8) -> Compress {
    Compress::new_with_window_bits(Compression::new(LEVEL), false, window_bits)
}

/// Compresses one message as RFC 7692 §7.2.1 says, with no context kept:
/// raw deflate, a sync flush, the trailing `00 00 ff ff` removed. The
/// compressor comes from a small per-thread pool and is reset after use,
/// so no sender holds one between messages.
pub fn compress(window_bits: u8, payload: &[u8]) -> Vec<u8> {
    let mut c = POOLED
        .with(|p| {
            let mut p = p.borrow_mut();
            let i = p.iter().position(|(b, _)| *b == window_bits)?;
            Some(p.swap_remove(i).1)
        })
        .unwrap_or_else(|| compressor(window_bits));
    let out = compress_with(&mut c, payload);
    c.reset();
    POOLED.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL {
            p.push((window_bits, c));
        }
    });
    out
}

/// Compresses one message with `c`, whose context (the window of what it
/// compressed before) is kept for the next message: the peer's inflater
/// must have seen every message `c` compressed, in order, so a message
/// compressed here must be sent compressed.
pub fn compress_with(c: &mut Compress, payload: &[u8]) -> Vec<u8> {
    COMPRESSIONS.with(|n| n.set(n.get() + 1));
    let start = c.total_in();
    let mut out = Vec::with_capacity(payload.len() / 2 + 64);
    loop {
        let consumed = ((c.total_in() - start) as usize).min(payload.len());
        let status = c.compress_vec(&payload[consumed..], &mut out, FlushCompress::Sync);
        let done = (c.total_in() - start) as usize >= payload.len();
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
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    fn inflate_with(d: &mut Decompress, z: &[u8]) -> Vec<u8> {
        let mut input = z.to_vec();
        input.extend_from_slice(&TAIL);
        let mut out = Vec::with_capacity(1 << 20);
        d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .expect("inflate");
        out
    }

    #[test]
    fn parameters_parse_as_rfc_7692_says() {
        let p = Params::parse(&[
            " server_no_context_takeover",
            " Client_Max_Window_Bits=\"12\"",
            "server_max_window_bits=10",
        ])
        .expect("valid");
        assert!(p.server_no_context_takeover && !p.client_no_context_takeover);
        assert_eq!(p.server_max_window_bits, Some(10));
        assert_eq!(p.client_max_window_bits, Some(Some(12)));
        for bad in [
            &["server_max_window_bits"][..],
            &["server_max_window_bits=16"],
            &["server_max_window_bits=07"],
            &["client_max_window_bits="],
            &["server_no_context_takeover=1"],
            &["client_no_context_takeover", "client_no_context_takeover"],
            &["unknown"],
        ] {
            assert_eq!(Params::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn elements_split_outside_quotes() {
        let els: Vec<_> = elements("foo; bar=\"a,b\", permessage-deflate ; x;y").collect();
        assert_eq!(els.len(), 2);
        assert_eq!(els[0].name, "foo");
        assert_eq!(els[0].params, vec![" bar=\"a,b\""]);
        assert!(els[1].is_deflate());
        assert_eq!(els[1].params, vec![" x", "y"]);
        assert_eq!(elements("").count(), 0);
    }

    #[test]
    fn a_kept_context_makes_a_repeated_message_small() {
        let msg = br#"{"type":"message","room":"general","from":"alice","text":"what a day"}"#;
        let mut c = compressor(15);
        let mut d = Decompress::new(false);
        let first = compress_with(&mut c, msg);
        let second = compress_with(&mut c, msg);
        assert!(
            second.len() * 3 < first.len(),
            "{} {}",
            second.len(),
            first.len()
        );
        assert_eq!(inflate_with(&mut d, &first), msg);
        assert_eq!(inflate_with(&mut d, &second), msg);
        // Alone, each message costs what the first did.
        let alone = compress(15, msg);
        assert_eq!(alone.len(), first.len());
        assert_eq!(inflate_with(&mut Decompress::new(false), &alone), msg);
    }
}
