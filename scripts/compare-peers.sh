#!/usr/bin/env bash
# Measures wsring against its peers on one machine and one Redis, with one
# load client (bench/peers/loadgen) for all of them:
#
#   socketio          socket.io 4.8 + @socket.io/redis-adapter (node-redis), 3 processes
#   socketioxide      socketioxide + socketioxide-redis, 3 processes
#   wsring-hash       wsring gateway + 3 wsring nodes, hash routing, Redis backend;
#                     clients connect through the gateway
#   wsring-direct     the same cluster; each client asks the gateway where its
#                     user lives (GET /ws/locate) and connects to that node
#   wsring-broadcast  3 wsring nodes, broadcast routing, Redis backend; clients
#                     connect to the nodes directly
#
# U users (USERS, 300) spread over the servers send direct messages to random
# users on other servers at each offered rate (RATES, "500 5000 40000") for
# SECS seconds (20). Server CPU is user+system time of the server processes
# (the gateway included) plus the redis-server process, read from
# /proc/<pid>/stat at the start and the end of each send phase (grace
# included), per 1,000 delivered messages.
#
# Then (ECHO=1, the default) the per-message floor: a bare tokio-tungstenite
# echo server (bench/peers/bare-echo) against one wsring node on the memory
# backend (`wsring dev --nodes 1`, clients on the node directly) where every
# client sends direct messages to its own user, at ECHO_RATES ("5000 40000").
#
# With PERF_DIR set, the server processes of each system are recorded with
# `perf record -g` during the PERF_RATE (5000) run, into PERF_DIR/<system>.data.
#
# Prints markdown tables; the raw JSON lines go to OUT (a temporary
# directory unless set). Usage:
#   scripts/compare-peers.sh
#   SYSTEMS="wsring-hash socketio" RATES="5000" SECS=10 ECHO=0 scripts/compare-peers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

RATES=${RATES:-"500 5000 40000"}
ECHO_RATES=${ECHO_RATES:-"5000 40000"}
SECS=${SECS:-20}
USERS=${USERS:-300}
WORKERS=${WORKERS:-2}
PAYLOAD=${PAYLOAD:-64}
GRACE=${GRACE:-15} # seconds at most; ends once everything sent has arrived
SYSTEMS=${SYSTEMS:-"socketio socketioxide wsring-hash wsring-direct wsring-broadcast"}
ECHO=${ECHO:-1}
REDIS_HOST=${REDIS_HOST:-127.0.0.1}
REDIS_PORT=${REDIS_PORT:-6379}
REDIS_URL="redis://$REDIS_HOST:$REDIS_PORT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
# The standalone peer crates build into their own directory: their
# dependency versions differ from the workspace's.
PEERS_TARGET=${PEERS_TARGET_DIR:-$ROOT/bench/peers/target}
OUT=${OUT:-$(mktemp -d /tmp/compare-peers.XXXXXX)}
RUN_ID=peers$$x$(date +%s)
LOADGEN_LIMIT=$((SECS + GRACE + 120)) # seconds: one load run, connects included

mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"

# ------------------------------------------------------------ processes
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start LOG CMD...: runs CMD in the background with stdout+stderr to LOG.
start() {
  local log=$1
  shift
  "$@" >"$log" 2>&1 &
  PIDS+=($!)
  LAST_PID=$!
}

# wait_line LOG REGEX: the first line of LOG matching REGEX (10 s at most).
wait_line() {
  local line
  for _ in $(seq 100); do
    line=$(grep -m1 -E "$2" "$1" 2>/dev/null || true)
    if [ -n "$line" ]; then
      echo "$line"
      return 0
    fi
    sleep 0.1
  done
  echo "no line matching '$2' in $1 within 10 s:" >&2
  tail -20 "$1" >&2
  return 1
}

redis_pid() {
  redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" info server | tr -d '\r' | awk -F: '/^process_id:/{print $2}'
}

# Deletes the keys a wsring namespace left in Redis (registry `{ns}:…`,
# streams `{ns:…`); the socket.io adapters keep no keys.
purge_wsring() {
  local pattern
  for pattern in "{$1}:*" "{$1:*"; do
    redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" --scan --pattern "$pattern" |
      xargs -r -n 500 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" unlink >/dev/null
  done
}

