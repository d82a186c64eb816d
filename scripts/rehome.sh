#!/usr/bin/env bash
# Measures how long the users a node join moves take to receive again.
#
# Starts 3 `wsring node`s and several `wsring gateway`s on the local Redis
# (127.0.0.1:6379, a fresh namespace), opens USERS users through the
# gateways (several client processes, at most PER_PROC users each: a
# process may hold ~20,000 files, a gateway two per tunnelled connection),
# waits until all got `welcome`, then starts node n4 and reports, for the
# users that got `moved`, the time from n4's start until each reconnected
# and received a probe sent to it after the move (`POST /api/send` on a
# gateway). Everything it starts is killed on exit.
#
# Usage: scripts/rehome.sh [users] ; env: PER_PROC (12000), PER_GATEWAY
# (8000), NODE_ARGS (extra `wsring node` flags), DIRECT=1 (clients locate
# their node through a gateway and connect to it directly), TOOL_ARGS
# (extra `rehome clients` flags, e.g. "--ws-senders 64"), NO_BUILD=1,
# KEEP=1 (keep the run directory).
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${1:-4000}
PER_PROC=${PER_PROC:-12000}
PER_GATEWAY=${PER_GATEWAY:-8000}
NODE_ARGS=${NODE_ARGS:-}
TARGET=${CARGO_TARGET_DIR:-target}
REDIS=redis://127.0.0.1:6379/
NS="rehome$$x$(date +%s)"
RUN=$(mktemp -d /tmp/rehome.XXXXXX)

if [ -z "${NO_BUILD:-}" ]; then
  cargo build --release -j2 -q -p wsring
  cargo build --release -j2 -q -p wsring-client --example rehome
fi
BIN=$TARGET/release/wsring
TOOL=$TARGET/release/examples/rehome

PIDS=()
# shellcheck source=scripts/run-lib.sh
. scripts/run-lib.sh
trap run_cleanup EXIT INT TERM

start_node() { # id
  RUST_LOG=warn "$BIN" node --id "$1" --listen 127.0.0.1:0 --registry "$REDIS" --broker "$REDIS" \
    --namespace "$NS" --insecure-no-auth $NODE_ARGS >"$RUN/$1.out" 2>"$RUN/$1.err" &
  PIDS+=($!)
}

for id in n1 n2 n3; do start_node $id; done
for id in n1 n2 n3; do wait_line "$RUN/$id.out" serving 30 >/dev/null; done

GATEWAYS=$(( (USERS + PER_GATEWAY - 1) / PER_GATEWAY ))
[ "$GATEWAYS" -lt 2 ] && GATEWAYS=2
URLS=()
for ((g = 1; g <= GATEWAYS; g++)); do
  # Each gateway on its own loopback address, so no address runs short of
  # ports for the gateway-to-node connections.
  RUST_LOG=warn "$BIN" gateway --listen "127.0.0.$((10 + g)):0" --registry "$REDIS" \
    --namespace "$NS" --insecure-no-auth >"$RUN/g$g.out" 2>"$RUN/g$g.err" &
  PIDS+=($!)
done
for ((g = 1; g <= GATEWAYS; g++)); do
  addr=$(wait_line "$RUN/g$g.out" "listening on" 30 | awk '{print $NF}')
  URLS+=("ws://$addr/ws")
done
GW_LIST=$(IFS=,; echo "${URLS[*]}")

PROCS=$(( (USERS + PER_PROC - 1) / PER_PROC ))
echo "users=$USERS gateways=$GATEWAYS client processes=$PROCS namespace=$NS cores=$(nproc) load=$(cut -d' ' -f1-3 /proc/loadavg)"
FROM=0
CLIENT_PIDS=()
for ((p = 1; p <= PROCS; p++)); do
  COUNT=$(( USERS / PROCS + (p <= USERS % PROCS ? 1 : 0) ))
  "$TOOL" clients --gateways "$GW_LIST" --from "$FROM" --count "$COUNT" --out "$RUN/c$p.json" \
    --new-node n4 ${DIRECT:+--direct} ${TOOL_ARGS:-} >"$RUN/c$p.out" 2>"$RUN/c$p.err" &
  PIDS+=($!)
  CLIENT_PIDS+=($!)
  FROM=$((FROM + COUNT))
done
T_CONNECT=$(date +%s%N)
for ((p = 1; p <= PROCS; p++)); do wait_line "$RUN/c$p.out" "^ready" 300 >/dev/null; done
echo "all welcomed in $(( ($(date +%s%N) - T_CONNECT) / 1000000 )) ms: $(cat "$RUN"/c*.out | tr '\n' ';')"
if grep -q "failed [1-9]" "$RUN"/c*.out; then echo "some users failed to connect" >&2; fi

# Let the connect burst settle before the join, so it measures the join only.
sleep 2
# CPU seconds each process spent from the join to the end, to see who the
# two shared cores went to.
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null || echo 0; }
declare -A CPU0
for p in "${PIDS[@]}"; do CPU0[$p]=$(cpu_of "$p"); done
T0=$(date +%s%N)
start_node n4
CPU0[$!]=0
wait_line "$RUN/n4.out" serving 30 >/dev/null
echo "n4 serving after $(( ($(date +%s%N) - T0) / 1000000 )) ms"
ROLES=(n1 n2 n3)
for ((g = 1; g <= GATEWAYS; g++)); do ROLES+=("gateway$g"); done
for ((p = 1; p <= PROCS; p++)); do ROLES+=("clients$p"); done
ROLES+=(n4)
declare -A CPU1
# Bounded: each client process ends by itself within its window (30 s
# after the first move, plus 5 s for the untouched-user check). The CPU
# sample taken each second keeps a client process's last value.
for ((i = 0; i < 180; i++)); do
  for p in "${PIDS[@]}"; do c=$(cpu_of "$p"); [ "$c" != 0 ] && CPU1[$p]=$c; done
  alive=0
  for p in "${CLIENT_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
  [ $alive = 0 ] && break
  sleep 1
done
"$TOOL" report --t0-ns "$T0" "$RUN"/c*.json
CPU_LINE=""
for ((i = 0; i < ${#PIDS[@]}; i++)); do
  p=${PIDS[$i]}
  CPU_LINE+="${ROLES[$i]}=$(echo "${CPU1[$p]:-0} - ${CPU0[$p]:-0}" | bc) "
done
echo "CPU seconds from the join until the client processes ended (~$(( ($(date +%s%N) - T0) / 1000000000 )) s): $CPU_LINE"
echo "warning/error lines logged: $(cat "$RUN"/*.err | grep -v "authentication is OFF" | grep -c -i "warn\|error" || true)"
