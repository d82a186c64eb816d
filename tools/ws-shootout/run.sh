#!/usr/bin/env bash
# Builds ws-shootout in release and runs the whole shootout: behaviour probes, then
# 3 interleaved repetitions of rpc / rpc-light / fanout for every candidate (~4-5 min on
# 2 cores). Prints the markdown report and keeps a copy under target/.
# Extra arguments go to `ws-shootout bench` (e.g. --reps 5, --impl fastws, --secs 8).
set -euo pipefail
cd "$(dirname "$0")"

# 1000 fan-out clients + the server's sockets need more than the common 1024 fds.
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 4096 ]; then
  ulimit -n 4096 2>/dev/null || echo "warning: could not raise the fd limit" >&2
fi

cargo build --release --quiet
mkdir -p target
out="target/shootout-$(date -u +%Y%m%dT%H%M%SZ).md"
./target/release/ws-shootout bench "$@" | tee "$out"
echo "report saved to $out" >&2