# busy_ticks: CPU time the machine has spent busy since boot (not idle, not iowait), in ticks.
busy_ticks() {
  awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat
}

# On a shared machine other work skews every figure: before a run, wait
# (QUIET_WAIT seconds at most, 120 by default) for a 2-second window in which
# the rest of the machine used less than QUIET_CORES (0.3) cores. Each result
# records what the rest of the machine used during the run (`other_cores`).
wait_quiet() {
  local deadline=$((SECONDS + ${QUIET_WAIT:-120})) hz b0 b1 cores
  hz=$(getconf CLK_TCK)
  while :; do
    b0=$(busy_ticks)
    sleep 2
    b1=$(busy_ticks)
    cores=$(awk -v d=$((b1 - b0)) -v hz="$hz" 'BEGIN{printf "%.2f", d / hz / 2}')
    if awk -v c="$cores" -v q="${QUIET_CORES:-0.3}" 'BEGIN{exit !(c < q)}'; then return 0; fi
    if [ $SECONDS -ge $deadline ]; then
      echo "  (the machine is still busy: $cores cores in use by others; running anyway)" >&2
      return 0
    fi
  done
}

# measure LABEL SYSTEM URLS RATE SERVER_PIDS [loadgen args]: one load run
# after a quiet moment; server CPU is SERVER_PIDS (comma-separated) plus
# Redis unless LABEL runs without it. Appends the run's JSON line.
measure() {
  local label=$1 system=$2 urls=$3 rate=$4 pids=$5 cpu_pids=$5 line perf_pid=""
  shift 5
  [ "$system" = echo ] || [ "$label" = wsring-node-self ] || cpu_pids+=",$REDIS_PID"
  wait_quiet
  if [ -n "${PERF_DIR:-}" ] && [ "$rate" = "${PERF_RATE:-5000}" ]; then
    # The profile covers the server processes (not Redis) for the whole
    # run; perf's own cost inflates that run's CPU figures.
    mkdir -p "$PERF_DIR"
    perf record -F 999 -g -p "$pids" -o "$PERF_DIR/$label.data" >"$PERF_DIR/$label.log" 2>&1 &
    perf_pid=$!
    PIDS+=("$perf_pid")
  fi
  # In the background, so that a signal to this script is handled at once.
  CLK_TCK=$(getconf CLK_TCK) timeout "$LOADGEN_LIMIT" node bench/peers/loadgen/loadgen.mjs \
    --system "$system" --urls "$urls" --users "$USERS" --rate "$rate" --duration "$SECS" \
    --grace "$GRACE" --workers "$WORKERS" --payload "$PAYLOAD" --prefix "$RUN_ID-$label-$rate-" \
    --cpu-pids "$cpu_pids" "$@" >"$OUT/last.json" &
  PIDS+=($!)
  wait $!
  line=$(cat "$OUT/last.json")
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
  fi
  echo "{\"label\":\"$label\",\"result\":$line}" >>"$RESULTS"
  echo "  $label @ $rate/s: $(echo "$line" | node -e 'const r=JSON.parse(require("fs").readFileSync(0));console.log(`delivered ${r.delivered_per_sec}/s, lost ${r.lost}, p99 ${r.latency_ms.p99} ms, ${r.server_cpu_ms_per_1k} CPU-ms/1k, others ${r.other_cores} cores`)')" >&2
}

