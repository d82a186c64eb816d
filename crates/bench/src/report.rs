//! Bench results: counters plus HDR histograms that merge exactly across
//! worker processes (they travel as `(value, count)` pairs in JSON).

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Results of one worker, or several merged.
#[derive(Debug, Clone)]
pub struct Report {
    /// Clients that connected.
    pub connected: u64,
    /// Connect attempts that failed.
    pub connect_errors: u64,
    /// Messages (or API calls) sent.
    pub sent: u64,
    /// Messages received (each recipient counts).
    pub received: u64,
    /// Send failures (socket or API errors).
    pub send_errors: u64,
    /// Seconds of sending.
    pub seconds: f64,
    /// Connect time, microseconds.
    pub connect_us: Histogram<u64>,
    /// End-to-end delivery latency, microseconds.
    pub latency_us: Histogram<u64>,
    /// Bytes the clients read from their sockets while traffic ran (frames
    /// as sent, compressed where the server compressed them).
    pub wire_bytes: u64,
    /// The same frames' bytes had none been compressed (each received
    /// message's payload plus its frame header).
    pub plain_bytes: u64,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    connected: u64,
    connect_errors: u64,
    sent: u64,
    received: u64,
    send_errors: u64,
    seconds: f64,
    connect_us: Vec<(u64, u64)>,
    latency_us: Vec<(u64, u64)>,
    #[serde(default)]
    wire_bytes: u64,
    #[serde(default)]
    plain_bytes: u64,
}

fn hist() -> Histogram<u64> {
    // 1 µs .. 100 s at 3 significant digits; cannot fail for these bounds.
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("constant histogram bounds are valid")
}

fn pairs(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

impl Default for Report {
    fn default() -> Self {
        Report {
            connected: 0,
            connect_errors: 0,
            sent: 0,
            received: 0,
            send_errors: 0,
            seconds: 0.0,
            wire_bytes: 0,
            plain_bytes: 0,
            connect_us: hist(),
            latency_us: hist(),
        }
    }
}

impl Report {
    /// Adds another worker's results.
    pub fn merge(&mut self, o: &Report) {
        self.connected += o.connected;
        self.connect_errors += o.connect_errors;
        self.sent += o.sent;
        self.received += o.received;
        self.send_errors += o.send_errors;
        self.seconds = self.seconds.max(o.seconds);
        self.wire_bytes += o.wire_bytes;
        self.plain_bytes += o.plain_bytes;
        let _ = self.connect_us.add(&o.connect_us);
        let _ = self.latency_us.add(&o.latency_us);
    }

    /// One JSON line (for workers).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&Wire {
            connected: self.connected,
            connect_errors: self.connect_errors,
            sent: self.sent,
            received: self.received,
            send_errors: self.send_errors,
            seconds: self.seconds,
            connect_us: pairs(&self.connect_us),
            latency_us: pairs(&self.latency_us),
            wire_bytes: self.wire_bytes,
            plain_bytes: self.plain_bytes,
        })
        .unwrap_or_default()
    }

    /// Parses a worker's JSON line.
    pub fn from_json(s: &str) -> Option<Report> {
        let w: Wire = serde_json::from_str(s).ok()?;
        let mut r = Report {
            connected: w.connected,
            connect_errors: w.connect_errors,
            sent: w.sent,
            received: w.received,
            send_errors: w.send_errors,
            seconds: w.seconds,
            wire_bytes: w.wire_bytes,
            plain_bytes: w.plain_bytes,
            ..Report::default()
        };
        for (v, c) in w.connect_us {
            let _ = r.connect_us.record_n(v.max(1), c);
        }
        for (v, c) in w.latency_us {
            let _ = r.latency_us.record_n(v.max(1), c);
        }
        Some(r)
    }

    /// A markdown summary.
    pub fn render(&self) -> String {
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        let rate = |n: u64| {
            if self.seconds > 0.0 {
                n as f64 / self.seconds
            } else {
                0.0
            }
        };
        let ratio = if self.plain_bytes > 0 {
            self.wire_bytes as f64 / self.plain_bytes as f64
        } else {
            0.0
        };
        format!(
            "| metric | value |\n|---|---:|\n\
             | clients connected | {} ({} failed) |\n\
             | connect p50 / p99 | {:.2} ms / {:.2} ms |\n\
             | sent | {} ({:.0}/s, {} errors) |\n\
             | received | {} ({:.0}/s) |\n\
             | latency p50 / p90 / p99 / max | {:.2} / {:.2} / {:.2} / {:.2} ms |\n\
             | bytes received on the wire | {} ({} uncompressed: {:.3}×) |\n",
            self.connected,
            self.connect_errors,
            ms(&self.connect_us, 0.5),
            ms(&self.connect_us, 0.99),
            self.sent,
            rate(self.sent),
            self.send_errors,
            self.received,
            rate(self.received),
            ms(&self.latency_us, 0.5),
            ms(&self.latency_us, 0.9),
            ms(&self.latency_us, 0.99),
            self.latency_us.max() as f64 / 1000.0,
            self.wire_bytes,
            self.plain_bytes,
            ratio,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_merges_exactly() {
        let mut a = Report {
            sent: 3,
            ..Report::default()
        };
        for v in [100, 200, 300] {
            a.latency_us.record(v).expect("record");
        }
        a.wire_bytes = 40;
        a.plain_bytes = 100;
        let b = Report::from_json(&a.to_json()).expect("parse");
        let mut m = Report::default();
        m.merge(&a);
        m.merge(&b);
        assert_eq!(m.sent, 6);
        assert_eq!((m.wire_bytes, m.plain_bytes), (80, 200));
        assert!(
            m.render()
                .contains("| bytes received on the wire | 80 (200 uncompressed: 0.400×) |")
        );
        assert_eq!(m.latency_us.len(), 6);
        assert_eq!(
            m.latency_us.value_at_quantile(0.5),
            a.latency_us.value_at_quantile(0.5)
        );
    }
}
