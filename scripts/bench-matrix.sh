#!/usr/bin/env bash
# Runs `wsring bench` against several `wsring dev` configurations in one
# session and prints, for each, delivery latency and the dev process's CPU
# time per 1000 delivered messages, so configurations compare as ratios on
# this noisy shared machine. Usage: scripts/bench-matrix.sh [clients] [rate] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${1:-500}
RATE=${2:-3000}
SECS=${3:-8}
BIN=./target/release/wsring
cargo build --release -q -p wsring

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

run_case() { # name, dev args..., -- bench url suffix
  local name=$1; shift
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  $BIN dev --port "$port" "$@" > /tmp/bench-dev.out 2>/dev/null &
  local pid=$!
  for _ in $(seq 100); do grep -q gateway /tmp/bench-dev.out 2>/dev/null && break; sleep 0.1; done
  local url="ws://127.0.0.1:$port/ws"
  if [ "$name" = "node-direct" ]; then url=$(awk '/node n1/{print $3}' /tmp/bench-dev.out); fi
  local before after out
  before=$(cpu_ticks $pid)
  out=$($BIN bench --url "$url" --clients "$CLIENTS" --rate "$RATE" --duration "${SECS}s" --mode "${MODE:-direct}")
  after=$(cpu_ticks $pid)
  kill $pid; wait $pid 2>/dev/null || true
  local recv lat
  recv=$(echo "$out" | awk -F'|' '/^\| received/{print $3}' | awk '{print $1}')
  lat=$(echo "$out" | awk -F'|' '/latency p50/{print $3}' | xargs)
  local ticks=$((after - before))
  local hz; hz=$(getconf CLK_TCK)
  python3 - "$name" "$recv" "$ticks" "$hz" "$lat" <<'PY'
import sys
name, recv, ticks, hz, lat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
cpu = ticks / hz
print(f"| {name} | {recv} | {cpu:.2f} s | {1000*cpu/max(recv,1)*1000:.1f} ms | {lat} |")
PY
}

echo "clients=$CLIENTS rate=$RATE/s duration=${SECS}s mode=${MODE:-direct}"
echo "| case | delivered | dev CPU | CPU per 1000 msgs | latency p50 / p90 / p99 / max |"
echo "|---|---:|---:|---:|---|"
run_case hash-3-nodes --nodes 3
run_case broadcast-3-nodes --nodes 3 --routing broadcast
run_case durable-hash-3-nodes --nodes 3 --durable
run_case gateway-1-node --nodes 1
run_case node-direct --nodes 1