# ------------------------------------------------------------ build
echo "building (release) and installing the peers…" >&2
(cd bench/peers/socketio && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
(cd bench/peers/loadgen && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
cargo build --release -q -j2 -p wsring
CARGO_TARGET_DIR=$PEERS_TARGET cargo build --release -q -j2 --manifest-path bench/peers/socketioxide/Cargo.toml
CARGO_TARGET_DIR=$PEERS_TARGET cargo build --release -q -j2 --manifest-path bench/peers/bare-echo/Cargo.toml
WSRING=$TARGET/release/wsring
SIOX=$PEERS_TARGET/release/wsring-peer-socketioxide
BARE=$PEERS_TARGET/release/wsring-bare-echo
REDIS_PID=$(redis_pid)
[ -r "/proc/$REDIS_PID/stat" ] || {
  echo "redis-server (pid '$REDIS_PID') is not a local process: its CPU cannot be read" >&2
  exit 1
}

# ------------------------------------------------------------ the systems
run_system() {
  local system=$1 ns="$RUN_ID-$1" urls="" pids="" i line port
  local logs=$OUT/$system
  mkdir -p "$logs"
  case $system in
    socketio | socketioxide)
      for i in 1 2 3; do
        if [ "$system" = socketio ]; then
          start "$logs/s$i.log" node bench/peers/socketio/server.mjs --port 0 --redis "$REDIS_URL" --key "$ns"
        else
          start "$logs/s$i.log" "$SIOX" --port 0 --redis "$REDIS_URL/?protocol=resp3" --key "$ns"
        fi
        pids+="$LAST_PID,"
        line=$(wait_line "$logs/s$i.log" '^listening on [0-9]+')
        port=${line##* }
        urls+="http://127.0.0.1:$port,"
      done
      ;;
    wsring-hash | wsring-direct | wsring-broadcast)
      local routing=${system#wsring-}
      [ "$routing" = direct ] && routing=hash
      local common=(--cluster "$REDIS_URL/" --namespace "$ns" --insecure-no-auth --routing "$routing"
        --client-messages-per-sec 0)
      for i in 1 2 3; do
        start "$logs/n$i.log" env RUST_LOG=warn "$WSRING" node --id "n$i" --listen 127.0.0.1:0 "${common[@]}"
        pids+="$LAST_PID,"
        line=$(wait_line "$logs/n$i.log" 'serving ws://')
        [ "$routing" = broadcast ] && urls+="${line##* },"
      done
      if [ "$routing" = hash ]; then
        start "$logs/gw.log" env RUST_LOG=warn "$WSRING" gateway --listen 127.0.0.1:0 "${common[@]}"
        pids+="$LAST_PID,"
        line=$(wait_line "$logs/gw.log" 'gateway listening on')
        local gw=${line##* }
        urls="ws://$gw/ws"
        # Every node on the gateway's ring before anyone connects, so no
        # session is moved during the run.
        local up=0
        for _ in $(seq 100); do
          up=$(curl -sf "http://$gw/api/nodes" | node -e 'const n=JSON.parse(require("fs").readFileSync(0)).nodes;console.log(n.filter(x=>x.state==="up").length)' || echo 0)
          [ "$up" = 3 ] && break
          sleep 0.1
        done
        [ "$up" = 3 ] || { echo "the gateway sees $up nodes up, not 3" >&2; return 1; }
      fi
      ;;
  esac
  local rate extra=()
  [ "$system" = wsring-direct ] && extra=(--locate)
  for rate in $RATES; do
    measure "$system" "$([ "${system%%-*}" = wsring ] && echo wsring || echo socketio)" "${urls%,}" \
      "$rate" "${pids%,}" "${extra[@]}"
  done
  cleanup
  case $system in wsring-*) purge_wsring "$ns" ;; esac
}

for system in $SYSTEMS; do
  echo "$system…" >&2
  run_system "$system"
done

# ------------------------------------------------------------ the echo floor
if [ "$ECHO" = 1 ]; then
  echo "echo floor…" >&2
  logs=$OUT/echo
  mkdir -p "$logs"
  start "$logs/bare.log" "$BARE" 0
  line=$(wait_line "$logs/bare.log" '^listening on [0-9]+')
  bare_url="ws://127.0.0.1:${line##* }/"
  for rate in $ECHO_RATES; do measure bare-echo echo "$bare_url" "$rate" "$LAST_PID"; done
  cleanup
  start "$logs/dev.log" env RUST_LOG=warn "$WSRING" dev --nodes 1 --port 0 --client-messages-per-sec 0
  line=$(wait_line "$logs/dev.log" '^  node n1 ')
  node_url=${line##* }
  for rate in $ECHO_RATES; do measure wsring-node-self wsring "$node_url" "$rate" "$LAST_PID" --self; done
  cleanup
fi

node bench/peers/report.mjs "$RESULTS"
echo "raw results: $RESULTS" >&2
